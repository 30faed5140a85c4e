"""Export a scalar volume as a new DICOM series in a chosen study.

``export_volume`` writes files from an array, its IJK->LPS matrix and the stored header of an
instance of the destination study; ``export_volume_to_study`` picks that header from the
database, checks the new series against it, and can index the result (so it shows up in the
browser and can be sent like any other series).

What is written (see :mod:`iods` for the modules and :mod:`geometry` for the geometry rules):

* the patient and study modules of the destination study, copied (never invented); values
  invalid for their VR are written empty (Type 2) or left out, and reported (:mod:`clean`);
* a new series (new SeriesInstanceUID; a given one is validated and refused if the database
  already has it), numbered after the study's last series unless told;
* the frame of reference of the destination study reused by default (the volume's coordinates
  are the study's scanner coordinates when it was loaded from it), or a new or given one;
* CT or MR Image Storage, one file per slice, when the modality is CT or MR; otherwise a
  multi-frame grayscale word Secondary Capture that keeps the geometry;
* 16-bit stored values with one rescale for the series (:mod:`pixels`), exact for integer data.

Only pydicom writes; no external tool runs.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.dataclasses_lite import dataclass, field, replace
from DICOMPlusLib.errors import DiskFullError, ExportError, space_error_in
from DICOMPlusLib.export import iods
from DICOMPlusLib.export.clean import ExportNote, clean_copied_values
from DICOMPlusLib.export.files import NewFiles, whole_or_none
from DICOMPlusLib.export.geometry import SliceGeometry, slice_geometry
from DICOMPlusLib.export.pixels import PixelEncoding, plan_encoding
from DICOMPlusLib.export.reference import next_series_number, series_laterality, study_reference
from DICOMPlusLib.export.uids import UIDGenerator, ensure_series_is_new, new_uid, validate_uid
from DICOMPlusLib.jobs import CancelToken, ProgressCallback

logger = get_logger(__name__)


#: PS3.3 C.7.3.1.1.2 Patient Position defined terms.
PATIENT_POSITIONS = frozenset(
    "HFP HFS HFDR HFDL FFDR FFDL FFP FFS LFP LFS RFP RFS AFDR AFDL PFDR PFDL".split()
)
_CS = re.compile(r"^[A-Z0-9 _]{0,16}$")


@dataclass(frozen=True)
class SeriesMetadata:
    """What the caller says about the new series. Defaults are documented per field."""

    #: CT or MR: CT/MR Image Storage. Anything else (None, OT, PT...): a multi-frame secondary
    #: capture whose Modality is this value (OT when None).
    modality: str | None = None
    series_description: str = "DICOMPlus export"
    #: None: one more than the study's largest (export_volume_to_study), else 1.
    series_number: int | None = None
    #: None: a new UID. A given UID is validated and must not exist in the database.
    series_instance_uid: str | None = None
    #: "reuse" (the reference's, new if it has none), "new", or a FrameOfReferenceUID.
    frame_of_reference: str = "reuse"
    #: None: the reference's BodyPartExamined; "" to leave it out.
    body_part_examined: str | None = None
    #: None: the reference's when its frame of reference is reused, else empty (Type 2C).
    patient_position: str | None = None
    #: (center, width); None: the range of the values.
    window: tuple[float, float] | None = None
    manufacturer: str = "DICOMPlus"
    #: None: DERIVED\SECONDARY plus AXIAL for CT (PS3.3 C.8.2.1.1.1), OTHER otherwise.
    image_type: tuple[str, ...] | None = None
    derivation_description: str = "Volume exported by DICOMPlus"

    @property
    def kind(self) -> str:
        modality = (self.modality or "").upper()
        return modality if modality in ("CT", "MR") else "SC"


@dataclass(frozen=True, eq=False)
class ExportResult:
    """What an export wrote. ``sop_uids`` and ``files`` are in slice order (along the normal)."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    modality: str
    series_number: int
    sop_uids: tuple[str, ...]
    files: tuple[Path, ...]
    ijk_to_lps: np.ndarray  # the geometry as written (right-handed)
    encoding: PixelEncoding
    tilt_deg: float = 0.0
    flipped: bool = False
    indexed: bool = False
    notes: tuple[ExportNote, ...] = ()  # values of the reference cleaned (see :mod:`clean`)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "StudyInstanceUID": self.study_uid,
            "SeriesInstanceUID": self.series_uid,
            "FrameOfReferenceUID": self.frame_of_reference_uid,
            "SOPClassUID": self.sop_class_uid,
            "Modality": self.modality,
            "SeriesNumber": self.series_number,
            "instances": len(self.sop_uids),
            "files": [str(f) for f in self.files],
            "rescale": {
                "slope": self.encoding.slope,
                "intercept": self.encoding.intercept,
                "exact": self.encoding.exact,
                "max_error": self.encoding.max_error,
            },
            "tilt_deg": round(self.tilt_deg, 6),
            "flipped": self.flipped,
            "indexed": self.indexed,
            "notes": [n.to_dict() for n in self.notes],
        }


