"""What storing one received instance costs (issue 19): file-system calls and SQL statements per
file, counted, not timed. A retrieve of 300 files pays these 300 times; each test names the waste
it guards against (a ``mkdir`` of the store's root failing with EEXIST, a second open of the file
to parse it, an ``unlink`` of a name already gone, a lookup the UPDATE can return)."""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database
from DICOMPlusLib.database.dialect import SQLITE
from DICOMPlusLib.database.ingest import POLICY, IngestSource, StoreStatus
from DICOMPlusLib.database.store import TMP_PREFIX

REPLACE = POLICY[IngestSource.C_GET]


@pytest.fixture
def received(tmp_path: Path) -> list[bytes]:
    make_series(tmp_path / "src", n=7, rows=16, cols=16)
    return [p.read_bytes() for p in sorted((tmp_path / "src").rglob("*")) if p.is_file()]


def _receive(db: Database, data: bytes, policy=REPLACE):
    incoming = db.ingest.incoming()
    incoming.write(data)
    return db.ingest.commit(incoming, policy)


def _counting(monkeypatch: pytest.MonkeyPatch, calls: Counter) -> None:
    """Count the store's file-system calls. Folders are counted at ``Path.mkdir``, the store's one
    way of making them: Python 3.10's pathlib calls an ``os.mkdir`` bound when it was imported, so
    a count of ``os.mkdir`` saw none there."""
    targets = [(os, name) for name in ("open", "unlink", "link", "replace", "rename")] + [(Path, "mkdir")]
    for owner, name in targets:
        real = getattr(owner, name)

        def wrapper(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)


def test_a_received_file_costs_one_open_one_link_one_unlink_no_failing_mkdir(tmp_path, received, monkeypatch):
    with Database(tmp_path / "db.sqlite", store_dir=tmp_path / "store") as db:
        first = _receive(db, received[0])  # claims the writer's token, makes the root
        assert first.status is StoreStatus.STORED
        calls: Counter = Counter()
        _counting(monkeypatch, calls)
        results = [_receive(db, data) for data in received[1:]]
        monkeypatch.undo()
        assert [r.status for r in results] == [StoreStatus.STORED] * len(results)
        fan_out = {Path(r.path).parent for r in results} - {Path(first.path).parent}
        assert calls["open"] == len(results)  # the temporary file; parsed through the same descriptor
        # linked into place; its temporary (in-flight) name removed once its row committed, so
        # that a writer killed before the commit leaves no file without its row (FileStore.place)
        assert calls["link"] == len(results) + len(fan_out)  # a new fan-out folder: once more
        assert calls["unlink"] == len(results)
        assert calls["replace"] == calls["rename"] == 0
        assert calls["mkdir"] == len(fan_out)  # new fan-out folders only, never the root again
        assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(TMP_PREFIX)]


def test_a_study_received_again_after_its_delete_makes_no_folder(tmp_path, received):
    """A delete leaves the fan-out folders (at most 256): the same study retrieved again (the
    retrieve benchmark's rounds, a user's "delete, fetch again") makes none of them anew, each
    in series with a C-STORE response; a file is renamed into a folder that exists without a
    ``mkdir`` asking first."""
    with Database(tmp_path / "db.sqlite", store_dir=tmp_path / "store") as db:
        first = [_receive(db, data) for data in received]
        study = first[0].record.StudyInstanceUID
        assert db.delete(study=study).instances == len(received)
        calls: Counter = Counter()
        _counting(monkeypatch := pytest.MonkeyPatch(), calls)
        try:
            again = [_receive(db, data) for data in received]
        finally:
            monkeypatch.undo()
        assert [r.status for r in again] == [StoreStatus.STORED] * len(received)
        assert calls["mkdir"] == 0
        assert calls["open"] == len(received)


def test_a_received_file_costs_nine_statements_with_begin_and_commit(tmp_path, received):
    """BEGIN, the stored-instance lookup, the patient, INSERT OR IGNORE study and series, the
    instance, the series' recount returning its study, the study's recount, COMMIT: 9 in all
    (10 before, when the series' study was a SELECT of its own)."""
    with Database(tmp_path / "db.sqlite", store_dir=tmp_path / "store") as db:
        _receive(db, received[0])
        statements: list[str] = []
        db._writer.set_trace_callback(statements.append)
        try:
            for data in received[1:]:
                assert _receive(db, data).status is StoreStatus.STORED
            assert _receive(db, received[1]).status is StoreStatus.REPLACED  # sent again
        finally:
            db._writer.set_trace_callback(None)
        per_file = len(statements) / len(received)
        assert per_file == (9 if SQLITE.returning else 10), statements[:12]
        with db.write() as conn:
            series_count = [
                tuple(r) for r in conn.execute("SELECT NumberOfSeriesRelatedInstances FROM series")
            ]
            study_count = [
                tuple(r)
                for r in conn.execute(
                    "SELECT NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances, ModalitiesInStudy FROM studies"
                )
            ]
        assert series_count == [(len(received),)]
        assert study_count == [(1, len(received), "CT")]
        assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(TMP_PREFIX)]


