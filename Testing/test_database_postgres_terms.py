"""Any-tag search through the terms of each series (PostgreSQL's ``series_terms``, issue 20): the
same answers as SQLite's header scan when a value is in some instances of a series only, after a
delete of some of its instances and after a replacement; and the table itself kept exact (every
term of a series is in one of its instances now), by ingest, delete, replacement and the schema
version 4 migration alike."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pydicom
import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import pg_terms
from DICOMPlusLib.database.pg_locks import _lock_key
from DICOMPlusLib.database.postgres import PostgresDatabase


def _set(path, **values) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


@pytest.fixture
def mixed(tmp_path):
    """One series of 4 whose StationName differs in one instance, and where two instances have
    one of two other values each (so no instance has both); another series of 2."""
    a = make_series(tmp_path / "a", n=4, seed=1, shuffle=False)
    b = make_series(tmp_path / "b", n=2, seed=2, study_uid=a.study_uid, series_number=2)
    for path in [*a.files, *b.files]:
        _set(path, StationName="CT01")
    _set(a.files[0], StationName="LONE")
    _set(a.files[1], InstitutionName="ALPHA")
    _set(a.files[2], ProtocolName="BETA")
    return a, b


def _studies(db, key, level="study"):
    return sorted(r.StudyInstanceUID for r in db.search(level, key))


def _sops(db, key):
    return sorted(r.SOPInstanceUID for r in db.search("instance", key))


def test_keys_match_instance_by_instance_on_both_back_ends(open_db, tmp_path, mixed):
    a, b = mixed
    db = open_db(tmp_path / "db")
    db.import_paths([a.folder, b.folder])
    assert _sops(db, {"StationName": "LONE"}) == [a.sop_uids[0]]
    assert _sops(db, {"StationName": "CT01"}) == sorted([*a.sop_uids[1:], *b.sop_uids])
    assert _studies(db, {"StationName": "LONE"}) == [a.study_uid]
    found = db.search("series", {"StationName": "LONE"})
    assert [r.SeriesInstanceUID for r in found] == [a.series_uid] and found[0].extra == {
        "StationName": "LONE"
    }
    # Two keys hold in one instance, not in two instances of one series.
    assert db.search("series", {"InstitutionName": "ALPHA", "ProtocolName": "BETA"}) == []
    assert db.search("study", {"InstitutionName": "ALPHA", "ProtocolName": "BETA"}) == []
    assert _sops(db, {"InstitutionName": "ALPHA", "StationName": "CT01"}) == [a.sop_uids[1]]
    assert _studies(db, {"ProtocolName": "BETA", "StationName": "CT*"}) == [a.study_uid]


def test_several_exact_keys_hold_together_in_one_instance_on_both_back_ends(open_db, tmp_path, mixed):
    """PostgreSQL tests the exact keys as one containment (:func:`~.pg_search.conditions`):
    values of one element and of several, with a wildcard key, answer as SQLite's scan does."""
    a, b = mixed
    _set(a.files[1], ImageType=["DERIVED", "SECONDARY", "AXIAL"])
    _set(a.files[2], ImageType=["DERIVED", "SECONDARY", "LOCALIZER"])
    db = open_db(tmp_path / "db")
    db.import_paths([a.folder, b.folder])
    both = [("ImageType", "AXIAL"), ("ImageType", "DERIVED")]  # the others are ORIGINAL, AXIAL
    assert _sops(db, both) == [a.sop_uids[1]]
    assert _sops(db, [("ImageType", "AXIAL"), ("ImageType", "LOCALIZER")]) == []
    assert _sops(db, [*both, ("StationName", "CT01"), ("InstitutionName", "ALPHA")]) == [a.sop_uids[1]]
    assert _sops(db, [*both, ("ProtocolName", "BETA")]) == []
    assert _sops(db, [("ImageType", "DERIVED"), ("StationName", "CT*")]) == sorted(a.sop_uids[1:3])
    found = db.search("series", [("ImageType", "LOCALIZER"), ("StationName", "CT01"), ("ProtocolName", "B*")])
    assert [r.SeriesInstanceUID for r in found] == [a.series_uid]
    assert found[0].extra == {
        "ImageType": "DERIVED\\SECONDARY\\LOCALIZER",
        "StationName": "CT01",
        "ProtocolName": "BETA",
    }
    assert _studies(db, [("ImageType", "LOCALIZER"), ("InstitutionName", "ALPHA")]) == []


def test_a_delete_of_some_instances_leaves_no_term_of_theirs(open_db, tmp_path, mixed):
    a, b = mixed
    db = open_db(tmp_path / "db")
    db.import_paths([a.folder, b.folder])
    db.delete(instance=a.sop_uids[0])
    assert _studies(db, {"StationName": "LONE"}) == []
    assert db.search("series", {"StationName": "LONE"}) == []
    assert _studies(db, {"StationName": "CT01"}) == [a.study_uid]
    db.delete(series=b.series_uid)
    assert [r.SeriesInstanceUID for r in db.search("series", {"StationName": "CT01"})] == [a.series_uid]


