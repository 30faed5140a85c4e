"""Export and Data Bundle from the module's Logic under the harness: real MRML scene, real MRB."""

from __future__ import annotations

import numpy as np
import pytest

from dicomplus_testing.harness import fit_panel
from dicomplus_testing.synthetic import make_series


@pytest.fixture
def logic(dicomplus_module, tmp_path):
    logic = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db" / "dicomplus.sqlite")
    yield logic
    logic.closeDatabase()


def test_export_volume_node_into_a_study_round_trips(logic, tmp_path, dciodvfy_tool):
    import slicer

    source = make_series(tmp_path / "src", n=5, rows=12, cols=10, patient_id="EXP1", slice_step=3.0)
    logic.importFolder([source.folder]).get()
    [node] = logic.loadSeries(source.series_uid)
    result = logic.exportVolume(node, source.study_uid, modality="CT", seriesDescription="Exported")
    assert result.study_uid == source.study_uid and result.indexed and len(result.files) == 5
    series = logic.search("series", {"StudyInstanceUID": source.study_uid})
    assert len(series) == 2
    new = next(s for s in series if s.SeriesInstanceUID != source.series_uid)
    assert new.SeriesInstanceUID == result.series_uid
    assert new.SeriesDescription == "Exported"
    [back] = logic.loadSeries(new.SeriesInstanceUID)
    assert np.array_equal(slicer.util.arrayFromVolume(back), slicer.util.arrayFromVolume(node))
    import vtk

    a, b = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(a)
    back.GetIJKToRASMatrix(b)
    assert np.allclose(slicer.util.arrayFromVTKMatrix(a), slicer.util.arrayFromVTKMatrix(b), atol=1e-4)
    first = logic.database.instances(new.SeriesInstanceUID)[0].path
    assert dciodvfy_tool(first).errors == []


def test_data_bundle_save_and_load_back(logic, tmp_path):
    import slicer

    source = make_series(tmp_path / "src", n=4, rows=8, cols=8, patient_id="MRB1")
    logic.importFolder([source.folder]).get()
    [node] = logic.loadSeries(source.series_uid)
    node.SetName("bundle me")
    voxels = slicer.util.arrayFromVolume(node).copy()
    info = logic.saveDataBundle(source.study_uid)
    bundles = [
        s for s in logic.search("series", {"StudyInstanceUID": source.study_uid}) if s.Modality == "OT"
    ]
    assert len(bundles) == 1
    sop = logic.database.instances(bundles[0].SeriesInstanceUID)[0].SOPInstanceUID
    assert info is not None
    slicer.mrmlScene.Clear(0)
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0
    assert logic.loadDataBundle(sop, replace=True)
    restored = slicer.util.getNode("bundle me")
    assert np.array_equal(slicer.util.arrayFromVolume(restored), voxels)
    # added to (not replacing) the scene: a second copy appears
    assert logic.loadDataBundle(sop, replace=False)
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 2


def test_export_segmentation_as_dicom_seg(logic, tmp_path):
    import highdicom
    import slicer

    source = make_series(tmp_path / "src", n=6, rows=16, cols=16, patient_id="SEG1")
    logic.importFolder([source.folder]).get()
    [volume] = logic.loadSeries(source.series_uid)
    labels = np.zeros((6, 16, 16), np.uint8)
    labels[1:4, 2:8, 2:8] = 1
    labels[2:5, 9:14, 9:14] = 2
    labelmapNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    slicer.util.updateVolumeFromArray(labelmapNode, labels)
    import vtk

    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    labelmapNode.SetIJKToRASMatrix(m)
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Tumours")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
        labelmapNode, segmentation
    )
    seg = segmentation.GetSegmentation()
    seg.GetNthSegment(0).SetName("lesion A")
    seg.GetNthSegment(1).SetName("lesion B")
    seg.GetNthSegment(1).SetColor(1.0, 0.0, 0.0)
    result = logic.exportSegmentation(segmentation, volume)
    [record] = logic.search("series", {"SeriesInstanceUID": result.series_uid})
    assert record.Modality == "SEG"
    path = logic.database.instances(result.series_uid)[0].path
    read = highdicom.seg.segread(path)
    assert [read.get_segment_description(i).SegmentLabel for i in (1, 2)] == ["lesion A", "lesion B"]
    pixels = read.get_volume(combine_segments=True).array
    assert int((pixels == 1).sum()) == int((labels == 1).sum())
    assert int((pixels == 2).sum()) == int((labels == 2).sum())
    assert slicer.mrmlScene.GetFirstNodeByName("DICOMPlusSegExport") is None


