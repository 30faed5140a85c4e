"""``dicomplus db backup``: one self-contained, consistent copy of an SQLite index.

The command line leaves by ``os._exit`` and an import checkpoints only past 16 MiB of WAL
(docs/reliability.md "The database on disk"), so after an import the ``.sqlite`` file alone can
hold none of its rows: a user who copies that file loses them. The backup must hold every
committed row in one file, be taken while another process writes, never overwrite, stay
private, and leave nothing behind when it is stopped.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib.cli import main
from DICOMPlusLib.database import Database
from DICOMPlusLib.errors import CancelledError
from DICOMPlusLib.jobs import CancelToken


def dicomplus(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    command = [sys.executable, "-m", "DICOMPlusLib.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=REPO_ROOT)


def rows(path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'instances'").fetchone() is None:
            return []  # not even the tables (they are in the WAL too)
        return conn.execute(
            "SELECT SOPInstanceUID, SeriesInstanceUID, header FROM instances ORDER BY 1"
        ).fetchall()
    finally:
        conn.close()


def test_a_backup_holds_the_rows_the_sqlite_file_alone_lacks(tmp_path):
    series = make_series(tmp_path / "ct", n=6, rows=8, cols=8)
    db = tmp_path / "db" / "dicomplus.sqlite"
    assert dicomplus("import", "--db", db, series.folder).returncode == 0
    # what a user copying the .sqlite file alone gets: none of the import's rows
    alone = tmp_path / "alone" / "dicomplus.sqlite"
    alone.parent.mkdir()
    shutil.copy(db, alone)
    assert rows(alone) == []

    done = dicomplus("db", "backup", "--db", db, tmp_path / "backup")
    assert done.returncode == 0, done.stderr
    copy = tmp_path / "backup" / "dicomplus.sqlite"
    assert f"to {copy}" in done.stdout
    moved = tmp_path / "elsewhere.sqlite"
    shutil.move(copy, moved)  # one file: nothing beside it is needed
    assert sorted(os.listdir(tmp_path / "backup")) == []
    assert len(rows(moved)) == 6 and rows(moved) == rows(db)
    assert stat.S_IMODE(os.stat(moved).st_mode) == 0o600  # patient data, as private as the database
    conn = sqlite3.connect(moved)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    reopened = Database(moved, store_dir=db.parent / "store")
    try:
        assert reopened.info()["instances"] == 6
        assert reopened.instance(series.sop_uids[0]).path  # found through the original store
    finally:
        reopened.close()


def test_a_backup_never_overwrites_and_a_postgresql_database_is_pointed_to_pg_dump(
    tmp_path, postgres_url, capsys
):
    series = make_series(tmp_path / "ct", n=2, rows=8, cols=8)
    db = tmp_path / "dicomplus.sqlite"
    assert main(["import", "--db", str(db), str(series.folder)]) == 0
    existing = tmp_path / "existing.sqlite"
    existing.write_bytes(b"someone's file")
    capsys.readouterr()
    assert main(["db", "backup", "--db", str(db), str(existing)]) == 1
    assert "exists: a backup goes to a new file" in capsys.readouterr().err
    assert existing.read_bytes() == b"someone's file"

    assert (
        main(["db", "backup", "--db", postgres_url, "--store", str(tmp_path / "pg"), str(tmp_path / "b")])
        == 1
    )
    err = capsys.readouterr().err
    assert "pg_dump" in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_a_backup_taken_while_another_process_imports_is_consistent(tmp_path):
    db_path = tmp_path / "dicomplus.sqlite"
    first = make_series(tmp_path / "first", n=40, rows=8, cols=8, fat_header=True)
    with Database(db_path) as db:
        db.import_paths([first.folder])
    folders = [
        make_series(tmp_path / f"more{i}", n=20, rows=8, cols=8, fat_header=True, seed=i + 1).folder
        for i in range(6)
    ]
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nfrom DICOMPlusLib.database import Database\ndb = Database(sys.argv[1])\n"
         "for f in sys.argv[2:]:\n    db.import_paths([f], jobs=1)\n", str(db_path), *map(str, folders)],
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )  # fmt: skip
    try:
        backups = []
        with Database(db_path) as db:
            while writer.poll() is None and len(backups) < 20:
                backups.append(db.backup(tmp_path / f"b{len(backups)}.sqlite"))
                time.sleep(0.05)
        assert writer.wait(120) == 0
    finally:
        writer.kill()
    assert backups
    final = {uid for uid, _series, _header in rows(db_path)}
    counts = []
    for path in backups:
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # one snapshot: every instance's series and every series' study are in the same copy
        assert conn.execute(
            "SELECT count(*) FROM instances WHERE SeriesInstanceUID NOT IN (SELECT SeriesInstanceUID FROM series)"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM series WHERE StudyInstanceUID NOT IN (SELECT StudyInstanceUID FROM studies)"
        ).fetchone() == (0,)
        conn.close()
        found = rows(path)
        assert {uid for uid, _s, _h in found} <= final and len(found) >= 40
        counts.append(len(found))
    assert counts == sorted(counts)  # each later copy holds at least what the one before held


def test_a_cancelled_backup_leaves_no_file(tmp_path):
    # several steps of BACKUP_STEP_PAGES (1 MiB): 300 instances with fat headers
    series = make_series(tmp_path / "ct", n=300, rows=8, cols=8, fat_header=True)
    with Database(tmp_path / "dicomplus.sqlite") as db:
        db.import_paths([series.folder])
        token = CancelToken()
        seen = []

        def progress(done, total, _what):
            seen.append((done, total))
            token.cancel()

        with pytest.raises(CancelledError):
            db.backup(tmp_path / "new" / "b.sqlite", progress=progress, cancel=token)
        assert seen and seen[0][0] < seen[0][1]  # stopped before the last step
        # no partial file, and not the folder it made for the copy either
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["ct", "dicomplus.sqlite", "dicomplus.sqlite-wal", "dicomplus.sqlite-shm", "store"]
        )
