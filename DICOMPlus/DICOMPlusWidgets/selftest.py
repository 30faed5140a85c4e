"""The module's self-test scenarios, run by DICOMPlusTest (DICOMPlus.py) in Slicer ("Reload and
Test", ctest) and under pytest: the engine answers, imports and decodes; the panel imports,
browses, previews and loads; the network echoes, queries, retrieves and loads from a sample PACS
that runs in the engine (a Python thread in Slicer's process would starve). Everything writes
under Slicer's temporary folder and is removed."""

import os

import slicer

import DICOMPlusLib


class SelfTest:
    """Mixin for a ScriptedLoadableModuleTest; the host sets ``Logic`` and ``Widget`` (the
    module's DICOMPlusLogic and DICOMPlusWidget classes)."""

    Logic = None
    Widget = None

    @staticmethod
    def _writeSample(folder):
        """The sample PACS's 60 instances (two patients, CT and MR, made with pydicom) as files."""
        from DICOMPlusLib.network.pacs.sample import write_sample_files

        return write_sample_files(os.path.join(folder, "sample"))

    def _folder(self):
        import tempfile

        return tempfile.mkdtemp(prefix="DICOMPlusSelfTest-", dir=slicer.app.temporaryPath)

    def test_Logic(self):
        """The engine answers, imports and decodes; a failed task reports its error."""
        import shutil

        folder = self._folder()
        try:
            logic = self.Logic(databasePath=os.path.join(folder, "db", "dicomplus.sqlite"))
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
            widget = self.Widget()
            widget.setLogic(self.Logic(databasePath=os.path.join(folder, "db", "dicomplus.sqlite")))
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
        logic = self.Logic(os.path.join(folder, "db", "dicomplus.sqlite"), os.path.join(folder, "nodes.json"))
        try:
            logic.ensureNetworkDependencies()
            from DICOMPlusLib.network.pacs.qrscp import QRConfig

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
