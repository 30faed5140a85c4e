"""A writer killed (SIGKILL) inside its write transaction, after it moved the files of the
instances it deletes or replaces out of their names (``FileStore.retire``) and before its
COMMIT, loses nothing, on both back ends: the transaction rolls back, so the rows still point
to those names, and the next open's sweep must put the files back (a sweep that removed a dead
writer's temporary files as such deleted them: the instances were lost)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database
from DICOMPlusLib.database.ingest import DuplicatePolicy

STUDY = "1.2.826.0.1.3680043.8.498.91"


def _pause_before_commit(target: str, store: str, action: str, payload: list[str], paused) -> None:
    """Open the database as another process does and run ``action``; in the first write
    transaction that retired a file, say so on ``paused`` just before its COMMIT and wait there
    (until killed)."""
    db = Database.open(target, store_dir=store)
    retire, transaction = db.store.retire, db.write
    moved: list[str] = []

    def retiring(path):
        tmp = retire(path)
        if tmp is not None:
            moved.append(tmp)
        return tmp

    @contextlib.contextmanager
    def write():
        with transaction() as conn:
            yield conn
            if moved or action in ("store", "import"):
                paused.put(list(moved))
                multiprocessing.Event().wait()  # never set: SIGKILL ends this process here

    db.store.retire = retiring  # type: ignore[method-assign]
    db.write = write  # type: ignore[method-assign]
    if action == "delete":
        db.delete(study=payload[0])
    elif action == "import":
        db.import_paths(payload, jobs=1, link=False)
    else:
        for path in payload:
            incoming = db.ingest.incoming()
            with open(path, "rb") as f:
                incoming.write(f.read())
            db.ingest.commit(incoming, DuplicatePolicy.REPLACE)


def _kill_inside(target: str, store: str, action: str, payload: list[str]) -> list[str]:
    """Run :func:`_pause_before_commit` in a process, SIGKILL it at the pause; return the
    temporary names it had moved files to."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        paused = manager.Queue()
        child = ctx.Process(target=_pause_before_commit, args=(target, store, action, payload, paused))
        child.start()
        try:
            moved = paused.get(timeout=120)
            os.kill(child.pid, signal.SIGKILL)
            child.join(60)
        finally:
            if child.is_alive():
                child.kill()
                child.join()
    assert child.exitcode == -signal.SIGKILL
    assert all(os.path.exists(t) for t in moved)  # the files are out of their names
    return moved


def _stored(open_db, folder, versions: int) -> tuple[str, str, list[list]]:
    """A database with one study of 3 instances stored; ``versions`` copies of its files (the
    first one stored), each with other pixels."""
    db = open_db(folder)
    target = str(db.path) if open_db.backend == "sqlite" else open_db.url_of(folder)
    sops = [f"{STUDY}.9.{i}" for i in range(3)]
    copies = [
        make_series(folder.parent / f"v{v}", n=3, rows=4, cols=4, study_uid=STUDY, series_uid=f"{STUDY}.1",
                    sop_uids=sops, seed=v, shuffle=False).files
        for v in range(versions)
    ]  # fmt: skip
    for path in copies[0]:
        db.ingest.commit_bytes(path.read_bytes(), DuplicatePolicy.REPLACE)
    return target, str(db.store.root), copies


def _check(target: str, store: str, expected: dict[str, bytes]) -> set[str]:
    """Every instance is there with its first bytes, no temporary file is left; returns the
    stored files no row points to."""
    with Database.open(target, store_dir=store) as db:  # the open sweeps
        assert sorted(r.SOPInstanceUID for r in db.search("instance", {"StudyInstanceUID": STUDY})) == sorted(
            expected
        )
        paths = set()
        for sop, data in expected.items():
            record = db.instance(sop)
            assert open(record.path, "rb").read() == data
            paths.add(record.path)
        assert [n for n in os.listdir(store) if n.startswith(".incoming-")] == []
        return {str(p) for p in db.store.root.rglob("*.dcm")} - paths


def test_a_delete_killed_before_its_commit_loses_no_file(open_db, tmp_path):
    target, store, copies = _stored(open_db, tmp_path / "db", 1)
    expected = {f"{STUDY}.9.{i}": p.read_bytes() for i, p in enumerate(copies[0])}
    assert _kill_inside(target, store, "delete", [STUDY])
    assert _check(target, store, expected) == set()  # and no file without its row


