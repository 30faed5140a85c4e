"""Import: counts against pydicom, skipped files with reasons, re-import, bad input, store paths;
on both back ends (``open_db``), except what is SQLite's own (its file, ``PRAGMA user_version``)."""

from __future__ import annotations

import collections
import os
import shutil
import sqlite3
from pathlib import Path

import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database, TemporaryDatabase, parsing
from DICOMPlusLib.errors import DatabaseError, DiskFullError
from DICOMPlusLib.jobs import CancelToken


def pydicom_counts(root: Path) -> dict[str, int]:
    """What pydicom finds: distinct patients, studies, series, instances of composite objects."""
    patients, studies, series, instances = set(), set(), set(), set()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue
        if "SOPInstanceUID" not in ds or "SeriesInstanceUID" not in ds:
            continue
        patients.add((str(ds.get("PatientID", "")), str(ds.get("PatientName", ""))))
        studies.add(ds.StudyInstanceUID)
        series.add(ds.SeriesInstanceUID)
        instances.add(ds.SOPInstanceUID)
    return {
        "patients": len(patients),
        "studies": len(studies),
        "series": len(series),
        "instances": len(instances),
    }


def test_import_shared_series_matches_pydicom(tmp_path, shared_series, monkeypatch, open_db):
    db = open_db(tmp_path / "db")
    report = db.import_paths([shared_series])
    assert db.info() == pydicom_counts(shared_series)
    reasons = {Path(s.path).relative_to(shared_series).as_posix(): s.reason for s in report.skipped}
    assert "media storage directory" in reasons["dev_ct_axial_plain/DIRFILE"]
    assert "media storage directory" in reasons["dev_ct_gantry_tilt/DIRFILE"]
    assert "not a DICOM file" in reasons["manifest.json"]
    # the four compressed variants share SOPInstanceUIDs: the first one wins, the rest are reported
    assert report.duplicates == sum(1 for r in reasons.values() if r.startswith("duplicate"))
    assert report.duplicates > 0
    # every stored file lives in the store under a hashed name and is byte-identical to its source
    rows = db._reader().execute("SELECT path, source FROM instances").fetchall()
    for path, source in rows:
        assert db.store.contains(path)
        assert Path(path).read_bytes() == Path(source).read_bytes()

    # Importing again reads no file: size and mtime decide.
    def must_not_parse(*args, **kwargs):
        raise AssertionError("an unchanged file was parsed again")

    monkeypatch.setattr("DICOMPlusLib.database.parsing.parse_fd", must_not_parse)
    again = db.import_paths([shared_series])
    assert again.added == 0
    # a file skipped for what it is (not DICOM, a DICOMDIR, a duplicate) is reported with the
    # same reason again, not counted as an unchanged instance
    assert {s.path: s.reason for s in again.skipped} == {s.path: s.reason for s in report.skipped}
    assert again.unchanged == again.files_seen - len(report.skipped) == db.info()["instances"]
    assert db.info() == pydicom_counts(shared_series)


def test_every_header_element_is_kept(tmp_path, open_db):
    series = make_series(tmp_path / "s", n=2, fat_header=True)
    db = open_db(tmp_path / "db")
    db.import_paths([series.folder])
    for path in series.files:
        original = pydicom.dcmread(path, stop_before_pixels=True)
        stored = db.header(original.SOPInstanceUID)
        assert "PixelData" not in stored
        assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        for element in original:
            assert stored[element.tag].value == element.value, element
        assert len(stored.ProcedureCodeSequence) == 20
        assert stored[0x0029, 0x1010].value == original[0x0029, 0x1010].value  # private element
        record = db.instance(original.SOPInstanceUID)
        with open(record.path, "rb") as f:
            f.seek(record.pixel_offset)
            assert f.read(record.pixel_length) == original_pixels(path)


def original_pixels(path):
    return pydicom.dcmread(path).PixelData


