"""SQLite's WAL during imports (issue 19): an import checkpoints only past
:data:`~DICOMPlusLib.database.database.IMPORT_WAL_PAGES`, so a command-line import that ends by
``os._exit`` may leave its rows in the WAL. Checked here: that is what happens, the rows are the
same, a killed import keeps every committed row, and the WAL stays bounded across many imports.
docs/reliability.md "The database on disk" says what a kill, a crash or a power cut can lose."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib.database import Database
from DICOMPlusLib.database import database as sqlite_backend
from DICOMPlusLib.errors import DatabaseError

FRAME = 4096 + 24  # a WAL frame: a page and its header (SQLite's default page size)


def wal_frames(db_path: Path) -> int:
    """How many frames the WAL file can hold (its size: SQLite reuses it, never shrinks it)."""
    wal = Path(f"{db_path}-wal")
    return max(0, (wal.stat().st_size - 32) // FRAME) if wal.exists() else 0


def clone_series(folder: Path, copies: int, *, seed: int = 0) -> Path:
    """``copies`` x 8 instances with a large header (~10 KB: 2-3 pages of the ``instances``
    table each), made from one synthetic series with new UIDs (faster than making them all)."""
    made = make_series(
        folder.with_name(folder.name + "-seed"), n=8, rows=8, cols=8, fat_header=True, seed=seed
    )
    for c in range(copies):
        study, series = generate_uid(), generate_uid()
        out = folder / f"c{c:03d}"
        out.mkdir(parents=True)
        for i, path in enumerate(made.files):
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(out / f"{i}.dcm")
    return folder


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """320 instances whose import writes ~1,050 WAL pages: more than SQLite's default
    autocheckpoint (1,000), fewer than an import's limit."""
    return clone_series(tmp_path_factory.mktemp("wal") / "big", 40)


def dump(db: Database) -> dict[str, list[tuple]]:
    """Every table's rows but the times the rows were written at."""
    conn = db._reader()
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    out = {}
    for table in tables:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if r[1] != "inserted"]
        select = ", ".join(f'"{c}"' for c in columns)
        out[table] = sorted(
            (tuple(r) for r in conn.execute(f"SELECT {select} FROM {table}")), key=lambda row: repr(row)
        )
    return out


