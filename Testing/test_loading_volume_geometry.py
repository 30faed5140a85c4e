"""VolumeGeometry: the validated IJK->LPS value object that loaded volumes hand out, that export
takes in place of a bare matrix, and that survives the engine's pickling unchanged."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.export.geometry import slice_geometry
from DICOMPlusLib.loading import VolumeGeometry, load, plan_folder


def _rotated(spacing=(0.8, 0.7, 2.5), origin=(-100.0, -120.0, -50.0), degrees=30.0) -> np.ndarray:
    a = math.radians(degrees)
    row, col = np.array([math.cos(a), math.sin(a), 0.0]), np.array([-math.sin(a), math.cos(a), 0.0])
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = (
        row * spacing[0],
        col * spacing[1],
        np.cross(row, col) * spacing[2],
        origin,
    )
    return m


def test_spacing_origin_direction_and_points():
    m = _rotated()
    g = VolumeGeometry(m, (32, 24, 8))
    assert g.dims == (32, 24, 8)
    assert np.allclose(g.spacing, (0.8, 0.7, 2.5))
    assert np.array_equal(g.origin, [-100.0, -120.0, -50.0])
    assert np.allclose(g.direction.T @ g.direction, np.eye(3))
    assert np.allclose(g.ijk_to_lps_points([0, 0, 0]), g.origin)
    corners = np.array([[31, 23, 7], [1, 2, 3]], float)
    assert np.allclose(g.ijk_to_lps_points(corners), (m @ np.c_[corners, np.ones(2)].T).T[:, :3])
    assert np.allclose(g.lps_to_ijk_points(g.ijk_to_lps_points(corners)), corners)
    assert np.array_equal(g.ijk_to_ras, np.diag([-1.0, -1.0, 1.0, 1.0]) @ m)


def test_the_value_cannot_change_under_its_holder():
    m = _rotated()
    g = VolumeGeometry(m, (4, 4, 4))
    m[0, 3] = 999.0  # the caller's array is not the geometry's
    assert g.origin[0] == -100.0
    with pytest.raises(ValueError):
        g.ijk_to_lps[0, 3] = 1.0
    assert g == VolumeGeometry(_rotated(), (4, 4, 4)) and g != VolumeGeometry(_rotated(), (4, 4, 5))
    assert pickle.loads(pickle.dumps(g)) == g  # the engine protocol pickles values


@pytest.mark.parametrize(
    ("matrix", "dims", "message"),
    [
        (np.eye(3), (1, 1, 1), "4x4"),
        (np.diag([1.0, 1.0, 0.0, 1.0]), (1, 1, 1), "singular"),
        (np.vstack([np.eye(4)[:3], [0, 0, 1, 1]]), (1, 1, 1), "last row"),
        (np.full((4, 4), np.nan), (1, 1, 1), "finite"),
        (np.eye(4), (1, 0, 1), "positive"),
    ],
)
def test_not_a_geometry_is_refused(matrix, dims, message):
    with pytest.raises(ValueError, match=message):
        VolumeGeometry(matrix, dims)


def test_a_loaded_volume_has_its_geometry_exactly(tmp_path):
    series = make_series(tmp_path / "ct", n=6, rows=16, cols=12)
    (info,) = plan_folder(series.folder)
    volume = load(info)
    assert volume.geometry == info.geometry
    assert volume.geometry.dims == (12, 16, 6)
    assert np.array_equal(volume.geometry.ijk_to_lps, volume.ijk_to_lps)
    assert volume.geometry.spacing == pytest.approx(volume.spacing)
    assert np.allclose(volume.geometry.ijk_to_lps, series.ijk_to_lps, atol=1e-6)


def test_export_takes_a_geometry_where_it_took_a_matrix():
    m = _rotated()
    from_geometry = slice_geometry(VolumeGeometry(m, (8, 8, 5)), 5)
    from_matrix = slice_geometry(m, 5)
    assert np.array_equal(from_geometry.positions, from_matrix.positions)
    assert from_geometry.pixel_spacing == from_matrix.pixel_spacing
