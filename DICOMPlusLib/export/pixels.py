"""Voxel values -> 16-bit stored values plus a rescale (PS3.3 C.7.6.2, C.11.1.1.2).

Output value = stored value x RescaleSlope + RescaleIntercept. One slope and intercept serve the
whole series, so every slice decodes the same way and a reader that applies them per slice or per
series gets the same numbers.

* Integer voxels (or floats that are all whole numbers) that fit int16 are stored as they are
  (slope 1, intercept 0); those that fit uint16 are stored unsigned; a wider integer range no
  larger than 65536 values is shifted by an integer intercept. All exact.
* Anything else (fractions, wider ranges) is quantised onto 0..65535 with a slope of
  (max - min) / 65535: the error is at most half a slope (plus the DS rounding of slope and
  intercept, which the encoder uses as written, so the error bound holds for what a reader
  decodes). The writer measures the error slice by slice as it encodes
  (:meth:`PixelEncoding.encode_measured`) and reports it in the export result.
* NaN or infinite voxels cannot be stored: :class:`ExportError`.

The plan is made in one pass over the volume and applied slice by slice, so exporting never
holds a second full-size copy of the volume in memory.
"""

from __future__ import annotations

import numpy as np

from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import ExportError
from DICOMPlusLib.export.geometry import ds

INT16 = (-32768, 32767)
UINT16 = (0, 65535)


@dataclass(frozen=True)
class PixelEncoding:
    """How values are stored: dtype, PixelRepresentation, slope and intercept (as DS text)."""

    signed: bool
    slope: str
    intercept: str
    exact: bool  # True: stored x slope + intercept gives every input value back exactly
    minimum: float  # of the input values
    maximum: float
    max_error: float = 0.0  # largest |decoded - input|, measured by the writer (0 in a plan)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype("<i2") if self.signed else np.dtype("<u2")

    @property
    def pixel_representation(self) -> int:
        return 1 if self.signed else 0

    @property
    def slope_value(self) -> float:
        return float(self.slope)

    @property
    def intercept_value(self) -> float:
        return float(self.intercept)

    @property
    def is_identity(self) -> bool:
        return self.slope_value == 1.0 and self.intercept_value == 0.0

    def stored_range(self) -> tuple[int, int]:
        lo, hi = self.encode(np.array([self.minimum, self.maximum]))
        return int(lo), int(hi)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Stored values (little-endian int16/uint16) for ``values``."""
        limits = INT16 if self.signed else UINT16
        if self.exact:
            if self.intercept_value == 0.0:
                return np.asarray(values).astype(self.dtype)
            wide = np.asarray(values).astype(np.float64 if values.dtype.kind == "f" else np.int64)
            return (wide - int(self.intercept_value)).astype(self.dtype)
        scaled = (np.asarray(values, dtype=np.float64) - self.intercept_value) / self.slope_value
        return np.clip(np.rint(scaled), *limits).astype(self.dtype)

    def encode_measured(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        """Stored values and the largest |decoded - input| among them (0 when exact)."""
        if self.exact:
            return self.encode(values), 0.0
        scaled = (np.asarray(values, dtype=np.float64) - self.intercept_value) / self.slope_value
        rounded = np.clip(np.rint(scaled), *UINT16)
        error = float(np.max(np.abs(rounded - scaled))) * self.slope_value if scaled.size else 0.0
        return rounded.astype(self.dtype), error

    def decode(self, stored: np.ndarray) -> np.ndarray:
        return stored.astype(np.float64) * self.slope_value + self.intercept_value


def _range_and_integrality(array: np.ndarray) -> tuple[float, float, bool]:
    """Min, max and whether every value is a whole number, one slice at a time."""
    if array.size == 0:
        raise ExportError("nothing to export: the volume is empty")
    if array.dtype.kind == "b":
        return float(array.min()), float(array.max()), True
    if array.dtype.kind in "iu":
        return float(array.min()), float(array.max()), True
    if array.dtype.kind != "f":
        raise ExportError(f"cannot export voxels of type {array.dtype} (use integers or floats)")
    lo, hi, whole = np.inf, -np.inf, True
    for plane in array.reshape(-1, *array.shape[-2:]) if array.ndim > 2 else [array]:
        plane_lo, plane_hi = float(plane.min()), float(plane.max())  # NaN propagates into both
        if not (np.isfinite(plane_lo) and np.isfinite(plane_hi)):
            raise ExportError("the volume has NaN or infinite voxels; replace them before exporting")
        lo, hi = min(lo, plane_lo), max(hi, plane_hi)
        if whole and not np.array_equal(plane, np.rint(plane)):
            whole = False
    return lo, hi, whole


def plan_encoding(array: np.ndarray, *, allow_signed: bool = True) -> PixelEncoding:
    """Choose how to store ``array`` in 16 bits (see the module docstring).

    ``allow_signed=False`` for objects whose stored values must be unsigned.
    """
    lo, hi, whole = _range_and_integrality(array)
    if whole:
        if allow_signed and INT16[0] <= lo and hi <= INT16[1]:
            return PixelEncoding(True, "1", "0", True, lo, hi)
        if UINT16[0] <= lo and hi <= UINT16[1]:
            return PixelEncoding(False, "1", "0", True, lo, hi)
        if hi - lo <= UINT16[1] and abs(lo) < 1e15:
            return PixelEncoding(False, "1", str(int(lo)), True, lo, hi)
    return _quantised(array, lo, hi)


def _quantised(array: np.ndarray, lo: float, hi: float) -> PixelEncoding:
    intercept = ds(lo)
    b = float(intercept)
    span = hi - b
    slope = ds(span / UINT16[1]) if span > 0 else "1"
    if float(slope) <= 0:
        slope = "1"
    # The DS rounding may make the slope a hair short of reaching the maximum: nudge it up.
    s = float(slope)
    while b + s * UINT16[1] < hi - 1e-9 * max(abs(hi), 1.0):
        s = s * (1 + 1e-12) + 1e-300
        slope = ds(s * (1 + 1e-9))
        s = float(slope)
    return PixelEncoding(False, slope, intercept, False, lo, hi)
