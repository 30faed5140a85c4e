"""Cancel, resume, jobs and parallel associations.

A C-GET over several associations is received by one thread (network/dimse/pump.py): the
association threads wait while the pump's thread reads every socket and stores what comes, and
each operation keeps its idle timeout and its cancel there (the last three tests).

Cancel must stop a retrieve of a large study within about a second (C-CANCEL, then A-ABORT after
the grace period when the PACS keeps sending) and leave only complete instances; how long it took
is printed (never asserted: the machine is shared), what is asserted is that the transfer stopped
and that every stored file is whole. A resumed retrieve then fetches only what is missing.
"""

from __future__ import annotations

import selectors
import socket
import sqlite3
import threading
import time
import uuid

import pydicom
import pytest
from test_disk_full import assert_consistent

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.relay import StallingRelay
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import open_connections, wait_for
from DICOMPlusLib.database import Database
from DICOMPlusLib.database.store import TMP_PREFIX
from DICOMPlusLib.jobs import CancelToken, JobState
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import pump, qrscu, ul
from DICOMPlusLib.network.listener import ListenerConfig
from DICOMPlusLib.network.models import RetrieveOptions
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP
from DICOMPlusLib.network.retrieve import retrieve, retrieve_job, set_node_limit

BIG = 320
ROWS = 128


@pytest.fixture(scope="module")
def big_study(tmp_path_factory, orthanc_session):
    root = tmp_path_factory.mktemp("qr-cancel-big")
    series = make_series(
        root / "big", n=BIG, rows=ROWS, cols=ROWS, patient_id=f"QRX{uuid.uuid4().hex[:8]}", seed=51
    )
    orthanc_session.upload(series.files)
    return series


def _stored(db):
    return {r.SOPInstanceUID for r in db.search("instance", {})}


def _whole(db, rows: int) -> None:
    for record in db.search("instance", {}):
        ds = pydicom.dcmread(record.path)
        assert len(ds.PixelData) == rows * rows * 2, record.path


def _cancel_after(count: int):
    token, marks = CancelToken(), {}

    def progress(done: int, total: int, current: str) -> None:
        if done >= count and not token.cancelled:
            marks["cancel"] = time.monotonic()
            token.cancel()

    return token, marks, progress


@pytest.mark.parametrize("method", ["get", "move"])
def test_cancel_a_large_study_then_resume(big_study, orthanc_session, tmp_path, method):
    node = RemoteNode("orthanc", DimseEndpoint(orthanc_session.aet, LOOPBACK, orthanc_session.dicom_port))
    listener = ListenerConfig(port=orthanc_session.dicomplus_port, host=LOOPBACK)
    db = Database(tmp_path / "db")
    token, marks, progress = _cancel_after(40)
    report = retrieve(node, db, study_uid=big_study.study_uid, method=method, cancel=token, progress=progress,
                      options=RetrieveOptions(listener_config=listener))  # fmt: skip
    stopped = time.monotonic() - marks["cancel"]
    print(
        f"\n{method}: retrieve returned {stopped * 1000:.0f} ms after the cancel, {len(report.done)} of {BIG} stored"
    )
    assert report.cancelled and not report.complete
    stored = _stored(db)
    assert set(report.done) == stored and 40 <= len(stored) < BIG
    assert len(report.failed) == BIG - len(stored)
    _whole(db, ROWS)
    # the transfer has stopped: once no connection to Orthanc (C-GET) or from it (C-MOVE) is
    # open, nothing more can arrive
    for port in (orthanc_session.dicom_port, orthanc_session.dicomplus_port):
        wait_for(lambda port=port: open_connections(port) == 0, 30, f"closing the connections on port {port}")
    assert _stored(db) == stored
    resumed = retrieve(
        node,
        db,
        study_uid=big_study.study_uid,
        method=method,
        options=RetrieveOptions(listener_config=listener),
    )
    assert resumed.complete and set(resumed.skipped) == stored
    assert set(resumed.done) == set(big_study.sop_uids) - stored
    db.close()


class StubbornSCP(QueryRetrieveSCP):
    """A PACS that ignores C-CANCEL and sends slowly (as in pynetdicom#553)."""

    def _sub_operations(self, event, records):
        for record in records:
            time.sleep(0.02)
            yield 0xFF00, pydicom.dcmread(record.path)


