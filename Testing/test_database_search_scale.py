"""Search at scale (issue 19): the study indexes and their migration on both back ends, study-level
ModalitiesInStudy read from the study's own column, and the bench databases' builders
(DICOMPlusLib/database/synthetic_scale.py) on SQLite and PostgreSQL, small."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from DICOMPlusLib.database import Database, pg_schema, schema, synthetic_scale
from DICOMPlusLib.database.postgres import PostgresDatabase
from DICOMPlusLib.database.synthetic_scale import (
    Spec,
    build_postgres,
    build_sqlite,
    series_uid,
    templates_from,
)

SMALL_A = Spec("A", studies=300, series_per_study=2, per_series=3)
NEW_INDEXES = {"studies_date_modalities", "studies_patient_date"}
OLD_INDEXES = {"studies_date", "studies_patient"}


def _sqlite_indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    finally:
        conn.close()


def test_a_version_3_sqlite_database_gets_the_study_indexes(tmp_path):
    Database(tmp_path / "db").close()
    conn = sqlite3.connect(tmp_path / "db" / "dicomplus.sqlite")
    for name in NEW_INDEXES:
        conn.execute(f"DROP INDEX {name}")
    conn.execute("CREATE INDEX studies_patient ON studies (patient)")
    conn.execute("CREATE INDEX studies_date ON studies (StudyDate)")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    assert not NEW_INDEXES & _sqlite_indexes(tmp_path / "db" / "dicomplus.sqlite")
    with Database(tmp_path / "db") as db:
        assert db.schema_version() == schema.SCHEMA_VERSION >= 4
    indexes = _sqlite_indexes(tmp_path / "db" / "dicomplus.sqlite")
    assert NEW_INDEXES <= indexes and not OLD_INDEXES & indexes


def test_a_version_1_postgresql_database_gets_the_study_indexes(postgres_url, tmp_path):
    PostgresDatabase(postgres_url, store_dir=tmp_path / "store").close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for name in NEW_INDEXES:
            conn.execute(f"DROP INDEX {name}")
        conn.execute("DROP TABLE series_terms")
        conn.execute("DROP FUNCTION dicomplus_terms")
        conn.execute("CREATE INDEX studies_patient ON studies (patient)")
        conn.execute("CREATE INDEX studies_date ON studies (StudyDate)")
        conn.execute("UPDATE settings SET value='1' WHERE key='schema_version'")
    with PostgresDatabase(postgres_url) as db:
        assert db.schema_version() == pg_schema.SCHEMA_VERSION >= 2
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename='studies'")}
        terms = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename='series_terms'").fetchall()
        gone = conn.execute("SELECT to_regclass('instances_terms')").fetchone()[0]
    assert NEW_INDEXES <= indexes and not OLD_INDEXES & indexes
    assert {r[0] for r in terms} == {"series_terms_pkey", "series_terms_series"} and gone is None


def _studies_with_modality(db, modality: str) -> set[str]:
    return {r.StudyInstanceUID for r in db.search("series", {"Modality": modality})}


@pytest.fixture
def small_dbs(tmp_path, postgres_url):
    build_sqlite(tmp_path / "a", SMALL_A)
    build_postgres(postgres_url, SMALL_A, store=tmp_path / "store")
    with Database(tmp_path / "a") as sqlite_db, PostgresDatabase(postgres_url) as pg_db:
        yield sqlite_db, pg_db


def test_the_builders_write_the_same_rows_on_both_back_ends(small_dbs):
    for db in small_dbs:
        assert db.info()["instances"] == SMALL_A.instances
        assert len(db.search("study", {})) == SMALL_A.studies
        found = db.search("instance", {"SeriesInstanceUID": series_uid(7, 1)})
        assert [r.InstanceNumber for r in found] == list(range(1, SMALL_A.per_series + 1))
    sqlite_db, pg_db = small_dbs
    query = {"PatientName": "s*", "StudyDate": "2010-", "ModalitiesInStudy": "CT"}
    assert sqlite_db.search("study", query, limit=20) == pg_db.search("study", query, limit=20)
    assert 0 < len(sqlite_db.search("study", query)) < SMALL_A.studies


def test_study_level_modalities_in_study_reads_the_studys_column(small_dbs):
    for db in small_dbs:
        for modality in ("CT", "MR"):
            found = {r.StudyInstanceUID for r in db.search("study", {"ModalitiesInStudy": modality})}
            assert found == _studies_with_modality(db, modality) != set()
        both = {r.StudyInstanceUID for r in db.search("study", {"ModalitiesInStudy": "CT\\MR"})}
        assert both == _studies_with_modality(db, "CT") | _studies_with_modality(db, "MR")
        wildcard = {r.StudyInstanceUID for r in db.search("study", {"ModalitiesInStudy": "C*"})}
        assert wildcard == _studies_with_modality(db, "CT") | _studies_with_modality(db, "CR")
        assert db.search("study", {"ModalitiesInStudy": "C"}) == []  # not a substring test


def test_a_build_is_reused_until_the_builder_changes(tmp_path, monkeypatch):
    first = build_sqlite(tmp_path / "a", SMALL_A)
    mtime = (tmp_path / "a" / "dicomplus.sqlite").stat().st_mtime_ns
    assert build_sqlite(tmp_path / "a", SMALL_A) == first
    assert (tmp_path / "a" / "dicomplus.sqlite").stat().st_mtime_ns == mtime
    monkeypatch.setattr(synthetic_scale, "BUILDER_VERSION", synthetic_scale.BUILDER_VERSION + 1)
    again = build_sqlite(tmp_path / "a", SMALL_A)
    assert again["spec"] != first["spec"]


def test_real_headers_are_rewritten_per_instance_and_searchable_by_any_tag(
    tmp_path, postgres_url, shared_series
):
    folders = sorted(p for p in shared_series.parent.glob("series*/dev_*") if p.is_dir())
    templates = templates_from(folders)
    assert len({t.modality for t in templates}) >= 3
    spec = Spec("B", studies=12, series_per_study=2, per_series=2)
    build_sqlite(tmp_path / "b", spec, templates)
    build_postgres(postgres_url, spec, templates, store=tmp_path / "store")
    with Database(tmp_path / "b") as sqlite_db, PostgresDatabase(postgres_url) as pg_db:
        for db in (sqlite_db, pg_db):
            ds = db.header(synthetic_scale.sop_uid(3, 1, 1))
            assert ds.SOPInstanceUID == synthetic_scale.sop_uid(3, 1, 1)
            assert ds.SeriesInstanceUID == series_uid(3, 1)
            study = db.search("study", {"StudyInstanceUID": synthetic_scale.study_uid(3)})[0]
            assert str(ds.PatientName) == study.PatientName and ds.StudyDate == study.StudyDate
        manufacturer = str(sqlite_db.header(synthetic_scale.sop_uid(0, 0, 0)).Manufacturer)
        key = {"Manufacturer": manufacturer}
        found = sqlite_db.search("study", key)
        assert found and found == pg_db.search("study", key)
