"""The command line's log handler: records go to stderr, each written ``uninterrupted``.

Python 3.11's ``logging.Handler.handle`` takes the handler's lock in ``acquire``, a Python
function, before its ``try``: a Ctrl-C raised by the CLI's handler just after the lock was taken
(a handler runs as a C call returns) left it held by the main thread, and every other thread's
next record (a worker's, an association's with ``--verbose``) waited for it forever. Imported
only by the commands that log to stderr (``--verbose``, ``listen`` and ``serve``): ``logging``
costs a command that logs nothing a few milliseconds of start-up.
"""

from __future__ import annotations

import logging
import sys

from DICOMPlusLib.uninterrupted import uninterrupted


class StderrHandler(logging.StreamHandler):
    """A StreamHandler on stderr whose records are written whole before a signal's exception
    (:mod:`DICOMPlusLib.uninterrupted`) is raised in the main thread."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def handle(self, record: logging.LogRecord) -> bool:
        with uninterrupted:
            return super().handle(record)
