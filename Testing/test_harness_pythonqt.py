"""The PythonQt GIL mode of the harness (Testing/slicer_stubs/pythonqt_gil.py) starves Python
worker threads as Slicer does, and the current thread-based design of the module starves with it.

Each test measures the same thing in normal mode (PySide releases the GIL while Qt waits) and in
the mode (the main thread keeps it, as PythonQt does), in the same run, and asserts a ratio: the
mode must cut a busy worker thread's progress at least tenfold (the note measured 18x for a
GIL-holding idle loop; Slicer's WorkQueue 11-26x).
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time

import pytest

from dicomplus_testing import harness

MIN_SLOWDOWN = 10


MAX_HELD_SHARE = 0.1
GAP = 0.002  # a longer pause between two iterations of the worker: it lost the GIL


class BusyWorker:
    """A Python thread that counts as fast as the GIL lets it, between start() and stop().

    ``running`` adds up the time between consecutive iterations that follow each other closely
    (under :data:`GAP`): the time the thread held the GIL and ran. Unlike the iteration count it
    does not shrink when other processes load the machine, so a share of it is a steady measure.
    """

    def __init__(self):
        self.count = 0
        self.running = 0.0
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="busy-worker", daemon=True)

    def _run(self):
        clock = time.perf_counter
        last = clock()
        while not self._stop:
            now = clock()
            if now - last < GAP:
                self.running += now - last
            last = now
            self.count += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join(10)


def iterationsWhile(mode, on, idle, prepare=None):
    """Iterations of a busy worker during ``idle()``, with the GIL mode ``on`` or off.
    ``prepare()``, if given, runs first and returns the ``idle`` to measure."""
    previous = mode.enable(on)
    try:
        with BusyWorker() as worker:
            if prepare is not None:
                idle = prepare()
            time.sleep(0.05)  # let it start (time.sleep releases the GIL in both modes)
            before = worker.count
            idle()
            return worker.count - before
    finally:
        mode.enable(previous)


def runningShareWhile(mode, on, idle):
    """The share of the time a busy worker runs during ``idle()``, with the GIL mode ``on`` or off."""
    previous = mode.enable(on)
    try:
        with BusyWorker() as worker:
            time.sleep(0.05)
            before, started = worker.running, time.perf_counter()
            idle()
            return (worker.running - before) / (time.perf_counter() - started)
    finally:
        mode.enable(previous)


def test_idle_starves_a_worker_thread(pythonqt_gil):
    normal = iterationsWhile(pythonqt_gil, False, lambda: harness.idle(1000))
    held = iterationsWhile(pythonqt_gil, True, lambda: harness.idle(1000))
    print(
        f"busy worker during 1 s of idle: normal {normal}, PythonQt GIL {held} ({normal / max(held, 1):.0f}x)"
    )
    assert normal >= MIN_SLOWDOWN * held


def test_wait_until_starves_a_worker_thread(pythonqt_gil):
    """The condition checks of wait_until (every 200 ms in the mode) hand the worker a slice
    each: it must still run less than a tenth of the time (a free worker runs all of it)."""

    def waitOneSecond():
        with pytest.raises(TimeoutError):
            harness.wait_until(lambda: False, timeout=1.0)

    normal = runningShareWhile(pythonqt_gil, False, waitOneSecond)
    held = runningShareWhile(pythonqt_gil, True, waitOneSecond)
    print(f"busy worker's share of a 1 s wait_until: normal {normal:.0%}, PythonQt GIL {held:.1%}")
    assert normal > 5 * held
    assert held < MAX_HELD_SHARE


def test_qtbot_waits_keep_the_gil(pythonqt_gil, qtbot):
    """Existing module tests idle through qtbot: in the mode its waits keep the GIL too."""

    def qtbotWaits():
        qtbot.wait(500)
        with pytest.raises(qtbot.TimeoutError):
            qtbot.waitUntil(lambda: False, timeout=500)

    normal = runningShareWhile(pythonqt_gil, False, qtbotWaits)
    held = runningShareWhile(pythonqt_gil, True, qtbotWaits)
    print(f"busy worker's share of 1 s of qtbot waits: normal {normal:.0%}, PythonQt GIL {held:.1%}")
    assert normal > 5 * held
    assert held < MAX_HELD_SHARE


def test_processEvents_keeps_the_gil(pythonqt_gil, slicer_app):
    """``slicer.app.processEvents()`` is a wrapped C++ call: PythonQt keeps the GIL inside it.

    The pending event is a C++-only one that takes 500 ms: a queued call of a dialog's ``exec()``
    slot, closed by a single-shot timer wired in C++ to ``accept()``. The dialog is created by
    Qt's own .ui loader and the timer by ``QTimer::singleShot``, so they are plain C++ objects:
    a Python-created one would look up Python overrides of its virtual methods (Python code, in
    the test stubs) at every event. No Python runs inside processEvents, so in the mode the
    worker gets (almost) nothing for those 500 ms.
    """
    import qt
    import slicer
    from PySide6 import QtCore, QtUiTools

    ui = b'<ui version="4.0"><widget class="QDialog" name="slowEvent"/></ui>'

    def prepare():
        buffer = QtCore.QBuffer()
        buffer.setData(ui)
        dialog = QtUiTools.QUiLoader().load(buffer)
        qt.QTimer.singleShot(550, dialog, qt.SLOT("accept()"))
        qt.QMetaObject.invokeMethod(dialog, "exec", qt.Qt.QueuedConnection)

        def processSlowEvent():
            started = time.monotonic()
            slicer.app.processEvents()
            assert time.monotonic() - started > 0.3, f"processEvents returned before {dialog} was closed"

        return processSlowEvent

    normal = iterationsWhile(pythonqt_gil, False, None, prepare)
    held = iterationsWhile(pythonqt_gil, True, None, prepare)
    print(f"busy worker during a 500 ms processEvents: normal {normal}, PythonQt GIL {held}")
    assert normal >= MIN_SLOWDOWN * held


def test_latency_probe_sees_a_blocked_main_thread(latency_probe):
    """Idle, the 20 ms timer ticks on time (a loaded machine may delay it some); a main thread
    busy for 500 ms shows as a gap of at least that."""
    latency_probe.start()
    harness.idle(300)
    idleWorst = latency_probe.stop()
    assert latency_probe.ticks >= 5
    assert idleWorst < 250

    latency_probe.start()
    harness.idle(60)
    time.sleep(0.5)  # the main thread is busy: no timer can fire
    harness.idle(60)
    blockedWorst = latency_probe.stop()
    assert blockedWorst >= 500


def test_latency_probe_in_the_mode(pythonqt_gil, latency_probe):
    """The probe's own Python slot runs inside the GIL-holding loop (the GIL is re-entrant), so
    an idle GUI keeps its timers going in the mode too (25 ticks nominal in 500 ms)."""
    with latency_probe:
        harness.idle(500)
    assert latency_probe.ticks >= 10
    assert latency_probe.worst_ms < 250


# -- what the mode shows about the current design ----------------------------------------------


def cpuBound(progress, cancel):
    """A CPU-bound Python job: units of pure-Python arithmetic, progress after each."""
    done = 0
    while not cancel.cancelled:
        sum(i * i for i in range(2_000))
        done += 1
        progress(done, 0, "")
    return done


def test_a_python_thread_job_starves_in_the_mode(pythonqt_gil):
    """DOCUMENTS THE PROBLEM (issue 14): the module runs import, retrieve, send and loading as
    DICOMPlusLib Jobs in Python threads of Slicer's process. Inside Slicer such a Job advances
    only when Python runs on the main thread: started from the Python console
    (``logic.importFiles(...)``) with no Python timer running, it stalls. A design that runs the
    work in a child process does not have this problem; this test asserts the slowdown of the
    thread, not of the product."""
    from DICOMPlusLib.jobs import Job

    def unitsInOneSecond(on):
        previous = pythonqt_gil.enable(on)
        job = Job("cpu-bound", cpuBound).start()
        try:
            harness.idle(1000)
            return job.poll().done
        finally:
            job.cancel()
            job.wait(10)
            pythonqt_gil.enable(previous)

    normal = unitsInOneSecond(False)
    held = unitsInOneSecond(True)
    print(f"Job units in 1 s of idle: normal {normal}, PythonQt GIL {held} ({normal / max(held, 1):.0f}x)")
    assert normal >= MIN_SLOWDOWN * held


# -- the acceptance figures of issue 14, measured in the mode ----------------------------------


@contextlib.contextmanager
def quietHeap():
    """Collect, then freeze what the test session has allocated so far (gc.freeze) for the
    block: a full collection over every earlier test's objects takes 100-200 ms on the main
    thread here, a pause of the test process rather than of the design being measured. Objects
    made inside the block are collected as usual."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def cliImportSeconds(folders, database):
    import subprocess
    import sys

    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(database), "import", *map(str, folders)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return time.perf_counter() - started


