"""Under the harness (real MRML from slicer-core): a loaded SEG becomes a segmentation node
referencing its source volume, with segment names, colours, codes and voxels; objects DICOMPlus
does not load are handed to Slicer's DICOM plugins (``slicer.modules.dicomPlugins``)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomplus_testing.series2 import series2_entry
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.export.seg import SegmentInfo, export_segmentation
from DICOMPlusLib.loading import load, plan_folder


@pytest.fixture
def mrml(dicomplus_module):
    """The DICOMPlusMRML package the module imported (beside DICOMPlus.py)."""
    return sys.modules["DICOMPlusMRML"]


@pytest.fixture
def logic(dicomplus_module, tmp_path):
    logic = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db" / "dicomplus.sqlite")
    yield logic
    logic.closeDatabase()


def _segment_array(node, segment_id, reference):
    """A segment's voxels on the reference volume's grid (Slicer's own export)."""
    import slicer
    import vtk

    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__segment__")
    try:
        assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            node, ids, labelmap, reference
        )
        return slicer.util.arrayFromVolume(labelmap).copy()
    finally:
        slicer.mrmlScene.RemoveNode(labelmap)


def test_seg_becomes_a_segmentation_node_on_its_source(logic, mrml, tmp_path):
    import slicer

    source = make_series(tmp_path / "src", n=6, rows=16, cols=14, patient_id="SEGN")
    logic.importFolder([source.folder]).get()
    [volume_node] = logic.loadSeries(source.series_uid)
    labels = np.zeros((6, 16, 14), np.uint8)
    labels[1:4, 2:8, 2:8] = 2
    labels[2:5, 9:14, 6:12] = 5
    segments = [
        SegmentInfo(2, "liver", (200, 30, 40), property_type=("10200004", "SCT", "Liver")),
        SegmentInfo(5, "kidney", (20, 180, 60)),
    ]
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in source.files]
    export_segmentation(labels, source.ijk_to_lps, headers, segments, tmp_path / "seg" / "SEG.dcm")
    (info,) = plan_folder(tmp_path / "seg")
    seg_volume = load(info)
    node = mrml.addSegmentationNode(seg_volume, "Organs")
    assert node.IsA("vtkMRMLSegmentationNode")
    # the source volume found by its series UID and referenced
    role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    assert node.GetNodeReference(role) is volume_node
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 2
    for number, (value, segment) in enumerate(zip((2, 5), segments, strict=True), start=1):
        added = segmentation.GetSegment(f"segment_{number}")
        assert added.GetName() == segment.label
        assert tuple(round(c * 255) for c in added.GetColor()) == segment.color
        voxels = _segment_array(node, f"segment_{number}", volume_node)
        assert np.array_equal(voxels > 0, labels == value)
    import vtk

    first = segmentation.GetSegment("segment_1")
    tag = vtk.reference("")
    assert first.GetTag(first.GetTerminologyEntryTagName(), tag)
    assert "SCT^10200004^Liver" in str(tag)
    assert node.GetAttribute("DICOMPlus.ReferencedSeriesInstanceUID") == source.series_uid


def test_series2_seg_segments_keep_their_voxels(mrml, clean_scene):
    import slicer

    entry = series2_entry("dev_seg_binary")
    (info,) = plan_folder(entry["folder"])
    node = mrml.addSegmentationNode(load(info), "binary")  # source not loaded: own geometry
    segmentation = node.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(2)] == ["sphere", "box"]
    for i, segment in enumerate(entry["expected"]["segments"]):
        segment_id = segmentation.GetNthSegmentID(i)
        voxels = slicer.util.arrayFromSegmentInternalBinaryLabelmap(node, segment_id)
        # non-overlapping segments share one labelmap layer, each with its own label value
        label = segmentation.GetSegment(segment_id).GetLabelValue()
        assert int(np.count_nonzero(voxels == label)) == segment["voxels"]
    assert segmentation.GetNumberOfLayers() == 1


