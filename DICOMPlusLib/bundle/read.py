"""Read a Slicer Data Bundle: find the zip element, check it, extract it.

Unlike stock Slicer's reader, which trusts the size in the private creator string and reads
that many bytes from the end of the file, this reads the file's structure: the ``(CADB,1010)``
element's own offset and length. The sizes the file declares (our ``(0CAD,xx01)``, the stock
creator string, ``(CADB,1008)``) must agree with it (the element may be one byte longer: the
padding to even length). The SHA-256 is verified when the file has one (our bundles); bundles
written by stock Slicer have none and are read all the same. A limit on the zip size protects
callers from a hostile file that declares gigabytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import zipfile
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from DICOMPlusLib.bundle import format as fmt
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import BundleError

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BundleInfo:
    """Where a bundle's zip is in its file and what the file says about it."""

    path: Path
    zip_size: int
    value_offset: int  # where the zip starts in the file
    element_length: int  # length of the (CADB,1010) value (zip_size, or zip_size + 1 padding)
    creator: str  # the (CADB,0010) string, e.g. "3D Slicer 123456"
    sha256: str | None  # recorded hash (None: a bundle written by stock Slicer)
    writer: str  # "dicomplus" or "slicer"
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    series_description: str = ""

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "zip_size": self.zip_size,
            "sha256": self.sha256,
            "writer": self.writer,
            "creator": self.creator,
            "StudyInstanceUID": self.study_uid,
            "SeriesInstanceUID": self.series_uid,
            "SOPInstanceUID": self.sop_uid,
            "SeriesDescription": self.series_description,
        }


def is_bundle_dataset(ds: Dataset) -> bool:
    """True if ``ds`` carries a Data Bundle private creator: stock Slicer's ``(CADB,0010)``, or
    ours in group 0CAD. Ours precedes Pixel Data, so a header stored without what follows Pixel
    Data (the database's) still shows a DICOMPlus bundle; a stock bundle needs its file."""
    creator = ds.get((fmt.BUNDLE_GROUP, fmt.STOCK_BLOCK))
    if creator is not None and str(creator.value or "").startswith(fmt.STOCK_CREATOR_PREFIX):
        return True
    for element in range(0x10, 0x100):
        ours = ds.get((fmt.OUR_GROUP, element))
        if ours is not None and str(ours.value or "").strip() == fmt.OUR_CREATOR:
            return True
    return False


def is_bundle(path: str | os.PathLike) -> bool:
    """True if the file at ``path`` is a readable Data Bundle."""
    try:
        read_bundle_info(path)
    except BundleError:
        return False
    return True


