"""The library's loggers, imported only by the modules that log.

The library adds a ``NullHandler`` to its ``DICOMPlusLib`` logger, so that a record nobody asked
for does not reach Python's last-resort handler (stderr). It is added here, once, on the first
import of this module, which every module that makes a logger imports: the handler is in place
before any record can be emitted, and a command that logs nothing (``dicomplus --version``, a
load from a folder) does not import ``logging`` (with ``traceback``, ``string`` and ``textwrap``,
a few milliseconds of start-up).
"""

import logging

logging.getLogger("DICOMPlusLib").addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """The logger *name* (a module's ``__name__``, under ``DICOMPlusLib``)."""
    return logging.getLogger(name)
