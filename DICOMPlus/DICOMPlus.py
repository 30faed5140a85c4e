"""DICOMPlus: a complete, fast and dependable DICOM workflow for 3D Slicer (5.12 or later).

This file is the Slicer shell only: the module description, the panel's wiring (Widget), a Logic
limited to MRML, settings and the hand-off to the engine, and the module test. The work is done by
DICOMPlusLib (plain Python, never imports slicer, qt, ctk or vtk): reads of the database here,
everything long (import, retrieve, send, the listener, pixel decoding) in the DICOMPlus engine, a
child process (DICOMPlusWidgets.engine), because Python threads starve in Slicer's process.
Beside this file: DICOMPlusWidgets (the panel's widgets, embeddable elsewhere) and DICOMPlusMRML
(volumes to scene nodes and back). PythonQt idioms only, so it runs in Slicer and in the test
harness (Testing/slicer_stubs).
"""

import os
import sys

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
    """Import the package ``name`` beside this file, dropping a copy imported from elsewhere
    (e.g. an installed tree next to the sources), so the package always matches this file."""
    import importlib.util

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
            "and reports what it could not load instead of failing silently. Needs Slicer 5.12 or later."
        )
        self.parent.acknowledgementText = _(
            "DICOMPlus builds on pydicom, pynetdicom and SimpleITK, and on the DICOM module "
            "of 3D Slicer, whose behaviour it keeps where users rely on it."
        )


class DICOMPlusWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel (Resources/UI/DICOMPlus.ui) made of DICOMPlusWidgets' browser, preview,
    network and activity widgets; this class wires them to the .ui buttons and the Logic."""

    def __init__(self, parent=None):
        # Set before the base constructor: with parent=None it calls setup() itself.
        self.logic = self.ui = self.browser = self.preview = self.activity = self.network = None
        self.activeJob = None
        self._resampleEntries = []  # what "Load resampled" loads: the last load that offered it
        ScriptedLoadableModuleWidget.__init__(self, parent)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        if not DICOMPlusWidgets.compat.checkSlicerVersion():  # one clear message on Slicer < 5.12
            self.layout.addWidget(qt.QLabel(DICOMPlusWidgets.compat.unsupportedSlicerMessage()))
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DICOMPlus.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DICOMPlusLogic()
        W = DICOMPlusWidgets
        self.browser = W.DICOMPlusBrowserWidget(self.logic, self.ui.browserFrame)
        self.browser.emptyText = _(
            "No DICOM data yet: Import... adds a folder, Network retrieves from a server."
        )
        self.ui.browserFrameLayout.addWidget(self.browser)
        self.preview = W.DICOMPlusPreviewWidget(self.logic, self.ui.previewFrame)
        self.ui.previewFrameLayout.addWidget(self.preview)
        self.activity = W.DICOMPlusActivityWidget(self.ui.activityFrame)
        self.ui.activityFrameLayout.addWidget(self.activity)
        self.network = W.DICOMPlusNetworkWidget(self.logic, self.ui.networkFrame, activity=self.activity)
        self.ui.networkFrameLayout.addWidget(self.network)
        self.network.setLocalSelectionProvider(self.selectedEntries)
        # "Send to <server>" sits with the local selection it sends; the server is the Network's
        # Slicer's module panel is ~340 px wide: the row's buttons are as wide as their labels
        # (not the style's 80 px each), Send takes the rest and cuts the server's name to fit
        DICOMPlusWidgets.fitting.fitToText(self.ui.importButton, self.ui.loadButton, self.ui.deleteButton)
        self.ui.databaseButtonsLayout.addWidget(self.network.sendButton, 2)
        for index in range(3):
            self.ui.databaseButtonsLayout.setStretch(index, 1)
        self.network.nodeChanged.connect(self.updateButtonStates)
        self.network.retrieveFinished.connect(lambda studyUID: self.refreshBrowser())
        self.network.loadRequested.connect(self.loadEntries)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.updateButtonStates)
        self.browser.selectionChanged.connect(self.updateButtonStates)
        mode = str(qt.QSettings().value("DICOMPlus/BrowserViewMode", "grid") or "grid")
        self.browser.setViewMode(mode if mode in ("grid", "tree") else "grid")  # as the user left it
        self.browser.viewModeChanged.connect(
            lambda mode: qt.QSettings().setValue("DICOMPlus/BrowserViewMode", mode)
        )
        self.browser.seriesSelected.connect(self.onSeriesSelected)
        self.browser.loadRequested.connect(self.loadEntries)
        self.preview.loadRequested.connect(self.loadEntries)
        self.preview.resampledLoadRequested.connect(lambda entries: self.loadEntries(entries, resample=True))
        self.ui.loadResampledButton.hide()
        self.ui.messagesText.hide()  # shown with the first message: the browser gets the room
        ui = self.ui
        for section in (
            ui.networkCollapsibleButton,
            ui.exportCollapsibleButton,
            ui.activityCollapsibleButton,
        ):
            # as tall as their contents (collapsed: the header); the browser takes the free height
            section.setSizePolicy(qt.QSizePolicy.Preferred, qt.QSizePolicy.Fixed)
        # the preview may shrink to its minimum (a smaller slice) before the browser does
        ui.previewCollapsibleButton.setSizePolicy(qt.QSizePolicy.Preferred, qt.QSizePolicy.Preferred)
        self.ui.loadResampledButton.connect("clicked(bool)", self.onLoadResampledButton)
        self.ui.previewCollapsibleButton.connect("contentsCollapsed(bool)", self.onPreviewCollapsed)
        self.ui.importButton.connect("clicked(bool)", self.onImportButton)
        self.ui.loadButton.connect("clicked(bool)", lambda: self.loadEntries(self.selectedEntries()))
        self.ui.deleteButton.connect("clicked(bool)", self.onDeleteButton)
        self.exportSection = DICOMPlusWidgets.ExportSection(self)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.saveBundleButton.connect("clicked(bool)", self.onSaveBundleButton)
        self.activity.setStatus(_("Idle (DICOMPlusLib {version})").format(version=DICOMPlusLib.__version__))
        self.logic.engine.exited.connect(self.onEngineExited)  # a crash says so (and restarts)
        self.logic.listenerStopped.connect(self.onListenerStopped)
        self.logic.engine.start()  # returns at once; warm for the first task
        self.refreshBrowser()
        self.updateButtonStates()

    def cleanup(self):
        """Called when the module is unloaded or the application exits."""
        self.removeObservers()
        if self.logic is not None:  # the engine outlives this panel
            self.logic.engine.exited.disconnect(self.onEngineExited)
        for widget in (self.browser, self.preview, self.network, self.activity):
            if widget is not None:
                widget.cleanup()
        if self.logic is not None:
            self.logic.close()

    def setLogic(self, logic):
        """Use another DICOMPlusLogic (e.g. on another database); the current one is closed."""
        previous, self.logic = self.logic, logic
        self.browser.setDatabase(logic)
        self.preview.setDatabase(logic)
        self.network.setLogic(logic)
        logic.listenerStopped.connect(self.onListenerStopped)
        if previous is not None and previous is not logic:
            previous.close()
        self.updateButtonStates()

    def onEngineExited(self, reason):
        try:
            self.activity.setStatus(reason)
        except (RuntimeError, ValueError):  # this panel's widgets are gone (deleted without cleanup)
            DICOMPlusWidgets.engine.engine().exited.disconnect(self.onEngineExited)

    def onListenerStopped(self, reason):
        """The listener ended (stopped, or the engine crashed: ``reason`` says so)."""
        self.network.setListenerRunning(False)

    def refreshBrowser(self):
        self.browser.refresh()

    def selectedEntries(self):
        """[(level, key)] of the selected browser rows, e.g. [("series", "1.2.3")]."""
        return self.browser.selectedEntries()

    def selectedStudyUID(self):
        """The study of the browser selection (a study, or the study of a series), else None."""
        return self.logic.studyOf(self.selectedEntries())

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
        idle = self.activeJob is None
        hasStudy = self.selectedStudyUID() is not None
        self.ui.loadButton.enabled = self.ui.deleteButton.enabled = hasSelection and idle
        self.ui.importButton.enabled = idle
        self.ui.exportButton.enabled = self.ui.saveBundleButton.enabled = hasStudy and idle
        node = self.network.currentNode()
        self.network.sendButton.setFullText(
            _("Send to {node}").format(node=node) if node else _("Send..."),
            (
                _("Send the selected patients, studies or series to {node} (chosen in Network)").format(
                    node=node
                )
                if node
                else _("Add a server in the Network section to send to it")
            ),
        )
        self.network.sendButton.enabled = hasSelection and bool(node)

    # -- jobs -------------------------------------------------------------------------------------
    def runJob(self, job, onDone, always=False):
        """Show ``job`` (already started) in the Activity panel; ``onDone(job)`` runs on the main
        thread when it succeeds (a failure or a cancel is reported in the panel instead), and
        also after a failure or a cancel when ``always`` (a job whose work done so far must be
        shown, as a delete's)."""
        self.activeJob = job
        self.activity.addJob(job, lambda ended: self._onJobEnded(ended, onDone, always))  # says it runs
        self.updateButtonStates()
        return job

    def _onJobEnded(self, job, onDone, always=False):
        if job is self.activeJob:
            self.activeJob = None
        if job.error is not None and not isinstance(job.error, DICOMPlusLib.CancelledError):
            self.activity.setStatus(_("{name} failed: {error}").format(name=job.name, error=job.error))
            self.showMessages([str(job.error)])
        elif job.error is not None:
            self.activity.setStatus(_("{name}: cancelled").format(name=job.name))
        if job.error is None or always or (job.result is not None and onDone is not None):
            onDone(job)
        self.updateButtonStates()

    def showMessages(self, lines):
        """Warnings and messages under the Activity list; the box takes room only when it has some."""
        self.ui.messagesText.setPlainText("\n".join(lines))
        self.ui.messagesText.visible = bool(lines)

    # -- import, load, delete -------------------------------------------------------------------
    def onImportButton(self, *args):
        settings = qt.QSettings()
        folder = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(),
            _("Import DICOM folder"),
            settings.value("DICOMPlus/LastImportFolder", ""),
        )
        if folder:
            settings.setValue("DICOMPlus/LastImportFolder", folder)
            self.importPaths([folder])

    def importPaths(self, paths, link=False):
        """Import ``paths`` in the engine; progress and Cancel show in the Activity panel."""
        return self.runJob(self.logic.importFolder(paths, link=link), self.onImportDone)

    def onImportDone(self, job):
        report = job.result
        if report.added == 1:
            message = _("Imported {added} instance; {skipped} skipped, {unchanged} unchanged")
        else:
            message = _("Imported {added} instances; {skipped} skipped, {unchanged} unchanged")
        message = message.format(added=report.added, skipped=len(report.skipped), unchanged=report.unchanged)
        if report.cancelled:
            message = _("Cancelled. ") + message
        self.activity.setStatus(message)
        self.showMessages([f"{s.path}: {s.reason}" for s in report.skipped[:50]])
        self.refreshBrowser()

    def loadEntries(self, entries, resample=False):
        """Load [(level, key)]: Data Bundles into the scene at once, the rest decoded in the
        engine (``resample``: onto a regular grid); nodes are created here when it is done.
        Returns the job, or None."""
        job = None
        with slicer.util.tryWithErrorDisplay(_("DICOMPlus could not start loading.")):
            job = self.logic.loadEntries(entries, resample=resample)
        if job is None:
            return None
        self.ui.loadResampledButton.hide()
        return self.runJob(job, lambda ended: self.onLoadDone(ended, entries, resample))

    def onLoadDone(self, job, entries=(), resample=False):
        """Nodes for the decoded series; warnings in the user's words, and "Load resampled" when
        it gives a better volume."""
        nodes, warnings = self.logic.addLoadedSeries(job.result)
        text = DICOMPlusWidgets.text
        segmentations = sum(1 for node in nodes if node.IsA("vtkMRMLSegmentationNode"))
        parts = [  # a SEG is a segmentation to the user, not "1 volume"
            text.count(count, one, many)
            for count, one, many in (
                (len(nodes) - segmentations, _("volume"), _("volumes")),
                (segmentations, _("segmentation"), _("segmentations")),
            )
            if count
        ]
        self.activity.setStatus(
            _("Loaded {what}").format(what=_(" and ").join(parts) or text.count(0, _("volume"), _("volumes")))
        )
        self.showMessages([f"{name}: {text.warningText(w)}" for name, w in warnings])
        self._resampleEntries = list(entries)
        offer = not resample and text.offersResample([w for _name, w in warnings])
        self.ui.loadResampledButton.visible = offer
        if nodes and nodes[0].IsA("vtkMRMLScalarVolumeNode") and slicer.app.layoutManager() is not None:
            slicer.util.setSliceViewerLayers(background=nodes[0], fit=True)
        volumes = [node for node in nodes if node.IsA("vtkMRMLScalarVolumeNode")]
        if volumes and self.ui.exportVolumeSelector.currentNode() is None:
            # Export offers what was just loaded (its selector may be "None": Export then only
            # said "Choose a volume"); a volume the user chose there stays chosen
            self.ui.exportVolumeSelector.setCurrentNode(volumes[0])

    def onLoadResampledButton(self, *args):
        return self.loadEntries(self._resampleEntries, resample=True)

    def onDeleteButton(self, *args):
        entries = self.selectedEntries()
        if entries and slicer.util.confirmYesNoDisplay(self.deleteQuestion(entries)):
            self.deleteEntries(entries)

    def deleteQuestion(self, entries):
        """What the Delete button asks: what goes, by name, and how many images (it said "Delete
        1 selected item", whether a series or a patient of 3,000 images)."""
        from DICOMPlusLib.database.selection import series_of

        T = DICOMPlusWidgets.text
        uids = series_of(self.logic.database, entries)
        found = self.logic.search("series", {"SeriesInstanceUID": "\\".join(uids)}) if uids else []
        images = sum(s.NumberOfSeriesRelatedInstances or 0 for s in found)
        what = T.count(len(entries), _("selected item"), _("selected items"))
        if len(entries) == 1:
            level, key = entries[0]
            keyword = {"patient": "PatientID", "study": "StudyInstanceUID", "series": "SeriesInstanceUID"}[
                level
            ]
            records = self.logic.search(level, {keyword: key})
            title = {"patient": T.patientTitle, "study": T.studyTitle, "series": T.seriesTitle}[level]
            label = {"patient": _("the patient"), "study": _("the study"), "series": _("the series")}[level]
            what = f"{label} {title(records[0])}" if records else what
        return _(
            "Delete {what} ({images}) from the DICOMPlus database, with the files it copied? "
            "Files imported in place stay where they are."
        ).format(what=what, images=T.count(images, _("image"), _("images")))

    def deleteEntries(self, entries):
        """Delete [(level, key)] entries (as from selectedEntries) in the engine, with the files
        DICOMPlus copied: the Activity list shows it, the browser refreshes when it ends. Returns
        the job."""
        self.preview.clear()
        return self.runJob(self.logic.deleteEntries(entries), self.onDeleteDone, always=True)

    def onDeleteDone(self, job):
        """After a delete, also one that failed or was cancelled between entries: the entries
        deleted before are gone, and the browser must not offer them any more."""
        if job.error is not None:  # the Activity panel says why
            self.refreshBrowser()
            self.updateButtonStates()
            return
        reports = job.result or []
        images = sum(report.instances for report in reports)
        removed = sum(len(report.files_removed) for report in reports)
        T = DICOMPlusWidgets.text
        self.activity.setStatus(
            _("Deleted {images}; {files} removed").format(
                images=T.count(images, _("image"), _("images")),
                files=T.count(removed, _("copied file"), _("copied files")),
            )
        )
        self.refreshBrowser()
        self.updateButtonStates()

    # -- export and Data Bundle (DICOMPlusWidgets.ExportSection) ---------------------------------
    def onExportButton(self, *args):
        return self.exportSection.export()

    def onSaveBundleButton(self, *args):
        return self.exportSection.saveBundle()


