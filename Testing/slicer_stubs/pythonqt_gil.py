"""The PythonQt-faithful GIL mode: the main thread keeps the GIL while the Qt event loop idles.

Why: Slicer starts Python itself and never releases the GIL (no ``setEnableThreadSupport``, no
``PyEval_SaveThread`` in Slicer, CTK or the PythonQt defaults; ../shared/notes/slicer-runtime.md
sections 3 and 8). While Slicer's main thread sits in ``QApplication::exec()`` or in a wrapped
C++ call (``slicer.app.processEvents()`` included), a Python worker thread cannot run a single
bytecode; it gets a slice (at most one switch interval, 5 ms) only when Python runs on the main
thread: a Python slot, a timer callback, the console. PySide6, which the test stubs are built on,
releases the GIL inside every wrapped Qt call, so plain tests cannot see this.

How: Qt's own C++ functions are called through :class:`ctypes.PyDLL` on PySide6's libQt6Core.
PyDLL keeps the GIL across the call, exactly as PythonQt does, and Python slots still run inside
it (the GIL is re-entrant for the thread that holds it). A Python loop of
``processEvents()`` plus a GIL-holding sleep does NOT do it (PySide releases the GIL inside
processEvents), nor does the two-argument ``processEvents(flags, maxtime)`` (it drops
``WaitForMoreEvents`` and returns at once).

* :func:`process_events` is ``QCoreApplication::processEvents(flags)`` with the GIL kept;
  ``slicer.app.processEvents()`` uses it while the mode is on.
* :func:`idle` runs a ``QEventLoop::exec()`` for ``ms`` milliseconds, ended by a
  ``QTimer::singleShot`` wired in C++ to ``QEventLoop::quit()``: no Python runs on the main
  thread unless the code under test scheduled it (its own timers and slots), as in Slicer's idle
  ``exec()``. ``qtbot.wait``/``waitSignal`` run their loops through :func:`exec_event_loop`.
* :func:`wait_until` idles until a condition holds or a deadline passes. Checking the condition
  is Python on the main thread, so it hands workers a slice too (up to a switch interval, 5 ms):
  it is checked every :data:`GIL_CHECK_INTERVAL` (200 ms, so the checks feed workers only a few
  per cent of the time) while the mode is on, every 10 ms otherwise.
* :class:`LatencyProbe` is a 20 ms QTimer with a Python slot that records the worst interval
  between its ticks: the GUI's responsiveness while something runs.

The mode is on when :func:`enable` says so, or by default when the environment variable
``DICOMPLUS_PYTHONQT_GIL=1`` is set (read at import). Normal mode behaves as PySide does.

What stays less strict than Slicer: every other PySide call (``QThread.msleep``, a dialog's
``exec()`` called from Python, any getter) still releases the GIL, and a QObject created from
Python runs the stubs' Python attribute lookup whenever Qt looks for a Python override of one of
its virtual methods (events, painting). Both hand worker threads slices that PythonQt would not,
so starvation measured here is a lower bound on Slicer's.

Linux and macOS builds of PySide6 (the symbols are the Itanium C++ ABI names); elsewhere
:func:`available` is False.
"""

from __future__ import annotations

import collections
import ctypes
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import PySide6
import shiboken6
from PySide6 import QtCore

ENVIRONMENT_VARIABLE = "DICOMPLUS_PYTHONQT_GIL"
GIL_CHECK_INTERVAL = 0.2
NORMAL_CHECK_INTERVAL = 0.01

_WAIT_FOR_MORE_EVENTS = 0x04  # QEventLoop::WaitForMoreEvents
_PROCESS_EVENTS = "_ZN16QCoreApplication13processEventsE6QFlagsIN10QEventLoop17ProcessEventsFlagEE"
_PROCESS_EVENTS_MAXTIME = "_ZN16QCoreApplication13processEventsE6QFlagsIN10QEventLoop17ProcessEventsFlagEEi"
_EVENT_LOOP_EXEC = "_ZN10QEventLoop4execE6QFlagsINS_17ProcessEventsFlagEE"
_SINGLE_SHOT = "_ZN6QTimer10singleShotEiPK7QObjectPKc"  # (int, const QObject*, const char*)
_QUIT_SLOT = b"1quit()"  # what SLOT(quit()) expands to

_enabled = os.environ.get(ENVIRONMENT_VARIABLE, "") not in ("", "0", "false")
_functions = None
_idlers = []  # free (loop, timer, loop pointer, timer pointer): idle() may nest


