"""Deletes racing writers from other processes, for real, on both back ends (issue #20's "many
writers"): while listener-like processes store into a study (one transaction per instance, the
path of a C-STORE), this process deletes that study, or the series a replacement moves
instances out of, again and again. Whatever the interleaving, the end state must hold: no row
without its parent, no row without its file, no file without its row, counts that match a
recount, no error surfaced (a deadlock would be one), and every acknowledged instance either
found or removed by exactly one delete."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time

import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database, pg_terms
from DICOMPlusLib.database.ingest import DuplicatePolicy, StoreStatus

WRITERS = 3


def _store_files(target: str, store: str, files: list[str], start) -> list[tuple[str, str]]:
    """Store ``files`` one transaction each, as a listener does (an incoming file, then commit);
    returns (status, SOP Instance UID) per file."""
    start.wait()
    db = Database.open(target, store_dir=store)
    try:
        out = []
        for path in files:
            incoming = db.ingest.incoming()
            with open(path, "rb") as f:
                incoming.write(f.read())
            result = db.ingest.commit(incoming, DuplicatePolicy.REPLACE)
            out.append((result.status.value, result.reason or result.sop_instance_uid))
            # At a sender's pace rather than in one burst: a writer that commits its 36 files in
            # ~40 ms can be done before the racing deletes find it twice (a loaded CI machine
            # saw one delete of it), and the race these tests need would not happen.
            time.sleep(0.005)
        return out
    finally:
        db.close()


def _target(open_db, folder) -> tuple[str, str]:
    """What another process opens: the SQLite file or the PostgreSQL URL, and the store."""
    db = open_db(folder)
    target = str(db.path) if open_db.backend == "sqlite" else open_db.url_of(folder)
    return target, str(db.store.root)


def _race(target: str, store: str, batches: list[list[str]], delete) -> tuple[list, list]:
    """Run one writer process per batch while ``delete(db)`` runs in this process until they
    are done; returns the writers' results and the delete reports."""
    ctx = multiprocessing.get_context("spawn")
    reports = []
    db = Database.open(target, store_dir=store)
    try:
        with ctx.Manager() as manager:
            start = manager.Barrier(len(batches) + 1)
            with ctx.Pool(len(batches)) as pool:
                pending = pool.starmap_async(_store_files, [(target, store, b, start) for b in batches])
                start.wait()
                while not pending.ready():
                    reports.extend(delete(db))
                    time.sleep(0.01)
                results = pending.get(timeout=600)
    finally:
        db.close()
    return results, reports


def _check_consistent(target: str, store: str) -> dict:
    """The end state: every row has its parent and its file, every file its row, counts exact."""
    leftovers = [n for n in os.listdir(store) if n.startswith(".incoming-")]
    assert leftovers == []  # no temporary or retired file left behind by a writer or a delete
    db = Database.open(target, store_dir=store)
    try:
        conn = db._reader()
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        assert one("SELECT COUNT(*) FROM instances i LEFT JOIN series se USING (SeriesInstanceUID)"
                   " WHERE se.SeriesInstanceUID IS NULL") == 0  # fmt: skip
        assert one("SELECT COUNT(*) FROM series se LEFT JOIN studies st USING (StudyInstanceUID)"
                   " WHERE st.StudyInstanceUID IS NULL") == 0  # fmt: skip
        assert (
            one("SELECT COUNT(*) FROM studies st LEFT JOIN patients p ON p.id=st.patient WHERE p.id IS NULL")
            == 0
        )
        paths = [r[0] for r in conn.execute("SELECT path FROM instances")]
        assert all(os.path.exists(p) for p in paths)  # no row without its file
        on_disk = sorted(str(p) for p in db.store.root.rglob("*.dcm"))
        assert sorted(paths) == on_disk  # no file without its row, none twice
        for s in db.search("series"):
            assert s.NumberOfSeriesRelatedInstances == len(db.instances(s.SeriesInstanceUID))
        for st in db.search("study"):
            series = db.search("series", {"StudyInstanceUID": st.StudyInstanceUID})
            assert st.NumberOfStudyRelatedSeries == len(series)
            assert st.NumberOfStudyRelatedInstances == sum(s.NumberOfSeriesRelatedInstances for s in series)
            assert st.ModalitiesInStudy == "\\".join(sorted({s.Modality for s in series if s.Modality}))
        if target.startswith("postgresql"):  # each series has exactly the terms of its instances
            kept = set(map(tuple, conn.execute("SELECT term, series FROM series_terms")))
            now = conn.execute(pg_terms._TERMS_OF, (sorted(pg_terms.skipped_keywords()),)).fetchall()
            assert kept == set(map(tuple, now))
        return db.info()
    finally:
        db.close()