def test_bad_files_are_reported_and_lose_nothing(tmp_path, open_db):
    series = make_series(tmp_path / "good", n=3)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.txt").write_text("hello, not DICOM")
    (bad / "empty.dcm").write_bytes(b"")
    data = series.files[0].read_bytes()
    (bad / "truncated_pixels.dcm").write_bytes(data[: len(data) - 100])
    (bad / "truncated_header.dcm").write_bytes(data[:300])
    ds = pydicom.dcmread(series.files[1])
    del ds.SOPInstanceUID
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    ds.save_as(bad / "no_uid.dcm")
    db = open_db(tmp_path / "db")
    report = db.import_paths([series.folder, bad])
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert "not a DICOM file" in reasons["notes.txt"]
    assert reasons["empty.dcm"] == "empty file"
    assert "truncated" in reasons["truncated_pixels.dcm"]
    assert "truncated_header.dcm" in reasons
    assert "no SOPInstanceUID" in reasons["no_uid.dcm"]
    assert report.added == 3
    assert db.info()["instances"] == 3


def test_hostile_uids_and_names_stay_in_the_store(tmp_path, open_db):
    names = ["a file with spaces.dcm", "Ünïcödé-名前.dcm", "dots..in..name.dcm"]
    series = make_series(
        tmp_path / "in dir with spaces",
        n=3,
        file_names=names,
        sop_uids=["../../x", "/etc/passwd", "1.2.3/../../../y"],
    )
    db = open_db(tmp_path / "db")
    report = db.import_paths([series.folder])
    assert report.added == 3, report.skipped
    for (path,) in db._reader().execute("SELECT path FROM instances"):
        assert db.store.contains(path)
        assert os.path.basename(path).endswith(".dcm") and "/" not in os.path.relpath(path, db.store.root)[6:]
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
    assert db.instance("../../x").path.startswith(str(db.store.root))


def test_link_mode_indexes_in_place(tmp_path, open_db):
    series = make_series(tmp_path / "s", n=3)
    db = open_db(tmp_path / "db")
    db.import_paths([series.folder], link=True)
    paths = sorted(r[0] for r in db._reader().execute("SELECT path FROM instances"))
    assert paths == sorted(str(p) for p in series.files)
    assert not any(db.store.root.rglob("*.dcm"))


def test_changed_file_at_same_path_replaces_and_other_duplicates_are_kept(tmp_path, open_db):
    series = make_series(tmp_path / "s", n=2)
    db = open_db(tmp_path / "db")
    db.import_paths([series.folder])
    target = series.files[0]
    ds = pydicom.dcmread(target)
    ds.SeriesDescription = "changed"
    ds.save_as(target)
    os.utime(target, (1, 1))
    report = db.import_paths([series.folder])
    assert report.replaced == 1 and report.added == 0
    assert db.header(ds.SOPInstanceUID).SeriesDescription == "changed"
    # the same SOPInstanceUID from another path is a duplicate: the stored one is kept
    copy = tmp_path / "copy"
    copy.mkdir()
    ds.SeriesDescription = "impostor"
    ds.save_as(copy / "dup.dcm")
    report = db.import_paths([copy])
    assert report.duplicates == 1
    assert db.header(ds.SOPInstanceUID).SeriesDescription == "changed"


def test_same_instance_twice_in_one_batch_keeps_the_first(tmp_path, open_db):
    """Two files of one SOP Instance UID committed in the same transaction: the first in path
    order is stored, the second is a duplicate whose copy is removed, and both paths are
    remembered (an import again reads neither), as when they were committed one by one."""
    series = make_series(tmp_path / "s", n=3)
    ds = pydicom.dcmread(series.files[0])
    ds.SeriesDescription = "second copy"
    ds.save_as(series.folder / "zz-copy.dcm")
    db = open_db(tmp_path / "db")
    report = db.import_paths([series.folder], jobs=1)
    assert (report.added, report.duplicates) == (3, 1)
    assert db.header(ds.SOPInstanceUID).SeriesDescription != "second copy"
    assert len(list(db.store.root.rglob("*.dcm"))) == 3
    assert db.info()["instances"] == 3
    again = db.import_paths([series.folder], jobs=1)
    # the copy skipped as a duplicate is reported as one again (unread), not as unchanged
    assert (again.unchanged, again.added, again.duplicates) == (3, 0, 1)