def _object(path, modality: str, text: str) -> str:
    """A DICOM object without pixel data (what DICOMPlus leaves to Slicer's plugins)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.ContentDescription = text
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return str(path)


class _Loadable(SimpleNamespace):
    pass


class TextReportPlugin:
    """A plugin of Slicer's interface: SR files become text nodes (confidence 0.9)."""

    def examineForImport(self, fileLists):
        out = []
        for files in fileLists:
            for path in files:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                if ds.Modality == "SR":
                    out.append(
                        _Loadable(
                            files=[path],
                            name=f"report {ds.ContentDescription}",
                            confidence=0.9,
                            selected=True,
                            warning="",
                        )
                    )
        return out

    def load(self, loadable):
        import slicer

        ds = pydicom.dcmread(loadable.files[0], stop_before_pixels=True)
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTextNode", loadable.name)
        node.SetText(str(ds.ContentDescription))
        return True


class GuessEverythingPlugin:
    """Offers every file at low confidence (chosen only where nothing better is offered) and
    fails to load."""

    def examineForImport(self, fileLists):
        return [
            _Loadable(files=list(f), name=f"guess {f[0]}", confidence=0.1, selected=True, warning="")
            for f in fileLists
        ]

    def load(self, loadable):
        raise RuntimeError("cannot really load this")


class BrokenPlugin:
    def examineForImport(self, fileLists):
        raise RuntimeError("this plugin is broken")

    def load(self, loadable):
        raise AssertionError("never")


@pytest.fixture
def dicom_plugins(slicer_app):
    import slicer

    saved = getattr(slicer.modules, "dicomPlugins", None)
    slicer.modules.dicomPlugins = {
        "TextReportPlugin": TextReportPlugin,
        "GuessEverythingPlugin": GuessEverythingPlugin,
        "BrokenPlugin": BrokenPlugin,
    }
    yield slicer.modules.dicomPlugins
    if saved is None:
        del slicer.modules.dicomPlugins
    else:
        slicer.modules.dicomPlugins = saved


def test_objects_dicomplus_does_not_load_go_to_slicer_plugins(
    mrml, dicom_plugins, clean_scene, tmp_path, logic
):
    import slicer

    sr = _object(tmp_path / "sr" / "report.dcm", "SR", "all clear")
    rtstruct = _object(tmp_path / "rt" / "struct.dcm", "RTSTRUCT", "contours")
    logic.importFolder([tmp_path / "sr", tmp_path / "rt"]).get()
    for path in (sr, rtstruct):  # DICOMPlus itself refuses them
        with pytest.raises(Exception, match="nothing to load"):
            plan_folder(path)
    loaded, problems = mrml.loadWithSlicerPlugins([[sr], [rtstruct]])
    assert loaded == [("TextReportPlugin", "report all clear")]
    node = slicer.mrmlScene.GetFirstNodeByName("report all clear")
    assert node is not None and node.GetText() == "all clear"
    messages = dict(problems)
    assert "examine failed: this plugin is broken" in messages["BrokenPlugin"]
    # the SR's low-confidence guess is not loaded; the RTSTRUCT's is (the only offer) and fails
    assert messages[f"guess {rtstruct}"] == "GuessEverythingPlugin failed to load it: cannot really load this"
    assert f"guess {sr}" not in messages


def test_no_plugins_no_crash(mrml, clean_scene, tmp_path, slicer_app):
    import slicer

    saved = getattr(slicer.modules, "dicomPlugins", None)
    if saved is not None:
        del slicer.modules.dicomPlugins
    try:
        sr = _object(tmp_path / "sr" / "report.dcm", "SR", "x")
        loaded, problems = mrml.loadWithSlicerPlugins([[sr]])
        assert loaded == [] and "no Slicer DICOM plugin" in problems[0][1]
    finally:
        if saved is not None:
            slicer.modules.dicomPlugins = saved


