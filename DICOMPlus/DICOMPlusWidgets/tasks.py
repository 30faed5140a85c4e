"""Background work for the widgets: worker threads compute, the Qt main thread collects.

:class:`WorkQueue` is plain Python (threads, no Qt): one worker thread, started when work arrives
and ended when there is none, runs keyed callables and keeps their results. :class:`QueuePump`
is the Qt side: a QTimer on the main thread takes the results and hands them to the widget, so
workers never touch Qt or MRML and the main thread never waits for a worker (no
``processEvents`` loop anywhere).
"""

from __future__ import annotations

import collections
import threading
import types
import weakref

import qt


class WorkQueue:
    """Run ``func()`` for each key in a worker thread; :meth:`take` returns what finished.

    Keys are unique: putting a key that is pending replaces its function (and can move it to the
    front). The next key run is the first pending one in insertion order, or the one with the
    smallest ``order(key)`` when an order function is set (the preview decodes the slices
    nearest to the one shown first). :meth:`discard` drops pending work and the result of the
    one running, so a widget that changes its subject never sees stale results.
    """

    def __init__(self, name="dicomplus-widgets"):
        self.name = name
        self._lock = threading.Lock()
        self._pending = {}
        self._results = collections.deque()
        self._running = None
        self._generation = 0
        self._thread = None
        self._order = None
        self._closed = False

    def put(self, key, func, first=False):
        """Queue ``func`` under ``key``; ``first`` runs it before the other pending keys."""
        with self._lock:
            if self._closed:
                return
            if first:
                self._pending.pop(key, None)
                self._pending = {key: func, **self._pending}
            else:
                self._pending[key] = func
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()

    def setOrder(self, order):
        """``order(key) -> sortable`` chooses the next key (None: insertion order)."""
        with self._lock:
            self._order = order

    def isPending(self, key):
        with self._lock:
            return key in self._pending or (self._running is not None and self._running[0] == key)

    def discard(self):
        """Drop pending work; the result of the call running now is dropped too."""
        with self._lock:
            self._pending.clear()
            self._results.clear()
            self._generation += 1

    def take(self):
        """[(key, value, error)] of the calls finished since the last take (main thread)."""
        with self._lock:
            out = list(self._results)
            self._results.clear()
        return out

    @property
    def idle(self):
        """Nothing pending, nothing running, nothing to take."""
        with self._lock:
            return not self._pending and self._running is None and not self._results

    def close(self):
        """Discard everything and accept no more work; the worker ends after its current call."""
        self.discard()
        with self._lock:
            self._closed = True

    def wait(self, timeout=None):
        """Block until the worker thread has ended (shutdown only: it ends when nothing is left)."""
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def quiesce(self, timeout=30.0):
        """Drop pending work and wait for the call running now to return: after this no worker
        uses what the calls were given (a database about to be closed, say)."""
        self.discard()
        self.wait(timeout)

    def _next(self):
        if self._order is None:
            return next(iter(self._pending))
        return min(self._pending, key=self._order)

    def _work(self):
        while True:
            with self._lock:
                if not self._pending or self._closed:
                    self._thread = None
                    self._running = None
                    return
                key = self._next()
                func = self._pending.pop(key)
                generation = self._generation
                self._running = (key, generation)
            try:
                value, error = func(), None
            except BaseException as exc:  # handed to the main thread, which decides
                value, error = None, exc
            with self._lock:
                self._running = None
                if generation == self._generation:
                    self._results.append((key, value, error))


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
    """Drain a :class:`WorkQueue` from a QTimer on the main thread.

    ``handler(key, value, error)`` is called on the main thread for each finished call. The timer
    runs only while the queue has work (:meth:`kick` after putting work starts it).
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
        for key, value, error in self.queue.take():
            handler(key, value, error)
        if self.queue.idle:
            self.timer.stop()

    def stop(self):
        """Stop for good: no more work; waits for the call running now to return."""
        self.queue.close()
        self.queue.wait(30.0)
        stopTimer(self.timer)


def stopTimer(timer):
    """Stop a QTimer that may already be gone with its parent widget (a host deleted the widget
    before calling cleanup): PySide raises RuntimeError then, PythonQt ValueError."""
    try:
        timer.stop()
    except (RuntimeError, ValueError):
        pass
