"""DICOMPlusBrowserWidget: the local database as patients -> studies -> series, with search and
series thumbnails.

The search box runs a database search (``Database.search(..., text=)``: names, IDs,
descriptions, accession numbers) a moment after typing stops. Thumbnails
(``DICOMPlusLib.loading.preview.series_thumbnail``: the middle slice in geometric order, cached
on disk beside the database) are made in the DICOMPlus engine process for the series of expanded studies and
set as item icons when they are ready; the tree is usable before that.
"""

from __future__ import annotations

import qt

from .signals import Signal
from .tasks import EngineQueue, QueuePump, followDatabaseClosing, stopTimer

THUMBNAIL_SIZE = 64  # pixels of the cached PNG; shown at ICON_SIZE
ICON_SIZE = 40
COLUMNS = ("Patient / study / series", "Date", "Mod.", "Images")


def _formatDate(value):
    """YYYYMMDD -> YYYY-MM-DD for display; anything else unchanged."""
    value = value or ""
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


class DICOMPlusBrowserWidget(qt.QWidget):
    """Browse the local database. ``source`` is a DICOMPlusLogic (its ``database`` is used, so a
    new database path is followed) or a DICOMPlusLib Database.

    Signals (:class:`~DICOMPlusWidgets.signals.Signal`), all on the main thread:

    * ``selectionChanged(list entries)``: ``[(level, key)]`` with level "patient" (key:
      PatientID), "study" (StudyInstanceUID) or "series" (SeriesInstanceUID);
    * ``seriesSelected(str uid)``, ``studySelected(str uid)``, ``patientSelected(str id)``: one
      item of that level became the only selection;
    * ``loadRequested(list entries)``: double-click on a series, or :meth:`requestLoad`;
    * ``refreshed()``: the tree was rebuilt from the database.

    Public methods: setDatabase, refresh, searchText, setSearchText, selectedEntries, selectEntry,
    selectSeries, clearSelection, entries, requestLoad, setThumbnailsEnabled, thumbnailsEnabled,
    hasThumbnail, treeWidget, searchBox, cleanup.
    """

    def __init__(self, source=None, parent=None, thumbnails=True):
        qt.QWidget.__init__(self, parent)
        self.selectionChanged = Signal(list, name="selectionChanged")
        self.seriesSelected = Signal(str, name="seriesSelected")
        self.studySelected = Signal(str, name="studySelected")
        self.patientSelected = Signal(str, name="patientSelected")
        self.loadRequested = Signal(list, name="loadRequested")
        self.refreshed = Signal(name="refreshed")
        self._source = source
        self._items = {}  # (level, key) -> QTreeWidgetItem
        self._icons = {}  # series UID -> QIcon, or None when it has no thumbnail
        self._lastSelection = []
        self._thumbnailsEnabled = bool(thumbnails)
        self._queue = EngineQueue()
        self._pump = QueuePump(self._queue, self._onThumbnail, self)
        followDatabaseClosing(self._queue, None, source)
        self._searchTimer = qt.QTimer(self)
        self._searchTimer.setSingleShot(True)
        self._searchTimer.setInterval(300)
        self._searchTimer.connect("timeout()", self.refresh)
        self._setupUi()

    def _setupUi(self):
        layout = qt.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._searchBox = qt.QLineEdit(self)
        self._searchBox.placeholderText = "Search names, IDs, descriptions, accession numbers"
        self._searchBox.clearButtonEnabled = True
        self._searchBox.toolTip = (
            "Search the local database: patients, studies and series whose name, ID, description "
            "or accession number contains this text"
        )
        self._searchBox.connect("textChanged(QString)", self._onSearchTextChanged)
        self._searchBox.connect("returnPressed()", self.refresh)
        layout.addWidget(self._searchBox)

        tree = qt.QTreeWidget(self)
        tree.columnCount = len(COLUMNS)
        tree.setHeaderLabels(list(COLUMNS))
        tree.selectionMode = qt.QAbstractItemView.ExtendedSelection
        tree.alternatingRowColors = True
        tree.uniformRowHeights = False
        tree.iconSize = qt.QSize(ICON_SIZE, ICON_SIZE)
        tree.minimumHeight = 200
        tree.indentation = 14
        tree.headerItem().setToolTip(2, "Modality (modalities in the study)")
        tree.headerItem().setToolTip(3, "Number of instances")
        tree.toolTip = "Patients, studies and series in the local database. Double-click a series to load it."
        header = tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, qt.QHeaderView.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, qt.QHeaderView.ResizeToContents)
        tree.connect("itemSelectionChanged()", self._onSelectionChanged)
        tree.connect("itemExpanded(QTreeWidgetItem*)", self._onItemExpanded)
        tree.connect("itemDoubleClicked(QTreeWidgetItem*,int)", self._onItemDoubleClicked)
        layout.addWidget(tree, 1)
        self._tree = tree

        self._statusLabel = qt.QLabel(self)
        self._statusLabel.wordWrap = True
        layout.addWidget(self._statusLabel)

    # -- accessors for hosts that style or test the widget --------------------------------------
    def treeWidget(self):
        """The QTreeWidget (read it, style it; do not add or remove items)."""
        return self._tree

    def searchBox(self):
        """The search QLineEdit (prefer :meth:`setSearchText`)."""
        return self._searchBox

    def statusText(self):
        """What the line under the tree says (counts, or the search result, or an error)."""
        return self._statusLabel.text

    # -- database ---------------------------------------------------------------------------------
    def setDatabase(self, source):
        """Browse another DICOMPlusLogic or Database (the tree is rebuilt)."""
        self._queue.quiesce()
        followDatabaseClosing(self._queue, self._source, source)
        self._source = source
        self._icons = {}
        self.refresh()

    def _database(self):
        if self._source is None:
            raise RuntimeError("DICOMPlusBrowserWidget has no database: call setDatabase(logic)")
        return getattr(self._source, "database", self._source)

    # -- search -----------------------------------------------------------------------------------
    def searchText(self):
        return self._searchBox.text.strip()

    def setSearchText(self, text, now=True):
        """Search for ``text`` ("" shows everything); at once, or after the typing delay."""
        blocked = self._searchBox.blockSignals(True)
        self._searchBox.text = text
        self._searchBox.blockSignals(blocked)
        if now:
            self._searchTimer.stop()
            self.refresh()
        else:
            self._searchTimer.start()

    def _onSearchTextChanged(self, *args):
        self._searchTimer.start()  # restarts: the search runs 300 ms after the last key

    # -- tree -------------------------------------------------------------------------------------
    def refresh(self, *args):
        """Rebuild the tree from the database (and the search text); keeps the selection and the
        expanded studies where they still exist."""
        self._searchTimer.stop()
        text = self.searchText()
        selected = self.selectedEntries()
        expanded = {key for key, item in self._items.items() if item.isExpanded()}
        try:
            database = self._database()
            patients = database.search("patient", {})
            studies = database.search("study", {})
            series = database.search("series", {}, text=text or None)
        except Exception as error:  # a missing or locked database: say so, keep the widget usable
            self._statusLabel.text = f"Cannot read the database: {error}"
            return
        seriesByStudy = {}
        for record in series:
            seriesByStudy.setdefault(record.StudyInstanceUID, []).append(record)
        studiesByPatient = {}
        for record in studies:
            if text and record.StudyInstanceUID not in seriesByStudy:
                continue
            studiesByPatient.setdefault(record.PatientID, []).append(record)

        tree = self._tree
        blocked = tree.blockSignals(True)
        tree.clear()
        self._items = {}
        for patient in patients:
            if text and patient.PatientID not in studiesByPatient:
                continue
            patientItem = self._addItem(
                tree,
                ("patient", patient.PatientID),
                [
                    patient.PatientName or patient.PatientID,
                    "",
                    "",
                    _count(patient.NumberOfPatientRelatedInstances),
                ],
                f"Patient ID: {patient.PatientID}",
            )
            for study in studiesByPatient.get(patient.PatientID, []):
                studyItem = self._addItem(
                    patientItem,
                    ("study", study.StudyInstanceUID),
                    [
                        study.StudyDescription or "(no description)",
                        _formatDate(study.StudyDate),
                        study.ModalitiesInStudy,
                        _count(study.NumberOfStudyRelatedInstances),
                    ],
                    f"Accession number: {study.AccessionNumber or '-'}\nStudy UID: {study.StudyInstanceUID}",
                )
                for record in seriesByStudy.get(study.StudyInstanceUID, []):
                    number = "" if record.SeriesNumber is None else f"{record.SeriesNumber}: "
                    seriesItem = self._addItem(
                        studyItem,
                        ("series", record.SeriesInstanceUID),
                        [
                            number + (record.SeriesDescription or record.Modality or "Series"),
                            _formatDate(record.SeriesDate),
                            record.Modality,
                            _count(record.NumberOfSeriesRelatedInstances),
                        ],
                        f"{record.SeriesDescription or record.Modality}\nSeries UID: {record.SeriesInstanceUID}",
                    )
                    icon = self._icons.get(record.SeriesInstanceUID)
                    if icon is not None:
                        seriesItem.setIcon(0, icon)
                studyItem.setExpanded(bool(text) or ("study", study.StudyInstanceUID) in expanded)
            patientItem.setExpanded(True)
        for entry in selected:
            item = self._items.get(entry)
            if item is not None:
                item.setSelected(True)
        tree.blockSignals(blocked)

        shownStudies = sum(len(v) for v in studiesByPatient.values())
        if text:
            self._statusLabel.text = f'{len(series)} series match "{text}"'
        else:
            self._statusLabel.text = (
                f"{tree.topLevelItemCount} patient(s), {shownStudies} study(ies), {len(series)} series"
            )
        for key, item in self._items.items():
            if key[0] == "study" and item.isExpanded():
                self._queueThumbnails(item)
        if self.selectedEntries() != selected:
            self._onSelectionChanged()
        self.refreshed.emit()

    def _addItem(self, parent, entry, columns, toolTip):
        item = qt.QTreeWidgetItem(parent, columns)
        item.setData(0, qt.Qt.UserRole, f"{entry[0]}:{entry[1]}")
        item.setToolTip(0, toolTip)
        self._items[entry] = item
        return item

    def entries(self, level=None):
        """[(level, key)] of the items in the tree (of one level), in display order."""
        return [entry for entry in self._items if level is None or entry[0] == level]

    def selectedEntries(self):
        """[(level, key)] of the selected items, e.g. [("series", "1.2.3")]."""
        entries = []
        for item in self._tree.selectedItems():
            level, _sep, key = str(item.data(0, qt.Qt.UserRole)).partition(":")
            entries.append((level, key))
        return entries

    def selectEntry(self, level, key, exclusive=True):
        """Select an item (its parents are expanded); False if it is not in the tree."""
        item = self._items.get((level, key))
        if item is None:
            return False
        if exclusive:
            self._tree.clearSelection()
        parent = item.parent()
        while parent is not None:
            parent.setExpanded(True)
            parent = parent.parent()
        item.setSelected(True)
        self._tree.setCurrentItem(item)
        self._tree.scrollToItem(item)
        return True

    def selectSeries(self, seriesUID):
        return self.selectEntry("series", seriesUID)

    def clearSelection(self):
        self._tree.clearSelection()

    def requestLoad(self, entries=None):
        """Emit ``loadRequested`` for ``entries`` (default: the selection)."""
        entries = self.selectedEntries() if entries is None else list(entries)
        if entries:
            self.loadRequested.emit(entries)

    def _onSelectionChanged(self, *args):
        entries = self.selectedEntries()
        self._lastSelection = entries
        self.selectionChanged.emit(entries)
        if len(entries) == 1:
            level, key = entries[0]
            if level == "series":
                self._queueThumbnails(self._items.get(entries[0]))
                self.seriesSelected.emit(key)
            elif level == "study":
                self.studySelected.emit(key)
            elif level == "patient":
                self.patientSelected.emit(key)

    def _onItemExpanded(self, item):
        if str(item.data(0, qt.Qt.UserRole)).startswith("study:"):
            self._queueThumbnails(item)

    def _onItemDoubleClicked(self, item, column=0):
        level, _sep, key = str(item.data(0, qt.Qt.UserRole)).partition(":")
        if level == "series":
            self.loadRequested.emit([(level, key)])

    # -- thumbnails -------------------------------------------------------------------------------
    def setThumbnailsEnabled(self, enabled):
        self._thumbnailsEnabled = bool(enabled)
        if not enabled:
            self._queue.discard()

    def thumbnailsEnabled(self):
        return self._thumbnailsEnabled

    def hasThumbnail(self, seriesUID):
        """True once the series item shows its thumbnail."""
        return self._icons.get(seriesUID) is not None

    def _queueThumbnails(self, item):
        """Make thumbnails for a series item, or for the series of a study item."""
        if item is None or not self._thumbnailsEnabled:
            return
        level = str(item.data(0, qt.Qt.UserRole)).partition(":")[0]
        children = [item] if level == "series" else [item.child(i) for i in range(item.childCount())]
        database = None
        for child in children:
            uid = str(child.data(0, qt.Qt.UserRole)).partition(":")[2]
            if uid in self._icons:
                continue
            database = database or self._database()
            self._queue.put(
                uid, ("thumbnail", {"db": str(database.path), "series": uid, "size": THUMBNAIL_SIZE})
            )
        if database is not None:
            self._pump.kick()

    def _onThumbnail(self, seriesUID, png, error):
        icon = None
        if error is None and png:
            pixmap = qt.QPixmap()
            if pixmap.loadFromData(qt.QByteArray(png), "PNG"):
                icon = qt.QIcon(pixmap)
        self._icons[seriesUID] = icon  # None: no thumbnail (not an image series); not retried
        item = self._items.get(("series", seriesUID))
        if item is not None and icon is not None:
            item.setIcon(0, icon)

    def cleanup(self):
        """Stop asking for thumbnails and the search timer; call when the host goes away."""
        self._pump.stop()
        followDatabaseClosing(self._queue, self._source, None)
        stopTimer(self._searchTimer)


def _count(value):
    return "" if value is None else str(value)
