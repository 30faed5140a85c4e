"""A C-GET retrieve over several associations (``parallel``) receives on one thread
(DICOMPlusLib/network/dimse/pump.py): the association threads wait while the pump's thread
reads every socket and stores what comes, and each operation keeps its idle timeout and its
cancel there. Against our own Query/Retrieve SCP, in this process, over loopback."""

from __future__ import annotations

import threading

import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.relay import StallingRelay
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database
from DICOMPlusLib.database.store import TMP_PREFIX
from DICOMPlusLib.jobs import CancelToken
from DICOMPlusLib.network.dimse import ul
from DICOMPlusLib.network.models import RetrieveOptions
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP
from DICOMPlusLib.network.retrieve import retrieve

ROWS = 16


@pytest.fixture
def pacs(tmp_path, request):
    """A study of two series (6 CT, 5 MR instances) served by our SCP in this process."""
    ct = make_series(tmp_path / "ct", n=6, rows=ROWS, cols=ROWS, patient_id="PUMP", seed=71)
    mr = make_series(tmp_path / "mr", n=5, rows=ROWS, cols=ROWS, modality="MR", patient_id="PUMP",
                     study_uid=ct.study_uid, seed=72)  # fmt: skip
    db = Database(tmp_path / "pacs")
    db.import_paths([str(f) for f in [*ct.files, *mr.files]])
    server = QueryRetrieveSCP(db, QRConfig(ae_title="PUMPSCP", port=0, host=LOOPBACK)).start()
    request.addfinalizer(db.close)
    request.addfinalizer(server.stop)
    return server.port, ct, mr


def _node(port: int) -> RemoteNode:
    return RemoteNode("pump", DimseEndpoint("PUMPSCP", LOOPBACK, port))


def _stored(db) -> set[str]:
    return {r.SOPInstanceUID for r in db.search("instance", {})}


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


def test_parallel_c_gets_are_received_by_one_thread(pacs, tmp_path):
    port, ct, mr = pacs
    receivers: set[str] = set()

    def progress(done: int, total: int, current: str) -> None:
        if done:
            receivers.add(threading.current_thread().name)

    with Database(tmp_path / "db") as db:
        report = retrieve(_node(port), db, study_uid=ct.study_uid, method="get", progress=progress,
                          options=RetrieveOptions(parallel=2))  # fmt: skip
        assert report.complete and report.associations == 2
        assert _stored(db) == set(ct.sop_uids) | set(mr.sop_uids)
    # both associations' instances were stored by the pump's thread, none by theirs
    assert receivers == {"dicomplus-receive"}


def test_a_stalled_association_times_out_on_the_pump(pacs, tmp_path):
    """Both associations stall inside the data set of their third instance (a relay sends half
    of that P-DATA-TF, then nothing): each times out on its own, the instances before stay, and
    no partial file is left."""
    port, ct, _ = pacs
    relay = StallingRelay(port, stall_at_store=3)
    try:
        with Database(tmp_path / "db") as db:
            options = RetrieveOptions(parallel=2, timeout=1.0, retries=0)
            report = _in_a_thread(lambda: retrieve(_node(relay.port), db, study_uid=ct.study_uid, method="get",
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


def test_a_cancel_reaches_the_operations_on_the_pump(pacs, tmp_path):
    """A cancel while both associations are stalled: each sends C-CANCEL, the SCP's final
    response cannot reach it (the relay holds everything), and after the grace each aborts; the
    idle timeout (30 s) would have ended them otherwise, and the report would not say cancelled."""
    port, ct, _ = pacs
    relay = StallingRelay(port, stall_at_store=2)
    token = CancelToken()
    try:
        with Database(tmp_path / "db") as db:
            options = RetrieveOptions(parallel=2, timeout=30.0, retries=0, grace=0.5)

            def run():
                return retrieve(_node(relay.port), db, study_uid=ct.study_uid, method="get", options=options,
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
