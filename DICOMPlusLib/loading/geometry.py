"""Slice geometry as pure functions, in LPS millimetres (PS3.3 C.7.6.2.1.1).

ImageOrientationPatient gives the row direction ``r`` (the direction of increasing column index)
and the column direction ``c``; ImagePositionPatient is the centre of the first transmitted
voxel; PixelSpacing is (distance between rows, distance between columns). The slice normal is
``n = r x c``. Slices are ordered by their projection on ``n`` (never by InstanceNumber, which
scanners do not number consistently), so the IJK frame is right-handed by construction.

The IJK->LPS matrix is exact: its third column is ``(P_last - P_first) / (N - 1)``, which for a
gantry-tilted stack is not parallel to ``n`` (a sheared grid). The tilt is measured from the
positions, whether or not GantryDetectorTilt (0018,1120) is present or right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from DICOMPlusLib.loading.models import MissingSlices, SpacingReport, point3

#: Positions closer than this along the normal are the same position (mm).
POSITION_TOLERANCE_MM = 0.01
#: Two gaps are equal when they differ by less than max(this, GAP_RELATIVE_TOLERANCE * gap) (mm).
GAP_TOLERANCE_MM = 0.01
GAP_RELATIVE_TOLERANCE = 0.002
#: Direction cosines closer than this (max abs difference) are the same orientation.
ORIENTATION_TOLERANCE = 1e-3
#: A stack whose direction is further than this from the normal is reported as tilted (degrees).
TILT_TOLERANCE_DEG = 0.1


def row_col_normal(orientation: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row cosine, column cosine and unit normal ``row x column`` of ImageOrientationPatient."""
    values = np.asarray(orientation, float)
    r, c = values[:3], values[3:6]
    n = np.cross(r, c)
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise ValueError(f"ImageOrientationPatient {list(values)} has parallel row and column cosines")
    return r, c, n / norm


def same_orientation(
    a: Sequence[float], b: Sequence[float], tolerance: float = ORIENTATION_TOLERANCE
) -> bool:
    """Every cosine within ``tolerance`` (a NaN is never within). Plain floats: called once per
    slice, where numpy's per-call cost on six numbers is most of the time."""
    if len(a) != len(b):
        return bool(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))) <= tolerance)
    return all(abs(float(x) - float(y)) <= tolerance for x, y in zip(a, b, strict=True))


def orientation_spread_deg(orientations: Sequence[Sequence[float]]) -> float:
    """The largest angle between the normal of any orientation and that of the first."""
    if len(orientations) < 2:
        return 0.0
    _, _, n0 = row_col_normal(orientations[0])
    worst = 0.0
    for o in orientations[1:]:
        _, _, n = row_col_normal(o)
        worst = max(worst, math.degrees(math.acos(min(1.0, abs(float(n0 @ n))))))
    return worst


def orthogonality_error(orientation: Sequence[float]) -> float:
    """|row . column| and how far each cosine is from unit length, whichever is larger."""
    values = np.asarray(orientation, float)
    r, c = values[:3], values[3:6]
    return float(max(abs(r @ c), abs(np.linalg.norm(r) - 1), abs(np.linalg.norm(c) - 1)))