def test_a_replacement_into_another_series_recounts_the_series_it_left(tmp_path, received):
    """The study of the series a replaced instance leaves comes from the recount's RETURNING."""
    import pydicom
    from pydicom.uid import generate_uid

    with Database(tmp_path / "db.sqlite", store_dir=tmp_path / "store") as db:
        for data in received:
            _receive(db, data)
        moved = tmp_path / "moved.dcm"
        ds = pydicom.dcmread(next(p for p in sorted((tmp_path / "src").rglob("*")) if p.is_file()))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.save_as(moved)
        assert _receive(db, moved.read_bytes()).status is StoreStatus.REPLACED
        with db.write() as conn:
            studies = [
                tuple(r)
                for r in conn.execute(
                    "SELECT NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances FROM studies ORDER BY 2"
                )
            ]
        assert studies == [(1, 1), (1, len(received) - 1)]


def test_a_received_file_closed_by_its_writer_is_parsed_by_name(tmp_path, received):
    """A DICOMweb part closes its temporary file before the commit: parsed through its path."""
    with Database(tmp_path / "db.sqlite", store_dir=tmp_path / "store") as db:
        incoming = db.ingest.incoming()
        incoming.write(received[0])
        incoming.close()
        assert db.ingest.commit(incoming, REPLACE).status is StoreStatus.STORED


def test_unreadable_received_data_leaves_no_temporary_file(tmp_path):
    with Database(tmp_path / "db.sqlite", store_dir=tmp_path / "store") as db:
        result = _receive(db, b"not DICOM at all" * 20)
        assert result.status is StoreStatus.UNREADABLE
        assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(TMP_PREFIX)]


def test_a_store_root_removed_under_a_living_writer_is_made_again(tmp_path, received):
    """The root is made once per writer, not per file: if it goes, the writer claims anew."""
    import shutil

    with Database(tmp_path / "db.sqlite", store_dir=tmp_path / "store") as db:
        assert _receive(db, received[0]).ok
        shutil.rmtree(tmp_path / "store")
        assert _receive(db, received[1]).status is StoreStatus.STORED
        assert len(list((tmp_path / "store").glob(".writer-*.lock"))) == 1


def test_modalities_are_recomputed_only_when_a_series_is_new(tmp_path, received):
    """Setting ModalitiesInStudy rewrites the two studies indexes that hold it (2 of a received
    file's 8 WAL pages): a file into a series already stored leaves it; a new series sets it."""
    import pydicom

    study = str(
        pydicom.dcmread(
            next(p for p in sorted((tmp_path / "src").rglob("*")) if p.is_file())
        ).StudyInstanceUID
    )
    make_series(tmp_path / "mr", n=2, rows=16, cols=16, modality="MR", study_uid=study, seed=9)
    mr = [p.read_bytes() for p in sorted((tmp_path / "mr").rglob("*")) if p.is_file()]
    with Database(tmp_path / "db.sqlite", store_dir=tmp_path / "store") as db:
        _receive(db, received[0])
        statements: list[str] = []
        db._writer.set_trace_callback(statements.append)
        try:
            _receive(db, received[1])
            steady = [s for s in statements if "ModalitiesInStudy" in s]
            statements.clear()
            _receive(db, mr[0])
            new_series = [s for s in statements if "ModalitiesInStudy" in s]
        finally:
            db._writer.set_trace_callback(None)
        assert steady == []
        assert len(new_series) == 1
        _receive(db, mr[1])
        with db.write() as conn:
            row = conn.execute(
                "SELECT ModalitiesInStudy, NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances FROM studies"
            ).fetchall()
        assert [tuple(r) for r in row] == [("CT\\MR", 2, 4)]


