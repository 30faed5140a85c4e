"""Loading into the scene under the harness: real MRML volume nodes, matrices from the shared
manifest, Slicer's subject hierarchy names, 4D as a sequence."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def imported_db(tmp_path_factory, shared_series):
    from DICOMPlusLib.database import Database

    path = tmp_path_factory.mktemp("moduledb") / "dicomplus.sqlite"
    db = Database(path)
    db.import_paths([shared_series])
    db.close()
    return path


@pytest.fixture
def logic(dicomplus_module, imported_db):
    logic = dicomplus_module.DICOMPlusLogic(databasePath=imported_db)
    yield logic
    logic.closeDatabase()


def series_uid_of(manifest_entry):
    import pydicom

    for path in sorted(manifest_entry["folder"].iterdir()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if "SeriesInstanceUID" in ds and "SOPInstanceUID" in ds:
            return ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.PatientID
    raise AssertionError("no series in " + str(manifest_entry["folder"]))


@pytest.mark.parametrize("series_id", ["dev_ct_axial_plain", "dev_mr_oblique", "dev_ct_gantry_tilt"])
def test_load_series_matrix_matches_manifest(logic, manifest, series_id):
    import slicer

    entry = manifest[series_id]
    series_uid, study_uid, patient_id = series_uid_of(entry)
    nodes = logic.loadSeries(series_uid)
    assert len(nodes) == entry["expected"]["n_orientations"]
    node = nodes[0]
    assert node.IsA("vtkMRMLScalarVolumeNode")
    matrix = slicer.util.arrayFromVTKMatrix(_ijk_to_ras(node))
    expected = np.array(entry["expected"]["ijk_to_ras"])
    assert np.allclose(matrix[:3, 3], expected[:3, 3], atol=1e-3)
    assert np.allclose(matrix[:3, :3], expected[:3, :3], atol=1e-3)
    dims = node.GetImageData().GetDimensions()
    assert list(dims) == entry["expected"]["dims"][:3]
    # subject hierarchy: Slicer's own names, so its DICOM export recognises the items
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    C = slicer.vtkMRMLSubjectHierarchyConstants
    series_item = sh.GetItemByDataNode(node)
    assert sh.GetItemUID(series_item, C.GetDICOMUIDName()) == series_uid
    assert len(sh.GetItemUID(series_item, C.GetDICOMInstanceUIDName()).split()) > 0
    study_item = sh.GetItemParent(series_item)
    assert sh.GetItemUID(study_item, C.GetDICOMUIDName()) == study_uid
    assert sh.GetItemLevel(study_item) == C.GetDICOMLevelStudy()
    patient_item = sh.GetItemParent(study_item)
    assert sh.GetItemLevel(patient_item) == C.GetDICOMLevelPatient()
    assert sh.GetItemAttribute(patient_item, C.GetDICOMPatientIDAttributeName()) == patient_id
    if series_id == "dev_ct_gantry_tilt":
        assert "tilt" in node.GetAttribute("DICOMPlus.Warnings").lower()


def _ijk_to_ras(node):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return m


def test_4d_series_loads_as_a_sequence(logic, manifest):
    entry = manifest["dev_mr_4d_fmri"]
    series_uid, _, _ = series_uid_of(entry)
    [node] = logic.loadSeries(series_uid)
    assert node.IsA("vtkMRMLSequenceNode")
    dims = entry["expected"]["dims"]
    assert node.GetNumberOfDataNodes() == dims[3]
    first = node.GetNthDataNode(0)
    assert list(first.GetImageData().GetDimensions()) == dims[:3]


def test_load_study_and_patient(logic, manifest):
    import slicer

    _series, study_uid, patient_id = series_uid_of(manifest["dev_mr_mixed_orientation"])
    nodes, _warnings = logic.load([("study", study_uid)])
    assert len(nodes) == manifest["dev_mr_mixed_orientation"]["expected"]["n_orientations"]
    before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    more, _warnings = logic.load([("patient", patient_id)])
    assert len(more) >= len(nodes)
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == before + len(
        [n for n in more if n.IsA("vtkMRMLScalarVolumeNode")]
    )
