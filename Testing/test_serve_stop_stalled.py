"""Stopping the sample PACS: a retrieve under way gets ``STOP_GRACE`` (10 s, as ``dicomplus
listen`` gives its associations) to finish, and a second signal ends ``dicomplus serve`` at once.

A peer that has stopped reading one of its C-STOREs (a C-GET requester that takes the C-GET-RQ's
answer no further: the sub-operation's C-STORE fills its receive window and ours; or a C-MOVE
destination that accepts the association and never reads) cannot finish: after the grace, or at
the second signal, its association is ended under it. Before, pynetdicom's server shutdown left
those associations running, each DUL thread inside ``send`` for the network timeout (60 s) and
then again for the A-ABORT: ``dicomplus serve`` did not exit after SIGTERM or Ctrl-C (over 2
minutes), and the engine's PACS went on sending after the panel stopped it.

The peers are real sockets on loopback (:func:`~test_cancel_waits.accept_then_stop_reading`, and
our Q/R SCU's association that sends the C-GET-RQ and never reads again, or reads slowly);
``serve`` is a real process, and the library's ``QueryRetrieveSCP.stop()`` (what the engine
calls) is driven as the engine drives it."""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import sys
import threading
import time

import pydicom
import pytest
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from test_cancel_waits import UNREAD, _unread, accept_then_stop_reading

from dicomplus_testing.peers import LOOPBACK, port_accepts
from dicomplus_testing.stalls import PROMPT, SETTLE, exit_code_within, stall
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.database import Database
from DICOMPlusLib.database.ingest import IngestSource
from DICOMPlusLib.engine import operations, protocol, tasks
from DICOMPlusLib.engine.server import Engine
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import qrscu
from DICOMPlusLib.network.dimse.receive import DatabaseSink
from DICOMPlusLib.network.dimse.status import Status
from DICOMPlusLib.network.pacs.qrscp import STOP_GRACE, Destination, QRConfig, QueryRetrieveSCP

#: Instances large enough (8 MiB each) that one C-STORE fills both sides' buffers.
SIDE = 2048
#: A retrieve that reads slowly: SLOW_N small instances, SLOW_S seconds after each (3 s in all,
#: well inside the grace).
SLOW_N, SLOW_S = 6, 0.5


def _serve(db, port: int, *more: str) -> list[str]:
    return [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(db), "serve", "--port", str(port),
            "--host", LOOPBACK, "--ae-title", "PACS", *more]  # fmt: skip


def _wait_ready(proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Try it"):
            return
    raise AssertionError("serve did not start")


@pytest.fixture(scope="module")
def pacs_db(tmp_path_factory):
    root = tmp_path_factory.mktemp("stalled-pacs")
    series = make_series(root / "s", n=2, rows=SIDE, cols=SIDE, seed=99)
    db = Database(root / "pacs")
    db.import_paths([str(f) for f in series.files])
    db.close()
    sop_class = str(pydicom.dcmread(series.files[0], stop_before_pixels=True).SOPClassUID)
    return root / "pacs", series.study_uid, sop_class


def _start_retrieve(port: int, method: str, study_uid: str, sop_class: str) -> qrscu.QRAssociation:
    """Associate with the PACS and send a C-GET-RQ or a C-MOVE-RQ to DEST; nothing is read."""
    model = qrscu.STUDY_ROOT_GET if method == "get" else qrscu.STUDY_ROOT_MOVE
    contexts = [(model, qrscu.UNCOMPRESSED)]
    roles = None
    if method == "get":
        contexts.append((sop_class, qrscu.UNCOMPRESSED))
        roles = {sop_class: (False, True)}
    qa = qrscu.open_association(
        LOOPBACK, port, called_ae="PACS", calling_ae="ASKER", contexts=contexts, roles=roles, timeout=600
    )
    field = dimse.C_GET_RQ if method == "get" else dimse.C_MOVE_RQ
    identifier = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}
    qa._request(field, model, identifier, "DEST" if method == "move" else "")
    return qa


def _wait_stalled(method: str, qa: qrscu.QRAssociation, dest) -> None:
    """Until the PACS's C-STORE waits on a peer that does not read."""
    if method == "get":
        deadline = time.monotonic() + 30
        while _unread(qa.stream.sock) < UNREAD and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _unread(qa.stream.sock) >= UNREAD, "the C-STORE sub-operation never came"
    else:
        assert dest.stalled.wait(30), "the C-MOVE's association to its destination never came"
    time.sleep(SETTLE)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("method", ["get", "move"])