def test_deleting_a_study_while_other_processes_store_into_it(open_db, tmp_path):
    target, store = _target(open_db, tmp_path / "db")
    study = "1.2.826.0.1.3680043.8.498.77"
    batches = []
    for w, modality in zip(range(WRITERS), ("CT", "MR", "MR"), strict=False):
        files: list[str] = []
        for r in range(12):  # new series and series that already have instances, in turn
            series_uid = f"1.2.826.0.1.3680043.8.498.77.{w}.{r % 3}"
            made = make_series(tmp_path / f"w{w}r{r}", n=3, rows=4, cols=4, modality=modality,
                               study_uid=study, series_uid=series_uid, seed=100 * w + r)  # fmt: skip
            files += [str(p) for p in made.files]
        batches.append(files)

    def delete(db):
        return [db.delete(study=study)]

    results, reports = _race(target, store, batches, delete)
    statuses = [s for r in results for s, _ in r]
    assert statuses == [StoreStatus.STORED.value] * len(statuses), [
        r for r in results for r in r if r[0] != "stored"
    ]
    info = _check_consistent(target, store)
    # Every acknowledged instance is found, or was removed by exactly one delete, with its file.
    assert info["instances"] == len(statuses) - sum(r.instances for r in reports)
    assert sum(len(r.files_removed) for r in reports) == sum(r.instances for r in reports)
    assert sum(1 for r in reports if r.instances) >= 2  # the deletes really raced the writers


def test_replacements_moving_instances_race_a_delete_of_the_series_they_leave(open_db, tmp_path):
    """The same SOP Instance UIDs sent again and again, alternately into series A and B of one
    study (policy REPLACE), while series A is deleted again and again."""
    target, store = _target(open_db, tmp_path / "db")
    study = "1.2.826.0.1.3680043.8.498.78"
    a, b = f"{study}.1", f"{study}.2"
    batches = []
    for w in range(2):
        sops = [f"{study}.9.{w}.{i}" for i in range(4)]
        files: list[str] = []
        for r in range(14):
            made = make_series(tmp_path / f"w{w}r{r}", n=4, rows=4, cols=4, study_uid=study,
                               series_uid=(a, b)[r % 2], sop_uids=sops, seed=r, shuffle=False)  # fmt: skip
            files += [str(p) for p in made.files]
        batches.append(files)

    def delete(db):
        return [db.delete(series=a)]

    results, reports = _race(target, store, batches, delete)
    statuses = {s for r in results for s, _ in r}
    assert statuses <= {StoreStatus.STORED.value, StoreStatus.REPLACED.value}, results
    info = _check_consistent(target, store)
    assert info["instances"] <= 8
    assert any(r.instances for r in reports)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_writers_into_one_study_keep_its_counts_exact(open_db, tmp_path):
    """New series of two modalities from three processes at once into one study: the counts
    and ModalitiesInStudy, changed by deltas, match a recount (no delete here)."""
    target, store = _target(open_db, tmp_path / "db")
    study = "1.2.826.0.1.3680043.8.498.79"
    batches = []
    for w, modality in enumerate(("CT", "MR", "MR")):
        files: list[str] = []
        for r in range(6):
            made = make_series(tmp_path / f"w{w}r{r}", n=4, rows=4, cols=4, modality=modality,
                               study_uid=study, seed=10 * w + r)  # fmt: skip
            files += [str(p) for p in made.files]
        batches.append(files)
    results, _ = _race(target, store, batches, lambda db: [])
    assert {s for r in results for s, _ in r} == {StoreStatus.STORED.value}
    info = _check_consistent(target, store)
    assert info == {"patients": 1, "studies": 1, "series": 18, "instances": 72}