def test_a_replacement_killed_before_its_commit_loses_no_file(open_db, tmp_path):
    target, store, copies = _stored(open_db, tmp_path / "db", 2)
    expected = {f"{STUDY}.9.{i}": p.read_bytes() for i, p in enumerate(copies[0])}
    assert _kill_inside(target, store, "replace", [str(p) for p in copies[1]])
    # and no file without its row: the new files the replacement had placed under new names
    # before the commit that never came are gone too
    assert _check(target, store, expected) == set()


@pytest.mark.parametrize("action", ["store", "import"])
def test_new_instances_killed_before_their_commit_leave_no_file(open_db, tmp_path, action):
    """A writer killed with NEW instances placed under their names and their rows not committed:
    the next open removes those files (no orphan stays until the instance is stored again),
    whether they came one by one (a listener's C-STOREs) or in an import's batch."""
    target, store, copies = _stored(open_db, tmp_path / "db", 1)
    expected = {f"{STUDY}.9.{i}": p.read_bytes() for i, p in enumerate(copies[0])}
    new = make_series(tmp_path / "new", n=3, rows=4, cols=4, study_uid=STUDY, series_uid=f"{STUDY}.2",
                      sop_uids=[f"{STUDY}.8.{i}" for i in range(3)], seed=5, shuffle=False).files  # fmt: skip
    payload = [str(new[0])] if action == "store" else [str(tmp_path / "new")]
    _kill_inside(target, store, action, payload)
    assert len(list(Path(store).rglob("*.dcm"))) > len(expected)  # the killed writer had placed its files
    assert _check(target, store, expected) == set()


def test_the_sweep_removes_a_killed_writers_retired_file_once_its_delete_committed(open_db, tmp_path):
    """A writer killed after its COMMIT, before it removed the retired files: no row points to
    their names, so the sweep removes them (and puts nothing back)."""
    target, store, _ = _stored(open_db, tmp_path / "db", 1)
    with Database.open(target, store_dir=store) as db:
        paths = [db.instance(f"{STUDY}.9.{i}").path for i in range(3)]
    other = Database.open(target, store_dir=store)
    try:
        with other.write() as conn:  # the delete's rows, then the files out of their names
            conn.execute("DELETE FROM instances WHERE SeriesInstanceUID=?", (f"{STUDY}.1",))
            moved = [other.store.retire(p) for p in paths]
        other.store.release()  # as a writer killed after its COMMIT: its lock goes, its files stay
        assert all(t is not None and os.path.exists(t) for t in moved)
        with Database.open(target, store_dir=store):  # the open sweeps
            pass
        assert not any(os.path.exists(t) for t in moved if t)
        assert not any(os.path.exists(p) for p in paths)  # nothing put back
    finally:
        other.close()


def test_settling_after_a_crash_finds_rows_by_uid_not_by_a_scan_of_instances(tmp_path, monkeypatch):
    """SQLite: ``instances`` has no index on path (no query but this one needs it, and every
    ingest would pay for it); the settling looks rows up by the SOP Instance UID in each retired
    file's header (the primary key). Every statement the open runs on ``instances`` is asked for
    its plan: none scans the table."""
    db_file, store = tmp_path / "db.sqlite", tmp_path / "store"
    series = make_series(tmp_path / "src", n=3, rows=4, cols=4, study_uid=STUDY, series_uid=f"{STUDY}.1")
    other = Database(db_file, store_dir=store)
    try:
        for path in series.files:
            other.ingest.commit_bytes(path.read_bytes(), DuplicatePolicy.REPLACE)
        paths = [other.instance(sop).path for sop in series.sop_uids]
        with other.write():  # a delete killed before its COMMIT: files out of their names, rows stay
            moved = [other.store.retire(p) for p in paths]
        other.store.release()
        assert all(t is not None and os.path.exists(t) for t in moved)
        statements: list[str] = []
        connect = Database._connect_sqlite

        def traced(self):
            conn = connect(self)
            conn.set_trace_callback(statements.append)
            return conn

        monkeypatch.setattr(Database, "_connect_sqlite", traced)
        with Database(db_file, store_dir=store):  # the open sweeps and settles
            pass
        monkeypatch.undo()
        assert all(open(p, "rb").read() for p in paths)  # put back
        on_instances = [
            s for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM instances" in s
        ]
        assert on_instances  # the settling asked
        with contextlib.closing(sqlite3.connect(db_file)) as conn:
            plans = [" / ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + s)) for s in on_instances]
        assert not [p for p in plans if "SCAN instances" in p], plans
    finally:
        other.close()