def test_cancel_aborts_when_the_pacs_ignores_c_cancel(tmp_path):
    series = make_series(tmp_path / "s", n=120, rows=16, cols=16, patient_id="QRSTUBBORN", seed=52)
    pacs = Database(tmp_path / "pacs")
    pacs.import_paths([str(f) for f in series.files])
    with StubbornSCP(pacs, QRConfig(ae_title="STUBBORN", port=0, host=LOOPBACK)) as server:
        node = RemoteNode("stubborn", DimseEndpoint("STUBBORN", LOOPBACK, server.port))
        db = Database(tmp_path / "db")
        token, marks, progress = _cancel_after(10)
        report = retrieve(node, db, study_uid=series.study_uid, method="get", cancel=token, progress=progress,
                          options=RetrieveOptions(grace=0.5))  # fmt: skip
        print(
            f"\nstubborn PACS: returned {(time.monotonic() - marks['cancel']) * 1000:.0f} ms after the cancel"
        )
        assert report.cancelled and any("aborted" in w for w in report.warnings), report.warnings
        stored = _stored(db)
        assert set(report.done) == stored and 10 <= len(stored) < 120
        _whole(db, 16)
        # the PACS goes on sending into a dead association: once it is closed nothing more arrives
        wait_for(lambda: open_connections(server.port) == 0, 30, "closing the aborted association")
        assert _stored(db) == stored
        db.close()
    pacs.close()


@pytest.fixture
def two_series_pacs(tmp_path, request):
    ct = make_series(tmp_path / "ct", n=6, rows=16, cols=16, patient_id="QRJOB", seed=53)
    mr = make_series(tmp_path / "mr", n=4, rows=16, cols=16, modality="MR", patient_id="QRJOB",
                     study_uid=ct.study_uid, seed=54)  # fmt: skip
    pacs = Database(tmp_path / "pacs")
    pacs.import_paths([str(f) for f in [*ct.files, *mr.files]])
    server = QueryRetrieveSCP(pacs, QRConfig(ae_title="QRJOBS", port=0, host=LOOPBACK)).start()
    request.addfinalizer(pacs.close)
    request.addfinalizer(server.stop)
    return RemoteNode("jobs", DimseEndpoint("QRJOBS", LOOPBACK, server.port)), ct, mr


def test_retrieve_as_a_job(two_series_pacs, tmp_path):
    node, ct, mr = two_series_pacs
    db = Database(tmp_path / "db")
    job = retrieve_job(node, db, study_uid=ct.study_uid, method="get").start()
    assert job.wait(120)
    snapshot = job.poll()
    assert snapshot.state is JobState.DONE and job.result.complete
    assert (snapshot.done, snapshot.total) == (10, 10)
    assert _stored(db) == set(ct.sop_uids) | set(mr.sop_uids)
    db.close()


def test_parallel_associations_share_the_work_within_the_node_cap(two_series_pacs, tmp_path):
    node, ct, mr = two_series_pacs
    db = Database(tmp_path / "db")
    report = retrieve(node, db, study_uid=ct.study_uid, method="get", options=RetrieveOptions(parallel=2))
    assert report.complete and report.associations == 2
    set_node_limit(node, 1)  # two workers, one slot: they take turns
    db2 = Database(tmp_path / "db2")
    report = retrieve(node, db2, study_uid=ct.study_uid, method="get", options=RetrieveOptions(parallel=2))
    assert report.complete and report.associations == 2
    assert _stored(db2) == set(ct.sop_uids) | set(mr.sop_uids)
    db.close()
    db2.close()


def test_cancel_before_start_does_nothing(two_series_pacs, tmp_path):
    node, ct, _ = two_series_pacs
    db = Database(tmp_path / "db")
    token = CancelToken()
    token.cancel()
    report = retrieve(node, db, study_uid=ct.study_uid, method="get", cancel=token)
    assert report.cancelled and not report.done and not _stored(db)
    db.close()


class SilentlySkippingSCP(QueryRetrieveSCP):
    """A PACS whose C-GET leaves out the last instance it matched yet answers success."""

    def _sub_operations(self, event, records):
        yield from super()._sub_operations(event, records[:-1])