def test_export_and_bundle_buttons_in_the_panel(dicomplus_module, qtbot, tmp_path, screenshot):
    import qt
    import slicer

    widget = dicomplus_module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    widget.logic.setDatabasePath(tmp_path / "wdb" / "dicomplus.sqlite")
    try:
        source = make_series(tmp_path / "src", n=4, rows=8, cols=8, patient_id="BTN1")
        widget.importPaths([source.folder])
        qtbot.waitUntil(lambda: widget.activeJob is None, timeout=30_000)
        assert not widget.ui.exportButton.enabled  # nothing selected yet
        [node] = widget.logic.loadSeries(source.series_uid)
        widget.browser.selectSeries(source.series_uid)
        assert widget.ui.exportButton.enabled and widget.ui.saveBundleButton.enabled
        widget.ui.exportCollapsibleButton.collapsed = False  # folded by default: the user opens it
        widget.ui.exportVolumeSelector.setCurrentNode(node)
        widget.ui.exportModalityCombo.currentIndex = 0  # CT
        qtbot.mouseClick(widget.ui.exportButton, qt.Qt.LeftButton)
        series = widget.logic.search("series", {"StudyInstanceUID": source.study_uid})
        assert len(series) == 2 and "Exported" in widget.activity.status()
        qtbot.mouseClick(widget.ui.saveBundleButton, qt.Qt.LeftButton)
        series = widget.logic.search("series", {"StudyInstanceUID": source.study_uid})
        bundle = next(s for s in series if s.Modality == "OT")
        assert dicomplus_module.DICOMPlusMRML.isDataBundleSeries(
            widget.logic.database, bundle.SeriesInstanceUID
        )
        assert not dicomplus_module.DICOMPlusMRML.isDataBundleSeries(widget.logic.database, source.series_uid)
        widget.ui.networkCollapsibleButton.collapsed = True
        widget.ui.previewCollapsibleButton.collapsed = True
        fit_panel(widget, 440, 900)
        # the exported series' tile as a user sees it a moment later: its thumbnail, not the grey
        # placeholder it has until the thumbnail is made (the bundle has no image: "OT" is its tile)
        exported = next(s for s in series if s.Modality == "CT" and s.SeriesInstanceUID != source.series_uid)
        qtbot.waitUntil(lambda: widget.browser.hasThumbnail(exported.SeriesInstanceUID), timeout=30_000)
        screenshot(widget.parent, "panel_export")
        # loading the bundle series adds the scene back (one more copy of the volume)
        before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
        widget.loadEntries([("series", bundle.SeriesInstanceUID)])
        assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == before + 1
    finally:
        widget.cleanup()


