"""Series thumbnails: the middle slice in geometric order, windowed, as a small PNG, cached.

Only the middle slice's pixels are read. The window is the slice's own WindowCenter/WindowWidth
(PS3.3 C.11.2.1.2, applied to rescaled values), else the 1st-99th percentiles of the slice;
MONOCHROME1 is inverted. The thumbnail keeps the physical aspect ratio (PixelSpacing). PNG is
written with zlib and struct (PNG specification, ISO/IEC 15948), so no imaging library is needed.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from DICOMPlusLib.loading import pixels, seg
from DICOMPlusLib.loading.models import Frame, VolumeInfo


def read_frame(frame: Frame, dtype: np.dtype | None = None) -> np.ndarray:
    """One frame's output values, for previews: rows x columns[, samples]; a 1-bit frame (a
    binary SEG's) gives 0 and 1."""
    if frame.bits_allocated == 1:
        return seg.frame_values(frame).astype(dtype or np.int16)
    return pixels.read_frame(frame, dtype)


DEFAULT_SIZE = 128


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit grayscale (rows x columns) or RGB (rows x columns x 3) image as PNG bytes."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 2:
        height, width = image.shape
        color_type = 0
    elif image.ndim == 3 and image.shape[2] == 3:
        height, width = image.shape[:2]
        color_type = 2
    else:
        raise ValueError(f"cannot write an image of shape {image.shape} as PNG")
    rows = image.reshape(height, -1)
    raw = np.empty((height, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 0  # filter type None on every scanline
    raw[:, 1:] = rows

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def window_of(values: np.ndarray, center: float | None, width: float | None) -> tuple[float, float]:
    """(low, high) display range: the given window, else robust percentiles."""
    if center is not None and width and width > 0:
        return center - width / 2.0, center + width / 2.0
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(x) for x in np.percentile(finite, [1.0, 99.0]))
    if high <= low:
        low, high = float(finite.min()), float(finite.max())
    return low, (high if high > low else low + 1.0)


def _fit(rows: int, cols: int, dy: float, dx: float, size: int) -> tuple[int, int]:
    height_mm, width_mm = rows * dy, cols * dx
    scale = size / max(height_mm, width_mm)
    return max(1, round(height_mm * scale)), max(1, round(width_mm * scale))


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Box-average by the integer part of the reduction, then nearest neighbour."""
    rows, cols = image.shape[:2]
    factor = max(1, min(rows // max(height, 1), cols // max(width, 1)))
    if factor > 1:
        r, c = (rows // factor) * factor, (cols // factor) * factor
        shape = (r // factor, factor, c // factor, factor, *image.shape[2:])
        image = image[:r, :c].reshape(shape).mean(axis=(1, 3))
        rows, cols = image.shape[:2]
    yi = np.minimum((np.arange(height) + 0.5) * rows / height, rows - 1).astype(int)
    xi = np.minimum((np.arange(width) + 0.5) * cols / width, cols - 1).astype(int)
    return image[yi][:, xi]


def middle_frame(info: VolumeInfo):
    k = info.shape[-3]
    return info.frames[k // 2]  # frames are t-major: the first time point's middle slice


def thumbnail(info: VolumeInfo, *, size: int = DEFAULT_SIZE) -> bytes:
    """PNG bytes of the middle slice of ``info`` (geometric order), at most size x size."""
    return png_bytes(thumbnail_image(info, size=size))


def thumbnail_image(info: VolumeInfo, *, size: int = DEFAULT_SIZE) -> np.ndarray:
    """The thumbnail as an 8-bit array (rows x columns, or rows x columns x 3 for colour; a
    segmentation's middle slice in its segments' colours)."""
    from DICOMPlusLib.loading import seg

    if seg.layout_of(info) is not None:
        return _segmentation_thumbnail(info, size)
    frame = middle_frame(info)
    values = read_frame(frame)
    dy, dx = frame.pixel_spacing or (1.0, 1.0)
    height, width = _fit(frame.rows, frame.columns, float(dy), float(dx), size)
    if values.ndim == 3:  # colour (RGB, YBR converted, palette applied)
        image = _resize(values.astype(np.float64), height, width)
        if values.dtype.itemsize > 1:
            image = image / max(float(values.max()), 1.0) * 255.0
        return np.clip(image, 0, 255).astype(np.uint8)
    image = _resize(values.astype(np.float64), height, width)
    low, high = window_of(values, frame.window_center, frame.window_width)
    scaled = np.clip((image - low) / (high - low), 0.0, 1.0) * 255.0
    if frame.photometric == "MONOCHROME1":
        scaled = 255.0 - scaled
    return np.rint(scaled).astype(np.uint8)


def _segmentation_thumbnail(info: VolumeInfo, size: int) -> np.ndarray:
    from DICOMPlusLib.loading import seg

    k = info.shape[0] // 2
    labels = seg.labelmap_slice(info, k)
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    for number, colour in seg.segment_colours(info).items():
        rgb[labels == number] = colour
    dy, dx = float(info.spacing[1]), float(info.spacing[0])
    height, width = _fit(labels.shape[0], labels.shape[1], dy, dx, size)
    return _resize(rgb, height, width).astype(np.uint8)


def contact_sheet(
    images: list[np.ndarray], *, columns: int = 4, cell: int = DEFAULT_SIZE, gap: int = 4
) -> bytes:
    """PNG bytes of thumbnails tiled in a grid (each centred in a ``cell`` x ``cell`` square,
    on black), colour when any of them is colour."""
    if not images:
        raise ValueError("a contact sheet needs at least one image")
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    colour = any(image.ndim == 3 for image in images)
    shape = (rows * (cell + gap) + gap, columns * (cell + gap) + gap) + ((3,) if colour else ())
    sheet = np.zeros(shape, np.uint8)
    for index, image in enumerate(images):
        if colour and image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = image[:cell, :cell]
        top = gap + (index // columns) * (cell + gap) + (cell - image.shape[0]) // 2
        left = gap + (index % columns) * (cell + gap) + (cell - image.shape[1]) // 2
        sheet[top : top + image.shape[0], left : left + image.shape[1]] = image
    return png_bytes(sheet)


class ThumbnailCache:
    """Thumbnails by content: the key is the series UID, the SOP instance UIDs of the volume
    and the size, so adding or replacing an instance gives a new thumbnail. Kept in memory
    (LRU) and, when ``folder`` is given, on disk."""

    def __init__(self, folder: str | os.PathLike | None = None, capacity: int = 256):
        self.folder = Path(folder) if folder else None
        self.capacity = capacity
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(info: VolumeInfo, size: int) -> str:
        digest = hashlib.sha256()
        digest.update(f"{info.series_uid}|{size}|".encode())
        for f in info.frames:
            digest.update(f"{f.sop_uid}#{f.frame};".encode())
        return digest.hexdigest()

    def get(self, info: VolumeInfo, *, size: int = DEFAULT_SIZE) -> bytes:
        key = self.key(info, size)
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                self.hits += 1
                return self._memory[key]
        path = self.folder / f"{key[:2]}" / f"{key}.png" if self.folder else None
        if path is not None and path.is_file():
            data = path.read_bytes()
            self.hits += 1
        else:
            data = thumbnail(info, size=size)
            self.misses += 1
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)
        with self._lock:
            self._memory[key] = data
            while len(self._memory) > self.capacity:
                self._memory.popitem(last=False)
        return data


_caches: dict[str, ThumbnailCache] = {}


def series_thumbnail(
    db, series_uid: str, *, size: int = DEFAULT_SIZE, cache: ThumbnailCache | None = None
) -> bytes:
    """The thumbnail of a database series (its main volume: the first that is not a localizer),
    cached beside the database in ``thumbnails/``."""
    from DICOMPlusLib.loading.api import plan_series

    infos = plan_series(db, series_uid)
    main = next((i for i in infos if not i.localizer), infos[0])
    if cache is None:
        folder = Path(db.path).parent / "thumbnails"
        cache = _caches.setdefault(str(folder), ThumbnailCache(folder))
    return cache.get(main, size=size)


#: Name of the window the DICOM tags give (a preset of the preview; "DICOM tags (2)" and
#: "DICOM tags: EXPLANATION" when the header gives several). Short: the preset box has about
#: 150 px for it in Slicer's module panel.
FROM_TAGS = "DICOM tags"


def plan_preview(database, series_uid: str):
    """(SeriesRecord or None, [VolumeInfo], [[(name, center, width)]]) of a database series: the
    loader's plan (frames in array order) and, per volume, the windows in the tags of its middle
    slice. What the preview widget shows before it decodes a slice."""
    from DICOMPlusLib.loading.api import plan_series

    records = database.search("series", {"SeriesInstanceUID": series_uid})
    infos = plan_series(database, series_uid)
    return (records[0] if records else None), infos, [tag_windows(database, info) for info in infos]


def tag_windows(database, info):
    """[(name, center, width)]: every distinct WindowCenter/WindowWidth pair of the stored header
    of the middle slice (PS3.3 C.11.2.1.2: several pairs are alternative views, named by
    WindowCenterWidthExplanation), else the loader's ``VolumeInfo.window``."""
    windows = []
    try:
        header = database.header(info.frames[info.shape[-3] // 2].sop_uid)
        centers = _values(header.get("WindowCenter"))
        widths = _values(header.get("WindowWidth"))
        names = _values(header.get("WindowCenterWidthExplanation"))
    except Exception:  # no stored header, or a damaged element: the plan's window below
        centers = widths = names = []
    for index, (center, width) in enumerate(zip(centers, widths, strict=False)):
        try:
            center, width = float(center), float(width)
        except (TypeError, ValueError):
            continue
        if width <= 0 or any((center, width) == known[1:] for known in windows):
            continue
        name = FROM_TAGS if not windows else f"{FROM_TAGS} ({len(windows) + 1})"
        if index < len(names) and str(names[index]).strip():
            name = f"{FROM_TAGS}: {str(names[index]).strip()}"
        windows.append((name, center, width))
    if not windows and info.window:
        windows.append((FROM_TAGS, float(info.window[0]), float(info.window[1])))
    return windows


def _values(value):
    """A DICOM value as a list (single values and pydicom MultiValue alike)."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, int, float)):
        return [value]
    return list(value)
