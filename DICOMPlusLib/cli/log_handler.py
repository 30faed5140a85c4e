"""The command line's log handler: records go to stderr, each written ``uninterrupted``.

Python 3.11's and 3.12's ``logging.Handler.handle`` take the handler's lock in ``acquire``, a
Python function, before its ``try``: a Ctrl-C raised by the CLI's handler just after the lock was taken
(a handler runs as a C call returns) left it held by the main thread, and every other thread's
next record (a worker's, an association's with ``--verbose``) waited for it forever. Imported
only by the commands that log to stderr (``--verbose``, ``listen`` and ``serve``): ``logging``
costs a command that logs nothing a few milliseconds of start-up. ``listen``'s
:func:`report_rejections` is here for the same reason.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable

from DICOMPlusLib.uninterrupted import uninterrupted


class StderrHandler(logging.StreamHandler):
    """A StreamHandler on stderr whose records are written whole before a signal's exception
    (:mod:`DICOMPlusLib.uninterrupted`) is raised in the main thread."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def handle(self, record: logging.LogRecord) -> bool:
        with uninterrupted:
            return super().handle(record)


class RejectionReporter(logging.Handler):
    """Says, for each association the listener rejects, what to change on our side.

    It reads the acceptor's log records (their arguments, not their text):
    ``(peer, calling AE, called AE, reason)``.
    """

    def __init__(self, args, config, emit: Callable[[object, str, dict], None]) -> None:
        super().__init__(logging.INFO)
        self.args, self.config, self.say = args, config, emit  # how the command prints an event

    def emit(self, record: logging.LogRecord) -> None:
        rejection = getattr(record, "rejection", None)  # the acceptor's Rejection, as data
        if rejection is None or not getattr(self.args, "json", False):
            return  # in text mode the acceptor's own warning (reason and remedy) is on stderr
        peer, calling, called = rejection.peer, rejection.calling_ae, rejection.called_ae
        allowed = self.config.allowed_calling_aets
        if allowed and calling not in allowed:
            fix = f"to accept it, restart with --allow {','.join((*allowed, calling))}"
        elif called != self.config.ae_title:
            fix = (
                f"it called {called!r} but we are {self.config.ae_title!r}: restart with --ae-title {called}"
            )
        else:
            fix = rejection.remedy or rejection.reason
        self.say(
            self.args,
            f"rejected an association from {calling!r} at {peer}: {fix}",
            {"event": "rejected", "peer": peer, "calling_ae": calling, "called_ae": called, "fix": fix},
        )


@contextlib.contextmanager
def report_rejections(args, config, emit: Callable[[object, str, dict], None]):
    """While the block runs, :class:`RejectionReporter` hears the listener's acceptor."""
    log = logging.getLogger("DICOMPlusLib.network.dimse.acceptor")
    handler = RejectionReporter(args, config, emit)
    level = log.level
    log.addHandler(handler)
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
