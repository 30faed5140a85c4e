"""The engine's wire format and the client-side bookkeeping shared by every host.

One JSON object per line, UTF-8, in both directions:

* host -> engine: ``{"id": 7, "op": "import", "args": {...}}`` starts a task;
  ``{"op": "cancel", "id": 7}`` cancels it. Closing the engine's stdin asks it to stop.
* engine -> host: ``{"event": "ready", "pid": ..., "version": ...}`` once at start, then per task
  ``{"id": 7, "event": "progress", "done": 3, "total": 10, "current": "..."}``, ``"log"``, and one
  of ``"done"`` (with ``result``), ``"failed"`` (with ``error``) or ``"cancelled"``; and
  ``{"event": "notify", "topic": "series_complete", "data": {...}}`` for what nobody asked for
  (the listener's completed series).

Rich values (reports, records, volume descriptions) travel as ``{"$pickle": base64}`` inside the
JSON line: both ends run the same DICOMPlusLib from the same folder (the host starts the engine
from it), and the engine is the host's own child process, never a network peer. Plain values
stay plain JSON so that a person can read the stream. Voxels never travel on the pipe: the engine
writes them to a file and sends its path (:class:`VolumeFile`).

:class:`EngineConnection` is the host side without any transport: it numbers requests, turns
the engine's lines into :class:`RemoteJob` state and notification callbacks, and fails every
pending job when the engine goes away. The Slicer module drives it from ``qt.QProcess`` signals
on the main thread; :mod:`DICOMPlusLib.engine.client` drives it from a subprocess for plain
Python hosts and tests.
"""

from __future__ import annotations

import base64
import json
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

from DICOMPlusLib import errors
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import CancelledError, DICOMPlusError, EngineError
from DICOMPlusLib.jobs import JobSnapshot, JobState

logger = get_logger(__name__)

PICKLE_KEY = "$pickle"


# -- values ----------------------------------------------------------------------------------------
def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def encode_value(value: Any) -> Any:
    """``value`` as JSON: itself when it is plain JSON, else pickled (see the module doc)."""
    if _plain(value):
        return value
    return {PICKLE_KEY: base64.b64encode(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)).decode()}


def decode_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {PICKLE_KEY}:
        return pickle.loads(base64.b64decode(value[PICKLE_KEY]))
    return value


def encode_error(exc: BaseException) -> dict:
    """An exception as ``{"type", "message", "object"}``; ``object`` only when it round-trips."""
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    try:
        blob = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)
    except Exception:
        return out
    out["object"] = {PICKLE_KEY: base64.b64encode(blob).decode()}
    return out


def decode_error(data: dict) -> BaseException:
    """The exception the engine raised, or the DICOMPlusLib error class of that name, or an
    :class:`EngineError` for anything else (the message says what it was)."""
    if "object" in data:
        try:
            exc = decode_value(data["object"])
            if isinstance(exc, BaseException):
                return exc
        except Exception:  # a class this side cannot build: fall back on the name
            pass
    cls = getattr(errors, str(data.get("type", "")), None)
    message = str(data.get("message", ""))
    if isinstance(cls, type) and issubclass(cls, DICOMPlusError):
        return cls(message)
    return EngineError(f"{data.get('type', 'error')} in the DICOMPlus engine: {message}")


