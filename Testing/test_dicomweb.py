"""DICOMweb against Orthanc's DICOMweb plugin on loopback (and two tiny misbehaving servers)."""

from __future__ import annotations

import http.server
import json
import socketserver

import pytest

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import free_port, serve_in_thread
from DICOMPlusLib.database import Database
from DICOMPlusLib.errors import QueryError, RetrieveError
from DICOMPlusLib.jobs import CancelToken
from DICOMPlusLib.models import QueryLevel
from DICOMPlusLib.network.web.client import DicomwebClient, DicomwebEndpoint


@pytest.fixture(scope="module")
def pacs(orthanc_session, tmp_path_factory):
    """Two series of one study and one other study, uploaded to the shared Orthanc."""
    root = tmp_path_factory.mktemp("dicomweb")
    a = make_series(root / "a", n=12, rows=16, cols=16, patient_id="DW1", patient_name="Web^Alice", seed=1)
    b = make_series(
        root / "b",
        n=5,
        rows=16,
        cols=16,
        patient_id="DW1",
        patient_name="Web^Alice",
        study_uid=a.study_uid,
        series_number=2,
        modality="MR",
        seed=2,
    )
    c = make_series(root / "c", n=3, rows=16, cols=16, patient_id="DW2", patient_name="Web^Bob", seed=3)
    orthanc_session.upload(a.folder, b.folder, c.folder)
    return orthanc_session, a, b, c


def test_query_three_levels_equals_what_orthanc_holds(pacs):
    orthanc, a, b, _c = pacs
    client = DicomwebClient(orthanc.dicomweb_url)
    studies = list(client.search("study", {"PatientID": "DW1"}))
    assert [s.StudyInstanceUID for s in studies] == [a.study_uid]
    assert studies[0].PatientName == "Web^Alice" and studies[0].NumberOfStudyRelatedInstances == 17
    # wildcards ('*' and '?' go unencoded: Orthanc 1.10 does not decode %2A; it also matches no
    # PatientName value containing '^' or a space over QIDO, a peer quirk /tools/find does not have)
    assert {s.PatientID for s in client.search("study", {"PatientID": "DW?"})} >= {"DW1", "DW2"}
    assert {s.PatientID for s in client.search("study", {"PatientName": "web*"})} >= {"DW1", "DW2"}
    series = list(client.search("series", study_uid=a.study_uid))
    assert sorted(s.SeriesInstanceUID for s in series) == sorted([a.series_uid, b.series_uid])
    assert {s.Modality for s in series} == {"CT", "MR"}
    instances = list(client.search(QueryLevel.INSTANCE, study_uid=a.study_uid, series_uid=b.series_uid))
    assert sorted(i.SOPInstanceUID for i in instances) == sorted(b.sop_uids)
    # paging: 12 instances in pages of 5
    paged = list(client.search("instance", study_uid=a.study_uid, series_uid=a.series_uid, page_size=5))
    assert sorted(i.SOPInstanceUID for i in paged) == sorted(a.sop_uids)
    assert len(list(client.search("instance", study_uid=a.study_uid, series_uid=a.series_uid, limit=7))) == 7


def test_retrieve_one_selected_series_then_resume(pacs, tmp_path):
    orthanc, a, b, _ = pacs
    db = Database(tmp_path / "db")
    client = DicomwebClient(orthanc.dicomweb_url)
    seen = []
    report = client.retrieve(db, a.study_uid, b.series_uid, progress=lambda d, t, c: seen.append((d, t)))
    assert report.complete and len(report.done) == 5
    assert db.info() == {"patients": 1, "studies": 1, "series": 1, "instances": 5}  # that series only
    assert seen[-1] == (5, 5)
    # delete two, then resume fetches exactly those two
    db.delete(instance=b.sop_uids[0])
    db.delete(instance=b.sop_uids[3])
    again = client.retrieve(db, a.study_uid, b.series_uid)
    assert sorted(again.done) == sorted([b.sop_uids[0], b.sop_uids[3]])
    assert len(again.skipped) == 3 and db.info()["instances"] == 5


def test_cancel_keeps_complete_instances_and_resume_finishes(pacs, tmp_path):
    orthanc, a, _, _ = pacs
    db = Database(tmp_path / "db")
    token = CancelToken()

    def progress(done, total, current):
        if done >= 4:
            token.cancel()

    report = DicomwebClient(orthanc.dicomweb_url).retrieve(
        db, a.study_uid, a.series_uid, progress=progress, cancel=token
    )
    assert report.cancelled and 4 <= len(report.done) < 12
    assert db.info()["instances"] == len(report.done)
    again = DicomwebClient(orthanc.dicomweb_url).retrieve(db, a.study_uid, a.series_uid)
    assert again.complete and len(again.done) == 12 - len(report.done)
    assert db.info()["instances"] == 12