def test_colour_volume_becomes_a_vector_volume(mrml, clean_scene):
    import slicer

    entry = series2_entry("dev_color_ybr_jpeg")
    (info,) = plan_folder(entry["folder"])
    volume = load(info)
    node = mrml.addColourVolumeNode(volume, "us")
    assert node.IsA("vtkMRMLVectorVolumeNode")
    assert node.GetImageData().GetNumberOfScalarComponents() == 3
    assert np.array_equal(slicer.util.arrayFromVolume(node), volume.array)
    probe = entry["expected"]["rgb_probes"][3]
    got = slicer.util.arrayFromVolume(node)[probe["frame"], probe["row"], probe["col"]].astype(int)
    assert np.abs(got - probe["rgb"]).max() <= entry["expected"]["rgb_tolerance"]


def test_one_entry_point_picks_the_node_kind(logic, mrml, tmp_path):
    """What the Logic calls for every loaded volume: scalar, colour or segmentation node."""
    source = make_series(tmp_path / "src", n=4, rows=12, cols=12, patient_id="DISP")
    logic.importFolder([source.folder]).get()
    [ct] = logic.loadSeries(source.series_uid)
    labels = np.zeros((4, 12, 12), np.uint8)
    labels[1:3, 2:6, 2:6] = 1
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in source.files]
    export_segmentation(labels, source.ijk_to_lps, headers, [SegmentInfo(1, "x")], tmp_path / "seg" / "S.dcm")
    scalar_calls = []

    def scalar(volume, name):
        scalar_calls.append(name)
        return mrml.addVolumeNode(volume, name)

    (seg_info,) = plan_folder(tmp_path / "seg")
    seg_node = mrml.addNodeForVolume(load(seg_info), "seg", scalar)
    (colour_info,) = plan_folder(series2_entry("dev_color_rgb_planar")["folder"])
    colour_node = mrml.addNodeForVolume(load(colour_info), "rgb", scalar)
    (ct_info,) = plan_folder(source.folder)
    ct_node = mrml.addNodeForVolume(load(ct_info), "ct", scalar)
    assert seg_node.IsA("vtkMRMLSegmentationNode") and colour_node.IsA("vtkMRMLVectorVolumeNode")
    assert ct_node.IsA("vtkMRMLScalarVolumeNode") and not ct_node.IsA("vtkMRMLVectorVolumeNode")
    assert scalar_calls == ["ct"]
    import slicer

    role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    assert seg_node.GetNodeReference(role) is ct  # the first loaded node of the source series


def test_segmentation_node_round_trips_through_our_seg(logic, mrml, tmp_path):
    """Slicer segmentation -> Logic.exportSegmentation (DICOM SEG) -> load -> segmentation node:
    the same segments, names, colours and voxels on the source volume's grid."""
    import slicer
    import vtk

    source = make_series(tmp_path / "src", n=6, rows=16, cols=14, patient_id="RT1")
    logic.importFolder([source.folder]).get()
    [volume_node] = logic.loadSeries(source.series_uid)
    labels = np.zeros((6, 16, 14), np.uint8)
    labels[1:4, 2:8, 2:8] = 1
    labels[2:6, 9:15, 5:12] = 2
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    slicer.util.updateVolumeFromArray(labelmap, labels)
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    labelmap.SetIJKToRASMatrix(matrix)
    original = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "original")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, original)
    original.GetSegmentation().GetNthSegment(0).SetName("liver")
    original.GetSegmentation().GetNthSegment(1).SetName("lesion")
    original.GetSegmentation().GetNthSegment(1).SetColor(0.9, 0.1, 0.2)
    result = logic.exportSegmentation(original, volume_node)
    (info,) = plan_folder(result.path)
    back = mrml.addSegmentationNode(load(info), "back")
    role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    assert back.GetNodeReference(role) is volume_node
    for index in range(2):
        a = original.GetSegmentation().GetNthSegment(index)
        b = back.GetSegmentation().GetNthSegment(index)
        assert b.GetName() == a.GetName()
        assert np.allclose(b.GetColor(), a.GetColor(), atol=1.5 / 255)
        before = _segment_array(original, original.GetSegmentation().GetNthSegmentID(index), volume_node)
        after = _segment_array(back, back.GetSegmentation().GetNthSegmentID(index), volume_node)
        assert np.array_equal(after > 0, before > 0) and np.array_equal(before > 0, labels == index + 1)


