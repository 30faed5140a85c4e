"""Resample a tilted or irregularly spaced stack onto a regular orthogonal grid.

The grid's axes are the row direction, the column direction and the slice normal (so it is
right-handed and orthogonal); in-plane spacing is kept; the slice spacing is the nominal gap
along the normal (the finest regular gap, so no acquired slice is skipped: missing slices are
interpolated, like dcm2niix's ``_Eq`` output); the grid is padded in-plane to hold every voxel of
a tilted stack (like dcm2niix's ``_Tilt`` output) and starts at the first slice along the normal.

Each output voxel is found on the line through it along the normal: bilinear in the two acquired
slices that bracket it (each at its own in-plane offset), then linear between them. Voxels outside
the acquired data get the volume's minimum. Integer volumes stay integer (rounded).
"""

from __future__ import annotations

import math

import numpy as np

from DICOMPlusLib import dataclasses_lite
from DICOMPlusLib.loading import geometry as geo
from DICOMPlusLib.loading.models import LoadWarning, Volume

#: In-plane offsets below this (in pixels) are treated as none, so regular stacks copy exactly.
SUBPIXEL = 1e-3


def regular_grid(
    volume: Volume,
) -> tuple[np.ndarray, tuple[int, int, int], np.ndarray, np.ndarray, np.ndarray]:
    """(ijk_to_lps, (k, j, i) shape, in-plane offsets (k, 2) in pixels, normal distances (k,), and the
    output slice distances) of the regular grid for ``volume``."""
    info = volume.info
    f0 = info.frames[0]
    r, c, n = geo.row_col_normal(f0.orientation)  # type: ignore[arg-type]
    dy, dx = (float(x) for x in f0.pixel_spacing)  # type: ignore[union-attr]
    positions = np.asarray(info.slice_positions, float)
    shift = positions - positions[0]
    u = shift @ r / dx  # in-plane offset of each slice along i, in pixels
    v = shift @ c / dy
    w = shift @ n
    rows, cols = info.shape[-2], info.shape[-1]
    i_min, i_max = min(0.0, float(u.min())), max(0.0, float(u.max()))
    j_min, j_max = min(0.0, float(v.min())), max(0.0, float(v.max()))
    i_min, j_min = _snap(i_min, math.floor), _snap(j_min, math.floor)
    i_max, j_max = _snap(i_max, math.ceil), _snap(j_max, math.ceil)
    report = info.spacing_report
    dz = (
        report.nominal
        if report is not None and report.nominal
        else (float(w[-1]) / max(1, len(w) - 1) or 1.0)
    )
    nk = round(float(w[-1]) / dz) + 1 if len(w) > 1 else 1
    shape = (nk, rows + int(j_max - j_min), cols + int(i_max - i_min))
    matrix = np.eye(4)
    matrix[:3, 0] = r * dx
    matrix[:3, 1] = c * dy
    matrix[:3, 2] = n * dz
    matrix[:3, 3] = positions[0] + r * dx * i_min + c * dy * j_min
    offsets = np.stack([u - i_min, v - j_min], axis=1)
    return matrix, shape, offsets, w, np.arange(nk) * dz


def _snap(x: float, rounding) -> float:
    nearest = round(x)
    return float(nearest) if abs(x - nearest) < SUBPIXEL else float(rounding(x))


def _window(slice_: np.ndarray, top: int, left: int, height: int, width: int, fill: float) -> np.ndarray:
    """slice_[top:top+height, left:left+width] with ``fill`` outside, as float64."""
    out = np.full((height, width), fill, np.float64)
    rows, cols = slice_.shape
    r0, r1 = max(top, 0), min(top + height, rows)
    c0, c1 = max(left, 0), min(left + width, cols)
    if r0 < r1 and c0 < c1:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = slice_[r0:r1, c0:c1]
    return out


def _in_plane(slice_: np.ndarray, di: float, dj: float, height: int, width: int, fill: float) -> np.ndarray:
    """Output pixel (j', i') reads the slice at (j' - dj, i' - di), bilinear."""
    x, y = -di, -dj
    x0, y0 = math.floor(x + SUBPIXEL), math.floor(y + SUBPIXEL)
    fx, fy = x - x0, y - y0
    fx = 0.0 if abs(fx) < SUBPIXEL else fx
    fy = 0.0 if abs(fy) < SUBPIXEL else fy
    out = _window(slice_, y0, x0, height, width, fill) * ((1 - fx) * (1 - fy))
    if fx:
        out += _window(slice_, y0, x0 + 1, height, width, fill) * (fx * (1 - fy))
    if fy:
        out += _window(slice_, y0 + 1, x0, height, width, fill) * ((1 - fx) * fy)
    if fx and fy:
        out += _window(slice_, y0 + 1, x0 + 1, height, width, fill) * (fx * fy)
    return out


def _resample_3d(array: np.ndarray, shape, offsets, w, targets, dtype) -> np.ndarray:
    fill = float(array.min()) if array.size else 0.0
    out = np.empty(shape, dtype)
    _nk, height, width = shape
    for k, target in enumerate(targets):
        s = int(np.searchsorted(w, target - geo.POSITION_TOLERANCE_MM, side="right")) - 1
        s = min(max(s, 0), len(w) - 1)
        if s < len(w) - 1 and target > w[s] + geo.POSITION_TOLERANCE_MM:
            a = (target - w[s]) / (w[s + 1] - w[s])
        else:
            a = 0.0
        values = _in_plane(array[s], offsets[s][0], offsets[s][1], height, width, fill) * (1 - a)
        if a > 0:
            values += _in_plane(array[s + 1], offsets[s + 1][0], offsets[s + 1][1], height, width, fill) * a
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            np.clip(np.rint(values), info.min, info.max, out=values)
        out[k] = values
    return out


def resample_regular(volume: Volume) -> Volume:
    """``volume`` on a regular orthogonal grid (itself when it already is one)."""
    info = volume.info
    if info.slice_positions is None or len(info.slice_positions) < 2 or info.components > 1:
        return volume
    matrix, shape, offsets, w, targets = regular_grid(volume)
    same = (
        shape == tuple(info.shape[-3:])
        and np.allclose(matrix, info.ijk_to_lps, atol=1e-6)
        and np.allclose(offsets, 0, atol=SUBPIXEL)
    )
    if same:
        return volume
    new_shape: tuple[int, ...]
    if volume.array.ndim == 4:
        array = np.stack(
            [_resample_3d(a, shape, offsets, w, targets, volume.array.dtype) for a in volume.array]
        )
        new_shape = (volume.array.shape[0], *shape)
    else:
        array = _resample_3d(volume.array, shape, offsets, w, targets, volume.array.dtype)
        new_shape = shape
    note = LoadWarning(
        "resampled",
        f"resampled onto a regular orthogonal grid ({shape[2]}x{shape[1]}x{shape[0]}, slice spacing "
        f"{float(np.linalg.norm(matrix[:3, 2])):.4g} mm) by linear interpolation",
    )
    new_info = dataclasses_lite.replace(
        info,
        shape=tuple(new_shape),
        ijk_to_lps=matrix,
        spacing=geo.column_spacing(matrix),
        warnings=(*info.warnings, note),
        slice_positions=np.array([matrix[:3, 3] + matrix[:3, 2] * k for k in range(shape[0])]),
        spacing_report=geo.spacing_report(targets),
        tilt_deg=0.0,
        extra={**info.extra, "resampled": True},
    )
    return Volume(array, new_info)
