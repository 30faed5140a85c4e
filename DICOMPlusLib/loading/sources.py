"""Where slices come from: the database's stored headers, or a folder scanned directly.

Both give the same :class:`InstanceSource` (the header bytes up to the pixel data, the pixel
data's offset and length, the transfer syntax), so loading from the database and from a folder
run the same code and give the same result. Geometry is read from the stored header bytes with
the fast header scanner (no pydicom parse, no second read of the file); only multi-frame
objects, whose geometry lives in functional group sequences, are parsed with pydicom.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from io import BytesIO
from typing import TYPE_CHECKING, Any

from DICOMPlusLib import uids
from DICOMPlusLib.database.headerscan import ScanError, scan
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import ImportFileError, LoadError
from DICOMPlusLib.loading import diffusion, mosaic
from DICOMPlusLib.loading.models import Frame, LoadWarning

#: Deflated Explicit VR Little Endian (pydicom.uid's name; pydicom is not imported here: start-up).
DEFLATED = uids.DeflatedExplicitVRLittleEndian

if TYPE_CHECKING:
    import pydicom


#: Not frozen, no generated __repr__ or __match_args__ (unused): one per file, made once and
#: never changed; a frozen __init__ would set each field through object.__setattr__ (as Frame).
@dataclass(repr=False, match_args=False)
class InstanceSource:
    """One stored instance: enough to build its frames without opening the file."""

    sop_uid: str
    series_uid: str
    path: str
    transfer_syntax: str
    pixel_offset: int
    pixel_length: int
    header: bytes
    number_of_frames: int = 1
    sop_class: str = ""
    instance_number: int | None = None
    scanned: dict[str, Any] | None = None  # the header's values for TAGS by keyword, when already scanned
    generated_series_uid: bool = False  # the file has none (see :mod:`unindexed`)


@dataclass(frozen=True)
class SkippedFile:
    """A file the load did not take, and why."""

    path: str
    reason: str


#: The attributes read from each classic header, with their tags (PS3.6) written out so that
#: the classic path never imports pydicom (its data dictionary alone costs ~40 MB and 0.13 s).
TAGS: dict[str, int] = {
    "SOPClassUID": 0x00080016,
    "Modality": 0x00080060,
    "ImageType": 0x00080008,
    "AcquisitionNumber": 0x00200012,
    "InstanceNumber": 0x00200013,
    "ImagePositionPatient": 0x00200032,
    "ImageOrientationPatient": 0x00200037,
    "PixelSpacing": 0x00280030,
    "SliceThickness": 0x00180050,
    "SpacingBetweenSlices": 0x00180088,
    "Rows": 0x00280010,
    "Columns": 0x00280011,
    "SamplesPerPixel": 0x00280002,
    "PhotometricInterpretation": 0x00280004,
    "PlanarConfiguration": 0x00280006,
    "BitsAllocated": 0x00280100,
    "BitsStored": 0x00280101,
    "PixelRepresentation": 0x00280103,
    "RescaleSlope": 0x00281053,
    "RescaleIntercept": 0x00281052,
    "WindowCenter": 0x00281050,
    "WindowWidth": 0x00281051,
    "NumberOfFrames": 0x00280008,
    "GantryDetectorTilt": 0x00181120,
    "TemporalPositionIdentifier": 0x00200100,
    "NumberOfTemporalPositions": 0x00200105,
    "TriggerTime": 0x00181060,
    "AcquisitionTime": 0x00080032,
    "AcquisitionDateTime": 0x0008002A,
    "ContentTime": 0x00080033,
    "EchoNumbers": 0x00180086,
    "EchoTime": 0x00180081,
    "RepetitionTime": 0x00180080,
    "FrameOfReferenceUID": 0x00200052,
    "StackID": 0x00209056,
    "InStackPositionNumber": 0x00209057,
    **diffusion.STANDARD_TAGS,
    **{keyword: tag for keyword, (tag, _vr) in diffusion.PRIVATE_TAGS.items()},
    **mosaic.TAGS,
}
#: Pseudo-keywords of private attributes, for getters over pydicom data sets.
_PRIVATE = {keyword: tag for keyword, (tag, _vr) in diffusion.PRIVATE_TAGS.items()} | mosaic.PRIVATE
_TAGS = {tag: keyword for keyword, tag in TAGS.items()}
_WANTED = frozenset(_TAGS)

#: Multi-frame SOP classes whose geometry is in functional groups (PS3.4 B.5): parse with pydicom.
ENHANCED_CLASSES = frozenset(
    {
        uids.EnhancedCTImageStorage,
        uids.LegacyConvertedEnhancedCTImageStorage,
        uids.EnhancedMRImageStorage,
        uids.EnhancedMRColorImageStorage,
        uids.LegacyConvertedEnhancedMRImageStorage,
        uids.LegacyConvertedEnhancedPETImageStorage,
        uids.EnhancedPETImageStorage,
        uids.EnhancedXAImageStorage,
        uids.EnhancedXRFImageStorage,
        uids.SegmentationStorage,
    }
)


# -- value normalisation (scanner values are str/int/float/tuple; pydicom values are elements) --
# The getters below are called ~45 times per slice, for ~20 attributes a CT header does not have:
# ``None`` returns at once rather than through the general decoding (~1.5 ms per 300 slices).
def _floats(value: Any) -> tuple[float, ...] | None:
    """Numbers of a DS/IS value (text, numbers, or a sequence of them); None when there are none."""
    return None if value is None else diffusion.decode(value, "DS")


def _float(value: Any) -> float | None:
    if value is None:
        return None
    kind = value.__class__
    if kind is str:  # the scanner's one-number text: a single float() (same result)
        try:
            return float(value)
        except ValueError:
            pass
    elif kind is int or kind is float:  # the scanner's US/SS/FL...: Rows, BitsAllocated (same result)
        return float(value)
    values = _floats(value)
    return values[0] if values else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _strs(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split("\\"))
    try:
        return tuple(str(p).strip() for p in value)
    except TypeError:
        return (str(value).strip(),)


def _str(value: Any) -> str:
    if value is None:
        return ""
    if value.__class__ is str:
        return value.split("\\", 1)[0].strip()
    parts = _strs(value)
    return parts[0] if parts else ""


def seconds_of_day(value: Any) -> float | None:
    """TM 'HHMMSS.FFFFFF' (or DT 'YYYYMMDDHHMMSS.F', date folded in) to seconds (PS3.5 6.2)."""
    if value is None:
        return None
    text = _str(value).split("+")[0].split("-")[0].replace(":", "")
    if not text:
        return None
    days = 0.0
    if len(text) >= 14 and "." not in text[:8]:  # DT
        try:
            import datetime

            days = datetime.date(int(text[:4]), int(text[4:6]), int(text[6:8])).toordinal()
        except ValueError:
            return None
        text = text[8:]
    try:
        hours = int(text[0:2]) if len(text) >= 2 else 0
        minutes = int(text[2:4]) if len(text) >= 4 else 0
        seconds = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        return None
    return days * 86400.0 + hours * 3600.0 + minutes * 60.0 + seconds


def _make_frame(source: InstanceSource, get: Callable[[str], Any], index: int, count: int) -> Frame:
    orientation = _floats(get("ImageOrientationPatient"))
    position = _floats(get("ImagePositionPatient"))
    spacing = _floats(get("PixelSpacing"))
    echo = _float(get("EchoNumbers"))
    if echo is None:
        echo = _float(get("EchoTime"))
    acquired = seconds_of_day(get("AcquisitionDateTime"))
    if acquired is None:
        acquired = seconds_of_day(get("AcquisitionTime"))
    modality = _str(get("Modality"))
    b_value = gradient = None
    if modality == "MR":
        b_value, gradient = diffusion.read(get, orientation)
    return Frame(
        sop_uid=source.sop_uid,
        path=source.path,
        transfer_syntax=source.transfer_syntax,
        # A deflated file's pixel data sit inside the deflated stream: no offset, decoded whole.
        pixel_offset=0
        if source.transfer_syntax == DEFLATED and source.pixel_offset < 0
        else source.pixel_offset,
        pixel_length=-1 if source.transfer_syntax == DEFLATED else source.pixel_length,
        frame=index,
        number_of_frames=count,
        series_uid=source.series_uid,
        sop_class=_str(get("SOPClassUID")) or source.sop_class,
        modality=modality,
        rows=_int(get("Rows")),
        columns=_int(get("Columns")),
        position=position[:3] if position and len(position) >= 3 else None,  # type: ignore[arg-type]
        orientation=orientation[:6] if orientation and len(orientation) >= 6 else None,  # type: ignore[arg-type]
        pixel_spacing=spacing[:2] if spacing and len(spacing) >= 2 else None,  # type: ignore[arg-type]
        slice_thickness=_float(get("SliceThickness")),
        spacing_between_slices=_float(get("SpacingBetweenSlices")),
        samples_per_pixel=_int(get("SamplesPerPixel")) or 1,
        photometric=_str(get("PhotometricInterpretation")) or "MONOCHROME2",
        planar_configuration=_int(get("PlanarConfiguration")) or 0,
        bits_allocated=_int(get("BitsAllocated")) or 16,
        bits_stored=_int(get("BitsStored")) or _int(get("BitsAllocated")) or 16,
        pixel_representation=_int(get("PixelRepresentation")) or 0,
        rescale_slope=_float(get("RescaleSlope")) or 1.0,
        rescale_intercept=_float(get("RescaleIntercept")) or 0.0,
        window_center=_float(get("WindowCenter")),
        window_width=_float(get("WindowWidth")),
        image_type=tuple(s.upper() for s in _strs(get("ImageType"))),
        acquisition_number=_int(get("AcquisitionNumber")),
        instance_number=_int(get("InstanceNumber")),
        echo=echo,
        temporal_position=_int(get("TemporalPositionIdentifier")),
        number_of_temporal_positions=_int(get("NumberOfTemporalPositions")),
        trigger_time=_float(get("TriggerTime")),
        acquisition_time=acquired,
        content_time=seconds_of_day(get("ContentTime")),
        repetition_time=_float(get("RepetitionTime")),
        gantry_tilt=_float(get("GantryDetectorTilt")),
        stack_id=_str(get("StackID")),
        in_stack_position=_int(get("InStackPositionNumber")),
        frame_of_reference=_str(get("FrameOfReferenceUID")),
        diffusion_b=b_value,
        diffusion_gradient=gradient,
        dimension_index=_dimension_index(get("DimensionIndexValues")),
    )


def _dimension_index(value: Any) -> tuple[int, ...] | None:
    values = _floats(value)
    return tuple(int(v) for v in values) if values else None


def _dataset(header: bytes) -> pydicom.Dataset:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(BytesIO(header), force=True)


def _dataset_getter(ds: pydicom.Dataset) -> Callable[[str], Any]:
    def get(keyword: str) -> Any:
        try:
            if keyword in _PRIVATE:
                element = ds.get(_PRIVATE[keyword])
                return None if element is None else element.value
            return ds.get(keyword)
        except Exception:
            return None

    return get


def _part10(path: str) -> bool:
    """Whether ``path`` has the Part 10 prefix (``DICM`` at offset 128), as
    :func:`DICOMPlusLib.loading.unindexed.image_without_series` requires first."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        return os.pread(fd, 4, 128) == b"DICM" if hasattr(os, "pread") else _head(fd) == b"DICM"
    except OSError:
        return False
    finally:
        os.close(fd)


