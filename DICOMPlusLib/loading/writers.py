"""NRRD and NIfTI files through SimpleITK, with the volume's exact direction and origin.

SimpleITK works in LPS like the library: origin = the IJK->LPS translation, spacing = the column
lengths, direction = the unit columns. NRRD ("space directions") holds any matrix, including the
sheared grid of a tilted stack. NIfTI's qform cannot (ITK coerces it to orthogonal), so for a
sheared volume the written sform is replaced by the exact matrix (in NIfTI's RAS convention), as
dcm2niix does, and a warning says that qform readers (ITK) see an orthogonal approximation:
resample (``resample=True``) for a file every reader agrees on.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
from pathlib import Path

import numpy as np

from DICOMPlusLib.errors import DiskFullError, LoadError, space_error_in
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


@contextlib.contextmanager
def _replacing(path: Path):
    """The temporary file that becomes ``path`` when complete; removed if the writing stops
    (an error, Ctrl-C, a ``kill``): never a half-written file, never a leftover ``.tmp``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _write_sitk(sitk, image, path: Path, suffix: str, raw_bytes: int) -> None:
    """``sitk.WriteImage`` without a half-written file: a one-file format is written to a
    temporary name of the same suffix (ITK chooses the format by it) and renamed; the files of a
    header-and-data pair (.nhdr, .mhd), which name each other, are removed if the writing fails.
    ITK's errors carry no errno: a folder left with less room than the raw volume is taken
    for a full disk (what ITK's "wrote only N bytes" means)."""
    detached = suffix in (".nhdr", ".mhd")
    folder = path.parent
    before = set(os.listdir(folder))
    target = path if detached else path.with_name(f".{path.name}.partial-{os.getpid()}{suffix}")
    try:
        sitk.WriteImage(image, str(target), useCompression=suffix in (".nrrd", ".mha"))
        if not detached:
            os.replace(target, path)
    except BaseException as exc:
        free = _free_bytes(folder)
        made = set(os.listdir(folder)) - before
        # the temporary file; or the header and its data file (named after it), nothing else
        for name in {n for n in made if n.startswith(path.stem)} if detached else {target.name} & made:
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
        if not isinstance(exc, (OSError, RuntimeError)):
            raise
        if space_error_in(exc) is not None or (isinstance(exc, RuntimeError) and free < raw_bytes):
            raise DiskFullError(str(folder)) from exc
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise LoadError(f"cannot write {path}: {why}") from exc


def _free_bytes(folder: Path) -> int:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows): not known to be full
        return 1 << 62
    return st.f_bavail * st.f_frsize


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


def write_volume(
    volume: Volume, path: str | os.PathLike, *, resample: bool = False, compression: int = 6
) -> list[LoadWarning]:
    """Write ``volume`` as NRRD/NIfTI (by suffix); returns what a user should know about the file.
    ``compression`` is the gzip level of .nii.gz (1 fastest .. 9 smallest; dcm2niix's default is 6)."""
    path = Path(path)
    suffix = _suffix(path)
    notes: list[LoadWarning] = []
    if resample:
        from DICOMPlusLib.loading.resample import resample_regular

        volume = resample_regular(volume)
    sheared = not geo.is_orthogonal(volume.ijk_to_lps)
    path.parent.mkdir(parents=True, exist_ok=True)
    nifti = suffix in NIFTI_SUFFIXES
    if nifti and volume.info.components == 1:
        try:
            write_nifti(volume, path, compression=compression)
        except OSError as exc:
            if space_error_in(exc) is not None:
                raise DiskFullError(str(path.parent)) from exc
            raise LoadError(f"cannot write {path}: {exc.strerror or exc}") from exc
    elif suffix == ".nrrd" and volume.info.is_diffusion and volume.info.is_4d and volume.info.components == 1:
        try:
            write_dwi_nrrd(volume, path, compression=compression)
        except OSError as exc:
            if space_error_in(exc) is not None:
                raise DiskFullError(str(path.parent)) from exc
            raise LoadError(f"cannot write {path}: {exc.strerror or exc}") from exc
    else:
        import SimpleITK as sitk

        image = to_sitk(volume, orthogonal_approximation(volume.ijk_to_lps) if nifti and sheared else None)
        _write_sitk(sitk, image, path, suffix, volume.array.nbytes)
        if nifti and sheared:
            set_nifti_sform(path, volume.ijk_to_lps)
    if nifti and sheared:
        notes.append(
            LoadWarning(
                "nifti_sheared",
                "the grid is sheared (gantry tilt): the NIfTI sform holds the exact matrix but the qform (read "
                "by ITK/SimpleITK) is an orthogonal approximation; write NRRD or resample for one geometry",
                (str(path),),
            )
        )
    return notes


