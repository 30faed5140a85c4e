"""A database on a disk or in a folder this user cannot write (a CD, a read-only mount, a
colleague's folder): ``search``, ``info``, ``inspect`` and ``convert`` read it, with one line that
says so; ``import`` and ``delete`` fail with one line and exit 1, and change nothing.

SQLite in WAL mode reads through the ``-shm`` file beside the database and creates it when it is
missing, which it cannot there: both cases are covered, a cleanly closed database (no ``-shm``)
and one whose writer was killed (``-wal`` and ``-shm`` left beside it, holding committed rows).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT

#: A writer killed after its import: its -wal and -shm stay beside the database.
KILLED_WRITER = """
import os, signal, sys
from DICOMPlusLib.database import Database
db = Database(sys.argv[1])
db.import_paths([sys.argv[2]])
os.kill(os.getpid(), signal.SIGKILL)
"""


def dicomplus(*args: str, drop_root: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "DICOMPlusLib.cli", *args]
    if drop_root and os.geteuid() == 0:  # root writes everywhere: drop the capability that allows it
        command = ["setpriv", "--bounding-set=-dac_override", *command]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def _run(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only_disk(path: Path) -> Iterator[None]:
    """``path`` as a file system that is made read-only by the test's ``remount``."""
    path.mkdir()
    if os.geteuid() != 0 or not _run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(path)]):
        pytest.skip("needs root and permission to mount a tmpfs (a real read-only disk)")
    try:
        yield
    finally:
        _run(["umount", "-l", str(path)])


def make_database(db: Path, series_folder: Path, *, killed_writer: bool) -> None:
    if killed_writer:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        result = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db), str(series_folder)], env=env)
        assert result.returncode == -signal.SIGKILL
        assert Path(f"{db}/dicomplus.sqlite-shm").is_file() and Path(f"{db}/dicomplus.sqlite-wal").is_file()
    else:
        result = dicomplus("--db", str(db), "import", str(series_folder))
        assert result.returncode == 0, result.stderr
        conn = sqlite3.connect(db / "dicomplus.sqlite")  # the last connection: removes -wal and -shm
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        assert not Path(f"{db}/dicomplus.sqlite-shm").exists()


def check_reads_and_refuses_writes(db: Path, series, tmp_path: Path, *, drop_root: bool = False) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return dicomplus("--db", str(db), *args, drop_root=drop_root)

    def files() -> list[str]:  # SQLite's own -wal and -shm may come where the folder is writable
        return sorted(p.name for p in db.iterdir() if not p.name.endswith(("-wal", "-shm")))

    before = files()
    info = cli("info", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["instances"] == len(series.files)
    note = [line for line in info.stderr.splitlines() if line]
    assert len(note) == 1 and "read-only" in note[0], info.stderr
    found = cli("search", "--level", "series", "--json")
    assert found.returncode == 0, found.stderr
    assert [r["SeriesInstanceUID"] for r in json.loads(found.stdout)] == [series.series_uid]
    inspected = cli("inspect", "--series", series.series_uid, "--json")
    assert inspected.returncode == 0, inspected.stderr
    converted = cli("convert", "--series", series.series_uid, "--out", str(tmp_path / "out.nrrd"))
    assert converted.returncode == 0, converted.stderr
    assert (tmp_path / "out.nrrd").is_file()

    more = make_series(tmp_path / "more", n=2, seed=41)
    for args in (("import", str(more.folder)), ("import", "--link", str(more.folder)),
                 ("delete", "--series", series.series_uid)):  # fmt: skip
        result = cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("dicomplus: error:")]
        assert len(errors) == 1 and "cannot write the database" in errors[0], (args, result.stderr)
        assert "Traceback" not in result.stderr
    again = cli("info", "--json")
    assert json.loads(again.stdout)["instances"] == len(series.files)
    assert files() == before


@pytest.mark.parametrize("killed_writer", [False, True], ids=["closed", "killed-writer"])
def test_database_on_a_read_only_disk(tmp_path, killed_writer):
    mount = tmp_path / "disk"
    series = make_series(tmp_path / "in", n=3, seed=40)
    with read_only_disk(mount):
        db = mount / "db"
        make_database(db, series.folder, killed_writer=killed_writer)
        assert _run(["mount", "-o", "remount,ro", str(mount)])
        check_reads_and_refuses_writes(db, series, tmp_path)


def test_database_in_a_folder_this_user_cannot_write(tmp_path):
    """A folder shared read-only (mode 0555): the same, without root's right to write anyway."""
    series = make_series(tmp_path / "in", n=3, seed=40)
    db = tmp_path / "db"
    make_database(db, series.folder, killed_writer=False)
    os.chmod(db, 0o555)
    try:
        check_reads_and_refuses_writes(db, series, tmp_path, drop_root=True)
    finally:
        os.chmod(db, 0o755)


def test_read_only_file_in_a_folder_this_user_can_write(tmp_path):
    """A database file shared read-only (mode 0444) in a writable folder: SQLite makes the -shm
    beside it, and the same holds."""
    series = make_series(tmp_path / "in", n=3, seed=40)
    db = tmp_path / "db"
    make_database(db, series.folder, killed_writer=False)
    os.chmod(db / "dicomplus.sqlite", 0o444)
    try:
        check_reads_and_refuses_writes(db, series, tmp_path, drop_root=True)
    finally:
        os.chmod(db / "dicomplus.sqlite", 0o600)
