"""One thread that receives the C-GETs of several associations at once.

A retrieve over N associations (``--parallel N``) ran N threads, each reading its socket and
storing what came. In CPython they take turns holding the GIL, and every system call and SQLite
statement of a received instance (~20) gives it away: four threads receiving a 300-instance
study from Orthanc made ~3,700 thread switches and spent ~30% more CPU than one association
alone, so that on a 2-core machine four associations took longer than one (docs/performance.md).

A :class:`ReceivePump` drives the data phase of each association's C-GET from one thread of its
own: ``select`` says which sockets are readable, their bytes go into their streams
(:meth:`~DICOMPlusLib.network.dimse.ul.PDUStream.fill_available`), and each operation's event
loop (``QRAssociation._events`` with ``pumped``) is resumed until it has no whole PDU left. The
association threads sleep meanwhile, and do the rest as before (associating, the requests, the
release). Each operation looks at its cancel and its idle timeout whenever it is resumed, which
the pump does for every operation at least every :data:`TICK_S` seconds.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from DICOMPlusLib.errors import ConnectionClosed, ProtocolError

#: How often every operation is resumed, data or not (its cancel, C-CANCEL's grace, its timeout);
#: between, only one whose socket brought a whole PDU is.
TICK_S = 0.05


class _Operation:
    __slots__ = ("done", "error", "events", "hear", "result", "stream")

    def __init__(self, stream, events: Generator, hear: Callable[[str, Any], None]) -> None:
        self.stream, self.events, self.hear = stream, events, hear
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class ReceivePump:
    """Receives the operations handed to :meth:`run` from one thread, started with the first
    and ended when none is left."""

    def __init__(self, name: str = "dicomplus-receive") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._new: list[_Operation] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def run(self, stream, events: Generator, hear: Callable[[str, Any], None]) -> Any:
        """Drive ``events`` (an event loop that yields ("wait", None) when it has no whole PDU)
        on the pump's thread, calling ``hear(kind, item)`` for each event but the final one;
        wait for it and return the final event's item, or raise what ended it."""
        op = _Operation(stream, events, hear)
        with self._lock:
            self._new.append(op)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
        self._wake()
        op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    def close(self) -> None:
        """Free the pump once its callers are done. Its thread ends when no operation is left
        (at once then); one still running (its callers gave up waiting, after a second Ctrl-C)
        frees the pump itself when it ends."""
        with self._lock:
            self._closing = True
            thread = self._thread
        if thread is not None:
            thread.join(1.0)
        with self._lock:
            if self._thread is None:
                self._close_wake()

    def _close_wake(self) -> None:
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (the pump has wake-ups to read already) or closed
            pass

    def _loop(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        running: list[_Operation] = []
        next_tick = 0.0
        try:
            while True:
                with self._lock:
                    new, self._new = self._new, []
                    if not new and not running:
                        self._thread = None
                        if self._closing:
                            self._close_wake()
                        return
                ended: list[_Operation] = []
                for op in new:  # runs to its first wait (what is buffered already, its request's answer)
                    running.append(op)
                    selector.register(op.stream.sock, selectors.EVENT_READ, op)
                    if self._advance(op):
                        ended.append(op)
                for key, _ in selector.select(TICK_S):
                    op = key.data
                    if op is None:
                        try:
                            while self._wake_r.recv(256):
                                pass
                        except OSError:
                            pass
                        continue
                    try:
                        whole = op.stream.fill_available()
                    except (ConnectionClosed, ProtocolError) as exc:  # the event loop reports it
                        if self._advance(op, exc):
                            ended.append(op)
                        continue
                    if whole and self._advance(op):
                        ended.append(op)
                now = time.monotonic()
                if now >= next_tick:  # each looks at its cancel and idle timeout, data or not
                    next_tick = now + TICK_S
                    for op in running:
                        if op not in ended and self._advance(op):
                            ended.append(op)
                for op in ended:  # out of the selector before its thread may close the socket
                    running.remove(op)
                    selector.unregister(op.stream.sock)
                    op.done.set()
        except Exception as exc:  # a fault of the pump's own: its callers hear of it, none waits forever
            with self._lock:
                self._thread = None
                running += self._new
                self._new = []
            said = f"the thread receiving the C-GETs failed: {exc!r}"
            for op in running:
                if not op.done.is_set():
                    if op.result is None and op.error is None:
                        # ended as a lost connection: what it answered is committed and heard of,
                        # its partial file removed, its association closed (not released)
                        self._advance(op, ConnectionClosed(said))
                    if op.result is None:
                        op.error = op.error or RuntimeError(said)
                    op.done.set()
        finally:
            selector.close()

    @staticmethod
    def _advance(op: _Operation, exc: BaseException | None = None) -> bool:
        """Resume ``op`` until it waits (False) or ends (True: its result or error is set)."""
        events = op.events
        try:
            kind, item = events.throw(exc) if exc is not None else next(events)
            while kind != "wait":
                if kind == "final":
                    op.result = item
                    # its clean-ups (the temporary file made ahead for a next instance) run now,
                    # not when the generator is collected: an exception logged on its way keeps
                    # its frames, and so the generator, alive in a handler that holds records
                    events.close()
                    return True
                op.hear(kind, item)
                kind, item = next(events)
        except BaseException as error:  # handed to the caller's thread
            op.error = error
            events.close()
            return True
        return False