def test_a_replacement_takes_its_old_terms_away(open_db, tmp_path, mixed):
    a, b = mixed
    db = open_db(tmp_path / "db")
    db.import_paths([a.folder, b.folder])
    _set(a.files[0], StationName="CT01")
    db.import_paths([a.files[0]], on_duplicate="replace", force=True)
    assert _studies(db, {"StationName": "LONE"}) == []
    assert len(_sops(db, {"StationName": "CT01"})) == 6


def _table(url: str) -> set[tuple[str, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {(t, s) for t, s in conn.execute("SELECT term, series FROM series_terms")}


def _recomputed(url: str) -> set[tuple[str, str]]:
    """What the server computes from the instances stored now."""
    with PostgresDatabase(url) as db, db.write() as conn:
        (series,) = conn.execute("SELECT array_agg(SeriesInstanceUID) FROM series").fetchone()
        pg_terms.recompute(conn, series or [])
    return _table(url)


def test_the_terms_are_those_of_the_stored_instances(postgres_url, tmp_path, mixed):
    a, b = mixed
    with PostgresDatabase(postgres_url, store_dir=tmp_path / "store") as db:
        db.import_paths([a.folder, b.folder])
        kept = _table(postgres_url)
        assert ("StationName=LONE", a.series_uid) in kept and ("StationName=LONE", b.series_uid) not in kept
        assert not any(t.startswith(("SOPInstanceUID=", "InstanceNumber=", "Modality=")) for t, _ in kept)
        assert kept == _recomputed(postgres_url)  # ingest (Python) and the server (SQL) agree
        db.delete(instance=a.sop_uids[0])
        assert ("StationName=LONE", a.series_uid) not in _table(postgres_url)
        assert _table(postgres_url) == _recomputed(postgres_url)
        db.import_paths([a.files[1]], on_duplicate="replace", force=True)  # unchanged: nothing moves
        assert _table(postgres_url) == _recomputed(postgres_url)
        _set(a.files[1], InstitutionName="GAMMA", StationName="NEW")
        db.import_paths([a.files[1]], on_duplicate="replace", force=True)
        kept = _table(postgres_url)
        assert ("InstitutionName=ALPHA", a.series_uid) not in kept and (
            "InstitutionName=GAMMA",
            a.series_uid,
        ) in kept
        assert ("StationName=CT01", a.series_uid) in kept  # the other instances still have it
        assert _table(postgres_url) == _recomputed(postgres_url)
        db.delete(series=b.series_uid)
        assert {s for _, s in _table(postgres_url)} == {a.series_uid}


def test_the_version_4_migration_fills_the_terms_from_the_instances(postgres_url, tmp_path, mixed):
    a, b = mixed
    with PostgresDatabase(postgres_url, store_dir=tmp_path / "store") as db:
        db.import_paths([a.folder, b.folder])
    kept = _table(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE series_terms")
        conn.execute("CREATE INDEX instances_terms ON instances USING gin (dicomplus_terms(elements))")
        conn.execute("UPDATE settings SET value='3' WHERE key='schema_version'")
    PostgresDatabase(postgres_url).close()
    assert _table(postgres_url) == kept
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('instances_terms')").fetchone()[0] is None


def _waiting_for_an_advisory_lock(url: str) -> bool:
    """Whether some session waits for an advisory lock, asked until one does (60 s at most)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(600):
            sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            if conn.execute(sql).fetchone()[0]:
                return True
            time.sleep(0.1)
    return False


def test_a_replacement_that_takes_terms_away_waits_for_the_writers_of_its_series(
    postgres_url, tmp_path, mixed
):
    """Taking a term away while another writer adds it could lose it: such a replacement takes
    its series' lock exclusively, which a writer into the series holds shared. An instance sent
    again unchanged takes it shared, as every writer does."""
    a, b = mixed
    again = {"on_duplicate": "replace", "force": True, "processes": False}
    with PostgresDatabase(postgres_url, store_dir=tmp_path / "store") as db:
        db.import_paths([a.folder, b.folder])
        with psycopg.connect(postgres_url) as writer, ThreadPoolExecutor(1) as pool:
            writer.execute("SELECT pg_advisory_xact_lock_shared(%s)", (_lock_key("series", a.series_uid),))
            assert pool.submit(db.import_paths, [a.files[1]], **again).result(timeout=60).replaced == 1
            _set(a.files[1], StationName="NEW")
            replacing = pool.submit(db.import_paths, [a.files[1]], **again)
            assert _waiting_for_an_advisory_lock(postgres_url) and not replacing.done()
            writer.rollback()
            assert replacing.result(timeout=60).replaced == 1
        assert ("StationName=NEW", a.series_uid) in _table(postgres_url)
