"""The cancel flag and the progress callback of every long operation: :class:`CancelToken`,
:data:`ProgressCallback` (both also importable from :mod:`DICOMPlusLib.jobs`).

A module of their own, importing ``threading`` and ``time`` (and :mod:`.uninterrupted`) only: an import of files needs these
two and none of :mod:`.jobs`' background jobs, its dataclasses and its logger (~1 ms of a command
line process; issue 19).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from DICOMPlusLib.errors import CancelledError
from DICOMPlusLib.uninterrupted import uninterrupted

ProgressCallback = Callable[[int, int, str], None]


class CancelToken:
    """A flag a caller sets and a worker checks; cheap, thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._requested = False  # set by a signal handler, which must take no lock

    def cancel(self) -> None:
        self._requested = True
        self._event.set()

    def cancel_from_signal(self) -> None:
        """Cancel from a signal handler: no lock is taken (the interrupted thread may hold the
        event's), so :attr:`cancelled` is true at once and :meth:`wait` notices within its poll."""
        self._requested = True

    @property
    def cancelled(self) -> bool:
        return self._requested or self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise CancelledError("Cancelled by the user; completed work was kept.")

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; return True early when cancelled.

        Each slice runs ``uninterrupted``: a Ctrl-C raised inside the event's lock left it held,
        and a later :meth:`cancel` (an ``except KeyboardInterrupt`` that cancels the token, as
        ``convert``'s does) waited for it forever. A Ctrl-C held back meanwhile comes at the
        slice's end (0.2 s at most)."""
        deadline = time.monotonic() + timeout
        while not self.cancelled:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with uninterrupted:
                if self._event.wait(min(left, 0.2)):
                    return True
        return True