def panelImportSeconds(dicomplus_module, qtbot, folders, database, probe=None):
    """Seconds to import ``folders`` through the panel (Import, then idle until it is done);
    ``probe`` (a LatencyProbe) runs from the click to the end of the import."""
    widget = dicomplus_module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    widget.logic.setDatabasePath(database)
    harness.idle(100)  # the panel settles (its first refresh) before the measure starts
    try:
        if probe is not None:
            probe.start()
        started = time.perf_counter()
        job = widget.importPaths(folders)
        harness.wait_until(lambda: widget.activeJob is None, timeout=600)
        seconds = time.perf_counter() - started
        if probe is not None:
            probe.stop()
        assert job.result.added == 1000
        return seconds
    finally:
        widget.cleanup()


@pytest.fixture
def thousand_files(tmp_path):
    from dicomplus_testing.synthetic import make_series

    return [make_series(tmp_path / f"s{i}", n=250, rows=16, cols=16, seed=i).folder for i in range(4)]


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="issue 14 item 1: the panel imports in a Python thread of Slicer's process, which starves "
    "while Slicer idles (0.1-0.4x measured); expected to pass once the import runs in the engine process",
)
def test_panel_import_keeps_pace_with_the_cli_in_the_mode(
    pythonqt_gil, dicomplus_module, qtbot, tmp_path, thousand_files
):
    """Issue 14 acceptance: in the mode, importing 1,000 files through the panel reaches at least
    0.8x the throughput of ``dicomplus import`` on the same files. No Python timer of the test
    runs meanwhile: one would feed the import thread a slice at every tick (a 20 ms probe took
    this from about 0.4x to 1.5x), which an idle Slicer does not do."""
    # the CLI's best of two runs: a loaded machine slows its worker processes more than the panel
    cliSeconds = min(cliImportSeconds(thousand_files, tmp_path / f"cli{run}" / "db.sqlite") for run in (1, 2))
    panelSeconds = panelImportSeconds(
        dicomplus_module, qtbot, thousand_files, tmp_path / "panel" / "db.sqlite"
    )
    ratio = cliSeconds / panelSeconds
    print(
        f"1,000 files: CLI {cliSeconds:.1f} s, panel in the PythonQt GIL mode {panelSeconds:.1f} s "
        f"({ratio:.2f}x the CLI's throughput)"
    )
    assert ratio >= 0.8


