"""Background work for the widgets: the engine process computes, the Qt main thread collects.

:class:`EngineQueue` hands keyed requests to the DICOMPlus engine (a child process: Python
threads starve in Slicer's process, see DICOMPlusWidgets.engine) a few at a time, in the order
the widget wants, and keeps their results. :class:`QueuePump` is the Qt side: a QTimer on the
main thread takes the results and hands them to the widget. Nothing here blocks the main thread
and no Python thread is started.
"""

from __future__ import annotations

import collections
import sys
import types
import weakref

import qt

from DICOMPlusLib.jobs import Pacer


class EngineQueue:
    """Run ``(op, args)`` requests in the engine for keys; :meth:`take` returns what finished.

    Keys are unique: putting a key that is pending replaces its request (and can move it to the
    front). At most ``depth`` requests are in the engine at once (so a widget that changes its
    subject does not wait behind a long queue); the next one sent is the first pending in
    insertion order, or the one with the smallest ``order(key)`` when an order function is set
    (the preview decodes the slices nearest to the one shown first). :meth:`discard` drops pending
    work and the results of the requests running, so a widget never sees stale results.
    """

    def __init__(self, engine=None, depth=2):
        self._engine = engine
        self.depth = depth
        self._pending = {}
        self._running = {}  # key -> (job, generation)
        self._results = collections.deque()
        self._generation = 0
        self._order = None
        self._closed = False

    @property
    def engine(self):
        if self._engine is None:
            from .engine import engine

            self._engine = engine()
        return self._engine

    def put(self, key, request, first=False):
        """Queue ``request`` = (op, args) under ``key``; ``first`` sends it before the others."""
        if self._closed:
            return
        if first:
            self._pending.pop(key, None)
            self._pending = {key: request, **self._pending}
        else:
            self._pending[key] = request
        self._send()

    def setOrder(self, order):
        """``order(key) -> sortable`` chooses the next key (None: insertion order)."""
        self._order = order

    def isPending(self, key):
        return key in self._pending or key in self._running

    def discard(self):
        """Drop pending work and the results of what runs now (their jobs are cancelled)."""
        self._pending.clear()
        self._results.clear()
        self._generation += 1
        for job, _generation in self._running.values():
            job.cancel()

    def take(self):
        """[(key, value, error)] of the requests finished since the last take."""
        out = list(self._results)
        self._results.clear()
        return out

    def takeOne(self):
        """(key, value, error) of the oldest finished request (call while :attr:`hasResults`)."""
        return self._results.popleft()

    @property
    def hasResults(self):
        return bool(self._results)

    @property
    def idle(self):
        """Nothing pending, nothing running, nothing to take."""
        return not self._pending and not self._running and not self._results

    def close(self):
        """Discard everything and accept no more work."""
        self.discard()
        self._closed = True

    def quiesce(self, timeout=30.0):
        """Drop pending work (a database is about to close: the engine has its own connection,
        so nothing here is using it)."""
        self.discard()

    def _send(self):
        while len(self._running) < self.depth and not self._closed:
            ready = [key for key in self._pending if key not in self._running]  # one per key at a time
            if not ready:
                return
            key = ready[0] if self._order is None else min(ready, key=self._order)
            op, args = self._pending.pop(key)
            job = self.engine.submit(op, args)
            self._running[key] = (job, self._generation)
            job.on_finished(lambda ended, key=key: self._finished(key, ended))

    def _finished(self, key, job):
        running = self._running.get(key)
        if running is None or running[0] is not job:
            return
        del self._running[key]
        if running[1] == self._generation:
            self._results.append((key, job.result, job.error))
        self._send()


