# PYTHON_ARGCOMPLETE_OK
"""The ``dicomplus`` process: :func:`main`, then an exit that skips the interpreter's teardown.

When :func:`~DICOMPlusLib.cli.app.main` returns, the command is over: its transactions are
committed, its files written, its handlers restored. Its databases stay open (held in
``arguments.held``: closing the last connection would checkpoint the WAL, left to the next
writer). What a normal exit does then is free every module and object one by one, which costs
a CLI command 15-25 ms on this project's machine (an ``import --link`` of 1,008 files ~0.26 s,
an import of unchanged files ~0.09 s: the budget of issue 19's goals). So the process ends
with ``os._exit`` after doing what matters of a normal exit: the ``atexit`` functions
(logging's shutdown, ``weakref.finalize`` and ``tempfile`` clean-ups) and a flush of stdout and
stderr. Two cases keep the normal exit:

- a thread that is not a daemon still runs: the interpreter would wait for it (its work must
  not be cut off), unless a signal (Ctrl-C, SIGTERM, SIGHUP) ended the command: what must be
  finished it has waited for already (its ``uninterrupted`` sections, the aborts of ``listen``
  and ``serve``), and a thread still running then is one it gave up on. Waiting for it made a
  worker that never ends (a lock of the standard library's left held by an interrupt) a
  process that never ends, whatever the number of signals; as after ``kill -9``, any
  temporary such a thread leaves is swept by the next command;
- stdout or stderr cannot be flushed (a closed pipe): the normal exit reports it as before.

Once the command is over, Ctrl-C, SIGTERM and SIGHUP are ignored while the ``atexit`` functions
run (milliseconds): a signal sent just as the command ended has nothing left to stop.

:func:`main` stays importable and returns its code, so tests and other Python callers run the
same command in-process without ending their own process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading

from DICOMPlusLib.cli import arguments
from DICOMPlusLib.cli.app import main
from DICOMPlusLib.cli.signals import ENDING_SIGNALS, first_signal


def run() -> None:
    """The console script's and ``python -m DICOMPlusLib.cli``'s entry point."""
    arguments.held = []  # its databases stay open until os._exit: no collection closes one first
    code = main()  # SystemExit (a usage error, --help, --version) leaves through the normal exit
    if not _can_end_now() and not first_signal():
        sys.exit(code)
    _ignore_ending_signals()
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):  # a closed pipe or stream: the normal exit reports it as it did
        sys.exit(code)
    os._exit(code)


def _ignore_ending_signals() -> None:
    """The command is over and has printed its account: a Ctrl-C or SIGTERM arriving now (a
    second one sent just as the command ended) has nothing left to stop. The exit's clean-ups
    (the ``atexit`` functions: the store's writer lock released, logging flushed) take
    milliseconds and run to their end. Before, a Ctrl-C there printed a KeyboardInterrupt's
    traceback from inside them and a SIGTERM killed the process (its default action again once
    the command's handlers were gone), either way leaving the store's writer lock behind."""
    for signum in ENDING_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_IGN)


def _can_end_now() -> bool:
    """No thread but the main one and daemons is alive (the interpreter would join them)."""
    main_thread = threading.main_thread()
    return all(t is main_thread or t.daemon or not t.is_alive() for t in threading.enumerate())
