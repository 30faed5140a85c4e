"""Issue 16, database side: stored paths that do not depend on the current folder, ``delete``
that never leaves the store (unless asked for linked files), owner-only database files, and the
sample PACS serving a database made from another folder."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import pydicom

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib.database import Database
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP
from DICOMPlusLib.network.pacs.sample import make_sample_data, sample_files


def dicomplus(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "DICOMPlusLib.cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def stored_paths(db_file: Path) -> list[str]:
    conn = sqlite3.connect(db_file)
    try:
        return [row[0] for row in conn.execute("SELECT path FROM instances ORDER BY path")]
    finally:
        conn.close()


def test_relative_db_stores_absolute_paths_and_delete_elsewhere_stays_in_the_store(tmp_path):
    series = make_series(tmp_path / "in", n=3, seed=1)
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    result = dicomplus("--db", "db", "import", str(series.folder), cwd=here)
    assert result.returncode == 0, result.stderr
    paths = stored_paths(here / "db" / "dicomplus.sqlite")
    assert len(paths) == 3 and all(os.path.isabs(p) and os.path.isfile(p) for p in paths)
    assert all(Path(p).is_relative_to(here / "db" / "store") for p in paths)
    # Unrelated files that sit, in another folder, where a relative stored path would point.
    victims = []
    for path in paths:
        victim = elsewhere / "db" / Path(path).relative_to(here / "db")
        victim.parent.mkdir(parents=True, exist_ok=True)
        victim.write_bytes(b"not yours")
        victims.append(victim)
    result = dicomplus("--db", "../here/db", "delete", "--series", series.series_uid, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert all(v.read_bytes() == b"not yours" for v in victims)
    assert not any(os.path.exists(p) for p in paths)  # the store's own copies went


def test_version_1_database_with_relative_paths_is_migrated(tmp_path, monkeypatch):
    series = make_series(tmp_path / "in", n=2, seed=2)
    db = Database(tmp_path / "db")
    db.import_paths([series.folder])
    db.close()
    absolute = stored_paths(db.path)
    # What version 1 wrote when run as `dicomplus --db db import ...` from tmp_path.
    conn = sqlite3.connect(db.path)
    conn.execute("UPDATE instances SET path = 'db/store/' || substr(path, ?)", (len(str(db.store.root)) + 2,))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    assert all(p.startswith("db/store/") for p in stored_paths(db.path))
    monkeypatch.chdir(tmp_path / "in")  # open it from somewhere else
    db = Database(tmp_path / "db")
    assert db.schema_version() >= 2
    assert stored_paths(db.path) == absolute
    record = db.instances(series.series_uid)[0]
    assert pydicom.dcmread(record.path).SeriesInstanceUID == series.series_uid
    db.close()


def test_delete_never_removes_a_copied_file_recorded_outside_the_store(tmp_path):
    series = make_series(tmp_path / "in", n=2, seed=3)
    db = Database(tmp_path / "db")
    db.import_paths([series.folder])
    outside = tmp_path / "outside.dcm"
    shutil.copyfile(series.files[0], outside)
    with db.write() as conn:  # a row (not linked) whose path has gone astray
        conn.execute(
            "UPDATE instances SET path=? WHERE SOPInstanceUID=(SELECT MIN(SOPInstanceUID) FROM instances)",
            (str(outside),),
        )
    report = db.delete(series=series.series_uid, dry_run=True)
    assert str(outside) not in report.files_removed
    report = db.delete(series=series.series_uid, linked_files=True)
    assert outside.exists() and str(outside) in report.files_kept
    assert len(report.files_removed) == 1
    db.close()


def test_database_wal_and_shm_are_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        db = Database(tmp_path / "db")
        db.import_paths([make_series(tmp_path / "in", n=2, seed=4).folder])
        files = [db.path, Path(f"{db.path}-wal"), Path(f"{db.path}-shm")]
        assert all(f.exists() for f in files)
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        db.close()
        # A database created by an older version (0644) is tightened when opened.
        os.chmod(db.path, 0o644)
        Database(db.path).close()
        assert stat.S_IMODE(db.path.stat().st_mode) == 0o600
        os.chmod(db.path, 0o660)  # shared with a group on purpose: left as it is
        Database(db.path).close()
        assert stat.S_IMODE(db.path.stat().st_mode) == 0o660
    finally:
        os.umask(old)


def test_sample_pacs_c_get_from_a_database_made_in_another_folder(dcmtk, tmp_path, monkeypatch):
    made_in = tmp_path / "made"
    made_in.mkdir()
    monkeypatch.chdir(made_in)
    db = Database("pacs")  # relative, as `dicomplus --db pacs serve --sample` would
    make_sample_data(db)
    db.close()
    monkeypatch.chdir(tmp_path)
    db = Database(made_in / "pacs")
    server = QueryRetrieveSCP(db, QRConfig(port=0, host=LOOPBACK)).start()
    try:
        samples = [pydicom.dcmread(BytesIO(d), stop_before_pixels=True) for d in sample_files()]
        series = str(samples[0].SeriesInstanceUID)
        study = str(samples[0].StudyInstanceUID)
        expected = {str(s.SOPInstanceUID) for s in samples if str(s.SeriesInstanceUID) == series}
        out = tmp_path / "get"
        out.mkdir()
        dcmtk.run("getscu", "-S", "-aec", "DICOMPLUSPACS", "-k", "QueryRetrieveLevel=SERIES",
                  "-k", f"StudyInstanceUID={study}", "-k", f"SeriesInstanceUID={series}", "-od", out,
                  LOOPBACK, server.port)  # fmt: skip
        got = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in out.iterdir()}
        assert got == expected
    finally:
        server.stop()
        db.close()


def test_delete_files_keeps_the_users_folders(tmp_path):
    """``delete --files`` removes the files imported in place, never the user's folders they sat
    in, even when that leaves them empty (a study folder, a mount point, a PACS's drop folder);
    the store's own copies go as before, its folder stays."""
    mine = tmp_path / "mine"
    linked = make_series(mine / "study" / "series", n=3, seed=7)
    copied = make_series(tmp_path / "copied", n=2, seed=8)
    db = tmp_path / "db"
    assert dicomplus("--db", str(db), "import", "--link", str(mine), cwd=tmp_path).returncode == 0
    assert dicomplus("--db", str(db), "import", str(copied.folder), cwd=tmp_path).returncode == 0
    result = dicomplus("--db", str(db), "delete", "--series", linked.series_uid, "--files", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not any(p.exists() for p in linked.files)
    assert (mine / "study" / "series").is_dir()  # emptied, and still there
    result = dicomplus("--db", str(db), "delete", "--series", copied.series_uid, "--files", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert all(p.exists() for p in copied.files)  # the originals of copies are never touched
    assert stored_paths(db / "dicomplus.sqlite") == [] and (db / "store").is_dir()
