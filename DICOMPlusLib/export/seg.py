"""Export a labelmap as a DICOM Segmentation (PS3.3 A.51) that references its source series.

Written with highdicom (``highdicom.seg.Segmentation``): a binary SEG with one segment per label
value, each with its label, its recommended display colour (CIELab, PS3.3 C.10.7.1.1) and coded
category and type (SNOMED CT "Tissue" unless told). The labelmap is given with its own IJK->LPS
matrix and handed to highdicom as a volume, so its frames carry their own plane positions
(PS3.3 C.7.6.16.2.3); when the labelmap is on the source series' grid, highdicom also records
which source instance each frame was derived from. Patient, study and frame of reference come
from the source images; the SEG is a new series in their study.

highdicom is imported on first use: exporting a SEG needs it installed, nothing else does.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from DICOMPlusLib import __version__
from DICOMPlusLib.dataclasses_lite import dataclass, replace
from DICOMPlusLib.errors import DiskFullError, ExportError, space_error_in
from DICOMPlusLib.export.clean import ExportNote, clean_copied_values
from DICOMPlusLib.export.files import whole_or_none
from DICOMPlusLib.export.geometry import slice_geometry
from DICOMPlusLib.export.reference import next_series_number
from DICOMPlusLib.export.uids import UIDGenerator, ensure_series_is_new, new_uid, validate_uid

#: SNOMED CT "Tissue" (CID 7150 category and CID 7151 type alike): a neutral default.
TISSUE = ("85756007", "SCT", "Tissue")
ALGORITHM_TYPES = ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC")


@dataclass(frozen=True)
class SegmentInfo:
    """One segment: the label value it has in the labelmap and how to describe it."""

    value: int
    label: str
    color: tuple[int, int, int] = (128, 174, 128)  # RGB 0..255 (Slicer's default "tissue" green)
    category: tuple[str, str, str] = TISSUE  # (code value, coding scheme, meaning)
    property_type: tuple[str, str, str] = TISSUE
    algorithm_type: str = "MANUAL"
    algorithm_name: str = ""  # required for SEMIAUTOMATIC and AUTOMATIC
    algorithm_version: str = "1"


@dataclass(frozen=True)
class SegExportResult:
    """What exporting a segmentation as DICOM SEG wrote, and whether it was indexed."""

    study_uid: str
    series_uid: str
    sop_uid: str
    path: Path
    segment_numbers: dict[int, int]  # label value -> segment number
    frames: int
    indexed: bool = False
    notes: tuple[ExportNote, ...] = ()

    def to_dict(self) -> dict:
        return {
            "notes": [n.to_dict() for n in self.notes],
            "StudyInstanceUID": self.study_uid,
            "SeriesInstanceUID": self.series_uid,
            "SOPInstanceUID": self.sop_uid,
            "path": str(self.path),
            "segments": {str(k): v for k, v in self.segment_numbers.items()},
            "frames": self.frames,
            "indexed": self.indexed,
        }


def _highdicom():
    try:
        import highdicom
    except ImportError:  # pragma: no cover - depends on the installation
        raise ExportError("exporting a DICOM SEG needs highdicom: pip install highdicom") from None
    return highdicom


def _description(hd, number: int, segment: SegmentInfo):
    from pydicom.sr.coding import Code

    if segment.algorithm_type not in ALGORITHM_TYPES:
        raise ExportError(f"segment {segment.label!r}: algorithm type must be one of {ALGORITHM_TYPES}")
    if (
        not isinstance(segment.label, str)
        or not segment.label
        or len(segment.label) > 64
        or "\\" in segment.label
    ):
        raise ExportError(f"segment label {segment.label!r} must be 1 to 64 characters, no backslash")
    if len(segment.color) != 3 or not all(0 <= int(c) <= 255 for c in segment.color):
        raise ExportError(f"segment {segment.label!r}: colour must be three integers 0..255")
    algorithm = None
    if segment.algorithm_type != "MANUAL":
        if not segment.algorithm_name:
            raise ExportError(
                f"segment {segment.label!r}: a {segment.algorithm_type} segment needs an algorithm name"
            )
        algorithm = hd.AlgorithmIdentificationSequence(
            name=segment.algorithm_name,
            family=Code("123109", "DCM", "Manual Processing")
            if segment.algorithm_type == "SEMIAUTOMATIC"
            else Code("113259", "DCM", "Artificial Intelligence"),
            version=segment.algorithm_version,
        )
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=segment.label,
        segmented_property_category=Code(*segment.category),
        segmented_property_type=Code(*segment.property_type),
        algorithm_type=segment.algorithm_type,
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*(int(c) for c in segment.color)),
    )


def _relabelled(labelmap: np.ndarray, segments: Sequence[SegmentInfo]) -> tuple[np.ndarray, dict[int, int]]:
    """Label values -> segment numbers 1..N (highdicom's label-map input)."""
    if labelmap.dtype.kind not in "biu":
        raise ExportError(f"a labelmap must hold integers, got {labelmap.dtype}")
    values = [int(s.value) for s in segments]
    if len(set(values)) != len(values) or any(v <= 0 for v in values):
        raise ExportError("segment values must be distinct positive integers (0 is background)")
    present = set(np.unique(labelmap).tolist()) - {0}
    unknown = sorted(present - set(values))
    if unknown:
        raise ExportError(f"label values {unknown} have no segment description; describe or clear them")
    numbers = {v: n for n, v in enumerate(values, start=1)}
    lut = np.zeros(int(max(max(values), int(labelmap.max()))) + 1, dtype=np.uint16)
    for value, number in numbers.items():
        lut[value] = number
    dtype = np.uint8 if len(values) < 256 else np.uint16
    return lut[labelmap.astype(np.int64)].astype(dtype), numbers


def export_segmentation(
    labelmap,
    ijk_to_lps,
    source_images: Sequence[Dataset],
    segments: Sequence[SegmentInfo],
    out_path: str | os.PathLike,
    *,
    series_description: str = "Segmentation",
    series_number: int = 1,
    series_uid: str | None = None,
    content_label: str = "SEGMENTATION",
    uids: UIDGenerator | None = None,
    db=None,
) -> SegExportResult:
    """Write ``labelmap`` (``[k, j, i]`` integers, geometry ``ijk_to_lps``) as a SEG of
    ``source_images`` (their headers suffice) into ``out_path``.

    Raises :class:`ExportError` for labels without a description, a grid that is not in the
    source's frame of reference, an existing series UID (``db``), or a file already there.
    """
    hd = _highdicom()
    if not source_images:
        raise ExportError("a SEG needs the images it segments (the source series)")
    if not segments:
        raise ExportError("a SEG needs at least one segment")
    volume = np.asarray(labelmap)
    if volume.ndim == 2:
        volume = volume[None]
    if volume.ndim != 3:
        raise ExportError(f"expected a labelmap indexed [k, j, i], got shape {volume.shape}")
    pixels, numbers = _relabelled(volume, segments)
    matrix = np.asarray(ijk_to_lps, dtype=float)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise ExportError("the labelmap's IJK->LPS matrix must be a finite 4x4 matrix")
    frame_uid = str(source_images[0].get("FrameOfReferenceUID") or "")
    validate_uid(frame_uid, "FrameOfReferenceUID of the source series")
    series_uid = series_uid or new_uid(uids)
    ensure_series_is_new(db, series_uid)
    sop_uid = new_uid(uids)
    if not isinstance(series_description, str) or len(series_description) > 64 or "\\" in series_description:
        raise ExportError(f"SeriesDescription {series_description!r}: at most 64 characters, no backslash")
    sources, notes = clean_copied_values(source_images)
    try:
        placement, note = _placement(hd, pixels, matrix, frame_uid)
        if note is not None:
            notes.append(note)
        descriptions = [_description(hd, numbers[s.value], s) for s in segments]
        now = datetime.datetime.now()
        seg = hd.seg.Segmentation(
            source_images=sources,
            **placement,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=series_uid,
            series_number=int(series_number),
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer="DICOMPlus",
            manufacturer_model_name="DICOMPlus",
            software_versions=__version__,
            device_serial_number="0",
            content_label=content_label,
            content_description="Segmentation exported by DICOMPlus",
            series_description=series_description,
            series_date=now.date(),
            series_time=now.time().replace(microsecond=0),
        )
    except ExportError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ExportError(f"highdicom could not build the SEG: {exc}") from exc
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with whole_or_none(path.parent) as files, files.create(path.name) as f:
            seg.save_as(f, enforce_file_format=True)
    except FileExistsError:
        raise ExportError(f"{path} already exists; choose another file name") from None
    except OSError as exc:
        if space_error_in(exc) is not None:  # whole or none: nothing was kept
            raise DiskFullError(str(path.parent)) from exc
        raise ExportError(f"cannot write {path}: {exc}") from exc
    return SegExportResult(
        study_uid=str(seg.StudyInstanceUID),
        series_uid=series_uid,
        sop_uid=sop_uid,
        path=path,
        segment_numbers=numbers,
        frames=int(seg.NumberOfFrames),
        notes=tuple(notes),
    )


def _placement(hd, pixels: np.ndarray, matrix: np.ndarray, frame_uid: str) -> tuple[dict, ExportNote | None]:
    """highdicom arguments placing the frames. An orthogonal grid goes as a highdicom Volume
    (its axes reordered: highdicom indexes (slice, row, column) = our (k, j, i)). A sheared grid
    (a gantry-tilted source) cannot be a Volume; its frames are given their own positions, as
    the scalar export writes them (PS3.3 C.7.6.16.2.3: every frame has its own Plane Position),
    so readers that follow positions get the exact grid back."""
    if _orthogonal(matrix):
        volume = hd.Volume(
            pixels, matrix[:, [2, 1, 0, 3]], coordinate_system="PATIENT", frame_of_reference_uid=frame_uid
        )
        return {"pixel_array": volume}, None
    geometry = slice_geometry(matrix, pixels.shape[0])
    frames = pixels[::-1] if geometry.flipped else pixels
    patient = hd.CoordinateSystemNames.PATIENT
    placement = {
        "pixel_array": np.ascontiguousarray(frames),
        "plane_positions": [
            hd.PlanePositionSequence(patient, [float(x) for x in p]) for p in geometry.positions
        ],
        "plane_orientation": hd.PlaneOrientationSequence(patient, [float(x) for x in geometry.orientation]),
        "pixel_measures": hd.PixelMeasuresSequence(
            pixel_spacing=[float(x) for x in geometry.pixel_spacing],
            slice_thickness=float(geometry.spacing_along_normal),
            spacing_between_slices=float(geometry.spacing_along_normal),
        ),
    }
    note = ExportNote(
        "sheared_grid",
        f"the labelmap's grid is sheared by {geometry.tilt_deg:.2f} deg (a tilted source): every frame is written "
        "with its own position, exact for readers that follow positions; readers that assume an orthogonal "
        "grid see the tilt",
    )
    return placement, note


def _orthogonal(matrix: np.ndarray, tolerance: float = 1e-4) -> bool:
    columns = matrix[:3, :3] / np.linalg.norm(matrix[:3, :3], axis=0)
    return bool(np.max(np.abs(columns.T @ columns - np.eye(3))) <= tolerance)


def source_headers(db, series_uid: str) -> list[Dataset]:
    """The stored headers of a series' instances (what a SEG needs of its source)."""
    validate_uid(series_uid, "SeriesInstanceUID of the source series")
    records = db.instances(series_uid)
    if not records:
        raise ExportError(f"series {series_uid} is not in the database ({db.path})")
    return [db.header(r.SOPInstanceUID) for r in records]


def export_segmentation_for_series(
    db,
    source_series_uid: str,
    labelmap,
    ijk_to_lps,
    segments: Sequence[SegmentInfo],
    *,
    out_path: str | os.PathLike | None = None,
    index: bool = True,
    series_description: str = "Segmentation",
    series_number: int | None = None,
    uids: UIDGenerator | None = None,
) -> SegExportResult:
    """Export a SEG of the series ``source_series_uid`` of ``db``, numbered after the study's
    last series, and index it (``out_path`` None: written to a temporary file first)."""
    import tempfile

    sources = source_headers(db, source_series_uid)
    if series_number is None:
        series_number = next_series_number(db, str(sources[0].StudyInstanceUID))
    temporary = None
    if out_path is None:
        if not index:
            raise ExportError("nowhere to export to: give an output file or index into the database")
        temporary = tempfile.mkdtemp(prefix="dicomplus-seg-")
        out_path = Path(temporary) / "SEG.dcm"
    try:
        result = export_segmentation(
            labelmap,
            ijk_to_lps,
            sources,
            segments,
            out_path,
            series_description=series_description,
            series_number=series_number,
            uids=uids,
            db=db,
        )
        if not index:
            return result
        try:
            report = db.import_paths([str(result.path)], link=False)
            if report.added != 1:
                reasons = "; ".join(s.reason for s in report.skipped) or "unknown reason"
                raise ExportError(f"the SEG could not be indexed: {reasons}")
        except BaseException:  # whole or none: the same export again is not refused for the file
            with contextlib.suppress(OSError):
                Path(result.path).unlink()
            raise
        path = Path(db.instance(result.sop_uid).path) if temporary else result.path
        return replace(result, path=path, indexed=True)
    finally:
        if temporary is not None:
            import shutil

            shutil.rmtree(temporary, ignore_errors=True)
