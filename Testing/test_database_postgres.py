"""What the PostgreSQL back end adds: its schema version and settings, clear errors (server
unreachable, schema too new, permission denied), any-tag search in the server, duplicates from
several processes at once; and delete on both back ends."""

from __future__ import annotations

import multiprocessing
import os

import psycopg
import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import open_database, search
from DICOMPlusLib.database.ingest import StoreStatus
from DICOMPlusLib.database.pg_schema import SCHEMA_VERSION
from DICOMPlusLib.database.postgres import PostgresDatabase
from DICOMPlusLib.errors import DatabaseError


def test_store_is_recorded_and_schema_versioned(postgres_url, tmp_path):
    with pytest.raises(DatabaseError, match="no file store yet: give one with --store"):
        PostgresDatabase(postgres_url)
    with open_database(postgres_url, store=tmp_path / "store") as db:
        assert isinstance(db, PostgresDatabase)
        assert db.schema_version() == SCHEMA_VERSION
    with open_database(postgres_url) as db:  # the store is in the settings table now
        assert db.store.root == tmp_path / "store"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE settings SET value='999' WHERE key='schema_version'")
    with pytest.raises(DatabaseError, match="schema version 999, newer than this DICOMPlus"):
        PostgresDatabase(postgres_url)


def test_unreachable_server_is_a_clear_error_without_the_password(tmp_path):
    from dicomplus_testing.util import free_port

    url = f"postgresql://someone:s3cret@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(DatabaseError, match="cannot connect to the PostgreSQL database") as err:
        PostgresDatabase(url, store_dir=tmp_path / "store")
    assert "s3cret" not in str(err.value)
    assert "postgresql://someone@127.0.0.1:" in str(err.value)


def test_missing_permissions_are_a_clear_error(postgres_server, postgres_url, tmp_path):
    with open_database(postgres_url, store=tmp_path / "store") as db:
        db.import_paths([make_series(tmp_path / "s", n=1).folder])
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS reader_only")
        conn.execute("CREATE ROLE reader_only LOGIN")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader_only")
    url = postgres_url.replace("//dicomplus@", "//reader_only@")
    with PostgresDatabase(url) as db:
        assert db.info()["instances"] == 1  # reading is allowed
        with pytest.raises(DatabaseError, match=r"permission denied .*INSERT"):
            db.import_paths([make_series(tmp_path / "t", n=1, seed=3).folder])


def test_any_tag_search_is_answered_by_the_server(postgres_url, tmp_path, monkeypatch):
    """No stored header is scanned in Python to match a key (SQLite's _header_matches)."""

    def must_not_scan(*args, **kwargs):
        raise AssertionError("headers scanned in Python")

    monkeypatch.setattr(search, "_header_matches", must_not_scan)
    with open_database(postgres_url, store=tmp_path / "store") as db:
        db.import_paths([make_series(tmp_path / "s", n=3, modality="MR").folder])
        hits = db.search("series", {"RepetitionTime": "500", "ImageType": "ORIGINAL"})
        assert len(hits) == 1 and hits[0].extra["RepetitionTime"] == "500"
        assert len(db.search("instance", {"RepetitionTime": "5*"})) == 3
        assert db.search("instance", {"RepetitionTime": "5?"}) == []
        assert len(db.search("instance", {"EchoTime": "*"})) == 3  # universal
        # An exact key finds its series through their terms (schema v4); no index over the
        # instances' elements is left to check them (schema v5 dropped it).
        conn = db._reader()
        assert conn.execute("SELECT to_regclass('instances_elements')").fetchone()[0] is None


def test_delete_on_both_back_ends(open_db, tmp_path):
    db = open_db(tmp_path / "db")
    a = make_series(tmp_path / "a", n=2, seed=1)
    b = make_series(tmp_path / "b", n=3, seed=2)
    db.import_paths([a.folder, b.folder])
    before = db.info()
    dry = db.delete(series=a.series_uid, dry_run=True)
    assert dry.instances == 2 and db.info() == before
    report = db.delete(series=a.series_uid)
    assert report.instances == 2 and report.series == [a.series_uid]
    assert len(report.files_removed) == 2 and not any(os.path.exists(p) for p in report.files_removed)
    assert db.info()["instances"] == before["instances"] - 2
    report = db.delete(patient=b.patient_id)
    assert db.info() == {"patients": 0, "studies": 0, "series": 0, "instances": 0}


def _add_all(url: str, files: list[str], policy: str, start) -> list:
    from DICOMPlusLib.database.parsing import parse_bytes

    start.wait()
    with PostgresDatabase(url) as db:
        out = []
        for path in files:
            with open(path, "rb") as f:
                out.extend(db.commit_parsed([parse_bytes(f.read())], on_duplicate=policy))
        return out


@pytest.mark.parametrize("policy", ["keep", "replace"])
def test_the_same_instances_from_four_processes_end_as_one_row_and_one_file(postgres_url, tmp_path, policy):
    series = make_series(tmp_path / "s", n=30, rows=4, cols=4)
    with open_database(postgres_url, store=tmp_path / "store"):
        pass  # the schema and the store, once
    files = [str(p) for p in series.files]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Barrier(4)
        with ctx.Pool(4) as pool:
            results = pool.starmap(
                _add_all, [(postgres_url, files[i:] + files[:i], policy, start) for i in (0, 7, 15, 22)]
            )
    statuses = [s.status for r in results for s in r]
    assert statuses.count(StoreStatus.STORED) == 30
    assert statuses.count(StoreStatus.KEPT_EXISTING if policy == "keep" else StoreStatus.REPLACED) == 90
    with open_database(postgres_url) as db:
        assert db.info() == {"patients": 1, "studies": 1, "series": 1, "instances": 30}
        assert db.search("series")[0].NumberOfSeriesRelatedInstances == 30
        rows = db._reader().execute("SELECT path FROM instances").fetchall()
        stored = sorted(str(p) for p in db.store.root.rglob("*.dcm"))
        assert sorted(r[0] for r in rows) == stored and len(stored) == 30
