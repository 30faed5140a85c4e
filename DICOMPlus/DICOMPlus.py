"""DICOMPlus: a complete, fast and dependable DICOM workflow for 3D Slicer.

This file is the Slicer shell only: module description, the panel (Widget) and a thin Logic.
The engine (database, network, loading, export) is the plain-Python package DICOMPlusLib, which
never imports slicer, qt, ctk or vtk. Code here uses PythonQt idioms only (properties as
attributes, ``connect("signal(args)", slot)``) so it runs in Slicer and in the test harness
(Testing/slicer_stubs); Testing/test_guards.py checks that.
"""

import os

import qt
import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin

import DICOMPlusLib

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
    """The module panel, loaded from Resources/UI/DICOMPlus.ui."""

    def __init__(self, parent=None):
        # Set attributes before the base constructor: with parent=None it calls setup() itself.
        # VTKObservationMixin.__init__ runs from ScriptedLoadableModuleWidget's super().__init__();
        # calling it again here would forget the observers that setup() added.
        self.logic = None
        self.ui = None
        ScriptedLoadableModuleWidget.__init__(self, parent)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DICOMPlus.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = DICOMPlusLogic()
        self.activeJob = None
        self.activeJobDone = None

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        header = self.ui.browserTable.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, qt.QHeaderView.Stretch)
        for column in range(1, self.ui.browserTable.columnCount):
            header.setSectionResizeMode(column, qt.QHeaderView.ResizeToContents)
        self.ui.searchBox.connect("textChanged(QString)", self.onSearchTextChanged)
        self.ui.browserTable.connect("itemSelectionChanged()", self.updateButtonStates)
        self.ui.importButton.connect("clicked(bool)", self.onImportButton)
        self.ui.loadButton.connect("clicked(bool)", self.onLoadButton)
        self.ui.deleteButton.connect("clicked(bool)", self.onDeleteButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)

        # Worker threads never touch Qt: this timer, on the main thread, reads their progress.
        self.jobTimer = qt.QTimer()
        self.jobTimer.setInterval(100)
        self.jobTimer.connect("timeout()", self.pollJobs)

        self.ui.activityLabel.text = _("Idle (DICOMPlusLib {version})").format(
            version=self.logic.libraryVersion()
        )
        self.ui.cancelButton.enabled = False
        self.refreshBrowser()
        self.updateButtonStates()

    def cleanup(self):
        """Called when the module is unloaded or the application exits."""
        self.removeObservers()
        if self.ui is not None:
            self.jobTimer.stop()
        if self.logic is not None:
            for job in self.logic.jobs:
                job.cancel()
            for job in self.logic.jobs:
                job.wait(5)
            self.logic.closeDatabase()

    def onSceneEndClose(self, caller, event):
        self.updateButtonStates()

    # -- browser ------------------------------------------------------------------------------
    def refreshBrowser(self):
        """Fill the tree: patients, their studies, their series (from the local database)."""
        table = self.ui.browserTable
        table.clear()
        logic = self.logic
        try:
            patients = logic.search("patient")
        except DICOMPlusLib.DICOMPlusError as error:
            self.ui.activityLabel.text = str(error)
            return
        for patient in patients:
            patientItem = qt.QTreeWidgetItem(
                table,
                [
                    patient.PatientName or patient.PatientID,
                    "",
                    "",
                    str(patient.NumberOfPatientRelatedInstances),
                ],
            )
            patientItem.setData(0, qt.Qt.UserRole, "patient:" + patient.PatientID)
            patientItem.setToolTip(0, _("Patient ID: {id}").format(id=patient.PatientID))
            for study in logic.search("study", {"PatientID": patient.PatientID}):
                studyItem = qt.QTreeWidgetItem(
                    patientItem,
                    [
                        study.StudyDescription or _("(no description)"),
                        _formatDate(study.StudyDate),
                        study.ModalitiesInStudy,
                        str(study.NumberOfStudyRelatedInstances),
                    ],
                )
                studyItem.setData(0, qt.Qt.UserRole, "study:" + study.StudyInstanceUID)
                for series in logic.search("series", {"StudyInstanceUID": study.StudyInstanceUID}):
                    label = series.SeriesDescription or _("Series {number}").format(
                        number=series.SeriesNumber
                    )
                    seriesItem = qt.QTreeWidgetItem(
                        studyItem,
                        [
                            label,
                            _formatDate(series.SeriesDate),
                            series.Modality,
                            str(series.NumberOfSeriesRelatedInstances),
                        ],
                    )
                    seriesItem.setData(0, qt.Qt.UserRole, "series:" + series.SeriesInstanceUID)
            patientItem.setExpanded(True)
        self.onSearchTextChanged(self.ui.searchBox.text)

    def selectedEntries(self):
        """[(level, key)] of the selected browser rows, e.g. [("series", "1.2.3")]."""
        entries = []
        for item in self.ui.browserTable.selectedItems():
            level, _sep, key = str(item.data(0, qt.Qt.UserRole)).partition(":")
            entries.append((level, key))
        return entries

    def onSearchTextChanged(self, text):
        """Show only the top-level browser rows with ``text`` in any column of their subtree."""
        table = self.ui.browserTable
        needle = text.strip().lower()
        for row in range(table.topLevelItemCount):
            item = table.topLevelItem(row)
            item.setHidden(bool(needle) and not _subtreeContains(item, needle, table.columnCount))

    def updateButtonStates(self, *args):
        hasSelection = bool(self.ui.browserTable.selectedItems())
        busy = self.activeJob is not None
        self.ui.loadButton.enabled = hasSelection and not busy
        self.ui.deleteButton.enabled = hasSelection and not busy
        self.ui.importButton.enabled = not busy

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
        """Show ``job`` (already started) in the Activity panel; call ``onDone(job)`` on the main
        thread when it ends (also after a failure or cancel)."""
        self.activeJob = job
        self.activeJobDone = onDone
        self.ui.cancelButton.enabled = True
        self.ui.progressBar.value = 0
        self.ui.activityLabel.text = job.name + "..."
        self.updateButtonStates()
        self.jobTimer.start()
        return job

    def pollJobs(self):
        """Timer slot: show the active job's progress; finish up when it ends."""
        job = self.activeJob
        if job is None:
            self.jobTimer.stop()
            return
        snap = job.poll()
        if snap.total:
            self.ui.progressBar.maximum = snap.total
            self.ui.progressBar.value = snap.done
        if not job.finished:
            self.ui.activityLabel.text = _("{name}: {done} of {total}").format(
                name=job.name, done=snap.done, total=snap.total
            )
            return
        self.jobTimer.stop()
        self.activeJob = None
        self.ui.cancelButton.enabled = False
        onDone, self.activeJobDone = self.activeJobDone, None
        if job.error is not None and not isinstance(job.error, DICOMPlusLib.CancelledError):
            self.ui.activityLabel.text = _("{name} failed: {error}").format(name=job.name, error=job.error)
            self.showMessages([str(job.error)])
        elif job.error is not None:
            self.ui.activityLabel.text = _("{name}: cancelled").format(name=job.name)
        if onDone is not None and job.error is None:
            onDone(job)
        self.updateButtonStates()

    def onImportDone(self, job):
        report = job.result
        message = _("Imported {added} instance(s); {skipped} skipped, {unchanged} unchanged").format(
            added=report.added, skipped=len(report.skipped), unchanged=report.unchanged
        )
        if report.cancelled:
            message = _("Cancelled. ") + message
        self.ui.activityLabel.text = message
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
        job = self.logic.readSeries(seriesUIDs, wait=False)
        return self.runJob(job, self.onLoadDone)

    def onLoadDone(self, job):
        nodes, warnings = self.logic.addLoadedSeries(job.result)
        self.ui.activityLabel.text = _("Loaded {count} volume(s)").format(count=len(nodes))
        self.showMessages([f"{name}: {getattr(w, 'message', w)}" for name, w in warnings])
        if nodes and nodes[0].IsA("vtkMRMLScalarVolumeNode") and slicer.app.layoutManager() is not None:
            slicer.util.setSliceViewerLayers(background=nodes[0], fit=True)

    def onCancelButton(self, *args):
        if self.activeJob is not None:
            self.activeJob.cancel()
            self.ui.activityLabel.text = _("Cancelling...")

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
        self.refreshBrowser()
        self.updateButtonStates()