def dumps(message: dict) -> bytes:
    """One protocol line."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def loads(line: bytes | str) -> dict:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a protocol line must be a JSON object")
    return message


@dataclass(frozen=True)
class VolumeFile:
    """A loaded volume handed over by file: the voxels in ``path`` (a .npy file, memory-mapped
    by :meth:`open`), the geometry and warnings in ``info`` (a loading VolumeInfo)."""

    path: str
    info: Any

    def open(self):
        """The :class:`~DICOMPlusLib.loading.models.Volume`, its array memory-mapped read-only."""
        import numpy as np

        from DICOMPlusLib.loading.models import Volume

        return Volume(np.load(self.path, mmap_mode="r"), self.info)


# -- jobs --------------------------------------------------------------------------------------
class RemoteJob:
    """A task running in the engine, with the interface of :class:`DICOMPlusLib.jobs.Job`
    (``name``, ``poll()``, ``finished``, ``state``, ``result``, ``error``, ``cancel()``,
    ``wait()``), so the same activity list shows both. Its state changes only when the
    connection handles the engine's lines (on the host's own thread, e.g. Qt's main thread)."""

    def __init__(self, connection: EngineConnection, ident: int, name: str) -> None:
        self.connection = connection
        self.id = ident
        self.name = name
        self._state = JobState.PENDING
        self._done = 0
        self._total = 0
        self._current = ""
        self._log: list[str] = []
        self._started = time.monotonic()
        self._ended = 0.0
        self._finished = threading.Event()
        self._callbacks: list[Callable[[RemoteJob], None]] = []
        self.result: Any = None
        self.error: BaseException | None = None

    # -- host side ---------------------------------------------------------------------------
    def cancel(self) -> None:
        if not self.finished:
            self.connection.cancel(self.id)

    def wait(self, timeout: float | None = None) -> bool:
        """Handle the engine's output until the job ends; False on timeout. Blocks the caller
        (a console user or a test); GUI code connects :meth:`on_finished` instead."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self.connection.pump(0.1 if remaining is None else min(remaining, 0.1))
        return True

    def get(self, timeout: float | None = None) -> Any:
        """Wait, then return the result or raise the job's error."""
        if not self.wait(timeout):
            raise EngineError(f"{self.name}: no answer from the DICOMPlus engine within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result

    def on_finished(self, callback: Callable[[RemoteJob], None]) -> None:
        """Call ``callback(job)`` when the job ends (at once if it has)."""
        if self.finished:
            callback(self)
        else:
            self._callbacks.append(callback)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def state(self) -> JobState:
        return self._state

    def poll(self) -> JobSnapshot:
        end = self._ended or time.monotonic()
        return JobSnapshot(
            name=self.name,
            state=self._state,
            done=self._done,
            total=self._total,
            current=self._current,
            elapsed=end - self._started,
            error=str(self.error) if self.error else "",
            log=list(self._log),
        )

    # -- connection side ------------------------------------------------------------------------
    def _event(self, message: dict) -> None:
        event = message.get("event")
        if event == "progress":
            self._state = JobState.RUNNING
            self._done = int(message.get("done", 0))
            self._total = int(message.get("total", 0))
            self._current = str(message.get("current", ""))
        elif event == "started":
            self._state = JobState.RUNNING
        elif event == "log":
            self._log.append(str(message.get("message", "")))
        elif event == "done":
            self._end(JobState.DONE, result=decode_value(message.get("result")))
        elif event == "cancelled":
            self._end(
                JobState.CANCELLED,
                result=decode_value(message.get("result")),
                error=CancelledError(str(message.get("message") or "Cancelled by the user.")),
            )
        elif event == "failed":
            self._end(JobState.FAILED, error=decode_error(message.get("error") or {}))

    def _end(self, state: JobState, result: Any = None, error: BaseException | None = None) -> None:
        if self.finished:
            return
        self._state, self.result, self.error = state, result, error
        self._ended = time.monotonic()
        self._finished.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("callback of %s failed", self.name)


class EngineConnection:
    """Host-side state of one engine: requests out, events in. Transport-free.

    A host subclasses it (or wraps it) and provides :meth:`_write` (send bytes to the engine's
    stdin) and :meth:`pump` (handle available output, waiting up to ``timeout``); it calls
    :meth:`feed` with the bytes the engine wrote and :meth:`engine_exited` when it ends.
    """

    def __init__(self) -> None:
        self._next_id = 1
        self.jobs: dict[int, RemoteJob] = {}
        self._buffer = b""
        self._subscribers: dict[str, list[Callable[[dict], None]]] = {}
        self.ready: dict | None = None

    # -- to implement ------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def pump(self, timeout: float) -> None:
        raise NotImplementedError

    # -- requests ----------------------------------------------------------------------------
    def submit(self, op: str, args: dict | None = None, name: str | None = None) -> RemoteJob:
        """Start ``op`` in the engine; returns its :class:`RemoteJob`."""
        ident = self._next_id
        self._next_id += 1
        job = RemoteJob(self, ident, name or op)
        self.jobs[ident] = job
        try:
            encoded = {key: encode_value(value) for key, value in (args or {}).items()}
            self._write(dumps({"id": ident, "op": op, "args": encoded}))
        except Exception as exc:
            job._end(JobState.FAILED, error=EngineError(f"could not reach the DICOMPlus engine: {exc}"))
            self.jobs.pop(ident, None)
        return job

    def call(self, op: str, args: dict | None = None, timeout: float = 30.0) -> Any:
        """Run a short ``op`` and return its result (blocks the caller up to ``timeout``)."""
        return self.submit(op, args).get(timeout)

    def cancel(self, ident: int) -> None:
        try:
            self._write(dumps({"op": "cancel", "id": ident}))
        except Exception:  # the engine is gone: the job fails through engine_exited
            pass

    def subscribe(self, topic: str, callback: Callable[[dict], None]) -> None:
        """``callback(value)`` for every ``notify`` event of ``topic`` (e.g. "series_complete",
        whose value is the listener's SeriesComplete)."""
        self._subscribers.setdefault(topic, []).append(callback)

    def unsubscribe(self, topic: str, callback: Callable[[dict], None]) -> None:
        callbacks = self._subscribers.get(topic, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def pending(self) -> list[RemoteJob]:
        return [job for job in self.jobs.values() if not job.finished]

    # -- events ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Handle bytes the engine wrote (any split); complete lines are dispatched now."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._dispatch(line)

    def _dispatch(self, line: bytes) -> None:
        try:
            message = loads(line)
        except ValueError:
            logger.warning("DICOMPlus engine wrote a line that is not the protocol: %r", line[:200])
            return
        event = message.get("event")
        if event == "ready":
            self.ready = message
            return
        if event == "notify":
            for callback in list(self._subscribers.get(str(message.get("topic")), [])):
                try:
                    callback(decode_value(message.get("data")))
                except Exception:
                    logger.exception("engine notification handler failed")
            return
        job = self.jobs.get(message.get("id"))  # type: ignore[arg-type]
        if job is None:
            return
        job._event(message)
        if job.finished:
            self.jobs.pop(job.id, None)

    def engine_exited(self, reason: str) -> None:
        """The engine ended: every pending job fails with ``reason``."""
        self._buffer = b""
        self.ready = None
        for job in self.pending():
            job._end(JobState.FAILED, error=EngineError(reason))
        self.jobs.clear()
