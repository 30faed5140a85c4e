"""Stopping the listener: the associations under way get ``STOP_GRACE`` (10 s) to finish; a
second Ctrl-C or SIGTERM to ``dicomplus listen`` (a cancel of the engine's stop) aborts them at
once: the peer gets an A-ABORT, the partial file is removed, nothing is indexed, and ``listen``
exits 0 as after one signal.

The peer is a real socket on loopback (our SCU's association) that sends a C-STORE-RQ and half
of its data set, then nothing more, so the association can never finish on its own; ``listen``
is a real process. Before, a second SIGTERM only set a flag while the stop waited out the whole
grace, and a second Ctrl-C left the stop inside ``Thread.join`` (exit 130, the association never
aborted, its partial file left behind by a process that ended under it)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.stalls import PROMPT, SETTLE, exit_code_within
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.database import Database
from DICOMPlusLib.engine.client import SubprocessEngine
from DICOMPlusLib.errors import CancelledError
from DICOMPlusLib.jobs import JobState
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import scu, ul
from DICOMPlusLib.network.listener import STOP_GRACE, Listener, ListenerConfig
from DICOMPlusLib.network.send import data_set_offset

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.fixture(scope="module")
def half_a_data_set(tmp_path_factory) -> bytes:
    series = make_series(tmp_path_factory.mktemp("listen-stop") / "s", n=1, rows=256, cols=256, seed=31)
    data = Path(series.files[0]).read_bytes()
    return data[data_set_offset(data[:4096]) :][:10000]


def _stall_mid_store(port: int, half: bytes) -> scu.ClientAssociation:
    """Associate, send a C-STORE-RQ and the first part of its data set; nothing more."""
    assoc = scu.associate(
        LOOPBACK, port, called_ae="DICOMPLUS", calling_ae="STALLER", contexts=[(CT, [EXPLICIT])]
    )
    cx = next(iter(assoc.contexts.values()))
    command = dimse.store_request(1, CT, "1.2.826.0.1.3680043.8.498.31")
    assoc.stream.send(
        ul.pdata_header(cx.id, 0x03, len(command)), command, ul.pdata_header(cx.id, 0x00, len(half)), half
    )
    return assoc


def _partial_files(store) -> list:
    return list(store.rglob(".incoming-*"))


def _until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def _aborted(assoc: scu.ClientAssociation) -> bool:
    """Whether what the listener sent last on the association is an A-ABORT."""
    assoc.stream.sock.settimeout(PROMPT)
    data = b""
    try:
        while chunk := assoc.stream.sock.recv(1 << 16):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data[:1] == bytes([ul.A_ABORT])


#: A sender that stores slowly: SLOW_N instances, SLOW_S seconds apart (3 s in all, well inside
#: the grace).
SLOW_N, SLOW_S = 6, 0.5


def _listen(db_dir, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(db_dir), "listen", "--port", str(port),
           "--host", LOOPBACK, "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert '"listening"' in proc.stdout.readline()
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_one_signal_lets_an_association_under_way_finish(signum, tmp_path):
    """Stopped after the first of a slow sender's instances, listen answers and stores the rest
    on the same association (the grace), then exits 0."""
    series = make_series(tmp_path / "s", n=SLOW_N, rows=32, cols=32, seed=32)
    db_dir, port = tmp_path / "db", free_port()
    proc = _listen(db_dir, port)
    statuses = []
    try:
        with scu.associate(LOOPBACK, port, called_ae="DICOMPLUS", calling_ae="SLOW",
                           contexts=[(CT, [EXPLICIT])]) as assoc:  # fmt: skip
            cx = next(iter(assoc.contexts.values()))
            for i, (path, sop) in enumerate(zip(series.files, series.sop_uids, strict=True)):
                data = Path(path).read_bytes()
                statuses.append(assoc.store(cx, sop, data[data_set_offset(data[:4096]) :]).get(dimse.STATUS))
                if i == 0:
                    proc.send_signal(signum)
                time.sleep(SLOW_S)
        code = exit_code_within(proc, STOP_GRACE + 60)
    finally:
        proc.kill()
        out, err = proc.communicate()
    assert statuses == [0] * SLOW_N
    assert code == 0, err
    assert out.strip().splitlines()[-1] == '{"event": "stopped"}', out
    db = Database(db_dir)
    try:
        assert db.info()["instances"] == SLOW_N
    finally:
        db.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_aborts_listens_associations_at_once(signum, half_a_data_set, tmp_path):
    db_dir, port = tmp_path / "db", free_port()
    proc = _listen(db_dir, port)
    assoc = None
    try:
        assoc = _stall_mid_store(port, half_a_data_set)
        assert _until(lambda: _partial_files(db_dir)), "the C-STORE's file was never begun"
        proc.send_signal(signum)  # the grace, for an association that cannot finish
        time.sleep(SETTLE)
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signum)  # and at once
        code = exit_code_within(proc, STOP_GRACE + 60)
        waited = time.monotonic() - sent
        aborted = _aborted(assoc)
    finally:
        proc.kill()
        out, err = proc.communicate()
        if assoc is not None:
            assoc.stream.close()
    assert code == 0, f"listen ended with {code} after a second {signum.name}: {err}"
    assert waited < PROMPT, f"listen ended {waited:.1f} s after a second {signum.name}"
    assert aborted, "the stalled association got no A-ABORT"
    assert out.strip().splitlines()[-1] == '{"event": "stopped"}', out
    assert "Traceback" not in err, err
    assert not _partial_files(db_dir)
    db = Database(db_dir)
    try:
        assert db.info()["instances"] == 0
    finally:
        db.close()


def test_the_engines_stop_aborts_at_once_when_cancelled(half_a_data_set, tmp_path):
    """The panel's Stop (the ``unlisten`` task of a real engine process): it gives the
    association the grace, and a cancel of the task aborts it at once instead of waiting the
    grace out."""
    db_path = tmp_path / "db.sqlite"
    with SubprocessEngine() as engine:
        config = ListenerConfig(port=0, host=LOOPBACK)
        port = engine.call("listen", {"db": str(db_path), "config": config})
        assoc = _stall_mid_store(port, half_a_data_set)
        try:
            assert _until(lambda: _partial_files(tmp_path))
            job = engine.submit("unlisten")
            time.sleep(SETTLE)
            assert not job.finished  # the grace
            job.cancel()
            assert job.wait(PROMPT), "the cancelled stop waited on"
            # cut short: the task says cancelled (it said done), and the listener is stopped
            assert job.state is JobState.CANCELLED and isinstance(job.error, CancelledError), job.error
            assert engine.call("listener") == {"running": False, "port": 0}
            assert _aborted(assoc)
            assert not _partial_files(tmp_path)
        finally:
            assoc.stream.close()
    with Database(db_path) as db:
        assert db.info()["instances"] == 0


def test_the_engine_ending_aborts_its_listeners_associations_at_once(half_a_data_set, tmp_path):
    """The host closing the engine's stdin (Slicer quitting) stops the listener without the
    grace: the host kills the engine a few seconds later (the module's EngineClient after 5 s),
    and the grace ended in that kill, the peer never aborted and its partial file left behind."""
    db_path = tmp_path / "db.sqlite"
    engine = SubprocessEngine()
    try:
        port = engine.call("listen", {"db": str(db_path), "config": ListenerConfig(port=0, host=LOOPBACK)})
        assoc = _stall_mid_store(port, half_a_data_set)
        try:
            assert _until(lambda: _partial_files(tmp_path))
            code = engine.close(PROMPT)
            aborted = _aborted(assoc)
        finally:
            assoc.stream.close()
    finally:
        engine.close(0)
    assert code == 0, f"the engine was killed ({code}) instead of ending"
    assert aborted, "the stalled association got no A-ABORT"
    assert not _partial_files(tmp_path)
    with Database(db_path) as db:
        assert db.info()["instances"] == 0


def test_ctrl_c_inside_the_stop_still_aborts_the_associations(half_a_data_set, tmp_path):
    """A KeyboardInterrupt during :meth:`Listener.stop`'s wait (a second Ctrl-C in a program
    that calls it) goes on up, but only after the association was aborted and its partial file
    removed: the wait sleeps, so the interrupt never lands inside ``Thread.join`` (which, on
    Python 3.11 and 3.12, marks the thread stopped while it runs on)."""
    db = Database(tmp_path / "db")
    listener = Listener(db, ListenerConfig(port=0, host=LOOPBACK)).start()
    assoc = _stall_mid_store(listener.port, half_a_data_set)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(SETTLE, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT))
    try:
        assert _until(lambda: _partial_files(db.store.root))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            listener.stop(STOP_GRACE + 60)
        assert not listener.running
        assert _aborted(assoc)
        assert not _partial_files(db.store.root)
        assert db.info()["instances"] == 0
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
        assoc.stream.close()
        listener.stop(0)
        db.close()


def test_a_third_ctrl_c_waits_for_the_abort(half_a_data_set, tmp_path, monkeypatch):
    """One more Ctrl-C (a third, through the CLI's own handler) as the stop waits for the aborted
    associations' threads: it goes on up once they ended and removed their partial file. It
    left the wait at once, and ``listen`` ended under a thread still holding the file. (The
    removal is made to take 0.3 s, so that a stop that does not wait sees the file.)"""
    from dicomplus_testing.interrupt_in_lock import InterruptInLock, installed_handler
    from DICOMPlusLib.cli.signals import ending_signals
    from DICOMPlusLib.network.dimse.receive import IncomingFile

    discard = IncomingFile.discard

    def slow_discard(self) -> None:
        time.sleep(0.3)
        discard(self)

    monkeypatch.setattr(IncomingFile, "discard", slow_discard)
    db = Database(tmp_path / "db")
    listener = Listener(db, ListenerConfig(port=0, host=LOOPBACK)).start()
    assoc = _stall_mid_store(listener.port, half_a_data_set)
    try:
        assert _until(lambda: _partial_files(db.store.root))
        wait = Listener._wait_for_associations.__code__
        # its first call is the grace (cut short at once, as by a second signal), its second the abort's
        with (
            ending_signals(),
            InterruptInLock(2, installed_handler(signal.SIGINT), [wait], at_call=True, armed=True) as trap,
        ):
            with pytest.raises(KeyboardInterrupt):
                listener.stop(STOP_GRACE, at_once=lambda: True)
            left = _partial_files(db.store.root), len(listener._threads)
        assert trap.fired
        assert left == ([], 0)
        assert _aborted(assoc)
        assert db.info()["instances"] == 0
    finally:
        assoc.stream.close()
        listener.stop(0)
        db.close()
