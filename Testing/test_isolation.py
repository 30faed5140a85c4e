"""The suite's isolation (dicomplus_testing.isolation) holds whatever the order: each pair here is
one test that leaves something behind as a careless test would (a panel setting, an environment
variable set by hand, a node in the default nodes file) and one that asserts the default. pytest
runs a file's tests in the order written, and xdist may put either first on a worker; run them
both ways round, e.g.::

    pytest Testing/test_isolation.py::test_the_panel_starts_from_the_default_database \
           Testing/test_isolation.py::test_a_panel_remembers_the_database_it_was_given

Before the settings had a folder per test, the default test failed when it ran second
(``DICOMPlus/DatabasePath`` of the first test chose the database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_panel_remembers_the_database_it_was_given(dicomplus_module, tmp_path):
    import qt

    logic = dicomplus_module.DICOMPlusLogic()
    try:
        logic.setDatabasePath(tmp_path / "chosen.sqlite")
        logic.setDatabasePath("postgresql://nowhere/x", store=tmp_path / "store")
    finally:
        logic.close()
    qt.QSettings().setValue("DICOMPlus/BrowserViewMode", "tree")
    assert qt.QSettings().value("DICOMPlus/DatabaseURL") == "postgresql://nowhere/x"


def test_the_panel_starts_from_the_default_database(dicomplus_module):
    import qt
    import slicer

    settings = qt.QSettings()
    assert settings.allKeys() == [], settings.allKeys()  # no DICOMPlus/* nor any other key
    logic = dicomplus_module.DICOMPlusLogic()
    try:
        test_database = os.path.join(slicer.app.temporaryPath, "DICOMPlusTestDatabase", "dicomplus.sqlite")
        assert logic.databasePath() == test_database
        assert logic.storePath() is None
    finally:
        logic.close()


def test_an_environment_variable_set_by_hand_is_undone():
    os.environ["DICOMPLUS_DB"] = "/nowhere/leaked.sqlite"  # not monkeypatch: as a careless test would
    os.environ["DICOMPLUS_UID_ROOT"] = "1.2.3"


def test_the_user_environment_is_the_default_one():
    from DICOMPlusLib.database import default_database_path
    from DICOMPlusLib.network.nodes import default_nodes_path

    assert "DICOMPLUS_DB" not in os.environ and "DICOMPLUS_UID_ROOT" not in os.environ
    assert default_database_path().parent.parent == default_nodes_path().parent.parent.parent / "data"
    assert not default_nodes_path().exists() and not default_database_path().exists()


def test_a_node_added_to_the_default_nodes_file():
    from DICOMPlusLib.network.nodes import NodeStore, RemoteNode, default_nodes_path

    NodeStore().add(RemoteNode.parse("LEAK@127.0.0.1:11112", name="leak"))
    assert default_nodes_path().is_file()
    assert [n.name for n in NodeStore().list()] == ["leak"]


def test_the_default_nodes_file_starts_empty():
    from DICOMPlusLib.network.nodes import NodeStore

    assert NodeStore().list() == []


def test_a_file_written_under_home(tmp_path_factory):
    """As a test of ``--db=~/x`` would: a file under ``~``."""
    home = Path.home()
    assert home.is_relative_to(tmp_path_factory.getbasetemp())  # never the user's own home
    (home / "leak.sqlite").write_bytes(b"left by another test")


def test_home_is_a_fresh_folder_in_process_and_in_a_child(tmp_path_factory):
    home = Path.home()
    assert home.is_relative_to(tmp_path_factory.getbasetemp())
    assert list(home.iterdir()) == []  # not another test's (test_a_file_written_under_home)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.path.expanduser('~'))"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert child.stdout.strip() == str(home)