def distances_along(positions: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Projection of each position (N, 3) on ``normal``."""
    return np.asarray(positions, float) @ np.asarray(normal, float)


def sort_along_normal(positions: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, distances): the stable order of increasing projection on the normal, and the
    sorted projections relative to the first slice."""
    d = distances_along(positions, normal)
    order = np.argsort(d, kind="stable")
    sorted_d = d[order]
    return order, sorted_d - sorted_d[0] if len(sorted_d) else sorted_d


def _gap_tolerance(gap: float) -> float:
    return max(GAP_TOLERANCE_MM, GAP_RELATIVE_TOLERANCE * abs(gap))


def _median(ordered: list[float]) -> float:
    """The median of sorted values, as ``np.median`` computes it (the mean of the two middle
    values for an even count), without ``np.median``: it imports ``numpy.ma`` (12 ms, 0.5 MB)."""
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def spacing_report(distances: Sequence[float] | np.ndarray) -> SpacingReport:
    """Classify every gap between consecutive sorted positions along the normal.

    The nominal gap is the median of the most frequent cluster of gaps (ties: the smallest).
    A larger gap that is a whole multiple of it means missing slices (reported with where);
    any other gap makes the spacing irregular. Slices closer than POSITION_TOLERANCE_MM are
    duplicates. Like dcm2niix and unlike Slicer, every gap is checked, not only up to the first
    difference.
    """
    d = np.asarray(distances, float)
    d = d - d[0] if len(d) else d
    rounded = tuple(np.round(d, 4).tolist())  # what round(x, 4) gives on each float64, in one call
    if len(d) < 2:
        return SpacingReport("single", rounded, None, None, None)
    gaps = np.diff(d)
    duplicates = tuple((int(i), int(i + 1)) for i in np.nonzero(gaps < POSITION_TOLERANCE_MM)[0])
    real = gaps[gaps >= POSITION_TOLERANCE_MM]
    histogram: dict[float, int] = {}
    for key in np.round(gaps, 3).tolist():
        histogram[key] = histogram.get(key, 0) + 1
    hist = tuple(sorted(histogram.items()))
    if len(real) == 0:
        return SpacingReport("duplicates", rounded, None, 0.0, 0.0, hist, (), duplicates)
    clusters: list[list[float]] = []
    total = 0.0  # running sum of the last cluster
    for g in sorted(real.tolist()):
        if clusters and abs(g - total / len(clusters[-1])) <= _gap_tolerance(g):
            clusters[-1].append(g)
            total += g
        else:
            clusters.append([g])
            total = g
    best = max(clusters, key=lambda c: (len(c), -c[0]))
    nominal = _median(best)
    tol = _gap_tolerance(nominal)
    missing: list[MissingSlices] = []
    irregular = False
    for index, g in enumerate(gaps):
        if g < POSITION_TOLERANCE_MM or abs(g - nominal) <= tol:
            continue
        ratio = g / nominal
        whole = round(ratio)
        if whole >= 2 and abs(g - whole * nominal) <= tol * whole:
            missing.append(MissingSlices(after=index, count=whole - 1, position_mm=float(round(d[index], 4))))
        else:
            irregular = True
    kind = "duplicates" if duplicates else "irregular" if irregular else "missing" if missing else "regular"
    return SpacingReport(
        kind=kind,
        distances=rounded,
        nominal=float(round(nominal, 6)),
        minimum=float(round(real.min(), 6)),
        maximum=float(round(real.max(), 6)),
        histogram=hist,
        missing=tuple(missing),
        duplicates=duplicates,
    )


def stack_vector(sorted_positions: np.ndarray) -> np.ndarray | None:
    """(P_last - P_first) / (N - 1): the exact mean step between slices, None for one slice."""
    p = np.asarray(sorted_positions, float)
    if len(p) < 2:
        return None
    return (p[-1] - p[0]) / (len(p) - 1)


def tilt_deg(sorted_positions: np.ndarray, normal: np.ndarray) -> float:
    """Angle between the stack direction and the slice normal, from the positions alone
    (GantryDetectorTilt is not trusted: it is absent, zero or signed differently by vendors)."""
    step = stack_vector(sorted_positions)
    if step is None:
        return 0.0
    length = float(np.linalg.norm(step))
    if length < POSITION_TOLERANCE_MM:
        return 0.0
    cos = min(1.0, abs(float(step @ normal)) / length)
    return math.degrees(math.acos(cos))


def ijk_to_lps(
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    sorted_positions: np.ndarray,
    single_slice_spacing: float = 1.0,
) -> np.ndarray:
    """The exact IJK->LPS matrix: columns ``r * dx``, ``c * dy``, the mean step between slices
    (``n * single_slice_spacing`` for one slice) and the first slice's position."""
    r, c, n = row_col_normal(orientation)
    dy, dx = float(pixel_spacing[0]), float(pixel_spacing[1])
    p = np.asarray(sorted_positions, float)
    step = stack_vector(p)
    m = np.eye(4)
    m[:3, 0] = r * dx
    m[:3, 1] = c * dy
    m[:3, 2] = n * single_slice_spacing if step is None else step
    m[:3, 3] = p[0]
    return m


def column_spacing(matrix: np.ndarray) -> tuple[float, float, float]:
    """Length of each of the three first columns: the spacing along i, j and k."""
    m = np.asarray(matrix, float)
    return point3(float(np.linalg.norm(m[:3, a])) for a in range(3))


def is_right_handed(matrix: np.ndarray) -> bool:
    return bool(np.linalg.det(np.asarray(matrix, float)[:3, :3]) > 0)


def is_orthogonal(matrix: np.ndarray, tolerance: float = 1e-4) -> bool:
    m = np.asarray(matrix, float)[:3, :3]
    u = m / np.linalg.norm(m, axis=0)
    return bool(np.max(np.abs(u.T @ u - np.eye(3))) <= tolerance)


def slice_corners(orientation, pixel_spacing, position, rows: int, columns: int) -> np.ndarray:
    """The four corner voxel centres of one slice (4, 3), LPS."""
    r, c, _ = row_col_normal(orientation)
    dy, dx = float(pixel_spacing[0]), float(pixel_spacing[1])
    p = np.asarray(position, float)
    return np.array(
        [p + r * dx * i + c * dy * j for j in (0, rows - 1) for i in (0, columns - 1)], dtype=float
    )


def max_corner_error(matrix: np.ndarray, sorted_positions: np.ndarray, rows: int, columns: int) -> float:
    """The largest distance between where the matrix puts a slice corner and where the slice's
    own position puts it: Slicer's test for irregular geometry (AcquisitionModeling)."""
    m = np.asarray(matrix, float)
    worst = 0.0
    for k, p in enumerate(np.asarray(sorted_positions, float)):
        for j in (0, rows - 1):
            for i in (0, columns - 1):
                grid = m @ np.array([i, j, k, 1.0])
                true = p + m[:3, 0] * i + m[:3, 1] * j
                worst = max(worst, float(np.linalg.norm(grid[:3] - true)))
    return worst
