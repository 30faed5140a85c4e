"""From an IJK->LPS matrix to what each exported slice says about itself (PS3.3 C.7.6.2).

The matrix follows the library's convention (DESIGN.md): column 0 is the step along ``i`` (the
row direction, ImageOrientationPatient's first triplet), column 1 the step along ``j`` (the
column direction), column 2 the step from one slice to the next, column 3 the first slice's
ImagePositionPatient; arrays are indexed ``[k, j, i]``.

What DICOM images can and cannot say:

* The two in-plane axes must be perpendicular: ImageOrientationPatient holds two orthonormal
  cosines (PS3.3 C.7.6.2.1.1). A matrix whose ``i`` and ``j`` columns are not perpendicular
  cannot be written as images at all; :func:`slice_geometry` raises :class:`ExportError`
  (resample the volume first).
* The slice step need not be along the normal ``row x column``: every slice carries its own
  ImagePositionPatient, so a sheared stack (a gantry-tilted CT, or a volume resampled that way)
  is written exactly, position by position, as scanners write tilted acquisitions. Readers that
  follow the positions (DICOMPlus, highdicom, ITK) get the same sheared matrix back; readers that
  assume an orthogonal grid see the tilt and can warn. The angle is reported in
  :attr:`SliceGeometry.tilt_deg`.
* Slices that do not advance along the normal (step perpendicular to it) cannot be told apart
  by position: :class:`ExportError`.
* A left-handed matrix (step against the normal) is written in reverse slice order, so instance
  numbers and frames increase along the normal as readers expect; the voxels in space are the
  same (:attr:`SliceGeometry.flipped`).
"""

from __future__ import annotations

import math

import numpy as np
from pydicom.valuerep import format_number_as_ds

from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import ExportError

#: |row . column| above this is not perpendicular (about 0.006 degrees).
ORTHOGONALITY_TOLERANCE = 1e-4


def ds(value: float) -> str:
    """A DS string of at most 16 characters (PS3.5 6.2), without ``-0``."""
    value = float(value)
    if abs(value) < 1e-12:
        value = 0.0
    return format_number_as_ds(value + 0.0)


def ds_list(values) -> list[str]:
    return [ds(v) for v in values]


@dataclass(frozen=True, eq=False)
class SliceGeometry:
    """The geometry of an exported stack, in the order slices are written."""

    row_cosine: np.ndarray  # (3,) direction of i
    column_cosine: np.ndarray  # (3,) direction of j
    normal: np.ndarray  # (3,) row x column
    pixel_spacing: tuple[float, float]  # (between rows, between columns) = (|j step|, |i step|)
    positions: np.ndarray  # (k, 3) ImagePositionPatient of each written slice
    slice_step: np.ndarray  # (3,) from one written slice to the next
    spacing_along_normal: float  # slice_step . normal (> 0), or |slice_step| for one slice
    tilt_deg: float  # angle between slice_step and the normal
    flipped: bool  # True when the input's k axis ran against the normal (written reversed)

    @property
    def orientation(self) -> list[float]:
        return [*self.row_cosine, *self.column_cosine]

    @property
    def distances(self) -> np.ndarray:
        """Each slice's position along the normal (mm), the SliceLocation convention."""
        return self.positions @ self.normal

    def ijk_to_lps(self) -> np.ndarray:
        """The matrix of the slices as written (right-handed: k along the normal)."""
        m = np.eye(4)
        m[:3, 0] = self.row_cosine * self.pixel_spacing[1]
        m[:3, 1] = self.column_cosine * self.pixel_spacing[0]
        m[:3, 2] = self.slice_step
        m[:3, 3] = self.positions[0]
        return m


def _check_matrix(matrix) -> np.ndarray:
    try:
        m = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"the IJK->LPS matrix is not numeric: {exc}") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise ExportError(f"the IJK->LPS matrix must be 4x4, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ExportError("the IJK->LPS matrix has NaN or infinite values")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0]):
        raise ExportError(f"the IJK->LPS matrix's last row must be 0 0 0 1, got {m[3].tolist()}")
    return m


def slice_geometry(ijk_to_lps, slices: int) -> SliceGeometry:
    """Check ``ijk_to_lps`` for a stack of ``slices`` images and describe each slice.

    Raises :class:`ExportError` when the matrix cannot be written as DICOM images (see the
    module docstring).
    """
    if slices < 1:
        raise ExportError("nothing to export: the volume has no slice")
    m = _check_matrix(ijk_to_lps)
    i_step, j_step, k_step, origin = m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3]
    di, dj = float(np.linalg.norm(i_step)), float(np.linalg.norm(j_step))
    if di == 0.0 or dj == 0.0:
        raise ExportError("the IJK->LPS matrix has a zero pixel spacing (a zero i or j column)")
    row, col = i_step / di, j_step / dj
    cosine = abs(float(row @ col))
    if cosine > ORTHOGONALITY_TOLERANCE:
        angle = math.degrees(math.acos(min(1.0, cosine)))
        raise ExportError(
            f"the volume's i and j axes are not perpendicular ({angle:.3f} degrees apart): DICOM "
            "images need perpendicular row and column directions (ImageOrientationPatient, PS3.3 "
            "C.7.6.2.1.1); resample the volume onto a grid with perpendicular in-plane axes first"
        )
    # Make the column cosine exactly perpendicular and both exactly unit length.
    col = col - (col @ row) * row
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)

    flipped = False
    if slices == 1:
        dk = float(np.linalg.norm(k_step))
        step = k_step if dk > 0 else normal
        spacing = dk if dk > 0 else 1.0
        tilt = 0.0
    else:
        along = float(k_step @ normal)
        dk = float(np.linalg.norm(k_step))
        if dk == 0.0 or abs(along) <= 1e-6 * dk:
            raise ExportError(
                "the volume's slices do not advance along the slice normal (the k column of the "
                "matrix is zero or lies in the image plane): their positions cannot be told apart"
            )
        if along < 0:
            flipped = True
            origin = origin + (slices - 1) * k_step
            k_step = -k_step
            along = -along
        step = k_step
        spacing = along
        tilt = math.degrees(math.acos(min(1.0, along / dk)))
    positions = origin[None, :] + np.arange(slices)[:, None] * step[None, :]
    return SliceGeometry(
        row_cosine=row,
        column_cosine=col,
        normal=normal,
        pixel_spacing=(dj, di),
        positions=positions,
        slice_step=np.asarray(step, float),
        spacing_along_normal=float(spacing),
        tilt_deg=float(tilt),
        flipped=flipped,
    )