def followDatabaseClosing(queue, oldSource, newSource):
    """Quiesce ``queue`` whenever ``newSource`` (a DICOMPlusLogic) is about to close its database,
    so that no worker is inside a query when its connection closes; forget ``oldSource``."""
    for source, connect in ((oldSource, False), (newSource, True)):
        signal = getattr(source, "databaseAboutToClose", None)
        if signal is None:
            continue
        if connect:
            signal.connect(queue.quiesce)
        else:
            signal.disconnect(queue.quiesce)


class QueuePump:
    """Drain an :class:`EngineQueue` from a QTimer on the main thread.

    ``handler(key, value, error)`` is called on the main thread for each finished call, in steps
    of :func:`pacedWork` (a thumbnail or a slice is made into a QImage there: results that piled
    up while the main thread was busy are handed over in several turns, not one)
    The timer runs only while the queue has work (:meth:`kick` after putting work starts it).
    """

    def __init__(self, queue, handler, parent=None, interval=25):
        self.queue = queue
        # weakly, so that the widget owning this pump and its handler form no reference cycle
        self._handler = (
            weakref.WeakMethod(handler) if isinstance(handler, types.MethodType) else (lambda: handler)
        )
        self.timer = qt.QTimer(parent)
        self.timer.setInterval(interval)
        self.timer.connect("timeout()", self.drain)

    def kick(self):
        if not self.timer.isActive():
            self.timer.start()

    def drain(self):
        handler = self._handler()
        if handler is None:  # the widget is gone
            self.stop()
            return
        if self.queue.hasResults:
            pacedWork().add(self._handOne)
        if self.queue.idle:
            self.timer.stop()

    def _handOne(self):
        """One unit of paced work: the oldest result to the handler (what is not handed over
        stays in the queue, so its discard drops it); True while results are left."""
        handler = self._handler()
        if handler is None or not self.queue.hasResults:
            return False
        handler(*self.queue.takeOne())
        return self.queue.hasResults

    def stop(self):
        """Stop for good: no more work."""
        self.queue.close()
        pacedWork().remove(self._handOne)
        stopTimer(self.timer)


class PacedWork:
    """The widgets' own work on the main thread, in steps of one :class:`Pacer` budget per turn
    of the event loop, whichever widget it is for.

    ``add(work)``: ``work()`` does one unit (a tile, a row, a result handed over) and returns
    True while it has more. A zero-interval timer runs one pacer step per turn; the works take
    units in turn. One budget for them all: a step each (the grid's, the thumbnails', the
    pump's) would add up to several budgets in the same turn. The first unit runs in the next
    turn, never in the caller's (a refresh has its own database reads).
    """

    def __init__(self):
        self.pacer = Pacer()
        self._works = collections.deque()
        self._timer = None

    def add(self, work):
        if work not in self._works:
            self._works.append(work)
        if self._timer is None:
            self._timer = qt.QTimer()
            self._timer.setSingleShot(True)
            self._timer.setInterval(0)
            self._timer.connect("timeout()", self._step)
        if not self._timer.isActive():
            self._timer.start()

    def remove(self, work):
        """Forget ``work`` (its widget is going away)."""
        while work in self._works:
            self._works.remove(work)

    @property
    def pending(self):
        return bool(self._works)

    def _step(self):
        if self._works and self.pacer.step(self._unit):
            self._timer.start()

    def _unit(self):
        work = self._works.popleft()
        try:
            more = work()
        except Exception:  # one widget's failure (or a widget deleted by its host) stops its work only
            sys.excepthook(*sys.exc_info())
            more = False
        if more:
            self._works.append(work)
        return bool(self._works)


_pacedWork = []


def pacedWork():
    """The one :class:`PacedWork` of this process (made on first use)."""
    if not _pacedWork:
        _pacedWork.append(PacedWork())
    return _pacedWork[0]


def stopTimer(timer):
    """Stop a QTimer that may already be gone with its parent widget (a host deleted the widget
    before calling cleanup): PySide raises RuntimeError then, PythonQt ValueError."""
    try:
        timer.stop()
    except (RuntimeError, ValueError):
        pass