def test_a_study_held_nowhere_is_fetched_at_once_and_still_checked(two_series_pacs, tmp_path):
    """Nothing of the study is in the database: the C-GET goes first and the instances are known
    from its counts (resume then skips them all); a PACS that brings fewer than its C-GET matched
    is caught by the image-level C-FIND after the transfer, which names the missing instance."""
    node, ct, mr = two_series_pacs
    db = Database(tmp_path / "db")
    report = retrieve(node, db, study_uid=ct.study_uid, method="get")
    assert report.complete and report.expected == 10 and _stored(db) == set(ct.sop_uids) | set(mr.sop_uids)
    again = retrieve(node, db, study_uid=ct.study_uid, method="get")
    assert again.complete and len(again.skipped) == 10 and not again.done
    db.close()
    series = make_series(tmp_path / "s", n=5, rows=16, cols=16, patient_id="QRSKIP", seed=55)
    pacs = Database(tmp_path / "pacs-skip")
    pacs.import_paths([str(f) for f in series.files])
    with SilentlySkippingSCP(pacs, QRConfig(ae_title="SKIPPER", port=0, host=LOOPBACK)) as server:
        node = RemoteNode("skipper", DimseEndpoint("SKIPPER", LOOPBACK, server.port))
        db = Database(tmp_path / "db-skip")
        report = retrieve(
            node, db, study_uid=series.study_uid, method="get", options=RetrieveOptions(retries=0)
        )
        assert report.expected == 5 and len(report.done) == 4 and not report.complete
        assert set(report.failed) == set(series.sop_uids) - _stored(db) and len(report.failed) == 1
        db.close()
    pacs.close()


def _via(node: RemoteNode, port: int) -> RemoteNode:
    """``node`` reached through ``port`` (a relay in front of it)."""
    return RemoteNode(node.name, DimseEndpoint(node.ae_title, LOOPBACK, port))


def _in_a_thread(call, seconds: float = 60.0):
    """``call()`` in a thread, joined for ``seconds`` (a retrieve that never ends fails the test
    instead of holding the suite)."""
    box: list = []

    def run() -> None:
        try:
            box.append(call())
        except BaseException as exc:  # handed to the test
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the retrieve did not end within {seconds:g} s"
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def test_parallel_c_gets_are_received_by_one_thread(two_series_pacs, tmp_path):
    node, ct, mr = two_series_pacs
    receivers: set[str] = set()

    def progress(done: int, total: int, current: str) -> None:
        if done:
            receivers.add(threading.current_thread().name)

    with Database(tmp_path / "db") as db:
        report = retrieve(node, db, study_uid=ct.study_uid, method="get", progress=progress,
                          options=RetrieveOptions(parallel=2))  # fmt: skip
        assert report.complete and report.associations == 2
        assert _stored(db) == set(ct.sop_uids) | set(mr.sop_uids)
    # both associations' instances were stored by the pump's thread, none by theirs
    assert receivers == {"dicomplus-receive"}


@pytest.mark.parametrize("window", [None, 3600.0], ids=["committed-before", "committed-at-the-end"])
def test_a_stalled_association_times_out_on_the_pump(two_series_pacs, tmp_path, monkeypatch, window):
    """Both associations stall inside the data set of their third instance (a relay sends half
    of that P-DATA-TF, then nothing): each times out on its own, the instances before stay, and
    no partial file is left. With a commit window longer than the retrieve, the two instances
    each answered are committed (and counted) only as its operation ends."""
    node, ct, _ = two_series_pacs
    if window is not None:
        monkeypatch.setattr(qrscu, "COMMIT_EVERY_S", window)
    relay = StallingRelay(node.port, stall_at_store=3)
    try:
        with Database(tmp_path / "db") as db:
            options = RetrieveOptions(parallel=2, timeout=1.0, retries=0)
            report = _in_a_thread(lambda: retrieve(_via(node, relay.port), db, study_uid=ct.study_uid, method="get",
                                                   options=options))  # fmt: skip
            stored = _stored(db)
            assert not report.complete
            assert len(relay.stalled) == 2 and len(stored) == 4  # two whole instances of each series
            assert set(report.done) == stored
            reasons = set(report.failed.values())
            assert reasons and all("stopped in the middle of a message" in r for r in reasons), reasons
            assert not [p for p in db.store.root.iterdir() if p.name.startswith(TMP_PREFIX)]
        assert all(ul.A_ABORT in seen for seen in relay.stalled)  # each timed-out association aborted
    finally:
        relay.close()


