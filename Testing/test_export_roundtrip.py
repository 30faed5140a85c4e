"""Export -> import -> load: the voxels and geometry come back through DICOMPlusLib.loading (a
reader written separately from the exporter), through highdicom for the multi-frame secondary
capture, and for real series from ../shared/data (a gantry-tilted CT, an oblique MR)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database
from DICOMPlusLib.export.series import SeriesMetadata, export_volume_to_study

loading = pytest.importorskip("DICOMPlusLib.loading")


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (
        math.cos(ax),
        math.sin(ax),
        math.cos(ay),
        math.sin(ay),
        math.cos(az),
        math.sin(az),
    )
    return (
        np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    )


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "db")
    yield database
    database.close()


def _only_volume(db, series_uid):
    volumes = loading.load_series(db, series_uid)
    assert len(volumes) == 1, [v.info.label for v in volumes]
    return volumes[0]


@pytest.mark.parametrize("modality", ["CT", "MR", "OT"])
@pytest.mark.parametrize("kind", ["int", "float", "sheared"])
def test_export_import_load(db, tmp_path, modality, kind):
    source = make_series(tmp_path / "src", n=4, rows=16, cols=12)
    db.import_paths([source.folder])
    rng = np.random.default_rng(7)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation(0.2, 0.4, -0.3) @ np.diag([0.8, 0.6, 3.0])
    matrix[:3, 3] = [12.5, -40.0, 7.25]
    if kind == "sheared":
        matrix[:3, 2] += matrix[:3, 1] * 0.5  # the stack leans along j: a tilted acquisition
    if kind == "float":
        volume = (rng.random((5, 16, 12)) * 10.0 - 3.0).astype(np.float32)
    else:
        volume = rng.integers(-1000, 1000, size=(5, 16, 12)).astype(np.int16)
    result = export_volume_to_study(db, source.study_uid, volume, matrix, SeriesMetadata(modality=modality))
    assert result.indexed
    loaded = _only_volume(db, result.series_uid)
    assert loaded.array.shape == volume.shape
    assert np.abs(loaded.ijk_to_lps - matrix).max() < 1e-4
    if kind == "float":
        tolerance = result.encoding.max_error + 1e-5 * float(np.abs(volume).max())  # float32 output
        assert np.abs(loaded.array.astype(np.float64) - volume).max() <= tolerance
    else:
        assert np.array_equal(loaded.array, volume)


def test_load_folder_of_exported_files(tmp_path):
    source = make_series(tmp_path / "src", n=3, rows=8, cols=8)
    with Database(tmp_path / "db") as db:
        db.import_paths([source.folder])
        result = export_volume_to_study(
            db,
            source.study_uid,
            source.pixels,
            source.ijk_to_lps,
            SeriesMetadata(modality="CT"),
            out_dir=tmp_path / "out",
            index=False,
        )
    volumes = loading.load_folder(tmp_path / "out")
    assert len(volumes) == 1
    assert volumes[0].series_uid == result.series_uid
    assert np.array_equal(volumes[0].array, source.pixels)
    assert np.allclose(volumes[0].ijk_to_lps, source.ijk_to_lps, atol=1e-5)


def test_multiframe_secondary_capture_geometry_in_highdicom(db, tmp_path):
    hd = pytest.importorskip("highdicom")
    source = make_series(tmp_path / "src", n=2, rows=8, cols=8)
    db.import_paths([source.folder])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation(0.5, -0.1, 0.9) @ np.diag([1.5, 0.75, 2.0])
    matrix[:3, 3] = [5.0, 6.0, -7.0]
    volume = np.random.default_rng(3).integers(0, 500, size=(4, 10, 9)).astype(np.int16)
    result = export_volume_to_study(
        db, source.study_uid, volume, matrix, SeriesMetadata(modality="OT"), out_dir=tmp_path / "out"
    )
    hd_volume = hd.imread(result.files[0]).get_volume()
    # Map every highdicom voxel to our index space through both affines: same place, same value.
    indices = np.stack(
        np.meshgrid(*[np.arange(n) for n in hd_volume.array.shape], indexing="ij"), -1
    ).reshape(-1, 3)
    lps = hd_volume.affine[:3, :3] @ indices.T + hd_volume.affine[:3, 3:4]
    ijk = np.linalg.solve(matrix[:3, :3], lps - matrix[:3, 3:4]).T
    assert np.abs(ijk - np.rint(ijk)).max() < 1e-4
    i, j, k = np.rint(ijk).astype(int).T
    assert np.array_equal(hd_volume.array.reshape(-1), volume[k, j, i].astype(hd_volume.array.dtype))


@pytest.mark.parametrize(
    "series_id, modality",
    [("dev_ct_gantry_tilt", "CT"), ("dev_mr_oblique", "MR"), ("dev_ct_axial_plain", "OT")],
)
def test_real_series_round_trip(db, manifest, series_id, modality):
    entry = manifest[series_id]
    db.import_paths([entry["folder"]], link=True)
    series = db.search("series", {})
    assert len(series) == 1
    original = _only_volume(db, series[0].SeriesInstanceUID)
    result = export_volume_to_study(
        db, series[0].StudyInstanceUID, original.array, original.ijk_to_lps, SeriesMetadata(modality=modality)
    )
    reloaded = _only_volume(db, result.series_uid)
    assert np.abs(reloaded.ijk_to_lps - original.ijk_to_lps).max() < 1e-4
    assert np.array_equal(reloaded.array, original.array)
    # the manifest's geometry, derived independently of both loader and exporter
    expected = np.array(entry["expected"]["ijk_to_lps"], float)
    assert np.abs(reloaded.ijk_to_lps - expected).max() < 1e-3