def _check_text(value: str, what: str, limit: int) -> str:
    if not isinstance(value, str) or "\\" in value or len(value) > limit or any(ord(c) < 32 for c in value):
        raise ExportError(f"{what} {value!r} is not a valid value (at most {limit} characters, no backslash)")
    return value


def _check_cs(value: str, what: str) -> str:
    if not isinstance(value, str) or not _CS.match(value):
        raise ExportError(f"{what} {value!r} is not a valid code string (A-Z, 0-9, space, _; 16 characters)")
    return value


def _context(
    meta: SeriesMetadata,
    reference: Dataset | None,
    encoding: PixelEncoding,
    series_number: int,
    uids: UIDGenerator | None,
) -> iods.SeriesContext:
    kind = meta.kind
    modality = _check_cs((meta.modality or "OT").upper(), "Modality") or "OT"
    series_uid = meta.series_instance_uid or new_uid(uids)
    validate_uid(series_uid, "SeriesInstanceUID")
    if not 0 <= series_number < 2**31:
        raise ExportError(f"SeriesNumber {series_number} is out of range (0 to 2147483647)")
    ref_for = str(reference.get("FrameOfReferenceUID") or "") if reference is not None else ""
    reuse = False
    if meta.frame_of_reference == "reuse":
        if ref_for:
            validate_uid(ref_for, "FrameOfReferenceUID of the reference study")
            for_uid, reuse = ref_for, True
        else:
            for_uid = new_uid(uids)
    elif meta.frame_of_reference == "new":
        for_uid = new_uid(uids)
    else:
        for_uid = validate_uid(meta.frame_of_reference, "FrameOfReferenceUID")
        reuse = for_uid == ref_for
    indicator = str(reference.get("PositionReferenceIndicator") or "") if reuse and reference else ""
    if meta.body_part_examined is None:
        body_part = str(reference.get("BodyPartExamined") or "").upper() if reference is not None else ""
        if not _CS.match(body_part):
            body_part = ""  # a malformed value in the reference is not worth failing for: leave it out
    else:
        body_part = _check_cs(meta.body_part_examined.upper(), "BodyPartExamined")
    position = meta.patient_position
    if position is None:
        position = str(reference.get("PatientPosition") or "").strip() if reuse and reference else ""
        if position not in PATIENT_POSITIONS:
            position = ""  # unknown or malformed in the reference: Type 2, so empty
    if position and position not in PATIENT_POSITIONS:
        raise ExportError(
            f"PatientPosition {position!r} is not a defined term (PS3.3 C.7.3.1.1.2: "
            f"{', '.join(sorted(PATIENT_POSITIONS))})"
        )
    image_type = meta.image_type or ("DERIVED", "SECONDARY", "AXIAL" if kind == "CT" else "OTHER")
    for value in image_type:
        _check_cs(value, "ImageType value")
    window = meta.window
    if window is None:
        lo, hi = encoding.minimum, encoding.maximum
        window = ((lo + hi) / 2.0, max(hi - lo, 1.0))
    return iods.SeriesContext(
        kind=kind,
        modality=modality,
        series_uid=series_uid,
        series_number=int(series_number),
        frame_of_reference_uid=for_uid,
        position_reference_indicator=indicator[:64],
        series_description=_check_text(meta.series_description, "SeriesDescription", 64),
        body_part_examined=body_part,
        laterality=series_laterality(reference, body_part),
        patient_position=position,
        manufacturer=_check_text(meta.manufacturer, "Manufacturer", 64),
        image_type=tuple(image_type),
        derivation_description=_check_text(meta.derivation_description, "DerivationDescription", 1024),
        window=(float(window[0]), float(window[1])),
        now=datetime.datetime.now(),
    )