def test_overlapping_segments_stay_whole(mrml, clean_scene, tmp_path):
    """Where segments overlap the labelmap keeps one number, so the node reads the SEG itself."""
    import highdicom as hd
    import slicer

    series = make_series(tmp_path / "ct", n=4, rows=10, cols=12)
    normal = series.ijk_to_lps[:3, 2]
    sources = sorted(
        (pydicom.dcmread(f) for f in series.files),
        key=lambda ds: float(np.asarray(ds.ImagePositionPatient, float) @ normal),
    )
    masks = np.zeros((4, 10, 12, 2), bool)
    masks[0:3, 1:7, 1:8, 0] = True
    masks[1:4, 4:9, 5:11, 1] = True  # overlaps the first
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=f"part {n}",
            segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
            segmented_property_type=hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
            algorithm_type="MANUAL",
        )
        for n in (1, 2)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=masks,
        segmentation_type="BINARY",
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=3,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
    (tmp_path / "seg").mkdir()
    seg.save_as(tmp_path / "seg" / "S.dcm")
    (info,) = plan_folder(tmp_path / "seg")
    volume = load(info)
    assert int((volume.array == 1).sum()) < int(masks[..., 0].sum())  # the labelmap lost some
    node = mrml.addSegmentationNode(volume, "overlap")
    segmentation = node.GetSegmentation()
    for index in range(2):
        segment_id = segmentation.GetNthSegmentID(index)
        voxels = slicer.util.arrayFromSegmentInternalBinaryLabelmap(node, segment_id)
        label = segmentation.GetSegment(segment_id).GetLabelValue()
        assert int(np.count_nonzero(voxels == label)) == int(masks[..., index].sum())


class _SlicerDatabase:
    """The part of ctkDICOMDatabase the hand-off uses: which files it knows, and insert."""

    isOpen = True

    def __init__(self, known):
        self.known = set(known)
        self.inserted = []

    def seriesForFile(self, path):
        return "1.2.3" if path in self.known else ""

    def insert(self, path, storeFile, generateThumbnail):
        self.inserted.append((path, storeFile, generateThumbnail))
        self.known.add(path)


def test_files_are_indexed_in_slicers_database_first(mrml, dicom_plugins, clean_scene, tmp_path):
    import slicer

    sr = _object(tmp_path / "sr" / "report.dcm", "SR", "indexed")
    known = _object(tmp_path / "sr" / "known.dcm", "SR", "already")
    saved = slicer.dicomDatabase
    slicer.dicomDatabase = database = _SlicerDatabase([known])
    try:
        loaded, _ = mrml.loadWithSlicerPlugins([[sr, known]])
    finally:
        slicer.dicomDatabase = saved
    assert database.inserted == [(sr, False, False)]  # linked, not copied; the known one left alone
    assert sorted(name for _, name in loaded) == ["report already", "report indexed"]


def test_the_logic_loads_a_study_with_its_segmentation(dicomplus_module, manifest, tmp_path):
    """As a user loads a study: the engine decodes the CT and the SEG, the Logic builds the
    volume first and the segmentation node referencing it, whatever order the series come in."""
    import slicer

    logic = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db" / "dicomplus.sqlite")
    seg = series2_entry("dev_seg_binary")
    logic.importFolder([seg["folder"], manifest["dev_ct_axial_plain"]["folder"]]).get(120)
    [segSeries] = logic.search("series", {"Modality": "SEG"})
    [ctSeries] = logic.search("series", {"Modality": "CT"})
    nodes, _warnings = logic.load(
        [("series", segSeries.SeriesInstanceUID), ("series", ctSeries.SeriesInstanceUID)]
    )
    [ct] = [n for n in nodes if n.IsA("vtkMRMLScalarVolumeNode")]
    [segmentation] = [n for n in nodes if n.IsA("vtkMRMLSegmentationNode")]
    role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    assert segmentation.GetNodeReference(role) is ct
    assert segmentation.GetSegmentation().GetNumberOfSegments() == len(seg["expected"]["segments"])