def test_a_fault_of_the_pump_commits_what_it_answered(two_series_pacs, tmp_path, monkeypatch):
    """The pump's thread fails (its ``select``, here) while both associations are stalled in
    their third instance, two answered and not committed yet in each (a commit window longer
    than the retrieve): each operation ends as a lost connection, the four answered instances
    are committed and counted, no temporary file stays, and the retrieve reports what did not
    come. Before, the operations were left as they were (the answered instances uncommitted,
    their files in the store) and the retrieve failed on the worker's missing outcome."""
    node, ct, _ = two_series_pacs
    monkeypatch.setattr(qrscu, "COMMIT_EVERY_S", 3600.0)
    fault = threading.Event()

    class FailingSelector(selectors.DefaultSelector):
        def select(self, timeout=None):
            if fault.is_set():
                raise OSError("the selector failed (the test)")
            return super().select(timeout)

    monkeypatch.setattr(pump.selectors, "DefaultSelector", FailingSelector)
    relay = StallingRelay(node.port, stall_at_store=3)
    try:
        with Database(tmp_path / "db") as db:
            options = RetrieveOptions(parallel=2, timeout=30.0, retries=0)
            box: list = []
            worker = threading.Thread(target=lambda: box.append(retrieve(
                _via(node, relay.port), db, study_uid=ct.study_uid, method="get", options=options)), daemon=True)  # fmt: skip
            worker.start()
            # the third C-STORE-RQ came after our answer to the second: two answered in each
            wait_for(lambda: len(relay.stalled) == 2, 30, "both associations stalled")
            fault.set()
            worker.join(60)
            assert not worker.is_alive() and len(box) == 1, "the retrieve failed or did not end"
            report = box[0]
            stored = _stored(db)
            assert len(stored) == 4 and set(report.done) == stored, report.to_dict()
            assert all("the thread receiving the C-GETs failed" in r for r in report.failed.values()), report
            assert len(report.failed) == 6
            assert not [p for p in db.store.root.iterdir() if p.name.startswith(TMP_PREFIX)]
    finally:
        relay.close()


def test_a_cancel_reaches_the_operations_on_the_pump(two_series_pacs, tmp_path):
    """A cancel while both associations are stalled: each sends C-CANCEL, the SCP's final
    response cannot reach it (the relay holds everything), and after the grace each aborts; the
    idle timeout (30 s) would have ended them otherwise, and the report would not say cancelled."""
    node, ct, _ = two_series_pacs
    relay = StallingRelay(node.port, stall_at_store=2)
    token = CancelToken()
    try:
        with Database(tmp_path / "db") as db:
            options = RetrieveOptions(parallel=2, timeout=30.0, retries=0, grace=0.5)

            def run():
                return retrieve(_via(node, relay.port), db, study_uid=ct.study_uid, method="get", options=options,
                                cancel=token)  # fmt: skip

            def cancel_when_stalled() -> None:
                while len(relay.stalled) < 2:
                    threading.Event().wait(0.02)
                token.cancel()

            threading.Thread(target=cancel_when_stalled, daemon=True).start()
            report = _in_a_thread(run)  # the timeout (30 s) would end it otherwise: the cancel did
            assert report.cancelled and len(_stored(db)) == 2  # the first instance of each series
            # each sent C-CANCEL and aborted at the end of its grace (not at its idle timeout)
            assert (
                report.warnings
                == ["C-GET cancelled: no final response within 0.5 s of C-CANCEL; association aborted"] * 2
            )
            assert not [p for p in db.store.root.iterdir() if p.name.startswith(TMP_PREFIX)]
        assert all(ul.A_ABORT in seen for seen in relay.stalled)
    finally:
        relay.close()


