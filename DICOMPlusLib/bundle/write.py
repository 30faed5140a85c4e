"""Write a Slicer Data Bundle: a zipped scene (an MRB) inside a Secondary Capture of a study.

The file is a Secondary Capture Image Storage object (PS3.3 A.8.1) in the reference study
(patient and study modules copied from it, new series), whose pixel data is a small RGB
thumbnail of the scene, and whose private elements hold the zip as described in
:mod:`DICOMPlusLib.bundle.format`. pydicom writes the data set; the zip element is appended
after it, streamed from its source, so the zip is the file's last element (what stock Slicer's
reader needs) and is never held twice in memory.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import os
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from DICOMPlusLib import __version__
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.bundle import format as fmt
from DICOMPlusLib.bundle.read import BundleInfo, read_bundle_info
from DICOMPlusLib.dataclasses_lite import replace
from DICOMPlusLib.errors import BundleError, DICOMPlusError, DiskFullError, space_error_in
from DICOMPlusLib.export.files import whole_or_none
from DICOMPlusLib.export.reference import (
    copy_patient_and_study,
    next_series_number,
    series_laterality,
    study_reference,
)
from DICOMPlusLib.export.uids import UIDGenerator, ensure_series_is_new, new_uid

logger = get_logger(__name__)

_CHUNK = 1024 * 1024
THUMBNAIL_MAX = 1024  # pixels per side


def placeholder_thumbnail(size: int = 64) -> np.ndarray:
    """A neutral RGB placeholder (a grey gradient with a frame) when no view image is given."""
    ramp = np.linspace(60, 190, size, dtype=np.float64)
    grey = ((ramp[:, None] + ramp[None, :]) / 2).astype(np.uint8)
    image = np.repeat(grey[:, :, None], 3, axis=2)
    image[[0, -1], :, :] = 255
    image[:, [0, -1], :] = 255
    return image


def _thumbnail(image) -> np.ndarray:
    if image is None:
        return placeholder_thumbnail()
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise BundleError(f"the thumbnail must be an RGB image (rows, columns, 3), got shape {array.shape}")
    array = array[:, :, :3]
    if array.shape[0] > THUMBNAIL_MAX or array.shape[1] > THUMBNAIL_MAX:
        step = int(np.ceil(max(array.shape[:2]) / THUMBNAIL_MAX))
        array = array[::step, ::step]
    if array.dtype != np.uint8:
        if array.dtype.kind == "f" and array.size and float(np.nanmax(array)) <= 1.0:
            array = array * 255.0
        array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
    if min(array.shape[:2]) < 1:
        raise BundleError("the thumbnail is empty")
    return np.ascontiguousarray(array)


class _ZipSource:
    """Bytes or a file, hashed and sized in one pass, copied in a second."""

    def __init__(self, source) -> None:
        self.path: Path | None = None
        self.data: bytes | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            self.data = bytes(source)
            self.size = len(self.data)
            self.sha256 = hashlib.sha256(self.data).hexdigest()
            is_zip = zipfile.is_zipfile(io.BytesIO(self.data))
        else:
            self.path = Path(source)
            try:
                self.size = self.path.stat().st_size
                digest = hashlib.sha256()
                with open(self.path, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                self.sha256 = digest.hexdigest()
                is_zip = zipfile.is_zipfile(self.path)
            except OSError as exc:
                raise BundleError(f"cannot read {self.path}: {exc}") from exc
        if not is_zip:
            raise BundleError("the data to bundle is not a zip archive (save the scene as an MRB first)")
        if self.size > fmt.MAX_OB_LENGTH - 1:
            raise BundleError(
                f"the zip is {self.size} bytes; a DICOM element holds at most {fmt.MAX_OB_LENGTH - 1}"
            )

    def copy_to(self, out) -> None:
        if self.data is not None:
            out.write(self.data)
            return
        assert self.path is not None, "__init__ sets the data or the path"
        with open(self.path, "rb") as f:
            copied = 0
            while chunk := f.read(_CHUNK):
                out.write(chunk)
                copied += len(chunk)
        if copied != self.size:
            raise BundleError(f"{self.path} changed while it was being bundled")


def bundle_dataset(
    zip_size: int,
    sha256: str,
    *,
    reference: Dataset | None,
    thumbnail=None,
    series_description: str = fmt.DEFAULT_SERIES_DESCRIPTION,
    series_number: int = 1,
    series_uid: str | None = None,
    uids: UIDGenerator | None = None,
) -> Dataset:
    """The Secondary Capture data set of a bundle, without the zip element itself."""
    image = _thumbnail(thumbnail)
    ds = Dataset()
    copy_patient_and_study(reference, ds, uids=uids)
    sop_uid = new_uid(uids)
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = f"DICOMPLUS_{__version__}"[:16]
    ds.file_meta = meta
    # SOP Common
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    # General Series
    ds.Modality = "OT"
    ds.SeriesInstanceUID = series_uid or new_uid(uids)
    ds.SeriesNumber = int(series_number)
    ds.SeriesDate = date
    ds.SeriesTime = time
    if not isinstance(series_description, str) or len(series_description) > 64 or "\\" in series_description:
        raise BundleError(f"SeriesDescription {series_description!r}: at most 64 characters, no backslash")
    ds.SeriesDescription = series_description
    body_part = str(reference.get("BodyPartExamined") or "").upper() if reference is not None else ""
    if body_part:
        ds.BodyPartExamined = body_part
    laterality = series_laterality(reference, body_part)
    if laterality is not None:
        ds.Laterality = laterality
    # General Equipment, SC Equipment
    ds.Manufacturer = "DICOMPlus"
    ds.ManufacturerModelName = "DICOMPlus"
    ds.SoftwareVersions = __version__
    ds.ConversionType = "WSD"  # workstation
    # General Image
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ContentDate = date
    ds.ContentTime = time
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = "Thumbnail of a Slicer scene; the scene is in the private data"
    # Image Pixel: RGB thumbnail
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(image.shape[0]), int(image.shape[1])
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = image.tobytes()
    # Our block: stable creator, size and hash (before Pixel Data)
    ours = ds.private_block(fmt.OUR_GROUP, fmt.OUR_CREATOR, create=True)
    ours.add_new(fmt.OUR_SIZE_ELEMENT, "UL", int(zip_size))
    ours.add_new(fmt.OUR_SHA256_ELEMENT, "LO", sha256)
    # The stock block: creator with the size, the size again; the zip follows (appended)
    stock = ds.private_block(fmt.BUNDLE_GROUP, fmt.stock_creator(zip_size), create=True)
    if stock.block_start != fmt.STOCK_BLOCK << 8:
        raise BundleError("internal error: the stock private block is not (CADB,0010)")
    stock.add_new(0x08, "LO", str(int(zip_size)))
    return ds


def _ob_header(length: int) -> bytes:
    """Explicit VR little endian header of (CADB,1010) OB with ``length`` (PS3.5 7.1.2)."""
    return struct.pack("<HH2sHI", fmt.BUNDLE_GROUP, fmt.ZIP_DATA_TAG & 0xFFFF, b"OB", 0, length)


def write_bundle(
    zip_source,
    out_path: str | os.PathLike,
    *,
    reference: Dataset | None = None,
    thumbnail=None,
    series_description: str = fmt.DEFAULT_SERIES_DESCRIPTION,
    series_number: int = 1,
    series_uid: str | None = None,
    uids: UIDGenerator | None = None,
    db=None,
) -> BundleInfo:
    """Write a Data Bundle file holding ``zip_source`` (zip bytes, or the path of a zip).

    ``reference``: a header of an instance of the destination study (None: a new study).
    ``thumbnail``: an RGB array (rows, columns, 3) shown as the image; None: a placeholder.
    ``db``: only used to refuse a ``series_uid`` that already exists.
    Raises :class:`BundleError` (not a zip, too large, file exists); nothing is left behind.
    """
    source = _ZipSource(zip_source)
    if series_uid is not None:
        try:
            ensure_series_is_new(db, series_uid)
        except DICOMPlusError as exc:
            raise BundleError(str(exc)) from None
    try:
        dataset = bundle_dataset(
            source.size,
            source.sha256,
            reference=reference,
            thumbnail=thumbnail,
            series_description=series_description,
            series_number=series_number,
            series_uid=series_uid,
            uids=uids,
        )
    except BundleError:
        raise
    except DICOMPlusError as exc:  # e.g. an invalid UID in the reference
        raise BundleError(str(exc)) from None
    path = Path(out_path)
    padded = source.size + (source.size & 1)
    try:
        with whole_or_none(path.parent) as files:  # an error or a signal leaves no file
            with files.create(path.name) as out:
                pydicom.dcmwrite(out, dataset, enforce_file_format=True)
                out.write(_ob_header(padded))
                source.copy_to(out)
                if padded != source.size:
                    out.write(b"\0")
            info = read_bundle_info(path)
            if info.zip_size != source.size or info.sha256 != source.sha256:
                raise BundleError("internal error: the written bundle does not read back as written")
    except FileExistsError:
        raise BundleError(f"{path} already exists; choose another file name") from None
    except OSError as exc:
        if space_error_in(exc) is not None:  # whole or none: nothing was kept
            raise DiskFullError(str(path.parent)) from exc
        raise BundleError(f"cannot write {path}: {exc}") from exc
    logger.info("wrote Data Bundle %s (%d bytes of zip)", path, source.size)
    return info


def save_bundle_to_study(
    db,
    study_uid: str,
    zip_source,
    *,
    out_path: str | os.PathLike | None = None,
    index: bool = True,
    thumbnail=None,
    series_description: str = fmt.DEFAULT_SERIES_DESCRIPTION,
    uids: UIDGenerator | None = None,
) -> BundleInfo:
    """Write a bundle into the study ``study_uid`` of ``db`` (numbered after its last series)
    and, with ``index``, import it (``out_path`` None: a temporary file, then the stored copy)."""
    try:
        reference = study_reference(db, study_uid)
        series_number = next_series_number(db, study_uid)
    except DICOMPlusError as exc:
        raise BundleError(str(exc)) from None
    if out_path is None and not index:
        raise BundleError("nowhere to save the bundle: give an output file or index it")
    temporary: str | None = None
    try:
        if out_path is None:
            temporary = tempfile.mkdtemp(prefix="dicomplus-bundle-")
            target = Path(temporary) / "SlicerDataBundle.dcm"
        else:
            target = Path(out_path)
        info = write_bundle(
            zip_source,
            target,
            reference=reference,
            thumbnail=thumbnail,
            series_description=series_description,
            series_number=series_number,
            uids=uids,
        )
        if not index:
            return info
        try:
            report = db.import_paths([str(target)], link=False)
            if report.added != 1:
                reasons = "; ".join(s.reason for s in report.skipped) or "unknown reason"
                raise BundleError(f"the bundle could not be indexed: {reasons}")
        except BaseException:  # whole or none: the same command again is not refused for the file
            with contextlib.suppress(OSError):
                target.unlink()
            raise
        if temporary:
            return replace(info, path=Path(db.instance(info.sop_uid).path))
        return info
    finally:
        if temporary:
            with contextlib.suppress(OSError):
                shutil.rmtree(temporary)