def test_gui_timer_stays_on_time_during_a_panel_import_in_the_mode(
    pythonqt_gil, dicomplus_module, qtbot, tmp_path, thousand_files, latency_probe
):
    """Issue 14 acceptance: a 20 ms QTimer's worst latency stays under 100 ms while the panel
    imports 1,000 files, in the mode."""
    with quietHeap():
        panelImportSeconds(
            dicomplus_module, qtbot, thousand_files, tmp_path / "panel" / "db.sqlite", latency_probe
        )
    print(f"20 ms timer during a 1,000-file panel import: {latency_probe!r}")
    assert latency_probe.worst_ms < 100


def test_listener_receives_500_instances_while_the_gui_stays_on_time_in_the_mode(
    pythonqt_gil, dicomplus_module, dcmtk, tmp_path, latency_probe
):
    """Issue 14 acceptance: in the mode, the module's listener receives 500 instances pushed by
    DCMTK storescu (one association) while a 20 ms QTimer's worst latency stays under 100 ms.
    storescu runs as a child process; the main thread only idles until it is done."""
    import subprocess

    from dicomplus_testing.peers import tool_env
    from dicomplus_testing.synthetic import make_series
    from dicomplus_testing.util import free_port

    series = make_series(tmp_path / "push", n=500, rows=16, cols=16, patient_id="LISTEN500")
    logic = dicomplus_module.DICOMPlusLogic(
        databasePath=tmp_path / "db.sqlite", nodesPath=tmp_path / "n.json"
    )
    try:
        port = logic.startListener(port=free_port(), aeTitle="GILTEST")
        argv = [dcmtk.path("storescu"), "-aet", "STORESCU", "-aec", "GILTEST", "127.0.0.1", str(port)]
        with quietHeap(), latency_probe:
            started = time.perf_counter()
            push = subprocess.Popen(
                [*argv, *map(str, series.files)],
                env=tool_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            try:
                harness.wait_until(lambda: push.poll() is not None, timeout=300)
            finally:
                if push.poll() is None:
                    push.kill()
                output = push.communicate()[0].decode(errors="replace")
            seconds = time.perf_counter() - started
        received = len(logic.database.instances(series.series_uid))
        print(
            f"listener in the mode: {received}/500 instances in {seconds:.1f} s; 20 ms timer: {latency_probe!r}"
        )
        assert push.returncode == 0, output[-2000:]
        assert received == 500
        assert latency_probe.worst_ms < 100
    finally:
        logic.stopListener()
        logic.closeDatabase()


def test_retrieve_from_orthanc_while_the_gui_stays_on_time_in_the_mode(
    pythonqt_gil, dicomplus_module, orthanc_session, tmp_path, latency_probe
):
    """Issue 14 acceptance: in the mode, the module retrieves a 200-instance series from Orthanc
    (C-GET) while a 20 ms QTimer's worst latency stays under 100 ms. Measured warm: the first
    retrieve of a session also imports the network stack on the main thread (about 0.4 s today,
    a freeze this test leaves out so that its result does not depend on the tests run before)."""
    from dicomplus_testing.synthetic import make_series

    series = make_series(tmp_path / "orthanc", n=200, rows=16, cols=16, modality="MR", patient_id="GIL-RET-1")
    orthanc_session.upload(series.folder)
    logic = dicomplus_module.DICOMPlusLogic(
        databasePath=tmp_path / "db.sqlite", nodesPath=tmp_path / "n.json"
    )
    try:
        logic.addNode("orthanc", orthanc_session.aet, "127.0.0.1", orthanc_session.dicom_port)
        # warm: the packages are checked and the retrieve code imported before the measure
        assert logic.echo("orthanc").ok
        import DICOMPlusLib.network.retrieve  # noqa: F401

        with quietHeap(), latency_probe:
            started = time.perf_counter()
            job = logic.retrieve("orthanc", studyUID=series.study_uid, wait=False)
            harness.wait_until(lambda: job.finished, timeout=300)
            seconds = time.perf_counter() - started
        received = len(logic.database.instances(series.series_uid))
        print(
            f"retrieve in the mode: {received}/200 instances in {seconds:.1f} s; 20 ms timer: {latency_probe!r}"
        )
        assert job.error is None, job.error
        assert received == 200
        assert latency_probe.worst_ms < 100
    finally:
        logic.closeDatabase()
