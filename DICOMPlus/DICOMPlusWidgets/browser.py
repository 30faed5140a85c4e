"""DICOMPlusBrowserWidget: the local database as patients -> studies -> series, with search and
series thumbnails: a grid of thumbnails under each study (the default), or a compact tree.

The search box runs a database search (``Database.search(..., text=)``: names, IDs,
descriptions, accession numbers) a moment after typing stops. Thumbnails
(``DICOMPlusLib.loading.preview.series_thumbnail``: the middle slice in geometric order, cached
on disk beside the database) are made in the DICOMPlus engine process for the series of expanded studies and
set as item icons when they are ready; the tree is usable before that.
"""

from __future__ import annotations

import qt
from slicer.i18n import tr as _

from . import text as T
from .fitting import WrappedLabel
from .grid import SeriesGrid
from .signals import Signal
from .tasks import EngineQueue, QueuePump, followDatabaseClosing, pacedWork, stopTimer

THUMBNAIL_SIZE = 64  # pixels of the cached PNG; shown at ICON_SIZE in the tree, full in the grid
ICON_SIZE = 40


class DICOMPlusBrowserWidget(qt.QWidget):
    """Browse the local database. ``source`` is a DICOMPlusLogic (its ``database`` is used, so a
    new database path is followed) or a DICOMPlusLib Database.

    Signals (:class:`~DICOMPlusWidgets.signals.Signal`), all on the main thread:

    * ``selectionChanged(list entries)``: ``[(level, key)]`` with level "patient" (key:
      PatientID), "study" (StudyInstanceUID) or "series" (SeriesInstanceUID);
    * ``seriesSelected(str uid)``, ``studySelected(str uid)``, ``patientSelected(str id)``: one
      item of that level became the only selection;
    * ``loadRequested(list entries)``: double-click on a series, or :meth:`requestLoad`;
    * ``refreshed()``: the view was rebuilt from the database;
    * ``viewModeChanged(str mode)``: "grid" or "tree" (:meth:`setViewMode`, or the Grid/List buttons).

    Public methods: setDatabase, refresh, searchText, setSearchText, selectedEntries, selectEntry,
    selectSeries, clearSelection, entries, requestLoad, setThumbnailsEnabled, thumbnailsEnabled,
    hasThumbnail, viewMode, setViewMode, gridView, treeWidget, searchBox, statusText, cleanup.
    """

    #: Studies shown expanded when the view is first filled, if there are at most this many.
    EXPAND_STUDIES = 12
    #: The count line while the database is empty; a host names its own way in.
    emptyText = _("The database is empty.")

    def __init__(self, source=None, parent=None, thumbnails=True, viewMode="grid"):
        qt.QWidget.__init__(self, parent)
        self.selectionChanged = Signal(list, name="selectionChanged")
        self.seriesSelected = Signal(str, name="seriesSelected")
        self.studySelected = Signal(str, name="studySelected")
        self.patientSelected = Signal(str, name="patientSelected")
        self.loadRequested = Signal(list, name="loadRequested")
        self.refreshed = Signal(name="refreshed")
        self.viewModeChanged = Signal(str, name="viewModeChanged")
        self._source = source
        self._items = {}  # (level, key) -> QTreeWidgetItem (tree mode)
        self._entries = []  # [(level, key)] shown, in display order
        self._viewMode = viewMode if viewMode in ("grid", "tree") else "grid"
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
        # the thumbnails a refresh asks for and the list's rows are made in paced steps
        # (tasks.pacedWork: then the event loop runs): each series is checked for its decoders
        # first (a database read), ten at once after an import were part of a GUI gap past
        # 100 ms on a loaded machine
        self._thumbnailsToAsk = []
        self._treeRows = None
        self._setupUi()

    def _setupUi(self):
        layout = qt.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = qt.QHBoxLayout()
        self._searchBox = qt.QLineEdit(self)
        self._searchBox.placeholderText = _("Search names, IDs, descriptions, accession numbers")
        self._searchBox.clearButtonEnabled = True
        self._searchBox.toolTip = _(
            "Search the local database: patients, studies and series whose name, ID, description "
            "or accession number contains this text. * and ? are wildcards (DOE*). A date or a "
            "range finds the studies of those days: 2016, 2016-03-09, 2016-01-01 - 2016-06-30."
        )
        self._searchBox.connect("textChanged(QString)", self._onSearchTextChanged)
        self._searchBox.connect("returnPressed()", self.refresh)
        top.addWidget(self._searchBox, 1)
        self._gridButton = qt.QToolButton(self)
        self._gridButton.text = _("Grid")
        self._gridButton.toolTip = _("Series as thumbnails under each study")
        self._treeButton = qt.QToolButton(self)
        self._treeButton.text = _("List")
        self._treeButton.toolTip = _("A compact list: patients, studies and series in rows")
        for button, mode in ((self._gridButton, "grid"), (self._treeButton, "tree")):
            button.checkable = True
            button.checked = mode == self._viewMode
            button.connect("clicked(bool)", lambda *args, mode=mode: self.setViewMode(mode))
            top.addWidget(button)
        layout.addLayout(top)

        self._stack = qt.QStackedWidget(self)
        # its height is what is left once the host's other widgets have theirs (its contents
        # scroll): a long list must not push a preview below the screen
        self._stack.setSizePolicy(qt.QSizePolicy.Preferred, qt.QSizePolicy.Ignored)
        self._stack.minimumHeight = 170
        self._grid = SeriesGrid(
            self._stack, self._onSelectionChanged, self._onGridActivated, self._onStudyExpanded
        )
        self._grid.minimumHeight = 170
        self._grid.toolTip = _("Double-click a series to load it. Ctrl+click selects several.")
        self._stack.addWidget(self._grid)

        tree = qt.QTreeWidget(self._stack)
        # short headings: the list fits Slicer's 340 px panel ("Patient / study / series" was
        # cut to "Patient / study / se"); their tooltips say the rest
        columns = (_("Name"), _("Date"), _("Mod."), _("Images"))
        tree.columnCount = len(columns)
        tree.setHeaderLabels(list(columns))
        tree.selectionMode = qt.QAbstractItemView.ExtendedSelection
        tree.alternatingRowColors = True
        tree.uniformRowHeights = False
        tree.iconSize = qt.QSize(ICON_SIZE, ICON_SIZE)
        tree.minimumHeight = 170
        tree.indentation = 14
        tree.headerItem().setToolTip(0, _("Patient, study or series"))
        tree.headerItem().setToolTip(2, _("Modality (modalities in the study)"))
        tree.headerItem().setToolTip(3, _("Number of images"))
        tree.toolTip = _(
            "Patients, studies and series in the local database. Double-click a series to load it."
        )
        header = tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, qt.QHeaderView.Stretch)
        for column in range(1, len(columns)):
            header.setSectionResizeMode(column, qt.QHeaderView.ResizeToContents)
        tree.connect("itemSelectionChanged()", self._onSelectionChanged)
        tree.connect("itemExpanded(QTreeWidgetItem*)", self._onItemExpanded)
        tree.connect("itemDoubleClicked(QTreeWidgetItem*,int)", self._onItemDoubleClicked)
        self._stack.addWidget(tree)
        self._stack.currentIndex = 0 if self._viewMode == "grid" else 1
        layout.addWidget(self._stack, 1)
        self._tree = tree

        self._statusLabel = WrappedLabel(self)  # its lines count in the browser's minimum
        self._statusLabel.objectName = "browserStatusLabel"  # hosts and tests find it by name
        layout.addWidget(self._statusLabel)

    # -- accessors for hosts that style or test the widget --------------------------------------
    def treeWidget(self):
        """The QTreeWidget of the compact mode (read it, style it; do not add or remove items);
        it is filled while :meth:`viewMode` is "tree"."""
        self._finishTree()  # every row, as the refresh made them
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
        self._entries = []  # a new database opens as a first view does
        self.refresh(selection=[])

    def _database(self):
        if self._source is None:
            raise RuntimeError(_("DICOMPlusBrowserWidget has no database: call setDatabase(logic)"))
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

    @staticmethod
    def _searchSeries(database, text, studies):
        """The series the search box finds (text.searchQuery): words through the database's text
        search; a date or a range of dates by study date, and as words too (an ID of digits is
        still found); wildcards and a name as shown ("DOE, JANE") matched on each series."""
        criteria, words, pattern = T.searchQuery(text)
        if criteria:
            found = {s.SeriesInstanceUID: s for s in database.search("series", criteria)}
            for record in database.search("series", {}, text=text):
                found.setdefault(record.SeriesInstanceUID, record)
            return sorted(  # as the database orders them (a series without a number first, as NULL)
                found.values(),
                key=lambda s: (
                    s.StudyInstanceUID,
                    s.SeriesNumber is not None,
                    s.SeriesNumber or 0,
                    s.SeriesInstanceUID,
                ),
            )
        series = database.search("series", {}, text=words)
        if pattern is None:
            return series
        studyOf = {study.StudyInstanceUID: study for study in studies}
        return [s for s in series if T.seriesMatches(pattern, s, studyOf.get(s.StudyInstanceUID))]

    # -- views ------------------------------------------------------------------------------------
    def viewMode(self):
        """ "grid" (series as thumbnails under each study) or "tree" (the compact list)."""
        return self._viewMode

    def setViewMode(self, mode):
        """Show the thumbnail grid ("grid") or the compact tree ("tree"); keeps the selection."""
        if mode not in ("grid", "tree"):
            raise ValueError(f'view mode is "grid" or "tree", not {mode!r}')
        if mode == self._viewMode:
            return
        selected = self.selectedEntries()
        self._viewMode = mode
        self._stack.currentIndex = 0 if mode == "grid" else 1
        for button, name in ((self._gridButton, "grid"), (self._treeButton, "tree")):
            button.checked = name == mode
        self.refresh(selection=selected)
        self.viewModeChanged.emit(mode)

    def gridView(self):
        """The grid (a :class:`~DICOMPlusWidgets.grid.SeriesGrid`), to read or style it."""
        return self._grid

    # -- refresh ----------------------------------------------------------------------------------
    def refresh(self, *args, selection=None):
        """Rebuild the view from the database (and the search text); keeps the selection and the
        expanded studies where they still exist."""
        self._searchTimer.stop()
        text = self.searchText()
        selected = self.selectedEntries() if selection is None else selection
        if self._viewMode == "grid":
            expanded = self._grid.expandedStudies()
        else:
            expanded = {
                key[1] for key, item in self._items.items() if key[0] == "study" and item.isExpanded()
            }
        known = {key for level, key in self._entries if level == "study"}
        try:
            database = self._database()
            patients = database.search("patient", {})
            studies = database.search("study", {})
            series = self._searchSeries(database, text, studies)
        except Exception as error:  # a missing or locked database: say so, keep the widget usable
            self._statusLabel.text = _("Cannot read the database: {error}").format(error=error)
            return
        seriesByStudy = {}
        for record in series:
            seriesByStudy.setdefault(record.StudyInstanceUID, []).append(record)
        studiesByPatient = {}
        for record in studies:
            if text and record.StudyInstanceUID not in seriesByStudy:
                continue
            studiesByPatient.setdefault(record.PatientID, []).append(record)
        groups = [
            (
                patient,
                [
                    (study, seriesByStudy.get(study.StudyInstanceUID, []))
                    for study in studiesByPatient.get(patient.PatientID, [])
                ],
            )
            for patient in patients
            if not text or patient.PatientID in studiesByPatient
        ]
        self._entries = []
        for patient, studyGroups in groups:
            self._entries.append(("patient", patient.PatientID))
            for study, seriesList in studyGroups:
                self._entries.append(("study", study.StudyInstanceUID))
                self._entries += [("series", s.SeriesInstanceUID) for s in seriesList]
        shownStudies = sum(len(g[1]) for g in groups)
        if shownStudies <= self.EXPAND_STUDIES:
            # a small database (or search result) shows the series of its studies: all of them the
            # first time, then the new ones (a study the user folded stays folded)
            studyUIDs = {uid for level, uid in self._entries if level == "study"}
            expanded |= studyUIDs if text or not known else studyUIDs - known

        if self._viewMode == "grid":
            self._grid.build(groups, self._icons, expanded)
            self._items, self._treeRows = {}, None
        else:
            self._grid.build([], {}, set())
            self._buildTree(groups, expanded)
        for entry in selected:
            self._select(entry, exclusive=False, notify=False)

        counts = "   ·   ".join(
            (
                T.count(len(groups), _("patient"), _("patients")),
                T.count(shownStudies, _("study"), _("studies")),
                T.count(len(series), _("series"), _("series")),
            )
        )
        if text:
            self._statusLabel.text = _('{counts} match "{text}"').format(counts=counts, text=text)
        elif not groups:  # a first run: say what to do, not only "0 patients"
            self._statusLabel.text = self.emptyText
        else:
            self._statusLabel.text = counts
        self._thumbnailsToAsk = [  # as _seriesOfStudy, without waiting for the list's rows
            record.SeriesInstanceUID
            for _patient, studyGroups in groups
            for study, seriesList in studyGroups
            if study.StudyInstanceUID in expanded
            for record in seriesList
        ]
        if self._thumbnailsToAsk:
            pacedWork().add(self._askNextThumbnail)
        if self.selectedEntries() != selected:
            self._onSelectionChanged()
        self.refreshed.emit()

    def _buildTree(self, groups, expanded):
        """Rows from ``groups`` in paced steps from the next turn of the event loop;
        :meth:`_finishTree` makes the rest at once."""
        blocked = self._tree.blockSignals(True)
        self._tree.clear()
        self._tree.blockSignals(blocked)
        self._items = {}
        self._treeRows = self._treeItems(groups, expanded)
        pacedWork().add(self._nextTreeRow)

    def _nextTreeRow(self):
        """One unit of paced work: the next row; True while rows are left."""
        if self._treeRows is not None:
            blocked = self._tree.blockSignals(True)  # rows made by the widget, not by the user
            try:
                if next(self._treeRows, False) is not False:
                    return True
            finally:
                self._tree.blockSignals(blocked)
        self._treeRows = None
        return False

    def _finishTree(self):
        """Every row now (an entry is selected or read before its row's turn came)."""
        while self._nextTreeRow():
            pass

    def _treeItems(self, groups, expanded):
        """Make the tree's rows, yielding True after each one."""
        tree = self._tree
        for patient, studyGroups in groups:
            patientItem = self._addItem(
                tree,
                ("patient", patient.PatientID),
                [T.patientTitle(patient), "", "", _count(patient.NumberOfPatientRelatedInstances)],
                _("Patient ID: {id}").format(id=patient.PatientID),
            )
            yield True
            for study, seriesList in studyGroups:
                studyItem = self._addItem(
                    patientItem,
                    ("study", study.StudyInstanceUID),
                    [
                        T.studyTitle(study),
                        T.formatDate(study.StudyDate),
                        study.ModalitiesInStudy,
                        _count(study.NumberOfStudyRelatedInstances),
                    ],
                    _("Accession number: {accession}\nStudy UID: {uid}").format(
                        accession=study.AccessionNumber or "-", uid=study.StudyInstanceUID
                    ),
                )
                yield True
                for record in seriesList:
                    number = "" if record.SeriesNumber is None else f"{record.SeriesNumber}: "
                    seriesItem = self._addItem(
                        studyItem,
                        ("series", record.SeriesInstanceUID),
                        [
                            number + T.seriesTitle(record),
                            T.formatDate(record.SeriesDate),
                            record.Modality,
                            _count(record.NumberOfSeriesRelatedInstances),
                        ],
                        _("{title}\nSeries UID: {uid}").format(
                            title=T.seriesTitle(record), uid=record.SeriesInstanceUID
                        ),
                    )
                    icon = self._icons.get(record.SeriesInstanceUID)
                    if icon is not None:
                        seriesItem.setIcon(0, icon)
                    yield True
                studyItem.setExpanded(study.StudyInstanceUID in expanded)
                patientItem.setExpanded(True)  # once it has a row under it, as the study
                yield True
            patientItem.setExpanded(True)

    def _seriesOfStudy(self, studyUID):
        if self._viewMode == "grid":
            return self._grid.seriesOfStudy(studyUID)
        self._finishTree()
        item = self._items.get(("study", studyUID))
        if item is None:
            return []
        return [
            str(item.child(i).data(0, qt.Qt.UserRole)).partition(":")[2] for i in range(item.childCount())
        ]

    def _addItem(self, parent, entry, columns, toolTip):
        item = qt.QTreeWidgetItem(parent, columns)
        item.setData(0, qt.Qt.UserRole, f"{entry[0]}:{entry[1]}")
        item.setToolTip(0, toolTip)
        self._items[entry] = item
        return item

    def entries(self, level=None):
        """[(level, key)] of the items shown (of one level), in display order."""
        return [entry for entry in self._entries if level is None or entry[0] == level]

    def selectedEntries(self):
        """[(level, key)] of the selected items, e.g. [("series", "1.2.3")]."""
        if self._viewMode == "grid":
            return self._grid.selectedEntries()
        entries = []
        for item in self._tree.selectedItems():
            level, _sep, key = str(item.data(0, qt.Qt.UserRole)).partition(":")
            entries.append((level, key))
        return entries

    def selectEntry(self, level, key, exclusive=True):
        """Select an item (its parents are expanded); False if it is not shown."""
        return self._select((level, key), exclusive=exclusive, notify=True)

    def _select(self, entry, exclusive, notify):
        if self._viewMode == "grid":
            return self._grid.selectEntry(*entry, exclusive=exclusive, notify=notify)
        if entry not in self._items:
            self._finishTree()
        item = self._items.get(entry)
        if item is None:
            return False
        blocked = self._tree.blockSignals(not notify)
        if exclusive:
            self._tree.clearSelection()
        parent = item.parent()
        while parent is not None:
            parent.setExpanded(True)
            parent = parent.parent()
        item.setSelected(True)
        self._tree.setCurrentItem(item)
        self._tree.scrollToItem(item)
        self._tree.blockSignals(blocked)
        return True

    def selectSeries(self, seriesUID):
        return self.selectEntry("series", seriesUID)

    def clearSelection(self):
        if self._viewMode == "grid":
            self._grid.clearSelection()
        else:
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
                self._queueThumbnails([key])
                self.seriesSelected.emit(key)
            elif level == "study":
                self.studySelected.emit(key)
            elif level == "patient":
                self.patientSelected.emit(key)

    def _onGridActivated(self, entry):
        if entry[0] == "series":
            self.loadRequested.emit([entry])

    def _onStudyExpanded(self, studyUID):
        self._queueThumbnails(self._seriesOfStudy(studyUID))

    def _onItemExpanded(self, item):
        level, _sep, key = str(item.data(0, qt.Qt.UserRole)).partition(":")
        if level == "study":
            self._queueThumbnails(self._seriesOfStudy(key))

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

    def _askNextThumbnail(self):
        """One unit of paced work; True while series are left to ask for."""
        if self._thumbnailsToAsk:
            self._queueThumbnails([self._thumbnailsToAsk.pop(0)])
        return bool(self._thumbnailsToAsk)

    def _queueThumbnails(self, seriesUIDs):
        """Ask the engine for the thumbnails of ``seriesUIDs`` not asked for yet."""
        if not self._thumbnailsEnabled:
            return
        database = None
        for uid in seriesUIDs:
            if uid in self._icons or self._queue.isPending(uid):
                continue
            canDecode = getattr(self._source, "ensureDecoders", None)
            if canDecode is not None and not canDecode([uid], ask=False):
                self._icons[uid] = None  # its decoder is not installed: loading or preview offers it
                continue
            database = database or self._database()
            self._queue.put(
                uid,
                (
                    "thumbnail",
                    {
                        "db": getattr(database, "url", None) or str(database.path),
                        "store": str(database.store_root),  # the engine opens it as the panel did
                        "series": uid,
                        "size": THUMBNAIL_SIZE,
                    },
                ),
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
        self._grid.setIcon(seriesUID, icon)

    def cleanup(self):
        """Stop asking for thumbnails and the search timer; call when the host goes away."""
        self._pump.stop()
        followDatabaseClosing(self._queue, self._source, None)
        stopTimer(self._searchTimer)
        self._thumbnailsToAsk = []
        self._treeRows = None
        for work in (self._askNextThumbnail, self._nextTreeRow):
            pacedWork().remove(work)
        self._grid.cleanup()


def _count(value):
    return "" if value is None else str(value)