def test_parallel_and_serial_import_agree(tmp_path, open_db):
    folders = [make_series(tmp_path / f"s{i}", n=120, rows=8, cols=8, seed=i).folder for i in range(4)]
    serial = open_db(tmp_path / "serial")
    serial.import_paths(folders, jobs=1)
    parallel = open_db(tmp_path / "parallel")
    report = parallel.import_paths(folders, jobs=2)
    assert report.added == 480
    assert serial.info() == parallel.info() == {"patients": 1, "studies": 4, "series": 4, "instances": 480}
    assert not list((parallel.store.root / ".incoming").iterdir())


def test_progress_and_cancel_keep_only_committed_records(tmp_path, open_db):
    folder = make_series(tmp_path / "s", n=600, rows=8, cols=8).folder
    db = open_db(tmp_path / "db")
    token = CancelToken()
    calls = []

    def progress(done, total, current):
        calls.append((done, total))
        if done >= 100:
            token.cancel()

    report = db.import_paths([folder], jobs=2, progress=progress, cancel=token)
    assert report.cancelled
    assert 0 < report.added < 600
    assert calls[0] == (0, 600)
    assert all(total == 600 for _, total in calls)
    info = db.info()
    assert info["instances"] == report.added
    for (path,) in db._reader().execute("SELECT path FROM instances"):
        assert os.path.isfile(path)
    assert not list((db.store.root / ".incoming").iterdir()), "temporary files left behind"
    stored = [p for p in db.store.root.rglob("*.dcm")]
    assert len(stored) == report.added
    # a second import completes the job
    again = db.import_paths([folder])
    assert db.info()["instances"] == 600 and not again.cancelled


def test_dicomdir_expands_to_referenced_files(tmp_path, open_db):
    from pydicom.fileset import FileSet

    series = make_series(tmp_path / "src", n=3)
    fs = FileSet()
    for path in series.files:
        fs.add(path)
    out = tmp_path / "media"
    fs.write(out)
    db = open_db(tmp_path / "db")
    report = db.import_paths([out / "DICOMDIR"])
    assert report.added == 3
    assert any("media storage directory" in s.reason for s in report.skipped)


def test_temporary_database_leaves_nothing(tmp_path):
    series = make_series(tmp_path / "s", n=2)
    with TemporaryDatabase() as db:
        folder = db.path.parent
        db.import_paths([series.folder])
        assert db.info()["instances"] == 2
        assert db._reader().execute("SELECT linked FROM instances").fetchone()[0] == 1
    assert not folder.exists()
    assert all(p.exists() for p in series.files)


def test_schema_versions(tmp_path):
    db = Database(tmp_path / "db")
    assert db.schema_version() >= 1
    db.close()
    conn = sqlite3.connect(tmp_path / "db" / "dicomplus.sqlite")
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(DatabaseError, match="newer than this DICOMPlus"):
        Database(tmp_path / "db")


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="cannot open database"):
        Database(path)


def test_scanner_agrees_with_pydicom_on_shared_data(shared_series):
    checked = collections.Counter()
    for path in sorted(
        p for p in shared_series.rglob("*") if p.is_file() and p.suffix not in (".md", ".json")
    ):
        if "licenses" in path.parts:
            continue
        try:
            parsed = parsing.parse_path(str(path), keep_data=False)
        except Exception as exc:  # DIRFILEs
            assert "media storage directory" in str(exc)
            continue
        ds = pydicom.dcmread(path)
        for keyword, value in parsed.values.items():
            expected = ds.get(keyword)
            if expected is None or expected == "":
                assert value in ("", None), (path, keyword, value)
            elif isinstance(value, int):
                assert value == int(expected), (path, keyword)
            else:
                assert value == str(expected).strip(), (path, keyword, value, expected)
        element = ds.get_item("PixelData")
        assert parsed.pixel_offset == element.value_tell
        if element.length != 0xFFFFFFFF:
            assert parsed.pixel_length == element.length
        checked[parsed.transfer_syntax] += 1
    assert len(checked) >= 6  # explicit/implicit LE and the four compressed syntaxes


