"""The database under stress: kill -9 during import, concurrent import/search/delete, delete clean-up."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database
from DICOMPlusLib.database.ingest import POLICY, IngestSource


def assert_consistent(db_path: Path) -> None:
    """integrity_check ok; no row without its parents or its file; counts agree."""
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
    assert q(
        "SELECT COUNT(*) FROM instances i LEFT JOIN series s USING (SeriesInstanceUID) WHERE s.SeriesInstanceUID IS NULL"
    ) == [(0,)]
    assert q(
        "SELECT COUNT(*) FROM series s LEFT JOIN studies st USING (StudyInstanceUID) WHERE st.StudyInstanceUID IS NULL"
    ) == [(0,)]
    assert q(
        "SELECT COUNT(*) FROM studies st LEFT JOIN patients p ON p.id = st.patient WHERE p.id IS NULL"
    ) == [(0,)]
    assert q(
        "SELECT COUNT(*) FROM series s WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.SeriesInstanceUID = s.SeriesInstanceUID)"
    ) == [(0,)]
    assert q(
        "SELECT COUNT(*) FROM series s WHERE NumberOfSeriesRelatedInstances !="
        " (SELECT COUNT(*) FROM instances i WHERE i.SeriesInstanceUID = s.SeriesInstanceUID)"
    ) == [(0,)]
    for (path,) in q("SELECT path FROM instances"):
        assert os.path.isfile(path), path
    conn.close()


def test_kill_9_during_import_leaves_a_consistent_database(tmp_path):
    for i in range(8):
        make_series(tmp_path / "in" / f"s{i}", n=250, rows=8, cols=8, seed=i)
    db_path = tmp_path / "db" / "dicomplus.sqlite"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "DICOMPlusLib.cli",
            "--db",
            str(db_path),
            "import",
            "--jobs",
            "2",
            str(tmp_path / "in"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    count = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db_path.exists():
            try:
                conn = sqlite3.connect(db_path, timeout=5)
                count = conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
                conn.close()
            except sqlite3.OperationalError:
                count = 0
            if count > 0:
                break
        time.sleep(0.01)
    assert proc.poll() is None, "the import finished before it could be killed: make it larger"
    os.killpg(proc.pid, signal.SIGKILL)  # the importer and its worker processes
    proc.wait(10)
    assert 0 < count
    assert_consistent(db_path)
    db = Database(db_path)
    before = db.info()["instances"]
    assert before < 2000
    report = db.import_paths([tmp_path / "in"])
    assert db.info() == {"patients": 1, "studies": 8, "series": 8, "instances": 2000}
    assert report.added + before == 2000
    db.close()
    assert_consistent(db_path)


def test_import_search_delete_and_receive_at_once(tmp_path):
    big = make_series(tmp_path / "big", n=600, rows=8, cols=8, seed=1)
    victims = [
        make_series(tmp_path / f"v{i}", n=20, rows=8, cols=8, seed=10 + i, patient_id=f"V{i}")
        for i in range(3)
    ]
    incoming = make_series(tmp_path / "incoming", n=60, rows=8, cols=8, seed=99, patient_id="RX")
    db = Database(tmp_path / "db")
    db.import_paths([v.folder for v in victims])
    errors: list[BaseException] = []
    results: dict[str, object] = {}
    stop = threading.Event()

    def guard(name, func):
        def run():
            try:
                results[name] = func()
            except BaseException as exc:
                errors.append(exc)

        return threading.Thread(target=run, name=name)

    def searcher():
        n = 0
        while not stop.is_set():
            db.search("study", {"PatientName": "Synth*"})
            db.search("instance", {"PatientID": "RX"})
            n += 1
        return n

    def deleter():
        return [db.delete(patient=v.patient_id) for v in victims]

    def receiver():
        for path in incoming.files:
            assert db.ingest.commit_bytes(path.read_bytes(), POLICY[IngestSource.LISTENER]).ok
        return len(incoming.files)

    threads = [
        guard("import", lambda: db.import_paths([big.folder], jobs=2, processes=False)),
        guard("search", searcher),
        guard("delete", deleter),
        guard("receive", receiver),
    ]
    for t in threads:
        t.start()
    for t in threads:
        if t.name != "search":
            t.join(60)
    stop.set()
    threads[1].join(10)
    assert not errors, errors
    assert results["search"] > 0
    assert results["import"].added == 600
    assert db.info() == {"patients": 2, "studies": 2, "series": 2, "instances": 660}
    db.close()
    assert_consistent(db.path)


@pytest.fixture
def three_patients(tmp_path):
    db = Database(tmp_path / "db")
    a1 = make_series(tmp_path / "a1", n=3, patient_id="A", seed=1)
    a2 = make_series(tmp_path / "a2", n=2, patient_id="A", study_uid=a1.study_uid, seed=2)
    b = make_series(tmp_path / "b", n=2, patient_id="B", seed=3)
    c = make_series(tmp_path / "c", n=2, patient_id="C", seed=4)
    db.import_paths([a1.folder, a2.folder, b.folder])
    db.import_paths([c.folder], link=True)
    return db, a1, a2, b, c


def store_files(db):
    return sorted(p for p in db.store.root.rglob("*.dcm"))


def test_delete_series_then_study_removes_rows_and_files(three_patients):
    db, a1, a2, _b, _c = three_patients
    assert len(store_files(db)) == 7
    report = db.delete(series=a2.series_uid)
    assert report.series == [a2.series_uid] and report.studies == [] and report.patients == []
    assert len(report.files_removed) == 2
    assert db.info() == {"patients": 3, "studies": 3, "series": 3, "instances": 7}
    assert db.search("study", {"PatientID": "A"})[0].NumberOfStudyRelatedInstances == 3
    report = db.delete(study=a1.study_uid)
    assert report.patients == ["A"] and report.studies == [a1.study_uid]
    assert len(store_files(db)) == 2
    # the fan-out folders stay (at most 256, made once: not again for the next file stored under
    # one, in series with its C-STORE response); nothing else is left
    for folder in db.store.root.rglob("*"):
        if folder.is_dir() and folder.name != ".incoming" and not any(folder.iterdir()):
            assert folder.parent == db.store.root and len(folder.name) == 2, folder
    assert_consistent(db.path)


def test_delete_dry_run_changes_nothing(three_patients):
    db, a1, *_ = three_patients
    before = db.info()
    report = db.delete(patient="A", dry_run=True)
    assert report.dry_run and report.patients == ["A"] and report.instances == 5
    assert len(report.files_removed) == 5 and report.studies == [a1.study_uid]
    assert db.info() == before and len(store_files(db)) == 7


def test_delete_keeps_linked_files_unless_asked(three_patients):
    db, *_, c = three_patients
    report = db.delete(patient="C")
    assert report.files_removed == [] and len(report.files_kept) == 2
    assert all(p.exists() for p in c.files)
    db.import_paths([c.folder], link=True)
    report = db.delete(patient="C", linked_files=True)
    assert len(report.files_removed) == 2
    assert not any(p.exists() for p in c.files)
    assert c.folder.is_dir() and not any(c.folder.iterdir())  # the user's folder stays, empty


def test_deleted_instances_can_be_imported_again(three_patients):
    db, _a1, _a2, b, _c = three_patients
    db.delete(patient="B")
    assert db.search("patient", {"PatientID": "B"}) == []
    report = db.import_paths([b.folder])
    assert report.added == 2
    assert pydicom.dcmread(db.instances(b.series_uid)[0].path).PatientID == "B"