def test_export_offers_the_volume_just_loaded(dicomplus_module, qtbot, tmp_path):
    """A user loads a series with the panel's Load button, opens Export and clicks "Export into
    study": the Volume box still said "None" (it may be empty, so it chose nothing when the
    volume arrived) and the panel only answered "Choose a volume". It now offers the volume just
    loaded, and keeps one the user chose."""
    import qt
    import slicer

    widget = dicomplus_module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    widget.setLogic(dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db" / "dicomplus.sqlite"))
    try:
        first = make_series(tmp_path / "a", n=3, rows=8, cols=8, patient_id="OFFER1")
        second = make_series(
            tmp_path / "b", n=3, rows=8, cols=8, patient_id="OFFER1", study_uid=first.study_uid
        )
        widget.importPaths([first.folder, second.folder])
        qtbot.waitUntil(lambda: widget.activeJob is None, timeout=30_000)
        ui = widget.ui
        for source in (first, second):
            widget.browser.selectSeries(source.series_uid)
            qtbot.mouseClick(ui.loadButton, qt.Qt.LeftButton)
            qtbot.waitUntil(lambda: widget.activeJob is None, timeout=30_000)
            if source is first:
                [loaded] = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                assert ui.exportVolumeSelector.currentNode() is loaded
        assert ui.exportVolumeSelector.currentNode() is loaded  # the user's (first) choice stays
        ui.exportCollapsibleButton.collapsed = False
        qtbot.mouseClick(ui.exportButton, qt.Qt.LeftButton)
        assert widget.activity.status().startswith("Exported"), ui.messagesText.toPlainText()
        assert len(widget.logic.search("series", {"StudyInstanceUID": first.study_uid})) == 3
    finally:
        widget.cleanup()


def test_export_a_segmentation_as_seg_from_the_panel(dicomplus_module, qtbot, tmp_path):
    """Step 5 of a user's walk: a segmentation drawn on a loaded series, exported as DICOM SEG from
    the Export section. The Volume box listed volumes only, so the panel could not do it (the
    Python console could: logic.exportSegmentation). It lists segmentations now; one is written
    as SEG beside the series it was drawn on; one drawn on nothing is refused in a sentence."""
    import highdicom
    import qt
    import slicer

    widget = dicomplus_module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    widget.setLogic(dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db" / "dicomplus.sqlite"))
    try:
        source = make_series(tmp_path / "src", n=6, rows=16, cols=16, patient_id="SEGPANEL")
        widget.importPaths([source.folder])
        qtbot.waitUntil(lambda: widget.activeJob is None, timeout=30_000)
        widget.browser.selectSeries(source.series_uid)
        ui = widget.ui
        qtbot.mouseClick(ui.loadButton, qt.Qt.LeftButton)
        qtbot.waitUntil(lambda: widget.activeJob is None, timeout=30_000)
        [volume] = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
        labels = np.zeros((6, 16, 16), np.uint8)
        labels[1:4, 2:8, 2:8] = 1
        labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
        slicer.util.updateVolumeFromArray(labelmap, labels)
        import vtk

        matrix = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        labelmap.SetIJKToRASMatrix(matrix)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Tumour")
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)  # as the Segment Editor
        assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            labelmap, segmentation
        )

        ui.exportCollapsibleButton.collapsed = False
        ui.exportVolumeSelector.setCurrentNode(segmentation)
        assert ui.exportVolumeSelector.currentNode() is segmentation
        assert ui.exportDescriptionEdit.text == "Tumour" and not ui.exportModalityCombo.enabled
        qtbot.mouseClick(ui.exportButton, qt.Qt.LeftButton)
        assert "DICOM SEG" in widget.activity.status(), ui.messagesText.toPlainText()
        [seg] = [
            s
            for s in widget.logic.search("series", {"StudyInstanceUID": source.study_uid})
            if s.Modality == "SEG"
        ]
        assert seg.SeriesDescription == "Tumour"
        read = highdicom.seg.segread(widget.logic.database.instances(seg.SeriesInstanceUID)[0].path)
        assert int((read.get_volume(combine_segments=True).array == 1).sum()) == int((labels == 1).sum())

        # loaded back, the SEG's node is named "<series number>: Tumour": exported again, its
        # description is the series' ("Tumour"), not the node name (it was "<number>: Tumour")
        widget.browser.selectSeries(seg.SeriesInstanceUID)
        qtbot.mouseClick(ui.loadButton, qt.Qt.LeftButton)
        qtbot.waitUntil(lambda: widget.activeJob is None, timeout=30_000)
        [loaded] = [
            n
            for n in slicer.util.getNodesByClass("vtkMRMLSegmentationNode")
            if n.GetAttribute("DICOMPlus.SeriesInstanceUID") == seg.SeriesInstanceUID
        ]
        assert loaded.GetName() != "Tumour", loaded.GetName()
        ui.exportVolumeSelector.setCurrentNode(loaded)
        assert ui.exportDescriptionEdit.text == "Tumour", ui.exportDescriptionEdit.text

        drawnOnNothing = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Loose")
        ui.exportVolumeSelector.setCurrentNode(drawnOnNothing)
        qtbot.mouseClick(ui.exportButton, qt.Qt.LeftButton)
        assert "Loose has no volume it was drawn on" in ui.messagesText.toPlainText()
        ui.exportVolumeSelector.setCurrentNode(volume)
        assert ui.exportModalityCombo.enabled
    finally:
        widget.cleanup()
