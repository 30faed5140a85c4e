"""Progress, cancel and thread-safe notifications shared by import, send, query and retrieve.

A :class:`CancelToken` is checked by workers between units of work; a :data:`ProgressCallback`
receives ``(done, total, current)`` (both in :mod:`.cancel`, and importable from here).
:class:`Job` runs a function in a background thread and keeps state, progress, log and result so
that a GUI can poll it from its own thread (the Slicer widget drains :meth:`Job.poll` from a
QTimer; nothing here touches Qt).
:class:`Pacer` splits work a GUI does on its own thread into steps bounded by time.
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from collections.abc import Callable
from typing import Any

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.cancel import CancelToken, ProgressCallback
from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.errors import CancelledError

logger = get_logger(__name__)


class JobState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class JobSnapshot:
    """What a GUI needs to draw one row of the activity list."""

    name: str
    state: JobState
    done: int
    total: int
    current: str
    elapsed: float
    error: str = ""
    log: list[str] = field(default_factory=list)


class Job:
    """Run ``func(progress, cancel_token)`` in a background thread.

    ``func`` reports progress through the callback it receives and checks the token. Its return
    value becomes :attr:`result`; an exception becomes :attr:`error` (``CancelledError`` sets
    the CANCELLED state instead).
    """

    def __init__(self, name: str, func: Callable[[ProgressCallback, CancelToken], Any]) -> None:
        self.name = name
        self._func = func
        self.token = CancelToken()
        self._lock = threading.Lock()
        self._state = JobState.PENDING
        self._done = 0
        self._total = 0
        self._current = ""
        self._log: list[str] = []
        self._started = 0.0
        self._finished = 0.0
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._finished_event = threading.Event()

    # -- worker side -------------------------------------------------------------------------
    def _progress(self, done: int, total: int, current: str = "") -> None:
        with self._lock:
            self._done, self._total, self._current = done, total, current

    def log(self, message: str) -> None:
        with self._lock:
            self._log.append(message)

    def _run(self) -> None:
        with self._lock:
            self._state = JobState.RUNNING
            self._started = time.monotonic()
        try:
            result = self._func(self._progress, self.token)
        except CancelledError as exc:
            state, self.error = JobState.CANCELLED, exc
        except BaseException as exc:
            logger.exception("job %s failed", self.name)
            state, self.error = JobState.FAILED, exc
        else:
            state, self.result = JobState.DONE, result
            if self.token.cancelled:
                state = JobState.CANCELLED
        with self._lock:
            self._state = state
            self._finished = time.monotonic()
        self._finished_event.set()

    # -- caller side -------------------------------------------------------------------------
    def start(self) -> Job:
        self._thread = threading.Thread(target=self._run, name=f"dicomplus-{self.name}", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.token.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends; return False on timeout."""
        return self._finished_event.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._finished_event.is_set()

    @property
    def state(self) -> JobState:
        with self._lock:
            return self._state

    def poll(self) -> JobSnapshot:
        with self._lock:
            end = self._finished or time.monotonic()
            return JobSnapshot(
                name=self.name,
                state=self._state,
                done=self._done,
                total=self._total,
                current=self._current,
                elapsed=(end - self._started) if self._started else 0.0,
                error=str(self.error) if self.error else "",
                log=list(self._log),
            )


@dataclass(frozen=True)
class PacedStep:
    """One step of :class:`Pacer`: how many units it did and how long it took (seconds)."""

    units: int
    seconds: float


class Pacer:
    """Work on a GUI's main thread in steps bounded by time, not by a count of items.

    A GUI builds many widgets after a refresh (tiles, rows, icons) and must yield to its event
    loop often enough that nothing waits more than ~100 ms. A fixed count per turn does not
    bound the time: three studies' tiles per turn were a 142 ms gap on a machine at load 11.
    :meth:`step` calls ``unit()`` (one unit of work, True while more remain) until
    :attr:`budget` seconds have passed since the step began, or no work is left; the caller
    yields (a zero-interval timer) and calls it again while it returns True. A step always does
    at least one unit, so the work advances however slow a unit is; the result is the same as
    doing every unit at once. The last ``keep`` steps are kept in :attr:`steps` (what a test or a
    profile reads; the clock is the one the step used).
    """

    #: Seconds of work per step: well under the 100 ms a user notices, with room for the rest of
    #: the turn. What a step builds is laid out and painted after it, in the same turn: with the
    #: grid's tiles that doubled the turn (a 5 ms step, an 11 ms turn on an idle machine).
    BUDGET = 0.020

    def __init__(
        self, budget: float = BUDGET, clock: Callable[[], float] = time.perf_counter, keep: int = 256
    ) -> None:
        self.budget = budget
        self.clock = clock
        self.steps: collections.deque[PacedStep] = collections.deque(maxlen=keep)

    def step(self, unit: Callable[[], bool]) -> bool:
        """Call ``unit()`` until the budget is spent or it returns False; True if work is left."""
        started = self.clock()
        units = 0
        more = True
        while more:
            more = unit()
            units += 1
            if self.clock() - started >= self.budget:
                break
        self.steps.append(PacedStep(units, self.clock() - started))
        return more
