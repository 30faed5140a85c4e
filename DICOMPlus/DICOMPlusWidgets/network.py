"""DICOMPlusNetworkWidget: server nodes, echo, query, retrieve, send and the listener.

Everything that talks to the network runs in the DICOMPlus engine process (DICOMPlusWidgets.engine):
echo, query and the lazy series query of an expanded study are engine jobs whose results arrive
on the main thread; retrieve and send are engine jobs shown in an activity widget (with progress
and Cancel). The listener runs in the engine too; series it completes reach the Logic's
``autoLoadQueue`` as notifications, drained by a QTimer here.

The widget works on a DICOMPlusLogic (``nodes``, ``addNode``, ``removeNode``, ``echo``,
``query``, ``retrieve``, ``send``, ``startListener``, ``stopListener``) and never on Qt-free
library objects directly, so that what a user does here is what the console does.
"""

from __future__ import annotations

import qt
import slicer.util
from slicer.i18n import tr as _

from DICOMPlusLib.errors import CancelledError
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, DEFAULT_PORT

from . import networkui
from . import text as T
from .signals import Signal
from .tasks import pacedWork, stopTimer

SETTINGS = "DICOMPlus/Network/"


def _text(value):
    return "" if value is None else str(value)


def _formatDate(value):
    value = _text(value)
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def _wildcard(value):
    """A name or description typed without wildcards matches as a prefix (PS3.4 C.2.2.2.4)."""
    value = value.strip()
    if value and "*" not in value and "?" not in value:
        return value + "*"
    return value