def _as_volume(array) -> np.ndarray:
    volume = np.asarray(array)
    if volume.ndim == 2:
        volume = volume[None]
    if volume.ndim != 3:
        raise ExportError(f"expected a 3D array indexed [k, j, i], got shape {volume.shape}")
    if min(volume.shape) < 1 or volume.shape[1] > 65535 or volume.shape[2] > 65535:
        raise ExportError(f"cannot export an array of shape {volume.shape}")
    return volume


def _write(files: NewFiles, name: str, dataset: Dataset) -> Path:
    """One slice (or the multi-frame file) into a new file of the export's folder."""
    try:
        with files.create(name) as f:
            pydicom.dcmwrite(f, dataset, enforce_file_format=True)
    except FileExistsError:
        raise ExportError(f"{files.folder / name} already exists; export into an empty folder") from None
    except OSError as exc:
        if space_error_in(exc) is not None:  # the export is whole or none: nothing was kept
            raise DiskFullError(str(files.folder)) from exc
        raise ExportError(f"cannot write {files.folder / name}: {exc}") from exc
    return files.folder / name


def export_volume(
    array,
    ijk_to_lps,
    out_dir: str | os.PathLike,
    *,
    reference: Dataset | None = None,
    metadata: SeriesMetadata | None = None,
    uids: UIDGenerator | None = None,
    db=None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ExportResult:
    """Write ``array`` (``[k, j, i]``) with geometry ``ijk_to_lps`` as a new series in
    ``out_dir``, in the study of ``reference`` (a header of an instance of that study; None: a
    new study with empty patient attributes).

    ``db``, when given, is only used to refuse a SeriesInstanceUID that already exists.
    Raises :class:`ExportError` (nothing is left behind) or ``CancelledError`` (idem).
    """
    meta = metadata or SeriesMetadata()
    volume = _as_volume(array)
    geometry = slice_geometry(ijk_to_lps, volume.shape[0])
    notes: list[ExportNote] = []
    if reference is not None:
        (reference,), notes = clean_copied_values([reference])
    encoding = plan_encoding(volume, allow_signed=meta.kind != "SC")
    ctx = _context(
        meta, reference, encoding, meta.series_number if meta.series_number is not None else 1, uids
    )
    ensure_series_is_new(db, ctx.series_uid)
    base = iods.series_base(reference, ctx, encoding, volume.shape[1], volume.shape[2], uids=uids)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    order = range(volume.shape[0] - 1, -1, -1) if geometry.flipped else range(volume.shape[0])
    with whole_or_none(folder) as writer:  # an error, a cancel or a signal leaves no file
        write = _write_multi_frame if ctx.kind == "SC" else _write_slices
        sop_uids, files, error = write(
            writer, base, geometry, volume, order, encoding, uids, progress, cancel
        )
    logger.info("exported %d instances of series %s into %s", len(files), ctx.series_uid, folder)
    return ExportResult(
        study_uid=str(base.StudyInstanceUID),
        series_uid=ctx.series_uid,
        frame_of_reference_uid=ctx.frame_of_reference_uid,
        sop_class_uid=str(base.SOPClassUID),
        modality=ctx.modality,
        series_number=ctx.series_number,
        sop_uids=tuple(sop_uids),
        files=tuple(files),
        ijk_to_lps=geometry.ijk_to_lps(),
        encoding=replace(encoding, max_error=error),
        tilt_deg=geometry.tilt_deg,
        flipped=geometry.flipped,
        notes=tuple(notes),
    )


def _write_slices(writer, base, geometry: SliceGeometry, volume, order, encoding, uids, progress, cancel):
    sop_uids, files, error = [], [], 0.0
    total = volume.shape[0]
    for written, k in enumerate(order):
        if cancel is not None:
            cancel.raise_if_cancelled()
        sop_uid = new_uid(uids)
        stored, slice_error = encoding.encode_measured(volume[k])
        error = max(error, slice_error)
        dataset = iods.single_frame(base, geometry, written, sop_uid, stored)
        files.append(_write(writer, f"IMG{written + 1:05d}.dcm", dataset))
        sop_uids.append(sop_uid)
        if progress is not None:
            progress(written + 1, total, files[-1].name)
    return sop_uids, files, error


def _write_multi_frame(
    writer, base, geometry: SliceGeometry, volume, order, encoding, uids, progress, cancel
):
    stored = np.empty(volume.shape, dtype=encoding.dtype)
    error = 0.0
    for written, k in enumerate(order):
        if cancel is not None:
            cancel.raise_if_cancelled()
        stored[written], slice_error = encoding.encode_measured(volume[k])
        error = max(error, slice_error)
    sop_uid = new_uid(uids)
    dataset = iods.multi_frame(base, geometry, sop_uid, stored.tobytes())
    del stored
    path = _write(writer, "IMG00001.dcm", dataset)
    if progress is not None:
        progress(1, 1, path.name)
    return [sop_uid], [path], error


def export_volume_to_study(
    db,
    study_uid: str,
    array,
    ijk_to_lps,
    metadata: SeriesMetadata | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    index: bool = True,
    uids: UIDGenerator | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ExportResult:
    """Export into the study ``study_uid`` of ``db`` (its stored header is the reference).

    ``out_dir``: where the files go (None: a temporary folder, removed after indexing).
    ``index``: import the new series into ``db`` (copied into its store), so it can be
    browsed, loaded and sent. With ``out_dir=None`` and ``index=True`` the result's ``files``
    are the stored copies.
    """
    if out_dir is None and not index:
        raise ExportError("nowhere to export to: give an output folder or index into the database")
    reference = study_reference(db, study_uid)
    meta = metadata or SeriesMetadata()
    if meta.series_number is None:
        meta = replace(meta, series_number=next_series_number(db, study_uid))
    if meta.series_instance_uid:
        ensure_series_is_new(db, meta.series_instance_uid)
    temporary = None
    if out_dir is None:
        temporary = tempfile.mkdtemp(prefix="dicomplus-export-")
        out_dir = temporary
    try:
        result = export_volume(
            array,
            ijk_to_lps,
            out_dir,
            reference=reference,
            metadata=meta,
            uids=uids,
            db=db,
            progress=progress,
            cancel=cancel,
        )
        if not index:
            return result
        try:
            report = db.import_paths([str(f) for f in result.files], link=False)
            if report.added != len(result.files):
                reasons = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped) or "unknown reason"
                raise ExportError(f"the exported series could not be indexed: {reasons}")
        except BaseException:
            # Whole or none (a full store, a cancel): the new series (its UIDs are new, nobody
            # else has it) leaves the database and its files the output folder, so that the
            # same export again is not refused for files or a series it left behind.
            with contextlib.suppress(Exception):
                db.delete(series=result.series_uid)
            for path in result.files:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        files = result.files
        if temporary is not None:
            files = tuple(Path(db.instance(uid).path) for uid in result.sop_uids)
        return replace(result, files=files, indexed=True)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