def test_retrieve_of_what_the_server_does_not_hold_fails(pacs, tmp_path):
    """A study or series Orthanc does not hold is an error, as the DIMSE retrieve says it: it was
    "retrieved 0 of 0 instances, complete" (exit 0), read as a success by a script."""
    from DICOMPlusLib.network.nodes import RemoteNode
    from DICOMPlusLib.network.retrieve import retrieve

    orthanc, a, _b, _c = pacs
    node = RemoteNode.dicomweb("web", orthanc.dicomweb_url)
    db = Database(tmp_path / "db")
    with pytest.raises(RetrieveError, match=r"has no study 1\.2\.3\.999"):
        retrieve(node, db, study_uid="1.2.3.999")
    with pytest.raises(RetrieveError, match=r"has no series 1\.2\.3\.998 in study"):
        retrieve(node, db, study_uid=a.study_uid, series_uids=["1.2.3.998"])
    assert db.info()["instances"] == 0
    report = retrieve(node, db, study_uid=a.study_uid, series_uids=[a.series_uid])  # what it holds
    assert report.complete and len(report.done) == 12
    db.close()


def test_send_a_series_and_query_it_back(orthanc_session, tmp_path):
    s = make_series(tmp_path / "s", n=4, rows=8, cols=8, patient_id="STOW1", seed=7)
    (tmp_path / "junk.dcm").write_text("not dicom")
    client = DicomwebClient(orthanc_session.dicomweb_url)
    report = client.store([*s.files, tmp_path / "junk.dcm"])
    assert sorted(report.done) == sorted(s.sop_uids)
    assert list(report.failed) == [str(tmp_path / "junk.dcm")]
    series = list(client.search("series", {"PatientID": "STOW1"}, study_uid=s.study_uid))
    assert [x.SeriesInstanceUID for x in series] == [s.series_uid]
    assert series[0].NumberOfSeriesRelatedInstances == 4