def _head(fd: int) -> bytes:
    os.lseek(fd, 128, os.SEEK_SET)
    return os.read(fd, 4)


def _by_keyword(values: dict[int, Any]) -> dict[str, Any]:
    """A scan's values for TAGS, by keyword (made once per header: the frames read them by name)."""
    keywords = _TAGS
    return {keywords[t]: v for t, v in values.items() if t in keywords}


def frames_of(source: InstanceSource) -> tuple[list[Frame], list[LoadWarning]]:
    """The frames of one instance, from its stored header bytes."""
    multi = (
        source.number_of_frames > 1
        or source.sop_class in ENHANCED_CLASSES
        or source.sop_class == uids.RTDoseStorage  # even one frame: DoseGridScaling
    )
    if not multi:
        by_keyword = source.scanned
        if by_keyword is None:
            try:
                by_keyword = _by_keyword(scan(source.header, _WANTED, complete=True).values)
            except ScanError:
                by_keyword = None
        if by_keyword is not None:
            if _int(by_keyword.get("NumberOfFrames")) in (None, 0, 1):
                frame = _make_frame(source, by_keyword.get, 0, 1)
                if not mosaic.is_mosaic(frame):
                    return [frame], []
                if not mosaic.needs_dataset(frame):
                    return mosaic.expand(frame, by_keyword.get)
    # Only objects parsed by pydicom need these (a plain CT series as a process does not: start-up)
    from DICOMPlusLib.loading import multiframe, rtdose

    ds = _dataset(source.header)
    count = int(_int(ds.get("NumberOfFrames")) or 1)
    if rtdose.is_dose_grid(ds) and not multiframe.is_enhanced(ds):
        return rtdose.dose_frames(_make_frame(source, _dataset_getter(ds), 0, count), ds, count)
    if count <= 1 and not multiframe.is_enhanced(ds):
        get = _dataset_getter(ds)
        frame = _make_frame(source, get, 0, 1)
        if mosaic.is_mosaic(frame):
            return mosaic.expand(frame, get, ds)
        return [frame], []
    if multiframe.is_enhanced(ds):
        getters = multiframe.frame_attributes(ds)
        return [_make_frame(source, get, i, count) for i, get in enumerate(getters)], []
    return _legacy_multiframe(source, ds, count)


