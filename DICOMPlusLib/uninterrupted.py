"""Sections of the main thread that an exception raised by a signal handler must not cut in two.

The CLI's second Ctrl-C (or SIGTERM) stops a command at once by raising KeyboardInterrupt from its
signal handler, which Python runs in the main thread between two bytecodes, wherever that thread
is. A few places must not be cut there: the standard library's thread pool takes locks of its own
in ``submit``, ``Future.result`` and ``shutdown``, and a KeyboardInterrupt raised just after one
was taken (a handler runs as a C call returns, here inside ``Condition.__enter__``) leaves it held;
the pool's workers then wait for it forever (a second Ctrl-C hung ``dicomplus import --jobs 2``).

Handlers raise through :func:`raise_from_signal`; inside ``with uninterrupted:`` the exception is
held back and raised as the outermost section ends. Kept apart from :mod:`DICOMPlusLib.jobs` and
importing nothing but ``threading``: every CLI command's handlers load it (start-up, issue 19).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType

#: How deep the main thread is in :data:`uninterrupted` sections, and the exception a signal
#: handler held back meanwhile. Plain lists: a handler takes no lock.
_depth = [0]
_held_back: list[BaseException] = []


class _Uninterrupted:
    """``with uninterrupted:``: a signal's exception (:func:`raise_from_signal`) is raised as the
    outermost such section of the main thread ends. Keep the sections short: they hold back a
    second Ctrl-C. Other threads pass through (Python runs signal handlers in the main thread
    only)."""

    __slots__ = ()

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            _depth[0] += 1

    def __exit__(self, *exc_info) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        _depth[0] -= 1
        if not _depth[0] and _held_back:
            raise _held_back.pop()


uninterrupted = _Uninterrupted()
_ENTER = _Uninterrupted.__enter__.__code__


def raise_from_signal(exc: BaseException, frame: FrameType | None = None) -> None:
    """What a signal handler calls instead of ``raise exc``, with the ``frame`` it was given:
    raises it now, or, inside an :data:`uninterrupted` section, as that section ends.

    A section being entered counts as entered: Python looks for signals as any function of its
    begins, ``__enter__`` included, before that one has counted the section. Raised there, the
    exception skipped the section whole, and a clean-up in a ``finally`` with it (an import's
    workers were not drained, their copies left in the store)."""
    if _depth[0] or _entering(frame):
        _held_back[:] = [exc]
        return
    raise exc


def _entering(frame: FrameType | None) -> bool:
    """Whether ``frame`` (or the two frames that called it: ``__enter__`` calls into
    ``threading``) runs the main thread's ``__enter__`` of a section."""
    for _ in range(3):
        if frame is None:
            return False
        if frame.f_code is _ENTER:
            return threading.current_thread() is threading.main_thread()
        frame = frame.f_back
    return False


def forget_held_back() -> None:
    """Drop an exception held back for a command that is over (a caller running commands one
    after another in one process, such as the tests)."""
    _held_back.clear()
