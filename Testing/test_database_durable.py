"""The listener's ``fsync`` setting: an instance is answered only once its bytes, its row and its
file's name are on the disk (docs/reliability.md "The database on disk").

``synchronous=NORMAL`` commits to SQLite's WAL without syncing it: a kill loses nothing, but an OS
crash or a power cut can lose the last commits. Before this, ``fsync`` synced the received file
and not the row: after a power cut an acknowledged instance could be a file without a row (an
orphan the index never shows). Power cuts cannot be made here; what is checked is the order of
the system calls, with the real database and a real sender (DCMTK storescu): each sync of the
WAL comes after the instance's row was committed (a second connection sees it) and before the
next instance arrives; the store's folders are synced after the file is linked into them.
"""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database, open_database
from DICOMPlusLib.database.ingest import DuplicatePolicy
from DICOMPlusLib.network.listener import Listener, ListenerConfig


@pytest.fixture
def syncs(monkeypatch):
    """Every fsync/fdatasync of this process: (call, path, rows committed at that moment)."""
    calls: list[tuple[str, str]] = []
    lock = threading.Lock()
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def call(fd, real=real, name=name):
            with lock:
                calls.append((name, os.readlink(f"/proc/self/fd/{fd}")))
            return real(fd)

        monkeypatch.setattr(os, name, call)
    return calls


def committed(db_file) -> int:
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM instances").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("fsync", [True, False])
def test_a_listener_with_fsync_syncs_each_row_and_name_before_it_answers(tmp_path, dcmtk, syncs, fsync):
    series = make_series(tmp_path / "ct", n=4, rows=8, cols=8)
    db = Database(tmp_path / "db")
    order: list[str] = []
    real_sync = db._sync_index

    def sync_index():
        order.append(f"sync at {committed(db.path)} rows")
        real_sync()

    db._sync_index = sync_index  # the real sync, with the moment it runs noted
    listener = Listener(db, ListenerConfig(port=0, host=LOOPBACK, fsync=fsync, series_idle=0.3)).start()
    try:
        dcmtk.run("storescu", "-aec", "DICOMPLUS", LOOPBACK, listener.port, *series.files, timeout=120)
    finally:
        listener.stop()
    assert db.info()["instances"] == 4
    wal = f"{db.path}-wal"
    store = str(db.store_root)
    if not fsync:
        assert order == [] and not [c for c in syncs if c[1] in (wal, str(db.path))]
        db.close()
        return
    # one sync of the index per instance, each after that instance's commit (storescu sends one
    # at a time and waits for each answer: the n-th sync sees n rows)
    assert order == [f"sync at {n} rows" for n in range(1, 5)]
    assert [c for c in syncs if c[1] == wal] == [("fdatasync", wal)] * 4
    # each file's bytes before its row, and its folders after it was linked
    folders = {os.path.dirname(r.path) for r in db.instances(series.series_uid)}
    synced = [path for name, path in syncs if name == "fsync"]
    assert folders <= set(synced)
    assert {os.path.dirname(f) for f in folders} <= set(synced) | {store}
    assert sum(1 for path in synced if ".incoming" in path or path.startswith(store + "/")) >= 4
    db.close()


def test_postgresql_names_are_synced_after_the_commit(postgres_url, tmp_path, syncs):
    """PostgreSQL's commit is as durable as the server's ``synchronous_commit`` makes it (on by
    default; the test server runs with it off, for speed): what the back end adds is the sync of
    the stored file's folders."""
    db = open_database(postgres_url, store=tmp_path / "store")
    try:
        series = make_series(tmp_path / "ct", n=1, rows=8, cols=8)
        incoming = db.ingest.incoming()
        incoming.write(series.files[0].read_bytes())
        result = db.ingest.commit(incoming, DuplicatePolicy.KEEP, fsync=True)
        assert result.record is not None
        folder = os.path.dirname(result.record.path)
        assert ("fsync", folder) in syncs and ("fsync", os.path.dirname(folder)) in syncs
        assert syncs[0][1] == incoming.path  # the bytes first
    finally:
        db.close()
