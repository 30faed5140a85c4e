"""DICOMPlusPreviewWidget: look through a series slice by slice before loading it.

The slices are shown in the loader's geometric order: ``DICOMPlusLib.loading.plan_series`` gives
the volumes of the series with their frames in array order (time major, then k by increasing
position along the slice normal), exactly what ``loadSeries`` would put in the scene, so what
the preview shows as slice k is slice k of the loaded volume. Headers are planned and pixels
decoded (``DICOMPlusLib.loading.preview.read_frame``) in the DICOMPlus engine process, the slice asked for
first and then its neighbours; decoded slices are kept in an LRU cache. Nothing is added to the
MRML scene: the "Load" button only emits ``loadRequested``. The state lives in
:class:`~DICOMPlusWidgets.previewmodel.PreviewModel`; this file is the Qt side.
"""

from __future__ import annotations

import qt
from slicer.i18n import tr as _

from . import text as T
from .fitting import WrappedLabel, breakable, fitToText, unbreakable
from .imaging import toQImage
from .previewmodel import CUSTOM, PRESET_TIP, PreviewModel, frameKey, presetTip
from .signals import Signal
from .sliceview import DICOMPlusSliceView
from .tasks import EngineQueue, QueuePump, followDatabaseClosing, stopTimer


class DICOMPlusPreviewWidget(qt.QWidget):
    """A series preview: slices in geometric order, autoplay, window/level, pan and zoom.

    ``source`` is a DICOMPlusLogic (its ``database`` is used) or a DICOMPlusLib Database.

    Signals (:class:`~DICOMPlusWidgets.signals.Signal`): ``seriesShown(str uid)`` (headers read,
    first slice on its way), ``sliceChanged(int k)``, ``timePointChanged(int t)``,
    ``windowLevelChanged(float width, float center)``, ``loadRequested(list entries)`` (the
    Load button: ``[("series", uid)]``), ``resampledLoadRequested(list entries)`` (the Load
    resampled button, shown for a tilted or irregular series), ``failed(str message)``.

    Public methods: setDatabase, setSeries, seriesUID, clear, volumeCount, currentVolume,
    setCurrentVolume, volumeInfo, sliceCount, currentSlice, setCurrentSlice, timePointCount,
    currentTimePoint, setCurrentTimePoint, currentFrame, currentSliceArray, isSliceReady, play,
    pause, isPlaying, setSpeed, speed, setPlayAxis, windowLevel, setWindowLevel, windowPresets,
    applyWindowPreset, zoomFactor, setZoomFactor, panOffset, setPanOffset, resetView,
    loadWarnings, warningsText, sliceView, playButton, loadButton, cleanup.
    """

    def __init__(self, source=None, parent=None, cacheBytes=256 * 1024 * 1024):
        qt.QWidget.__init__(self, parent)
        self.seriesShown = Signal(str, name="seriesShown")
        self.sliceChanged = Signal(int, name="sliceChanged")
        self.timePointChanged = Signal(int, name="timePointChanged")
        self.windowLevelChanged = Signal(float, float, name="windowLevelChanged")
        self.loadRequested = Signal(list, name="loadRequested")
        self.resampledLoadRequested = Signal(list, name="resampledLoadRequested")
        self.failed = Signal(str, name="failed")
        self._source = source
        self._model = PreviewModel(cacheBytes)
        self._queue = EngineQueue()
        self._queue.setOrder(self._model.distance)
        self._pump = QueuePump(self._queue, self._onResult, self)
        followDatabaseClosing(self._queue, None, source)
        self._playTimer = qt.QTimer(self)
        self._playTimer.connect("timeout()", self._onPlayTick)
        self._setupUi()
        self.clear()

    # -- construction ----------------------------------------------------------------------------
    def _setupUi(self):
        layout = qt.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._view = DICOMPlusSliceView(self)
        self._view.windowLevelDragged.connect(self._onWindowLevelDragged)
        self._view.sliceScrolled.connect(self._onSliceScrolled)
        self._view.viewChanged.connect(self._updateCorners)
        layout.addWidget(self._view, 1)

        # the slice and time sliders in one grid: both start at the same x, after the widest
        # leading cell (Play and its speed), and end at the same x; in two rows of their own
        # each slider started after its own leading widget, 100 px apart. What autoplay plays
        # sits in the time row's leading cell (shown for 4D series only), which Play's width
        # leaves room for: the sliders keep the rest of Slicer's ~300 px panel
        sliders = qt.QWidget(self)
        grid = qt.QGridLayout(sliders)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setColumnStretch(1, 1)
        playCell = qt.QWidget(sliders)
        playLayout = qt.QHBoxLayout(playCell)
        playLayout.setContentsMargins(0, 0, 0, 0)
        self._playButton = qt.QToolButton(playCell)
        self._playButton.checkable = True
        self._playButton.setToolButtonStyle(qt.Qt.ToolButtonTextBesideIcon)
        self._playButton.toolTip = _("Play through the slices (autoplay), or pause")
        self._playButton.connect("toggled(bool)", self._onPlayToggled)
        playLayout.addWidget(self._playButton)
        # the speed sits beside Play, which it belongs to: the row below keeps its room for the
        # window preset's name (with the speed there, "From the DICOM tags" showed as "From the
        # DIC" at Slicer's 340 px panel)
        self._speedBox = qt.QSpinBox(playCell)
        self._speedBox.minimum = 1
        self._speedBox.maximum = 60
        self._speedBox.value = 8
        self._speedBox.suffix = " fps"
        self._speedBox.toolTip = _("Autoplay speed, frames per second")
        self._speedBox.connect("valueChanged(int)", self.setSpeed)
        playLayout.addWidget(self._speedBox)
        grid.addWidget(playCell, 0, 0)
        self._sliceSlider, self._sliceLabel = self._slider(sliders, self.setCurrentSlice)
        self._sliceSlider.toolTip = _(
            "Slice, in geometric order (as loaded); the mouse wheel in the view too"
        )
        grid.addWidget(self._sliceSlider, 0, 1)
        grid.addWidget(self._sliceLabel, 0, 2)
        timeCell = qt.QWidget(sliders)
        timeLayout = qt.QHBoxLayout(timeCell)
        timeLayout.setContentsMargins(0, 0, 0, 0)
        timeLayout.addWidget(qt.QLabel(_("Time"), timeCell))
        self._playAxisBox = qt.QComboBox(timeCell)
        self._playAxisBox.addItem(_("Play slices"))
        self._playAxisBox.addItem(_("Play time"))
        self._playAxisBox.toolTip = _("Autoplay through the slices or through the time points")
        self._playAxisBox.connect("currentIndexChanged(int)", self._onPlayAxisChosen)
        timeLayout.addWidget(self._playAxisBox)
        timeLayout.addStretch(1)
        grid.addWidget(timeCell, 1, 0)
        self._timeSlider, self._timeLabel = self._slider(sliders, self.setCurrentTimePoint)
        self._timeSlider.toolTip = _("Time point (4D series)")
        grid.addWidget(self._timeSlider, 1, 1)
        grid.addWidget(self._timeLabel, 1, 2)
        self._timeRow = (timeCell, self._timeSlider, self._timeLabel)
        layout.addWidget(sliders)

        controls = qt.QHBoxLayout()
        self._presetBox = qt.QComboBox(self)
        self._presetBox.toolTip = PRESET_TIP
        self._presetBox.setSizeAdjustPolicy(qt.QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self._presetBox.minimumContentsLength = 6  # the row fits ~300 px; the list shows names whole
        self._presetBox.connect("currentIndexChanged(int)", self._onPresetChosen)
        controls.addWidget(self._presetBox, 1)
        self._fitButton = qt.QToolButton(self)
        self._fitButton.text = _("Fit")
        self._fitButton.toolTip = _("Fit the image to the view (double-click in the view does too)")
        self._fitButton.connect("clicked(bool)", self.resetView)
        controls.addWidget(self._fitButton)
        self._loadButton = qt.QPushButton(_("Load series"), self)
        self._loadButton.toolTip = _("Load this series into the scene")
        self._loadButton.connect("clicked(bool)", self._onLoadClicked)
        fitToText(self._loadButton)
        controls.addWidget(self._loadButton)
        layout.addLayout(controls)

        self._volumeBox = qt.QComboBox(self)
        self._volumeBox.toolTip = _("This series holds several volumes (orientations, localizers...)")
        self._volumeBox.connect("currentIndexChanged(int)", self.setCurrentVolume)
        layout.addWidget(self._volumeBox)

        self._warningsLabel = WrappedLabel(self)  # its lines count in the panel's minimum
        self._warningsLabel.textFormat = qt.Qt.PlainText
        self._warningsLabel.textInteractionFlags = qt.Qt.TextSelectableByMouse
        self._warningsLabel.setStyleSheet(
            "QLabel { background: #fff4ce; color: #5c4400; border: 1px solid #e0c36b;"
            " border-radius: 3px; padding: 4px; }"
        )
        layout.addWidget(self._warningsLabel)
        self._resampleButton = qt.QPushButton(_("Load resampled"), self)
        self._resampleButton.toolTip = _(
            "Load this series resampled onto a regular grid, for tools that need one"
        )
        self._resampleButton.connect("clicked(bool)", self._onLoadResampledClicked)
        self._resampleButton.visible = False
        layout.addWidget(self._resampleButton)
        self._updatePlayButton()

    def _slider(self, parent, slot):
        """A slider and the label of its position ("8 / 15")."""
        slider = qt.QSlider(qt.Qt.Horizontal, parent)
        slider.minimum = 0
        slider.maximum = 0
        slider.connect("valueChanged(int)", slot)
        label = qt.QLabel(_("-"), parent)
        label.minimumWidth = qt.QFontMetrics(label.font).horizontalAdvance("0000 / 0000")
        label.alignment = qt.Qt.AlignRight | qt.Qt.AlignVCenter
        return slider, label

    def _showTimeRow(self, shown: bool) -> None:
        for widget in self._timeRow:
            widget.visible = shown

    # -- source and series -------------------------------------------------------------------------
    def setDatabase(self, source):
        """Preview from another DICOMPlusLogic or Database (clears the preview)."""
        self.clear()
        self._queue.quiesce()
        followDatabaseClosing(self._queue, self._source, source)
        self._source = source

    def _database(self):
        if self._source is None:
            raise RuntimeError("DICOMPlusPreviewWidget has no database: call setDatabase(logic)")
        return getattr(self._source, "database", self._source)

    def seriesUID(self):
        return self._model.seriesUID

    def setSeries(self, seriesUID):
        """Show the series ``seriesUID`` of the database ("" or None: nothing). Returns at once:
        headers are read and slices decoded in the engine; ``seriesShown`` tells when it is up."""
        seriesUID = seriesUID or ""
        if seriesUID == self._model.seriesUID:
            return
        self.clear()
        if not seriesUID:
            return
        self._model.seriesUID = seriesUID
        ensureDecoders = getattr(self._source, "ensureDecoders", None)  # a Logic offers to install
        if ensureDecoders is not None:
            try:
                ready = ensureDecoders([seriesUID], ask="once")
            except Exception as error:
                ready, reason = False, str(error)
            else:
                reason = _("declined earlier in this session")
            if not ready:
                message = _(
                    "Cannot preview this series: the decoder it needs is not installed ({reason})"
                ).format(reason=reason)
                self._view.setMessage(message)
                self._showWarnings([message])
                self.failed.emit(message)
                return
        self._view.setMessage(_("Reading the headers..."))
        self._loadButton.enabled = True
        database = self._database()
        self._queue.put(
            ("plan", seriesUID),
            (
                "preview_plan",
                {
                    "db": getattr(database, "url", None) or str(database.path),
                    "store": str(database.store_root),  # the engine opens it as the panel did
                    "series": seriesUID,
                },
            ),
            first=True,
        )
        self._pump.kick()

    def clear(self):
        """Show nothing; pending decoding is dropped (decoded slices stay cached)."""
        self.pause()
        self._queue.discard()
        self._model.reset()
        self._view.setImage(None)
        self._view.setMessage(_("Select a series to preview"))
        self._view.setOrientationLetters("", "", "", "")
        self._view.resetView()
        self._updateCorners()
        self._setRange(self._sliceSlider, 0)
        self._setRange(self._timeSlider, 0)
        self._sliceLabel.text = _("-")
        self._showTimeRow(False)
        self._volumeBox.visible = False
        self._setPresetItems()
        self._showWarnings([])
        self._updateEnabled()

    # -- volumes, slices, time points ------------------------------------------------------------
    def volumeCount(self):
        return len(self._model.infos)

    def currentVolume(self):
        return self._model.volume

    def volumeInfo(self):
        """The DICOMPlusLib VolumeInfo shown (None before the headers are read)."""
        return self._model.info

    def setCurrentVolume(self, index):
        """Show another volume of the series (several orientations, a localizer...)."""
        if 0 <= index < self.volumeCount() and index != self._model.volume:
            self._showVolume(index)

    def sliceCount(self):
        return self._model.sliceCount()

    def timePointCount(self):
        return self._model.timePointCount()

    def currentSlice(self):
        return self._model.slice

    def currentTimePoint(self):
        return self._model.time

    def setCurrentSlice(self, k):
        """Show slice ``k`` (0-based, geometric order) of the current time point."""
        count = self.sliceCount()
        if not count:
            return
        k = min(max(int(k), 0), count - 1)
        if k == self._model.slice and self._sliceSlider.value == k:
            return
        self._model.slice = k
        self._setValue(self._sliceSlider, k)
        self._prefetch()
        self._render()
        self.sliceChanged.emit(k)

    def _onSliceScrolled(self, steps):
        self.setCurrentSlice(self.currentSlice() + steps)

    def setCurrentTimePoint(self, t):
        """Show time point ``t`` (0-based) of a 4D series at the current slice."""
        count = self.timePointCount()
        if not count:
            return
        t = min(max(int(t), 0), count - 1)
        if t == self._model.time and self._timeSlider.value == t:
            return
        self._model.time = t
        self._setValue(self._timeSlider, t)
        self._prefetch()
        self._render()
        self.timePointChanged.emit(t)

    def currentFrame(self):
        """The DICOMPlusLib Frame shown (file, frame number, position...), or None."""
        return self._model.frame()

    def currentSliceArray(self):
        """The decoded values of the slice shown (rows x columns; read-only), None until decoded."""
        return self._model.values()

    def isSliceReady(self, k=None, t=None):
        """True when slice ``k`` (default: the current one) of time point ``t`` is decoded."""
        return self._model.isReady(t, k)

    # -- autoplay --------------------------------------------------------------------------------
    def play(self):
        """Step through the slices (or time points, see setPlayAxis) at ``speed()`` frames/s."""
        if self.sliceCount() <= 1 and self.timePointCount() <= 1:
            return
        self._playTimer.start(max(1, round(1000 / self.speed())))
        self._updatePlayButton()

    def pause(self):
        self._playTimer.stop()
        self._updatePlayButton()

    def isPlaying(self):
        return self._playTimer.isActive()

    def speed(self):
        return self._speedBox.value

    def setSpeed(self, fps):
        fps = min(max(int(fps), 1), 60)
        if self._speedBox.value != fps:
            self._speedBox.value = fps
        if self.isPlaying():
            self._playTimer.start(max(1, round(1000 / fps)))

    def setPlayAxis(self, axis):
        """ "slices" or "time" (4D series)."""
        if axis not in ("slices", "time"):
            raise ValueError(f"play axis must be 'slices' or 'time', not {axis!r}")
        self._model.playAxis = axis
        index = 1 if axis == "time" else 0
        if self._playAxisBox.currentIndex != index:
            self._playAxisBox.currentIndex = index
        self._prefetch()

    def _onPlayAxisChosen(self, index):
        self.setPlayAxis("time" if index == 1 else "slices")

    def _onPlayToggled(self, checked):
        if checked and not self.isPlaying():
            self.play()
        elif not checked and self.isPlaying():
            self.pause()
        self._updatePlayButton()

    def _onPlayTick(self):
        model = self._model
        byTime = model.playAxis == "time" and model.timePointCount() > 1
        t, k = model.time, model.slice
        if byTime:
            t = (t + 1) % model.timePointCount()
        else:
            k = (k + 1) % max(model.sliceCount(), 1)
        if not model.isReady(t, k):
            return  # wait for the decoder: never show a blank frame while playing
        if byTime:
            self.setCurrentTimePoint(t)
        else:
            self.setCurrentSlice(k)

    def _updatePlayButton(self):
        playing = self.isPlaying()
        blocked = self._playButton.blockSignals(True)
        self._playButton.checked = playing
        self._playButton.blockSignals(blocked)
        icon = qt.QStyle.SP_MediaPause if playing else qt.QStyle.SP_MediaPlay
        self._playButton.setIcon(self.style().standardIcon(icon))
        self._playButton.text = _("Pause") if playing else _("Play")

    # -- window/level ----------------------------------------------------------------------------
    def windowLevel(self):
        """(width, center) in output values (after the modality rescale), or None."""
        window = self._model.windowCW
        return None if window is None else (window[1], window[0])

    def setWindowLevel(self, width, center):
        self._model.windowCW = (float(center), max(float(width), 1e-3))
        self._render()
        self.windowLevelChanged.emit(self._model.windowCW[1], self._model.windowCW[0])

    def windowPresets(self):
        """[(name, center, width)]: the window from the tags (VolumeInfo.window), automatic (center
        and width None: from the slice shown), Slicer's CT presets for CT, "Custom" after a drag."""
        return list(self._model.presets)

    def applyWindowPreset(self, name):
        names = [preset[0] for preset in self._model.presets]
        if name not in names:
            raise KeyError(f"no window preset {name!r}; presets: {names}")
        self._setValue(self._presetBox, names.index(name), "currentIndex")
        self._onPresetChosen(names.index(name))

    def _setPresetItems(self):
        blocked = self._presetBox.blockSignals(True)
        self._presetBox.clear()
        for name, _center, _width in self._model.presets:
            self._presetBox.addItem(name)
            self._presetBox.setItemData(self._presetBox.count - 1, presetTip(name), qt.Qt.ToolTipRole)
        self._presetBox.blockSignals(blocked)

    def _onPresetChosen(self, index):
        if not 0 <= index < len(self._model.presets):
            return
        window = self._model.presetWindow(index)
        if window is not None:
            self.setWindowLevel(window[1], window[0])
        elif self._model.presets[index][0] != CUSTOM:
            self._model.windowCW = None  # automatic, from the first slice decoded

    def _onWindowLevelDragged(self, dx, dy):
        if self._model.windowCW is None:
            return
        center, width = self._model.draggedWindow(dx, dy)
        index = self._model.addCustomPreset()
        if self._presetBox.count <= index:
            self._presetBox.addItem(CUSTOM)
            self._presetBox.setItemData(index, presetTip(CUSTOM), qt.Qt.ToolTipRole)
        blocked = self._presetBox.blockSignals(True)
        self._presetBox.currentIndex = index
        self._presetBox.blockSignals(blocked)
        self.setWindowLevel(width, center)

    # -- pan and zoom (the view does the work) ---------------------------------------------------
    def sliceView(self):
        """The DICOMPlusSliceView canvas (for mouse interaction and its viewTransform())."""
        return self._view

    def zoomFactor(self):
        return self._view.zoomFactor()

    def setZoomFactor(self, factor):
        self._view.setZoomFactor(factor)

    def panOffset(self):
        return self._view.panOffset()

    def setPanOffset(self, x, y):
        self._view.setPanOffset(x, y)

    def resetView(self, *args):
        self._view.resetView()

    # -- buttons a host may hide, style or click -------------------------------------------------
    def playButton(self):
        return self._playButton

    def loadButton(self):
        """The Load button (hide it in a host that does not load: ``loadButton().visible = False``)."""
        return self._loadButton

    # -- warnings --------------------------------------------------------------------------------
    def loadWarnings(self):
        """The LoadWarnings the loader gives for the volume shown (what loading would report)."""
        info = self._model.info
        return tuple(info.warnings) if info is not None else ()

    def warningsText(self):
        """The text of the warnings box beside the view ("" when it is hidden)."""
        return unbreakable(self._warningsLabel.text) if self._warningsLabel.visible else ""

    def _showWarnings(self, lines):
        self._warningsLabel.text = breakable("\n".join(lines))  # a long value never widens the panel
        self._warningsLabel.visible = bool(lines)
        self._warningsLabel.fitHeight()

    # -- results from the engine (main thread, from the pump's timer) -----------------------------
    def _onResult(self, key, value, error):
        model = self._model
        if key[0] == "plan":
            if key[1] != model.seriesUID:
                return
            if error is not None:
                message = _("Cannot preview this series: {error}").format(error=error)
                self._view.setMessage(message)
                self._showWarnings([message])
                self.failed.emit(message)
                return
            first = model.setPlan(*value)
            blocked = self._volumeBox.blockSignals(True)
            self._volumeBox.clear()
            for index, info in enumerate(model.infos):
                self._volumeBox.addItem(model.volumeTitle(index, info))
            self._volumeBox.blockSignals(blocked)
            self._volumeBox.visible = len(model.infos) > 1
            self._showVolume(first)
            self.seriesShown.emit(model.seriesUID)
            return
        if error is not None:
            model.errors[key] = str(error)
        else:
            model.cache.put(key, value)
        current = model.frame()
        if current is not None and frameKey(current) == key:
            self._render()

    def _showVolume(self, index):
        self.pause()
        self._queue.discard()
        model = self._model
        model.setVolume(index)
        self._setValue(self._volumeBox, index, "currentIndex")
        self._setRange(self._sliceSlider, model.sliceCount() - 1)
        self._setRange(self._timeSlider, model.timePointCount() - 1)
        self._showTimeRow(model.timePointCount() > 1)
        self._setPresetItems()
        self._showWarnings([T.warningText(w) for w in model.info.warnings])
        self._resampleButton.visible = T.offersResample(model.info.warnings)
        self._view.setOrientationLetters(*model.orientation())
        self._view.resetView()
        self._updateEnabled()
        self._prefetch()
        self._render()

    def _prefetch(self):
        """Queue what is not decoded yet, nearest first (the queue's order reads the model)."""
        for frame, first in self._model.framesToDecode():
            self._queue.put(frameKey(frame), ("frame", {"frame": frame}), first=first)
        self._pump.kick()

    # -- drawing ---------------------------------------------------------------------------------
    def _render(self):
        model = self._model
        frame = model.frame()
        if frame is None:
            return
        self._sliceLabel.text = f"{model.slice + 1} / {model.sliceCount()}"
        self._timeLabel.text = f"{model.time + 1} / {model.timePointCount()}"
        image = model.image()
        if image is None:
            error = model.errors.get(frameKey(frame))
            self._view.setImage(None)
            self._view.setMessage(
                _("Cannot decode this slice: {error}").format(error=error) if error else _("Decoding...")
            )
        else:
            dy, dx = frame.pixel_spacing or (1.0, 1.0)
            self._view.setMessage("")
            self._view.setImage(toQImage(image), spacing=(dx, dy))
        self._updateCorners()

    def _updateCorners(self):
        for corner, lines in self._model.cornerTexts(self._view.zoomFactor()).items():
            self._view.setCornerText(corner, lines)

    # -- helpers ---------------------------------------------------------------------------------
    def _updateEnabled(self):
        ready = bool(self._model.infos)
        for widget in (
            self._sliceSlider,
            self._timeSlider,
            self._playButton,
            self._speedBox,
            self._presetBox,
        ):
            widget.enabled = ready
        self._fitButton.enabled = ready
        self._loadButton.enabled = bool(self._model.seriesUID)

    @staticmethod
    def _setRange(slider, maximum):
        blocked = slider.blockSignals(True)
        slider.maximum = max(maximum, 0)
        slider.value = 0
        slider.blockSignals(blocked)

    @staticmethod
    def _setValue(widget, value, name="value"):
        blocked = widget.blockSignals(True)
        setattr(widget, name, value)
        widget.blockSignals(blocked)

    def _onLoadClicked(self, *args):
        if self._model.seriesUID:
            self.loadRequested.emit([("series", self._model.seriesUID)])

    def _onLoadResampledClicked(self, *args):
        if self._model.seriesUID:
            self.resampledLoadRequested.emit([("series", self._model.seriesUID)])

    def resampleButton(self):
        """The "Load resampled" button, shown when a warning says resampling gives a better volume."""
        return self._resampleButton

    def cleanup(self):
        """Stop autoplay and the engine requests, drop the decoded slices; call when the host goes away."""
        self._pump.stop()
        followDatabaseClosing(self._queue, self._source, None)
        self._model.cache.clear()
        stopTimer(self._playTimer)
