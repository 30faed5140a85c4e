"""Synthetic CT/MR series with known geometry, for fast unit tests (the instances come from the
library's one CT/MR builder, DICOMPlusLib.synthetic, which also makes the sample PACS data).

Every series is consistent (patient, study, series, frame of reference, positions stepped along
the slice normal) and its expected IJK->LPS matrix is returned, in the convention of
../shared/data/series/manifest.json: i along the row cosine, j along the column cosine, k over
slices by increasing position along row x column, origin at the first slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from DICOMPlusLib.synthetic import SeriesHeader, SlicePlane, image_instance


@dataclass
class SyntheticSeries:
    folder: Path
    files: list[Path]
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    ijk_to_lps: np.ndarray
    pixels: np.ndarray  # stored values, shape (k, j, i) in geometric order
    extra: dict = field(default_factory=dict)


def make_series(
    folder: str | Path,
    *,
    n: int = 8,
    rows: int = 32,
    cols: int = 32,
    modality: str = "CT",
    row_cosine=(1.0, 0.0, 0.0),
    col_cosine=(0.0, 1.0, 0.0),
    pixel_spacing=(0.7, 0.8),
    slice_step: float = 2.5,
    origin=(-100.0, -120.0, -50.0),
    patient_id: str = "SYN001",
    patient_name: str = "Synthetic^Patient",
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20240102",
    study_description: str = "Synthetic study",
    series_description: str = "Synthetic series",
    series_number: int = 1,
    fat_header: bool = False,
    shuffle: bool = True,
    file_names: list[str] | None = None,
    seed: int = 0,
    sop_uids: list[str] | None = None,
) -> SyntheticSeries:
    """Write ``n`` single-frame slices into ``folder`` and return what was written.

    ``fat_header`` adds ~9.6 KB of realistic header (a private block and a 20-item sequence),
    as found in scanner files, for import benchmarks.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    r = np.asarray(row_cosine, float)
    c = np.asarray(col_cosine, float)
    normal = np.cross(r, c)
    o = np.asarray(origin, float)
    pixels = rng.integers(0, 2000, size=(n, rows, cols), dtype=np.int16)
    order = list(range(n))
    if shuffle:
        rng.shuffle(order)
    header = SeriesHeader(
        modality=modality,
        study_uid=study_uid,
        series_uid=series_uid,
        frame_uid=frame_uid,
        patient_id=patient_id,
        patient_name=patient_name,
        study_date=study_date,
        accession="ACC" + patient_id,
        study_description=study_description,
        series_description=series_description,
        series_number=series_number,
        extra={} if modality == "CT" else {"ProtocolName": "Synthetic T1"},
    )
    files: list[Path] = []
    uids: list[str] = []
    for written, k in enumerate(order):
        sop_uid = sop_uids[k] if sop_uids else generate_uid()
        plane = SlicePlane(position=tuple(o + k * slice_step * normal), row_cosine=tuple(r), col_cosine=tuple(c),
                           pixel_spacing=tuple(pixel_spacing), thickness=slice_step)  # fmt: skip
        ds = image_instance(header, plane, pixels[k], sop_uid=sop_uid, instance_number=k + 1)
        if fat_header:
            _fatten(ds)
        name = file_names[written] if file_names else f"IM{written:05d}.dcm"
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
        uids.append(sop_uid)
    # sop uids in geometric order
    by_k = {k: uids[i] for i, k in enumerate(order)}
    affine = np.eye(4)
    affine[:3, 0] = r * pixel_spacing[1]
    affine[:3, 1] = c * pixel_spacing[0]
    affine[:3, 2] = normal * slice_step
    affine[:3, 3] = o
    return SyntheticSeries(
        folder=folder,
        files=files,
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uids=[by_k[k] for k in range(n)],
        ijk_to_lps=affine,
        pixels=pixels,
    )


def _fatten(ds: Dataset) -> None:
    """About 9.6 KB of header: a private block of 120 LO values and a 20-item sequence."""
    block = ds.private_block(0x0029, "DICOMPLUS SYNTHETIC", create=True)
    for i in range(120):
        block.add_new(i + 0x10, "LO", f"private value {i:03d} " + "x" * 32)
    items = []
    for i in range(20):
        item = Dataset()
        item.CodeValue = f"C{i:04d}"
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = f"Synthetic code meaning number {i:02d} " + "y" * 30
        items.append(item)
    ds.ProcedureCodeSequence = Sequence(items)