def _formatDate(value):
    """YYYYMMDD -> YYYY-MM-DD for display; anything else unchanged."""
    value = value or ""
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def _subtreeContains(item, needle, columnCount):
    """True if ``needle`` (lower case) is in a column of ``item`` or of one of its descendants.

    ``item`` is a QTreeWidgetItem, not a QObject: its ``text(column)`` is a method.
    """
    if any(needle in item.text(column).lower() for column in range(columnCount)):
        return True
    return any(_subtreeContains(item.child(i), needle, columnCount) for i in range(item.childCount()))


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

    Long work runs in a DICOMPlusLib Job (a worker thread) when ``wait=False``; the widget polls
    the jobs from a QTimer on the main thread. Workers never touch MRML or Qt.
    """

    def __init__(self, databasePath=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self._databasePath = databasePath
        self._database = None
        self.jobs = []
        self.lastWarnings = []

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
        if self._database is not None:
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
                name = self._volumeName(series, volume, index, len(volumes))
                node = self._addVolumeNode(volume, name)
                self._placeInSubjectHierarchy(node, volume, study, series)
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

    # -- export and Data Bundle ----------------------------------------------------------------
    @staticmethod
    def volumeGeometry(volumeNode):
        """(array [k, j, i], IJK->LPS 4x4) of a scalar volume node: RAS to LPS, here, once."""
        import numpy as np
        import vtk

        matrix = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(matrix)
        ijkToLPS = np.diag([-1.0, -1.0, 1.0, 1.0]) @ slicer.util.arrayFromVTKMatrix(matrix)
        parent = volumeNode.GetParentTransformNode()
        if parent is not None and not parent.IsTransformToWorldLinear():
            raise DICOMPlusLib.ExportError(
                _("{name} is under a non-linear transform: harden it before exporting").format(
                    name=volumeNode.GetName()
                )
            )
        if parent is not None:
            toWorld = vtk.vtkMatrix4x4()
            parent.GetMatrixTransformToWorld(toWorld)
            ras = slicer.util.arrayFromVTKMatrix(toWorld) @ slicer.util.arrayFromVTKMatrix(matrix)
            ijkToLPS = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
        return slicer.util.arrayFromVolume(volumeNode), ijkToLPS

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
        import vtk

        from DICOMPlusLib.export import SegmentInfo, export_segmentation_for_series

        sourceUID = referenceVolumeNode.GetAttribute("DICOMPlus.SeriesInstanceUID")
        if not sourceUID:
            raise DICOMPlusLib.ExportError(
                _("{name} was not loaded from the DICOMPlus database: a SEG needs its source series").format(
                    name=referenceVolumeNode.GetName()
                )
            )
        segmentation = segmentationNode.GetSegmentation()
        segmentIDs = vtk.vtkStringArray()
        segments = []
        for index in range(segmentation.GetNumberOfSegments()):
            segmentID = segmentation.GetNthSegmentID(index)
            segment = segmentation.GetSegment(segmentID)
            segmentIDs.InsertNextValue(segmentID)
            color = tuple(round(255 * c) for c in segment.GetColor())
            segments.append(SegmentInfo(value=index + 1, label=segment.GetName(), color=color))
        labelmapNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "DICOMPlusSegExport")
        try:
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentationNode, segmentIDs, labelmapNode, referenceVolumeNode
            ):
                raise DICOMPlusLib.ExportError(_("the segments could not be turned into a labelmap"))
            labelmap, ijkToLPS = self.volumeGeometry(labelmapNode)
            return export_segmentation_for_series(
                self.database,
                sourceUID,
                labelmap,
                ijkToLPS,
                segments,
                series_description=seriesDescription or segmentationNode.GetName() or "Segmentation",
            )
        finally:
            slicer.mrmlScene.RemoveNode(labelmapNode)

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

    @staticmethod
    def _volumeName(series, volume, index, count):
        if series is None:
            base = volume.info.label or volume.series_uid
        else:
            number = "" if series.SeriesNumber is None else f"{series.SeriesNumber}: "
            base = number + (series.SeriesDescription or series.Modality or _("Series"))
        if volume.info.localizer:
            base += " " + _("(localizer)")
        return base if count == 1 else f"{base} [{index + 1}]"

    def _addVolumeNode(self, volume, name):
        """A scalar volume node (or a sequence of them for 4D) holding ``volume``."""
        ijkToRAS = slicer.util.vtkMatrixFromArray(volume.ijk_to_ras)
        warningsText = "\n".join(f"{w.code}: {w.message}" for w in volume.warnings)
        if not volume.info.is_4d:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
            slicer.util.updateVolumeFromArray(node, volume.array)
            node.SetIJKToRASMatrix(ijkToRAS)
            self._setDisplay(node, volume)
        else:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
            node.SetIndexName(volume.info.time_source or "time")
            node.SetIndexUnit(volume.info.time_unit or "")
            times = volume.time_axis or tuple(range(volume.array.shape[0]))
            for t, timePoint in enumerate(volume.time_points()):
                item = slicer.vtkMRMLScalarVolumeNode()
                item.SetName(f"{name} t={times[t]:g}")
                slicer.util.updateVolumeFromArray(item, timePoint.array)
                item.SetIJKToRASMatrix(ijkToRAS)
                node.SetDataNodeAtValue(item, f"{times[t]:g}")
            # created directly: a bare MRML scene has no factory for it until the Sequences module
            # registers one (Slicer does at start-up)
            browser = slicer.vtkMRMLSequenceBrowserNode()
            browser.SetName(name + " browser")
            slicer.mrmlScene.AddNode(browser)
            browser.SetAndObserveMasterSequenceNodeID(node.GetID())
        node.SetAttribute("DICOMPlus.Warnings", warningsText)
        node.SetAttribute("DICOM.instanceUIDs", " ".join(volume.sop_uids))
        node.SetAttribute("DICOMPlus.SeriesInstanceUID", volume.series_uid)
        return node

    @staticmethod
    def _setDisplay(node, volume):
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        if display is None or volume.info.window is None:
            return
        center, width = volume.info.window
        display.AutoWindowLevelOff()
        display.SetWindowLevel(width, center)

    def _placeInSubjectHierarchy(self, node, volume, study, series):
        """Patient -> study -> series items with Slicer's own DICOM UID names and attributes, so
        Slicer's DICOM export and other extensions recognise the loaded data."""
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        C = slicer.vtkMRMLSubjectHierarchyConstants
        uidName = C.GetDICOMUIDName()
        parent = sh.GetSceneItemID()
        if study is not None:
            patientItem = sh.GetItemByUID(uidName, study.PatientID)
            if not patientItem:
                patientItem = sh.CreateSubjectItem(sh.GetSceneItemID(), study.PatientName or study.PatientID)
                sh.SetItemUID(patientItem, uidName, study.PatientID)
                for attribute, value in (
                    (C.GetDICOMPatientIDAttributeName(), study.PatientID),
                    (C.GetDICOMPatientNameAttributeName(), study.PatientName),
                    (C.GetDICOMPatientBirthDateAttributeName(), study.PatientBirthDate),
                    (C.GetDICOMPatientSexAttributeName(), study.PatientSex),
                ):
                    sh.SetItemAttribute(patientItem, attribute, value or "")
            studyItem = sh.GetItemByUID(uidName, study.StudyInstanceUID)
            if not studyItem:
                studyItem = sh.CreateStudyItem(patientItem, study.StudyDescription or _("Study"))
                sh.SetItemUID(studyItem, uidName, study.StudyInstanceUID)
                for attribute, value in (
                    (C.GetDICOMStudyInstanceUIDAttributeName(), study.StudyInstanceUID),
                    (C.GetDICOMStudyIDAttributeName(), study.StudyID),
                    (C.GetDICOMStudyDateAttributeName(), study.StudyDate),
                    (C.GetDICOMStudyTimeAttributeName(), study.StudyTime),
                    (C.GetDICOMStudyDescriptionAttributeName(), study.StudyDescription),
                ):
                    sh.SetItemAttribute(studyItem, attribute, value or "")
            parent = studyItem
        seriesItem = sh.GetItemByDataNode(node) or sh.CreateItem(parent, node)
        sh.SetItemParent(seriesItem, parent)
        sh.SetItemUID(seriesItem, uidName, volume.series_uid)
        sh.SetItemUID(seriesItem, C.GetDICOMInstanceUIDName(), " ".join(volume.sop_uids))
        if series is not None:
            sh.SetItemAttribute(seriesItem, C.GetDICOMSeriesModalityAttributeName(), series.Modality or "")
            sh.SetItemAttribute(
                seriesItem,
                C.GetDICOMSeriesNumberAttributeName(),
                "" if series.SeriesNumber is None else str(series.SeriesNumber),
            )
        return seriesItem


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
        self.delayDisplay("Widget")
        widget = DICOMPlusWidget()
        try:
            ui = widget.ui
            self.assertFalse(ui.loadButton.enabled)
            self.assertFalse(ui.deleteButton.enabled)
            patient = self._addBrowserRow(ui.browserTable, "Anonymous^Alpha", "CT chest")
            self._addBrowserRow(ui.browserTable, "Anonymous^Beta", "MR brain")
            patient.setSelected(True)
            self.assertTrue(ui.loadButton.enabled)
            ui.searchBox.text = "brain"
            self.assertTrue(patient.isHidden())
            ui.searchBox.text = ""
            self.assertFalse(patient.isHidden())
            self.assertIn(DICOMPlusLib.__version__, ui.activityLabel.text)
        finally:
            widget.cleanup()
            widget.parent.deleteLater()
        self.delayDisplay("Widget test passed")

    @staticmethod
    def _addBrowserRow(table, patientName, studyDescription):
        patient = qt.QTreeWidgetItem(table, [patientName, "", "", ""])
        qt.QTreeWidgetItem(patient, [studyDescription, "20240101", "CT", "3"])
        return patient
