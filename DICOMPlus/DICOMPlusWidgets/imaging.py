"""Pixels to screen for the preview: windowing, QImage conversion, orientation letters.

numpy only, plus ``qt.QImage`` in :func:`toQImage`. The image reaches Qt as a binary PGM/PPM
(Netpbm) buffer through ``QImage.loadFromData``: that works the same in PythonQt and PySide,
where constructing a QImage over a Python buffer does not.
"""

from __future__ import annotations

import numpy as np

#: Window presets (name, center, width) offered for CT, as in Slicer's volume display presets.
CT_PRESETS = (
    ("CT abdomen", 40.0, 350.0),
    ("CT brain", 50.0, 100.0),
    ("CT bone", 400.0, 1000.0),
    ("CT lung", -500.0, 1400.0),
)


def autoWindow(values):
    """(center, width) spanning the 1st to 99th percentile of ``values`` (finite ones)."""
    from DICOMPlusLib.loading.preview import window_of

    low, high = window_of(np.asarray(values), None, None)
    return (low + high) / 2.0, max(high - low, 1e-6)


def windowToUint8(values, center, width, invert=False):
    """Grayscale values to 0..255 through the linear VOI LUT function of PS3.3 C.11.2.1.2.1
    (``width`` >= 1 for integers; below that, a hard threshold at ``center``). MONOCHROME1
    images are inverted afterwards (``invert``)."""
    values = np.asarray(values, dtype=np.float32)
    if width <= 1.0:
        out = np.where(values > center - 0.5, 255.0, 0.0).astype(np.float32)
    else:
        out = ((values - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
        np.clip(out, 0.0, 255.0, out=out)
    if invert:
        out = 255.0 - out
    return np.rint(out).astype(np.uint8)


def colorToUint8(values):
    """RGB values (rows x columns x 3) to 0..255 per channel (values above 255 are scaled)."""
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values
    top = float(values.max()) if values.size else 255.0
    scale = 255.0 / top if top > 255.0 else 1.0
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def netpbmBytes(image):
    """A rows x columns (gray, P5) or rows x columns x 3 (RGB, P6) uint8 array as Netpbm bytes."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 2:
        magic = b"P5"
    elif image.ndim == 3 and image.shape[2] == 3:
        magic = b"P6"
    else:
        raise ValueError(f"cannot show an image of shape {image.shape}")
    rows, columns = image.shape[:2]
    return magic + b"\n%d %d\n255\n" % (columns, rows) + image.tobytes()


def toQImage(image):
    """A QImage of a uint8 gray or RGB array (see module docstring)."""
    import qt

    qimage = qt.QImage()
    if not qimage.loadFromData(qt.QByteArray(netpbmBytes(image)), "PPM" if image.ndim == 3 else "PGM"):
        raise ValueError("Qt could not read the preview image")
    return qimage


_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))  # + and - along LPS x, y, z


def orientationLetters(direction, threshold=0.25):
    """The patient-orientation letters of an LPS direction (PS3.3 C.7.6.1.1.1): the main axis
    first, then the others contributing more than ``threshold``; e.g. (0, 0.94, -0.34) -> "PF".
    Empty for an unknown direction."""
    if direction is None:
        return ""
    direction = np.asarray(direction, dtype=float)
    order = np.argsort(-np.abs(direction))
    letters = ""
    for axis in order:
        component = direction[axis]
        if abs(component) < threshold and letters:
            break
        letters += _LETTERS[axis][0 if component > 0 else 1]
    return letters