# -- NIfTI-1 written directly (scalar volumes): no SimpleITK import, stored integers + scl_slope -------
_NIFTI_TYPES = {  # numpy dtype -> (NIfTI datatype code, bitpix)
    np.dtype(np.uint8): (2, 8),
    np.dtype(np.int16): (4, 16),
    np.dtype(np.int32): (8, 32),
    np.dtype(np.float32): (16, 32),
    np.dtype(np.float64): (64, 64),
    np.dtype(np.int8): (256, 8),
    np.dtype(np.uint16): (512, 16),
    np.dtype(np.uint32): (768, 32),
}


def _stored_integers(volume: Volume) -> tuple[np.ndarray, float, float] | None:
    """(integer array, slope, intercept) when the float voxels are one rescale of integers that fit
    16 bits, as dcm2niix writes them (scl_slope/scl_inter); None otherwise."""
    array = volume.array
    if array.dtype.kind != "f":
        return None
    pairs = {(f.rescale_slope, f.rescale_intercept) for f in volume.info.frames}
    if len(pairs) != 1:
        return None
    slope, intercept = pairs.pop()
    if slope == 0 or (slope == 1 and intercept == 0):
        return None
    # the loader computed float(stored * slope + intercept): the integers come back exactly
    lo = (float(array.min()) - intercept) / slope
    hi = (float(array.max()) - intercept) / slope
    lo, hi = min(lo, hi), max(lo, hi)
    dtype = (
        np.int16 if lo >= -32768.5 and hi <= 32767.5 else np.uint16 if lo >= -0.5 and hi <= 65535.5 else None
    )
    if dtype is None:
        return None
    work = np.subtract(array, np.float32(intercept), dtype=np.float32)
    np.multiply(work, np.float32(1.0 / slope), out=work)
    np.rint(work, out=work)
    stored = work.astype(dtype)
    sample = slice(None, None, 7919)  # a prime stride: every row and column is sampled
    flat_stored, flat = stored.reshape(-1)[sample], array.reshape(-1)[sample]
    if not np.array_equal((flat_stored * np.float64(slope) + intercept).astype(array.dtype), flat):
        return None
    return stored, float(slope), float(intercept)


def _quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """(qb, qc, qd, qfac) of a rotation (columns: unit axes, RAS), as nifti_mat44_to_quatern."""
    r = np.array(rotation, float)
    qfac = 1.0
    if np.linalg.det(r) < 0:
        r[:, 2] = -r[:, 2]
        qfac = -1.0
    a = r[0, 0] + r[1, 1] + r[2, 2] + 1.0
    if a > 0.5:
        a = 0.5 * np.sqrt(a)
        b = 0.25 * (r[2, 1] - r[1, 2]) / a
        c = 0.25 * (r[0, 2] - r[2, 0]) / a
        d = 0.25 * (r[1, 0] - r[0, 1]) / a
    else:
        xd, yd, zd = (
            1.0 + r[0, 0] - (r[1, 1] + r[2, 2]),
            1.0 + r[1, 1] - (r[0, 0] + r[2, 2]),
            1.0 + r[2, 2] - (r[0, 0] + r[1, 1]),
        )
        if xd > 1.0:
            b = 0.5 * np.sqrt(xd)
            c = 0.25 * (r[0, 1] + r[1, 0]) / b
            d = 0.25 * (r[0, 2] + r[2, 0]) / b
            a = 0.25 * (r[2, 1] - r[1, 2]) / b
        elif yd > 1.0:
            c = 0.5 * np.sqrt(yd)
            b = 0.25 * (r[0, 1] + r[1, 0]) / c
            d = 0.25 * (r[1, 2] + r[2, 1]) / c
            a = 0.25 * (r[0, 2] - r[2, 0]) / c
        else:
            d = 0.5 * np.sqrt(zd)
            b = 0.25 * (r[0, 2] + r[2, 0]) / d
            c = 0.25 * (r[1, 2] + r[2, 1]) / d
            a = 0.25 * (r[1, 0] - r[0, 1]) / d
        if a < 0:
            b, c, d = -b, -c, -d
    return float(b), float(c), float(d), qfac


