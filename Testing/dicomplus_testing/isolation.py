"""Autouse fixtures that keep one test's process state away from the next (pydicom's conftest
habit: a test restores what it changes, and the suite makes sure it did).

The suite runs in several pytest-xdist workers, each a long-lived process that runs many tests;
anything a test leaves in the process (an environment variable, a per-node association limit, a
log handler on a closed capture stream) changes what later tests on that worker see, in an order
that differs from run to run. So every test gets:

* its own user folders: ``HOME``, ``XDG_CONFIG_HOME`` and ``XDG_DATA_HOME`` point into a fresh
  tmp folder and ``DICOMPLUS_DB`` / ``DICOMPLUS_NODES`` / ``DICOMPLUS_UID_ROOT`` are unset, so no
  test reads or writes the developer's node list or database (``~/.config/dicomplus``,
  ``~/.local/share/dicomplus``), any other ``~`` path (``--db=~/x``, a default folder built from
  ``Path.home()``), or another test's; the ``DICOMPLUS_*`` variables are put back as
  they were after it, also those a test set by hand (``os.environ[...] =``, which monkeypatch
  does not undo: its ``delenv`` above would even restore the leaked value at teardown);
* its own Qt settings: once the slicer stubs made the application, ``QSettings`` (user and system
  scope) live in a fresh tmp folder per test, and ``DICOMPlus/*`` is removed after it (for a test
  that imported the stubs itself). The panel remembers its database, view mode, listener port
  and current node there: left over, the next test's panel opened another test's database;
* no ``COLUMNS`` / ``LINES``: pytest-xdist's workers inherit COLUMNS=80 and LINES=24 from execnet,
  and rich believes them over a pseudo-terminal's real size (a 160-column table came out 80 wide);
* the per-node retrieve limits (``set_node_limit``) as they were before it;
* the log handlers and levels of the root and ``DICOMPlusLib`` loggers as they were before it (the
  command line adds a stderr handler for servers and ``basicConfig`` for ``--verbose``; in-process
  CLI tests would otherwise leave handlers writing to a closed capture stream).

And the whole run (each xdist worker) asserts at its end that nothing was written to the user's
own dicomplus folders or Qt settings (:func:`_user_folders_untouched`).

Before anything, the ending signals get their default handling back (:func:`pytest_configure`):
a suite started under ``nohup`` (SIGHUP ignored) or as a background job of a non-interactive shell
(``make test &``: SIGINT ignored) hands the ignored signal to every command it runs, and
``dicomplus`` leaves an ignored signal ignored, as ``nohup`` asks; the tests that close a
command's terminal or send it Ctrl-C then saw it run on (three failures, session 17).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

_UNSET_ENV = ("DICOMPLUS_DB", "DICOMPLUS_NODES", "DICOMPLUS_UID_ROOT", "COLUMNS", "LINES")


def pytest_configure(config) -> None:
    """SIGHUP, SIGINT and SIGTERM handled as by default in this process and so in the commands
    the tests start (see the module's docstring; a run under ``nohup`` then ends if its terminal
    closes)."""
    import signal

    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is signal.SIG_IGN:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)


#: The Qt organisation of the slicer stubs' application (slicer_testing.py): the settings of that
#: application only are redirected and cleared, never a QSettings of an unknown application.
_STUBS_ORGANIZATION = "slicer-testing"
_LIBRARY_LOGGERS = ("DICOMPlusLib", "DICOMPlusLib.network", "DICOMPlusLib.network.dimse.acceptor")


@pytest.fixture(autouse=True)
def _own_user_folders(monkeypatch, tmp_path_factory):
    home = tmp_path_factory.mktemp("user")
    (home / "home").mkdir()
    monkeypatch.setenv("HOME", str(home / "home"))  # os.path.expanduser, Path.home(), subprocesses
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    for name in _UNSET_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _restore_dicomplus_environment():
    before = {k: v for k, v in os.environ.items() if k.startswith("DICOMPLUS_")}
    yield
    for name in [k for k in os.environ if k.startswith("DICOMPLUS_")]:
        if name not in before:
            del os.environ[name]
    os.environ.update(before)


def _stubs_qtcore():
    """PySide6's QtCore once the slicer stubs made their application, else None (a test that
    imports neither Qt nor slicer pays nothing)."""
    qtcore = sys.modules.get("PySide6.QtCore")
    if qtcore is None or qtcore.QCoreApplication.instance() is None:
        return None
    if qtcore.QCoreApplication.organizationName() != _STUBS_ORGANIZATION:
        return None
    return qtcore


@pytest.fixture(autouse=True)
def _own_qt_settings(tmp_path_factory):
    qtcore = _stubs_qtcore()
    if qtcore is not None:
        root = tmp_path_factory.mktemp("qsettings")
        settings = qtcore.QSettings
        for fmt in (settings.Format.IniFormat, settings.Format.NativeFormat):
            settings.setPath(fmt, settings.Scope.UserScope, str(root / "user"))
            settings.setPath(fmt, settings.Scope.SystemScope, str(root / "system"))
    yield
    qtcore = _stubs_qtcore()
    if qtcore is not None:
        settings = qtcore.QSettings()
        settings.remove("DICOMPlus")
        settings.sync()


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


def _user_folders() -> list[Path]:
    """Where dicomplus and Qt would keep the user's own files, as the run found its environment
    (before any test pointed XDG_* elsewhere)."""
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return [config / "dicomplus", data / "dicomplus", config / _STUBS_ORGANIZATION]


def _fingerprint(folders: list[Path]) -> dict[str, tuple[int, int]]:
    found = {}
    for folder in folders:
        if folder.is_dir():
            for path in folder.rglob("*"):
                stat = path.lstat()
                found[str(path)] = (stat.st_mtime_ns, stat.st_size)
        elif folder.exists():
            found[str(folder)] = (folder.lstat().st_mtime_ns, folder.lstat().st_size)
    return found


@pytest.fixture(scope="session", autouse=True)
def _user_folders_untouched():
    """Fails the run's last test when a test wrote to the user's dicomplus folders
    (``~/.config/dicomplus``, ``~/.local/share/dicomplus``) or to the stubs' Qt settings in
    ``~/.config``: the per-test fixtures above are meant to make that impossible. Only those
    folders: other programs of the user (and other test runs on the machine) write elsewhere in
    ``~/.config`` meanwhile."""
    folders = _user_folders()
    before = _fingerprint(folders)
    yield
    after = _fingerprint(folders)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"the tests wrote to the user's own folders: {changed}"