def _qtcore_library() -> Path:
    qtlib = Path(PySide6.__file__).parent / "Qt" / "lib"
    if sys.platform == "darwin":
        return qtlib / "QtCore.framework" / "QtCore"
    return qtlib / "libQt6Core.so.6"


def _load():
    """The Qt functions, bound through PyDLL (GIL kept) on the QtCore PySide6 loaded."""
    global _functions
    if _functions is None:
        library = ctypes.PyDLL(str(_qtcore_library()))
        processEvents = library[_PROCESS_EVENTS]
        processEvents.argtypes, processEvents.restype = [ctypes.c_int], None
        processEventsMaxTime = library[_PROCESS_EVENTS_MAXTIME]
        processEventsMaxTime.argtypes, processEventsMaxTime.restype = [ctypes.c_int, ctypes.c_int], None
        loopExec = library[_EVENT_LOOP_EXEC]
        loopExec.argtypes, loopExec.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
        singleShot = library[_SINGLE_SHOT]
        singleShot.argtypes, singleShot.restype = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p], None
        _functions = (processEvents, processEventsMaxTime, loopExec, singleShot)
    return _functions


def available() -> bool:
    """True when Qt's C++ entry points can be called with the GIL kept on this platform."""
    try:
        _load()
    except (OSError, AttributeError):
        return False
    return True


def enabled() -> bool:
    """Whether the main thread keeps the GIL while Qt idles (the PythonQt behaviour)."""
    return _enabled


def enable(on: bool = True) -> bool:
    """Turn the mode on or off; returns the previous state (to restore it)."""
    global _enabled
    if on and not available():
        raise RuntimeError(f"the PythonQt GIL mode needs PySide6's QtCore at {_qtcore_library()}")
    previous, _enabled = _enabled, bool(on)
    return previous


def _flags(flags) -> int:
    return int(getattr(flags, "value", flags))


def process_events(flags=0, maxtime=None) -> None:
    """``QCoreApplication::processEvents(flags[, maxtime])`` with the GIL kept by the caller."""
    processEvents, processEventsMaxTime = _load()[:2]
    if maxtime is None:
        processEvents(_flags(flags))
    else:
        processEventsMaxTime(_flags(flags), int(maxtime))


def exec_event_loop(loop, flags=0) -> int:
    """``loop.exec(flags)`` (a QEventLoop) with the GIL kept: Python slots run inside it, worker
    threads do not. Quit it as usual (``loop.quit()``, or a timer wired to it)."""
    loopExec = _load()[2]
    return loopExec(shiboken6.getCppPointer(loop)[0], _flags(flags))


def _idler():
    """A QEventLoop (and its C++ address), made once and reused: every PySide call releases the
    GIL, so the GIL-holding path must not make any."""
    if _idlers:
        return _idlers.pop()
    loop = QtCore.QEventLoop()
    return loop, shiboken6.getCppPointer(loop)[0]


def idle(ms: float) -> None:
    """Let the event loop idle for ``ms`` milliseconds, as Slicer's main thread does.

    A ``QTimer::singleShot`` wired in C++ to the loop's ``quit()`` ends it: a timer created from
    Python would look up Python overrides of its virtual methods when it fires (Python code, in
    the test stubs) and so hand worker threads a slice. In the mode the GIL stays with the main
    thread (no Python runs there unless the code under test scheduled it); otherwise PySide
    releases it (normal mode).
    """
    idler = _idler()
    loop, loopPointer = idler
    ms = max(0, round(ms))
    try:
        if _enabled:
            _, _, loopExec, singleShot = _load()
            singleShot(ms, loopPointer, _QUIT_SLOT)
            loopExec(loopPointer, 0)
        else:
            QtCore.QTimer.singleShot(ms, loop, QtCore.SLOT("quit()"))
            loop.exec()
    finally:
        _idlers.append(idler)


def wait_until(condition, timeout: float = 5.0, interval: float | None = None) -> None:
    """Idle the event loop (:func:`idle`) until ``condition()`` is true; ``TimeoutError`` after
    ``timeout`` seconds. ``condition`` may also be an ``assert`` function (None = holds)."""
    if interval is None:
        interval = GIL_CHECK_INTERVAL if _enabled else NORMAL_CHECK_INTERVAL
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition() in (None, True):
                return
            failure = None
        except AssertionError as error:
            failure = error
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"condition not met within {timeout:g} s") from failure
        idle(1000 * min(interval, remaining))


