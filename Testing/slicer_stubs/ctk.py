"""``ctk`` for tests: small PySide6 stand-ins for the CTK widgets that DICOMPlus uses.

Real CTK is C++ and not available outside Slicer. Each class below re-implements only the
properties, signals and methods listed in its docstring, and says what it does NOT do. The
stand-ins are registered with ``qt.QUiLoader`` so .ui files can use them. Any ctk call that
DICOMPlus adds must be added here on purpose (the harness note calls this "the API we promise
to use"); a .ui property that a stand-in lacks is reported as a warning by the loader.
"""

from __future__ import annotations

import qt

__all__ = [
    "ctkCheckableComboBox",
    "ctkCollapsibleButton",
    "ctkCollapsibleGroupBox",
    "ctkMessageBox",
    "ctkPathLineEdit",
    "ctkSliderWidget",
]


def _direct_child_widgets(widget):
    # Not findChildren(QWidget, "", FindDirectChildrenOnly): in PySide6 6.12 that misses children
    # listed after a layout.
    return [child for child in widget.children() if child.isWidgetType()]


class _Collapser:
    """Hide the direct child widgets of a container and show the same ones again.

    Children created after the container collapsed (a .ui sets ``collapsed`` before it adds the
    children) are hidden when the container is shown: touching a half-constructed child from
    ``childEvent`` would give PySide a wrapper of the wrong type.
    """

    def __init__(self):
        self._hidden = []

    def collapse(self, widget, collapsed):
        if collapsed:
            self.reapply(widget)
        else:
            for child in self._hidden:
                child.show()
            self._hidden = []

    def reapply(self, widget):
        """Hide the children that are visible although the container is collapsed."""
        for child in _direct_child_widgets(widget):
            if child.isVisibleTo(widget) and child not in self._hidden:
                child.hide()
                self._hidden.append(child)


