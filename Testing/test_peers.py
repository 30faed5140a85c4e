"""The peer fixtures work: Orthanc, dcmqrscp, storescp, DCMTK tools, dciodvfy/dcentvfy.

Only 127.0.0.1 traffic. The tests that check "nothing left behind" after a fixture's teardown
read what an earlier test of this module recorded (pytest runs a module's tests in file order).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from dicomplus_testing.peers import (
    DCMTK,
    LOOPBACK,
    OUR_AET,
    DcmqrscpServer,
    OrthancServer,
    PeerStartError,
    StorescpServer,
    group_members,
    pid_alive,
    port_accepts,
    port_listening,
)
from dicomplus_testing.postgres import PostgresServer
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import free_port, run_script

pytestmark = pytest.mark.peers

N = 6  # slices per synthetic series: enough to count, small enough to be quick

# pid and ports of servers whose fixture teardown a later test checks
_STOPPED_BY_FIXTURE: dict[str, tuple[int, list[int]]] = {}


def _record(key: str, server) -> None:
    assert server.running and pid_alive(server.pid)
    for port in server.ports():
        assert port_listening(port), f"{server!r}: port {port} not listening"
    _STOPPED_BY_FIXTURE[key] = (server.pid, server.ports())


def _assert_gone(pid: int, ports: list[int]) -> None:
    assert not pid_alive(pid), f"pid {pid} still alive"
    assert not Path(f"/proc/{pid}").exists()
    assert group_members(pid) == [], f"process group {pid} still has {group_members(pid)}"
    for port in ports:
        assert not port_listening(port), f"port {port} still listening"
        assert not port_accepts(port)


# ------------------------------------------------------------------------------------------
# pynetdicom helpers
# ------------------------------------------------------------------------------------------


def _ae(*contexts) -> AE:
    ae = AE(ae_title=OUR_AET)
    ae.acse_timeout = 5
    ae.dimse_timeout = 10
    ae.network_timeout = 10
    ae.connection_timeout = 5
    for context in contexts:
        ae.add_requested_context(context, ExplicitVRLittleEndian)
    return ae


@contextmanager
def _associate(port: int, called_aet: str, *contexts):
    assoc = _ae(*contexts).associate(LOOPBACK, port, ae_title=called_aet)
    if assoc.is_established:
        # Nagle: without this, each small PDU waits for the peer's delayed ACK (~40 ms)
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _echo(port: int, called_aet: str) -> int:
    with _associate(port, called_aet, Verification) as assoc:
        assert assoc.is_established, f"association to {called_aet}@{port} not established"
        status = assoc.send_c_echo()
        return status.Status


def _c_store(port: int, called_aet: str, files) -> list[int]:
    with _associate(port, called_aet, CTImageStorage) as assoc:
        assert assoc.is_established
        return [assoc.send_c_store(Path(f)).Status for f in files]


def _find_instances(port: int, called_aet: str, study_uid: str, series_uid: str) -> list[str]:
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = series_uid
    query.SOPInstanceUID = ""
    found, final = [], None
    with _associate(port, called_aet, StudyRootQueryRetrieveInformationModelFind) as assoc:
        assert assoc.is_established
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            assert status is not None, "C-FIND: no response (timeout)"
            if status.Status in (0xFF00, 0xFF01):
                found.append(identifier.SOPInstanceUID)
            else:
                final = status.Status
    assert final == 0x0000
    return found


# ------------------------------------------------------------------------------------------
# DCMTK tools
# ------------------------------------------------------------------------------------------


def test_dcmtk_paths_are_absolute_dcmtk_tools(dcmtk):
    for tool in dcmtk.TOOLS:
        path = getattr(dcmtk, tool)
        assert path == f"/usr/bin/{tool}" and os.access(path, os.X_OK)
    out = dcmtk.run("echoscu", "--version")
    assert "$dcmtk: echoscu v3" in out.stdout + out.stderr  # not pynetdicom's echoscu


def test_dcmtk_run_reports_failure(dcmtk):
    port = socket.socket()
    port.bind((LOOPBACK, 0))
    closed = port.getsockname()[1]
    port.close()
    with pytest.raises(RuntimeError, match="exited with"):
        dcmtk.run("echoscu", "-to", 2, LOOPBACK, closed, timeout=10)
    assert dcmtk.run("echoscu", LOOPBACK, closed, check=False, timeout=10).returncode != 0


# ------------------------------------------------------------------------------------------
# Orthanc
# ------------------------------------------------------------------------------------------


def test_orthanc_echo_and_rest(orthanc_session):
    assert _echo(orthanc_session.dicom_port, orthanc_session.aet) == 0x0000
    system = orthanc_session.get("/system")
    assert system["DicomAet"] == "ORTHANC" and system["DicomPort"] == orthanc_session.dicom_port
    assert "dicom-web" in orthanc_session.get("/plugins")
    modalities = orthanc_session.get("/modalities", expand="")
    assert modalities["dicomplus"]["AET"] == OUR_AET
    assert modalities["dicomplus"]["Port"] == orthanc_session.dicomplus_port


def test_orthanc_checks_called_aet(orthanc_session, dcmtk):
    """DicomCheckCalledAet is true: a wrong called AE title is rejected at association.

    Asked with DCMTK's echoscu, which reads the A-ASSOCIATE-RJ before it sees the connection
    close; pynetdicom's requestor, under a loaded parallel run, once saw the close first and
    reported neither an association nor a rejection."""
    out = dcmtk.run("echoscu", "-aec", "NOT_ORTHANC", LOOPBACK, orthanc_session.dicom_port, check=False)
    assert out.returncode != 0
    assert "Association Rejected" in out.stdout + out.stderr, out.stdout + out.stderr
    assert (
        dcmtk.run("echoscu", "-aec", orthanc_session.aet, LOOPBACK, orthanc_session.dicom_port).returncode
        == 0
    )


def test_orthanc_c_store_synthetic_series(orthanc_session, tmp_path):
    series = make_series(tmp_path / "ct", n=N)
    before = orthanc_session.counts()
    assert _c_store(orthanc_session.dicom_port, orthanc_session.aet, series.files) == [0] * N
    after = orthanc_session.counts()
    assert after["instances"] - before["instances"] == N
    assert after["series"] - before["series"] == 1
    series_id = orthanc_session.resource_id(series.series_uid)
    instances = orthanc_session.get(f"/series/{series_id}")["Instances"]
    assert len(instances) == N
    assert orthanc_session.get(f"/series/{series_id}")["MainDicomTags"]["SeriesInstanceUID"] == (
        series.series_uid
    )


def test_orthanc_dicomweb_qido(orthanc_session, tmp_path):
    series = make_series(tmp_path / "ct", n=N, patient_id="QIDO001")
    answers = orthanc_session.upload(series.folder)
    assert len(answers) == N and {a["Status"] for a in answers} == {"Success"}
    import requests

    session = requests.Session()
    session.trust_env = False
    accept = {"Accept": "application/dicom+json"}
    response = session.get(
        f"{orthanc_session.dicomweb_url}/studies", params={"PatientID": "QIDO001"}, headers=accept, timeout=10
    )
    assert response.status_code == 200, response.text
    studies = response.json()
    assert [s["0020000D"]["Value"][0] for s in studies] == [series.study_uid]
    response = session.get(
        f"{orthanc_session.dicomweb_url}/studies/{series.study_uid}/series/{series.series_uid}/instances",
        headers=accept,
        timeout=10,
    )
    assert sorted(i["00080018"]["Value"][0] for i in response.json()) == sorted(series.sop_uids)
    session.close()


def test_orthanc_store_to_storescp(orthanc_factory, storescp, tmp_path):
    """A fresh Orthanc with an extra modality pushes a study to a DCMTK storescp."""
    orthanc = orthanc_factory(modalities={"storescp": (storescp.aet, storescp.port)})
    assert orthanc.counts() == {"patients": 0, "studies": 0, "series": 0, "instances": 0}
    series = make_series(tmp_path / "ct", n=N)
    orthanc.upload(series.files)
    assert orthanc.counts()["instances"] == N and len(orthanc.study_ids()) == 1
    assert orthanc.echo_modality("storescp")
    answer = orthanc.store_to("storescp", series.study_uid)
    assert answer["InstancesCount"] == N and answer["FailedInstancesCount"] == 0
    received = storescp.wait_for(N)
    assert sorted(pydicom.dcmread(f).SOPInstanceUID for f in received) == sorted(series.sop_uids)
    orthanc.clear()
    assert orthanc.counts()["instances"] == 0
    _record("orthanc", orthanc)
    _record("storescp", storescp)


def test_orthanc_and_storescp_fixtures_left_nothing():
    if "orthanc" not in _STOPPED_BY_FIXTURE:
        pytest.skip("test_orthanc_store_to_storescp did not run")
    for pid, ports in _STOPPED_BY_FIXTURE.values():
        _assert_gone(pid, ports)


def test_orthanc_start_failure_shows_log(tmp_path):
    """A port taken by someone else: with ports fixed by the caller there is no retry, and the
    error carries Orthanc's log. (A missing plugin is *not* fatal for Orthanc 1.10: it logs
    "Inexistent path to plugins" and runs without it.)"""
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        server = OrthancServer(tmp_path / "bad", http_port=taken.getsockname()[1], dicom_port=free_port())
        with pytest.raises(PeerStartError, match="already in use") as info:
            server.start()
    assert "exited with status" in str(info.value)
    assert not server.running and server.pid is None
    assert server.log_text().count("### ") == 1  # one attempt only


# ------------------------------------------------------------------------------------------
# dcmqrscp
# ------------------------------------------------------------------------------------------


def test_dcmqrscp_echo_store_find(dcmqrscp, tmp_path):
    assert _echo(dcmqrscp.port, dcmqrscp.aet) == 0x0000
    series = make_series(tmp_path / "ct", n=N)
    dcmqrscp.load(series.folder)
    assert len(dcmqrscp.stored_files()) == N
    found = _find_instances(dcmqrscp.port, dcmqrscp.aet, series.study_uid, series.series_uid)
    assert sorted(found) == sorted(series.sop_uids)
    # pynetdicom C-STORE of a second series, seen by C-FIND too
    other = make_series(tmp_path / "ct2", n=2, study_uid=series.study_uid)
    assert _c_store(dcmqrscp.port, dcmqrscp.aet, other.files) == [0, 0]
    assert len(_find_instances(dcmqrscp.port, dcmqrscp.aet, other.study_uid, other.series_uid)) == 2
    _record("dcmqrscp", dcmqrscp)


def test_dcmqrscp_fixture_left_nothing():
    if "dcmqrscp" not in _STOPPED_BY_FIXTURE:
        pytest.skip("test_dcmqrscp_echo_store_find did not run")
    _assert_gone(*_STOPPED_BY_FIXTURE["dcmqrscp"])


def test_dcmqrscp_c_move_to_extra_destination(dcmqrscp_factory, storescp, tmp_path):
    qr = dcmqrscp_factory(destinations={"store": (storescp.aet, storescp.port)})
    assert "STORESCP" in qr.config_path.read_text()
    series = make_series(tmp_path / "ct", n=N)
    qr.load(series.files)
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = series.study_uid
    query.SeriesInstanceUID = series.series_uid
    with _associate(qr.port, qr.aet, StudyRootQueryRetrieveInformationModelMove) as assoc:
        assert assoc.is_established
        responses = list(assoc.send_c_move(query, storescp.aet, StudyRootQueryRetrieveInformationModelMove))
    final = responses[-1][0]
    assert final.Status == 0x0000 and final.get("NumberOfCompletedSuboperations", N) == N
    assert len(storescp.wait_for(N)) == N


def test_explicit_stop_leaves_nothing(tmp_path):
    """stop() (the graceful stop; teardowns call discard()) ends the process group and frees the ports,
    including dcmqrscp's forked per-association children."""
    for server in (
        DcmqrscpServer(tmp_path / "qr"),
        StorescpServer(tmp_path / "scp"),
    ):
        server.start()
        pid, ports = server.pid, server.ports()
        assert pid_alive(pid) and all(port_listening(p) for p in ports)
        assert _echo(ports[0], server.aet) == 0x0000
        server.stop()
        _assert_gone(pid, ports)
        server.stop()  # idempotent


