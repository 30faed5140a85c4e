"""Autouse fixtures that keep one test's process state away from the next (pydicom's conftest
habit: a test restores what it changes, and the suite makes sure it did).

The suite runs in several pytest-xdist workers, each a long-lived process that runs many tests;
anything a test leaves in the process (an environment variable, a per-node association limit, a
log handler on a closed capture stream) changes what later tests on that worker see, in an order
that differs from run to run. So every test gets:

* its own user folders: ``XDG_CONFIG_HOME`` and ``XDG_DATA_HOME`` point into a fresh tmp folder and
  ``DICOMPLUS_DB`` / ``DICOMPLUS_NODES`` are unset, so no test reads or writes the developer's node
  list or database (``~/.config/dicomplus``, ``~/.local/share/dicomplus``) or another test's;
* no ``COLUMNS`` / ``LINES``: pytest-xdist's workers inherit COLUMNS=80 and LINES=24 from execnet,
  and rich believes them over a pseudo-terminal's real size (a 160-column table came out 80 wide);
* the per-node retrieve limits (``set_node_limit``) as they were before it;
* the log handlers and levels of the root and ``DICOMPlusLib`` loggers as they were before it (the
  command line adds a stderr handler for servers and ``basicConfig`` for ``--verbose``; in-process
  CLI tests would otherwise leave handlers writing to a closed capture stream).
"""

from __future__ import annotations

import logging
import sys

import pytest

_UNSET_ENV = ("DICOMPLUS_DB", "DICOMPLUS_NODES", "COLUMNS", "LINES")
_LIBRARY_LOGGERS = ("DICOMPlusLib", "DICOMPlusLib.network", "DICOMPlusLib.network.dimse.acceptor")


@pytest.fixture(autouse=True)
def _own_user_folders(monkeypatch, tmp_path_factory):
    home = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    for name in _UNSET_ENV:
        monkeypatch.delenv(name, raising=False)


def _node_limit_tables():
    """The retrieve module's per-node tables, if a test has imported it (never imported here:
    a test that does not retrieve should not pay for it)."""
    module = sys.modules.get("DICOMPlusLib.network.retrieve_qr")
    if module is None:
        return None
    return module._LIMITS, module._SEMAPHORES


@pytest.fixture(autouse=True)
def _restore_node_limits():
    tables = _node_limit_tables()
    before = [dict(t) for t in tables] if tables is not None else [{}, {}]
    yield
    tables = _node_limit_tables()
    if tables is not None:
        for table, saved in zip(tables, before, strict=True):
            table.clear()
            table.update(saved)


def _is_pytest_handler(handler: logging.Handler) -> bool:
    """pytest's log capture swaps its own handlers on the root logger per test phase: leave them."""
    return type(handler).__module__.startswith("_pytest")


@pytest.fixture(autouse=True)
def _restore_logging():
    names = (None, *_LIBRARY_LOGGERS)
    saved = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level) for name in names}
    yield
    for name, (handlers, level) in saved.items():
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if handler not in handlers and not _is_pytest_handler(handler):
                logger.removeHandler(handler)
        logger.setLevel(level)