def test_an_import_leaves_its_pages_in_the_wal_below_its_limit(tmp_path, big):
    """An import that writes more than 1,000 WAL pages runs no checkpoint (the database file
    keeps the size it had when opened) while it is below :data:`IMPORT_WAL_PAGES`; the writer's
    limit is the import's while it runs and SQLite's default again after, also after an import
    that fails."""
    with Database(tmp_path / "db") as db:
        size = os.path.getsize(db.path)
        seen: list[int] = []

        def progress(done, total, current):
            seen.append(db._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

        report = db.import_paths([big], link=True, jobs=1, progress=progress)
        assert report.added == 320
        assert set(seen) == {sqlite_backend.IMPORT_WAL_PAGES}
        assert wal_frames(db.path) > sqlite_backend.WAL_CHECKPOINT_PAGES
        assert os.path.getsize(db.path) == size  # nothing copied into it yet
        assert (
            db._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            == sqlite_backend.WAL_CHECKPOINT_PAGES
        )
        with pytest.raises(RuntimeError):
            db.import_paths(
                [big], link=True, jobs=1, progress=lambda *a: (_ for _ in ()).throw(RuntimeError())
            )
        assert (
            db._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            == sqlite_backend.WAL_CHECKPOINT_PAGES
        )
        assert db._bulk_depth == 0
    with pytest.raises(DatabaseError, match="closed"):
        db.import_paths([big], link=True, jobs=1)
    # Closing the last connection copies the WAL into the database file, as SQLite always did.
    assert os.path.getsize(db.path) > size
    conn = sqlite3.connect(db.path)
    assert conn.execute("SELECT count(*) FROM instances").fetchone()[0] == 320
    conn.close()


def test_the_rows_are_the_same_as_with_checkpoints_every_1000_pages(tmp_path, big, monkeypatch):
    with Database(tmp_path / "new") as db:
        db.import_paths([big], link=True, jobs=1)
        new = dump(db)
    monkeypatch.setattr(Database, "_bulk_writes", lambda self: contextlib.nullcontext())
    with Database(tmp_path / "old") as db:
        db.import_paths([big], link=True, jobs=1)
        assert os.path.getsize(db.path) > 4096  # this one did checkpoint inside the import
        old = dump(db)
    assert new["instances"] and new == old


KILLED = """
import os, signal, sys
from DICOMPlusLib.database import Database, indexer

indexer.BATCH = 40  # a commit every chunk (48 files)
db = Database(sys.argv[1])
real = db.commit_parsed
commits = 0


def commit_then_report(items, **kwargs):
    global commits
    out = real(items, **kwargs)
    commits += 1
    print(db._reader().execute("SELECT count(*) FROM instances").fetchone()[0], flush=True)
    if commits == 5:
        os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 would, after five commits of eight
    return out


db.commit_parsed = commit_then_report
db.import_paths([sys.argv[2]], link=sys.argv[3] == "link", jobs=1)
"""


@pytest.mark.parametrize("link", ["link", "copy"])
def test_an_import_killed_after_some_commits_keeps_every_committed_row(tmp_path, big, link):
    """SIGKILL between two commits of an import whose commits are all still in the WAL (no
    checkpoint yet): the next open reads them all, and the database is whole."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path / "db"), str(big), link],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    counts = [int(line) for line in proc.stdout.split()]
    assert len(counts) == 5 and counts == sorted(set(counts)) and counts[-1] < 320, counts
    db_file = tmp_path / "db" / sqlite_backend.DB_FILE_NAME
    assert os.path.getsize(db_file) == 4096 and wal_frames(db_file) > 0  # every row is in the WAL
    with Database(tmp_path / "db") as db:
        assert db.info()["instances"] == counts[-1]
        assert db._reader().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        paths = [r[0] for r in db._reader().execute("SELECT path FROM instances")]
        assert all(os.path.isfile(p) for p in paths)
        # The files it had not committed are not in the store either (the sweep of the open).
        if link == "copy":
            assert sorted(str(p) for p in db.store.root.rglob("*.dcm")) == sorted(paths)


COMMAND = """
import sys
from DICOMPlusLib.database import database
database.IMPORT_WAL_PAGES = database.WAL_CHECKPOINT_PAGES = int(sys.argv[1])
sys.argv = ["dicomplus", *sys.argv[2:]]
from DICOMPlusLib.cli.entry import run
run()
"""


def test_the_wal_stays_bounded_across_many_command_line_imports(tmp_path):
    """``dicomplus import`` leaves by ``os._exit`` (no close, no checkpoint at the end): twelve
    imports, each leaving its pages in the WAL, with both limits at 64 pages. The WAL never holds
    more than the limit and two imports' pages (the next writer copies a WAL past the limit and
    starts it again), and every row is kept. Before, it grew with every command."""
    folder = clone_series(tmp_path / "src", 12, seed=3)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    db_dir = tmp_path / "db"
    db_file = db_dir / sqlite_backend.DB_FILE_NAME
    frames = []
    for c in range(12):
        command = [sys.executable, "-c", COMMAND, "64", "--db", str(db_dir), "import", "--link", str(folder / f"c{c:03d}")]  # fmt: skip
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        frames.append(wal_frames(db_file))
    one = frames[0]  # an import of 8 files (and the schema, the first time)
    assert 12 * one > 64 + 2 * one  # without checkpoints the WAL would pass the bound
    assert max(frames) <= 64 + 2 * one, frames
    assert os.path.getsize(db_file) > 4096  # some imports did checkpoint
    with Database(db_dir) as db:
        assert db.info()["instances"] == 96


def test_a_collection_after_a_command_does_not_close_its_database(tmp_path, big):
    """A command line process leaves by ``os._exit`` with its WAL as it is (the next writer
    copies it): its database is held by a reference cycle, so a collection of the cycles after
    the command (here forced by an ``atexit`` function, which the exit runs) would close it, and
    closing the last connection checkpoints the WAL. The console script keeps its databases
    referenced until the end. (The test above failed now and then without it, as the
    collector's counts fell.)"""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import atexit, gc\natexit.register(gc.collect)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(site)]))
    db_dir = tmp_path / "db"
    db_file = db_dir / sqlite_backend.DB_FILE_NAME
    for args in (("import", "--link", str(big)), ("info",)):
        proc = subprocess.run([sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(db_dir), *args],
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert os.path.getsize(db_file) == 4096, args  # nothing copied into the database file
        assert wal_frames(db_file) > sqlite_backend.WAL_CHECKPOINT_PAGES, args


def test_the_next_command_that_writes_copies_an_imports_wal_and_starts_it_over(tmp_path, big):
    """As the commands run: an import leaves its ~1,050 pages in the WAL (more than SQLite's
    default limit); a command that only reads sees every row and changes nothing on disk; the
    next import copies them into the database file before its first write and starts the WAL
    over (the file is cut back to the limit)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    db_dir = tmp_path / "db"
    db_file = db_dir / sqlite_backend.DB_FILE_NAME

    def dicomplus(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(db_dir), *args],
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    dicomplus("import", "--link", str(big))
    assert os.path.getsize(db_file) == 4096
    assert wal_frames(db_file) > sqlite_backend.WAL_CHECKPOINT_PAGES
    assert "320" in dicomplus("info")
    assert os.path.getsize(db_file) == 4096
    small = make_series(tmp_path / "small", n=3, rows=8, cols=8, seed=5)
    dicomplus("import", "--link", str(small.folder))
    assert os.path.getsize(db_file) > 320 * 8192  # the headers are in the database file now
    assert wal_frames(db_file) <= sqlite_backend.WAL_CHECKPOINT_PAGES
    conn = sqlite3.connect(f"file:{db_file}?immutable=1", uri=True)  # the file alone, no WAL
    assert conn.execute("SELECT count(*) FROM instances").fetchone()[0] == 320
    conn.close()
