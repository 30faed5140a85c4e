"""Mosaic images: several slices stored as tiles of one 2D image, split back into slices.

* **Siemens MOSAIC** (ImageType contains ``MOSAIC``): the number of slices is
  NumberOfImagesInMosaic, in (0019,100A) or in the CSA image header (0029,1010); tiles fill a
  square grid of ``ceil(sqrt(N))`` tiles per side, row by row. ImagePositionPatient is the corner
  of the whole mosaic; the first slice's position is that corner moved by half the difference
  between the mosaic and the tile along the row and column directions (as dcm2niix computes it).
  Slices follow at SpacingBetweenSlices along the slice normal of the CSA header
  (SliceNormalVector), which says whether they run along ``row x column`` or against it.
* **United Imaging grid images** (ImageType contains ``VFRAME``): tiles of AcquisitionMatrix size,
  row by row, one per item of the private per-slice sequence (0065,1051), whose items hold each
  slice's own ImagePositionPatient.

Where the header does not allow a split, the image stays one slice with a ``mosaic_unsplit``
warning (never silently misplaced).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from DICOMPlusLib import dataclasses_lite
from DICOMPlusLib.loading.models import Frame, LoadWarning, VolumeInfo, point3

#: Private attributes read for mosaics: pseudo-keyword -> tag.
PRIVATE: dict[str, int] = {
    "SiemensNumberOfImagesInMosaic": 0x0019100A,
    "SiemensCSAImageHeader": 0x00291010,
    "UIHNumberOfSlices": 0x00651050,
}
TAGS: dict[str, int] = {**PRIVATE, "AcquisitionMatrix": 0x00181310}

_UIH_SLICES = 0x00651051


def is_mosaic(f: Frame) -> bool:
    return "MOSAIC" in f.image_type or "VFRAME" in f.image_type


def needs_dataset(f: Frame) -> bool:
    """UIH grids keep their slice positions in a sequence the fast scanner does not decode."""
    return "VFRAME" in f.image_type


def csa_values(raw: bytes | None) -> dict[str, list[str]]:
    """The elements of a Siemens CSA header (``SV10`` or the older format without it): name ->
    list of item strings. Unknown layouts give an empty dict."""
    out: dict[str, list[str]] = {}
    if not raw or len(raw) < 16:
        return out
    raw = bytes(raw)
    pos = 8 if raw[:4] == b"SV10" else 0
    try:
        (count,) = struct.unpack_from("<I", raw, pos)
        pos += 8
        if not 0 < count < 1000:
            return out
        for _ in range(count):
            name = raw[pos : pos + 64].split(b"\x00", 1)[0].decode("latin-1")
            (items,) = struct.unpack_from("<i", raw, pos + 64 + 4 + 4 + 4)
            pos += 84
            values = []
            for _ in range(max(0, items)):
                (length,) = struct.unpack_from("<i", raw, pos + 4)
                pos += 16
                text = raw[pos : pos + length].split(b"\x00", 1)[0].decode("latin-1").strip()
                if text:
                    values.append(text)
                pos += (length + 3) // 4 * 4
            out[name] = values
    except (struct.error, ValueError):
        return out
    return out


def _floats(values) -> list[float]:
    out = []
    for v in values or []:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            return []
    return out


def _bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("latin-1")
    return None


def _first_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bytes | bytearray):
        if len(value) >= 2:
            return int(struct.unpack_from("<H", bytes(value))[0])
        return None
    if isinstance(value, str):
        value = value.split("\\")[0]
    elif not isinstance(value, int | float):
        try:
            value = next(iter(value))
        except (TypeError, StopIteration):
            return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _unsplit(f: Frame, why: str) -> tuple[list[Frame], list[LoadWarning]]:
    return [f], [
        LoadWarning(
            "mosaic_unsplit",
            f"the image is a mosaic of several slices but {why}: it loads as one large slice, and its "
            "position is that of the whole mosaic, not of the slices",
            (f.label,),
        )
    ]


def expand(f: Frame, get: Callable[[str], Any], ds=None) -> tuple[list[Frame], list[LoadWarning]]:
    """The slices of mosaic frame ``f`` (``get`` reads its header; ``ds`` is its pydicom data
    set where one was parsed)."""
    if "VFRAME" in f.image_type:
        return _uih(f, get, ds)
    return _siemens(f, get)


def _siemens(f: Frame, get) -> tuple[list[Frame], list[LoadWarning]]:
    csa = csa_values(_bytes(get("SiemensCSAImageHeader")))
    count = _first_int(get("SiemensNumberOfImagesInMosaic"))
    if not count:
        values = _floats(csa.get("NumberOfImagesInMosaic"))
        count = int(values[0]) if values else None
    if not count or count < 1:
        return _unsplit(f, "NumberOfImagesInMosaic is in neither (0019,100A) nor the CSA header")
    if not (
        f.position is not None and f.orientation is not None and f.pixel_spacing and f.rows and f.columns
    ):
        return _unsplit(f, "it has no ImagePositionPatient / ImageOrientationPatient / PixelSpacing")
    side = math.ceil(math.sqrt(count))
    if f.rows % side or f.columns % side:
        return _unsplit(f, f"its {f.columns}x{f.rows} pixels do not divide into {side}x{side} tiles")
    rows, cols = f.rows // side, f.columns // side
    r = np.asarray(f.orientation[:3], float)
    c = np.asarray(f.orientation[3:6], float)
    n = np.cross(r, c)
    n /= np.linalg.norm(n)
    dy, dx = f.pixel_spacing
    first = np.asarray(f.position, float) + r * dx * (f.columns - cols) / 2 + c * dy * (f.rows - rows) / 2
    warnings: list[LoadWarning] = []
    normal = _floats(csa.get("SliceNormalVector"))
    sign = 1.0
    if len(normal) == 3 and float(np.dot(normal, n)) < 0:
        sign = -1.0
    elif len(normal) != 3 and count > 1:
        warnings.append(
            LoadWarning(
                "mosaic_direction_assumed",
                "the CSA header has no SliceNormalVector: mosaic slices assumed to run along row x column",
                (f.label,),
            )
        )
    step = f.spacing_between_slices or f.slice_thickness or 1.0
    tiles = [
        dataclasses_lite.replace(
            f,
            rows=rows,
            columns=cols,
            position=point3(first + sign * k * step * n),
            mosaic=(f.rows, f.columns, k),
        )
        for k in range(count)
    ]
    return tiles, warnings


def _uih(f: Frame, get, ds) -> tuple[list[Frame], list[LoadWarning]]:
    items = ds.get(_UIH_SLICES) if ds is not None else None
    items = items.value if items is not None else None
    if not items:
        return _unsplit(f, "the per-slice sequence (0065,1051) is missing")
    if not (f.orientation and f.pixel_spacing and f.rows and f.columns):
        return _unsplit(f, "it has no ImageOrientationPatient / PixelSpacing")
    matrix = [int(x) for x in (_floats(_as_list(get("AcquisitionMatrix"))) or [])]
    if len(matrix) != 4:
        return _unsplit(f, "AcquisitionMatrix does not give the tile size")
    frequency = matrix[0] or matrix[1]
    phase = matrix[2] or matrix[3]
    direction = str(get("InPlanePhaseEncodingDirection") or "").strip().upper()
    rows, cols = (phase, frequency) if direction.startswith("COL") else (frequency, phase)
    if not rows or not cols or f.rows % rows or f.columns % cols:
        return _unsplit(f, f"its {f.columns}x{f.rows} pixels do not divide into {cols}x{rows} tiles")
    per_row = f.columns // cols
    if len(items) > per_row * (f.rows // rows):
        return _unsplit(f, f"{len(items)} slices do not fit its grid of {cols}x{rows} tiles")
    tiles = []
    for k, item in enumerate(items):
        position = item.get("ImagePositionPatient")
        if position is None or len(position) < 3:
            return _unsplit(f, f"slice {k + 1} of (0065,1051) has no ImagePositionPatient")
        tiles.append(
            dataclasses_lite.replace(
                f,
                rows=rows,
                columns=cols,
                position=point3(position[:3]),
                mosaic=(f.rows, f.columns, k),
            )
        )
    return tiles, []


def _as_list(value):
    if value is None:
        return None
    if isinstance(value, str):
        return value.split("\\")
    if isinstance(value, int | float):
        return [value]
    return list(value)


# -- pixels ---------------------------------------------------------------------------------------
def read_tiles(info: VolumeInfo, read_pixels, **kwargs) -> np.ndarray:
    """The voxels of a volume made of mosaic tiles: each stored image is read once with
    ``read_pixels`` and cut into its tiles."""
    parents: dict[tuple[str, int], int] = {}
    stored: list[Frame] = []
    for f in info.frames:
        key = (f.path, f.frame)
        if key not in parents:
            parents[key] = len(stored)
            full_rows, full_cols, _ = f.mosaic if f.mosaic else (f.rows, f.columns, 0)
            stored.append(dataclasses_lite.replace(f, rows=full_rows, columns=full_cols, mosaic=None))
    whole = VolumeInfo(
        series_uid=info.series_uid,
        frames=tuple(stored),
        shape=(len(stored), stored[0].rows, stored[0].columns),  # type: ignore[arg-type]
        ijk_to_lps=info.ijk_to_lps,
        spacing=info.spacing,
        components=info.components,
    )
    images = read_pixels(whole, **kwargs)
    shape = tuple(info.shape) + ((info.components,) if info.components > 1 else ())
    out = np.empty(shape, images.dtype)
    flat = out.reshape((len(info.frames), *out.shape[-(3 if info.components > 1 else 2) :]))
    for index, f in enumerate(info.frames):
        image = images[parents[(f.path, f.frame)]]
        if f.mosaic is None:
            flat[index] = image
            continue
        _, full_cols, k = f.mosaic
        per_row = full_cols // f.columns  # type: ignore[operator]
        y, x = divmod(k, per_row)
        flat[index] = image[y * f.rows : (y + 1) * f.rows, x * f.columns : (x + 1) * f.columns]  # type: ignore[operator]
    return out
