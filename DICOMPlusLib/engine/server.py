"""The engine process: long DICOMPlus work outside the host's process, driven over stdin/stdout.

Slicer's PythonQt keeps the GIL while Slicer's main thread idles, so Python threads inside
Slicer barely run (../docs/architecture.md). Import, retrieve, send, the listener and pixel
decoding therefore run here, in a child process that Slicer starts with ``qt.QProcess`` on its own
Python (``PythonSlicer -m DICOMPlusLib.engine``). Inside the engine, threads and worker
processes are fine: it is an ordinary Python process.

The engine never outlives its host: it stops when its stdin closes (the host quit or crashed)
and, on Linux, when its parent dies (``PR_SET_PDEATHSIG``). Everything it writes on stdout is
protocol (:mod:`DICOMPlusLib.engine.protocol`); stray prints and logs go to stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import DICOMPlusLib
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.engine import protocol
from DICOMPlusLib.engine.tasks import Task
from DICOMPlusLib.uninterrupted import raise_from_signal

if TYPE_CHECKING:
    from types import FrameType

    from DICOMPlusLib.network.listener import Listener
    from DICOMPlusLib.network.pacs.qrscp import QueryRetrieveSCP
    from DICOMPlusLib.network.storage import Subscription

logger = get_logger(__name__)

#: On stdin EOF, how long running tasks get to notice the cancel before the engine exits.
SHUTDOWN_GRACE = 5.0


class Engine:
    """Reads requests from ``inp``, runs each in a thread, writes events to ``out``."""

    def __init__(self, inp: IO[bytes], out: IO[bytes]) -> None:
        self._in = inp
        self._out = out
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._tasks: dict[int, Task] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._databases: dict[tuple[str, str | None], Any] = {}
        self._current: Any = None  # the opening the latest request named
        self.listener: Listener | None = None
        self._listener_subscription: Subscription | None = None
        self.pacs: QueryRetrieveSCP | None = None

    # -- output ------------------------------------------------------------------------------
    def send(self, message: dict) -> None:
        data = protocol.dumps(message)
        with self._write_lock:
            try:
                self._out.write(data)
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the host is gone; stdin EOF ends the engine

    def notify(self, topic: str, value: Any) -> None:
        self.send({"event": "notify", "topic": topic, "data": protocol.encode_value(value)})

    # -- shared state ----------------------------------------------------------------------------
    def database(self, target: str, store: str | None = None, user: Task | None = None):
        """The database at ``target`` (an SQLite path or a ``postgresql://`` URL) with its files
        in ``store`` (None: the database's own: ``store/`` beside an SQLite file, the folder a
        PostgreSQL database records), opened once per engine and store (a writer; SQLite WAL and
        PostgreSQL's MVCC let the host and other processes read meanwhile).

        A request is what ``dicomplus --db TARGET --store STORE`` would open: the host may have
        changed its store folder since the database was first opened here (the module's
        ``DICOMPlus/StorePath``), and an import must then land in the folder asked for, not in
        the one an earlier request named. Requests that come to the same database and store
        share one opening. An earlier opening stays while work uses it (``user``, a running task;
        the listener; the sample PACS) and is closed once nothing does (:meth:`close_unused`): a
        user switching databases leaves no file, SQLite or PostgreSQL connection open behind.

        The opening happens outside the engine's lock: every request and Cancel takes it, and a
        PostgreSQL server that does not answer holds an opening for its connect timeout."""
        from DICOMPlusLib.database.backends import is_url, open_database

        key = (
            str(target) if is_url(target) else os.path.abspath(str(target)),
            os.path.abspath(str(store)) if store else None,
        )
        with self._lock:
            db = self._databases.get(key)
            if db is not None:
                self._use(db, user)
        if db is None:
            opened = open_database(key[0], store=key[1])
            same = _identity(opened)
            with self._lock:  # another task may have opened it meanwhile, under this key or another
                db = self._databases.get(key) or next(
                    (other for other in self._databases.values() if _identity(other) == same), opened
                )
                self._databases[key] = db
                self._use(db, user)
            if db is not opened:
                opened.close()
        self.close_unused()
        return db

    def _use(self, db: Any, user: Task | None) -> None:
        """(Under the lock) ``db`` is the current opening, and ``user``'s until it ends."""
        self._current = db
        if user is not None:
            user.databases.append(db)

    def close_unused(self) -> None:
        """Close every opening but the current one and those in use: by a running task, the
        listener, the sample PACS."""
        with self._lock:
            used = {id(db) for task in self._tasks.values() for db in task.databases}
            used |= {id(self._current)}
            used |= {id(server.db) for server in (self.listener, self.pacs) if server is not None}
            unused = {id(db): db for db in self._databases.values() if id(db) not in used}
            self._databases = {key: db for key, db in self._databases.items() if id(db) in used}
        for db in unused.values():  # one store's opening has several keys
            logger.info("closing %s: no longer used", _identity(db)[0])
            with contextlib.suppress(Exception):
                db.close()

    def finished(self, task: Task) -> None:
        with self._lock:
            self._tasks.pop(task.id, None)
            self._threads.pop(task.id, None)
        self.close_unused()

    # -- loop --------------------------------------------------------------------------------
    def handle(self, message: dict) -> None:
        op = message.get("op")
        ident = message.get("id")
        if op == "cancel":
            with self._lock:
                task = self._tasks.get(ident)  # type: ignore[arg-type]
            if task is not None:
                task.cancel.cancel()
            return
        if not isinstance(ident, int) or not isinstance(op, str):
            logger.warning("engine request without id or op: %r", message)
            return
        task = Task(self, ident, op, message.get("args") or {})
        thread = threading.Thread(target=task.run, name=f"engine-{op}-{ident}", daemon=True)
        with self._lock:
            self._tasks[ident] = task
            self._threads[ident] = thread
        thread.start()

    def serve(self) -> int:
        """Serve until stdin closes; returns the exit code."""
        self.send({"event": "ready", "pid": os.getpid(), "version": DICOMPlusLib.__version__})
        warm_imports()  # requests wait in the pipe meanwhile
        try:
            for line in iter(self._in.readline, b""):
                if not line.strip():
                    continue
                try:
                    message = protocol.loads(line)
                except ValueError:
                    logger.warning("engine ignored a line that is not JSON: %r", line[:200])
                    continue
                self.handle(message)
        except KeyboardInterrupt:
            pass
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        """Cancel running tasks, stop the listener and the sample PACS at once, close the
        databases. No grace for their associations: the host is leaving (Slicer quits) and
        kills the engine a few seconds after closing its stdin (EngineClient.stop: 5 s), so a
        10 s grace ended in a kill, with the partial file of an instance under way left behind
        and no A-ABORT to its sender."""
        with self._lock:
            tasks = list(self._tasks.values())
            threads = list(self._threads.values())
        for task in tasks:
            task.cancel.cancel()
        deadline = time.monotonic() + SHUTDOWN_GRACE
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.stop_listener(at_once=lambda: True)
        self.stop_pacs(at_once=lambda: True)
        with self._lock:
            databases, self._databases = list(self._databases.values()), {}
        for db in {id(db): db for db in databases}.values():  # one store's opening has several keys
            with contextlib.suppress(Exception):
                db.close()

    def stop_listener(self, at_once: Callable[[], bool] | None = None) -> None:
        """Stop the listener; the associations under way get its STOP_GRACE to finish, cut
        short when ``at_once()`` turns true (then aborted); the series it reports complete while
        stopping are announced."""
        listener, self.listener = self.listener, None
        subscription, self._listener_subscription = self._listener_subscription, None
        if listener is not None:
            from DICOMPlusLib.network.listener import STOP_GRACE

            listener.stop(STOP_GRACE, at_once=at_once)
        if subscription is not None:
            subscription.close()
        if listener is not None:
            self.close_unused()

    def stop_pacs(self, at_once: Callable[[], bool] | None = None) -> None:
        """Stop the sample PACS; a retrieve under way gets its STOP_GRACE to finish (as the
        listener's associations get theirs), cut short when ``at_once()`` turns true."""
        server, self.pacs = self.pacs, None
        if server is not None:
            from DICOMPlusLib.network.pacs.qrscp import STOP_GRACE

            server.stop(STOP_GRACE, at_once=at_once)
            self.close_unused()


def _identity(db: Any) -> tuple[str, str]:
    """Which database and store ``db`` is: its file (SQLite) or URL (PostgreSQL), its store."""
    return str(getattr(db, "url", None) or db.path), str(db.store_root)


def warm_imports() -> None:
    """Import what the operations use, once, on this thread, before any task thread runs.

    Tasks run in threads; two of them importing pydicom (or a decoder plugin) for the first time at
    once can see a partially initialised module ("cannot import name 'Dataset' from partially
    initialized module 'pydicom.dataset'"), since pydicom's modules import each other."""
    with contextlib.suppress(Exception):  # a missing optional package is the operation's to report
        import numpy  # noqa: F401
        import pydicom.dataset
        import pydicom.pixels  # noqa: F401

        from DICOMPlusLib.loading import api  # noqa: F401
        from DICOMPlusLib.loading.decoders import available_plugins, refresh_plugins
        from DICOMPlusLib.loading.pixels import PLUGINS

        refresh_plugins()
        for transfer_syntax in PLUGINS:  # imports each decoder plugin's module
            available_plugins(transfer_syntax)


def end_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """The engine's SIGTERM handler (its parent died, or its host ends it): SystemExit, through
    ``raise_from_signal``, so that the stops that must not be cut in two hold it back (the
    listener's abort, the sample PACS ending its associations: raised inside a lock of an
    association's, it left the lock held and the engine waiting at its exit for a thread blocked
    on it)."""
    raise_from_signal(SystemExit(0), frame)


def die_with_parent() -> None:
    """Linux: get SIGTERM when the parent process dies, even if the pipe stays open elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    parent = os.environ.get("DICOMPLUS_ENGINE_PARENT")
    if parent and parent.isdigit() and os.getppid() != int(parent):
        raise SystemExit(0)  # the parent died before prctl took effect


def main(argv: list[str] | None = None) -> int:
    """``python -m DICOMPlusLib.engine``: serve requests on stdin/stdout until stdin closes."""
    # Protocol on a private copy of stdout; fd 1 (print, C libraries) goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(
        level=logging.INFO if os.environ.get("DICOMPLUS_ENGINE_VERBOSE") else logging.WARNING,
        stream=sys.stderr,
        format="dicomplus-engine %(levelname)s %(name)s: %(message)s",
    )

    signal.signal(signal.SIGTERM, end_on_sigterm)
    if os.environ.get("DICOMPLUS_ENGINE_PARENT"):
        # Started by a host: Ctrl-C in the host's terminal is the host's to handle; the engine
        # ends with it (stdin EOF or parent death).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    from DICOMPlusLib.engine import operations  # noqa: F401  (registers the operations)

    return Engine(sys.stdin.buffer, out).serve()
