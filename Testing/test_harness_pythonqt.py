"""The PythonQt GIL mode of the harness (Testing/slicer_stubs/pythonqt_gil.py) starves Python
worker threads as Slicer does, and the current thread-based design of the module starves with it.

Each test measures the same thing in normal mode (PySide releases the GIL while Qt waits) and in
the mode (the main thread keeps it, as PythonQt does), in the same run, and asserts a ratio: the
mode must cut a busy worker thread's progress at least tenfold (the note measured 18x for a
GIL-holding idle loop; Slicer's WorkQueue 11-26x).
"""

from __future__ import annotations

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