def nifti_header(volume: Volume, dtype: np.dtype, slope: float = 1.0, intercept: float = 0.0) -> bytes:
    """A NIfTI-1 header (348 bytes + an empty extension flag): qform = the nearest orthogonal grid
    (what ITK reads), sform = the exact IJK->RAS matrix (sheared for a tilted stack), both scanner
    anatomical; units mm and s."""
    exact = LPS_TO_RAS @ np.asarray(volume.ijk_to_lps, float)
    ortho = LPS_TO_RAS @ orthogonal_approximation(volume.ijk_to_lps)
    spacing = np.linalg.norm(ortho[:3, :3], axis=0)
    b, c, d, qfac = _quaternion(ortho[:3, :3] / spacing)
    dims = list(volume.dims)
    code, bitpix = _NIFTI_TYPES[np.dtype(dtype)]
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, len(dims), *dims, *([1] * (7 - len(dims))))
    struct.pack_into("<hh", header, 70, code, bitpix)
    times = volume.time_axis or ()
    step = float(np.mean(np.diff(times))) if len(times) > 1 and volume.info.time_unit == "s" else 1.0
    struct.pack_into("<8f", header, 76, qfac, *spacing, step if step > 0 else 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<f", header, 108, 352.0)  # vox_offset
    struct.pack_into("<ff", header, 112, slope, intercept)
    header[123] = 2 | 8  # xyzt_units: mm, s
    struct.pack_into("<hh", header, 252, 1, 1)  # qform_code, sform_code: scanner anatomical
    struct.pack_into("<6f", header, 256, b, c, d, *ortho[:3, 3])
    struct.pack_into("<12f", header, 280, *exact[:3].flatten())
    header[344:348] = b"n+1\0"
    return bytes(header)


def write_nifti(volume: Volume, path: str | os.PathLike, *, compression: int = 6) -> None:
    """A scalar volume as NIfTI-1 (.nii or .nii.gz), integers with scl_slope/scl_inter where the
    voxels are one rescale of 16-bit integers (as dcm2niix writes them), else as they are."""
    import zlib

    path = Path(path)
    packed = _stored_integers(volume)
    if packed is not None:
        array, slope, intercept = packed
    else:
        array, slope, intercept = volume.array, 1.0, 0.0
    if array.dtype not in _NIFTI_TYPES:
        array = array.astype(np.float32)
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    header = nifti_header(volume, array.dtype, slope, intercept)
    with _replacing(path) as tmp, open(tmp, "wb") as f:
        if path.name.lower().endswith(".gz"):
            # a gzip member written chunk by chunk (RFC 1952), like gzip.GzipFile but without its copies
            packer = zlib.compressobj(compression, zlib.DEFLATED, 31)
            f.write(packer.compress(header))
            data = array.reshape(-1).view(np.uint8).data
            for start in range(0, len(data), 1 << 22):
                f.write(packer.compress(data[start : start + (1 << 22)]))
            f.write(packer.flush())
        else:
            f.write(header)
            f.write(array.tobytes())


def write_dwi_nrrd(volume: Volume, path: str | os.PathLike, *, compression: int = 6) -> None:
    """A diffusion series as the NRRD that Slicer, DTI-TK and teem read as DWI: the volumes on a
    first "list" axis, ``DWMRI_b-value`` (the largest b) and one ``DWMRI_gradient_NNNN`` per
    volume scaled by sqrt(b / largest b), in LPS (space left-posterior-superior, identity
    measurement frame)."""
    import zlib

    path = Path(path)
    info = volume.info
    bvals, gradients = info.bvals or (), info.gradients_lps or ()
    bmax = max(bvals)
    array = np.ascontiguousarray(np.moveaxis(volume.array, 0, -1))  # [k, j, i, t]: t fastest
    types = {"int16": "short", "uint16": "ushort", "int32": "int", "uint8": "uchar", "float32": "float"}
    if array.dtype.name not in types:
        array = array.astype(np.float32)
    m = np.asarray(volume.ijk_to_lps, float)
    vector = lambda v: "(" + ",".join(repr(float(x)) for x in v) + ")"  # noqa: E731
    lines = [
        "NRRD0005",
        "# written by DICOMPlus",
        f"type: {types[array.dtype.name]}",
        "dimension: 4",
        "space: left-posterior-superior",
        f"sizes: {len(bvals)} {' '.join(str(d) for d in volume.dims[:3])}",
        f"space directions: none {vector(m[:3, 0])} {vector(m[:3, 1])} {vector(m[:3, 2])}",
        "kinds: list domain domain domain",
        "endian: little",
        "encoding: gzip",
        f"space origin: {vector(m[:3, 3])}",
        "measurement frame: (1,0,0) (0,1,0) (0,0,1)",
        "modality:=DWMRI",
        f"DWMRI_b-value:={bmax:g}",
    ]
    for index, (b, g) in enumerate(zip(bvals, gradients, strict=True)):
        scale = float(np.sqrt(b / bmax)) if bmax > 0 and any(g) else 0.0
        lines.append(f"DWMRI_gradient_{index:04d}:={' '.join(f'{x * scale:.8f}' for x in g)}")
    header = ("\n".join(lines) + "\n\n").encode()
    with _replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(header)
        packer = zlib.compressobj(compression, zlib.DEFLATED, 31)
        data = array.reshape(-1).view(np.uint8).data
        for start in range(0, len(data), 1 << 22):
            f.write(packer.compress(data[start : start + (1 << 22)]))
        f.write(packer.flush())


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
    with _replacing(path) as tmp:
        tmp.write_bytes(gzip.compress(bytes(data), 6) if compressed else bytes(data))


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
