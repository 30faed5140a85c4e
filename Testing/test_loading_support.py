"""Helpers for the loading tests (no tests here): edit synthetic series into the edge cases.

Expected values in the loading tests come from how the files were written here (positions,
pixels), from the shared manifest, or from another tool (pydicom, dcm2niix, SimpleITK): never
from the loader under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRBigEndian

from dicomplus_testing.synthetic import SyntheticSeries, make_series
from DICOMPlusLib.database import Database


def edit(files, change) -> None:
    """``change(ds, index)`` on each file (index in the order given), saved in place."""
    for index, path in enumerate(files):
        ds = pydicom.dcmread(path)
        change(ds, index)
        ds.save_as(path, enforce_file_format=True)


def geometric_files(series: SyntheticSeries) -> list[Path]:
    """The files of a synthetic series in geometric (k) order."""
    by_uid = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in series.files}
    return [by_uid[uid] for uid in series.sop_uids]


def ds_str(x: float) -> str:
    return f"{round(x, 6) + 0.0:.6g}"


def tilt_series(series: SyntheticSeries, tilt_deg: float, *, tag: bool) -> np.ndarray:
    """Shift slice k along the column direction by k*step*tan(tilt) (a gantry tilt about the row
    axis); return the exact sheared IJK->LPS matrix of the result."""
    m = series.ijk_to_lps.copy()
    c = m[:3, 1] / np.linalg.norm(m[:3, 1])
    step = float(np.linalg.norm(m[:3, 2]))
    shift = step * math.tan(math.radians(tilt_deg))
    files = geometric_files(series)

    def change(ds, k):
        p = np.array([float(x) for x in ds.ImagePositionPatient]) + c * shift * k
        ds.ImagePositionPatient = [ds_str(x) for x in p]
        if tag:
            ds.GantryDetectorTilt = ds_str(tilt_deg)

    edit(files, change)
    m[:3, 2] = m[:3, 2] + c * shift
    return m


def to_big_endian(files) -> None:
    """Rewrite files as explicit VR big endian (PS3.5 A.3, retired but still met)."""
    for path in files:
        ds = pydicom.dcmread(path)
        values = ds.pixel_array
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        ds.PixelData = values.astype(values.dtype.newbyteorder(">")).tobytes()
        pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)


def database_with(tmp_path: Path, *folders, link: bool = False) -> Database:
    db = Database(tmp_path / "db")
    for folder in folders:
        report = db.import_paths([str(folder)], link=link)
        assert report.added > 0, report.to_dict()
    return db


def series_uid_of(folder: Path) -> str:
    for path in sorted(Path(folder).iterdir()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if "SeriesInstanceUID" in ds:
            return ds.SeriesInstanceUID
    raise AssertionError(f"no series in {folder}")


def make(folder: Path, **kwargs) -> SyntheticSeries:
    return make_series(folder, **kwargs)


def columns(matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit directions 3x3, spacings 3, origin 3) of a 4x4 IJK->xyz matrix."""
    m = np.asarray(matrix, float)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    return m[:3, :3] / spacing, spacing, m[:3, 3]


def assert_matrix(actual, expected, *, mm: float = 1e-3, direction: float = 1e-4) -> None:
    da, sa, oa = columns(actual)
    de, se, oe = columns(expected)
    assert np.allclose(sa, se, atol=mm), (sa, se)
    assert np.allclose(oa, oe, atol=mm), (oa, oe)
    assert np.allclose(da, de, atol=direction), (da, de)