@qt.registerCustomWidget
class ctkCollapsibleButton(qt.QAbstractButton):
    """A header button over a container; collapsing hides the container's child widgets.

    Provides: ``text`` (from QAbstractButton), ``collapsed`` (bool property), ``checked`` (=
    expanded, as in CTK), ``collapsedHeight``, the ``contentsCollapsed(bool)`` signal, a painted
    header (push-button look with an arrow), clicks on the header toggle it.

    Does NOT do: ``contentsFrameShape``/``buttonTextAlignment``/``indicatorAlignment`` styling,
    the collapse animation, or ``collapsedHeight`` resizing (the collapsed height is just the
    header). Children hidden by code while collapsed are shown again on expand only if they were
    visible when it collapsed.
    """

    contentsCollapsed = qt.Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._collapser = _Collapser()
        self._collapsedHeight = 14
        self.setCheckable(True)
        self.setChecked(True)
        self.setSizePolicy(qt.QSizePolicy.Policy.Preferred, qt.QSizePolicy.Policy.Minimum)
        self.setContentsMargins(0, self._headerHeight(), 0, 0)
        # No setMinimumHeight: in CTK the minimum is the minimumSizeHint (the header, and the
        # contents' minimum when expanded; the layout's top margin is the header here). An
        # explicit minimum overrides that hint in every layout, so a panel squeezed its sections'
        # widgets over each other, which Slicer (its panel scrolls instead) never does.
        self.toggled.connect(self._onToggled)

    def _headerHeight(self):
        return self.fontMetrics().height() + 10

    def _onToggled(self, checked):
        self._collapser.collapse(self, not checked)
        self.updateGeometry()
        self.contentsCollapsed.emit(not checked)

    def showEvent(self, event):
        if not self.isChecked():
            self._collapser.reapply(self)
        super().showEvent(event)

    def event(self, event):
        # Polish comes before the window's first layout (show() polishes, activates the layout,
        # then sends show events): hidden here, a collapsed section's children never count in the
        # window's first minimum size (which would enlarge the window for good)
        if event.type() == qt.QEvent.Type.Polish and not self.isChecked():
            self._collapser.reapply(self)
        return super().event(event)

    def _getCollapsed(self):
        return not self.isChecked()

    def _setCollapsed(self, collapsed):
        self.setChecked(not collapsed)

    collapsed = qt.Property(bool, _getCollapsed, _setCollapsed)

    def _getCollapsedHeight(self):
        return self._collapsedHeight

    def _setCollapsedHeight(self, height):
        self._collapsedHeight = int(height)

    collapsedHeight = qt.Property(int, _getCollapsedHeight, _setCollapsedHeight)

    def hitButton(self, pos):
        return 0 <= pos.y() < self._headerHeight() and 0 <= pos.x() < self.width

    def paintEvent(self, event):
        painter = qt.QPainter(self)
        option = qt.QStyleOptionButton()
        option.initFrom(self)
        option.rect = qt.QRect(0, 0, self.width, self._headerHeight())
        option.state |= qt.QStyle.StateFlag.State_Raised
        if self.isDown():
            option.state |= qt.QStyle.StateFlag.State_Sunken
        style = self.style()
        style.drawControl(qt.QStyle.ControlElement.CE_PushButtonBevel, option, painter, self)
        arrow = qt.QStyleOption()
        arrow.initFrom(self)
        size = self._headerHeight() // 2
        arrow.rect = qt.QRect(6, (self._headerHeight() - size) // 2, size, size)
        element = (
            qt.QStyle.PrimitiveElement.PE_IndicatorArrowDown
            if self.isChecked()
            else qt.QStyle.PrimitiveElement.PE_IndicatorArrowRight
        )
        style.drawPrimitive(element, arrow, painter, self)
        textRect = qt.QRect(size + 12, 0, self.width - size - 16, self._headerHeight())
        painter.drawText(
            textRect, qt.Qt.AlignmentFlag.AlignVCenter | qt.Qt.AlignmentFlag.AlignLeft, self.text
        )
        if self.isChecked():
            frame = qt.QStyleOptionFrame()
            frame.initFrom(self)
            frame.rect = qt.QRect(
                0, self._headerHeight() - 1, self.width, self.height - self._headerHeight() + 1
            )
            frame.frameShape = qt.QFrame.Shape.StyledPanel
            frame.lineWidth = 1
            style.drawPrimitive(qt.QStyle.PrimitiveElement.PE_Frame, frame, painter, self)
        painter.end()


@qt.registerCustomWidget
class ctkCollapsibleGroupBox(qt.QGroupBox):
    """A checkable QGroupBox whose check box collapses it (hides its child widgets).

    Provides: ``title``/``checked`` (QGroupBox), ``collapsed`` (bool property = not checked).

    Does NOT do: the CTK arrow indicator style, ``collapsedHeight`` or the "check box enables the
    children" behaviour of a plain QGroupBox (children are hidden, not disabled).
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self._collapser = _Collapser()
        self.setCheckable(True)
        self.setChecked(True)
        self.toggled.connect(self._onToggled)

    def _onToggled(self, checked):
        self._collapser.collapse(self, not checked)
        for child in _direct_child_widgets(self):
            child.setEnabled(True)  # QGroupBox disables children when unchecked; CTK does not

    def showEvent(self, event):
        if not self.isChecked():
            self._collapser.reapply(self)
        super().showEvent(event)

    def _getCollapsed(self):
        return not self.isChecked()

    def _setCollapsed(self, collapsed):
        self.setChecked(not collapsed)

    collapsed = qt.Property(bool, _getCollapsed, _setCollapsed)


@qt.registerCustomWidget
class ctkPathLineEdit(qt.QWidget):
    """A line edit for a file or directory path, with a (disabled) browse button.

    Provides: ``currentPath`` (str property), ``filters`` (int flags, stored only),
    ``nameFilters`` (list of str), ``label``, ``showBrowseButton``, signals
    ``currentPathChanged(QString)`` and ``validInputChanged(bool)`` (valid = path exists).

    Does NOT do: open a file dialog (the browse button is disabled so tests never block), path
    history/``settingKey``, filter-based validation (only existence is checked), the
    ``comboBox()`` accessor.
    """

    currentPathChanged = qt.Signal(str)
    validInputChanged = qt.Signal(bool)

    Dirs = 0x001
    Files = 0x002
    Drives = 0x004
    Readable = 0x010
    Writable = 0x020
    Executable = 0x040

    def __init__(self, parent=None):
        super().__init__(parent)
        self._filters = self.Files | self.Dirs
        self._nameFilters = []
        self._label = ""
        self._lastValid = None
        layout = qt.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._lineEdit = qt.QLineEdit(self)
        self._browseButton = qt.QToolButton(self)
        self._browseButton.setText("...")
        self._browseButton.setEnabled(False)
        self._browseButton.setToolTip("Browsing is not available in the test stand-in")
        layout.addWidget(self._lineEdit)
        layout.addWidget(self._browseButton)
        self._lineEdit.textChanged.connect(self._onTextChanged)

    def _onTextChanged(self, text):
        import os

        self.currentPathChanged.emit(text)
        valid = bool(text) and os.path.exists(text)
        if valid != self._lastValid:
            self._lastValid = valid
            self.validInputChanged.emit(valid)

    def _getCurrentPath(self):
        return self._lineEdit.text

    def _setCurrentPath(self, path):
        self._lineEdit.setText(str(path))

    currentPath = qt.Property(str, _getCurrentPath, _setCurrentPath)

    def _getFilters(self):
        return self._filters

    def _setFilters(self, filters):
        self._filters = int(filters)

    filters = qt.Property(int, _getFilters, _setFilters)

    def _getNameFilters(self):
        return list(self._nameFilters)

    def _setNameFilters(self, filters):
        self._nameFilters = list(filters)

    nameFilters = qt.Property("QStringList", _getNameFilters, _setNameFilters)

    def _getLabel(self):
        return self._label

    def _setLabel(self, label):
        self._label = str(label)

    label = qt.Property(str, _getLabel, _setLabel)

    def _getShowBrowseButton(self):
        return not self._browseButton.isHidden()

    def _setShowBrowseButton(self, show):
        self._browseButton.setVisible(bool(show))

    showBrowseButton = qt.Property(bool, _getShowBrowseButton, _setShowBrowseButton)

    def setCurrentPath(self, path):
        self._setCurrentPath(path)


@qt.registerCustomWidget
class ctkCheckableComboBox(qt.QComboBox):
    """A combo box whose items carry check boxes.

    Provides: items added with ``addItem``/``addItems`` or from a .ui are checkable (unchecked),
    ``checkedIndexes()`` (list of QModelIndex), ``setCheckState(index, state)``,
    ``checkState(index)``, ``allChecked()``, ``noneChecked()``, signal ``checkedIndexesChanged()``.

    Does NOT do: the popup behaviour of CTK (clicking an item in the popup selects it rather than
    toggling it), the "checked items" summary text in the closed box, ``checkableModel()``.
    """

    checkedIndexesChanged = qt.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._model = qt.QStandardItemModel(self)
        self.setModel(self._model)
        self._model.rowsInserted.connect(self._onRowsInserted)
        self._model.dataChanged.connect(self._onDataChanged)

    def _onRowsInserted(self, parent, first, last):
        for row in range(first, last + 1):
            item = self._model.item(row)
            item.setFlags(item.flags() | qt.Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.CheckState.Unchecked)

    def _onDataChanged(self, *args):
        self.checkedIndexesChanged.emit()

    def _items(self):
        return [self._model.item(row) for row in range(self._model.rowCount())]

    def checkedIndexes(self):
        return [item.index() for item in self._items() if item.checkState() == qt.Qt.CheckState.Checked]

    def setCheckState(self, index, state):
        self._model.itemFromIndex(index).setCheckState(state)

    def checkState(self, index):
        return self._model.itemFromIndex(index).checkState()

    def allChecked(self):
        return all(item.checkState() == qt.Qt.CheckState.Checked for item in self._items())

    def noneChecked(self):
        return not self.checkedIndexes()


@qt.registerCustomWidget
class ctkSliderWidget(qt.QWidget):
    """A slider with a spin box, for a floating-point value.

    Provides: properties ``value``, ``minimum``, ``maximum``, ``singleStep``, ``pageStep``,
    ``decimals``, ``prefix``, ``suffix``, ``tracking``; ``setRange(min, max)``; signal
    ``valueChanged(double)``.

    Does NOT do: ``valueIsChanging``/``sliderPressed``-style signals, the synchronized
    decimals-from-step logic of CTK, popup slider, ``spinBox()``/``slider()`` accessors.
    """

    valueChanged = qt.Signal(float)

    _STEPS = 1000

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = qt.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._slider = qt.QSlider(qt.Qt.Orientation.Horizontal, self)
        self._slider.setRange(0, self._STEPS)
        self._spinBox = qt.QDoubleSpinBox(self)
        self._spinBox.setRange(0.0, 99.0)
        self._spinBox.setDecimals(2)
        layout.addWidget(self._slider)
        layout.addWidget(self._spinBox)
        self._spinBox.valueChanged.connect(self._onSpinBoxChanged)
        self._slider.valueChanged.connect(self._onSliderChanged)
        self._syncSlider()

    def _syncSlider(self):
        span = self._spinBox.maximum - self._spinBox.minimum
        position = (
            0 if span <= 0 else round((self._spinBox.value - self._spinBox.minimum) / span * self._STEPS)
        )
        blocked = self._slider.blockSignals(True)
        self._slider.setValue(position)
        self._slider.blockSignals(blocked)

    def _onSpinBoxChanged(self, value):
        self._syncSlider()
        self.valueChanged.emit(value)

    def _onSliderChanged(self, position):
        span = self._spinBox.maximum - self._spinBox.minimum
        self._spinBox.setValue(self._spinBox.minimum + span * position / self._STEPS)

    def _spinProperty(name, type_):  # a class-body helper, deleted below
        cap = name[:1].upper() + name[1:]

        def getter(self):
            return getattr(self._spinBox, name)

        def setter(self, value):
            getattr(self._spinBox, "set" + cap)(value)
            self._syncSlider()

        return qt.Property(type_, getter, setter)

    value = _spinProperty("value", float)
    minimum = _spinProperty("minimum", float)
    maximum = _spinProperty("maximum", float)
    singleStep = _spinProperty("singleStep", float)
    decimals = _spinProperty("decimals", int)
    prefix = _spinProperty("prefix", str)
    suffix = _spinProperty("suffix", str)
    del _spinProperty

    def _getPageStep(self):
        return self._slider.pageStep * (self.maximum - self.minimum) / self._STEPS

    def _setPageStep(self, step):
        span = self.maximum - self.minimum
        self._slider.setPageStep(max(1, round(step / span * self._STEPS)) if span > 0 else 1)

    pageStep = qt.Property(float, _getPageStep, _setPageStep)

    def _getTracking(self):
        return self._slider.hasTracking()

    def _setTracking(self, tracking):
        self._slider.setTracking(bool(tracking))
        self._spinBox.setKeyboardTracking(bool(tracking))

    tracking = qt.Property(bool, _getTracking, _setTracking)

    def setValue(self, value):
        self.value = value

    def setRange(self, minimum, maximum):
        self._spinBox.setRange(minimum, maximum)
        self._syncSlider()


@qt.registerCustomWidget
class ctkMessageBox(qt.QMessageBox):
    """QMessageBox with CTK's "don't show again" properties.

    Provides: ``dontShowAgain`` (bool) and ``dontShowAgainSettingsKey`` (str) properties.

    Does NOT do: show the "Don't show again" check box or read/write the settings key. Slicer
    only creates one outside testing mode (``slicer.util.messageBox``), so tests never see it.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self._dontShowAgain = False
        self._dontShowAgainSettingsKey = ""

    def _getDontShowAgain(self):
        return self._dontShowAgain

    def _setDontShowAgain(self, value):
        self._dontShowAgain = bool(value)

    dontShowAgain = qt.Property(bool, _getDontShowAgain, _setDontShowAgain)

    def _getDontShowAgainSettingsKey(self):
        return self._dontShowAgainSettingsKey

    def _setDontShowAgainSettingsKey(self, key):
        self._dontShowAgainSettingsKey = str(key)

    dontShowAgainSettingsKey = qt.Property(str, _getDontShowAgainSettingsKey, _setDontShowAgainSettingsKey)
