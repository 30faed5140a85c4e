"""The geometry a NIfTI-1 file really holds: its sform, its qform, and which one to believe.

A NIfTI-1 header carries two matrices (nifti1.h): the qform (a rotation as a quaternion, voxel
sizes and ``qfac``: always orthogonal) and the sform (any affine, ``srow_x/y/z``). ITK, hence
SimpleITK, builds its image from the qform whenever the sform is not orthonormal, so a sheared
grid (a gantry-tilted CT written by ``dicomplus convert`` or dcm2niix, exact in the sform,
orthogonal stand-in in the qform) comes back unsheared, slices misplaced by up to several
centimetres. Here both are read from the header and:

* only one present (code > 0): that one;
* both present and equal (origin within 0.01 mm, axes within 0.03 deg and 1e-4 in length): either;
* both present, the qform being the sform's orthogonal stand-in (same in-plane axes and origin,
  slice axis along the normal with the sform's spacing along it): the sform, the exact grid;
* any other disagreement: :class:`ExportError`, since there is no telling which one is right.

Matrices map NIfTI voxel (i, j, k) to RAS millimetres; ITK's index order is the same, so the
SimpleITK array ``[k, j, i]`` goes with them unchanged.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path

import numpy as np

from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import ExportError

#: Origins closer than this are the same (mm).
AGREEMENT_MM = 0.01
#: Axis directions closer than this (unit vectors' difference, ~0.03 deg) are the same.
DIRECTION_TOLERANCE = 5e-4
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True, eq=False)
class NiftiGeometry:
    """A NIfTI file's dimensions and its qform and sform (voxel -> RAS) with their codes."""

    dims: tuple[int, ...]
    qform: np.ndarray | None  # 4x4 voxel -> RAS, None when qform_code is 0
    sform: np.ndarray | None  # 4x4 voxel -> RAS, None when sform_code is 0
    qform_code: int
    sform_code: int


def is_nifti(path: str | os.PathLike) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def read_header(path: str | os.PathLike) -> NiftiGeometry | None:
    """Both matrices of a NIfTI-1 file (either byte order), from its 348-byte header; None
    for anything else (NIfTI-2 headers are left to SimpleITK)."""
    path = Path(path)
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read(348)
        else:
            with open(path, "rb") as f:
                raw = f.read(348)
    except (OSError, EOFError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from None
    if len(raw) < 348:
        return None
    for order in "<>":
        if struct.unpack_from(order + "i", raw, 0)[0] == 348:
            break
    else:
        return None  # NIfTI-2 (540) or not NIfTI: SimpleITK's own reading stands
    dim = struct.unpack_from(order + "8h", raw, 40)
    pixdim = struct.unpack_from(order + "8f", raw, 76)
    qform_code, sform_code = struct.unpack_from(order + "2h", raw, 252)
    b, c, d, qx, qy, qz = struct.unpack_from(order + "6f", raw, 256)
    srow = struct.unpack_from(order + "12f", raw, 280)
    qform = None
    if qform_code > 0:
        a2 = 1.0 - (b * b + c * c + d * d)
        a = math.sqrt(a2) if a2 > 0 else 0.0
        rotation = np.array(
            [
                [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - b * b - c * c],
            ]
        )
        qfac = -1.0 if pixdim[0] < 0 else 1.0
        qform = np.eye(4)
        qform[:3, :3] = rotation @ np.diag([pixdim[1], pixdim[2], qfac * pixdim[3]])
        qform[:3, 3] = (qx, qy, qz)
    sform = None
    if sform_code > 0:
        sform = np.eye(4)
        sform[:3, :] = np.array(srow, float).reshape(3, 4)
    ndim = max(1, min(int(dim[0]), 7))
    return NiftiGeometry(
        tuple(int(x) for x in dim[1 : 1 + ndim]), qform, sform, int(qform_code), int(sform_code)
    )


def _corners(matrix: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    size = [max(int(n) - 1, 0) for n in (*dims, 1, 1, 1)[:3]]
    points = np.array([[i, j, k, 1.0] for i in (0, size[0]) for j in (0, size[1]) for k in (0, size[2])])
    return (matrix @ points.T).T[:, :3]


def _disagreement(a: np.ndarray, b: np.ndarray, dims) -> float:
    return float(np.max(np.linalg.norm(_corners(a, dims) - _corners(b, dims), axis=1)))


def _same_grid(a: np.ndarray, b: np.ndarray) -> bool:
    """The same origin (AGREEMENT_MM) and axes: each column within DIRECTION_TOLERANCE in
    direction and 1e-4 in relative length. The qform's quaternion is single precision and
    writers round it (ITK's is ~1e-4 off), so corners far from the origin may differ slightly
    more than the origin does."""
    if float(np.linalg.norm(a[:3, 3] - b[:3, 3])) > AGREEMENT_MM:
        return False
    for column in range(3):
        u, v = a[:3, column], b[:3, column]
        nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
        if nu == 0.0 or nv == 0.0:
            return nu == nv
        if abs(nu - nv) > 1e-4 * max(nu, nv) or float(np.linalg.norm(u / nu - v / nv)) > DIRECTION_TOLERANCE:
            return False
    return True


def orthogonal_stand_in(matrix: np.ndarray) -> np.ndarray:
    """The orthogonal grid a qform can hold in place of a sheared one: same in-plane columns
    and origin, slice column along their normal with the same spacing along it."""
    m = np.array(matrix, float)
    normal = np.cross(m[:3, 0], m[:3, 1])
    normal /= np.linalg.norm(normal)
    m[:3, 2] = normal * float(m[:3, 2] @ normal)
    return m


def choose_ijk_to_lps(geometry: NiftiGeometry, path: str | os.PathLike) -> tuple[np.ndarray | None, str]:
    """(IJK->LPS to use, a note for the user or ""); ``None`` when the header has neither
    matrix (then SimpleITK's own reading stands)."""
    q, s = geometry.qform, geometry.sform
    if s is None and q is None:
        return None, ""
    if s is None:
        return RAS_TO_LPS @ q, ""
    if q is None:
        return RAS_TO_LPS @ s, ""
    if _same_grid(q, s):
        return RAS_TO_LPS @ s, ""
    gap = _disagreement(q, s, geometry.dims)
    if _same_grid(q, orthogonal_stand_in(s)):
        n = np.cross(s[:3, 0], s[:3, 1])
        tilt = math.degrees(
            math.acos(min(1.0, abs(float(s[:3, 2] @ n)) / (np.linalg.norm(s[:3, 2]) * np.linalg.norm(n))))
        )
        return RAS_TO_LPS @ s, (
            f"{Path(path).name}: the sform holds a sheared grid ({tilt:.2f} deg) and the qform its orthogonal "
            "stand-in; the sform (exact) is used"
        )
    raise ExportError(
        f"{path}: its qform and sform disagree by up to {gap:.3g} mm at the corners of the grid, and not as a "
        "sheared grid and its orthogonal stand-in would: there is no telling which is right. Set the one you "
        "trust in both (e.g. nibabel: img.set_qform(img.get_sform()) or the reverse) and export again"
    )