def test_wrong_url_and_401_are_clear(orthanc_factory, tmp_path):
    with pytest.raises(QueryError, match="cannot connect") as refused:
        list(DicomwebClient(f"http://127.0.0.1:{free_port()}/dicom-web").search("study"))
    # the system's reason, not urllib3's account of the whole URL with its query
    assert "/dicom-web: Connection refused (is the server running" in str(refused.value)
    assert "includefield" not in str(refused.value) and "HTTPConnectionPool" not in str(refused.value)
    secured = orthanc_factory(config={"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "secret"}})
    with pytest.raises(QueryError, match=r"HTTP 401.*authentication required"):
        list(DicomwebClient(secured.dicomweb_url).search("study"))
    ok = DicomwebClient(DicomwebEndpoint(secured.dicomweb_url, username="alice", password="secret"))
    assert list(ok.search("study")) == []
    with pytest.raises(QueryError, match="HTTP 404") as missing:
        list(
            DicomwebClient(
                DicomwebEndpoint(secured.url + "/not-dicom-web", username="alice", password="secret")
            ).search("study")
        )
    assert f"HTTP 404 from {secured.url}/not-dicom-web/studies: not found" in str(missing.value)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers QIDO with fixed results and WADO with a multipart stream cut after one part."""

    parts: list[bytes] = []
    busy_left = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        if _Handler.busy_left > 0:
            _Handler.busy_left -= 1
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if (
            "/instances" in self.path
            and self.path.count("/instances") == 1
            and "/instances/" not in self.path
        ):
            body = (
                "["
                + ",".join(json.dumps({"00080018": {"vr": "UI", "Value": [sop]}}) for sop in self.server.sops)
                + "]"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=XYZ')
        self.end_headers()
        first = self.server.parts[0]
        self.wfile.write(b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n" + first + b"\r\n")
        second = self.server.parts[1]
        self.wfile.write(b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n" + second[: len(second) // 2])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def broken_server(tmp_path):
    s = make_series(tmp_path / "s", n=3, rows=8, cols=8, seed=11)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.sops = [f.name for f in s.files]
    server.sops = s.sop_uids
    order = {uid: i for i, uid in enumerate(s.sop_uids)}
    server.parts = [f.read_bytes() for f in sorted(s.files, key=lambda f: order[_sop(f)])]
    serve_in_thread(server)
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web", s
    server.shutdown()
    server.server_close()


def _sop(path):
    import pydicom

    return pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID


def test_server_that_stops_mid_retrieve(broken_server, tmp_path):
    url, s = broken_server
    db = Database(tmp_path / "db")
    with pytest.raises(RetrieveError, match="closed the connection after 1 of 3 instances"):
        DicomwebClient(url).retrieve(db, s.study_uid, s.series_uid)
    assert db.info()["instances"] == 1  # the complete one, nothing half-stored
    assert db.instance(s.sop_uids[0])


def test_retry_with_backoff_on_503(broken_server):
    url, s = broken_server
    _Handler.busy_left = 2
    found = list(
        DicomwebClient(url, backoff=0.01).search("instance", study_uid=s.study_uid, series_uid=s.series_uid)
    )
    assert len(found) == 3 and _Handler.busy_left == 0
    _Handler.busy_left = 9
    with pytest.raises(QueryError, match="HTTP 503"):
        list(DicomwebClient(url, retries=2, backoff=0.01).search("instance", study_uid=s.study_uid))
    _Handler.busy_left = 0


def test_dicomweb_node_in_the_cli(orthanc_factory, tmp_path, capsys, monkeypatch):
    """`nodes add NAME --dicomweb URL` (with credentials), then query, retrieve and send through it."""
    import os
    import stat

    from DICOMPlusLib.cli import main

    secured = orthanc_factory(config={"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "secret"}})
    s = make_series(tmp_path / "s", n=3, rows=8, cols=8, patient_id="WEBCLI", seed=21)
    nodes = str(tmp_path / "nodes.json")
    db = str(tmp_path / "db")

    def run(*argv):
        code = main(list(argv))
        out = capsys.readouterr().out
        assert code == 0, out
        return out

    run("nodes", "add", "web", "--dicomweb", secured.dicomweb_url, "--user", "alice", "--password", "secret",
        "--nodes", nodes)  # fmt: skip
    assert stat.S_IMODE(os.stat(nodes).st_mode) == 0o600  # credentials: owner only
    monkeypatch.setenv("DICOMPLUS_NODES", nodes)
    run("--db", db, "send", "web", str(s.folder))  # STOW-RS
    studies = json.loads(run("query", "web", "PatientID=WEBCLI", "--json"))
    assert [x["StudyInstanceUID"] for x in studies] == [s.study_uid]
    report = json.loads(
        run("--db", db, "retrieve", "web", "--series", s.series_uid, "--study", s.study_uid, "--json")
    )
    assert report["complete"] and report["done"] == 3
    info = json.loads(run("--db", db, "info", "--json"))
    assert info["instances"] == 3


def test_engine_retrieve_into_a_store_it_cannot_write_is_one_error(pacs, tmp_path, capsys, monkeypatch):
    """A DICOMweb retrieve run by the engine into a store it cannot write (here a file where the
    folder should be; a read-only mount alike) was a raw FileExistsError from the spooling: one
    DatabaseError now says which store and why, before anything is fetched; the CLI says it in
    one line (exit 1)."""
    from DICOMPlusLib.cli import main
    from DICOMPlusLib.engine.client import SubprocessEngine
    from DICOMPlusLib.errors import DatabaseError
    from DICOMPlusLib.network.nodes import RemoteNode

    server, a, b, _c = pacs
    Database(tmp_path / "db").close()
    blocked = tmp_path / "store-is-a-file"
    blocked.write_text("not a folder")
    node = RemoteNode.dicomweb("web", server.dicomweb_url)
    args = {"db": str(tmp_path / "db"), "store": str(blocked), "node": node, "study": a.study_uid,
            "method": "dicomweb"}  # fmt: skip
    with SubprocessEngine() as engine:
        job = engine.submit("retrieve", args, "Retrieve")
        with pytest.raises(DatabaseError, match=f"cannot write into the store {blocked}: it is a file"):
            job.get(60)
        # the engine is still there, and retrieves into a database whose store it can write
        report = engine.submit(
            "retrieve", {**args, "db": str(tmp_path / "ok"), "store": None}, "Retrieve"
        ).get(120)
        assert len(report.done) == len(a.files) + len(b.files)  # the study: both series
    assert blocked.read_text() == "not a folder"

    monkeypatch.setenv("DICOMPLUS_NODES", str(tmp_path / "nodes.json"))
    assert main(["nodes", "add", "web", "--dicomweb", server.dicomweb_url]) == 0
    capsys.readouterr()
    code = main(["--db", str(tmp_path / "db2"), "--store", str(blocked), "retrieve",
                 "web", "--study", a.study_uid])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"dicomplus: error: cannot write into the store {blocked}: it is a file"), err
