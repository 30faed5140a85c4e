"""RT Dose grids (PS3.3 C.8.8.3): frames placed by GridFrameOffsetVector, values in Gy.

An RT Dose is a multi-frame image without functional groups; ImagePositionPatient is the first
frame's position and GridFrameOffsetVector (3004,000C) gives every frame's offset (C.8.8.3.2):

* first offset 0: offsets are relative, along the normal ``row x column`` from the first frame;
* first offset equal to the first frame's z: offsets are absolute patient z coordinates, which
  the Standard allows only for transverse (axial) grids.

Pixel values times DoseGridScaling (3004,000E) are the dose, so the scaling becomes the rescale
slope (an RT Dose has no Modality LUT of its own).
"""

from __future__ import annotations

import numpy as np

from DICOMPlusLib import dataclasses_lite, uids
from DICOMPlusLib.loading.models import Frame, LoadWarning, point3

RT_DOSE_STORAGE = uids.RTDoseStorage
#: |normal . z| above this makes a grid transverse (absolute offsets are z coordinates).
_AXIAL = 1.0 - 1e-4


def _offsets(ds) -> list[float] | None:
    value = ds.get("GridFrameOffsetVector")
    if value is None or value == "":
        return None
    try:
        values = list(value)
    except TypeError:  # a single value
        values = [value]
    try:
        return [float(v) for v in values] or None
    except (TypeError, ValueError):
        return None


def is_dose_grid(ds) -> bool:
    return "GridFrameOffsetVector" in ds or str(ds.get("SOPClassUID") or "") == RT_DOSE_STORAGE


def dose_frames(base: Frame, ds, count: int) -> tuple[list[Frame], list[LoadWarning]]:
    """The frames of an RT Dose, each at its own position; without a usable offset vector the
    frames keep no position (the stack then loads without geometry, with that warning)."""
    scaling = ds.get("DoseGridScaling")
    changes: dict = {}
    if scaling not in (None, "") and "RescaleSlope" not in ds:
        try:
            changes["rescale_slope"] = float(scaling)
        except (TypeError, ValueError):
            pass
    offsets = _offsets(ds)
    if offsets is None and count == 1:  # the vector is required for multi-frame grids only
        offsets = [0.0]
    files = (base.path,)
    if base.position is None or base.orientation is None or offsets is None or len(offsets) != count:
        found = "absent or unreadable" if offsets is None else f"{len(offsets)} values for {count} frames"
        warning = LoadWarning(
            "dose_grid_unplaced",
            f"RT Dose without a usable GridFrameOffsetVector ({found}) or ImagePositionPatient: "
            "frames cannot be placed",
            files,
        )
        return [dataclasses_lite.replace(base, frame=i, position=None, **changes) for i in range(count)], [
            warning
        ]
    r = np.asarray(base.orientation[:3], float)
    c = np.asarray(base.orientation[3:], float)
    n = np.cross(r, c)
    n /= np.linalg.norm(n)
    p0 = np.asarray(base.position, float)
    warnings: list[LoadWarning] = []
    if offsets[0] == 0.0:
        positions = [p0 + o * n for o in offsets]
    elif abs(n[2]) >= _AXIAL and abs(offsets[0] - p0[2]) < 1e-3:
        positions = [np.array([p0[0], p0[1], o]) for o in offsets]
    else:
        positions = [p0 + (o - offsets[0]) * n for o in offsets]
        warnings.append(
            LoadWarning(
                "dose_grid_offsets",
                f"GridFrameOffsetVector starts at {offsets[0]:g}, neither 0 (relative offsets) nor the first "
                "frame's z on a transverse grid (absolute z): offsets taken relative to the first frame",
                files,
            )
        )
    frames = [
        dataclasses_lite.replace(base, frame=i, position=point3(p), **changes)
        for i, p in enumerate(positions)
    ]
    return frames, warnings
