"""The library's loggers: ``logging`` is imported when a record is first logged, not before.

The library adds a ``NullHandler`` to its ``DICOMPlusLib`` logger, so that a record nobody asked
for does not reach Python's last-resort handler (stderr). It is added once, before the first
record of any library logger can be emitted: every module that makes a logger makes it with
:func:`get_logger`.

Most command line processes log nothing: an import again of unchanged files, a search,
``dicomplus --version``, a load from a folder. Where ``logging`` is not imported yet,
:func:`get_logger` gives a stand-in that imports it (with ``traceback``, ``string`` and
``textwrap``, 2-3 ms of a process's start) and adds the handler at its first use, then passes
every call to the real logger. Where it is (Slicer, a test run, a program that configured
logging), it gives the real logger and adds the handler at once, as before.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import logging

_LIBRARY = "DICOMPlusLib"
_handler_lock = threading.Lock()
_handler_added = False


def get_logger(name: str) -> logging.Logger:
    """The logger *name* (a module's ``__name__``, under ``DICOMPlusLib``)."""
    if "logging" in sys.modules:
        return _real_logger(name)
    return cast("logging.Logger", _Logger(name))


def quiet_by_default(name: str) -> None:
    """Give another package's logger *name* a ``NullHandler``, as the library's own have: for a
    package whose records the library raises as errors of its own. psycopg logs what it ignores
    while an error is on its way (WARNING "error ignored terminating <psycopg.Pipeline [BAD]>:
    the connection is lost" when the server ends a session in a pipeline), which the last-resort
    handler printed on a command's stderr beside the error itself. An application that
    configures logging still sees them."""
    import logging

    logger = logging.getLogger(name)
    with _handler_lock:
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


def _real_logger(name: str) -> logging.Logger:
    import logging

    global _handler_added
    if not _handler_added:
        with _handler_lock:  # two threads may log their first record at once: one handler
            if not _handler_added:
                logging.getLogger(_LIBRARY).addHandler(logging.NullHandler())
                _handler_added = True
    return logging.getLogger(name)


class _Logger:
    """Stands for ``logging.getLogger(name)`` until first used (see the module's documentation).

    A method taken from the real logger is kept on the stand-in, so that the next call finds it
    at once (a record costs what it costs on the real logger); other attributes (``level``,
    ``handlers``, ``disabled``) are read from the real logger every time."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: logging.Logger | None = None

    def __getattr__(self, attribute: str) -> Any:
        logger = self._logger
        if logger is None:
            logger = self._logger = _real_logger(self._name)
        value = getattr(logger, attribute)
        if callable(value):
            setattr(self, attribute, value)
        return value

    def __repr__(self) -> str:
        return (
            f"<logger {self._name} (logging not imported yet)>"
            if self._logger is None
            else repr(self._logger)
        )