def _declared(value, what: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise BundleError(f"the bundle's {what} {value!r} is not a number") from None
    if number < 0:
        raise BundleError(f"the bundle's {what} is negative ({number})")
    return number


def read_bundle_info(path: str | os.PathLike) -> BundleInfo:
    """Locate and check the zip element of the bundle at ``path`` (no zip bytes are read).

    Raises :class:`BundleError` when the file is not a bundle or its sizes disagree.
    """
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, defer_size=1024, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise BundleError(f"{path} cannot be read as DICOM: {exc}") from exc
    stock_creator = ds.get((fmt.BUNDLE_GROUP, fmt.STOCK_BLOCK))
    creator = str(stock_creator.value or "").strip() if stock_creator is not None else ""
    if not creator.startswith(fmt.STOCK_CREATOR_PREFIX):
        raise BundleError(f"{path} is not a Slicer Data Bundle (no (CADB,0010) '3D Slicer' private creator)")
    raw = ds.get_item(fmt.ZIP_DATA_TAG, keep_deferred=True)
    if raw is None:
        raise BundleError(f"{path} has the bundle creator but no zip element (CADB,1010)")
    length, offset = int(getattr(raw, "length", -1)), getattr(raw, "value_tell", None)
    if length in (-1, 0xFFFFFFFF) or offset is None:
        raise BundleError(f"{path}: the zip element (CADB,1010) has an undefined length")
    try:
        file_size = path.stat().st_size
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc}") from exc
    if offset + length > file_size:
        raise BundleError(f"{path} is truncated: the zip element ends past the end of the file")

    sha256 = None
    ours_size = None
    with contextlib.suppress(KeyError):
        block = ds.private_block(fmt.OUR_GROUP, fmt.OUR_CREATOR)
        if block.get_tag(fmt.OUR_SIZE_ELEMENT) in ds:
            ours_size = _declared(block[fmt.OUR_SIZE_ELEMENT].value, "recorded zip size")
        if block.get_tag(fmt.OUR_SHA256_ELEMENT) in ds:
            sha256 = str(block[fmt.OUR_SHA256_ELEMENT].value).strip().lower() or None
    creator_size = fmt.parse_stock_creator(creator)
    stock_size = None
    if fmt.ZIP_SIZE_TAG in ds:
        with contextlib.suppress(BundleError):  # stock Slicer ignores it too when unreadable
            stock_size = _declared(ds[fmt.ZIP_SIZE_TAG].value, "(CADB,1008) zip size")
    declared = [s for s in (ours_size, creator_size, stock_size) if s is not None]
    if len(set(declared)) > 1:
        raise BundleError(
            f"{path}: the zip sizes the file declares disagree (ours {ours_size}, creator string "
            f"{creator_size}, (CADB,1008) {stock_size})"
        )
    zip_size = declared[0] if declared else length
    if length not in (zip_size, zip_size + 1):
        raise BundleError(
            f"{path}: the zip element holds {length} bytes but the file declares a {zip_size}-byte zip"
        )
    if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
        raise BundleError(f"{path}: the recorded SHA-256 {sha256!r} is not 64 hex digits")
    return BundleInfo(
        path=path,
        zip_size=zip_size,
        value_offset=int(offset),
        element_length=length,
        creator=creator,
        sha256=sha256,
        writer="dicomplus" if ours_size is not None or sha256 is not None else "slicer",
        study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_uid=str(ds.get("SOPInstanceUID", "")),
        series_description=str(ds.get("SeriesDescription", "")),
    )


def _check_limit(info: BundleInfo, max_size: int | None) -> None:
    if max_size is not None and info.zip_size > max_size:
        raise BundleError(
            f"{info.path}: the bundle's zip is {info.zip_size} bytes, over the limit of {max_size}; "
            "raise the limit (--max-size) if you trust this file"
        )


def _copy_zip(info: BundleInfo, out, verify: bool) -> None:
    digest = hashlib.sha256()
    remaining = info.zip_size
    with open(info.path, "rb") as f:
        f.seek(info.value_offset)
        while remaining:
            chunk = f.read(min(_CHUNK, remaining))
            if not chunk:
                raise BundleError(f"{info.path} is truncated inside the zip element")
            digest.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
    if verify and info.sha256 is not None and digest.hexdigest() != info.sha256:
        raise BundleError(
            f"{info.path}: the zip does not match its recorded SHA-256 (the file is damaged or was altered)"
        )


def read_bundle(
    path: str | os.PathLike, *, max_size: int | None = fmt.DEFAULT_MAX_BUNDLE_BYTES, verify: bool = True
) -> bytes:
    """The zip bytes of the bundle at ``path``, checked (size limit, hash, zip structure)."""
    info = read_bundle_info(path)
    _check_limit(info, max_size)
    buffer = io.BytesIO()
    _copy_zip(info, buffer, verify)
    data = buffer.getvalue()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise BundleError(f"{info.path}: the bundled data is not a zip archive")
    return data


def extract_bundle(
    path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    max_size: int | None = fmt.DEFAULT_MAX_BUNDLE_BYTES,
    verify: bool = True,
    overwrite: bool = False,
) -> BundleInfo:
    """Write the bundle's zip to ``out_path`` (streamed; removed again if a check fails)."""
    info = read_bundle_info(path)
    _check_limit(info, max_size)
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise BundleError(f"{out_path} already exists; choose another name (or overwrite)")
    tmp = out_path.with_name(f".{out_path.name}.partial")
    try:
        with open(tmp, "wb") as out:
            _copy_zip(info, out, verify)
        if not zipfile.is_zipfile(tmp):
            raise BundleError(f"{info.path}: the bundled data is not a zip archive")
        os.replace(tmp, out_path)
    except OSError as exc:
        raise BundleError(f"cannot write {out_path}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return info