def _legacy_multiframe(source: InstanceSource, ds: pydicom.Dataset, count: int):
    """A multi-frame object without functional groups (NM, US, SC...): frames are stacked along
    the normal at SpacingBetweenSlices (else SliceThickness) from the top-level position."""
    import numpy as np

    base = _make_frame(source, _dataset_getter(ds), 0, count)
    frames = []
    step = base.spacing_between_slices or base.slice_thickness
    warn = []
    if base.has_geometry and step:
        r = np.asarray(base.orientation[:3])  # type: ignore[index]
        c = np.asarray(base.orientation[3:])  # type: ignore[index]
        n = np.cross(r, c)
        p0 = np.asarray(base.position)
        for i in range(count):
            p = tuple(float(x) for x in p0 + i * step * n)
            frames.append(_replace(base, frame=i, position=p))
        warn.append(
            LoadWarning(
                "multiframe_geometry_assumed",
                f"multi-frame object without per-frame positions: {count} frames assumed stacked along "
                f"the normal every {step:g} mm (SpacingBetweenSlices/SliceThickness)",
                (source.path,),
            )
        )
    else:
        frames = [_replace(base, frame=i, position=None) for i in range(count)]
    return frames, warn


def _replace(base: Frame, /, **changes) -> Frame:
    from DICOMPlusLib import dataclasses_lite

    return dataclasses_lite.replace(base, **changes)


