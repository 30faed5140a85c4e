"""The cancel flag and the progress callback of every long operation: :class:`CancelToken`,
:data:`ProgressCallback` (both also importable from :mod:`DICOMPlusLib.jobs`), and
:func:`run_threads`, the wait of a command whose associations run in threads of their own.

A module of their own, importing ``threading`` and ``time`` (and :mod:`.uninterrupted`) only: an import of files needs these
two and none of :mod:`.jobs`' background jobs, its dataclasses and its logger (~1 ms of a command
line process; issue 19).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from DICOMPlusLib.errors import CancelledError
from DICOMPlusLib.uninterrupted import uninterrupted

ProgressCallback = Callable[[int, int, str], None]


class CancelToken:
    """A flag a caller sets and a worker checks; cheap, thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._requested = False  # set by a signal handler, which must take no lock
        self._halted = False

    def cancel(self) -> None:
        self._requested = True
        self._event.set()

    def cancel_from_signal(self) -> None:
        """Cancel from a signal handler: no lock is taken (the interrupted thread may hold the
        event's), so :attr:`cancelled` is true at once and :meth:`wait` notices within its poll."""
        self._requested = True

    def halt(self) -> None:
        """Stop at once (the CLI's second Ctrl-C or SIGTERM): cancelled, and what a cancel still
        waits for goes too: a peer's final response to a C-CANCEL, an A-RELEASE-RP. Each
        association is aborted instead. Takes no lock (a signal handler calls it)."""
        self._requested = True
        self._halted = True

    @property
    def cancelled(self) -> bool:
        return self._requested or self._event.is_set()

    @property
    def halted(self) -> bool:
        return self._halted

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


class GraceToken(CancelToken):
    """A token for what a cancelled command still does for ``seconds`` (a retrieve listing what
    it did not fetch, to name it in its report): cancelled once they have passed, and at once,
    halted too, when ``parent`` is halted (the second Ctrl-C), which the work then ends as it
    ends its parent's. A token of its own with a timer that cancels it was not halted by the
    second signal: that work ran its grace, and a C-CANCEL's after it (~2 s)."""

    def __init__(self, parent: CancelToken, seconds: float) -> None:
        super().__init__()
        self.parent = parent
        self.deadline = time.monotonic() + seconds

    @property
    def cancelled(self) -> bool:
        return super().cancelled or self.halted or time.monotonic() >= self.deadline

    @property
    def halted(self) -> bool:
        return super().halted or halted(self.parent)


def halted(token) -> bool:
    """Whether ``token`` (a :class:`CancelToken`, or any object with ``cancelled``) says to stop
    at once (:meth:`CancelToken.halt`)."""
    return bool(getattr(token, "halted", False))


#: How long the main thread waits, after a second Ctrl-C, for the threads of a command that
#: abort their associations and remove their partial files (each looks at the token every 0.2 s).
HALT_WAIT_S = 5.0


def run_threads(calls: Sequence[Callable[[], object]], token: CancelToken, name: str) -> None:
    """Run each of ``calls`` in a thread of its own (daemons named ``name``-k) and wait for them.

    A KeyboardInterrupt in the main thread meanwhile (the second Ctrl-C or SIGTERM) halts
    ``token`` and waits for the threads to end (:data:`HALT_WAIT_S` at most, ``uninterrupted``:
    one more signal waits for it) before it goes on up: each aborts its association and removes
    the file it was receiving. Before, the process ended under them: a peer saw its connection
    dropped without an A-ABORT, and the file a retrieve was receiving stayed in the store for
    the next command's sweep. The threads' own ends are counted (not ``Thread.join``: a
    KeyboardInterrupt inside it marks the thread stopped while it runs on, Python 3.11 and 3.12)."""
    ended: list[int] = []

    def run(k: int, call: Callable[[], object]) -> None:
        try:
            call()
        finally:
            ended.append(k)

    threads = [threading.Thread(target=run, args=(k, call), name=f"{name}-{k}", daemon=True)
               for k, call in enumerate(calls)]  # fmt: skip
    try:
        with uninterrupted:  # Thread.start waits on an Event: not to be cut inside its lock
            for thread in threads:
                thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except KeyboardInterrupt:
        token.halt()
        started = sum(1 for thread in threads if thread.ident is not None)  # all, but for a failed start
        deadline = time.monotonic() + HALT_WAIT_S
        with uninterrupted:
            while len(ended) < started and time.monotonic() < deadline:
                time.sleep(0.01)
        raise
