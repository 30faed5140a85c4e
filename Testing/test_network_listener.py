"""The C-STORE listener against real peers (DCMTK storescu, Orthanc, pynetdicom) and faults.

Every instance must be stored (raw bytes, hashed file name), indexed and committed before its
success response: the checks on the database run right after the sender returns, without
waiting. Faults: allow list, a hostile SOP Instance UID, a full disk, kill -9, many concurrent
associations, aborted and malformed associations. Both engines (direct, pynetdicom) take the
interoperability tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest

from dicomplus_testing.peers import LOOPBACK, tool_env
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.database import Database
from DICOMPlusLib.errors import NetworkError
from DICOMPlusLib.network.dimse import scu, ul
from DICOMPlusLib.network.echo import EchoProblem, echo
from DICOMPlusLib.network.listener import Listener, ListenerConfig
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode, TLSSettings
from DICOMPlusLib.network.send import SendOptions, data_set_offset, send_paths

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def data_set(path) -> bytes:
    data = Path(path).read_bytes()
    return data[data_set_offset(data[:4096]) :]


def assert_consistent(db: Database, orphans: int = 0) -> int:
    """Integrity check, every row's file complete and parseable, no temporary file left, and
    at most ``orphans`` unreferenced (complete) files. Returns the number of instances."""
    conn = sqlite3.connect(db.path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT SOPInstanceUID, path, size FROM instances").fetchall()
    finally:
        conn.close()
    referenced = set()
    for sop, path, size in rows:
        assert os.path.getsize(path) == size, sop
        assert str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) == sop
        referenced.add(os.path.realpath(path))
    stored = {os.path.realpath(p) for p in db.store.root.rglob("*.dcm")}
    assert referenced <= stored
    unreferenced = stored - referenced
    assert len(unreferenced) <= orphans, unreferenced
    for path in unreferenced:  # complete files, never partial ones
        pydicom.dcmread(path).pixel_array  # noqa: B018
    assert not [p for p in db.store.root.rglob(".incoming-*")]
    return len(rows)


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "db")
    yield database
    database.close()


def start_listener(db, **kwargs) -> Listener:
    kwargs.setdefault("port", 0)
    kwargs.setdefault("host", LOOPBACK)
    kwargs.setdefault("series_idle", 0.3)
    return Listener(db, ListenerConfig(**kwargs)).start()


@pytest.fixture
def listener(db):
    lst = start_listener(db)
    yield lst
    lst.stop()


def storescu(
    dcmtk, port: int, files, *, aet: str = "PUSHER", aec: str = "DICOMPLUS", check: bool = True, extra=()
):
    return dcmtk.run(
        "storescu", "-aet", aet, "-aec", aec, *extra, LOOPBACK, port, *files, check=check, timeout=300
    )


# --------------------------------------------------------------------------------------------
# Interoperability
# --------------------------------------------------------------------------------------------


def test_storescu_push_is_stored_indexed_and_notified(listener, db, dcmtk, tmp_path):
    series = make_series(tmp_path / "s", n=12, rows=32, cols=32, seed=4)
    instances, completes = [], []
    listener.subscribe(instances.append, completes.append)
    storescu(dcmtk, listener.port, series.files)
    # committed before each success response: no waiting needed
    assert db.info()["instances"] == 12
    records = db.instances(series.series_uid)
    assert {r.SOPInstanceUID for r in records} == set(series.sop_uids)
    sources = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in series.files}
    for record in records:
        path = Path(record.path)
        assert db.store.contains(path)
        assert path.name == hashlib.sha256(record.SOPInstanceUID.encode()).hexdigest() + ".dcm"
        assert data_set(path) == data_set(sources[record.SOPInstanceUID])  # bytes as received
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        assert meta.MediaStorageSOPInstanceUID == record.SOPInstanceUID
        assert meta.SourceApplicationEntityTitle.strip() == "PUSHER"
    assert wait_until(lambda: len(completes) == 1)
    assert len(instances) == 12 and {i.calling_ae for i in instances} == {"PUSHER"}
    assert completes[0].series_instance_uid == series.series_uid and completes[0].count == 12
    assert_consistent(db)


def test_an_instance_received_again_is_notified_with_the_path_of_its_row(listener, db, dcmtk, tmp_path):
    """Issue #15: the replacement is stored under a new, unique name; the notification must
    carry that name (it carried the first file's, which the replacement had removed)."""
    series = make_series(tmp_path / "s", n=2, rows=16, cols=16, seed=8)
    arrived = []
    listener.subscribe(arrived.append)
    storescu(dcmtk, listener.port, series.files)
    storescu(dcmtk, listener.port, series.files[:1])
    assert wait_until(lambda: len(arrived) == 3)
    first, again = arrived[0], arrived[2]
    assert again.sop_instance_uid == first.sop_instance_uid and again.status == "replaced"
    row = db.instance(again.sop_instance_uid)
    assert again.path == row.path and again.path != first.path
    assert os.path.exists(again.path) and not os.path.exists(first.path)
    assert str(pydicom.dcmread(again.path, stop_before_pixels=True).SOPInstanceUID) == again.sop_instance_uid
    assert_consistent(db)


def test_orthanc_pushes_a_study(orthanc_factory, db, tmp_path):
    port = free_port()
    orthanc = orthanc_factory(dicomplus_port=port)
    a = make_series(tmp_path / "a", n=10, rows=32, cols=32, patient_id="ORTH1", seed=5)
    b = make_series(tmp_path / "b", n=6, rows=32, cols=32, patient_id="ORTH1", study_uid=a.study_uid,
                    series_number=2, modality="MR", seed=6)  # fmt: skip
    orthanc.upload(a.folder, b.folder)
    with start_listener(db, port=port):
        answer = orthanc.store_to("dicomplus", a.study_uid)
        assert int(answer["InstancesCount"]) == 16 and int(answer["FailedInstancesCount"]) == 0
        assert db.info() == {"patients": 1, "studies": 1, "series": 2, "instances": 16}
        assert {r.SOPInstanceUID for r in db.instances(b.series_uid)} == set(b.sop_uids)
        assert orthanc.echo_modality("dicomplus")
    assert_consistent(db)


def test_compressed_transfer_syntaxes_are_kept(listener, db, dcmtk, tmp_path):
    from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

    series = make_series(tmp_path / "s", n=2, rows=32, cols=32, seed=7)
    rle = pydicom.dcmread(series.files[0])
    rle.compress(RLELossless)
    rle_path = tmp_path / "rle.dcm"
    rle.save_as(rle_path)
    deflated = pydicom.dcmread(series.files[1])
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    deflated_path = tmp_path / "deflated.dcm"
    deflated.save_as(deflated_path)
    storescu(dcmtk, listener.port, [rle_path], extra=["-xr"])  # propose RLE (and uncompressed)
    storescu(dcmtk, listener.port, [deflated_path], extra=["-xd"])
    got = {r.SOPInstanceUID: r for r in db.instances(series.series_uid)}
    assert got[str(rle.SOPInstanceUID)].TransferSyntaxUID == RLELossless
    assert data_set(got[str(rle.SOPInstanceUID)].path) == data_set(rle_path)
    assert got[str(deflated.SOPInstanceUID)].TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    back = pydicom.dcmread(got[str(deflated.SOPInstanceUID)].path)
    assert back.pixel_array.tolist() == pydicom.dcmread(series.files[1]).pixel_array.tolist()


def test_port_in_use_is_a_clear_error(db):
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(NetworkError, match="already in use"):
            Listener(db, ListenerConfig(port=port, host=LOOPBACK)).start()


def test_tls_listener(db, dcmtk, tmp_path, tls_certificate):
    cert, key = tls_certificate.cert, tls_certificate.key
    series = make_series(tmp_path / "s", n=3, rows=16, cols=16, seed=8)
    tls = TLSSettings(cert_file=str(cert), key_file=str(key))
    with start_listener(db, tls=tls) as lst:
        node = RemoteNode(
            "tls",
            DimseEndpoint(
                "DICOMPLUS", LOOPBACK, lst.port, tls=True, tls_settings=TLSSettings(ca_file=str(cert))
            ),
        )
        report = send_paths(node, [series.files[0]])
        assert report.ok and report.sent == 1
        plain = RemoteNode("plain", DimseEndpoint("DICOMPLUS", LOOPBACK, lst.port))
        assert not echo(plain, timeout=5).ok  # plain DICOM to a TLS port does not work
        # DCMTK with anonymous TLS, trusting our certificate
        storescu(dcmtk, lst.port, series.files[1:], extra=["+tla", "+cf", str(cert)])
    assert db.info()["instances"] == 3


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


def test_unknown_calling_ae_is_rejected_with_the_allow_list(db, dcmtk, tmp_path):
    series = make_series(tmp_path / "s", n=2, rows=16, cols=16, seed=9)
    with start_listener(db, allowed_calling_aets=("GOODAE",)) as lst:
        bad = storescu(dcmtk, lst.port, series.files, aet="BADAE", check=False)
        assert bad.returncode != 0
        assert "reject" in (bad.stdout + bad.stderr).lower()
        assert db.info()["instances"] == 0
        result = echo(
            RemoteNode("me", DimseEndpoint("DICOMPLUS", LOOPBACK, lst.port)), calling_ae_title="BADAE"
        )
        assert result.problem is EchoProblem.REJECTED_CALLING_AE
        storescu(dcmtk, lst.port, series.files, aet="GOODAE")
        assert db.info()["instances"] == 2


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_hostile_sop_instance_uid_is_stored_safely(listener, db, dcmtk, tmp_path):
    series = make_series(tmp_path / "deep" / "er" / "s", n=1, rows=8, cols=8, seed=10)
    ds = pydicom.dcmread(series.files[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "../../x"
    evil = tmp_path / "evil.dcm"
    ds.save_as(evil)
    before = set(db.path.parent.parent.rglob("*"))
    storescu(dcmtk, listener.port, [evil])
    record = db.instance("../../x")
    assert db.store.contains(record.path)
    assert Path(record.path).name == hashlib.sha256(b"../../x").hexdigest() + ".dcm"
    created = {p for p in set(db.path.parent.parent.rglob("*")) - before if p.is_file()}
    assert created and all(db.store.contains(p) or p.parent == db.path.parent for p in created)
    assert not any(p.name == "x" for p in db.path.parent.parent.rglob("*"))
    assert_consistent(db)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return proc.returncode == 0


@contextlib.contextmanager
def small_disk(path: Path, monkeypatch, budget: int = 2 << 20):
    """A 2 MiB file system at ``path`` (tmpfs). Where mounting is not allowed, writes of the
    listener's storage path raise ENOSPC past ``budget`` bytes instead (a simulation)."""
    if _mount_tmpfs(path, "2m"):
        try:
            yield "tmpfs"
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
        return
    import errno

    from DICOMPlusLib.network import storage

    written = [0]
    real_write = storage.IncomingFile.write

    def write(self, data):
        written[0] += len(data)
        if written[0] > budget:
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")
        return real_write(self, data)

    monkeypatch.setattr(storage.IncomingFile, "write", write)
    yield "simulated"


@pytest.mark.parametrize("where", ["store", "database and store"])
def test_full_disk_answers_out_of_resources(tmp_path, monkeypatch, where):
    disk = tmp_path / "small"
    with small_disk(disk, monkeypatch) as kind:
        if where == "store":
            database = Database(tmp_path / "db", store_dir=disk / "store")
        else:
            if kind != "tmpfs":
                pytest.skip("needs a real small file system (mount not permitted)")
            database = Database(disk / "db")
        series = make_series(tmp_path / "s", n=8, rows=512, cols=512, seed=11)  # 8 x 512 KiB > 2 MiB
        try:
            with start_listener(database) as lst:
                report = send_paths(
                    RemoteNode("me", DimseEndpoint("DICOMPLUS", LOOPBACK, lst.port)),
                    [series.folder],
                    SendOptions(retries=0),
                )
                statuses = [r.status for r in report.results]
                assert 0xA700 in statuses, statuses
                assert all(s in (0x0000, 0xA700) for s in statuses), statuses
                stored = assert_consistent(database)
                assert stored == statuses.count(0x0000) >= 1
                assert echo(
                    RemoteNode("me", DimseEndpoint("DICOMPLUS", LOOPBACK, lst.port))
                ).ok  # still serving
        finally:
            database.close()


def _count(db_path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_kill_9_during_receive_leaves_a_consistent_database(dcmtk, tmp_path):
    series = make_series(tmp_path / "s", n=400, rows=256, cols=256, seed=12)
    port = free_port()
    db_dir = tmp_path / "db"
    cmd = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(db_dir), "listen", "--port", str(port),
           "--host", LOOPBACK, "--json"]  # fmt: skip
    listener = subprocess.Popen(
        cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sender = None
    try:
        assert '"listening"' in listener.stdout.readline()
        sender = subprocess.Popen(
            [dcmtk.path("storescu"), "-aec", "DICOMPLUS", LOOPBACK, str(port), *map(str, series.files)],
            env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert wait_until(lambda: _count(db_dir / "dicomplus.sqlite") >= 20, timeout=60)
        listener.kill()  # SIGKILL in the middle of the transfer
        listener.wait(10)
        sender.wait(60)
        assert sender.returncode != 0  # the transfer was cut
    finally:
        for proc in (listener, sender):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
    db = Database(db_dir)
    try:
        # A temporary file of the instance being received may remain (never referenced; the
        # next start sweeps it once it is old), and, when the kill fell between the rename into
        # the store and the commit, that instance's complete file without its row (documented
        # by Database.commit_parsed). Never a row without its complete file.
        for leftover in db.store.root.glob(".incoming-*"):
            leftover.unlink()
        count = assert_consistent(db, orphans=1)
        assert 20 <= count < 400
        with start_listener(db) as lst:  # and it serves again
            storescu(dcmtk, lst.port, series.files)
        assert assert_consistent(db, orphans=1) == 400
    finally:
        db.close()


def test_16_concurrent_associations_lose_nothing(listener, db, dcmtk, tmp_path):
    senders = []
    uids = set()
    for k in range(16):
        s = make_series(tmp_path / f"s{k}", n=50, rows=16, cols=16, patient_id=f"CONC{k:02d}", seed=100 + k)
        uids.update(s.sop_uids)
        argv = [
            dcmtk.path("storescu"),
            "-aet",
            f"SENDER{k}",
            "-aec",
            "DICOMPLUS",
            LOOPBACK,
            str(listener.port),
        ]
        argv += [str(f) for f in s.files]
        senders.append(
            subprocess.Popen(
                argv, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    for proc in senders:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    assert db.info()["instances"] == 800
    conn = db._reader()
    assert {r[0] for r in conn.execute("SELECT SOPInstanceUID FROM instances")} == uids
    assert assert_consistent(db) == 800


def _assoc_rq(port: int) -> scu.ClientAssociation:
    return scu.associate(
        LOOPBACK, port, called_ae="DICOMPLUS", calling_ae="FAULTY", contexts=[(CT, [EXPLICIT])]
    )


def test_peer_abort_mid_transfer_leaves_nothing_and_listener_goes_on(listener, db, dcmtk, tmp_path):
    series = make_series(tmp_path / "s", n=2, rows=256, cols=256, seed=13)
    cx = None
    for ending in ("abort", "close"):
        assoc = _assoc_rq(listener.port)
        cx = next(iter(assoc.contexts.values()))
        payload = data_set(series.files[0])
        from DICOMPlusLib.network.dimse import messages as dimse

        command = dimse.store_request(1, CT, str(pydicom.dcmread(series.files[0]).SOPInstanceUID))
        half = payload[: len(payload) // 2]
        assoc.stream.send(
            ul.pdata_header(cx.id, 0x03, len(command)), command, ul.pdata_header(cx.id, 0x00, len(half)), half
        )
        if ending == "abort":
            assoc.abort()
        else:
            assoc.stream.close()
    assert wait_until(lambda: not list(db.store.root.rglob(".incoming-*")))
    storescu(dcmtk, listener.port, series.files)
    assert db.info()["instances"] == 2
    assert_consistent(db)


def _raw_exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=10) as s:
        s.sendall(payload)
        with contextlib.suppress(OSError):  # the listener may have answered and closed already
            s.shutdown(socket.SHUT_WR)  # nothing more is coming: a short PDU is not just slow
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def _ended_by_peer(assoc) -> bool:
    """The peer answered with A-ABORT or closed the connection (pynetdicom closes)."""
    try:
        pdu_type, _ = assoc.stream.read_pdu(10)
    except ul.ConnectionClosed:
        return True
    finally:
        assoc.stream.close()
    return pdu_type == ul.A_ABORT


# pynetdicom's reactor thread dies with an exception on some of these (the listener goes on)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_malformed_pdus_do_not_stop_the_listener(listener, db, dcmtk, tmp_path):
    series = make_series(tmp_path / "s", n=1, rows=16, cols=16, seed=14)
    rq = ul.AssociateRQ("DICOMPLUS", "FAULTY", [ul.ContextRQ(1, CT, [EXPLICIT])], max_length=16384).encode()
    cases = {
        "http": b"GET / HTTP/1.0\r\n\r\n",
        "unknown PDU type": b"\x09\x00" + struct.pack(">I", 4) + b"\0\0\0\0",
        "huge length": b"\x01\x00" + struct.pack(">I", 0xFFFFFFF0) + b"\0" * 64,
        "truncated A-ASSOCIATE-RQ": rq[:6] + rq[6:40],
        "item past its PDU": rq[:74] + b"\x20\x00\xff\xff" + b"\0" * 8,
    }
    for name, payload in cases.items():
        answer = _raw_exchange(listener.port, payload)
        if answer:  # an A-ABORT or an A-ASSOCIATE-RJ, never a crash
            assert answer[0] in (ul.A_ABORT, ul.A_ASSOCIATE_RJ), name
    # an established association that then sends a P-DATA-TF whose PDV overruns the PDU
    assoc = _assoc_rq(listener.port)
    assoc.stream.send(b"\x04\x00" + struct.pack(">I", 6) + struct.pack(">I", 1000) + b"\x01\x03")
    assert _ended_by_peer(assoc)
    # a P-DATA-TF on a context that was never accepted
    assoc = _assoc_rq(listener.port)
    assoc.stream.send(ul.pdata_header(99, 0x03, 4), b"\0\0\0\0")
    assert _ended_by_peer(assoc)
    storescu(dcmtk, listener.port, series.files)
    assert db.info()["instances"] == 1


def test_stop_aborts_a_stuck_association_and_removes_its_partial_file(db, tmp_path):
    series = make_series(tmp_path / "s", n=1, rows=256, cols=256, seed=15)
    lst = start_listener(db)
    assoc = _assoc_rq(lst.port)
    cx = next(iter(assoc.contexts.values()))
    from DICOMPlusLib.network.dimse import messages as dimse

    command = dimse.store_request(1, CT, "1.2.3.4")
    half = data_set(series.files[0])[:10000]
    assoc.stream.send(
        ul.pdata_header(cx.id, 0x03, len(command)), command, ul.pdata_header(cx.id, 0x00, len(half)), half
    )
    assert wait_until(lambda: list(db.store.root.glob(".incoming-*")))
    stopper = threading.Thread(target=lst.stop, kwargs={"timeout": 0.5})
    stopper.start()
    stopper.join(30)
    assert not stopper.is_alive()
    assert not list(db.store.root.glob(".incoming-*"))
    assert db.info()["instances"] == 0
    assoc.stream.close()


def test_notifications_run_on_their_own_thread_and_survive_bad_callbacks(db, dcmtk, tmp_path):
    a = make_series(tmp_path / "a", n=3, rows=16, cols=16, seed=16)
    b = make_series(tmp_path / "b", n=2, rows=16, cols=16, seed=17)
    threads, mine, completes, everything = set(), [], [], []

    def broken(instance):
        raise RuntimeError("a buggy subscriber")

    with start_listener(db, series_idle=0.2) as lst:
        lst.subscribe(broken)
        lst.subscribe(lambda i: threads.add(threading.current_thread().name))
        lst.subscribe(everything.append)
        # a retrieve would subscribe like this: only the instances of its own series
        sub = lst.subscribe(
            mine.append, completes.append, match=lambda i: i.series_instance_uid == b.series_uid
        )
        storescu(dcmtk, lst.port, a.files + b.files)
        assert wait_until(lambda: len(completes) == 2)
        sub.close()
        storescu(dcmtk, lst.port, b.files)  # after close(): not delivered to it
        assert wait_until(lambda: len(everything) == 7)
    assert db.info()["instances"] == 5
    assert threads == {"dicomplus-notifier"}
    assert sorted(i.sop_instance_uid for i in mine) == sorted(b.sop_uids)
    assert {c.series_instance_uid: c.count for c in completes} == {a.series_uid: 3, b.series_uid: 2}


def test_too_many_associations_are_rejected_for_now(db):
    with start_listener(db, max_associations=1) as lst:
        first = _assoc_rq(lst.port)
        try:
            result = echo(RemoteNode("me", DimseEndpoint("DICOMPLUS", LOOPBACK, lst.port)))
            assert result.problem is EchoProblem.REJECTED
            assert "transient" in result.message and "too many associations" in result.message
        finally:
            first.release()
        assert wait_until(
            lambda: echo(RemoteNode("me", DimseEndpoint("DICOMPLUS", LOOPBACK, lst.port))).ok, timeout=10
        )
