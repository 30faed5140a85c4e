"""Exported series checked by peers: dciodvfy (IOD), dcentvfy (patient/study/series consistency,
including against the source study's own files) and Orthanc (stored and queried back)."""

from __future__ import annotations

import numpy as np
import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database
from DICOMPlusLib.export.series import SeriesMetadata, export_volume, export_volume_to_study

pytestmark = pytest.mark.peers


def _volume(kind: str) -> np.ndarray:
    rng = np.random.default_rng(11)
    if kind == "float":
        return (rng.random((4, 16, 12)) * 500.0 - 100.0).astype(np.float32)
    return rng.integers(-1024, 2000, size=(4, 16, 12)).astype(np.int16)


def _matrix(sheared: bool = False) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = np.diag([0.7, 0.8, 2.5])
    m[:3, 3] = [-50.0, -60.0, 12.0]
    if sheared:
        m[1, 2] = -0.6
    return m


@pytest.fixture
def study(tmp_path):
    source = make_series(tmp_path / "src", n=3, rows=16, cols=12)
    db = Database(tmp_path / "db")
    db.import_paths([source.folder])
    yield db, source
    db.close()


@pytest.mark.parametrize(
    "modality, iod", [("CT", "CTImage"), ("MR", "MRImage"), ("OT", "MultiframeGrayscaleWordSCImage")]
)
@pytest.mark.parametrize("kind", ["int", "float", "sheared"])
def test_dciodvfy_and_dcentvfy(study, tmp_path, dciodvfy_tool, dcentvfy_tool, modality, iod, kind):
    db, source = study
    volume = _volume("float" if kind == "float" else "int")
    result = export_volume_to_study(
        db,
        source.study_uid,
        volume,
        _matrix(sheared=kind == "sheared"),
        SeriesMetadata(modality=modality, series_description="DICOMPlus test"),
        out_dir=tmp_path / "out",
        index=False,
    )
    for path in result.files:
        report = dciodvfy_tool(path)
        assert report.iod == iod, report.output
        assert report.errors == [], report.output
    # one series, consistent across its files and with the study it was written into
    report = dcentvfy_tool([*result.files, *source.files])
    assert report.errors == [], report.output


def test_dciodvfy_without_a_reference_study(tmp_path, dciodvfy_tool, dcentvfy_tool):
    result = export_volume(
        _volume("int"), _matrix(), tmp_path / "out", metadata=SeriesMetadata(modality="CT")
    )
    for path in result.files:
        report = dciodvfy_tool(path)
        assert report.errors == [], report.output
    assert dcentvfy_tool(result.files).errors == []


@pytest.mark.parametrize("series_id, modality", [("dev_ct_gantry_tilt", "CT"), ("dev_mr_oblique", "MR")])
def test_dciodvfy_on_real_studies(tmp_path, manifest, dciodvfy_tool, dcentvfy_tool, series_id, modality):
    """The patient and study modules copied from real scanner headers stay valid."""
    loading = pytest.importorskip("DICOMPlusLib.loading")
    with Database(tmp_path / "db") as db:
        db.import_paths([manifest[series_id]["folder"]], link=True)
        series = db.search("series", {})[0]
        volume = loading.load_series(db, series.SeriesInstanceUID)[0]
        result = export_volume_to_study(
            db,
            series.StudyInstanceUID,
            volume.array,
            volume.ijk_to_lps,
            SeriesMetadata(modality=modality),
            out_dir=tmp_path / "out",
            index=False,
        )
    for path in result.files[:3]:
        report = dciodvfy_tool(path)
        assert report.errors == [], report.output
    assert dcentvfy_tool(result.files).errors == []


@pytest.mark.parametrize("transport", ["c-store", "rest"])
def test_exported_series_queried_back_from_orthanc(study, tmp_path, orthanc_session, transport):
    db, source = study
    result = export_volume_to_study(
        db,
        source.study_uid,
        _volume("float"),
        _matrix(),
        SeriesMetadata(modality="CT", series_description="to orthanc"),
        out_dir=tmp_path / "out",
        index=False,
    )
    if transport == "rest":
        orthanc_session.upload(result.files)
    else:
        from DICOMPlusLib.network.nodes import RemoteNode
        from DICOMPlusLib.network.send import send_paths

        node = RemoteNode.parse(f"{orthanc_session.aet}@127.0.0.1:{orthanc_session.dicom_port}")
        report = send_paths(node, result.files)
        assert report.ok and report.sent == len(result.files), report.to_dict()
    found = orthanc_session.post(
        "/tools/find",
        {"Level": "Series", "Query": {"SeriesInstanceUID": result.series_uid}, "Expand": True},
    )
    assert len(found) == 1
    series = found[0]
    assert series["MainDicomTags"]["SeriesInstanceUID"] == result.series_uid
    assert series["MainDicomTags"]["Modality"] == "CT"
    assert series["MainDicomTags"]["SeriesDescription"] == "to orthanc"
    assert len(series["Instances"]) == len(result.files)
    study = orthanc_session.get(f"/studies/{series['ParentStudy']}")
    assert study["MainDicomTags"]["StudyInstanceUID"] == source.study_uid
    patient = orthanc_session.get(f"/patients/{study['ParentPatient']}")
    assert patient["MainDicomTags"]["PatientID"] == source.patient_id
    # the study level query by StudyInstanceUID finds the new series under it
    studies = orthanc_session.post(
        "/tools/find", {"Level": "Series", "Query": {"StudyInstanceUID": source.study_uid}}
    )
    assert series["ID"] in studies
