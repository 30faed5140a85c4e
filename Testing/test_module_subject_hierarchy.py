"""Subject hierarchy items of loaded series are the ones stock Slicer makes for the same files.

The expected items come from the stock rule, written here from Slicer 5.12's
``DICOMPlugin.addSeriesInSubjectHierarchy`` (../shared/notes/slicer-runtime.md section 6): every
value read from ``loadable.files[0]`` with ``slicer.dicomDatabase.fileValue`` (here: the files
read with pydicom), the instance UIDs of every file of the loadable in the scalar volume plugin's
order (by position along the slice normal), patient and study items created by
``InsertDicomSeriesInHierarchy`` and named with the plugin handler's default display flags
(patient ID and study date shown). With these attributes Slicer's own "Export to DICOM" keeps the
series description, the study and the Frame of Reference instead of inventing new ones.
"""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

SERIES = ["dev_ct_axial_plain", "dev_mr_oblique", "dev_mr_enhanced_multiframe", "dev_mr_enhanced_small"]
SAME_PATIENT = ["dev_ct_axial_plain", "dev_ct_gantry_tilt"]  # patient PLASTIC, two studies


# -- the stock rule ----------------------------------------------------------------------------


def file_value(dataset, keyword):
    """``slicer.dicomDatabase.fileValue``: the stored text, backslash-joined, "" if absent."""
    if keyword not in dataset:
        return ""
    element = dataset[keyword]
    if element.value is None or element.value == "":
        return ""
    if element.VM > 1:
        return "\\".join(str(v) for v in element.value)
    return str(element.value)


def loadable_files(folder):
    """(SeriesInstanceUID, [header]) of a single-series folder, in DICOMScalarVolumePlugin's file
    order: by the projection of ImagePositionPatient on the slice normal (row x column)."""
    headers = []
    for path in sorted(folder.iterdir()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue
        if "SOPInstanceUID" in ds and (
            "ImagePositionPatient" in ds or "PerFrameFunctionalGroupsSequence" in ds
        ):
            headers.append(ds)
    assert headers, f"no image in {folder}"
    if len(headers) > 1:
        row_col = np.array(headers[0].ImageOrientationPatient, dtype=float)
        normal = np.cross(row_col[:3], row_col[3:])
        headers.sort(key=lambda ds: float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), normal)))
    [series_uid] = {ds.SeriesInstanceUID for ds in headers}
    return series_uid, headers


def stock_items(headers, name_flags=(True, False, False, True)):
    """{"series"|"study"|"patient": (name or None, UIDs, attributes)} as stock Slicer writes them."""
    first = headers[0]

    def value(keyword):
        return file_value(first, keyword)

    series_attributes = {
        f"DICOM.{name}": value(keyword)
        for name, keyword in [
            ("Modality", "Modality"),
            ("SeriesNumber", "SeriesNumber"),
            ("FrameOfReferenceUID", "FrameOfReferenceUID"),
            ("SeriesDescription", "SeriesDescription"),
            ("SeriesDate", "SeriesDate"),
            ("SeriesTime", "SeriesTime"),
            ("ContentDate", "ContentDate"),
            ("ContentTime", "ContentTime"),
            ("Manufacturer", "Manufacturer"),
            ("Model", "ManufacturerModelName"),
        ]
    }
    series_attributes["DICOM.ReferencedInstanceUIDs"] = ""  # scalar volumes reference nothing
    instance_uids = " ".join(file_value(ds, "SOPInstanceUID") or "Unknown" for ds in headers)
    study_uid = value("StudyInstanceUID")
    patient_id = value("PatientID") or "Patient-" + study_uid
    patient_name = value("PatientName") or "No name"
    show_patient_id, show_birth_date, show_study_id, show_study_date = name_flags
    patient_item_name = patient_name
    if show_patient_id:
        patient_item_name += f" ({patient_id})"
    if show_birth_date and value("PatientBirthDate"):
        patient_item_name += f" ({value('PatientBirthDate')})"
    description = value("StudyDescription") or "No study description"
    study_item_name = description
    if show_study_id:
        study_item_name += f" ({value('StudyID')})"
    if show_study_date and value("StudyDate"):
        study_item_name += f" ({value('StudyDate')})"
    return {
        "series": (
            None,
            {"DICOM": value("SeriesInstanceUID"), "DICOMInstanceUID": instance_uids},
            series_attributes,
        ),
        "study": (
            study_item_name,
            {"DICOM": study_uid},
            {
                "Level": "Study",
                "DICOM.StudyDescription": description,
                "DICOM.StudyInstanceUID": study_uid,
                "DICOM.StudyID": value("StudyID"),
                "DICOM.StudyDate": value("StudyDate"),
                "DICOM.StudyTime": value("StudyTime"),
            },
        ),
        "patient": (
            patient_item_name,
            {"DICOM": patient_id},
            {
                "Level": "Patient",
                "DICOM.PatientName": patient_name,
                "DICOM.PatientID": patient_id,
                "DICOM.PatientSex": value("PatientSex"),
                "DICOM.PatientBirthDate": value("PatientBirthDate"),
                "DICOM.PatientComments": value("PatientComments"),
            },
        ),
    }