@pytest.mark.parametrize("backend", ["postgresql"])
def test_replacements_changing_terms_race_writers_into_their_series(open_db, tmp_path):
    """One process sends the same instances again and again with other values each time (policy
    REPLACE: the series' terms are recomputed, its lock taken exclusively) while two others store
    new instances into the same series, with a value of their own and a value new to the series
    that the first sends at about the same time (without the exclusive lock, a recompute and an
    insert of the same new term waited for each other: a deadlock, or a term lost)."""
    import pydicom

    target, store = _target(open_db, tmp_path / "db")
    study = "1.2.826.0.1.3680043.8.498.80"
    series = f"{study}.1"
    batches = []
    for w in range(3):
        files: list[str] = []
        for r in range(10):
            sops = [f"{study}.9.{w}.{i}" for i in range(3)] if w == 0 else None
            made = make_series(tmp_path / f"w{w}r{r}", n=3, rows=4, cols=4, study_uid=study,
                               series_uid=series, sop_uids=sops, seed=10 * w + r, shuffle=False)  # fmt: skip
            for path in made.files:
                ds = pydicom.dcmread(path)
                ds.StationName = f"S{w}R{r}"
                ds.AdditionalPatientHistory = f"R{r}"  # new to the series in every writer at once
                ds.save_as(path)
            files += [str(p) for p in made.files]
        batches.append(files)
    results, _ = _race(target, store, batches, lambda db: [])
    assert {s for r in results for s, _ in r} <= {StoreStatus.STORED.value, StoreStatus.REPLACED.value}
    info = _check_consistent(target, store)
    assert info["instances"] == 3 + 2 * 30
    with Database.open(target, store_dir=store) as db:
        assert len(db.search("instance", {"StationName": "S0R9"})) == 3
        assert db.search("series", {"StationName": "S0R0"}) == []


def _replace_and_pause(target: str, store: str, path: str, ended, go) -> str:
    """Send ``path`` again (policy REPLACE), as a listener does, pausing after each write
    transaction it ends (on ``ended``) until told to go on (on ``go``): a pause that the scheduler
    may give any process at that point. Returns the commit's status."""
    db = Database.open(target, store_dir=store)
    transaction = db.write

    @contextlib.contextmanager
    def write():
        with transaction() as conn:
            yield conn
        ended.put(True)
        go.get(timeout=60)

    db.write = write  # type: ignore[method-assign]
    try:
        incoming = db.ingest.incoming()
        with open(path, "rb") as f:
            incoming.write(f.read())
        return db.ingest.commit(incoming, DuplicatePolicy.REPLACE).status.value
    finally:
        db.close()


def test_a_replacement_never_removes_the_file_another_process_stored_after_its_commit(open_db, tmp_path):
    """A listener replaces an instance; after its commit, before it has removed the file it
    replaced, another process deletes the instance and a third copy is stored anew, under the
    instance's first name (the name of the replaced file). When the listener goes on, the row
    must still have its file, and no other file may remain: the replaced file left its name
    inside the replacing transaction, so the listener can no longer remove a file by a name
    that someone else has since reused."""
    target, store = _target(open_db, tmp_path / "db")
    sop = "1.2.826.0.1.3680043.8.498.81.9.1"
    copies = [
        make_series(tmp_path / f"v{v}", n=1, rows=4, cols=4, study_uid="1.2.826.0.1.3680043.8.498.81",
                    series_uid="1.2.826.0.1.3680043.8.498.81.1", sop_uids=[sop], seed=v).files[0]
        for v in range(3)
    ]  # fmt: skip
    db = Database.open(target, store_dir=store)
    try:
        first = db.ingest.commit_bytes(copies[0].read_bytes(), DuplicatePolicy.REPLACE)
        assert first.status is StoreStatus.STORED
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as manager:
            ended, go = manager.Queue(), manager.Queue()
            with ctx.Pool(1) as pool:
                pending = pool.apply_async(_replace_and_pause, (target, store, str(copies[1]), ended, go))
                # PostgreSQL may end a first transaction with the locks only (pg_locks.replaced_keys)
                while ended.get(timeout=120) and db.instance(sop).path == first.path:
                    go.put(True)
                assert db.delete(instance=sop).instances == 1
                again = db.ingest.commit_bytes(copies[2].read_bytes(), DuplicatePolicy.REPLACE)
                assert (again.status, again.path) == (StoreStatus.STORED, first.path)  # the first name
                go.put(True)
                assert pending.get(timeout=120) == StoreStatus.REPLACED.value
        assert db.instance(sop).path == first.path
        assert open(first.path, "rb").read() == copies[2].read_bytes()  # the third copy, intact
    finally:
        db.close()
    info = _check_consistent(target, store)
    assert info["instances"] == 1
