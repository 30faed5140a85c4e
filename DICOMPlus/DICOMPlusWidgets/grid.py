"""The browser's visual mode: each patient, its studies, and under each study its series as
thumbnails in a grid (as Slicer 5.12's visual DICOM browser shows them).

:class:`SeriesGrid` only draws and selects; DICOMPlusBrowserWidget reads the database, asks the
engine for thumbnails and calls :meth:`SeriesGrid.setIcon` when one is ready. Selection works
as in a list: a click selects one item (a series tile, a study or a patient header), Ctrl or
Shift adds to the selection.
"""

from __future__ import annotations

import math

import qt
from slicer.i18n import tr as _

from . import text as T

TILE_ICON = 64
TILE_SIZE = qt.QSize(124, 112)  # grid cell: the icon and two lines of text

_HEADER_STYLE = (
    "QPushButton { text-align: left; border: none; padding: 3px 4px; }"
    "QPushButton:checked { background-color: palette(highlight); color: palette(highlighted-text); }"
)


class _SeriesTiles(qt.QListWidget):
    """The series of one study as icon tiles that wrap; as tall as its rows (no inner scroll)."""

    def __init__(self, parent=None):
        qt.QListWidget.__init__(self, parent)
        self.viewMode = qt.QListView.IconMode
        self.movement = qt.QListView.Static
        self.flow = qt.QListView.LeftToRight
        self.isWrapping = True
        self.resizeMode = qt.QListView.Adjust
        self.wordWrap = True
        self.uniformItemSizes = True
        self.iconSize = qt.QSize(TILE_ICON, TILE_ICON)
        self.gridSize = TILE_SIZE
        self.spacing = 2
        self.selectionMode = qt.QAbstractItemView.ExtendedSelection
        self.frameShape = qt.QFrame.NoFrame
        self.horizontalScrollBarPolicy = qt.Qt.ScrollBarAlwaysOff
        self.verticalScrollBarPolicy = qt.Qt.ScrollBarAlwaysOff
        self.setSizePolicy(qt.QSizePolicy.Expanding, qt.QSizePolicy.Fixed)

    def fitHeight(self):
        width = max(self.viewport().width, TILE_SIZE.width())
        perRow = max(1, width // (TILE_SIZE.width() + 2 * self.spacing))
        rows = max(1, math.ceil(self.count / perRow))
        height = rows * (TILE_SIZE.height() + 2 * self.spacing) + 6
        if self.height != height:
            self.setFixedHeight(height)

    def resizeEvent(self, event):
        qt.QListWidget.resizeEvent(self, event)
        self.fitHeight()


class SeriesGrid(qt.QScrollArea):
    """Patients, studies and series thumbnails in a scroll area.

    ``onSelectionChanged()`` runs after the user (or :meth:`selectEntry`) changed the selection,
    ``onActivated(entry)`` on a double-click of a tile, ``onStudyExpanded(studyUID)`` when the
    tiles of a study become visible (the browser then asks for their thumbnails).
    """

    def __init__(self, parent, onSelectionChanged, onActivated, onStudyExpanded):
        qt.QScrollArea.__init__(self, parent)
        self.widgetResizable = True
        self.horizontalScrollBarPolicy = qt.Qt.ScrollBarAlwaysOff
        self._onSelectionChanged = onSelectionChanged
        self._onActivated = onActivated
        self._onStudyExpanded = onStudyExpanded
        self._headers = {}  # ("patient"|"study", key) -> checkable QPushButton
        self._lists = {}  # study UID -> _SeriesTiles
        self._arrows = {}  # study UID -> QToolButton
        self._tiles = {}  # series UID -> (list, item)
        self._placeholders = {}
        self._content = None

    # -- building ----------------------------------------------------------------------------------
    def build(self, groups, icons, expanded):
        """Show ``groups`` = [(PatientRecord, [(StudyRecord, [SeriesRecord])])]; ``icons`` maps
        series UIDs to QIcons (None: no thumbnail); studies in ``expanded`` show their tiles."""
        self._headers, self._lists, self._arrows, self._tiles = {}, {}, {}, {}
        content = qt.QWidget()
        layout = qt.QVBoxLayout(content)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        for patient, studies in groups:
            header = self._header(content, ("patient", patient.PatientID))
            parts = [T.patientTitle(patient)]
            if patient.PatientID and patient.PatientID != parts[0]:
                parts.append(_("ID {id}").format(id=patient.PatientID))
            parts.append(T.count(len(studies), _("study"), _("studies")))
            header.text = "   ·   ".join(parts)
            font = header.font
            font.setBold(True)
            header.font = font
            header.toolTip = _("Patient ID: {id}\nBirth date: {date}").format(
                id=patient.PatientID, date=T.formatDate(getattr(patient, "PatientBirthDate", "")) or "-"
            )
            layout.addWidget(header)
            for study, series in studies:
                layout.addLayout(self._studyRow(content, study, series, study.StudyInstanceUID in expanded))
                tiles = _SeriesTiles(content)
                tiles.connect("itemSelectionChanged()", lambda tiles=tiles: self._onTilesSelection(tiles))
                tiles.connect("itemDoubleClicked(QListWidgetItem*)", self._onTileActivated)
                for record in series:
                    self._addTile(tiles, record, icons.get(record.SeriesInstanceUID))
                tiles.visible = study.StudyInstanceUID in expanded
                self._lists[study.StudyInstanceUID] = tiles
                layout.addWidget(tiles)
        layout.addStretch(1)
        self.setWidget(content)  # the previous content is deleted with the scroll area's old widget
        self._content = content
        for tiles in self._lists.values():
            tiles.fitHeight()

    def _header(self, parent, entry):
        button = qt.QPushButton(parent)
        button.checkable = True
        button.flat = True
        button.setStyleSheet(_HEADER_STYLE)
        button.setSizePolicy(
            qt.QSizePolicy.Ignored, qt.QSizePolicy.Fixed
        )  # a long text is cut, not widening the grid
        button.minimumWidth = 80
        button.connect("clicked(bool)", lambda *args, entry=entry: self._onHeaderClicked(entry))
        self._headers[entry] = button
        return button

    def _studyRow(self, parent, study, series, expanded):
        row = qt.QHBoxLayout()
        row.setContentsMargins(12, 0, 0, 0)
        row.setSpacing(0)
        uid = study.StudyInstanceUID
        arrow = qt.QToolButton(parent)
        arrow.autoRaise = True
        arrow.arrowType = qt.Qt.DownArrow if expanded else qt.Qt.RightArrow
        arrow.toolTip = _("Show or hide the series of this study")
        arrow.connect("clicked(bool)", lambda *args, uid=uid: self.setStudyExpanded(uid, None))
        self._arrows[uid] = arrow
        row.addWidget(arrow)
        header = self._header(parent, ("study", uid))
        images = sum(s.NumberOfSeriesRelatedInstances or 0 for s in series)
        parts = [T.formatDate(study.StudyDate), T.studyTitle(study)]
        parts.append(T.count(len(series), _("series"), _("series")))
        parts.append(T.count(images, _("image"), _("images")))
        header.text = "   ·   ".join(p for p in parts if p)
        header.toolTip = _(
            "{title}\nModalities: {modalities}\nAccession number: {accession}\nStudy UID: {uid}"
        ).format(
            title=T.studyTitle(study),
            modalities=study.ModalitiesInStudy or "-",
            accession=study.AccessionNumber or "-",
            uid=uid,
        )
        row.addWidget(header, 1)
        return row

    def _addTile(self, tiles, record, icon):
        number = "" if record.SeriesNumber is None else f"#{record.SeriesNumber}  "
        images = record.NumberOfSeriesRelatedInstances
        detail = number + (T.count(images, _("image"), _("images")) if images is not None else "")
        item = qt.QListWidgetItem(tiles)
        item.setText(f"{T.seriesTitle(record)}\n{detail.strip()}")
        item.setData(qt.Qt.UserRole, "series:" + record.SeriesInstanceUID)
        item.setToolTip(
            _("{title}\nSeries number: {number}   Modality: {modality}\n{images}\nSeries UID: {uid}").format(
                title=T.seriesTitle(record),
                number="-" if record.SeriesNumber is None else record.SeriesNumber,
                modality=record.Modality or "-",
                images=T.count(images or 0, _("image"), _("images")),
                uid=record.SeriesInstanceUID,
            )
        )
        item.setIcon(icon if icon is not None else self._placeholder(record.Modality))
        self._tiles[record.SeriesInstanceUID] = (tiles, item)

    def _placeholder(self, modality):
        """A grey square with the modality: the tile's image until its thumbnail is ready."""
        modality = modality or "?"
        if modality not in self._placeholders:
            pixmap = qt.QPixmap(TILE_ICON, TILE_ICON)
            pixmap.fill(qt.QColor(60, 60, 60))
            painter = qt.QPainter(pixmap)
            painter.setPen(qt.QColor(200, 200, 200))
            painter.drawText(qt.QRect(0, 0, TILE_ICON, TILE_ICON), qt.Qt.AlignCenter, modality)
            painter.end()
            self._placeholders[modality] = qt.QIcon(pixmap)
        return self._placeholders[modality]

    # -- state ---------------------------------------------------------------------------------------
    def setIcon(self, seriesUID, icon):
        tile = self._tiles.get(seriesUID)
        if tile is not None and icon is not None:
            tile[1].setIcon(icon)

    def isStudyExpanded(self, studyUID):
        tiles = self._lists.get(studyUID)
        return tiles is not None and not tiles.isHidden()

    def expandedStudies(self):
        return {uid for uid in self._lists if self.isStudyExpanded(uid)}

    def setStudyExpanded(self, studyUID, expanded=True):
        """Show (True), hide (False) or toggle (None) the tiles of a study."""
        tiles = self._lists.get(studyUID)
        if tiles is None:
            return
        expanded = tiles.isHidden() if expanded is None else bool(expanded)
        tiles.visible = expanded
        self._arrows[studyUID].arrowType = qt.Qt.DownArrow if expanded else qt.Qt.RightArrow
        if expanded:
            tiles.fitHeight()
            self._onStudyExpanded(studyUID)

    def seriesOfStudy(self, studyUID):
        tiles = self._lists.get(studyUID)
        if tiles is None:
            return []
        return [str(tiles.item(i).data(qt.Qt.UserRole)).partition(":")[2] for i in range(tiles.count)]

    def tileOf(self, seriesUID):
        """(QListWidget, QListWidgetItem) of a series tile, or None (for hosts and tests)."""
        return self._tiles.get(seriesUID)

    def headerOf(self, level, key):
        """The checkable header button of a patient or study, or None."""
        return self._headers.get((level, key))

    # -- selection ------------------------------------------------------------------------------------
    def selectedEntries(self):
        entries = [entry for entry, button in self._headers.items() if button.checked]
        for tiles in self._lists.values():
            for item in tiles.selectedItems():
                level, _sep, key = str(item.data(qt.Qt.UserRole)).partition(":")
                entries.append((level, key))
        return entries

    def clearSelection(self, notify=True):
        for button in self._headers.values():
            button.checked = False
        for tiles in self._lists.values():
            blocked = tiles.blockSignals(True)
            tiles.clearSelection()
            tiles.blockSignals(blocked)
        if notify:
            self._onSelectionChanged()

    def selectEntry(self, level, key, exclusive=True, notify=True):
        """Select a patient, study or series (its study is expanded); False if not shown.
        ``notify`` False: no ``onSelectionChanged`` call (the caller restores a selection)."""
        if exclusive:
            self.clearSelection(notify=False)
        if level == "series":
            tile = self._tiles.get(key)
            if tile is None:
                return False
            tiles, item = tile
            for studyUID, other in self._lists.items():
                if other is tiles:
                    self.setStudyExpanded(studyUID, True)
            blocked = tiles.blockSignals(True)
            item.setSelected(True)
            tiles.setCurrentItem(item)
            tiles.blockSignals(blocked)
            self.ensureWidgetVisible(tiles)
        else:
            button = self._headers.get((level, key))
            if button is None:
                return False
            button.checked = True
            self.ensureWidgetVisible(button)
        if notify:
            self._onSelectionChanged()
        return True

    @staticmethod
    def _adding():
        modifiers = qt.QApplication.keyboardModifiers()
        return bool(modifiers & (qt.Qt.ControlModifier | qt.Qt.ShiftModifier))

    def _onTilesSelection(self, tiles):
        if tiles.selectedItems() and not self._adding():
            for button in self._headers.values():
                button.checked = False
            for other in self._lists.values():
                if other is not tiles:
                    blocked = other.blockSignals(True)
                    other.clearSelection()
                    other.blockSignals(blocked)
        self._onSelectionChanged()

    def _onHeaderClicked(self, entry):
        button = self._headers[entry]
        if not self._adding():
            self.clearSelection(notify=False)
            button.checked = True
        self._onSelectionChanged()

    def _onTileActivated(self, item):
        level, _sep, key = str(item.data(qt.Qt.UserRole)).partition(":")
        self._onActivated((level, key))