class DICOMPlusLogic(
    ScriptedLoadableModuleLogic, DICOMPlusWidgets.DatabaseLogic, DICOMPlusWidgets.EngineLogic
):
    """Slicer-side logic, usable without the widget: MRML, settings and the engine hand-off
    (the engine side is DICOMPlusWidgets.EngineLogic).

    Reads (search, records) go to the database directly; long work runs in the engine and
    returns a job at once (``job.get()`` waits for its result; the panel shows it instead)::

        logic = slicer.util.getModuleLogic("DICOMPlus")       # or DICOMPlusLogic()
        logic.importFolder(["/data/dicom"]).get()                # ImportReport
        studies = logic.search("study", {"PatientName": "DOE*"})
        nodes = logic.loadSeries(studies[0]...)                  # decoded in the engine
        logic.addNode("pacs", "ORTHANC", "127.0.0.1", 4242)      # server nodes (nodes.json)
        logic.echo("pacs").get().ok
        found = logic.query("pacs", "study", {"PatientID": "123"}).get()
        logic.retrieve("pacs", studyUID=found[0].StudyInstanceUID).get()
        logic.send("pacs", series=["1.2.3"]).get()
        logic.startListener(port=11112, aeTitle="DICOMPLUS").get()  # a job in the engine: the port
        logic.stopListener().get()     # a job: transfers under way get up to 10 s to finish
    """

    def __init__(self, databasePath=None, nodesPath=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self._databasePath = databasePath
        self._database = None
        self._initEngineLogic(nodesPath)
        # Emitted (main thread) before the database closes: the widgets' workers stop using it.
        self.databaseAboutToClose = DICOMPlusWidgets.Signal(name="databaseAboutToClose")

    def libraryVersion(self):
        return DICOMPlusLib.__version__

    # -- loading ------------------------------------------------------------------------------
    def loadEntries(self, entries, resample=False):
        """Load [(level, key)]: Data Bundles into the scene now; the other series are decoded in
        the engine: returns that job (None if only bundles), for :meth:`addLoadedSeries`."""
        import shutil
        import tempfile

        from DICOMPlusLib.database.selection import series_of

        seriesUIDs = series_of(self.database, entries)
        bundles = [uid for uid in seriesUIDs if DICOMPlusMRML.isDataBundleSeries(self.database, uid)]
        for uid in bundles:  # a Data Bundle is a scene: added to it, not read as voxels
            DICOMPlusMRML.loadDataBundle(self.database, self.database.instances(uid)[0].SOPInstanceUID)
        seriesUIDs = [uid for uid in seriesUIDs if uid not in bundles]
        if not seriesUIDs:
            return None
        self.ensureDecoders(seriesUIDs)
        folder = tempfile.mkdtemp(prefix="DICOMPlusLoad-", dir=slicer.app.temporaryPath)
        args = {**self.databaseArgs(), "series": seriesUIDs, "resample": bool(resample), "folder": folder}
        job = self.submit("load", args, _("Load {count} series").format(count=len(seriesUIDs)))
        job.on_finished(lambda ended: ended.error is None or shutil.rmtree(folder, ignore_errors=True))
        return job

    def addLoadedSeries(self, loaded):
        """Nodes for what the engine decoded (main thread; see DICOMPlusMRML.addLoadedSeries):
        (nodes, [(name, LoadWarning or LoadError)]). Setting ``DICOMPlus/LoadDiffusionAsDWI``."""
        asDWI = str(qt.QSettings().value("DICOMPlus/LoadDiffusionAsDWI", "true")).lower() == "true"
        return DICOMPlusMRML.addLoadedSeries(self.database, loaded, asDWI=asDWI)

    def load(self, entries, resample=False):
        """Load [(level, key)] and wait (a console convenience; the panel does not wait). Returns
        (nodes, [(name, LoadWarning or LoadError)])."""
        job = self.loadEntries(entries, resample=resample)
        return self.addLoadedSeries(job.get()) if job is not None else ([], [])

    def loadSeries(self, seriesUID, resample=False):
        """Load one series and wait; returns its nodes, raises its LoadError. Warnings are on
        each node (attribute ``DICOMPlus.Warnings``)."""
        job = self.loadEntries([("series", seriesUID)], resample=resample)
        loaded = job.get()
        if isinstance(loaded[0][1], Exception):
            raise loaded[0][1]
        return self.addLoadedSeries(loaded)[0]

    # -- export and Data Bundle (DICOMPlusMRML) ------------------------------------------------
    def exportVolume(
        self,
        volumeNode,
        studyUID,
        modality=None,
        seriesDescription=None,
        outputFolder=None,
        seriesNumber=None,
    ):
        return DICOMPlusMRML.exportVolume(
            self.database, volumeNode, studyUID, modality, seriesDescription, outputFolder, seriesNumber
        )

    def exportSegmentation(self, segmentationNode, referenceVolumeNode, seriesDescription=None):
        return DICOMPlusMRML.exportSegmentation(
            self.database, segmentationNode, referenceVolumeNode, seriesDescription
        )

    def saveDataBundle(self, studyUID, description="Slicer Data Bundle"):
        return DICOMPlusMRML.saveDataBundle(self.database, studyUID, description)

    def loadDataBundle(self, bundle, replace=False):
        return DICOMPlusMRML.loadDataBundle(self.database, bundle, replace)


class DICOMPlusTest(ScriptedLoadableModuleTest, DICOMPlusWidgets.SelfTest):
    """Runs in Slicer (Reload and Test, or ctest) and under pytest (Testing/test_module_generic.py):
    the engine, the panel and the network end to end (scenarios in DICOMPlusWidgets/selftest.py)."""

    Logic = DICOMPlusLogic
    Widget = DICOMPlusWidget

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        for test in (self.test_Logic, self.test_Widget, self.test_Network):
            self.setUp()
            test()
