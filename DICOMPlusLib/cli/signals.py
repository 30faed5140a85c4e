"""Ctrl-C, ``kill`` and a closed terminal end a ``dicomplus`` command the same way.

Ctrl-C (SIGINT), SIGTERM (``kill``, a job scheduler's time limit, systemd, a container stop) and
SIGHUP (the terminal closed) cancel a command at its next safe point: it keeps what is complete,
prints one account and exits 128 + the signal (130, 143, 129, as a shell reports a command killed
by it); a second one stops at once. Outside :func:`cancel_on_interrupt`, SIGTERM and SIGHUP raise
:class:`Stopped`, a KeyboardInterrupt, where Ctrl-C raises KeyboardInterrupt: the same clean-up runs.

Only the CLI's ``main`` installs these handlers (:func:`ending_signals`): the library used from
Slicer never does, and the engine process has its own cancel protocol (:mod:`DICOMPlusLib.engine`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from DICOMPlusLib.uninterrupted import forget_held_back, raise_from_signal

#: The signals that end a command as Ctrl-C does: SIGTERM (``kill``, a job scheduler's time limit,
#: systemd, a container stop) and SIGHUP (its terminal closed). The exit code is 128 + the first
#: one's number, as a shell reports a command killed by it (130, 143, 129). Windows has no SIGHUP.
ENDING_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
#: What the first one prints (bytes made beforehand: a handler writes them with one system call).
_CANCELLING = {
    signum: b"cancelling (Ctrl-C again to stop at once)...\n"
    if signum == signal.SIGINT
    else f"cancelling on {signal.Signals(signum).name} (a second signal stops at once)...\n".encode()
    for signum in ENDING_SIGNALS
}
#: Whether a progress bar is drawn on the terminal now (set by the CLI's ProgressBar; a plain
#: list: the handler reads it without a lock). With one, the message replaces the bar's line
#: (carriage return, erase line) and the bar's next refresh draws it again below: a newline
#: instead left the old bar where it was, and the refresh erased the message's line for a
#: second bar.
bar_on_screen = [False]
_ERASE_LINE = b"\r\x1b[2K"


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP raised as Ctrl-C's KeyboardInterrupt is, so that every ``except
    KeyboardInterrupt`` and ``except BaseException`` that cleans up after Ctrl-C (a half-written
    export or bundle removed, a cancel passed on) cleans up after them too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: The first ending signal the running command received (0: none). A plain list: a signal
#: handler must take no lock.
_received = [0]
#: stdout and stderr when they were a terminal as the command started (a terminal that has hung
#: up no longer says it is one).
_terminal_fds: list[int] = []


def note_signal(signum: int) -> None:
    """Record an ending signal the command received (:func:`first_signal`): a handler of a
    command's own (``listen``'s, ``serve``'s) calls it too."""
    if not _received[0]:
        _received[0] = signum
    after_hangup(signum)


def after_hangup(signum: int) -> None:
    """After SIGHUP, what went to the closed terminal goes to /dev/null: the command still ends
    cleanly (writing its account to a terminal that is gone fails with EIO)."""
    if signum == getattr(signal, "SIGHUP", None):
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            for fd in _terminal_fds:
                os.dup2(devnull, fd)
            os.close(devnull)


def _ended_by_default(signum: int) -> None:
    """In a worker forked by the command (a process pool's), SIGTERM keeps its default action:
    the pool ends its workers with it, and a worker that survived it would hang the pool."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_handlers(signums, handler) -> dict:
    """``handler`` for each of ``signums`` not ignored when the command started (``nohup``
    ignores SIGHUP, a shell's background job SIGINT: they stay ignored); the previous ones."""
    previous = {}
    for signum in signums:
        if signal.getsignal(signum) != signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    return previous


@contextlib.contextmanager
def ending_signals():
    """SIGTERM and SIGHUP raise :class:`Stopped` while a command runs (``main`` only: the library
    used from Slicer or the engine, which has its own cancel protocol, never installs them), and
    :func:`exit_code` reports which signal ended it. Ctrl-C raises KeyboardInterrupt as Python's
    own handler does; all three through :func:`raise_from_signal`, so that every command's
    ``uninterrupted`` sections hold them back (Python's handler raised inside them)."""
    _received[0] = 0
    _terminal_fds[:] = [fd for fd in (1, 2) if os.isatty(fd)]
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum, frame):
        if signum == signal.SIGINT:  # Python's own KeyboardInterrupt, but held back as the others are
            note_signal(signum)
            raise_from_signal(KeyboardInterrupt(), frame)
            return
        if os.getpid() != owner:
            _ended_by_default(signum)
        note_signal(signum)
        raise_from_signal(Stopped(signum), frame)  # held back inside an ``uninterrupted`` section

    previous = install_handlers(ENDING_SIGNALS, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def cancel_on_interrupt(token):
    """The first Ctrl-C, SIGTERM or SIGHUP cancels ``token`` (the work stops at its next safe
    point, keeps what is complete and the command reports it); a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield token
        return

    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:  # a worker forked by the command: the command decides
            if signum != signal.SIGINT:  # which a terminal's Ctrl-C reaches too
                _ended_by_default(signum)
            return
        if token.cancelled:  # held back inside an ``uninterrupted`` section (uninterrupted.py says why)
            if hasattr(token, "halt"):  # what the threads still wait for goes too (cancel.run_threads)
                token.halt()
            raise_from_signal(KeyboardInterrupt() if signum == signal.SIGINT else Stopped(signum), frame)
            return
        token.cancel_from_signal()  # takes no lock: the interrupted code may hold one
        note_signal(signum)
        with contextlib.suppress(OSError, ValueError):
            os.write(sys.stderr.fileno(), (_ERASE_LINE if bar_on_screen[0] else b"\n") + _CANCELLING[signum])

    forget_held_back()
    previous = install_handlers(ENDING_SIGNALS, handler)
    try:
        yield token
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def first_signal() -> int:
    """The first ending signal the running command received (0: none)."""
    return _received[0]