def test_a_second_signal_ends_serve_at_once_when_a_peer_stopped_reading(method, signum, pacs_db):
    db, study_uid, sop_class = pacs_db
    port = free_port()
    with stall(accept_then_stop_reading(UNREAD)) as dest:
        cmd = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(db), "serve", "--port", str(port),
               "--host", LOOPBACK, "--ae-title", "PACS", "--destination", f"DEST@{LOOPBACK}:{dest.port}"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("Try it"):
                    break
            qa = _start_retrieve(port, method, study_uid, sop_class)
            _wait_stalled(method, qa, dest)
            proc.send_signal(signum)  # the grace, for a retrieve that cannot finish
            time.sleep(SETTLE)
            sent = time.monotonic()
            proc.send_signal(signum)  # and at once
            code = exit_code_within(proc, 60)
            waited = time.monotonic() - sent
        finally:
            proc.kill()
            _out, err = proc.communicate()
            qa.stream.close()
    assert code == 0, f"serve did not end within 60 s of a second {signum.name}: {err}"
    assert waited < PROMPT, f"serve ended {waited:.1f} s after a second {signum.name}"
    assert "Traceback" not in err, err


def test_serve_ends_after_the_grace_when_a_peer_stopped_reading(pacs_db):
    """One SIGTERM: the C-GET that cannot finish is ended once the grace has passed."""
    db, study_uid, sop_class = pacs_db
    port = free_port()
    proc = subprocess.Popen(
        _serve(db, port), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_ready(proc)
        qa = _start_retrieve(port, "get", study_uid, sop_class)
        _wait_stalled("get", qa, None)
        proc.send_signal(signal.SIGTERM)
        code = exit_code_within(proc, STOP_GRACE + 60)
    finally:
        proc.kill()
        _out, err = proc.communicate()
        qa.stream.close()
    assert code == 0, f"serve did not end within the grace and 60 s of SIGTERM: {err}"
    assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def small_pacs(tmp_path_factory):
    root = tmp_path_factory.mktemp("small-pacs")
    series = make_series(root / "s", n=SLOW_N, rows=64, cols=64, seed=98)
    db = Database(root / "pacs")
    db.import_paths([str(f) for f in series.files])
    db.close()
    sop_class = str(pydicom.dcmread(series.files[0], stop_before_pixels=True).SOPClassUID)
    return root / "pacs", series.study_uid, sop_class


def _slow_get(
    port: int, study_uid: str, sop_class: str, ours: Database, first
) -> tuple[qrscu.Response, list[int]]:
    """A C-GET of the study by our Q/R SCU that reads slowly (SLOW_S after each instance, so the
    transfer takes seconds); ``first()`` is called once the first instance is stored."""
    qa = qrscu.open_association(
        LOOPBACK, port, called_ae="PACS", calling_ae="ASKER", timeout=30,
        contexts=[(qrscu.STUDY_ROOT_GET, qrscu.UNCOMPRESSED), (sop_class, qrscu.UNCOMPRESSED)],
        roles={sop_class: (False, True)},
    )  # fmt: skip
    statuses: list[int] = []

    def on_stored(_sop: str, outcome) -> None:
        statuses.append(outcome.status)
        if len(statuses) == 1:
            first()
        time.sleep(SLOW_S)

    try:
        sink = DatabaseSink(ours, source=IngestSource.C_GET)
        identifier = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}
        response = qa.get(qrscu.STUDY_ROOT_GET, identifier, sink=sink, on_stored=on_stored)
        qa.release()
    finally:
        qa.stream.close()
    return response, statuses


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_lets_a_retrieve_under_way_finish(signum, small_pacs, tmp_path):
    """Stopped while a C-GET is under way, serve sends the rest (the requester gets every instance
    and a final success), then exits 0. Before, the association was aborted at once."""
    db, study_uid, sop_class = small_pacs
    port = free_port()
    proc = subprocess.Popen(
        _serve(db, port), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ours = Database(tmp_path / "ours")
    try:
        _wait_ready(proc)
        response, statuses = _slow_get(port, study_uid, sop_class, ours, lambda: proc.send_signal(signum))
        code = exit_code_within(proc, STOP_GRACE + 60)
    finally:
        proc.kill()
        _out, err = proc.communicate()
        ours.close()
    assert response.status == Status.SUCCESS, response
    assert statuses == [Status.SUCCESS] * SLOW_N
    assert code == 0, err
    assert "Traceback" not in err, err


def test_an_association_open_between_requests_does_not_hold_serve(small_pacs):
    """The grace is for requests under way: an association a client keeps open without one
    (after a C-FIND, before its next request) is ended at once, not waited for."""
    db, study_uid, _sop_class = small_pacs
    port = free_port()
    proc = subprocess.Popen(
        _serve(db, port), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    qa = None
    try:
        _wait_ready(proc)
        qa = qrscu.open_association(LOOPBACK, port, called_ae="PACS", calling_ae="IDLE", timeout=30,
                                    contexts=[(qrscu.STUDY_ROOT_FIND, qrscu.UNCOMPRESSED)])  # fmt: skip
        found = list(
            qa.find(qrscu.STUDY_ROOT_FIND, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid})
        )
        assert len(found) == 1
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = exit_code_within(proc, 60)
        waited = time.monotonic() - sent
    finally:
        proc.kill()
        _out, err = proc.communicate()
        if qa is not None:
            qa.stream.close()
    assert code == 0, err
    assert waited < PROMPT, f"serve ended {waited:.1f} s after SIGTERM"


def test_the_engines_stop_lets_a_retrieve_under_way_finish(small_pacs, tmp_path):
    """What the panel's Stop runs in the engine (``Engine.stop_pacs``): it returns once the C-GET
    under way has ended with every instance, and the PACS no longer accepts associations."""
    db_path, study_uid, sop_class = small_pacs
    db, ours = Database(db_path), Database(tmp_path / "ours")
    server = QueryRetrieveSCP(db, QRConfig(ae_title="PACS", port=0, host=LOOPBACK)).start()
    port = server.port
    engine = Engine(io.BytesIO(), io.BytesIO())
    engine.pacs = server
    stopper = threading.Thread(target=engine.stop_pacs)
    try:
        response, statuses = _slow_get(port, study_uid, sop_class, ours, stopper.start)
        stopper.join(STOP_GRACE + 60)
        assert not stopper.is_alive()
        assert not port_accepts(port)
    finally:
        server.stop()
        ours.close()
        db.close()
    assert response.status == Status.SUCCESS, response
    assert statuses == [Status.SUCCESS] * SLOW_N


def test_the_engines_stop_cancelled_ends_the_retrieve_and_says_cancelled(small_pacs, tmp_path):
    """The engine's ``pacs_stop`` task (the sample PACS's stop) cancelled during the grace it
    gives a C-GET under way: the C-GET is ended at once and the task ends cancelled, not done
    (before, "done": a host's Activity list said the stop had run its course); the PACS is
    stopped either way."""
    db_path, study_uid, sop_class = small_pacs
    db, ours = Database(db_path), Database(tmp_path / "ours")
    server = QueryRetrieveSCP(db, QRConfig(ae_title="PACS", port=0, host=LOOPBACK)).start()
    port, out = server.port, io.BytesIO()
    engine = Engine(io.BytesIO(), out)
    engine.pacs = server
    assert operations.pacs_stop is tasks.OPERATIONS["pacs_stop"]  # registered
    task = tasks.Task(engine, 1, "pacs_stop", {})
    runner = threading.Thread(target=task.run)
    in_grace = []

    def cancel():  # SETTLE into the stop: the C-GET still runs (SLOW_N x SLOW_S)
        in_grace.append(runner.is_alive())
        task.cancel.cancel()

    canceller = threading.Timer(SETTLE, cancel)

    def first():
        runner.start()
        canceller.start()

    try:
        with contextlib.suppress(Exception):  # the C-GET is cut off
            _slow_get(port, study_uid, sop_class, ours, first)
        runner.join(PROMPT)
        assert not runner.is_alive(), "the cancelled stop waited on"
        assert not port_accepts(port), out.getvalue()
    finally:
        canceller.cancel()
        server.stop()
        ours.close()
        db.close()
    assert in_grace == [True], "the stop did not give the C-GET under way its grace"
    [event] = [e for e in map(protocol.loads, out.getvalue().splitlines()) if e.get("id") == 1]
    assert event["event"] == "cancelled", event
    assert "sample PACS stopped at once" in event["message"]


@pytest.mark.parametrize("method", ["get", "move"])
def test_stop_ends_the_associations_a_peer_stopped_reading(method, pacs_db, tmp_path):
    """What the engine calls when the panel stops the sample PACS: stop() returns and the peer's
    connection is ended (reset), where the association went on sending for the network timeout."""
    db_path, study_uid, sop_class = pacs_db
    db = Database(db_path)
    with stall(accept_then_stop_reading(UNREAD)) as dest:
        config = QRConfig(ae_title="PACS", port=0, host=LOOPBACK,
                          destinations=(Destination("DEST", LOOPBACK, dest.port),))  # fmt: skip
        before = set(threading.enumerate())
        server = QueryRetrieveSCP(db, config).start()
        qa = _start_retrieve(server.port, method, study_uid, sop_class)
        try:
            _wait_stalled(method, qa, dest)
            started = time.monotonic()
            server.stop()
            # Within stop()'s own bound, not the network timeout (60 s) it waited before: a
            # second of grace, then at most 5 s for the associations' threads to end, and a margin.
            assert time.monotonic() - started < 1.0 + 5.0 + PROMPT
            # and those threads have ended: a C-MOVE's handler (on the thread of the association
            # that asked for the move) waiting for its destination's C-STORE response outlived
            # the 5 s at times (a loaded full suite: 6.2 s, twice), the end put in that queue for
            # it taken by the destination association's reactor (pynetdicom_glue.end_associations)
            ours = set(threading.enumerate()) - before
            left = [t.name for t in ours if isinstance(t, Association | DULServiceProvider)]
            assert left == [], "association threads outlived stop()"
            # the peer that was not reading finds its connection ended once it reads again
            conn = qa.stream.sock if method == "get" else dest.held[0]
            conn.settimeout(PROMPT)
            ended = False
            try:
                while conn.recv(1 << 20):
                    pass
                ended = True  # closed
            except ConnectionResetError:
                ended = True
            except TimeoutError:
                ended = False
            assert ended, "the association went on after stop()"
        finally:
            qa.stream.close()
            db.close()


def assert_every_thread_ends(before: set[threading.Thread]) -> None:
    """Each thread started since ``before`` that is not a daemon (those the process waits for
    at its exit: an association's DUL thread) ends within a minute."""
    left = [t for t in set(threading.enumerate()) - before if not t.daemon]
    for thread in left:
        thread.join(60)
    assert [t.name for t in left if t.is_alive()] == []


@contextlib.contextmanager
def a_c_get_stalled(pacs_db):
    """The library's sample PACS (started here) with a C-GET requester that stopped reading
    halfway through a C-STORE: yields (the server, the threads that ran before it)."""
    db_path, study_uid, sop_class = pacs_db
    db = Database(db_path)
    before = set(threading.enumerate())
    server = QueryRetrieveSCP(db, QRConfig(ae_title="PACS", port=0, host=LOOPBACK)).start()
    qa = _start_retrieve(server.port, "get", study_uid, sop_class)
    try:
        _wait_stalled("get", qa, None)
        yield server, before
    finally:
        qa.stream.close()
        db.close()


@pytest.mark.parametrize("nth", [1, 2])
def test_another_ctrl_c_inside_the_end_of_the_associations(nth, pacs_db, tmp_path):
    """One more Ctrl-C (a third: the grace was cut short already) as stop() ends the
    associations, raised inside a lock of theirs (:mod:`dicomplus_testing.interrupt_in_lock`):
    stop() still ends every one of them, then raises. Raised there it left the lock held and
    the association's threads, which the process waits for, blocked on it: serve never exited."""
    from dicomplus_testing.interrupt_in_lock import InterruptInLock
    from DICOMPlusLib.network.pacs import pynetdicom_glue
    from DICOMPlusLib.uninterrupted import raise_from_signal

    def fire() -> None:
        raise_from_signal(KeyboardInterrupt())

    with a_c_get_stalled(pacs_db) as (server, before):
        with InterruptInLock(nth, fire, arm_on=pynetdicom_glue.end_associations.__code__) as trap:
            with pytest.raises(KeyboardInterrupt):
                server.stop()
        assert trap.fired
        assert_every_thread_ends(before)


@pytest.mark.parametrize("nth", [1, 2])
def test_the_engines_sigterm_inside_the_end_of_the_pacs_associations(nth, pacs_db, tmp_path):
    """The engine ending (its stdin closed: it stops its sample PACS at once) and a SIGTERM (its
    parent gone, its host ending it) raised inside a lock of an association's, through the
    engine's own handler: every thread still ends. Raised there it left the lock held and the
    association's DUL thread blocked on it: the engine waited for it at its exit."""
    from dicomplus_testing.interrupt_in_lock import InterruptInLock, installed_handler
    from DICOMPlusLib.engine.server import end_on_sigterm
    from DICOMPlusLib.network.pacs import pynetdicom_glue

    previous = signal.signal(signal.SIGTERM, end_on_sigterm)
    try:
        with a_c_get_stalled(pacs_db) as (server, before):
            engine = Engine(io.BytesIO(), io.BytesIO())
            engine.pacs = server
            fire = installed_handler(signal.SIGTERM)
            with InterruptInLock(nth, fire, arm_on=pynetdicom_glue.end_associations.__code__) as trap:
                with pytest.raises(SystemExit):
                    engine.shutdown()
            assert trap.fired
            assert_every_thread_ends(before)
    finally:
        signal.signal(signal.SIGTERM, previous)