class DICOMPlusNetworkWidget(qt.QWidget):
    """Server nodes with an echo test, a query form, query results, Retrieve/Send selected, and
    the listener.

    Signals (:class:`~DICOMPlusWidgets.signals.Signal`): ``nodeChanged(str name)``,
    ``echoFinished(bool ok, str message)``, ``queryFinished(int studies)``,
    ``retrieveFinished(str studyUID)`` (the retrieved instances are in the local database),
    ``sendFinished(str node)``, ``listenerChanged(bool running)``,
    ``loadRequested(list entries)`` (series the listener completed, with auto-load on).

    The host gives the activity widget where jobs are shown (else the widget shows its own) and,
    for Send selected, a callable returning the local selection as [(level, key)]
    (:meth:`setLocalSelectionProvider`).
    """

    AUTOLOAD_MS = 250
    QUERY_LIMIT = 500  # studies shown at most; narrow the form to see others

    def __init__(self, logic, parent=None, activity=None):
        qt.QWidget.__init__(self, parent)
        self.nodeChanged = Signal(str, name="nodeChanged")
        self.echoFinished = Signal(bool, str, name="echoFinished")
        self.queryFinished = Signal(int, name="queryFinished")
        self.retrieveFinished = Signal(str, name="retrieveFinished")
        self.sendFinished = Signal(str, name="sendFinished")
        self.listenerChanged = Signal(bool, name="listenerChanged")
        self.loadRequested = Signal(list, name="loadRequested")
        self._logic = logic
        self._localSelection = None
        self._studyItems = {}  # study UID -> item
        self._seriesItems = {}  # series UID -> item
        self._queryNode = ""
        self._queryGeneration = 0
        self._querying = False
        self._queryJob = None
        self._jobs = []
        self._autoLoadTimer = qt.QTimer(self)
        self._autoLoadTimer.setInterval(self.AUTOLOAD_MS)
        self._autoLoadTimer.connect("timeout()", self._drainAutoLoad)
        # a query's studies (up to QUERY_LIMIT) become rows in paced steps (tasks.pacedWork),
        # the event loop running between them, as the browser's tiles do
        self._studiesToAdd = []
        self._studiesFound = 0
        self._setupUi(activity)
        self._followLogic(None, logic)
        self._readSettings()
        self.refreshNodes()
        self._updateButtons()

    # -- UI -------------------------------------------------------------------------------------
    def _setupUi(self, activity):
        networkui.setupUi(self, activity)

    # -- settings -------------------------------------------------------------------------------
    def _readSettings(self):
        settings = qt.QSettings()
        self.listenerAETitleEdit.text = str(
            settings.value(SETTINGS + "ListenerAETitle", DEFAULT_AE_TITLE) or DEFAULT_AE_TITLE
        )
        try:
            port = int(settings.value(SETTINGS + "ListenerPort", DEFAULT_PORT))
        except (TypeError, ValueError):
            port = DEFAULT_PORT
        self.listenerPortSpinBox.value = port
        self.autoLoadCheckBox.checked = str(settings.value(SETTINGS + "AutoLoad", "false")).lower() in (
            "1",
            "true",
        )

    def _writeListenerSettings(self):
        settings = qt.QSettings()
        settings.setValue(SETTINGS + "ListenerAETitle", str(self.listenerAETitleEdit.text))
        settings.setValue(SETTINGS + "ListenerPort", int(self.listenerPortSpinBox.value))
        settings.setValue(SETTINGS + "AutoLoad", "true" if self.autoLoadCheckBox.checked else "false")

    # -- nodes ----------------------------------------------------------------------------------
    def setLogic(self, logic):
        self._followLogic(self._logic, logic)
        self._logic = logic
        self.refreshNodes()

    def _followLogic(self, old, new):
        """Show the listener stops of ``new`` (and no longer those of ``old``)."""
        for logic, connect in ((old, False), (new, True)):
            signal = getattr(logic, "listenerStopStarted", None)
            if signal is not None:
                if connect:
                    signal.connect(self._onListenerStopStarted)
                else:
                    signal.disconnect(self._onListenerStopStarted)

    def setLocalSelectionProvider(self, provider):
        """``provider() -> [(level, key)]``: what Send selected sends (the local browser's
        selection)."""
        self._localSelection = provider

    def nodeNames(self):
        return [self.nodeCombo.itemText(i) for i in range(self.nodeCombo.count)]

    def currentNode(self):
        return str(self.nodeCombo.currentText or "")

    def setCurrentNode(self, name):
        index = self.nodeCombo.findText(name)
        if index >= 0:
            self.nodeCombo.currentIndex = index
        return index >= 0

    def refreshNodes(self):
        """Re-read the node list; keeps the current node (else the one in the settings)."""
        current = self.currentNode() or str(qt.QSettings().value(SETTINGS + "CurrentNode", "") or "")
        try:
            names = [node.name for node in self._logic.nodes()]
            error = ""
        except Exception as exc:  # an unreadable node file is shown, not raised
            names, error = [], str(exc)
        self.nodeCombo.blockSignals(True)
        self.nodeCombo.clear()
        for name in names:
            self.nodeCombo.addItem(name)
        index = self.nodeCombo.findText(current)
        self.nodeCombo.currentIndex = index if index >= 0 else (0 if names else -1)
        self.nodeCombo.blockSignals(False)
        if error:
            self.echoLabel.text = error
        self._onNodeChanged()

    def _onNodeChanged(self, *args):
        name = self.currentNode()
        if name:
            qt.QSettings().setValue(SETTINGS + "CurrentNode", name)
            try:
                self.echoLabel.text = f"{name}: {self._logic.node(name).address}"
            except Exception as exc:
                self.echoLabel.text = str(exc)
        else:
            self.echoLabel.text = _("No server node yet: Add... one (name, AE title, host, port).")
        self._updateButtons()
        self.nodeChanged.emit(name)

    def showNodeForm(self, *args):
        """Show the node form, filled with the current node (edit) or empty (add)."""
        node = None
        if self.currentNode():
            try:
                node = self._logic.node(self.currentNode())
            except Exception:
                node = None
        self.nodeNameEdit.text = node.name if node else ""
        dimse = node.dimse if node else None  # a DICOMweb-only node has none: the form starts empty
        self.nodeAETitleEdit.text = dimse.ae_title if dimse else ""
        self.nodeHostEdit.text = dimse.host if dimse else "127.0.0.1"
        self.nodePortSpinBox.value = dimse.port if dimse else 104
        self.nodeWebURLEdit.text = node.dicomweb_url if node else ""
        method = node.method.value if node else "C-GET"
        self.nodeMethodCombo.currentIndex = max(0, self.nodeMethodCombo.findText(method))
        self.nodeForm.show()

    def onSaveNode(self, *args):
        """Save the form as a node; a wrong value is shown (error display and the label) and the
        form stays open to fix it."""
        name = str(self.nodeNameEdit.text).strip()
        with slicer.util.tryWithErrorDisplay(_("Cannot save the server node.")):
            try:
                self.addNode(name, str(self.nodeAETitleEdit.text).strip(), str(self.nodeHostEdit.text).strip(),
                             int(self.nodePortSpinBox.value), str(self.nodeMethodCombo.currentText),
                             dicomwebURL=str(self.nodeWebURLEdit.text).strip())  # fmt: skip
            except Exception as exc:
                self.echoLabel.text = _("Cannot save the node: {error}").format(error=exc)
                raise
        self.nodeForm.hide()

    def addNode(self, name, aeTitle, host, port, retrieveMethod="C-GET", dicomwebURL=""):
        """Add (or update) a node through the Logic and make it current. Without an AE title and
        with a DICOMweb URL, the node is reached by DICOMweb only (echo, query, retrieve, send)."""
        if not name:
            raise ValueError("give the node a name")
        if not aeTitle and dicomwebURL:
            self._logic.addDicomwebNode(name, dicomwebURL)
        else:
            self._logic.addNode(
                name, aeTitle, host, port, retrieveMethod=retrieveMethod, dicomwebURL=dicomwebURL
            )
        self.refreshNodes()
        self.setCurrentNode(name)

    def onRemoveNode(self, *args):
        name = self.currentNode()
        if not name:
            return
        try:
            with slicer.util.tryWithErrorDisplay(
                _("Cannot remove the server node {node}.").format(node=name)
            ):
                self._logic.removeNode(name)
        finally:
            self.refreshNodes()

    # -- echo and query (engine jobs) ----------------------------------------------------------
    def onEcho(self, *args):
        name = self.currentNode()
        if not name:
            return
        if not self._ensureDependencies(self.echoLabel):
            return
        self.echoLabel.text = _("Echo {node}...").format(node=name)
        # shown in the activity list with its Cancel, as retrieve and send are: a server that
        # associates and never answers holds the echo for its whole timeout
        try:
            job = self._logic.echo(name)
        except Exception as exc:
            self._onWorkDone(("echo", name), None, exc)
            return
        self._track(job, lambda ended: self._onWorkDone(("echo", name), ended.result, ended.error))

    def _ensureDependencies(self, label):
        """Install the network packages on first use, here on the main thread (Slicer asks the
        user in a dialog), never in a worker. False, with the reason in ``label``, if missing."""
        try:
            self._logic.ensureNetworkDependencies()
        except Exception as exc:
            label.text = _("The network needs packages that are not installed: {error}").format(error=exc)
            return False
        return True

    def echoText(self):
        return self.echoLabel.text

    def criteria(self):
        """The query form as DICOM matching criteria at study level (ValueError, in the user's
        words, for a study date that is not a date)."""
        crit = {}
        values = {
            "PatientName": _wildcard(T.personNameQuery(self.patientNameEdit.text)),
            "PatientID": str(self.patientIDEdit.text).strip(),
            "ModalitiesInStudy": str(self.modalityEdit.text).strip().upper(),
            "StudyDescription": _wildcard(self.descriptionEdit.text),
            "AccessionNumber": str(self.accessionEdit.text).strip(),
        }
        # dates as the results show them (2024-01-02) or a year/month: ValueError if not a date
        values["StudyDate"] = T.studyDateRange(self.dateFromEdit.text, self.dateToEdit.text)
        for key, value in values.items():
            if value:
                crit[key] = value
        return crit

    def onQuery(self, *args):
        name = self.currentNode()
        if not name:
            self.statusLabel.text = _("Choose or add a server node first.")
            return
        if not self._ensureDependencies(self.statusLabel):
            return
        try:
            criteria = self.criteria()
        except ValueError as error:
            self.statusLabel.text = str(error)
            return
        if self._queryJob is not None:
            self._queryJob.cancel()  # a new query replaces the one running
        limit = self.QUERY_LIMIT
        self._queryGeneration += 1
        self._queryNode = name
        self.resultsTree.clear()
        self._studyItems, self._seriesItems = {}, {}
        self._studiesToAdd = []
        pacedWork().remove(self._addNextStudy)
        self.statusLabel.text = _("Querying {node}...").format(node=name)
        self._querying = True
        self._updateButtons()
        self._queryJob = self._run(
            ("query", self._queryGeneration), lambda: self._logic.query(name, "study", criteria, limit=limit)
        )

    def _onItemExpanded(self, item):
        entry = self._entry(item)
        if entry is None or entry[0] != "study" or item.data(1, qt.Qt.UserRole) == "asked":
            return
        item.setData(1, qt.Qt.UserRole, "asked")
        self.expandStudy(entry[1])

    def expandStudy(self, studyUID):
        """Query the series of a study in the results (lazily, on first expansion)."""
        item = self._studyItems.get(studyUID)
        if item is None:
            return False
        placeholder = qt.QTreeWidgetItem(item)
        placeholder.setText(0, _("Querying series..."))
        name = self._queryNode
        self._run(
            ("series", self._queryGeneration, studyUID),
            lambda: self._logic.query(name, "series", {"StudyInstanceUID": studyUID}),
        )
        if not item.isExpanded():
            item.setData(1, qt.Qt.UserRole, "asked")
            item.setExpanded(True)
        return True

    def _run(self, key, start):
        """Start an engine job with ``start()``; ``_onWorkDone(key, result, error)`` when it ends
        (on the main thread: the engine's output arrives through QProcess signals)."""
        try:
            job = start()
        except Exception as exc:
            self._onWorkDone(key, None, exc)
            return None
        job.on_finished(lambda ended: self._onWorkDone(key, ended.result, ended.error))
        return job

    def _onWorkDone(self, key, value, error):
        kind = key[0]
        if kind == "echo":
            if isinstance(error, CancelledError):
                ok, message = False, _("Echo {node} cancelled").format(node=key[1])
            elif error is not None:
                ok, message = False, _("Echo {node} failed: {error}").format(node=key[1], error=error)
            elif value.ok:
                ok, message = (
                    True,
                    _("Echo {node} ({address}): OK in {ms} ms").format(
                        node=key[1], address=value.node.address, ms=f"{value.seconds * 1000:.0f}"
                    ),
                )
            else:
                # the library's message may start with the address the template names already
                error = value.message.removeprefix(f"{value.node.address}: ")
                ok, message = (
                    False,
                    _("Echo {node} ({address}) failed: {error}").format(
                        node=key[1], address=value.node.address, error=error
                    ),
                )
            self.echoLabel.text = message
            self.echoFinished.emit(ok, message)
        elif kind == "query":
            if key[1] != self._queryGeneration:
                return
            if error is not None:
                self._querying = False
                # named: the line stays when the user picks another server
                self.statusLabel.text = _("Query of {node} failed: {error}").format(
                    node=self._queryNode, error=error
                )
                self.queryFinished.emit(-1)
                return
            # the rows in the next turns; queryFinished once they are all there
            self._studiesToAdd, self._studiesFound = list(value), len(value)
            if self._studiesToAdd:
                pacedWork().add(self._addNextStudy)
            else:
                self._queryShown()
        elif kind == "series":
            item = self._studyItems.get(key[2])
            if key[1] != self._queryGeneration or item is None:
                return
            item.takeChildren()
            if error is not None:
                failed = qt.QTreeWidgetItem(item)
                failed.setText(0, _("Series query failed: {error}").format(error=error))
                item.setData(1, qt.Qt.UserRole, "")
                return
            for series in value:
                self._addSeries(item, series)
        self._updateButtons()

    def _addNextStudy(self):
        """One unit of paced work: the next study's row (then the count, once all are there);
        True while studies are left to add."""
        if not self._studiesToAdd:
            return False
        self._addStudy(self._studiesToAdd.pop(0))
        if not self._studiesToAdd:
            self._queryShown()
        return bool(self._studiesToAdd)

    def _queryShown(self):
        self._querying = False
        found = self._studiesFound
        text = _("{studies} on {node}").format(
            studies=T.count(found, _("study"), _("studies")), node=self._queryNode
        )
        if found >= self.QUERY_LIMIT:
            text += " " + _("(the first {limit}: narrow the query to see others)").format(
                limit=self.QUERY_LIMIT
            )
        self.statusLabel.text = text
        self.queryFinished.emit(found)
        self._updateButtons()

    def _addStudy(self, study):
        item = qt.QTreeWidgetItem(self.resultsTree)
        item.setText(
            0, f"{T.formatPersonName(study.PatientName) or _text(study.PatientID)}: {T.studyTitle(study)}"
        )
        item.setText(1, _formatDate(study.StudyDate))
        item.setText(2, _text(getattr(study, "ModalitiesInStudy", "")))
        item.setText(3, _text(getattr(study, "NumberOfStudyRelatedInstances", "")))
        item.setToolTip(
            0,
            _("{title}\nPatient ID: {id}\nAccession number: {accession}\nStudy UID: {uid}").format(
                title=item.text(0),
                id=_text(study.PatientID),
                accession=_text(study.AccessionNumber) or "-",
                uid=study.StudyInstanceUID,
            ),
        )
        item.setData(0, qt.Qt.UserRole, "study:" + study.StudyInstanceUID)
        item.setChildIndicatorPolicy(qt.QTreeWidgetItem.ShowIndicator)
        self._studyItems[study.StudyInstanceUID] = item

    def _addSeries(self, parentItem, series):
        item = qt.QTreeWidgetItem(parentItem)
        number = _text(series.SeriesNumber)
        description = T.seriesTitle(series)
        item.setText(0, f"{number}: {description}" if number else description)
        item.setText(1, _formatDate(getattr(series, "SeriesDate", "")))
        item.setText(2, _text(series.Modality))
        item.setText(3, _text(getattr(series, "NumberOfSeriesRelatedInstances", "")))
        item.setToolTip(0, _("Series UID: {uid}").format(uid=series.SeriesInstanceUID))
        item.setData(0, qt.Qt.UserRole, "series:" + series.SeriesInstanceUID)
        self._seriesItems[series.SeriesInstanceUID] = item

    @staticmethod
    def _entry(item):
        data = item.data(0, qt.Qt.UserRole)
        if not data or ":" not in str(data):
            return None
        level, key = str(data).split(":", 1)
        return level, key

    def results(self, level="study"):
        """[(level, UID)] in the results tree (series only once their study was expanded)."""
        items = self._studyItems if level == "study" else self._seriesItems
        return [(level, uid) for uid in items]

    def selectResult(self, level, uid, exclusive=True):
        items = self._studyItems if level == "study" else self._seriesItems
        item = items.get(uid)
        if item is None:
            return False
        if exclusive:
            self.resultsTree.clearSelection()
        item.setSelected(True)
        return True

    def selectedResults(self):
        """[(level, UID)] of the selected results."""
        return [e for e in (self._entry(item) for item in self.resultsTree.selectedItems()) if e]

    def statusText(self):
        return self.statusLabel.text

    # -- retrieve and send (Jobs in the activity widget) ----------------------------------------
    def onRetrieve(self, *args):
        return self.retrieveSelected()

    def retrieveSelected(self):
        """One background job per study: whole studies, or the series selected in them."""
        groups = {}  # study UID -> [series UIDs] ([] = the whole study)
        for level, uid in self.selectedResults():
            if level == "study":
                groups[uid] = []
        for level, uid in self.selectedResults():
            if level == "series":
                study = self._entry(self._seriesItems[uid].parent())[1]
                if groups.get(study, None) != []:
                    groups.setdefault(study, []).append(uid)
        jobs = []
        for studyUID, seriesUIDs in groups.items():
            try:
                job = self._logic.retrieve(self._queryNode, studyUID=studyUID, seriesUIDs=seriesUIDs)
            except Exception as exc:
                self.statusLabel.text = _("Retrieve failed: {error}").format(error=exc)
                continue
            jobs.append(job)
            self._track(job, lambda ended, uid=studyUID: self._onRetrieved(ended, uid))
        if jobs:
            self.statusLabel.text = _("Retrieving {studies} from {node}...").format(
                studies=T.count(len(jobs), _("study"), _("studies")), node=self._queryNode
            )
        return jobs

    def _onRetrieved(self, job, studyUID):
        if job.error is not None:
            self.statusLabel.text = _("Retrieve failed: {error}").format(error=job.error)
            return
        report = job.result
        failed = len(getattr(report, "failed", {}) or {})
        done = len(getattr(report, "done", []) or [])
        skipped = len(getattr(report, "skipped", []) or [])
        text = (_("Retrieved {count} instance") if done == 1 else _("Retrieved {count} instances")).format(
            count=done
        )
        if skipped:
            text += _(", {count} already here").format(count=skipped)
        if failed:
            text += _(", {count} failed").format(count=failed)
        self.statusLabel.text = text
        self.retrieveFinished.emit(studyUID)

    def onSend(self, *args):
        return self.sendSelected()

    def sendSelected(self, entries=None):
        """Send local entries [(level, key)] (default: the host's local selection) to the current
        node, as one background job with one report."""
        name = self.currentNode()
        if entries is None:
            entries = self._localSelection() if self._localSelection is not None else []
        if not name or not entries:
            self.statusLabel.text = _("Select series in the local database and a server node to send to.")
            return []
        series = [key for level, key in entries if level == "series"]
        studies = [key for level, key in entries if level == "study"]
        for level, key in entries:
            if level == "patient":
                studies += [s.StudyInstanceUID for s in self._logic.search("study", {"PatientID": key})]
        calls = [{"study": studies, "series": series}]
        jobs = []
        for call in calls:
            try:
                job = self._logic.send(name, **call)
            except Exception as exc:
                self.statusLabel.text = _("Send failed: {error}").format(error=exc)
                continue
            jobs.append(job)
            self._track(job, lambda ended: self._onSent(ended, name))
        if jobs:
            self.statusLabel.text = _("Sending to {node}...").format(node=name)
        return jobs

    def _onSent(self, job, name):
        if job.error is not None:
            self.statusLabel.text = _("Send failed: {error}").format(error=job.error)
            return
        report = job.result
        failed = report.failed
        sent = (
            _("Sent {count} instance to {node}")
            if report.sent == 1
            else _("Sent {count} instances to {node}")
        )
        text = sent.format(count=report.sent, node=name)
        if failed:
            text += _("; {count} failed: {error}").format(
                count=len(failed), error=getattr(failed[0], "message", failed[0])
            )
        self.statusLabel.text = text
        self.sendFinished.emit(name)

    def _track(self, job, onDone):
        self._jobs.append(job)

        def ended(finished):
            if finished in self._jobs:
                self._jobs.remove(finished)
            onDone(finished)
            self._updateButtons()

        self.activity.addJob(job, ended)
        self._updateButtons()

    def runningJobs(self):
        return list(self._jobs)

    # -- listener -------------------------------------------------------------------------------
    def setListenerRunning(self, running):
        """Start or stop the listener with the AE title, port and auto-load of the form.

        Neither waits. The start is an engine job in the activity list (the engine opens the
        database and binds the port; its Cancel ends it): the line says the listener is
        starting, the button waits, and ``listenerChanged(True)`` once it listens (a failure,
        such as a port in use, is said on the line, with ``listenerChanged(False)``). The stop
        is a job too (the associations under way get up to 10 s to finish; its Cancel aborts
        them now): the line says the listener is stopping, the button waits for it, and
        ``listenerChanged(False)`` when it has ended. A start while a stop runs is refused (the
        line says why); a stop while the start runs cancels the start."""
        running = bool(running)
        logic = self._logic
        if running and not logic.listenerRunning() and not logic.listenerStarting():
            self._writeListenerSettings()
            port = int(self.listenerPortSpinBox.value)
            try:
                job = logic.startListener(
                    port=port,
                    aeTitle=str(self.listenerAETitleEdit.text).strip() or DEFAULT_AE_TITLE,
                    autoLoad=bool(self.autoLoadCheckBox.checked),
                )
            except Exception as exc:  # refused (a stop runs) or the network packages are missing
                self.listenerStatusLabel.text = _("Listener could not start: {error}").format(error=exc)
                self._showListenerState()
                if not logic.listenerStopping():  # else the stop's end says listenerChanged
                    self.listenerChanged.emit(False)
                return
            self.listenerStatusLabel.text = _("Listener starting on port {port}...").format(port=port)
            self._track(job, self._onListenerStartEnded)
            self._showListenerState()
        elif not running and (logic.listenerRunning() or logic.listenerStarting()):
            if logic.stopListener() is None:  # else shown by _onListenerStopStarted or the start's end
                self._onListenerStopped(None)
        else:  # as asked already (or on its way: its end says listenerChanged)
            self._showListenerState()
            if not logic.listenerStarting() and not logic.listenerStopping():
                self.listenerChanged.emit(logic.listenerRunning())

    def _onListenerStartEnded(self, job):
        """The start ended: listening, failed (the line says why), or cancelled. A listener
        stopped while it started says so through its stop (the stop's line stands)."""
        if job.error is None:
            if self._logic.listenerRunning():
                self.listenerStatusLabel.text = _("Listening as {aeTitle} on port {port}").format(
                    aeTitle=self.listenerAETitleEdit.text, port=self._logic.listenerPort()
                )
                self._autoLoadTimer.start()
                self._showListenerState()
                self.listenerChanged.emit(True)
            else:
                self._showListenerState()
            return
        if isinstance(job.error, CancelledError):
            self.listenerStatusLabel.text = _("Listener not started: its start was cancelled")
        else:
            self.listenerStatusLabel.text = _("Listener could not start: {error}").format(error=job.error)
        self._showListenerState()
        self.listenerChanged.emit(False)

    def _onListenerStopStarted(self, job):
        """The logic began stopping the listener (this panel's Stop, a switch of database, the
        console): the job in the activity list with its Cancel, the line says it is stopping."""
        # series still arriving are reported complete by the stop: auto-load goes on meanwhile
        self.listenerStatusLabel.text = _(
            "Listener stopping: transfers under way get up to {seconds} s to finish "
            "(Cancel in Activity ends them now)"
        ).format(seconds=f"{self.stopGrace():g}")
        self._track(job, self._onListenerStopped)
        self._showListenerState()

    @staticmethod
    def stopGrace():
        """Seconds the associations under way get when the listener stops (STOP_GRACE)."""
        from DICOMPlusLib.network.listener import STOP_GRACE

        return STOP_GRACE

    def _onListenerStopped(self, job):
        """The stop ended (done, cancelled: aborted at once, or failed with the engine): the
        listener is gone either way."""
        stopTimer(self._autoLoadTimer)
        self._drainAutoLoad()
        if job is not None and isinstance(job.error, CancelledError):  # cut short: stopped all the same
            self.listenerStatusLabel.text = _(
                "Listener stopped (its stop was cancelled: transfers under way were aborted)"
            )
        elif job is not None and job.error is not None:
            self.listenerStatusLabel.text = _("Listener stopped: {error}").format(error=job.error)
        else:
            self.listenerStatusLabel.text = _("Listener stopped")
        self._showListenerState()
        self.listenerChanged.emit(False)

    def _showListenerState(self):
        """The button and the form as the logic's listener is: starting, running, stopping or
        stopped. While it starts or stops the button waits (the job's Cancel is in Activity)."""
        running = self._logic.listenerRunning()
        starting = not running and self._logic.listenerStarting()
        stopping = not running and not starting and self._logic.listenerStopping()
        self.listenerButton.blockSignals(True)
        self.listenerButton.checked = running or starting
        if starting:
            self.listenerButton.text = _("Starting listener...")
        elif stopping:
            self.listenerButton.text = _("Stopping listener...")
        else:
            self.listenerButton.text = _("Stop listener") if running else _("Start listener")
        self.listenerButton.enabled = not starting and not stopping
        self.listenerButton.blockSignals(False)
        for widget in (self.listenerPortSpinBox, self.listenerAETitleEdit, self.autoLoadCheckBox):
            widget.enabled = not running and not starting and not stopping

    def _drainAutoLoad(self):
        queue = getattr(self._logic, "autoLoadQueue", None)
        if queue is None:
            return
        uids = []
        while not queue.empty():
            uids.append(queue.get_nowait())
        if uids:
            self.loadRequested.emit([("series", uid) for uid in uids])

    # -- state ----------------------------------------------------------------------------------
    def _updateButtons(self, *args):
        hasNode = bool(self.currentNode())
        self.echoButton.enabled = hasNode
        self.removeButton.enabled = hasNode
        self.queryButton.enabled = hasNode and not self._querying
        self.retrieveButton.enabled = bool(self._queryNode) and bool(self.resultsTree.selectedItems())
        self.sendButton.enabled = hasNode

    def cleanup(self):
        """Stop the timers and the worker; stops the listener at once (no grace)."""
        if self._queryJob is not None:
            self._queryJob.cancel()
        stopTimer(self._autoLoadTimer)
        self._studiesToAdd = []
        pacedWork().remove(self._addNextStudy)
        if self._ownActivity:
            self.activity.cleanup()
        self._followLogic(self._logic, None)
        try:
            # the panel is going away (module closed, Slicer quitting): no 10 s wait for a sender
            # that may never finish; the engine aborts its associations, the sender sends again
            self._logic.stopListener(atOnce=True)
        except Exception:
            pass
