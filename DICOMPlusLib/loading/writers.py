"""NRRD and NIfTI files through SimpleITK, with the volume's exact direction and origin.

SimpleITK works in LPS like the library: origin = the IJK->LPS translation, spacing = the column
lengths, direction = the unit columns. NRRD ("space directions") holds any matrix, including the
sheared grid of a tilted stack. NIfTI's qform cannot (ITK coerces it to orthogonal), so for a
sheared volume the written sform is replaced by the exact matrix (in NIfTI's RAS convention), as
dcm2niix does, and a warning says that qform readers (ITK) see an orthogonal approximation:
resample (``resample=True``) for a file every reader agrees on.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from DICOMPlusLib.errors import LoadError
from DICOMPlusLib.loading import geometry as geo
from DICOMPlusLib.loading.models import LPS_TO_RAS, LoadWarning, Volume

NRRD_SUFFIXES = (".nrrd", ".nhdr")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.endswith(suffix):
            return suffix
    raise LoadError(f"{path}: write .nrrd, .nhdr, .nii, .nii.gz, .mha or .mhd")


def orthogonal_approximation(ijk_to_lps: np.ndarray) -> np.ndarray:
    """The sheared grid's nearest orthogonal stand-in: same first two columns and origin, third
    column along their cross product with the perpendicular slice spacing (dcm2niix's qform)."""
    m = np.array(ijk_to_lps, float)
    r = m[:3, 0] / np.linalg.norm(m[:3, 0])
    c = m[:3, 1] / np.linalg.norm(m[:3, 1])
    n = np.cross(r, c)
    n /= np.linalg.norm(n)
    m[:3, 2] = n * abs(float(m[:3, 2] @ n))
    return m


def to_sitk(volume: Volume, matrix: np.ndarray | None = None):
    """A SimpleITK image with the volume's voxels and geometry (4D for a time series)."""
    import SimpleITK as sitk

    matrix = np.asarray(volume.ijk_to_lps if matrix is None else matrix, float)
    spacing = geo.column_spacing(matrix)
    direction = matrix[:3, :3] / np.array(spacing)
    origin = matrix[:3, 3]
    vector = volume.info.components > 1
    array = np.ascontiguousarray(volume.array)
    image = sitk.GetImageFromArray(array, isVector=vector)
    if image.GetDimension() == 4:
        times = volume.time_axis or tuple(range(array.shape[0]))
        step = float(np.mean(np.diff(times))) if len(times) > 1 else 1.0
        d4 = np.eye(4)
        d4[:3, :3] = direction
        image.SetSpacing([*spacing, step if step > 0 else 1.0])
        image.SetOrigin([*origin.tolist(), float(times[0]) if times else 0.0])
        image.SetDirection(d4.flatten().tolist())
    else:
        image.SetSpacing(list(spacing))
        image.SetOrigin(origin.tolist())
        image.SetDirection(direction.flatten().tolist())
    return image


def write_volume(volume: Volume, path: str | os.PathLike, *, resample: bool = False) -> list[LoadWarning]:
    """Write ``volume`` as NRRD/NIfTI (by suffix); returns what a user should know about the file."""
    import SimpleITK as sitk

    path = Path(path)
    suffix = _suffix(path)
    notes: list[LoadWarning] = []
    if resample:
        from DICOMPlusLib.loading.resample import resample_regular

        volume = resample_regular(volume)
    sheared = not geo.is_orthogonal(volume.ijk_to_lps)
    path.parent.mkdir(parents=True, exist_ok=True)
    nifti = suffix in NIFTI_SUFFIXES
    image = to_sitk(volume, orthogonal_approximation(volume.ijk_to_lps) if nifti and sheared else None)
    try:
        sitk.WriteImage(image, str(path), useCompression=suffix in (".nrrd", ".mha"))
    except RuntimeError as exc:
        raise LoadError(f"cannot write {path}: {exc}") from exc
    if nifti and sheared:
        set_nifti_sform(path, volume.ijk_to_lps)
        notes.append(
            LoadWarning(
                "nifti_sheared",
                "the grid is sheared (gantry tilt): the NIfTI sform holds the exact matrix but the qform (read "
                "by ITK/SimpleITK) is an orthogonal approximation; write NRRD or resample for one geometry",
                (str(path),),
            )
        )
    return notes


def set_nifti_sform(path: str | os.PathLike, ijk_to_lps: np.ndarray) -> None:
    """Replace the sform of a NIfTI-1 file (srow_x/y/z at bytes 280-327, sform_code at 254) by
    ``ijk_to_lps`` in RAS, with sform_code 1 (scanner anatomical)."""
    path = Path(path)
    ras = LPS_TO_RAS @ np.asarray(ijk_to_lps, float)
    packed = struct.pack("<12f", *ras[:3].flatten().tolist())
    compressed = path.name.lower().endswith(".gz")
    data = bytearray(gzip.decompress(path.read_bytes()) if compressed else path.read_bytes())
    if struct.unpack_from("<i", data, 0)[0] != 348:
        raise LoadError(f"{path}: not a little-endian NIfTI-1 file")
    struct.pack_into("<h", data, 254, 1)
    data[280:328] = packed
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(gzip.compress(bytes(data), 6) if compressed else bytes(data))
    os.replace(tmp, path)


def read_nifti_affine(path: str | os.PathLike) -> tuple[np.ndarray, tuple[int, ...]]:
    """(sform as a 4x4 RAS matrix, dims) of a NIfTI-1 file, read from its header."""
    path = Path(path)
    raw = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        raw = gzip.decompress(raw)
    if struct.unpack_from("<i", raw, 0)[0] != 348:
        raise LoadError(f"{path}: not a little-endian NIfTI-1 file")
    dim = struct.unpack_from("<8h", raw, 40)
    rows = struct.unpack_from("<12f", raw, 280)
    m = np.eye(4)
    m[:3, :] = np.array(rows, float).reshape(3, 4)
    return m, tuple(dim[1 : 1 + dim[0]])