def test_discard_leaves_nothing(tmp_path):
    """discard() (what the fixtures' teardowns call: SIGKILL at once, no graceful stop) ends the
    process group and frees the ports: Orthanc, and dcmqrscp with the child it forked for an
    association still open."""
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    pid, ports = orthanc.pid, orthanc.ports()
    assert pid_alive(pid) and all(port_listening(p) for p in ports)
    orthanc.discard()
    _assert_gone(pid, ports)
    orthanc.discard()  # idempotent
    qr = DcmqrscpServer(tmp_path / "qr").start()
    pid, ports = qr.pid, qr.ports()
    with _associate(ports[0], qr.aet, Verification) as assoc:
        assert assoc.is_established
        deadline = time.monotonic() + 30  # dcmqrscp forks the association's child as it accepts
        while len(group_members(pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(group_members(pid)) >= 2, group_members(pid)
        qr.discard()
    _assert_gone(pid, ports)


def test_postgres_stop_does_not_wait_for_its_clients(tmp_path):
    """The PostgreSQL peer's stop() is the server's fast shutdown (SIGINT): it ends the sessions
    of clients still connected and shuts down cleanly. Its smart shutdown (SIGTERM) would wait
    for the client to leave, and the stop would end in SIGKILL after its timeout."""
    import psycopg

    server = PostgresServer(tmp_path / "pg")
    try:
        server.start()
        pid, ports = server.pid, server.ports()
        client = psycopg.connect(server.url())
        server.stop()
        _assert_gone(pid, ports)
        log = server.log_text()
        assert "received fast shutdown request" in log, log[-2000:]
        assert "database system is shut down" in log, log[-2000:]  # a clean end, not SIGKILL
        with pytest.raises(psycopg.OperationalError):
            client.execute("SELECT 1")
        client.close()
    finally:
        server.remove()


# ------------------------------------------------------------------------------------------
# DCMTK storescu -> storescp
# ------------------------------------------------------------------------------------------


def test_storescu_to_storescp(dcmtk, storescp, tmp_path):
    series = make_series(tmp_path / "ct", n=N)
    dcmtk.run(
        "storescu", "-aet", OUR_AET, "-aec", storescp.aet, "+sd", LOOPBACK, storescp.port, series.folder
    )
    received = storescp.wait_for(N)
    assert len(received) == N
    assert sorted(pydicom.dcmread(f).SOPInstanceUID for f in received) == sorted(series.sop_uids)


# ------------------------------------------------------------------------------------------
# dicom3tools
# ------------------------------------------------------------------------------------------


def test_dciodvfy_make_series_ct_is_clean(dciodvfy_tool, tmp_path):
    series = make_series(tmp_path / "ct", n=2)
    result = dciodvfy_tool(series.files[0])
    assert result.errors == [], str(result)


def test_dciodvfy_well_formed_ct(dciodvfy_tool, tmp_path):
    series = make_series(tmp_path / "ct", n=2)
    ds = pydicom.dcmread(series.files[0])
    path = tmp_path / "good.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = dciodvfy_tool(path)
    assert result.iod == "CTImage"
    assert result.errors == [], str(result)
    assert result.returncode == 0 and result.ok


def test_dciodvfy_finds_errors(dciodvfy_tool, tmp_path):
    series = make_series(tmp_path / "ct", n=2)
    ds = pydicom.dcmread(series.files[0])
    del ds.Rows
    del ds.PatientPosition
    path = tmp_path / "broken.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = dciodvfy_tool(path)
    assert result.iod == "CTImage"
    assert result.returncode == 1 and not result.ok
    assert any("<Rows>" in e for e in result.errors), str(result)
    assert any("<PatientPosition>" in e for e in result.errors), str(result)


def test_dcentvfy(dcentvfy_tool, tmp_path):
    series = make_series(tmp_path / "ct", n=3)
    result = dcentvfy_tool(series.files)
    assert result.errors == [] and result.returncode == 0, str(result)
    ds = pydicom.dcmread(series.files[0])
    ds.PatientName = "Other^Name"
    ds.save_as(series.files[0], enforce_file_format=True)
    result = dcentvfy_tool(series.folder)
    assert result.returncode == 1
    assert any("<PatientName>" in e for e in result.errors), str(result)


def test_dcmtk_dcmdump(dcmtk, tmp_path):
    series = make_series(tmp_path / "ct", n=1)
    out = dcmtk.run("dcmdump", "+P", "SOPInstanceUID", series.files[0]).stdout
    assert series.sop_uids[0] in out
    assert DCMTK.path("dcmdump") == "/usr/bin/dcmdump"


def test_a_peer_dies_with_the_test_process_that_started_it(tmp_path):
    """A test process that crashes runs no clean-up (a segmentation fault left ``dicomplus
    serve`` processes behind): the peers it started get SIGKILL as it dies (``dying_with_us``)."""
    script = (
        "import os, signal, sys\n"
        "from dicomplus_testing.peers import StorescpServer\n"
        "server = StorescpServer(sys.argv[1]).start()\n"
        "print(server.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)  # as a crash: no atexit, no fixture's finally\n"
    )
    run = run_script(script, str(tmp_path))
    assert run.returncode == -signal.SIGKILL, run.stderr
    pid = int(run.stdout.split()[0])
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = pid_alive(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "storescp outlived the test process that started it"