def test_a_halt_after_a_cancel_ends_the_listing_of_what_did_not_arrive(two_series_pacs, tmp_path):
    """A study retrieved by C-GET with its plan deferred (its instances listed after the
    transfer) and cancelled: the listing gets the retrieve's grace, but a halt (the second
    Ctrl-C) ends it at once: no image-level C-FIND goes out after it. Before, the listing ran on a
    token of its own that only a timer cancelled, and a second Ctrl-C waited for its grace and
    a C-CANCEL's (~2 s)."""
    node, ct, _ = two_series_pacs
    relay = StallingRelay(node.port)
    token = CancelToken()

    def progress(done: int, total: int, current: str) -> None:
        if done:  # the first instance is here: the first Ctrl-C, then the second
            token.cancel()
            token.halt()

    try:
        with Database(tmp_path / "db") as db:
            report = _in_a_thread(lambda: retrieve(_via(node, relay.port), db, study_uid=ct.study_uid, method="get",
                                                   progress=progress, cancel=token,
                                                   options=RetrieveOptions(parallel=2, retries=0, grace=5.0)))  # fmt: skip
            assert report.cancelled and report.done
        with relay.lock:
            finds = [c for commands in relay.commands_from_client for c in commands if c == dimse.C_FIND_RQ]
        assert len(finds) == 1, relay.commands_from_client  # the series-level C-FIND of the plan, none after
    finally:
        relay.close()


def _counting_commits(db: Database) -> list[int]:
    """The number of instances of each transaction ``db`` commits (its ``commit_parsed`` calls)."""
    sizes: list[int] = []
    commit_parsed = db.commit_parsed

    def counted(items, *args, **kwargs):
        sizes.append(len(items))
        return commit_parsed(items, *args, **kwargs)

    db.commit_parsed = counted  # type: ignore[method-assign]
    return sizes


def test_the_pump_commits_what_an_association_answered_together(two_series_pacs, tmp_path, monkeypatch):
    """Instances answered on the pump are committed together: here (a window longer than the
    retrieve) each association's whole series in one transaction at its final response, and with
    at most two a transaction, in pairs; every instance heard of once, all stored."""
    node, ct, mr = two_series_pacs
    monkeypatch.setattr(qrscu, "COMMIT_EVERY_S", 3600.0)
    for most, expected in ((64, [4, 6]), (2, [2, 2, 2, 2, 2])):
        monkeypatch.setattr(qrscu, "COMMIT_MOST", most)
        heard: list[str] = []
        with Database(tmp_path / f"db-{most}") as db:
            sizes = _counting_commits(db)
            report = retrieve(node, db, study_uid=ct.study_uid, method="get",
                              progress=lambda done, total, sop, heard=heard: heard.append(sop) if sop else None,
                              options=RetrieveOptions(parallel=2))  # fmt: skip
            assert report.complete and report.associations == 2
            assert _stored(db) == set(ct.sop_uids) | set(mr.sop_uids) == set(report.done)
        assert sorted(sizes) == expected, sizes
        assert sorted(heard) == sorted(report.done)


def _retrieve_refusing(node: RemoteNode, study: str, db_folder, refused: str):
    """Retrieve ``study`` by C-GET over two associations into the database at ``db_folder``, whose
    index refuses the row of ``refused`` (a trigger); (the report, the instances of each
    transaction)."""
    conn = sqlite3.connect(db_folder / "dicomplus.sqlite")
    with conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON instances WHEN NEW.SOPInstanceUID = "
            f"'{refused}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    conn.close()
    with Database(db_folder) as db:
        sizes = _counting_commits(db)
        report = retrieve(node, db, study_uid=study, method="get", options=RetrieveOptions(parallel=2))
    return report, sizes


def test_a_transaction_that_fails_fails_the_instances_it_held_and_they_are_asked_for_again(
    two_series_pacs, tmp_path, monkeypatch
):
    """One instance's row refused (a trigger): the transaction holding its association's answered
    instances fails. Each was answered success, so the C-GET does not say; the retrieve asks
    again for what is missing, and the others come then. The refused one is reported
    "received, then not stored here"; no file of the failed transaction stays."""
    node, ct, mr = two_series_pacs
    monkeypatch.setattr(qrscu, "COMMIT_EVERY_S", 3600.0)
    refused = ct.sop_uids[2]
    db_folder = tmp_path / "db"
    Database(db_folder).close()
    report, sizes = _retrieve_refusing(node, ct.study_uid, db_folder, refused)
    assert 6 in sizes  # the CT series' transaction, which failed
    assert sorted(report.done) == sorted(s for s in [*ct.sop_uids, *mr.sop_uids] if s != refused)
    assert list(report.failed) == [refused], report.to_dict()
    assert report.failed[refused].startswith("received, then not stored here: ")
    assert "refused by the test" in report.failed[refused]
    assert assert_consistent(db_folder / "dicomplus.sqlite", db_folder / "store") == 9