class LatencyProbe:
    """A QTimer with a Python slot every ``interval_ms`` that records the worst gap between ticks.

    This is what a user feels: a GUI timer that fires late means a frozen panel. Use it around
    the work to measure, as a context manager or with :meth:`start`/:meth:`stop`::

        with LatencyProbe() as probe:
            ...  # start the work, then wait_until(done)
        assert probe.worst_ms < 100, probe.worst_report()

    ``worst_ms`` also counts the gap from the last tick to :meth:`stop`, so a main thread that
    is blocked until the end is not missed.

    With ``sample_ms`` a thread takes the main thread's Python stack every ``sample_ms``
    (``sys._current_frames``; it reads nothing else) and the probe keeps the stacks taken in the
    worst gap: :meth:`worst_report` says what the main thread ran then. In the GIL mode the
    sampler gets the GIL only when the main thread runs Python (it asks, and the main thread
    hands it over at its next switch interval), so a gap with no sample is one where the main
    thread ran no Python: C++ work, or the process not scheduled. The cost is a few microseconds
    per sample, taken from the main thread only while it runs Python.
    """

    def __init__(self, interval_ms: int = 20, sample_ms: float | None = None):
        self.interval_ms = interval_ms
        self.sample_ms = sample_ms
        self.ticks = 0
        self.worst_ms = 0.0
        self.worst_samples: list[tuple[float, list[str]]] = []  # (ms into the gap, stack)
        self._last = None
        self._samples: collections.deque = collections.deque(maxlen=4096)
        self._stop_sampling: threading.Event | None = None
        self._timer = QtCore.QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.monotonic()
        if self._last is not None:
            self._gap(self._last, now)
        self._last = now
        self.ticks += 1

    def _gap(self, since: float, now: float) -> None:
        gap = 1000 * (now - since)
        if gap > self.worst_ms:
            self.worst_ms = gap
            if self.sample_ms:
                kept = list(self._samples)  # one C call under the GIL: the sampler cannot interleave
                self.worst_samples = [(1000 * (t - since), stack) for t, stack in kept if since < t <= now]

    def _sample(self, main: int, stop: threading.Event) -> None:
        while not stop.wait(self.sample_ms / 1000):
            frame = sys._current_frames().get(main)
            stack = (
                []
                if frame is None
                else traceback.StackSummary.extract(traceback.walk_stack(frame), limit=40, lookup_lines=False)
            )
            self._samples.append((time.monotonic(), [f"{f.filename}:{f.lineno} {f.name}" for f in stack]))

    def start(self) -> LatencyProbe:
        self.ticks, self.worst_ms, self._last = 0, 0.0, time.monotonic()
        self.worst_samples = []
        if self.sample_ms and self._stop_sampling is None:
            self._samples.clear()
            self._stop_sampling = threading.Event()
            threading.Thread(
                target=self._sample,
                args=(threading.main_thread().ident, self._stop_sampling),
                name="LatencyProbe sampler",
                daemon=True,
            ).start()
        self._timer.start()
        return self

    def stop(self) -> float:
        """Stop; returns the worst interval in milliseconds."""
        self._timer.stop()
        if self._last is not None:
            self._gap(self._last, time.monotonic())
            self._last = None
        if self._stop_sampling is not None:
            self._stop_sampling.set()
            self._stop_sampling = None
        return self.worst_ms

    def worst_report(self, own: tuple[str, ...] = ("DICOMPlus",)) -> str:
        """What the main thread ran in the worst gap: the stacks sampled then, innermost frame
        first, the frames of files whose path contains one of ``own`` marked with ``>``."""
        lines = [
            f"worst gap {self.worst_ms:.0f} ms, {len(self.worst_samples)} samples of the main thread in it"
        ]
        if self.sample_ms is None:
            lines.append("(no samples: LatencyProbe(sample_ms=...) records them)")
        elif not self.worst_samples:
            lines.append("no Python ran on the main thread in the gap (C++ work, or not scheduled)")
        for at, stack in self.worst_samples:
            lines.append(f"  at {at:.0f} ms:")
            lines += [f"    {'>' if any(o in frame for o in own) else ' '} {frame}" for frame in stack[:25]]
        return "\n".join(lines)

    def __enter__(self) -> LatencyProbe:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self):
        return f"<LatencyProbe every {self.interval_ms} ms: {self.ticks} ticks, worst {self.worst_ms:.1f} ms>"
