"""C-FIND (and QIDO-RS) against real peers: our sample PACS, Orthanc and DCMTK dcmqrscp.

The data are synthetic series written for this module (fresh UIDs, a patient ID of their own, so
the shared Orthanc may hold other things); every expected answer is computed from those files
with pydicom, not from any database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pydicom
import pytest

from dicomplus_testing.peers import LOOPBACK, DcmqrscpServer
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, require_executable
from DICOMPlusLib.database import Database
from DICOMPlusLib.errors import QueryError
from DICOMPlusLib.network.nodes import DicomwebEndpoint, DimseEndpoint, RemoteNode
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP
from DICOMPlusLib.network.query import QueryResults, query
from DICOMPlusLib.network.retrieve import retrieve


@dataclass
class Data:
    pid: str
    ct: object
    mr: object
    other: object
    refs: list  # pydicom datasets of every file
    files: list


@dataclass
class Peer:
    kind: str
    node: RemoteNode
    server: object


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    root = tmp_path_factory.mktemp("qr-query-data")
    pid = f"QRQ{uuid.uuid4().hex[:8].upper()}"
    ct = make_series(root / "ct", n=6, rows=16, cols=16, patient_id=pid, patient_name="Query^Test",
                     study_description="Query study", series_number=1, seed=11)  # fmt: skip
    mr = make_series(root / "mr", n=4, rows=16, cols=16, modality="MR", patient_id=pid, patient_name="Query^Test",
                     study_uid=ct.study_uid, study_description="Query study", series_number=2, seed=12)  # fmt: skip
    other = make_series(root / "other", n=3, rows=16, cols=16, patient_id=pid + "B", patient_name="Other^Person",
                        study_date="20230505", study_description="Older study", seed=13)  # fmt: skip
    files = [*ct.files, *mr.files, *other.files]
    refs = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    return Data(pid, ct, mr, other, refs, files)


@pytest.fixture(scope="module")
def sample_pacs(tmp_path_factory, data):
    db = Database(tmp_path_factory.mktemp("qr-query-pacs") / "db")
    db.import_paths([str(f) for f in data.files])
    server = QueryRetrieveSCP(db, QRConfig(ae_title="QRPACS", port=0, host=LOOPBACK)).start()
    yield Peer("sample", RemoteNode("sample", DimseEndpoint("QRPACS", LOOPBACK, server.port)), server)
    server.stop()
    db.close()


@pytest.fixture(scope="module")
def orthanc_peer(orthanc_session, data):
    orthanc_session.upload(data.files)
    return Peer("orthanc", RemoteNode("orthanc", DimseEndpoint(orthanc_session.aet, LOOPBACK, orthanc_session.dicom_port)),
                orthanc_session)  # fmt: skip


@pytest.fixture(scope="module")
def dcmqrscp_peer(tmp_path_factory, data):
    require_executable(DcmqrscpServer.executable)
    server = DcmqrscpServer(tmp_path_factory.mktemp("qr-query-dcmqrscp"))
    server.start()
    try:
        server.load(data.files)
        yield Peer(
            "dcmqrscp", RemoteNode("dcmqrscp", DimseEndpoint(server.aet, LOOPBACK, server.port)), server
        )
    finally:
        server.stop()


@pytest.fixture(params=["sample", "orthanc", "dcmqrscp"])
def peer(request) -> Peer:
    return request.getfixturevalue(f"{request.param}_peer" if request.param != "sample" else "sample_pacs")


def _studies(data: Data, refs=None):
    out = {}
    for r in refs or data.refs:
        out.setdefault(str(r.StudyInstanceUID), []).append(r)
    return out


# -- every level ---------------------------------------------------------------------------------
def test_study_level(peer, data):
    found = {s.StudyInstanceUID: s for s in query(peer.node, "study", {"PatientID": f"{data.pid}*"})}
    expected = _studies(data)
    assert set(found) == set(expected)
    for uid, refs in expected.items():
        s, ref = found[uid], refs[0]
        assert (s.PatientID, s.PatientName, s.StudyDate, s.StudyDescription) == (
            ref.PatientID, str(ref.PatientName), ref.StudyDate, ref.StudyDescription,
        )  # fmt: skip
        if s.NumberOfStudyRelatedInstances is not None:  # dcmqrscp does not support this key
            assert s.NumberOfStudyRelatedInstances == len(refs)
        if s.ModalitiesInStudy:
            assert set(s.ModalitiesInStudy.split("\\")) == {r.Modality for r in refs}


def test_series_level(peer, data):
    found = {
        s.SeriesInstanceUID: s for s in query(peer.node, "series", {"StudyInstanceUID": data.ct.study_uid})
    }
    expected = {}
    for r in data.refs:
        if r.StudyInstanceUID == data.ct.study_uid:
            expected.setdefault(str(r.SeriesInstanceUID), []).append(r)
    assert set(found) == set(expected)
    for uid, refs in expected.items():
        assert (found[uid].Modality, found[uid].SeriesNumber) == (refs[0].Modality, int(refs[0].SeriesNumber))
        assert found[uid].StudyInstanceUID == data.ct.study_uid
        if found[uid].NumberOfSeriesRelatedInstances is not None:
            assert found[uid].NumberOfSeriesRelatedInstances == len(refs)


def test_instance_level(peer, data):
    criteria = {"StudyInstanceUID": data.mr.study_uid, "SeriesInstanceUID": data.mr.series_uid}
    found = {i.SOPInstanceUID: i for i in query(peer.node, "instance", criteria)}
    expected = {str(r.SOPInstanceUID): r for r in data.refs if r.SeriesInstanceUID == data.mr.series_uid}
    assert set(found) == set(expected)
    for uid, ref in expected.items():
        assert found[uid].InstanceNumber == int(ref.InstanceNumber)
        if found[uid].SOPClassUID:  # dcmqrscp does not return it
            assert found[uid].SOPClassUID == ref.SOPClassUID


def test_patient_level_in_the_patient_root_model(peer, data):
    found = {p.PatientID: p for p in query(peer.node, "patient", {"PatientID": f"{data.pid}*"})}
    expected = {str(r.PatientID): str(r.PatientName) for r in data.refs}
    assert {k: v.PatientName for k, v in found.items()} == expected
    # and a study query in the Patient Root model, below one patient
    studies = {
        s.StudyInstanceUID for s in query(peer.node, "study", {"PatientID": data.pid}, model="patient")
    }
    assert studies == {data.ct.study_uid}


def test_matching_keys(peer, data):
    def studies(**criteria):
        return {
            s.StudyInstanceUID for s in query(peer.node, "study", {"PatientID": f"{data.pid}*", **criteria})
        }

    assert studies(PatientName="Query*") == {data.ct.study_uid}
    assert studies(StudyDate="20230101-20231231") == {data.other.study_uid}
    assert studies(StudyDate="20240101-") == {data.ct.study_uid}
    assert studies(StudyDescription="Older*") == {data.other.study_uid}
    series = {s.SeriesInstanceUID for s in query(peer.node, "series",
                                                 {"StudyInstanceUID": data.ct.study_uid, "Modality": "MR"})}  # fmt: skip
    assert series == {data.mr.series_uid}
    if peer.kind != "dcmqrscp":  # dcmqrscp does not support ModalitiesInStudy
        assert studies(Modality="MR") == {data.ct.study_uid}


def test_limit_cancels_the_rest_and_the_node_answers_again(peer, data):
    criteria = {"StudyInstanceUID": data.ct.study_uid, "SeriesInstanceUID": data.ct.series_uid}
    assert len(list(query(peer.node, "instance", criteria, limit=2))) == 2
    assert len(list(query(peer.node, "instance", criteria))) == len(data.ct.files)


def test_extra_return_keys_are_echoed(sample_pacs, data):
    (series,) = query(sample_pacs.node, "series", {"SeriesInstanceUID": data.mr.series_uid,
                                                   "StudyInstanceUID": data.mr.study_uid},
                      return_keys=["Manufacturer"])  # fmt: skip
    ref = next(r for r in data.refs if r.SeriesInstanceUID == data.mr.series_uid)
    assert series.extra == {"Manufacturer": ref.Manufacturer}


# -- character sets ------------------------------------------------------------------------------
NAMES = {"U1": "Müller^Jürgen", "U2": "Παπαδόπουλος^Γιώργος", "U3": "山田^太郎"}


@pytest.fixture(scope="module")
def utf8_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("qr-utf8")
    prefix = uuid.uuid4().hex[:6].upper()
    files = {}
    for key, name in NAMES.items():
        series = make_series(root / key, n=1, rows=8, cols=8, patient_id=prefix + key, seed=len(files))
        ds = pydicom.dcmread(series.files[0])
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = name
        ds.StudyDescription = f"Étude {name}"
        ds.save_as(series.files[0])
        files[prefix + key] = (name, series.files[0])
    return files


def _check_names(node, files):
    prefix = next(iter(files))[:-2]
    found = {
        s.PatientID: (s.PatientName, s.StudyDescription)
        for s in query(node, "study", {"PatientID": prefix + "*"})
    }
    assert found == {pid: (name, f"Étude {name}") for pid, (name, _) in files.items()}
    for pid, (name, _) in files.items():  # a UTF-8 matching key (the request declares ISO_IR 192)
        assert [s.PatientID for s in query(node, "study", {"PatientName": name})] == [pid]


def test_utf8_names_dcmqrscp(dcmqrscp_factory, utf8_files):
    server = dcmqrscp_factory()
    server.load([f for _, f in utf8_files.values()])
    _check_names(RemoteNode("q", DimseEndpoint(server.aet, LOOPBACK, server.port)), utf8_files)


def test_utf8_names_orthanc(orthanc_factory, utf8_files):
    server = orthanc_factory(config={"DefaultEncoding": "Utf8"})
    server.upload([f for _, f in utf8_files.values()])
    _check_names(RemoteNode("o", DimseEndpoint(server.aet, LOOPBACK, server.dicom_port)), utf8_files)


def test_latin1_answers_of_a_default_orthanc_are_decoded(orthanc_session, utf8_files):
    pid, (name, path) = next(iter(utf8_files.items()))  # Müller: representable in Latin-1
    orthanc_session.upload([path])
    (study,) = query(RemoteNode("o", DimseEndpoint(orthanc_session.aet, LOOPBACK, orthanc_session.dicom_port)), "study",
                     {"PatientID": pid})  # fmt: skip
    assert study.PatientName == name


def test_utf8_names_sample_pacs(tmp_path, utf8_files):
    db = Database(tmp_path / "db")
    db.import_paths([str(f) for _, f in utf8_files.values()])
    with QueryRetrieveSCP(db, QRConfig(ae_title="QRPACS", port=0, host=LOOPBACK)) as server:
        _check_names(RemoteNode("p", DimseEndpoint("QRPACS", LOOPBACK, server.port)), utf8_files)
    db.close()


# -- errors --------------------------------------------------------------------------------------
def test_errors_say_what_to_fix(orthanc_session):
    node = RemoteNode("orthanc", DimseEndpoint(orthanc_session.aet, LOOPBACK, orthanc_session.dicom_port))
    with pytest.raises(QueryError, match=r"our AE title STRANGER"):
        list(query(node, "study", calling_ae_title="STRANGER", timeout=5))
    wrong = RemoteNode("orthanc", DimseEndpoint("NOTORTHANC", LOOPBACK, orthanc_session.dicom_port))
    with pytest.raises(QueryError, match="called AE title not recognized"):
        list(query(wrong, "study"))


def test_a_failure_status_becomes_a_query_error(sample_pacs):
    from DICOMPlusLib.network.dimse import qrscu
    from DICOMPlusLib.network.query import open_for_query

    assoc = open_for_query(sample_pacs.node, "DICOMPLUS", [qrscu.STUDY_ROOT_FIND], 10)
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "PATIENT"  # no patient level in the Study Root model (C.6.2)
    identifier.PatientID = ""
    with pytest.raises(qrscu.FinalStatusError, match="0xA900"):
        list(assoc.find(qrscu.STUDY_ROOT_FIND, identifier))
    assoc.release()


# -- the result model, DICOMweb, CLI -------------------------------------------------------------
def test_query_results_expand_lazily_and_retrieve_the_selection(sample_pacs, data, tmp_path):
    results = QueryResults(sample_pacs.node, {"PatientID": data.pid})
    (study,) = results.studies()
    assert study.StudyInstanceUID == data.ct.study_uid
    series = {s.SeriesInstanceUID: s for s in results.series(study.StudyInstanceUID)}
    assert set(series) == {data.ct.series_uid, data.mr.series_uid}
    assert series[data.mr.series_uid].PatientID == data.pid  # completed from the study
    assert {i.SOPInstanceUID for i in results.instances(data.mr.series_uid)} == set(data.mr.sop_uids)
    local = Database(tmp_path / "local")
    assert local.info()["instances"] == 0  # results live in memory only
    results.select(series_uid=data.mr.series_uid)
    report = results.retrieve(local, method="get")
    assert report.complete and set(report.done) == set(data.mr.sop_uids)
    assert {r.SOPInstanceUID for r in local.search("instance", {})} == set(data.mr.sop_uids)
    local.close()


def test_dicomweb_node_queries_and_retrieves_with_qido_and_wado(orthanc_peer, data, tmp_path):
    server = orthanc_peer.server
    node = RemoteNode("web", web=DicomwebEndpoint(server.dicomweb_url))
    assert {s.StudyInstanceUID for s in query(node, "study", {"PatientID": data.pid})} == {data.ct.study_uid}
    assert {s.SeriesInstanceUID for s in query(node, "series", {"StudyInstanceUID": data.ct.study_uid})} == {
        data.ct.series_uid, data.mr.series_uid,
    }  # fmt: skip
    assert {p.PatientID for p in query(node, "patient", {"PatientID": f"{data.pid}*"})} == {
        data.pid,
        data.pid + "B",
    }
    db = Database(tmp_path / "web")
    report = retrieve(node, db, series_uids=[data.mr.series_uid])
    assert report.complete and report.method == "DICOMweb"
    assert {r.SOPInstanceUID for r in db.search("instance", {})} == set(data.mr.sop_uids)
    db.close()


def _cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "DICOMPlusLib.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_query_json_has_the_shape_of_local_search(sample_pacs, data):
    address = f"{sample_pacs.node.ae_title}@{LOOPBACK}:{sample_pacs.node.port}"
    for level, keys in (("study", [f"PatientID={data.pid}"]),
                        ("series", [f"StudyInstanceUID={data.ct.study_uid}"])):  # fmt: skip
        remote = json.loads(_cli("query", address, "--level", level, *keys, "--json").stdout)
        local = json.loads(_cli("--db", str(sample_pacs.server.db.path), "search", "--level", level, *keys,
                                "--json").stdout)  # fmt: skip
        uid = "StudyInstanceUID" if level == "study" else "SeriesInstanceUID"
        remote, local = sorted(remote, key=lambda r: r[uid]), sorted(local, key=lambda r: r[uid])
        assert [r[uid] for r in remote] == [r[uid] for r in local]
        for r, loc in zip(remote, local, strict=True):  # the sample PACS answers from that database
            assert set(r) == set(loc)  # the same keys: the same records
            # equal values, except patient attributes, which a series-level C-FIND does not return
            assert {k: v for k, v in r.items() if v != ""} == {k: v for k, v in loc.items() if r[k] != ""}
            assert level == "series" or r == loc
    text = _cli("query", address, "--level", "series", f"StudyInstanceUID={data.ct.study_uid}").stdout
    assert data.mr.series_uid in text and "Modality" in text
    failed = _cli("query", f"NOBODY@{LOOPBACK}:1", check=False)
    assert failed.returncode == 1 and "dicomplus: error:" in failed.stderr
