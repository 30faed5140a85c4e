"""The state behind the preview, without Qt: which series, volume, slice and time point are
shown, the decoded slices, the window, what to decode next and what to write on the image.

DICOMPlusPreviewWidget owns one :class:`PreviewModel` and draws it. The plan and the decoded
slices come from the DICOMPlus engine (operations "preview_plan" and "frame"), in the order
:meth:`PreviewModel.distance` gives.
"""

from __future__ import annotations

import collections

from slicer.i18n import tr as _

from DICOMPlusLib.loading.preview import FROM_TAGS

from .imaging import CT_PRESETS, autoWindow, colorToUint8, orientationLetters, windowToUint8

# Preset names are short enough for the preset box at Slicer's 340 px panel (about 150 px of
# text); each says the rest in its tooltip.
AUTOMATIC = _("Automatic")
CUSTOM = _("Custom")
PRESET_TIP = _("Window/level preset (drag with the left button in the view to adjust)")


def presetTip(name):
    """The tooltip of the window preset ``name``: where its center and width come from."""
    if name == AUTOMATIC:
        return _("Automatic: the 1st to 99th percentile of the slice shown")
    if name == CUSTOM:
        return _("Custom: the window you dragged in the view")
    if name.startswith(FROM_TAGS):
        return _("{name}: WindowCenter and WindowWidth of the series' DICOM header").format(name=name)
    return _("{name}: Slicer's preset of that name").format(name=name)


def frameKey(frame):
    return ("frame", frame.path, frame.frame)


class SliceCache:
    """Decoded slices by key, least recently used first out beyond ``maxBytes``."""

    def __init__(self, maxBytes=256 * 1024 * 1024):
        self.maxBytes = maxBytes
        self._items = collections.OrderedDict()
        self.nbytes = 0

    def __contains__(self, key):
        return key in self._items

    def __len__(self):
        return len(self._items)

    def get(self, key):
        array = self._items.get(key)
        if array is not None:
            self._items.move_to_end(key)
        return array

    def put(self, key, array):
        if key in self._items:
            self.nbytes -= self._items.pop(key).nbytes
        self._items[key] = array
        self.nbytes += array.nbytes
        while self.nbytes > self.maxBytes and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self.nbytes -= dropped.nbytes

    def clear(self):
        self._items.clear()
        self.nbytes = 0


