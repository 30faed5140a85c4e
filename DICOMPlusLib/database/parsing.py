"""Turn one file (or received bytes) into an index entry: the columns plus the stored header.

Runs in import worker processes, so it is a plain function of picklable arguments. The header is
kept as the file's own bytes up to the pixel data (every element, private ones and sequences
included, exactly as encoded): it rebuilds a valid header with ``pydicom.dcmread`` and is
searched on any tag with the fast scanner. Nothing here touches the database.
"""

from __future__ import annotations

import functools
import os
import warnings
from io import BytesIO

from DICOMPlusLib import uids
from DICOMPlusLib._lazy import import_pydicom
from DICOMPlusLib.database.headerscan import (
    DeflatedError,
    NeedMoreData,
    ScanError,
    TruncatedError,
    inflate_header,
    scan,
)
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import ImportFileError

MEDIA_STORAGE_DIRECTORY = uids.MediaStorageDirectoryStorage
STORAGE_ROOT = uids.STORAGE_ROOT
MR_SPECTROSCOPY = uids.MRSpectroscopyStorage
SPECTROSCOPY_DATA = 0x56000020

PATIENT_KEYS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")
STUDY_KEYS = (
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
)
SERIES_KEYS = (
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
)
INSTANCE_KEYS = ("SOPClassUID", "InstanceNumber", "NumberOfFrames", "Rows", "Columns")
UID_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
INDEX_KEYWORDS = PATIENT_KEYS + STUDY_KEYS + SERIES_KEYS + INSTANCE_KEYS + UID_KEYS
# Tags written out (PS3.6) so that importing this module does not import pydicom: a re-import of
# unchanged files, or a CLI call that only reads the database, never needs it.
TAG_OF = {
    "PatientID": 0x00100020,
    "PatientName": 0x00100010,
    "PatientBirthDate": 0x00100030,
    "PatientSex": 0x00100040,
    "StudyDate": 0x00080020,
    "StudyTime": 0x00080030,
    "StudyDescription": 0x00081030,
    "AccessionNumber": 0x00080050,
    "StudyID": 0x00200010,
    "ReferringPhysicianName": 0x00080090,
    "Modality": 0x00080060,
    "SeriesNumber": 0x00200011,
    "SeriesDescription": 0x0008103E,
    "SeriesDate": 0x00080021,
    "SeriesTime": 0x00080031,
    "BodyPartExamined": 0x00180015,
    "SOPClassUID": 0x00080016,
    "InstanceNumber": 0x00200013,
    "NumberOfFrames": 0x00280008,
    "Rows": 0x00280010,
    "Columns": 0x00280011,
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
    "SOPInstanceUID": 0x00080018,
}
INDEX_TAGS = {TAG_OF[k]: k for k in INDEX_KEYWORDS}
_WANTED = frozenset(INDEX_TAGS)
_INT_KEYS = frozenset({"SeriesNumber", "InstanceNumber", "NumberOfFrames", "Rows", "Columns"})
FIRST_READ = 16 * 1024  # most headers are 2-12 KiB; a longer one is read on
#: What a load of files needs of an index entry (``parse_path(..., index=False)``): the instance's
#: identity and what :func:`_check` and :func:`_check_pixels` judge. The patient, study and series
#: names and dates are neither decoded nor converted (~10% of a folder load's header scan).
LOAD_TAGS = {TAG_OF[k]: k for k in UID_KEYS + INSTANCE_KEYS}
_LOAD_WANTED = frozenset(LOAD_TAGS)


# eq=False: never compared; each generated method is compiled as the module is imported.
@dataclass(eq=False)
class ParsedFile:
    """One file ready to be indexed."""

    values: dict[str, object]  # keyword -> value for INDEX_KEYWORDS (str or int or None; see LOAD_TAGS)
    transfer_syntax: str
    header: bytes
    pixel_offset: int
    pixel_length: int
    size: int
    mtime: float
    source: str  # the path it came from ("" for received data)
    data: bytes | None = None  # the whole file, when it is to be copied into the store
    stored_tmp: str = ""  # a temporary file in the store holding the data, when written by a worker
    scanned: dict[int, object] | None = None  # tag -> value of the scan, with the ``also`` tags