def test_the_file_meta_goes_to_disk_with_the_first_fragment(tmp_path, received, monkeypatch):
    """A C-STORE's file meta and its first data set fragment take one ``writev``, not a
    ``write`` each: one system call (and GIL hand-off) fewer per received instance. The file is
    byte for byte the file meta and the fragments; a data set that never sent a fragment still
    gets its file meta (and is then refused as unreadable, with nothing left behind)."""
    import pydicom

    from DICOMPlusLib.network.dimse.receive import DatabaseSink, ReceiveMeta, file_meta_bytes

    ds = pydicom.dcmread(io.BytesIO(received[0]))
    dataset = received[0][
        132 + 12 + ds.file_meta.FileMetaInformationGroupLength :
    ]  # past the file's own meta
    meta = ReceiveMeta(ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID, calling_ae="PEER")
    with Database(tmp_path / "db.sqlite", store_dir=tmp_path / "store") as db:
        sink = DatabaseSink(db)
        calls: Counter = Counter()
        for name in ("write", "writev"):
            real = getattr(os, name)

            def wrapper(*args, _real=real, _name=name, **kwargs):
                calls[_name] += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(os, name, wrapper)
        incoming = sink.begin(meta)
        half = len(dataset) // 2
        incoming.write_safely(memoryview(dataset)[:half])
        incoming.write_safely(memoryview(dataset)[half:])
        written = Path(incoming.file.path).read_bytes()
        outcome = incoming.finish()
        empty = sink.begin(meta)
        refused = empty.finish()
        monkeypatch.undo()
        assert (calls["writev"], calls["write"]) == (2, 1)  # the first fragment with the meta; the meta alone
        assert written == file_meta_bytes(meta) + dataset
        assert outcome.status == 0 and Path(outcome.instance.path).read_bytes() == written
        assert refused.status == 0xC000  # the file meta alone: cannot understand, not a crash
        assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(TMP_PREFIX)]


def test_a_received_header_is_scanned_from_the_bytes_written_not_read_back(tmp_path, received, monkeypatch):
    """The start of a received file (file meta and the first fragment, as written) is kept in
    memory and the commit scans the header from it: no ``pread`` of the file it just wrote, and
    no ``getcwd`` (a received file has no source path to make absolute). Each is a system call,
    and with several associations a hand-off of the GIL, in series with the C-STORE response.
    The row is the one a scan of the stored file gives; a first fragment shorter than the
    header scan's first read is read back as before (same row)."""
    import pydicom

    from DICOMPlusLib.database.parsing import parse_path
    from DICOMPlusLib.network.dimse.receive import DatabaseSink, ReceiveMeta

    def dataset_of(data: bytes) -> tuple[ReceiveMeta, bytes]:
        ds = pydicom.dcmread(io.BytesIO(data))
        meta = ReceiveMeta(
            ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID, calling_ae="PEER"
        )
        return meta, data[132 + 12 + ds.file_meta.FileMetaInformationGroupLength :]

    make_series(tmp_path / "large", n=1, rows=128, cols=128)
    (large,) = [p.read_bytes() for p in (tmp_path / "large").rglob("*") if p.is_file()]
    with Database(tmp_path / "db.sqlite", store_dir=tmp_path / "store") as db:
        sink = DatabaseSink(db)
        meta, dataset = dataset_of(received[0])
        sink.finish(_fragments(sink, meta, dataset, len(dataset)))  # the writer's token, the root
        calls: Counter = Counter()
        for name in ("pread", "getcwd"):
            real = getattr(os, name)

            def wrapper(*args, _real=real, _name=name, **kwargs):
                calls[_name] += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(os, name, wrapper)
        outcomes = []
        for data in received[1:4]:  # the whole data set in one fragment
            meta, dataset = dataset_of(data)
            outcomes.append(sink.finish(_fragments(sink, meta, dataset, len(dataset))))
        meta, dataset = dataset_of(large)  # 32 KiB of pixels: a first fragment of 20,000 bytes
        outcomes.append(sink.finish(_fragments(sink, meta, dataset, 20_000)))
        assert calls == Counter()
        meta, dataset = dataset_of(received[4])
        outcomes.append(sink.finish(_fragments(sink, meta, dataset, 100)))  # 100 bytes first: read back
        monkeypatch.undo()
        assert calls["pread"] >= 1 and calls["getcwd"] == 0
        assert [o.status for o in outcomes] == [0] * 5
        for outcome in outcomes:
            stored = db.instance(outcome.instance.sop_instance_uid)
            again = parse_path(outcome.instance.path, keep_data=False)
            assert stored is not None and stored.path == outcome.instance.path
            for key in (
                "SOPInstanceUID",
                "SeriesInstanceUID",
                "StudyInstanceUID",
                "PatientID",
                "Rows",
                "Columns",
            ):
                assert getattr(stored, key) == again.values[key]
            assert stored.TransferSyntaxUID == again.transfer_syntax


def _fragments(sink, meta, dataset: bytes, first: int):
    incoming = sink.begin(meta)
    view = memoryview(dataset)
    incoming.write_safely(view[:first])
    if first < len(dataset):
        incoming.write_safely(view[first:])
    return incoming