def test_scanner_reads_implicit_and_big_endian(tmp_path):
    from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

    series = make_series(tmp_path / "s", n=1)
    for ts in (ImplicitVRLittleEndian, ExplicitVRBigEndian):
        ds = pydicom.dcmread(series.files[0])
        ds.PatientName = "Ångström^Åsa"
        out = tmp_path / f"{ts}.dcm"
        ds.file_meta.TransferSyntaxUID = ts
        pydicom.dcmwrite(
            out,
            ds,
            implicit_vr=ts == ImplicitVRLittleEndian,
            little_endian=ts != ExplicitVRBigEndian,
            force_encoding=True,
        )
        parsed = parsing.parse_path(str(out), keep_data=False)
        assert parsed.values["PatientName"] == "Ångström^Åsa"
        assert parsed.values["Rows"] == 32 and parsed.values["SeriesNumber"] == 1
        assert parsed.transfer_syntax == ts
        assert (
            Path(out).read_bytes()[parsed.pixel_offset : parsed.pixel_offset + 4] == ds.PixelData[:4]
            or ts == ExplicitVRBigEndian
        )


def test_copies_survive_source_removal(tmp_path, open_db):
    series = make_series(tmp_path / "s", n=2)
    db = open_db(tmp_path / "db")
    db.import_paths([series.folder])
    shutil.rmtree(series.folder)
    for record in db.instances(series.series_uid):
        assert pydicom.dcmread(record.path).SeriesInstanceUID == series.series_uid


def test_batches_commit_in_order_in_the_importing_thread(tmp_path, open_db, monkeypatch):
    """An import scanned in this thread (``jobs=1``) commits each batch itself, in order, and
    starts no thread (a committer thread beside the scans was measured not to pay)."""
    import threading

    from DICOMPlusLib.database import indexer

    monkeypatch.setattr(indexer, "CHUNK", 10)
    monkeypatch.setattr(indexer, "BATCH", 20)
    folder = make_series(tmp_path / "s", n=70, rows=8, cols=8).folder
    db = open_db(tmp_path / "db")
    before = set(threading.enumerate())
    seen = []

    def announced(result, context):
        seen.append((threading.current_thread(), set(threading.enumerate()) - before, result.source))

    db.ingest.subscribe(announced)
    report = db.import_paths([folder], jobs=1)
    assert (report.added, report.skipped) == (70, [])
    assert db.info()["instances"] == 70
    assert [s[0] for s in seen] == [threading.current_thread()] * 70
    assert [s[1] for s in seen] == [set()] * 70  # no other thread while the import ran
    sources = [s[2] for s in seen]
    assert sources == sorted(sources) and len(set(sources)) == 70  # in the files' order


def test_a_failing_commit_is_raised_and_leaves_no_temporary_file(tmp_path, open_db, monkeypatch):
    """A commit that fails is raised by the import (a full disk as a DiskFullError that says how
    far it came); what was committed before stays, nothing after it is, and no temporary copy is
    left in the store."""
    from DICOMPlusLib.database import indexer

    monkeypatch.setattr(indexer, "CHUNK", 10)
    monkeypatch.setattr(indexer, "BATCH", 20)
    folder = make_series(tmp_path / "s", n=70, rows=8, cols=8).folder
    db = open_db(tmp_path / "db")
    real = db.ingest.commit_batch
    calls = []

    def commit_batch(items, *args, **kwargs):
        calls.append(len(items))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(items, *args, **kwargs)

    monkeypatch.setattr(db.ingest, "commit_batch", commit_batch)
    with pytest.raises(
        DiskFullError, match=f"^stored 20 of 70 files; the disk holding {db.store.root} is full"
    ):
        db.import_paths([folder], jobs=1)
    assert db.info()["instances"] == 20
    assert not list((db.store.root / ".incoming").iterdir())
    assert len(list(db.store.root.rglob("*.dcm"))) == 20
    monkeypatch.setattr(db.ingest, "commit_batch", real)
    assert db.import_paths([folder]).added == 50  # the next import completes the job