def _as_int(value: object) -> int | None:
    if value.__class__ is int:  # US, UL, SS, SL as scanned (Rows, Columns): nothing to convert
        return value
    if value is None or value == "":
        return None
    if isinstance(value, tuple):
        value = value[0]
    try:
        return int(float(str(value).split("\\")[0]))
    except ValueError:
        return None


def _plan(tags: dict[int, str]) -> tuple[tuple[int, str, bool], ...]:
    return tuple((tag, keyword, keyword in _INT_KEYS) for tag, keyword in tags.items())


#: (tag, keyword, is an integer) of each index tag and of each load tag, made once (not per file).
_INDEX_PLAN = _plan(INDEX_TAGS)
_LOAD_PLAN = _plan(LOAD_TAGS)


def _finish(
    values: dict[int, object], plan: tuple[tuple[int, str, bool], ...] = _INDEX_PLAN
) -> dict[str, object]:
    out: dict[str, object] = {}
    get = values.get
    for tag, keyword, is_int in plan:
        value = get(tag)
        if is_int:
            out[keyword] = _as_int(value)
        elif value is None:
            out[keyword] = ""
        elif value.__class__ is str:
            out[keyword] = value.strip()
        else:
            out[keyword] = str(value).strip()
    return out


def _check(values: dict[str, object], media_class: str, path: str) -> None:
    if media_class == MEDIA_STORAGE_DIRECTORY or values.get("SOPClassUID") == MEDIA_STORAGE_DIRECTORY:
        raise ImportFileError(
            "media storage directory object (DICOMDIR or DIRFILE), not an image or document"
        )
    for key in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
        if not values.get(key):
            raise ImportFileError(f"no {key}: not a composite instance that can be indexed")


def _check_pixels(values: dict[str, object], pixel_tag: int, last_tag: int) -> None:
    """A standard image (a Storage SOP Class of PS3.4 B.5, Rows and Columns at the top level)
    whose data set ends before the place of Pixel Data (7FE0,0010; elements come in ascending tag
    order, PS3.5 7.1) was cut short, even when the cut fell exactly on an element boundary.

    Not judged: MR Spectroscopy (Rows/Columns with Spectroscopy Data, 5600,0020) and private SOP
    classes, which may legitimately carry Rows/Columns without pixels (e.g. Philips' private MR
    series data)."""
    if pixel_tag or values.get("Rows") is None or values.get("Columns") is None:
        return
    sop_class = str(values.get("SOPClassUID") or "")
    if (
        not sop_class.startswith(STORAGE_ROOT)
        or sop_class == MR_SPECTROSCOPY
        or last_tag == SPECTROSCOPY_DATA
    ):
        return
    if last_tag < 0x7FE00010:
        raise ImportFileError(
            "truncated: an image (Rows and Columns present) without Pixel Data; the file ends before it"
        )


def parse_bytes(data: bytes, *, source: str = "", size: int | None = None, mtime: float = 0.0) -> ParsedFile:
    """Index entry for a whole file held in memory. Raises ImportFileError with a reason."""
    try:
        try:
            header = b""
            result = scan(data, _WANTED, complete=True)
        except DeflatedError:
            try:
                header, result = inflate_header(data, _WANTED)
            except TruncatedError:
                raise
            except ScanError as exc:
                raise ImportFileError(f"unreadable DICOM: {exc}") from None
        values = _finish(result.values)
        _check(values, result.media_sop_class, source)
        _check_pixels(values, result.pixel_tag, result.last_tag)
        return ParsedFile(
            values=values,
            transfer_syntax=result.transfer_syntax,
            header=header or bytes(data[: result.header_end]),
            pixel_offset=result.pixel_offset,
            pixel_length=result.pixel_length,
            size=len(data) if size is None else size,
            mtime=mtime,
            source=source,
            data=data,
        )
    except TruncatedError as exc:
        raise ImportFileError(f"truncated: {exc}") from exc
    except NeedMoreData:  # the whole file was given: as parse_path says it, not pydicom's guess
        raise ImportFileError("truncated: the file ends inside its header") from None
    except ScanError:
        return _parse_with_pydicom(data, source=source, size=size, mtime=mtime)