# -- what the module made ----------------------------------------------------------------------


def actual_items(node):
    import slicer

    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    series_item = sh.GetItemByDataNode(node)
    study_item = sh.GetItemParent(series_item)
    patient_item = sh.GetItemParent(study_item)
    assert sh.GetItemParent(patient_item) == sh.GetSceneItemID()

    def describe(item, name=True):
        uids = {
            uid: sh.GetItemUID(item, uid) for uid in ("DICOM", "DICOMInstanceUID") if sh.GetItemUID(item, uid)
        }
        attributes = {a: sh.GetItemAttribute(item, a) for a in sh.GetItemAttributeNames(item)}
        return (sh.GetItemName(item) if name else None, uids, attributes)

    return {
        "series": describe(series_item, name=False),
        "study": describe(study_item),
        "patient": describe(patient_item),
    }


@pytest.fixture(scope="module")
def imported_db(tmp_path_factory, shared_series):
    from DICOMPlusLib.database import Database

    path = tmp_path_factory.mktemp("shdb") / "dicomplus.sqlite"
    db = Database(path)
    db.import_paths([shared_series / name for name in sorted(set(SERIES + SAME_PATIENT))])
    db.close()
    return path


@pytest.fixture
def logic(dicomplus_module, imported_db):
    logic = dicomplus_module.DICOMPlusLogic(databasePath=imported_db)
    yield logic
    logic.closeDatabase()


@pytest.mark.parametrize("series_id", SERIES)
def test_loaded_series_has_stock_subject_hierarchy(logic, manifest, series_id):
    series_uid, headers = loadable_files(manifest[series_id]["folder"])
    [node] = logic.loadSeries(series_uid)
    expected = stock_items(headers)
    assert actual_items(node) == expected
    if "FrameOfReferenceUID" in headers[0]:  # what Slicer's export needs to keep the spatial link
        assert expected["series"][2]["DICOM.FrameOfReferenceUID"] == headers[0].FrameOfReferenceUID


def test_second_series_reuses_patient_and_keeps_its_attributes(logic, manifest):
    """Patient and study items are matched by UID; a second study goes under the same patient."""
    import slicer

    loaded = []
    for series_id in SAME_PATIENT:
        series_uid, headers = loadable_files(manifest[series_id]["folder"])
        [node] = logic.loadSeries(series_uid)
        loaded.append((node, headers))
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    patients = {sh.GetItemParent(sh.GetItemParent(sh.GetItemByDataNode(node))) for node, _ in loaded}
    assert len(patients) == 1
    for node, headers in loaded:
        assert actual_items(node) == stock_items(headers)


def test_stored_headers_are_enough(tmp_path, clean_scene, dicomplus_module, manifest):
    """The attributes come from the database's stored headers when the files are gone; with
    neither header nor file the database records stand in (no Frame of Reference then)."""
    from DICOMPlusLib.database import Database
    from DICOMPlusLib.loading import load_series

    DICOMPlusMRML = dicomplus_module.DICOMPlusMRML
    series_uid, headers = loadable_files(manifest["dev_ct_axial_plain"]["folder"])
    with Database(tmp_path / "db.sqlite") as db:
        db.import_paths([manifest["dev_ct_axial_plain"]["folder"]])
        [volume] = load_series(db, series_uid)
        [series] = db.search("series", {"SeriesInstanceUID": series_uid})
        [study] = db.search("study", {"StudyInstanceUID": series.StudyInstanceUID})
        header = db.header(volume.sop_uids[0])
        shutil.rmtree(db.store.root)  # the files are gone; the headers stay in the database

        node = DICOMPlusMRML.addVolumeNode(volume, "stored headers")
        DICOMPlusMRML.placeInSubjectHierarchy(node, volume, study, series, header=header)
        assert actual_items(node) == stock_items(headers)

        clean_scene.Clear(0)
        node = DICOMPlusMRML.addVolumeNode(volume, "records only")
        DICOMPlusMRML.placeInSubjectHierarchy(node, volume, study, series)
        _, uids, attributes = actual_items(node)["series"]
        assert uids["DICOM"] == series_uid
        assert attributes["DICOM.SeriesDescription"] == headers[0].SeriesDescription
        assert attributes["DICOM.FrameOfReferenceUID"] == ""
        assert actual_items(node)["patient"][2]["DICOM.PatientID"] == headers[0].PatientID