def test_a_failed_transaction_is_asked_for_again_when_the_plan_is_known(
    two_series_pacs, tmp_path, monkeypatch
):
    """As above, with the selection's instances listed before the transfer (an instance of the
    study is held already, so the plan is not deferred): the PACS answers the C-GET with success
    (every sub-operation was answered success), and the instances of the failed transaction are
    asked for again all the same; only the refused one fails."""
    node, ct, mr = two_series_pacs
    monkeypatch.setattr(qrscu, "COMMIT_EVERY_S", 3600.0)
    refused = ct.sop_uids[2]
    db_folder = tmp_path / "db"
    with Database(db_folder) as db:
        db.import_paths([str(mr.files[0])])
    report, sizes = _retrieve_refusing(node, ct.study_uid, db_folder, refused)
    assert 6 in sizes, sizes  # the CT series' transaction, which failed
    assert report.expected == 10 and len(report.skipped) == 1
    assert sorted(report.done) == sorted(
        s for s in [*ct.sop_uids, *mr.sop_uids] if s not in (refused, *report.skipped)
    )
    assert list(report.failed) == [refused], report.to_dict()
    assert assert_consistent(db_folder / "dicomplus.sqlite", db_folder / "store") == 9


class UnlistingSCP(QueryRetrieveSCP):
    """A PACS that cannot list instances: an image-level C-FIND fails (0xA900)."""

    def _on_find(self, event):
        if str(event.identifier.get("QueryRetrieveLevel", "")).strip().upper() == "IMAGE":
            yield 0xA900, None
            return
        yield from super()._on_find(event)


def test_a_failed_transaction_is_asked_for_again_when_the_instances_are_never_known(
    two_series_pacs, tmp_path, monkeypatch
):
    """As above, from a PACS that cannot list the selection's instances (the plan deferred, then
    its image-level C-FIND fails): the instances of the failed transaction, named by their
    sub-operations, are asked for again by their UIDs; only the refused one fails. Before, the
    retrieve stopped after its first attempt and the five good instances stayed "received,
    then not stored here"."""
    node, ct, mr = two_series_pacs
    monkeypatch.setattr(qrscu, "COMMIT_EVERY_S", 3600.0)
    pacs = Database(tmp_path / "pacs-unlisting")
    pacs.import_paths([str(f) for f in [*ct.files, *mr.files]])
    refused = ct.sop_uids[2]
    with UnlistingSCP(pacs, QRConfig(ae_title="UNLISTING", port=0, host=LOOPBACK)) as server:
        node = RemoteNode("unlisting", DimseEndpoint("UNLISTING", LOOPBACK, server.port))
        db_folder = tmp_path / "db"
        Database(db_folder).close()
        report, sizes = _retrieve_refusing(node, ct.study_uid, db_folder, refused)
    pacs.close()
    assert 6 in sizes, sizes  # the CT series' transaction, which failed
    assert any("could not list the instances" in w for w in report.warnings), report.warnings
    assert sorted(report.done) == sorted(s for s in [*ct.sop_uids, *mr.sop_uids] if s != refused)
    assert list(report.failed) == [refused], report.to_dict()
    assert not report.complete
    assert assert_consistent(db_folder / "dicomplus.sqlite", db_folder / "store") == 9


def test_the_pump_closes_an_operation_as_it_ends():
    """An operation that ends (its final event) is closed on the pump's thread before ``run``
    returns: its clean-ups (the temporary file made ahead for a next instance) do not wait for
    the generator to be collected, which an exception logged on its way, held by a handler that
    keeps records (pytest's), put off past the end of the retrieve under Python 3.12."""
    from DICOMPlusLib.network.dimse.pump import ReceivePump

    class Stream:
        def __init__(self, sock) -> None:
            self.sock = sock

    cleaned = threading.Event()

    def events():
        try:
            yield "final", "done"
        finally:
            cleaned.set()

    ours, theirs = socket.socketpair()
    pump = ReceivePump()
    try:
        operation = events()  # held here: only a close can run its clean-up now
        assert pump.run(Stream(ours), operation, lambda kind, item: None) == "done"
        assert cleaned.is_set()
    finally:
        pump.close()
        ours.close()
        theirs.close()
