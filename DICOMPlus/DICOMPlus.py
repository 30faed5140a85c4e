"""DICOMPlus: a complete, fast and dependable DICOM workflow for 3D Slicer.

This file is the Slicer shell only: module description, the panel (Widget) and a thin Logic.
The engine (database, network, loading, export) is the plain-Python package DICOMPlusLib, which
never imports slicer, qt, ctk or vtk. Beside this file, two packages (packages, so that Slicer
does not take them for modules): DICOMPlusWidgets, the browser, preview and activity widgets the
panel is made of and that other modules can embed, and DICOMPlusMRML, volumes to scene nodes and
back. Code here uses PythonQt idioms only (properties as attributes,
``connect("signal(args)", slot)``) so it runs in Slicer and in the test harness
(Testing/slicer_stubs); Testing/test_guards.py checks that.
"""

import os

import qt
import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin

try:
    import DICOMPlusLib
except ModuleNotFoundError as _error:
    # From a clone (Slicer --additional-module-paths <clone>/DICOMPlus) Slicer appends only this
    # folder to sys.path; the library is its sibling <clone>/DICOMPlusLib. Installed, it is here.
    _clone = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if _error.name != "DICOMPlusLib" or not os.path.isdir(os.path.join(_clone, "DICOMPlusLib")):
        raise
    import sys

    sys.path.append(_clone)
    import DICOMPlusLib


def _importPackage(name):
    """Import the package ``name`` that sits beside this file (DICOMPlusWidgets, DICOMPlusMRML).

    Slicer puts the module folder on sys.path, so a plain import works; but if another copy was
    imported before (the module loaded from another folder, e.g. an installed tree next to the
    sources), that copy is dropped so the package always matches this file.
    """
    import importlib.util
    import sys

    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    loaded = sys.modules.get(name)
    if loaded is not None and os.path.dirname(os.path.abspath(loaded.__file__)) == folder:
        return loaded
    for stale in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
        del sys.modules[stale]
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


DICOMPlusWidgets = _importPackage("DICOMPlusWidgets")
DICOMPlusMRML = _importPackage("DICOMPlusMRML")

#
# DICOMPlus
#


class DICOMPlus(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DICOMPlus")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Informatics")]
        self.parent.dependencies = []
        self.parent.contributors = ["DICOMPlus developers"]
        self.parent.helpText = _(
            "Import, browse, query, retrieve, load and export DICOM data. "
            "DICOMPlus keeps its own local database, talks to PACS over DIMSE and DICOMweb, "
            "and reports what it could not load instead of failing silently."
        )
        self.parent.acknowledgementText = _(
            "DICOMPlus builds on pydicom, pynetdicom and SimpleITK, and on the DICOM module "
            "of 3D Slicer, whose behaviour it keeps where users rely on it."
        )


#
# DICOMPlusWidget
#


class DICOMPlusWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel (Resources/UI/DICOMPlus.ui), composed of the embeddable widgets of
    DICOMPlusWidgets: the browser, the preview and the activity list. This class only wires
    them to each other, to the buttons of the .ui and to the Logic."""

    def __init__(self, parent=None):
        # Set attributes before the base constructor: with parent=None it calls setup() itself.
        # VTKObservationMixin.__init__ runs from ScriptedLoadableModuleWidget's super().__init__();
        # calling it again here would forget the observers that setup() added.
        self.logic = None
        self.ui = None
        self.browser = None
        self.preview = None
        self.activity = None
        self.network = None
        self.activeJob = None
        ScriptedLoadableModuleWidget.__init__(self, parent)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DICOMPlus.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = DICOMPlusLogic()
        self.activeJob = None

        self.browser = DICOMPlusWidgets.DICOMPlusBrowserWidget(self.logic, self.ui.browserFrame)
        self.ui.browserFrameLayout.addWidget(self.browser)
        self.preview = DICOMPlusWidgets.DICOMPlusPreviewWidget(self.logic, self.ui.previewFrame)
        self.ui.previewFrameLayout.addWidget(self.preview)
        self.activity = DICOMPlusWidgets.DICOMPlusActivityWidget(self.ui.activityFrame)
        self.ui.activityFrameLayout.addWidget(self.activity)
        self.network = DICOMPlusWidgets.DICOMPlusNetworkWidget(
            self.logic, self.ui.networkFrame, activity=self.activity
        )
        self.ui.networkFrameLayout.addWidget(self.network)
        self.network.setLocalSelectionProvider(self.selectedEntries)
        self.network.retrieveFinished.connect(self.onRetrieveFinished)
        self.network.loadRequested.connect(self.loadEntries)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.browser.selectionChanged.connect(self.updateButtonStates)
        self.browser.seriesSelected.connect(self.onSeriesSelected)
        self.browser.loadRequested.connect(self.loadEntries)
        self.preview.loadRequested.connect(self.loadEntries)
        self.ui.previewCollapsibleButton.connect("contentsCollapsed(bool)", self.onPreviewCollapsed)
        self.ui.importButton.connect("clicked(bool)", self.onImportButton)
        self.ui.loadButton.connect("clicked(bool)", self.onLoadButton)
        self.ui.deleteButton.connect("clicked(bool)", self.onDeleteButton)
        self.ui.exportVolumeSelector.setMRMLScene(slicer.mrmlScene)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.saveBundleButton.connect("clicked(bool)", self.onSaveBundleButton)

        self.activity.setStatus(
            _("Idle (DICOMPlusLib {version})").format(version=self.logic.libraryVersion())
        )
        self.refreshBrowser()
        self.updateButtonStates()

    def cleanup(self):
        """Called when the module is unloaded or the application exits."""
        self.removeObservers()
        for widget in (self.browser, self.preview, self.network, self.activity):
            if widget is not None:
                widget.cleanup()
        if self.logic is not None:
            for job in self.logic.jobs:
                job.cancel()
            for job in self.logic.jobs:
                job.wait(5)
            self.logic.closeDatabase()

    def setLogic(self, logic):
        """Use another DICOMPlusLogic (e.g. on another database); the current one is closed."""
        previous, self.logic = self.logic, logic
        self.browser.setDatabase(logic)
        self.preview.setDatabase(logic)
        self.network.setLogic(logic)
        if previous is not None and previous is not logic:
            previous.closeDatabase()
        self.updateButtonStates()

    def onRetrieveFinished(self, studyUID):
        """A retrieve from the network panel ended: show what arrived in the local browser."""
        self.refreshBrowser()

    def onSceneEndClose(self, caller, event):
        self.updateButtonStates()

    # -- browser and preview ------------------------------------------------------------------
    def refreshBrowser(self):
        """Re-read the local database into the browser."""
        self.browser.refresh()

    def selectedEntries(self):
        """[(level, key)] of the selected browser rows, e.g. [("series", "1.2.3")]."""
        return self.browser.selectedEntries()

    def onSeriesSelected(self, seriesUID):
        if not self.ui.previewCollapsibleButton.collapsed:
            self.preview.setSeries(seriesUID)

    def onPreviewCollapsed(self, collapsed):
        if collapsed:
            self.preview.pause()
            return
        entries = self.selectedEntries()
        if len(entries) == 1 and entries[0][0] == "series":
            self.preview.setSeries(entries[0][1])

    def updateButtonStates(self, *args):
        hasSelection = bool(self.selectedEntries())
        busy = self.activeJob is not None
        self.ui.loadButton.enabled = hasSelection and not busy
        self.ui.deleteButton.enabled = hasSelection and not busy
        self.ui.importButton.enabled = not busy
        hasStudy = self.selectedStudyUID() is not None
        self.ui.exportButton.enabled = hasStudy and not busy
        self.ui.saveBundleButton.enabled = hasStudy and not busy

    # -- import -------------------------------------------------------------------------------
    def onImportButton(self, *args):
        folder = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(),
            _("Import DICOM folder"),
            qt.QSettings().value("DICOMPlus/LastImportFolder", ""),
        )
        if folder:
            qt.QSettings().setValue("DICOMPlus/LastImportFolder", folder)
            self.importPaths([folder])

    def importPaths(self, paths, link=False):
        """Start importing ``paths`` in the background; progress shows in the Activity panel."""
        return self.runJob(self.logic.importFolder(paths, link=link, wait=False), self.onImportDone)

    def runJob(self, job, onDone):
        """Show ``job`` (already started) in the Activity panel; ``onDone(job)`` runs on the main
        thread when it succeeds (a failure or a cancel is reported in the panel instead)."""
        self.activeJob = job
        self.activity.addJob(job, lambda ended: self._onJobEnded(ended, onDone))
        self.activity.setStatus(job.name + "...")
        self.updateButtonStates()
        return job

    def _onJobEnded(self, job, onDone):
        if job is self.activeJob:
            self.activeJob = None
        if job.error is not None and not isinstance(job.error, DICOMPlusLib.CancelledError):
            self.activity.setStatus(_("{name} failed: {error}").format(name=job.name, error=job.error))
            self.showMessages([str(job.error)])
        elif job.error is not None:
            self.activity.setStatus(_("{name}: cancelled").format(name=job.name))
        elif onDone is not None:
            onDone(job)
        self.updateButtonStates()

    def onImportDone(self, job):
        report = job.result
        message = _("Imported {added} instance(s); {skipped} skipped, {unchanged} unchanged").format(
            added=report.added, skipped=len(report.skipped), unchanged=report.unchanged
        )
        if report.cancelled:
            message = _("Cancelled. ") + message
        self.activity.setStatus(message)
        self.showMessages([f"{s.path}: {s.reason}" for s in report.skipped[:50]])
        self.refreshBrowser()

    def showMessages(self, lines):
        self.ui.messagesText.setPlainText("\n".join(lines))

    # -- load ---------------------------------------------------------------------------------
    def onLoadButton(self, *args):
        self.loadEntries(self.selectedEntries())

    def loadEntries(self, entries):
        """Load [(level, key)] in the background: voxels are read in a worker thread, nodes are
        created here on the main thread when it is done."""
        seriesUIDs = []
        for level, key in entries:
            if level == "series":
                seriesUIDs.append(key)
            elif level == "study":
                seriesUIDs += [
                    s.SeriesInstanceUID for s in self.logic.search("series", {"StudyInstanceUID": key})
                ]
            elif level == "patient":
                for study in self.logic.search("study", {"PatientID": key}):
                    seriesUIDs += [
                        s.SeriesInstanceUID
                        for s in self.logic.search("series", {"StudyInstanceUID": study.StudyInstanceUID})
                    ]
        bundles = [uid for uid in seriesUIDs if self.logic.isDataBundleSeries(uid)]
        for uid in bundles:  # a Data Bundle is a scene: it is added to the scene, not read as voxels
            self.logic.loadDataBundle(self.logic.database.instances(uid)[0].SOPInstanceUID, replace=False)
        seriesUIDs = [uid for uid in seriesUIDs if uid not in bundles]
        if bundles:
            self.activity.setStatus(_("Loaded {count} Data Bundle(s)").format(count=len(bundles)))
        if not seriesUIDs:
            return None
        job = self.logic.readSeries(seriesUIDs, wait=False)
        return self.runJob(job, self.onLoadDone)

    def onLoadDone(self, job):
        nodes, warnings = self.logic.addLoadedSeries(job.result)
        self.activity.setStatus(_("Loaded {count} volume(s)").format(count=len(nodes)))
        self.showMessages([f"{name}: {getattr(w, 'message', w)}" for name, w in warnings])
        if nodes and nodes[0].IsA("vtkMRMLScalarVolumeNode") and slicer.app.layoutManager() is not None:
            slicer.util.setSliceViewerLayers(background=nodes[0], fit=True)

    # -- export and Data Bundle ------------------------------------------------------------------
    def selectedStudyUID(self):
        """The study of the browser selection (a study, or the study of a series), else None."""
        for level, key in self.selectedEntries():
            if level == "study":
                return key
            if level == "series":
                found = self.logic.search("series", {"SeriesInstanceUID": key})
                if found:
                    return found[0].StudyInstanceUID
        return None

    def onExportButton(self, *args):
        """Export the chosen volume as a new series of the selected study (the browser refreshes)."""
        node = self.ui.exportVolumeSelector.currentNode()
        studyUID = self.selectedStudyUID()
        if node is None or studyUID is None:
            self.showMessages(
                [_("Choose a volume, and select a study (or one of its series) in the browser.")]
            )
            return None
        try:
            result = self.logic.exportVolume(node, studyUID, modality=self.ui.exportModalityCombo.currentText)
        except DICOMPlusLib.DICOMPlusError as error:
            self.showMessages([str(error)])
            return None
        self.activity.setStatus(
            _("Exported {name} as {count} file(s) into the study").format(
                name=node.GetName(), count=len(result.files)
            )
        )
        self.refreshBrowser()
        return result

    def onSaveBundleButton(self, *args):
        """Save the scene as a Data Bundle into the selected study."""
        studyUID = self.selectedStudyUID()
        if studyUID is None:
            self.showMessages([_("Select a study (or one of its series) in the browser first.")])
            return None
        try:
            info = self.logic.saveDataBundle(studyUID)
        except DICOMPlusLib.DICOMPlusError as error:
            self.showMessages([str(error)])
            return None
        self.activity.setStatus(_("Saved the scene as a Data Bundle into the study"))
        self.refreshBrowser()
        return info

    # -- delete -------------------------------------------------------------------------------
    def onDeleteButton(self, *args):
        entries = self.selectedEntries()
        if not entries:
            return
        if not slicer.util.confirmYesNoDisplay(
            _(
                "Delete {count} selected item(s) from the DICOMPlus database, with the files it copied?"
            ).format(count=len(entries))
        ):
            return
        self.deleteEntries(entries)

    def deleteEntries(self, entries):
        """Delete [(level, key)] entries (as from selectedEntries) and refresh the browser."""
        for level, key in entries:
            self.logic.delete(**{level: key})
        self.preview.clear()
        self.refreshBrowser()
        self.updateButtonStates()


#
# DICOMPlusLogic
#


class DICOMPlusLogic(ScriptedLoadableModuleLogic):
    """Slicer-side logic: the bridge from DICOMPlusLib to MRML, usable without the widget.

    Everything that does not need the scene belongs in DICOMPlusLib, not here. Every method
    works from the Python console::

        logic = slicer.util.getModuleLogic("DICOMPlus")   # or DICOMPlusLogic()
        logic.importFolder(["/data/dicom"])                 # blocks; wait=False returns a Job
        studies = logic.search("study", {"PatientName": "DOE*"})
        logic.addNode("pacs", "ORTHANC", "127.0.0.1", 4242)   # server nodes (nodes.json)
        logic.echo("pacs").ok
        found = logic.query("pacs", "study", {"PatientID": "123"})
        logic.retrieve("pacs", studyUID=found[0].StudyInstanceUID)   # into the local database
        logic.send("pacs", series="1.2.3")
        logic.startListener(port=11112, aeTitle="DICOMPLUS")

    Long work runs in a DICOMPlusLib Job (a worker thread) when ``wait=False``; the widget polls
    the jobs from a QTimer on the main thread. Workers never touch MRML or Qt.
    """

    def __init__(self, databasePath=None, nodesPath=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self._databasePath = databasePath
        self._nodesPath = nodesPath
        self._networkReady = False
        self._listener = None
        self._listenerSubscription = None
        self.aeTitle = "DICOMPLUS"  # our calling AE title (and the listener's by default)
        self.autoLoad = False
        self.completedSeries = []  # SeriesComplete events the listener reported (any thread)
        self.autoLoadQueue = None  # queue.Queue of series UIDs to load, drained by the widget
        self._database = None
        self.jobs = []
        self.lastWarnings = []
        # Emitted (main thread) before the database closes: the widgets' workers stop using it.
        self.databaseAboutToClose = DICOMPlusWidgets.Signal(name="databaseAboutToClose")

    def libraryVersion(self):
        """Version of the DICOMPlusLib engine in use."""
        return DICOMPlusLib.__version__

    # -- database ---------------------------------------------------------------------------
    def databasePath(self):
        """The database file: the path given, else the ``DICOMPlus/DatabasePath`` setting, else
        DICOMPlusLib's default (``$DICOMPLUS_DB`` or ~/.local/share/dicomplus)."""
        if self._databasePath:
            return str(self._databasePath)
        configured = qt.QSettings().value("DICOMPlus/DatabasePath", "")
        if configured:
            return str(configured)
        if slicer.app.testingEnabled():
            # tests never touch the user's database
            return os.path.join(slicer.app.temporaryPath, "DICOMPlusTestDatabase", "dicomplus.sqlite")
        from DICOMPlusLib.database import default_database_path

        return str(default_database_path())

    def setDatabasePath(self, path):
        """Use another database (closes the current one); remembered in the settings."""
        self.closeDatabase()
        self._databasePath = str(path)
        qt.QSettings().setValue("DICOMPlus/DatabasePath", str(path))

    @property
    def database(self):
        """The open DICOMPlusLib Database (opened on first use)."""
        if self._database is None:
            from DICOMPlusLib.database import Database

            self._database = Database(self.databasePath())
        return self._database

    def closeDatabase(self):
        """Close the database (the next use opens it again); ``databaseAboutToClose`` is emitted
        first so that background readers (thumbnails, previews) stop using it."""
        self.stopListener()  # it stores into the database
        if self._database is not None:
            self.databaseAboutToClose.emit()
            self._database.close()
            self._database = None

    def startJob(self, name, func):
        """Run ``func(progress, cancelToken)`` in a worker thread; the Job is kept in ``jobs``."""
        from DICOMPlusLib.jobs import Job

        job = Job(name, func)
        self.jobs.append(job)
        return job.start()

    def importFolder(self, paths, link=False, wait=True):
        """Import files or folders. Returns the ImportReport, or a running Job when not ``wait``.

        Parsing runs in threads, not processes: forking Slicer is not safe.
        """
        if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__"):
            paths = [paths]
        paths = [str(p) for p in paths]
        database = self.database

        def work(progress, cancel):
            return database.import_paths(paths, link=link, processes=False, progress=progress, cancel=cancel)

        if wait:
            from DICOMPlusLib.jobs import CancelToken

            return work(None, CancelToken())
        return self.startJob(_("Import {count} item(s)").format(count=len(paths)), work)

    def search(self, level="study", criteria=None, text=None, limit=None):
        """Search the local database with DICOM matching; returns frozen records."""
        return self.database.search(level, criteria or {}, text=text, limit=limit)

    def delete(self, patient=None, study=None, series=None, files=True):
        """Delete a patient (PatientID), study or series, and the files DICOMPlus copied."""
        return self.database.delete(patient=patient, study=study, series=series, files=files)

    # -- loading ------------------------------------------------------------------------------
    def loadSeries(self, seriesUID, resample=False):
        """Load one series into the scene; returns the new volume (or sequence) nodes.

        Geometry comes from the library in LPS and is converted to RAS here, once. The load
        warnings are kept on each node (attribute ``DICOMPlus.Warnings``) and in
        ``self.lastWarnings`` as (node name, LoadWarning).
        """
        loaded = self.readSeries([seriesUID], resample=resample)
        if isinstance(loaded[0][1], Exception):
            raise loaded[0][1]
        nodes, self.lastWarnings = self.addLoadedSeries(loaded)
        return nodes

    def readSeries(self, seriesUIDs, resample=False, wait=True):
        """Read the volumes of series (no MRML: safe in a worker thread).

        Returns [(seriesUID, volumes or LoadError)], or a running Job when not ``wait``.
        """
        from DICOMPlusLib.loading import load_series

        database = self.database

        def work(progress, cancel):
            out = []
            for done, uid in enumerate(seriesUIDs):
                cancel.raise_if_cancelled()
                progress(done, len(seriesUIDs), uid)
                try:
                    out.append((uid, load_series(database, uid, resample=resample, cancel=cancel)))
                except DICOMPlusLib.LoadError as error:
                    out.append((uid, error))
            progress(len(seriesUIDs), len(seriesUIDs), "")
            return out

        if wait:
            from DICOMPlusLib.jobs import CancelToken

            return work(lambda *a: None, CancelToken())
        return self.startJob(_("Load {count} series").format(count=len(seriesUIDs)), work)

    def addLoadedSeries(self, loaded):
        """Create nodes for what :meth:`readSeries` returned (main thread).

        Returns (nodes, [(name, LoadWarning or LoadError)]). A series that failed to load is
        reported, not raised, so the rest still loads.
        """
        nodes, warnings = [], []
        for seriesUID, volumes in loaded:
            [series] = self.search("series", {"SeriesInstanceUID": seriesUID}) or [None]
            [study] = (
                self.search("study", {"StudyInstanceUID": series.StudyInstanceUID}) if series else [None]
            )
            if isinstance(volumes, Exception):
                warnings.append((series.SeriesDescription if series else seriesUID, volumes))
                continue
            for index, volume in enumerate(volumes):
                name = DICOMPlusMRML.volumeName(series, volume, index, len(volumes))
                node = DICOMPlusMRML.addVolumeNode(volume, name)
                DICOMPlusMRML.placeInSubjectHierarchy(node, volume, study, series)
                warnings += [(name, warning) for warning in volume.warnings]
                nodes.append(node)
        return nodes, warnings

    def loadStudy(self, studyUID, resample=False):
        """Load every series of a study (non-image series are skipped with a warning)."""
        nodes = []
        warnings = []
        for series in self.search("series", {"StudyInstanceUID": studyUID}):
            try:
                nodes += self.loadSeries(series.SeriesInstanceUID, resample=resample)
                warnings += self.lastWarnings
            except DICOMPlusLib.LoadError as error:
                warnings.append((series.SeriesDescription or series.SeriesInstanceUID, error))
        self.lastWarnings = warnings
        return nodes

    def loadPatient(self, patientID, resample=False):
        """Load every study of a patient (by PatientID)."""
        nodes = []
        warnings = []
        for study in self.search("study", {"PatientID": patientID}):
            nodes += self.loadStudy(study.StudyInstanceUID, resample=resample)
            warnings += self.lastWarnings
        self.lastWarnings = warnings
        return nodes

    # -- network ------------------------------------------------------------------------------
    def requirementsPath(self):
        """Resources/requirements.txt of the module, or of the source tree's top level."""
        here = os.path.dirname(os.path.abspath(__file__))
        for candidate in (
            os.path.join(here, "Resources", "requirements.txt"),
            os.path.join(os.path.dirname(here), "Resources", "requirements.txt"),
        ):
            if os.path.isfile(candidate):
                return candidate
        return None

    def ensureNetworkDependencies(self):
        """Install what the network needs (pynetdicom, ...) on first use, with Slicer's
        ``slicer.packaging.pip_ensure`` (it asks the user before installing)."""
        if self._networkReady:
            return
        path = self.requirementsPath()
        if path is not None:
            import slicer.packaging

            slicer.packaging.pip_ensure(slicer.packaging.load_requirements(path), requester="DICOMPlus")
        self._networkReady = True

    def nodesPath(self):
        """The server node list file: the path given, else DICOMPlusLib's default
        (``$DICOMPLUS_NODES`` or ~/.config/dicomplus/nodes.json)."""
        if self._nodesPath:
            return str(self._nodesPath)
        from DICOMPlusLib.network.nodes import default_nodes_path

        return str(default_nodes_path())

    def nodeStore(self):
        from DICOMPlusLib.network.nodes import NodeStore

        return NodeStore(self.nodesPath())

    def nodes(self):
        """The configured server nodes (RemoteNode), as the ``dicomplus nodes`` CLI sees them."""
        return self.nodeStore().list()

    def node(self, nodeName):
        """A configured node by name, or ``AE@HOST:PORT``."""
        return self.nodeStore().resolve(nodeName)

    def addNode(self, name, aeTitle, host, port, retrieveMethod="C-GET", dicomwebURL="", replace=True):
        """Add (or with ``replace`` update) a server node; returns the RemoteNode."""
        from DICOMPlusLib.network.nodes import RemoteNode

        node = RemoteNode(
            name=str(name),
            ae_title=str(aeTitle),
            host=str(host),
            port=int(port),
            retrieve_method=retrieveMethod,
            dicomweb_url=dicomwebURL or "",
        )
        return self.nodeStore().add(node, replace_existing=replace)

    def removeNode(self, name):
        """Forget a server node; returns it."""
        return self.nodeStore().remove(name)

    def echo(self, nodeName, timeout=10.0):
        """C-ECHO a node (PS3.7 9.1.5); returns an EchoResult (``ok``, ``message``), never raises
        for a network problem."""
        self.ensureNetworkDependencies()
        from DICOMPlusLib.network.echo import echo

        return echo(self.node(nodeName), calling_ae_title=self.aeTitle, timeout=timeout)

    def query(self, nodeName, level="study", criteria=None, limit=None, cancel=None):
        """C-FIND (or QIDO-RS) on a node: a list of Study/Series/... records. Raises QueryError
        with what to check when it fails."""
        self.ensureNetworkDependencies()
        from DICOMPlusLib.network.query import query

        return list(
            query(
                self.node(nodeName),
                level,
                criteria or {},
                calling_ae_title=self.aeTitle,
                limit=limit,
                cancel=cancel,
            )
        )

    def retrieve(self, nodeName, studyUID=None, seriesUIDs=(), method=None, wait=True):
        """Retrieve a study or series into the local database (C-GET, C-MOVE to our listener, or
        DICOMweb; None: the node's preferred). Returns the RetrieveReport, or a running Job."""
        self.ensureNetworkDependencies()
        from DICOMPlusLib.jobs import CancelToken
        from DICOMPlusLib.network.retrieve import retrieve

        node = self.node(nodeName)
        database = self.database
        seriesUIDs = [seriesUIDs] if isinstance(seriesUIDs, str) else list(seriesUIDs)
        listener = self._listener if self.listenerRunning() else None

        def work(progress, cancel):
            return retrieve(node, database, study_uid=studyUID, series_uids=seriesUIDs, method=method,
                            listener=listener, calling_ae_title=self.aeTitle, progress=progress,
                            cancel=cancel)  # fmt: skip

        if wait:
            return work(None, CancelToken())
        what = _("{count} series").format(count=len(seriesUIDs)) if seriesUIDs else _("a study")
        return self.startJob(_("Retrieve {what} from {node}").format(what=what, node=node.name), work)

    def send(self, nodeName, study=None, series=None, wait=True):
        """C-STORE a local study or series (a UID, or a list of series UIDs) to a node. Returns the
        SendReport (``sent``, ``failed``), or a running Job."""
        self.ensureNetworkDependencies()
        from DICOMPlusLib.jobs import CancelToken
        from DICOMPlusLib.network.send import SendReport, send_from_database

        node = self.node(nodeName)
        database = self.database
        seriesList = [series] if isinstance(series, str) or series is None else list(series)

        def work(progress, cancel):
            report = None
            for uid in seriesList:
                part = send_from_database(database, node, study=study if uid is None else None, series=uid,
                                          calling_ae_title=self.aeTitle, progress=progress, cancel=cancel)  # fmt: skip
                if report is None:
                    report = part
                else:
                    report.results += part.results
            return report or SendReport(node=node.name)

        if wait:
            return work(None, CancelToken())
        return self.startJob(_("Send to {node}").format(node=node.name), work)

    def startListener(self, port=11112, aeTitle="DICOMPLUS", autoLoad=False, host=""):
        """Start the C-STORE listener into the local database. With ``autoLoad``, each completed
        series is put in ``autoLoadQueue`` for the widget to load (main thread); every completed
        series is recorded in ``completedSeries``. Returns the bound port."""
        import queue

        self.ensureNetworkDependencies()
        from DICOMPlusLib.network.listener import Listener, ListenerConfig

        self.stopListener()
        self.autoLoad = bool(autoLoad)
        if self.autoLoadQueue is None:
            self.autoLoadQueue = queue.Queue()
        listener = Listener(self.database, ListenerConfig(ae_title=aeTitle, port=int(port), host=host))
        self._listenerSubscription = listener.subscribe(on_series_complete=self._onSeriesComplete)
        listener.start()
        self._listener = listener
        return listener.port

    def _onSeriesComplete(self, event):
        # notifier thread: record only (no Qt, no MRML)
        self.completedSeries.append(event)
        if self.autoLoad and self.autoLoadQueue is not None:
            self.autoLoadQueue.put(event.series_instance_uid)

    def stopListener(self):
        """Stop the listener (running associations finish first)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()

    def listenerRunning(self):
        return self._listener is not None and self._listener.running

    def listenerPort(self):
        return self._listener.port if self.listenerRunning() else 0

    # -- export and Data Bundle ----------------------------------------------------------------
    @staticmethod
    def volumeGeometry(volumeNode):
        """(array [k, j, i], IJK->LPS 4x4) of a scalar volume node: RAS to LPS, here, once."""
        return DICOMPlusMRML.volumeGeometry(volumeNode)

    def exportVolume(self, volumeNode, studyUID, modality=None, seriesDescription=None, outputFolder=None):
        """Write a scalar volume node as a new DICOM series in the local study ``studyUID`` (its
        stored header supplies the patient and study), index it, and return the ExportResult."""
        from DICOMPlusLib.export import SeriesMetadata, export_volume_to_study

        array, ijkToLPS = self.volumeGeometry(volumeNode)
        metadata = SeriesMetadata(
            modality=modality,
            series_description=seriesDescription or volumeNode.GetName() or "DICOMPlus export",
        )
        return export_volume_to_study(
            self.database, studyUID, array, ijkToLPS, metadata, out_dir=outputFolder
        )

    def exportSegmentation(self, segmentationNode, referenceVolumeNode, seriesDescription=None):
        """Write a segmentation as DICOM SEG referencing the series ``referenceVolumeNode`` was
        loaded from (labels, colours), index it, and return the SegExportResult."""
        from DICOMPlusLib.export import export_segmentation_for_series

        sourceUID = referenceVolumeNode.GetAttribute("DICOMPlus.SeriesInstanceUID")
        if not sourceUID:
            raise DICOMPlusLib.ExportError(
                _("{name} was not loaded from the DICOMPlus database: a SEG needs its source series").format(
                    name=referenceVolumeNode.GetName()
                )
            )
        labelmap, ijkToLPS, segments = DICOMPlusMRML.segmentationLabelmap(
            segmentationNode, referenceVolumeNode
        )
        return export_segmentation_for_series(
            self.database,
            sourceUID,
            labelmap,
            ijkToLPS,
            segments,
            series_description=seriesDescription or segmentationNode.GetName() or "Segmentation",
        )

    def saveDataBundle(self, studyUID, description="Slicer Data Bundle"):
        """Save the whole scene (as an MRB, by the scene's own writer) into a Data Bundle in the
        local study ``studyUID``; returns the BundleInfo of the indexed bundle."""
        import tempfile

        from DICOMPlusLib.bundle import save_bundle_to_study

        folder = tempfile.mkdtemp(prefix="DICOMPlusBundle-", dir=slicer.app.temporaryPath)
        mrb = os.path.join(folder, "scene.mrb")
        try:
            if not slicer.mrmlScene.WriteToMRB(mrb):
                raise DICOMPlusLib.BundleError(
                    _("the scene could not be written as an MRB ({path})").format(path=mrb)
                )
            return save_bundle_to_study(self.database, studyUID, mrb, series_description=description)
        finally:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)

    def isDataBundleSeries(self, seriesUID):
        """True when the series holds a Slicer Data Bundle (ours or stock Slicer's)."""
        from DICOMPlusLib.bundle import is_bundle

        instances = self.database.instances(seriesUID)
        return len(instances) == 1 and is_bundle(instances[0].path)

    def loadDataBundle(self, bundle, replace=False):
        """Load a Data Bundle (a file path, or the SOPInstanceUID of a stored one) into the scene:
        added to it, or replacing it with ``replace``. Returns True on success."""
        import tempfile

        from DICOMPlusLib.bundle import extract_bundle

        path = str(bundle)
        if not os.path.exists(path):
            path = self.database.instance(path).path
        folder = tempfile.mkdtemp(prefix="DICOMPlusBundle-", dir=slicer.app.temporaryPath)
        mrb = os.path.join(folder, "scene.mrb")
        try:
            extract_bundle(path, mrb)
            if not slicer.mrmlScene.ReadFromMRB(mrb, replace):
                raise DICOMPlusLib.BundleError(_("the scene in {path} could not be read").format(path=path))
            return True
        finally:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)


#
# DICOMPlusTest
#


class DICOMPlusTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Reload and Test, or ctest) and under pytest (Testing/test_module_generic.py)."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_Logic()
        self.setUp()
        self.test_Widget()
        self.setUp()
        self.test_Network()

    def test_Logic(self):
        self.delayDisplay("Logic")
        logic = DICOMPlusLogic()
        self.assertEqual(logic.libraryVersion(), DICOMPlusLib.__version__)
        parameterNode = logic.getParameterNode()
        self.assertEqual(parameterNode.GetAttribute("ModuleName"), "DICOMPlus")
        self.assertIs(logic.getParameterNode(), parameterNode)
        self.assertTrue(issubclass(DICOMPlusLib.DICOMPlusError, Exception))
        self.delayDisplay("Logic test passed")

    def test_Widget(self):
        """The panel end to end: import a small series, browse, search, preview, load."""
        import shutil
        import tempfile

        self.delayDisplay("Widget")
        folder = tempfile.mkdtemp(prefix="DICOMPlusSelfTest-", dir=slicer.app.temporaryPath)
        widget = None
        try:
            seriesUID, values = self._writeSeries(os.path.join(folder, "series"), count=4)
            logic = DICOMPlusLogic(databasePath=os.path.join(folder, "db", "dicomplus.sqlite"))
            logic.importFolder([os.path.join(folder, "series")])
            widget = DICOMPlusWidget()
            widget.setLogic(logic)
            self.assertIn(DICOMPlusLib.__version__, widget.activity.status())
            self.assertEqual(widget.browser.entries("series"), [("series", seriesUID)])
            self.assertFalse(widget.ui.loadButton.enabled)
            shown = []
            widget.preview.seriesShown.connect(shown.append)
            self.assertTrue(widget.browser.selectSeries(seriesUID))
            self.assertTrue(widget.ui.loadButton.enabled and widget.ui.deleteButton.enabled)
            self._waitFor(widget.preview.isSliceReady, "the first slice of the preview")
            self.assertEqual((shown, widget.preview.sliceCount()), ([seriesUID], 4))
            for k in range(4):  # geometric order, although the files were written top slice first
                widget.preview.setCurrentSlice(k)
                self._waitFor(widget.preview.isSliceReady, f"slice {k} of the preview")
                self.assertAlmostEqual(widget.preview.currentFrame().position[2], 2.5 * k, places=3)
                self.assertEqual(int(widget.preview.currentSliceArray()[0, 0]), values[k])
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"), 0)
            widget.browser.setSearchText("no such patient")
            self.assertEqual(widget.browser.entries("series"), [])
            widget.browser.setSearchText("selftest")
            self.assertEqual(widget.browser.entries("series"), [("series", seriesUID)])
            widget.loadEntries([("series", seriesUID)])
            self._waitFor(lambda: widget.activeJob is None, "loading the series")
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"), 1)
        finally:
            if widget is not None:
                widget.cleanup()
                widget.parent.deleteLater()
            shutil.rmtree(folder, ignore_errors=True)
        self.delayDisplay("Widget test passed")

    def test_Network(self):
        """The network panel against a sample PACS started here (127.0.0.1 only): add a node,
        echo, query, expand a study, retrieve one series, load it."""
        import shutil
        import tempfile

        self.delayDisplay("Network")
        folder = tempfile.mkdtemp(prefix="DICOMPlusSelfTest-", dir=slicer.app.temporaryPath)
        widget = pacs = pacsDatabase = None
        try:
            logic = DICOMPlusLogic(
                databasePath=os.path.join(folder, "db", "dicomplus.sqlite"),
                nodesPath=os.path.join(folder, "nodes.json"),
            )
            logic.ensureNetworkDependencies()
            from DICOMPlusLib.database import Database
            from DICOMPlusLib.network.qrscp import QRConfig, QueryRetrieveSCP
            from DICOMPlusLib.network.sample import make_sample_data

            pacsDatabase = Database(os.path.join(folder, "pacs", "pacs.sqlite"))
            make_sample_data(pacsDatabase)
            pacs = QueryRetrieveSCP(pacsDatabase, QRConfig(ae_title="SELFTESTPACS", port=0, host="127.0.0.1"))
            pacs.start()
            widget = DICOMPlusWidget()
            widget.setLogic(logic)
            network = widget.network
            network.addNode("Self-test PACS", "SELFTESTPACS", "127.0.0.1", pacs.port)
            echoes = []
            network.echoFinished.connect(lambda ok, message: echoes.append(ok))
            network.onEcho()
            self._waitFor(lambda: echoes, "the echo")
            self.assertEqual(echoes, [True], network.echoText())
            counts = []
            network.queryFinished.connect(counts.append)
            network.patientIDEdit.text = "DPLUS-002"
            network.onQuery()
            self._waitFor(lambda: counts, "the query")
            self.assertEqual(counts, [1], network.statusText())
            [(_, studyUID)] = network.results("study")
            [series] = pacsDatabase.search("series", {"StudyInstanceUID": studyUID})
            network.expandStudy(studyUID)
            self._waitFor(lambda: network.results("series"), "the series of the study")
            self.assertTrue(network.selectResult("series", series.SeriesInstanceUID))
            network.retrieveSelected()
            self._waitFor(lambda: not network.runningJobs(), "the retrieve")
            self.assertEqual(widget.browser.entries("series"), [("series", series.SeriesInstanceUID)])
            widget.loadEntries([("series", series.SeriesInstanceUID)])
            self._waitFor(lambda: widget.activeJob is None, "loading the series")
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"), 1)
        finally:
            if widget is not None:
                widget.cleanup()
                widget.parent.deleteLater()
            if pacs is not None:
                pacs.stop()
            if pacsDatabase is not None:
                pacsDatabase.close()
            shutil.rmtree(folder, ignore_errors=True)
        self.delayDisplay("Network test passed")

    def _waitFor(self, condition, what, timeout=30.0):
        """Let the event loop run (timers, workers' results) until ``condition()`` (tests only)."""
        import time

        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting for {what}")
            slicer.app.processEvents()
            time.sleep(0.01)

    @staticmethod
    def _writeSeries(folder, count):
        """``count`` 16 x 16 CT slices written with pydicom (Slicer bundles it), the top slice first;
        returns (SeriesInstanceUID, value of each slice in geometric order)."""
        import numpy as np
        import pydicom
        from pydicom.dataset import FileDataset, FileMetaDataset
        from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

        os.makedirs(folder, exist_ok=True)
        studyUID, seriesUID, frameUID = generate_uid(), generate_uid(), generate_uid()
        legacy = int(pydicom.__version__.split(".")[0]) < 3
        for written in range(count):
            k = count - 1 - written
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
            if legacy:
                ds.is_little_endian, ds.is_implicit_VR = True, False
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
            ds.PatientName, ds.PatientID = "DICOMPlus^SelfTest", "DICOMPLUS-SELFTEST"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = studyUID, seriesUID, frameUID
            ds.StudyDescription, ds.SeriesDescription = "DICOMPlus self test", "Axial"
            ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, written + 1
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
            ds.PixelSpacing, ds.SliceThickness = [0.5, 0.5], 2.5
            ds.Rows = ds.Columns = 16
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleIntercept, ds.RescaleSlope = 0, 1
            ds.PixelData = np.full((16, 16), 100 * k, np.int16).tobytes()
            pydicom.dcmwrite(os.path.join(folder, f"slice{written:03d}.dcm"), ds)
        return seriesUID, [100 * k for k in range(count)]