def _parse_with_pydicom(data: bytes, *, source: str, size: int | None, mtime: float) -> ParsedFile:
    """The slow, forgiving path: files without a preamble, deflated, or oddly encoded."""
    has_prefix = data[128:132] == b"DICM"
    if not has_prefix and not _looks_like_raw_dataset(data):
        # Told apart before pydicom is imported (~0.4 s): a folder with a README in it must not
        # cost a load or an import that pays for pydicom.
        raise ImportFileError("not a DICOM file (no 'DICM' prefix and no DICOM data set)")
    import_pydicom()  # on an import's worker threads: one thread at a time
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(BytesIO(data), force=not has_prefix, defer_size=256)
            ds.get("SOPInstanceUID")  # force parsing up to there
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            tags = [int(t) for t in ds.keys()]
            rows_cols = {
                "Rows": ds.get("Rows"),
                "Columns": ds.get("Columns"),
                "SOPClassUID": ds.get("SOPClassUID"),
            }
            _check_pixels(rows_cols, 0, max(tags) if tags else 0)
        if "PixelData" in ds:
            element = ds.get_item("PixelData")
            offset = getattr(element, "value_tell", -1)
            length = getattr(element, "length", None)
            if length is None:
                length = len(element.value or b"")
            length = -1 if length == 0xFFFFFFFF else length
            if length >= 0 and offset + length > len(data):
                raise ImportFileError("truncated: pixel data runs past the end of the file")
        else:
            offset, length = -1, -1
    except ImportFileError:
        raise
    except RecursionError:
        raise ImportFileError("unreadable DICOM: sequences nested too deeply") from None
    except Exception as exc:  # pydicom on hostile bytes raises many kinds (NotImplementedError for an
        # unknown VR, struct.error, IndexError...): each means this file cannot be read
        if isinstance(exc, InvalidDicomError):
            raise ImportFileError(f"unreadable DICOM: {exc}") from exc
        raise ImportFileError(f"unreadable DICOM: {type(exc).__name__}: {exc}") from exc
    values: dict[str, object] = {}
    for keyword in INDEX_KEYWORDS:
        try:
            value = ds.get(keyword)
        except Exception:  # a malformed value in one element should not lose the file
            value = None
        if keyword in _INT_KEYS:
            values[keyword] = _as_int(value)
        else:
            values[keyword] = "" if value is None else str(value).strip()
    _check(values, _meta_value(ds, "MediaStorageSOPClassUID"), source)
    if not values["SOPInstanceUID"]:
        raise ImportFileError("no SOPInstanceUID")
    ts = _meta_value(ds, "TransferSyntaxUID")
    if not ts:
        ts = uids.ImplicitVRLittleEndian if ds.is_implicit_VR else uids.ExplicitVRLittleEndian
    header_end = offset - (12 if offset > 0 and not ds.is_implicit_VR else 8) if offset > 0 else len(data)
    return ParsedFile(
        values=values,
        transfer_syntax=ts,
        header=bytes(data[: max(0, header_end)]),
        pixel_offset=offset,
        pixel_length=length,
        size=len(data) if size is None else size,
        mtime=mtime,
        source=source,
        data=data,
    )


def _meta_value(ds, keyword: str) -> str:
    """A file meta value as text, "" when absent or malformed (e.g. a VR that is not one)."""
    meta = getattr(ds, "file_meta", None)
    try:
        return str(meta.get(keyword, "") or "") if meta is not None else ""
    except Exception:  # pydicom raises NotImplementedError, ValueError... on hostile values
        return ""


def _looks_like_raw_dataset(data: bytes) -> bool:
    """A preamble-less data set starts with a group 0008 (or 0002) element, little endian."""
    return len(data) >= 8 and data[1] == 0 and data[0] in (0x02, 0x08) and data[3] in (0x00, 0x01)


