"""A signal's exception raised exactly inside a lock of the standard library's, deterministically.

Python runs a signal handler in the main thread as a C call returns. Inside
``threading.Condition.__enter__`` that is just after the lock was taken, before any ``with`` block
owns it: an exception raised there (the CLI's second Ctrl-C) leaves the lock held, and whoever
needs it next (a worker, the exit's join) waits forever. Real signals land there about once in
hundreds of runs; :class:`InterruptInLock` lands there every time: a trace of the main thread
calls ``fire`` (what the handler does) at the return of the Nth call of a lock wrapper once the
work is under way (:meth:`InterruptInLock.arm`, or ``arm_on``: the first call of a function).

The code under test runs in a process of its own (:func:`~dicomplus_testing.util.run_script`, a timeout: a hang is a
failure). A script uses it as::

    from dicomplus_testing.interrupt_in_lock import InterruptInLock, second_ctrl_c

    with InterruptInLock(nth=2, fire=second_ctrl_c(token)) as trap:
        ...  # trap.arm() once the work is under way
    print(trap.fired)
"""

from __future__ import annotations

import dis
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from types import CodeType, FrameType

#: ``threading.Condition.__enter__``: every Condition, Event, Semaphore, Barrier, ``queue.Queue``
#: and ``concurrent.futures`` lock goes through it.
CONDITION_ENTER = threading.Condition.__enter__.__code__


def _returns(code: CodeType) -> frozenset[int]:
    return frozenset(
        i.offset for i in dis.get_instructions(code) if i.opname in ("RETURN_VALUE", "RETURN_CONST")
    )


#: The frame the firing point is in, while ``fire`` runs (a signal handler's ``frame``).
at_frame: list[FrameType | None] = [None]


class InterruptInLock:
    """While active (``with``), the main thread's Nth return from one of ``codes`` after arming
    calls ``fire()`` there, once; an exception ``fire`` raises is raised in that frame, as a
    signal handler's is. Armed at once (``armed``), at the first call of ``arm_on``, or by
    :meth:`arm`.
    ``at_call``: at the Nth call of one of ``codes`` instead (a signal as a function begins:
    Python looks for one there too)."""

    def __init__(
        self,
        nth: int,
        fire: Callable[[], None],
        codes: Iterable[CodeType] = (CONDITION_ENTER,),
        arm_on: CodeType | None = None,
        at_call: bool = False,
        armed: bool = False,
    ) -> None:
        self.nth, self.fire_once = nth, fire
        self.points = {code: _returns(code) for code in codes}
        self.arm_on, self.at_call = arm_on, at_call
        self.armed = armed
        self.seen = 0
        self.fired = False

    def arm(self) -> None:
        self.armed = True

    def _count(self, frame: FrameType) -> None:
        self.seen += 1
        if self.seen == self.nth:
            self.fired = True
            at_frame[0] = frame  # what a handler is given: the frame the signal found running
            try:
                self.fire_once()
            finally:
                at_frame[0] = None

    def _local(self, frame: FrameType, event: str, arg) -> Callable | None:
        if event == "opcode" and self.armed and not self.fired and frame.f_lasti in self.points[frame.f_code]:
            self._count(frame)  # the lock is held now
        return self._local

    def _tracer(self, frame: FrameType, event: str, arg) -> Callable | None:
        if frame.f_code is self.arm_on:
            self.armed = True
        if self.at_call:
            if frame.f_code in self.points and self.armed and not self.fired:
                self._count(frame)
            return None
        if frame.f_code in self.points and self.armed and not self.fired:
            frame.f_trace_opcodes = True
            return self._local
        return None

    def __enter__(self) -> InterruptInLock:
        if not self.at_call:
            _allow_opcode_events()
        sys.settrace(self._tracer)
        return self

    def __exit__(self, *exc_info) -> None:
        sys.settrace(None)


def _allow_opcode_events() -> None:
    """Python 3.12 gives a frame's trace ``opcode`` events only if ``sys.settrace`` found some
    frame's ``f_trace_opcodes`` set once already in the interpreter's life: setting it in the
    trace function, as :class:`InterruptInLock` does, came too late and the trap never fired.
    Setting it (and back) on this frame before ``settrace`` allows them; 3.11 needs nothing."""
    frame = sys._getframe()
    was = frame.f_trace_opcodes
    frame.f_trace_opcodes = True
    frame.f_trace_opcodes = was


def second_ctrl_c(token) -> Callable[[], None]:
    """What the CLI's handler does on a second Ctrl-C (the first cancelled ``token``)."""
    from DICOMPlusLib.uninterrupted import raise_from_signal

    def fire() -> None:
        token.cancel_from_signal()
        raise_from_signal(KeyboardInterrupt(), at_frame[0])

    return fire


def installed_handler(signum: int = signal.SIGINT, times: int = 1) -> Callable[[], None]:
    """Runs the handler the command installed for ``signum``, ``times`` times in a row (a
    first Ctrl-C, then a second), as the signal would: for a whole command run in-process."""

    def fire() -> None:
        handler = signal.getsignal(signum)
        assert callable(handler), handler
        for _ in range(times):
            handler(signum, at_frame[0])

    return fire
