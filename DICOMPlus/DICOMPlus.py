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
        self.ui.browserFrameLayout.addWidget(self.browser)
        self.preview = W.DICOMPlusPreviewWidget(self.logic, self.ui.previewFrame)
        self.ui.previewFrameLayout.addWidget(self.preview)
        self.activity = W.DICOMPlusActivityWidget(self.ui.activityFrame)
        self.ui.activityFrameLayout.addWidget(self.activity)
        self.network = W.DICOMPlusNetworkWidget(self.logic, self.ui.networkFrame, activity=self.activity)
        self.ui.networkFrameLayout.addWidget(self.network)
        self.network.setLocalSelectionProvider(self.selectedEntries)
        # "Send to <server>" sits with the local selection it sends; the server is the Network's
        self.ui.databaseButtonsLayout.addWidget(self.network.sendButton)
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
        self.ui.exportVolumeSelector.setMRMLScene(slicer.mrmlScene)
        self.ui.exportVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onExportVolumeChanged)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.saveBundleButton.connect("clicked(bool)", self.onSaveBundleButton)
        self.activity.setStatus(_("Idle (DICOMPlusLib {version})").format(version=DICOMPlusLib.__version__))
        self.logic.engine.start()  # returns at once; warm for the first task
        self.refreshBrowser()
        self.updateButtonStates()

    def cleanup(self):
        """Called when the module is unloaded or the application exits."""
        self.removeObservers()
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
        if previous is not None and previous is not logic:
            previous.close()
        self.updateButtonStates()

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
        self.network.sendButton.text = _("Send to {node}").format(node=node) if node else _("Send...")
        self.network.sendButton.enabled = hasSelection and bool(node)
        self.network.sendButton.toolTip = (
            _("Send the selected patients, studies or series to {node} (chosen in Network)").format(node=node)
            if node
            else _("Add a server in the Network section to send to it")
        )

    # -- jobs -------------------------------------------------------------------------------------
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
        if job.error is None or (job.result is not None and onDone is not None):
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
        message = _("Imported {added} instance(s); {skipped} skipped, {unchanged} unchanged").format(
            added=report.added, skipped=len(report.skipped), unchanged=report.unchanged
        )
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
        self.activity.setStatus(_("Loaded {count} volume(s)").format(count=len(nodes)))
        text = DICOMPlusWidgets.text
        self.showMessages([f"{name}: {text.warningText(w)}" for name, w in warnings])
        self._resampleEntries = list(entries)
        offer = not resample and text.offersResample([w for _name, w in warnings])
        self.ui.loadResampledButton.visible = offer
        if nodes and nodes[0].IsA("vtkMRMLScalarVolumeNode") and slicer.app.layoutManager() is not None:
            slicer.util.setSliceViewerLayers(background=nodes[0], fit=True)

    def onLoadResampledButton(self, *args):
        return self.loadEntries(self._resampleEntries, resample=True)

    def onDeleteButton(self, *args):
        entries = self.selectedEntries()
        if entries and slicer.util.confirmYesNoDisplay(
            _(
                "Delete {count} selected item(s) from the DICOMPlus database, with the files it copied?"
            ).format(count=len(entries))
        ):
            self.deleteEntries(entries)

    def deleteEntries(self, entries):
        """Delete [(level, key)] entries (as from selectedEntries) and refresh the browser."""
        for level, key in entries:
            self.logic.delete(**{level: key})
        self.preview.clear()
        self.refreshBrowser()
        self.updateButtonStates()

    # -- export and Data Bundle ------------------------------------------------------------------
    def onExportButton(self, *args):
        """Export the chosen volume as a new series of the selected study."""
        node, studyUID = self.ui.exportVolumeSelector.currentNode(), self.selectedStudyUID()
        if node is None or studyUID is None:
            self.showMessages(
                [_("Choose a volume, and select a study (or one of its series) in the browser.")]
            )
            return None
        modality = self.ui.exportModalityCombo.currentText
        description = self.ui.exportDescriptionEdit.text.strip() or self._defaultExportDescription(node)
        number = self.ui.exportSeriesNumberSpinBox.value or None  # 0 shows "Next"
        result = self._tryLibrary(
            lambda: self.logic.exportVolume(
                node, studyUID, modality=modality, seriesDescription=description, seriesNumber=number
            )
        )
        if result is not None:
            self.activity.setStatus(
                _("Exported {name} as {count} file(s) into the study").format(
                    name=node.GetName(), count=len(result.files)
                )
            )
            self.refreshBrowser()
        return result

    def onExportVolumeChanged(self, node):
        self.ui.exportDescriptionEdit.text = self._defaultExportDescription(node) if node else ""

    def _defaultExportDescription(self, node):
        """The description of the series the volume was loaded from (not its node name, which
        starts with the old series number), else the node name."""
        uid = node.GetAttribute("DICOMPlus.SeriesInstanceUID")
        records = self.logic.search("series", {"SeriesInstanceUID": uid}) if uid else []
        if records and records[0].SeriesDescription:
            return records[0].SeriesDescription
        return node.GetName() or _("Exported volume")

    def onSaveBundleButton(self, *args):
        """Save the scene as a Data Bundle into the selected study."""
        studyUID = self.selectedStudyUID()
        if studyUID is None:
            self.showMessages([_("Select a study (or one of its series) in the browser first.")])
            return None
        info = self._tryLibrary(lambda: self.logic.saveDataBundle(studyUID))
        if info is not None:
            self.activity.setStatus(_("Saved the scene as a Data Bundle into the study"))
            self.refreshBrowser()
        return info

    def _tryLibrary(self, func):
        """``func()``, or None with the library's message shown in the panel."""
        try:
            return func()
        except DICOMPlusLib.DICOMPlusError as error:
            self.showMessages([str(error)])
            return None


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
        logic.startListener(port=11112, aeTitle="DICOMPLUS")     # in the engine
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
        args = {"db": self.databasePath(), "series": seriesUIDs, "resample": bool(resample), "folder": folder}
        job = self.engine.submit("load", args, _("Load {count} series").format(count=len(seriesUIDs)))
        job.on_finished(lambda ended: ended.error is None or shutil.rmtree(folder, ignore_errors=True))
        return job

    def addLoadedSeries(self, loaded):
        """Nodes for what the engine decoded (main thread): [(series UID, [VolumeFile] or
        LoadError)] -> (nodes, [(name, LoadWarning or LoadError)]). A failed series is reported,
        the others load; the voxel files are removed once copied into the scene."""
        import shutil

        nodes, warnings, folders = [], [], set()
        asDWI = str(qt.QSettings().value("DICOMPlus/LoadDiffusionAsDWI", "true")).lower() == "true"
        from DICOMPlusLib.loading.seg import layout_of

        # a segmentation after the series it segments, so that it can reference that node
        isSeg = lambda item: not isinstance(item[1], Exception) and any(layout_of(v.info) for v in item[1])  # noqa: E731
        for seriesUID, volumes in sorted(loaded, key=isSeg):
            [series] = self.search("series", {"SeriesInstanceUID": seriesUID}) or [None]
            [study] = (
                self.search("study", {"StudyInstanceUID": series.StudyInstanceUID}) if series else [None]
            )
            if isinstance(volumes, Exception):  # maybe an object Slicer's own DICOM plugins load
                files = [[r.path for r in self.database.instances(seriesUID)]]
                handed, problems = DICOMPlusMRML.loadWithSlicerPlugins(files) if files[0] else ([], [])
                if not handed:
                    warnings.append((series.SeriesDescription if series else seriesUID, volumes))
                warnings += [(what or seriesUID, message) for what, message in problems if handed]
                continue
            for index, volumeFile in enumerate(volumes):
                folders.add(os.path.dirname(volumeFile.path))
                volume = volumeFile.open()
                name = DICOMPlusMRML.volumeName(series, volume, index, len(volumes))
                node = DICOMPlusMRML.addNodeForVolume(volume, name, DICOMPlusMRML.addVolumeNode, asDWI)
                header = self.database.header(volume.sop_uids[0])  # stored bytes: no file read
                DICOMPlusMRML.placeInSubjectHierarchy(node, volume, study, series, header=header)
                warnings += [(name, warning) for warning in volume.warnings]
                nodes.append(node)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        return nodes, warnings

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


class DICOMPlusTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Reload and Test, or ctest) and under pytest (Testing/test_module_generic.py)."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        for test in (self.test_Logic, self.test_Widget, self.test_Network):
            self.setUp()
            test()

    def _folder(self):
        import tempfile

        return tempfile.mkdtemp(prefix="DICOMPlusSelfTest-", dir=slicer.app.temporaryPath)

    def test_Logic(self):
        """The engine answers, imports and decodes; a failed task reports its error."""
        import shutil

        folder = self._folder()
        try:
            logic = DICOMPlusLogic(databasePath=os.path.join(folder, "db", "dicomplus.sqlite"))
            self.assertEqual(logic.engine.call("ping")["version"], DICOMPlusLib.__version__)
            with self.assertRaises(DICOMPlusLib.DICOMPlusError):
                logic.engine.call("fail", {"message": "on purpose"})
            report = logic.importFolder([self._writeSample(folder)]).get(60)
            self.assertEqual((report.added, len(report.skipped)), (60, 0))
            [series] = logic.search("series", {"SeriesDescription": "T1 axial"})
            [node] = logic.loadSeries(series.SeriesInstanceUID)
            self.assertEqual(node.GetImageData().GetDimensions()[2], 16)
            logic.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def test_Widget(self):
        """The panel: import in the engine, browse, search, preview, load."""
        import shutil

        folder = self._folder()
        widget = None
        try:
            widget = DICOMPlusWidget()
            widget.setLogic(DICOMPlusLogic(databasePath=os.path.join(folder, "db", "dicomplus.sqlite")))
            self.assertIn(DICOMPlusLib.__version__, widget.activity.status())
            job = widget.importPaths([self._writeSample(folder)])
            self._waitFor(lambda: widget.activeJob is None, "the import")
            self.assertEqual(job.result.added, 60)
            [mr] = widget.logic.search("series", {"Modality": "MR"})
            self.assertEqual(len(widget.browser.entries("series")), 3)
            self.assertTrue(widget.browser.selectSeries(mr.SeriesInstanceUID))
            self.assertTrue(widget.ui.loadButton.enabled and widget.ui.deleteButton.enabled)
            self._waitFor(widget.preview.isSliceReady, "the first slice of the preview")
            self.assertEqual(widget.preview.sliceCount(), 16)
            widget.browser.setSearchText("no such patient")
            self.assertEqual(widget.browser.entries("series"), [])
            widget.browser.setSearchText("")
            widget.loadEntries([("series", mr.SeriesInstanceUID)])
            self._waitFor(lambda: widget.activeJob is None, "loading the series")
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"), 1)
        finally:
            if widget is not None:
                widget.cleanup()
                widget.parent.deleteLater()
            shutil.rmtree(folder, ignore_errors=True)

    def test_Network(self):
        """Against a sample PACS started here (127.0.0.1 only): node, echo,
        query, retrieve one series by C-GET, load it."""
        import shutil

        folder = self._folder()
        logic = DICOMPlusLogic(
            os.path.join(folder, "db", "dicomplus.sqlite"), os.path.join(folder, "nodes.json")
        )
        try:
            logic.ensureNetworkDependencies()
            from DICOMPlusLib.network.qrscp import QRConfig

            # the sample PACS runs in the engine too: a Python thread here would starve
            config = QRConfig(ae_title="SELFTESTPACS", port=0, host="127.0.0.1")
            pacsDB = os.path.join(folder, "pacs", "pacs.sqlite")
            port = logic.engine.call("pacs", {"db": pacsDB, "config": config, "sample": True}, timeout=60)
            logic.addNode("Self-test PACS", "SELFTESTPACS", "127.0.0.1", port)
            self.assertTrue(logic.echo("Self-test PACS").get(30).ok)
            [study] = logic.query("Self-test PACS", "study", {"PatientID": "DPLUS-002"}).get(30)
            [series] = logic.query(
                "Self-test PACS", "series", {"StudyInstanceUID": study.StudyInstanceUID}
            ).get(30)
            logic.retrieve("Self-test PACS", study.StudyInstanceUID, [series.SeriesInstanceUID]).get(60)
            self.assertEqual(len(logic.database.instances(series.SeriesInstanceUID)), 20)
            self.assertEqual(len(logic.loadSeries(series.SeriesInstanceUID)), 1)
        finally:
            logic.engine.call("pacs_stop")
            logic.close()
            shutil.rmtree(folder, ignore_errors=True)

    def _waitFor(self, condition, what, timeout=60.0):
        """Let the event loop run (engine output, timers) until ``condition()`` (tests only)."""
        import time

        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting for {what}")
            slicer.app.processEvents()
            time.sleep(0.01)

    @staticmethod
    def _writeSample(folder):
        """The sample PACS's 60 instances (two patients, CT and MR, made with pydicom) as files."""
        from DICOMPlusLib.network.sample import sample_files

        out = os.path.join(folder, "sample")
        os.makedirs(out, exist_ok=True)
        for index, data in enumerate(sample_files()):
            with open(os.path.join(out, f"{index:03d}.dcm"), "wb") as f:
                f.write(data)
        return out