class PreviewModel:
    """What the preview shows; see the module docstring."""

    def __init__(self, cacheBytes=256 * 1024 * 1024):
        self.cache = SliceCache(cacheBytes)
        self.playAxis = "slices"
        self.reset()

    def reset(self, seriesUID=""):
        """Forget the series (the cache of decoded slices is kept)."""
        self.seriesUID = seriesUID
        self.record = None
        self.infos = []
        self.volume = 0
        self.slice = 0
        self.time = 0
        self.index = {}  # frame key -> (t, k)
        self.windowCW = None  # (center, width) in output values
        self.presets = []
        self.tagWindows = []
        self.errors = {}  # frame key -> message

    # -- volumes and frames ----------------------------------------------------------------------
    def setPlan(self, record, infos, windows=None):
        """Take the plan; returns the volume to show first (the first that is not a localizer)."""
        self.record, self.infos = record, list(infos)
        self.tagWindows = list(windows) if windows is not None else [[] for _ in self.infos]
        return next((i for i, info in enumerate(self.infos) if not info.localizer), 0)

    def setVolume(self, index):
        """Show volume ``index``: slice 0, time 0, its presets and the window of its tags."""
        self.volume = index
        info = self.infos[index]
        slices = info.shape[-3]
        self.slice = self.time = 0
        self.index = {frameKey(frame): divmod(position, slices) for position, frame in enumerate(info.frames)}
        self.presets = list(self.tagWindows[index])
        if not self.presets and info.window:
            self.presets.append((FROM_TAGS, float(info.window[0]), float(info.window[1])))
        self.presets.append((AUTOMATIC, None, None))
        if (info.modality or "").upper() == "CT":
            self.presets += list(CT_PRESETS)
        first = self.presets[0]
        self.windowCW = (first[1], first[2]) if first[1] is not None else None

    @property
    def info(self):
        return self.infos[self.volume] if self.infos else None

    def sliceCount(self):
        return self.info.shape[-3] if self.info is not None else 0

    def timePointCount(self):
        info = self.info
        return (info.shape[0] if info.is_4d else 1) if info is not None else 0

    def frame(self, t=None, k=None):
        """The Frame at time ``t`` and slice ``k`` (default: the current ones), or None."""
        info = self.info
        t = self.time if t is None else t
        k = self.slice if k is None else k
        if info is None or not (0 <= k < self.sliceCount() and 0 <= t < self.timePointCount()):
            return None
        return info.frames[t * self.sliceCount() + k]

    def values(self, t=None, k=None):
        frame = self.frame(t, k)
        return self.cache.get(frameKey(frame)) if frame is not None else None

    def isReady(self, t=None, k=None):
        frame = self.frame(t, k)
        return frame is not None and frameKey(frame) in self.cache

    def distance(self, key):
        """The decoding order: the plan first, then frames by distance to the one shown."""
        if key[0] == "plan":
            return -1
        t, k = self.index.get(key, (0, 0))
        return abs(k - self.slice) + abs(t - self.time)

    def framesToDecode(self):
        """[(frame, first)]: the current frame first, then the current time point's slices (or,
        when autoplay runs through time, the current slice at every time point), as far on each
        side as a quarter of the cache holds."""
        current = self.frame()
        if current is None:
            return []
        out = [(current, True)]
        # no further than half of what the cache holds, or the decoder would evict the slices
        # nearest to the one shown to make room for far ones
        frameBytes = 4 * (current.rows or 512) * (current.columns or 512) * max(current.samples_per_pixel, 1)
        reach = max(4, self.cache.maxBytes // (4 * frameBytes))
        if self.playAxis == "time" and self.timePointCount() > 1:
            near = range(max(0, self.time - reach), min(self.timePointCount(), self.time + reach + 1))
            others = [self.frame(t, self.slice) for t in near]
        else:
            near = range(max(0, self.slice - reach), min(self.sliceCount(), self.slice + reach + 1))
            others = [self.frame(self.time, k) for k in near]
        out += [(frame, False) for frame in others if frame is not None and frame is not current]
        return [
            (f, first) for f, first in out if frameKey(f) not in self.cache and frameKey(f) not in self.errors
        ]

    # -- window ----------------------------------------------------------------------------------
    def presetWindow(self, index):
        """(center, width) of preset ``index``, None for "Custom" or before anything is decoded."""
        name, center, width = self.presets[index]
        if name == CUSTOM:
            return None
        if center is None:
            values = self.values()
            if values is None:
                return None
            center, width = autoWindow(values)
        return center, width

    def draggedWindow(self, dx, dy):
        """(center, width) after a drag of (dx, dy) screen pixels: right widens, down lowers the
        level (brighter), with a step proportional to the width."""
        center, width = self.windowCW
        step = max(width, 10.0) / 200.0
        return center - dy * step, max(width + dx * step, 1.0)

    def addCustomPreset(self):
        """Index of the "Custom" preset, added at the end if missing."""
        if not self.presets or self.presets[-1][0] != CUSTOM:
            self.presets.append((CUSTOM, None, None))
        return len(self.presets) - 1

    def image(self):
        """The current slice as uint8 (gray, or RGB) for the screen, or None until decoded."""
        values = self.values()
        if values is None:
            return None
        if values.ndim == 3:
            return colorToUint8(values)
        if self.windowCW is None:
            self.windowCW = autoWindow(values)
        center, width = self.windowCW
        return windowToUint8(values, center, width, invert=self.frame().photometric == "MONOCHROME1")

    # -- text on the image -----------------------------------------------------------------------
    def orientation(self):
        """(left, right, top, bottom) patient-orientation letters of the current volume."""
        frame = self.frame()
        if frame is None or frame.orientation is None:
            return ("", "", "", "")
        row, column = frame.orientation[:3], frame.orientation[3:]
        negative = lambda v: tuple(-x for x in v)  # noqa: E731
        return (
            orientationLetters(negative(row)),
            orientationLetters(row),
            orientationLetters(negative(column)),
            orientationLetters(column),
        )

    def cornerTexts(self, zoom):
        """{corner: [lines]} for the view."""
        info, frame = self.info, self.frame()
        if info is None or frame is None:
            return {"topLeft": [], "topRight": [], "bottomLeft": [], "bottomRight": []}
        title = (
            (self.record.SeriesDescription if self.record is not None else "") or info.label or _("Series")
        )
        if len(title) > 30:
            title = title[:29] + "\u2026"
        where = _("Slice {k} of {count}").format(k=self.slice + 1, count=self.sliceCount())
        if self.timePointCount() > 1:
            where += _(", time {t} of {count}").format(t=self.time + 1, count=self.timePointCount())
        window = f"W {self.windowCW[1]:.6g}  L {self.windowCW[0]:.6g}" if self.windowCW else ""
        position = "LPS " + ", ".join(f"{x:.1f}" for x in frame.position) if frame.position else ""
        return {
            "topLeft": [title, where],
            "topRight": [info.modality, f"{frame.columns} x {frame.rows}"],
            "bottomLeft": [window],
            "bottomRight": [_("Zoom {percent}%").format(percent=f"{zoom * 100:.0f}"), position],
        }

    @staticmethod
    def volumeTitle(index, info):
        dims = " x ".join(str(d) for d in info.dims)
        title = _("Volume {index}: {dims}").format(index=index + 1, dims=dims)
        return title + " " + _("(localizer)") if info.localizer else title
