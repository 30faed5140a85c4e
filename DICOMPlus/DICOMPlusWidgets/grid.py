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
from .fitting import ElidedButton
from .tasks import pacedWork

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
        try:  # the base class lays the tiles out for the new width (resizeMode Adjust)
            qt.QListWidget.resizeEvent(self, event)
        except (AttributeError, TypeError):  # a binding that does not expose the protected base
            self.doItemsLayout()
        self.fitHeight()


class SeriesGrid(qt.QScrollArea):
    """Patients, studies and series thumbnails in a scroll area.

    ``onSelectionChanged()`` runs after the user (or :meth:`selectEntry`) changed the selection,
    ``onActivated(entry)`` on a double-click of a tile, ``onStudyExpanded(studyUID)`` when the
    tiles of a study become visible (the browser then asks for their thumbnails).
    """

    #: Studies a refresh shows; "Show more" adds the next ones. A page is built in paced steps
    #: too (tasks.pacedWork), so its size does not bound a turn's time.
    PAGE_STUDIES = 40

    def __init__(self, parent, onSelectionChanged, onActivated, onStudyExpanded):
        qt.QScrollArea.__init__(self, parent)
        self.widgetResizable = True
        self.horizontalScrollBarPolicy = qt.Qt.ScrollBarAlwaysOff
        self._onSelectionChanged = onSelectionChanged
        self._onActivated = onActivated
        self._onStudyExpanded = onStudyExpanded
        self._placeholders = {}
        # the studies of a page, then the tiles of unfolded studies, one at a time in paced
        # steps (tasks.pacedWork: then the event loop runs): ten tile lists in one step were
        # 110-180 ms on a loaded machine, and three lists per turn still 142 ms at load 11
        self._reset()

    def _reset(self):
        self._headers = {}  # ("patient"|"study", key) -> checkable QPushButton
        self._lists = {}  # study UID -> _SeriesTiles (made when the study is first unfolded)
        self._arrows = {}  # study UID -> QToolButton
        self._tiles = {}  # series UID -> (list, item)
        self._series = {}  # study UID -> [SeriesRecord]
        self._studyOfSeries = {}  # series UID -> study UID
        self._boxes = {}  # study UID -> the QWidget holding its row (and tiles)
        self._expanded = set()
        self._icons = {}
        self._todo = []  # [(patient, studies)] not built yet, in order
        self._pageLeft = 0  # studies of the pages asked for ("Show more") not built yet
        self._pendingTiles = []  # unfolded studies whose tiles come in the next turns, in order
        self._layout = self._moreButton = None

    # -- building ----------------------------------------------------------------------------------
    def build(self, groups, icons, expanded):
        """Show ``groups`` = [(PatientRecord, [(StudyRecord, [SeriesRecord])])]; ``icons`` maps
        series UIDs to QIcons (None: no thumbnail); studies in ``expanded`` show their tiles.
        The first :attr:`PAGE_STUDIES` studies are built now, the others on "Show more" (or when
        one of them is selected)."""
        self._reset()
        self._icons = icons
        self._expanded = set(expanded)
        for _patient, studies in groups:
            for study, series in studies:
                self._series[study.StudyInstanceUID] = series
                for record in series:
                    self._studyOfSeries[record.SeriesInstanceUID] = study.StudyInstanceUID
        self._todo = [(patient, list(studies)) for patient, studies in groups]
        content = qt.QWidget()
        layout = qt.QVBoxLayout(content)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        self._moreButton = qt.QPushButton(content)
        self._moreButton.connect("clicked(bool)", lambda *args: self.showMore())
        layout.addWidget(self._moreButton)
        layout.addStretch(1)
        self._layout = layout
        self.setWidget(content)  # the previous content is deleted with the scroll area's old widget
        self.showMore()

    def showMore(self):
        """Show the next :attr:`PAGE_STUDIES` studies (built in paced steps from the next turn);
        False when no study is left beyond them."""
        left = sum(len(studies) for _patient, studies in self._todo)
        self._pageLeft = min(left, self._pageLeft + self.PAGE_STUDIES)
        left -= self._pageLeft
        self._moreButton.text = _("Show {count} more {what}").format(
            count=left, what=_("study") if left == 1 else _("studies")
        )
        self._moreButton.visible = bool(left)
        if self._pageLeft:
            pacedWork().add(self._buildNext)
        return bool(left)

    def _buildNextStudy(self):
        """The next study of the pages asked for (and its patient's header, the first time)."""
        patient, studies = self._todo[0]
        if ("patient", patient.PatientID) not in self._headers:
            self._insert(self._patientHeader(patient, len(studies)))
        study, series = studies.pop(0)
        self._insert(self._studyBox(study, series))
        self._pageLeft -= 1
        if not studies:
            self._todo.pop(0)

    def _finishPage(self):
        """The studies of the pages asked for, now (one is selected or read before its turn)."""
        while self._pageLeft:
            self._buildNextStudy()
        if self._pendingTiles:  # the tiles of the unfolded ones in the next turns
            pacedWork().add(self._buildNext)

    def _insert(self, widget):
        self._layout.insertWidget(self._layout.count() - 2, widget)  # before "Show more" and the stretch

    def _patientHeader(self, patient, studyCount):
        header = self._header(self.widget(), ("patient", patient.PatientID))
        parts = [T.patientTitle(patient)]
        if patient.PatientID and patient.PatientID != parts[0]:
            parts.append(_("ID {id}").format(id=patient.PatientID))
        parts.append(T.count(studyCount, _("study"), _("studies")))
        font = header.font
        font.setBold(True)
        header.font = font  # before the text: the bold text is the one measured to fit
        header.setFullText(
            "   ·   ".join(parts),
            _("Patient ID: {id}\nBirth date: {date}").format(
                id=patient.PatientID, date=T.formatDate(getattr(patient, "PatientBirthDate", "")) or "-"
            ),
        )
        return header

    def _studyBox(self, study, series):
        uid = study.StudyInstanceUID
        box = qt.QWidget(self.widget())
        layout = qt.QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(self._studyRow(box, study, series, uid in self._expanded))
        self._boxes[uid] = box
        if uid in self._expanded:  # its tiles a moment later (paced steps), or when asked for
            self._pendingTiles.append(uid)
        return box

    def _buildNext(self):
        """One unit of paced work: the next study of a page, else the next tile; True while
        there is more."""
        if self._pageLeft:
            self._buildNextStudy()
        elif self._pendingTiles:
            self._buildNextTile()
        return bool(self._pageLeft or self._pendingTiles)

    def _buildNextTile(self):
        """The next tile of the first unfolded study whose tiles are not all made (its list is
        made with the first)."""
        uid = self._pendingTiles[0]
        tiles = self._tileList(uid)
        records = self._series.get(uid, [])
        if tiles.count < len(records):
            record = records[tiles.count]
            self._addTile(tiles, record, self._icons.get(record.SeriesInstanceUID))
        if tiles.count >= len(records):
            self._pendingTiles.pop(0)
            tiles.fitHeight()

    def _tileList(self, studyUID):
        """The (maybe partly filled) tile list of a study, made empty the first time."""
        tiles = self._lists.get(studyUID)
        if tiles is None:
            box = self._boxes[studyUID]
            tiles = _SeriesTiles(box)
            tiles.connect("itemSelectionChanged()", lambda tiles=tiles: self._onTilesSelection(tiles))
            tiles.connect("itemDoubleClicked(QListWidgetItem*)", self._onTileActivated)
            self._lists[studyUID] = tiles
            box.layout().addWidget(tiles)
        return tiles

    def _makeTiles(self, studyUID):
        """Every tile of a study, now (the ones the paced steps have not made yet)."""
        if studyUID in self._pendingTiles:
            self._pendingTiles.remove(studyUID)
        tiles = self._tileList(studyUID)
        for record in self._series.get(studyUID, [])[tiles.count :]:
            self._addTile(tiles, record, self._icons.get(record.SeriesInstanceUID))
        return tiles

    def _ensureBuilt(self, studyUID):
        """Build pages until ``studyUID`` is shown; False if it is not in the grid."""
        while studyUID not in self._boxes:
            if not self._todo:
                return False
            if not self._pageLeft:
                self.showMore()
            self._finishPage()
        return True

    def _header(self, parent, entry):
        # a long text is cut with "…" (whole in the tooltip), never widening the grid: at 340 px a
        # study's date and description left no room for its counts, cut off without a sign
        button = ElidedButton("", "", parent)
        button.checkable = True
        button.flat = True
        button.setStyleSheet(_HEADER_STYLE)
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
        header.setFullText(
            "   ·   ".join(p for p in parts if p),
            _("{title}\nModalities: {modalities}\nAccession number: {accession}\nStudy UID: {uid}").format(
                title=T.studyTitle(study),
                modalities=study.ModalitiesInStudy or "-",
                accession=study.AccessionNumber or "-",
                uid=uid,
            ),
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

    def cleanup(self):
        """Build nothing more (the host goes away)."""
        self._todo, self._pageLeft, self._pendingTiles = [], 0, []
        pacedWork().remove(self._buildNext)

    # -- state ---------------------------------------------------------------------------------------
    def setIcon(self, seriesUID, icon):
        if icon is not None:
            self._icons[seriesUID] = icon
        tile = self._tiles.get(seriesUID)
        if tile is not None and icon is not None:
            tile[1].setIcon(icon)

    def isStudyExpanded(self, studyUID):
        self._finishPage()
        return studyUID in self._expanded and studyUID in self._boxes

    def expandedStudies(self):
        return {uid for uid in self._expanded if uid in self._series}

    def setStudyExpanded(self, studyUID, expanded=True):
        """Show (True), hide (False) or toggle (None) the tiles of a study."""
        if studyUID not in self._series or not self._ensureBuilt(studyUID):
            return
        expanded = studyUID not in self._expanded if expanded is None else bool(expanded)
        self._arrows[studyUID].arrowType = qt.Qt.DownArrow if expanded else qt.Qt.RightArrow
        if expanded:
            self._expanded.add(studyUID)
            tiles = self._makeTiles(studyUID)
            tiles.visible = True
            tiles.fitHeight()
            self._onStudyExpanded(studyUID)
        else:
            self._expanded.discard(studyUID)
            if studyUID in self._pendingTiles:
                self._pendingTiles.remove(studyUID)
            if studyUID in self._lists:
                self._lists[studyUID].visible = False

    def seriesOfStudy(self, studyUID):
        return [record.SeriesInstanceUID for record in self._series.get(studyUID, [])]

    def tileOf(self, seriesUID):
        """(QListWidget, QListWidgetItem) of a series tile (None until its study is unfolded)."""
        self._finishPage()
        studyUID = self._studyOfSeries.get(seriesUID)
        if studyUID in self._pendingTiles:  # unfolded, its tiles not made yet: made now
            self._makeTiles(studyUID).fitHeight()
        return self._tiles.get(seriesUID)

    def headerOf(self, level, key):
        """The checkable header button of a patient or study (None while it is not shown: not in
        the pages asked for)."""
        self._finishPage()
        return self._headers.get((level, key))

    def moreButton(self):
        """The "Show N more studies" button (hidden when everything is shown)."""
        return self._moreButton

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
            studyUID = self._studyOfSeries.get(key)
            if studyUID is None:
                return False
            self.setStudyExpanded(studyUID, True)
            tiles, item = self._tiles[key]
            blocked = tiles.blockSignals(True)
            item.setSelected(True)
            tiles.setCurrentItem(item)
            tiles.blockSignals(blocked)
            self.ensureWidgetVisible(tiles)
        else:
            if level == "study":
                self._ensureBuilt(key)
            elif level == "patient":
                while ("patient", key) not in self._headers and (self._todo or self._pageLeft):
                    if not self._pageLeft:
                        self.showMore()
                    self._finishPage()
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
