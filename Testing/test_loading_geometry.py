"""Geometry: pure functions, and synthetic stacks whose true geometry is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_loading_support import assert_matrix, edit, geometric_files, make, tilt_series

from DICOMPlusLib.loading import geometry as geo
from DICOMPlusLib.loading import load_folder
from DICOMPlusLib.loading.resample import resample_regular
from DICOMPlusLib.loading.sources import TAGS


def test_spacing_report_regular():
    r = geo.spacing_report([0.0, 2.5, 5.0, 7.5, 10.0])
    assert r.kind == "regular" and r.regular
    assert r.nominal == pytest.approx(2.5)
    assert r.histogram == ((2.5, 4),)
    assert not r.missing and not r.duplicates


def test_spacing_report_missing_slices_say_where():
    r = geo.spacing_report([3.0, 8.0, 13.0, 28.0, 33.0])  # 18 and 23 missing
    assert r.kind == "missing" and not r.regular
    (m,) = r.missing
    assert (m.after, m.count, m.position_mm) == (2, 2, 10.0)
    assert r.nominal == pytest.approx(5.0)
    assert dict(r.histogram) == {5.0: 3, 15.0: 1}


def test_spacing_report_irregular_and_duplicates():
    r = geo.spacing_report([0.0, 1.0, 2.0, 3.7, 4.7])
    assert r.kind == "irregular" and r.minimum == pytest.approx(1.0) and r.maximum == pytest.approx(1.7)
    d = geo.spacing_report([0.0, 2.0, 2.0, 4.0])
    assert d.kind == "duplicates" and d.duplicates == ((1, 2),)
    s = geo.spacing_report([5.0])
    assert s.kind == "single" and s.regular


def test_small_noise_is_regular():
    r = geo.spacing_report([0.0, 4.999, 10.001, 15.0, 19.999])
    assert r.kind == "regular"


def test_sort_is_along_the_normal_not_the_file_order():
    n = np.array([0.0, 0.0, -1.0])  # normal pointing to feet
    positions = np.array([[0, 0, -5.0], [0, 0, 5.0], [0, 0, 0.0]])
    order, d = geo.sort_along_normal(positions, n)
    assert list(order) == [1, 2, 0]  # z = 5, 0, -5: increasing along -z
    assert list(d) == [0.0, 5.0, 10.0]


@pytest.mark.parametrize(
    "row,col",
    [
        ((1, 0, 0), (0, 1, 0)),  # axial
        ((0, 1, 0), (0, 0, -1)),  # sagittal
        ((1, 0, 0), (0, 0, -1)),  # coronal
        ((1, 0, 0), (0, -1, 0)),  # axial, normal to the feet
        ((0.6, 0.8, 0.0), (0.0, 0.0, -1.0)),  # oblique
    ],
)
def test_synthetic_orientations_load_right_handed_with_the_written_geometry(tmp_path, row, col):
    series = make(tmp_path / "s", n=6, row_cosine=row, col_cosine=col, shuffle=True)
    (v,) = load_folder(series.folder)
    assert_matrix(v.ijk_to_lps, series.ijk_to_lps, mm=1e-4, direction=1e-6)
    assert np.linalg.det(v.ijk_to_lps[:3, :3]) > 0
    assert v.sop_uids == tuple(series.sop_uids)
    assert np.array_equal(v.array, series.pixels.astype(np.int16) - 1024)  # CT: intercept -1024
    assert v.warnings == ()


@pytest.mark.parametrize("tag", [True, False])
def test_gantry_tilt_measured_from_positions_with_or_without_the_tag(tmp_path, tag):
    series = make(tmp_path / "s", n=8, slice_step=2.5)
    exact = tilt_series(series, 12.0, tag=tag)
    (v,) = load_folder(series.folder)
    assert_matrix(v.ijk_to_lps, exact)  # positions are DS strings of 6 significant digits
    assert v.info.tilt_deg == pytest.approx(12.0, abs=0.01)
    (w,) = [w for w in v.warnings if w.code == "gantry_tilt"]
    assert ("GantryDetectorTilt says 12" in w.message) is tag
    assert not geo.is_orthogonal(v.ijk_to_lps) and geo.is_right_handed(v.ijk_to_lps)
    # the exact matrix puts every slice corner where its own position puts it (Slicer's check)
    assert geo.max_corner_error(v.ijk_to_lps, v.info.slice_positions, 32, 32) < 1e-3


def test_tilt_tag_without_tilted_positions_is_reported_and_ignored(tmp_path):
    series = make(tmp_path / "s", n=4)
    edit(series.files, lambda ds, i: setattr(ds, "GantryDetectorTilt", "15"))
    (v,) = load_folder(series.folder)
    assert geo.is_orthogonal(v.ijk_to_lps)
    assert "gantry_tilt_tag_ignored" in {w.code for w in v.warnings}


def test_resampling_a_tilted_stack_moves_every_voxel_to_its_true_place(tmp_path):
    # shift per slice = one row (0.7 mm) so the resampled grid holds the original voxels exactly
    series = make(
        tmp_path / "s",
        n=6,
        slice_step=2.5,
        pixel_spacing=(0.7, 0.8),
        row_cosine=(1, 0, 0),
        col_cosine=(0, 1, 0),
    )
    tilt_series(series, math.degrees(math.atan(0.7 / 2.5)), tag=False)
    (v,) = load_folder(series.folder)
    r = resample_regular(v)
    assert geo.is_orthogonal(r.ijk_to_lps) and geo.is_right_handed(r.ijk_to_lps)
    assert r.array.shape == (6, 32 + 5, 32)
    assert r.spacing == pytest.approx((0.8, 0.7, 2.5))
    rng = np.random.default_rng(1)
    inverse = np.linalg.inv(r.ijk_to_lps)
    for _ in range(200):
        k, j, i = (int(rng.integers(0, s)) for s in v.array.shape)
        world = v.ijk_to_lps @ np.array([i, j, k, 1.0])
        ri, rj, rk, _ = inverse @ world
        assert np.allclose([ri, rj, rk], np.round([ri, rj, rk]), atol=1e-4)
        assert r.array[round(rk), round(rj), round(ri)] == v.array[k, j, i]
    assert "resampled" in {w.code for w in r.warnings}


def test_resampling_fills_a_missing_slice_by_interpolation(tmp_path):
    series = make(tmp_path / "s", n=5, slice_step=2.0, modality="MR")
    files = geometric_files(series)
    files[3].unlink()  # positions 0, 2, 4, 8: one slice missing
    (v,) = load_folder(series.folder)
    assert "missing_slices" in {w.code for w in v.warnings}
    r = resample_regular(v)
    assert r.array.shape[0] == 5 and r.spacing[2] == pytest.approx(2.0)
    p = series.pixels.astype(np.float64)
    assert np.array_equal(r.array[0], p[0]) and np.array_equal(r.array[4], p[4])
    assert np.array_equal(r.array[3], np.rint((p[2] + p[4]) / 2).astype(np.int16))


def test_regular_stack_is_not_resampled(tmp_path):
    series = make(tmp_path / "s", n=4)
    (v,) = load_folder(series.folder)
    assert resample_regular(v) is v


def test_tag_table_matches_the_data_dictionary():
    from pydicom.datadict import tag_for_keyword

    for keyword, tag in TAGS.items():
        if (tag >> 16) & 1:  # private attributes have no keyword: our names for them
            continue
        assert tag_for_keyword(keyword) == tag, keyword