def parse_path(
    path: str, *, keep_data: bool, also: frozenset[int] = frozenset(), index: bool = True
) -> ParsedFile:
    """Index entry for a file on disk. ``keep_data`` also keeps the whole file's bytes;
    otherwise only the header is read, in growing chunks. Tags in ``also`` are decoded in the
    same walk of the header and returned in ``scanned`` (the loader's, so it walks each header once).
    ``index=False`` (a load, not an import): ``values`` holds at least :data:`LOAD_TAGS`' keywords;
    the files refused are the same."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ImportFileError(f"cannot read: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        parsed = parse_fd(fd, st, path, also, index)
        if keep_data:
            parsed.data = _read_all(fd, st.st_size)
        return parsed
    except OSError as exc:
        raise ImportFileError(f"cannot read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def parse_incoming(fd: int, path: str, prefix: bytes | None = None) -> ParsedFile:
    """Index entry for a received file still open (readable) on ``fd``, the descriptor it was
    written by: no second open and close of it per received instance. ``prefix``, when the
    writer kept it, is the file's first bytes (:data:`FIRST_READ` of them, or the whole file):
    the header is scanned from it without reading the file back. Raises as :func:`parse_path`
    does (ImportFileError for unreadable data)."""
    try:
        return parse_fd(fd, os.fstat(fd), path, prefix=prefix)
    except OSError as exc:
        raise ImportFileError(f"cannot read: {exc.strerror or exc}") from exc


def _read_all(fd: int, size: int) -> bytes:
    data = os.pread(fd, size, 0)
    while len(data) < size:
        more = os.pread(fd, size - len(data), len(data))
        if not more:
            break
        data += more
    return data


def parse_fd(
    fd: int,
    st: os.stat_result,
    path: str,
    also: frozenset[int] = frozenset(),
    index: bool = True,
    prefix: bytes | None = None,
) -> ParsedFile:
    """Index entry for an open file whose ``fstat`` is ``st``, reading only its header (the
    first 16 KiB, more only when the header is longer; none when ``prefix``, the file's first
    bytes as its writer kept them, holds as many). Raises ImportFileError with a reason,
    OSError when the file cannot be read."""
    size = st.st_size
    if size == 0:
        raise ImportFileError("empty file")
    first = min(size, FIRST_READ)
    data = prefix[:first] if prefix is not None and len(prefix) >= first else os.pread(fd, first, 0)
    while True:
        try:
            return _scan_prefix(data, fd, st, path, also, index)
        except NeedMoreData:
            more = os.pread(fd, max(len(data), FIRST_READ), len(data))
            if not more:
                parsed = parse_bytes(data, source=path, size=size, mtime=st.st_mtime)
                parsed.data = None
                return parsed
            data += more


@functools.lru_cache(maxsize=16)
def _wanted(index: bool, also: frozenset[int]) -> frozenset[int]:
    """The tags a scan decodes (made once per ``also``, not once per file)."""
    return (_WANTED if index else _LOAD_WANTED) | also


def _scan_prefix(
    data: bytes,
    fd: int,
    st: os.stat_result,
    path: str,
    also: frozenset[int] = frozenset(),
    index: bool = True,
) -> ParsedFile:
    size = st.st_size
    try:
        result = scan(data, _wanted(index, also), complete=len(data) >= size)
    except NeedMoreData:
        if len(data) >= size:
            raise ImportFileError("truncated: the file ends inside its header") from None
        raise
    except ScanError:  # deflated, no preamble, oddly encoded: the whole file, the slow way
        parsed = parse_bytes(_read_all(fd, size), source=path, size=size, mtime=st.st_mtime)
        parsed.data = None
        return parsed
    if result.pixel_length >= 0 and result.pixel_offset + result.pixel_length > size:
        raise ImportFileError("truncated: pixel data runs past the end of the file")
    values = _finish(result.values, _INDEX_PLAN if index else _LOAD_PLAN)
    _check(values, result.media_sop_class, path)
    _check_pixels(values, result.pixel_tag, result.last_tag)
    return ParsedFile(
        values=values,
        transfer_syntax=result.transfer_syntax,
        header=bytes(data[: result.header_end]),
        pixel_offset=result.pixel_offset,
        pixel_length=result.pixel_length,
        size=size,
        mtime=st.st_mtime,
        source=path,
        scanned=result.values if also else None,
    )