# -- the two origins ---------------------------------------------------------------------------
def sources_from_database(db, series_uid: str) -> list[InstanceSource]:
    records = db.instances(series_uid)
    if not records:
        raise LoadError(f"series {series_uid} is not in the database {getattr(db, 'path', '')}")
    blobs = db.header_bytes(series_uid)
    out = []
    for record in records:
        header = blobs[record.SOPInstanceUID]
        out.append(
            InstanceSource(
                sop_uid=record.SOPInstanceUID,
                series_uid=record.SeriesInstanceUID,
                path=record.path,
                transfer_syntax=record.TransferSyntaxUID,
                pixel_offset=-1 if record.pixel_offset is None else int(record.pixel_offset),
                pixel_length=-1 if record.pixel_length is None else int(record.pixel_length),
                header=header,
                number_of_frames=record.NumberOfFrames or 1,
                sop_class=record.SOPClassUID,
                instance_number=record.InstanceNumber,
            )
        )
    return out


def sources_from_files(files: Iterable[str]) -> tuple[dict[str, list[InstanceSource]], list[SkippedFile]]:
    """Scan files directly (headers only, the same scan as a database import), listed by
    :func:`DICOMPlusLib.loading.prefetch.files_of`: ``({series_uid: [sources]}, skipped files)``.
    Duplicate SOPInstanceUIDs keep the first file."""
    from DICOMPlusLib.database.parsing import parse_path

    series: dict[str, list[InstanceSource]] = {}
    skipped: list[SkippedFile] = []
    seen: set[str] = set()
    for path in files:
        try:
            parsed = parse_path(path, keep_data=False, also=_WANTED, index=False)
        except ImportFileError as exc:
            # Only a Part 10 file can be an image without a series; a README or a marker file
            # (the bench's folder has one) costs no import of the unindexed loader (~1 ms).
            image = None
            if _part10(path):
                from DICOMPlusLib.loading.unindexed import image_without_series  # rare: imported then

                image = image_without_series(path)
            if image is None or image.sop_uid in seen:
                skipped.append(SkippedFile(path, str(exc)))
                continue
            seen.add(image.sop_uid)
            fields = {**image.__dict__, "path": os.path.abspath(path), "generated_series_uid": True}
            series.setdefault(image.series_uid, []).append(InstanceSource(**fields))
            continue
        v = parsed.values
        sop = str(v["SOPInstanceUID"])
        if sop in seen:
            skipped.append(SkippedFile(path, "duplicate SOPInstanceUID"))
            continue
        seen.add(sop)
        uid = str(v["SeriesInstanceUID"])
        series.setdefault(uid, []).append(
            InstanceSource(
                sop_uid=sop,
                series_uid=uid,
                path=os.path.abspath(path),
                transfer_syntax=parsed.transfer_syntax,
                pixel_offset=parsed.pixel_offset,
                pixel_length=parsed.pixel_length,
                header=parsed.header,
                number_of_frames=int(v["NumberOfFrames"] or 1),  # type: ignore[call-overload]
                sop_class=str(v["SOPClassUID"]),
                instance_number=v["InstanceNumber"],  # type: ignore[arg-type]
                # only the loader's tags: the index's UIDs and names are not kept per file
                scanned=None if parsed.scanned is None else _by_keyword(parsed.scanned),
            )
        )
    # the order the database uses, so both origins see the same order
    for uid in series:
        series[uid].sort(key=lambda s: (s.instance_number is None, s.instance_number or 0, s.sop_uid))
    return series, skipped
