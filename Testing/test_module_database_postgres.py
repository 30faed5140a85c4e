"""The module on a shared PostgreSQL index: the ``DICOMPlus/DatabaseURL`` setting (with
``DICOMPlus/StorePath``) chooses it, psycopg is ensured with pip_ensure before its first use, and
the engine's work (import) lands in the same database the panel reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomplus_testing.synthetic import make_series


@pytest.fixture
def settings(slicer_app):
    """The panel's settings: empty at the start of each test (dicomplus_testing.isolation)."""
    import qt

    return qt.QSettings()


@pytest.fixture
def asked(monkeypatch):
    import slicer.packaging

    calls = []
    real = slicer.packaging.pip_ensure
    monkeypatch.setattr(
        slicer.packaging,
        "pip_ensure",
        lambda reqs, **kw: calls.append([str(r) for r in reqs]) or real(reqs, **kw),
    )
    return calls


def test_the_url_setting_opens_postgresql_after_ensuring_psycopg(
    dicomplus_module, settings, asked, postgres_url, tmp_path
):
    from DICOMPlusLib.database.postgres import PostgresDatabase

    settings.setValue("DICOMPlus/DatabasePath", str(tmp_path / "ignored.sqlite"))
    settings.setValue("DICOMPlus/DatabaseURL", postgres_url)
    settings.setValue("DICOMPlus/StorePath", str(tmp_path / "store"))
    logic = dicomplus_module.DICOMPlusLogic()
    try:
        assert logic.databasePath() == postgres_url  # the URL wins over an SQLite path
        assert asked == []  # nothing installed before a database is used
        db = logic.database
        assert isinstance(db, PostgresDatabase) and db.store_root == tmp_path / "store"
        assert asked == [["psycopg[binary]>=3.1"]]
        series = make_series(tmp_path / "s", n=3, rows=4, cols=4)
        report = logic.importFolder([series.folder]).get(60)  # in the engine, by URL
        assert report.added == 3
        assert [s.SeriesInstanceUID for s in logic.search("series")] == [series.series_uid]
        assert not (tmp_path / "ignored.sqlite").exists()
    finally:
        logic.close()


def test_set_database_path_remembers_a_url_or_a_path(dicomplus_module, settings, postgres_url, tmp_path):
    logic = dicomplus_module.DICOMPlusLogic()
    try:
        logic.setDatabasePath(postgres_url, store=tmp_path / "store")
        assert settings.value("DICOMPlus/DatabaseURL") == postgres_url
        assert settings.value("DICOMPlus/StorePath") == str(tmp_path / "store")
        assert logic.databaseArgs() == {"db": postgres_url, "store": str(tmp_path / "store")}
        logic.setDatabasePath(tmp_path / "db.sqlite")
        assert not settings.contains("DICOMPlus/DatabaseURL")
        assert settings.value("DICOMPlus/DatabasePath") == str(tmp_path / "db.sqlite")
    finally:
        logic.close()
    fresh = dicomplus_module.DICOMPlusLogic()
    try:
        assert fresh.databasePath() == str(tmp_path / "db.sqlite")
    finally:
        fresh.close()


def test_an_sqlite_file_after_a_url_keeps_its_files_beside_it(
    dicomplus_module, settings, postgres_url, tmp_path
):
    """``DICOMPlus/StorePath`` is the shared PostgreSQL store: it stays in the settings when a
    path replaces the URL, and neither the panel nor the engine puts the SQLite file's files in it."""
    logic = dicomplus_module.DICOMPlusLogic()
    try:
        logic.setDatabasePath(postgres_url, store=tmp_path / "shared")
        logic.setDatabasePath(tmp_path / "local" / "dicomplus.sqlite")
        assert settings.value("DICOMPlus/StorePath") == str(tmp_path / "shared")
        assert logic.databaseArgs() == {"db": str(tmp_path / "local" / "dicomplus.sqlite")}
        assert logic.database.store_root == tmp_path / "local" / "store"
        series = make_series(tmp_path / "s", n=2, rows=4, cols=4)
        assert logic.importFolder([series.folder]).get(60).added == 2  # in the engine
        [one, two] = logic.search("instance")
        assert {Path(one.path).parent.parent, Path(two.path).parent.parent} == {tmp_path / "local" / "store"}
        assert not (tmp_path / "shared").exists()
    finally:
        logic.close()


def test_a_url_in_dicomplus_db_is_the_default_as_for_the_cli(
    dicomplus_module, settings, monkeypatch, postgres_url, tmp_path
):
    """Without a setting, ``$DICOMPLUS_DB`` chooses the database, a ``postgresql://`` URL too, as
    ``dicomplus`` takes it: made a path, it became an SQLite file named ``postgresql:/...``."""
    import slicer

    monkeypatch.setenv("DICOMPLUS_DB", postgres_url)
    settings.setValue("DICOMPlus/StorePath", str(tmp_path / "store"))
    slicer.app.setTestingEnabled(False)  # else the module's test database is the default
    logic = dicomplus_module.DICOMPlusLogic()
    try:
        assert logic.databasePath() == postgres_url
        series = make_series(tmp_path / "s", n=2, rows=4, cols=4)
        assert logic.importFolder([series.folder]).get(60).added == 2  # in the engine, by URL
        assert [s.SeriesInstanceUID for s in logic.search("series")] == [series.series_uid]
        assert logic.database.store_root == tmp_path / "store"
    finally:
        slicer.app.setTestingEnabled(True)
        logic.close()


def test_declining_psycopg_opens_nothing(dicomplus_module, settings, monkeypatch, postgres_url, tmp_path):
    import slicer.packaging

    def refuse(requirements, **kwargs):
        raise RuntimeError("psycopg[binary]>=3.1 is not installed")

    monkeypatch.setattr(slicer.packaging, "pip_ensure", refuse)
    settings.setValue("DICOMPlus/DatabaseURL", postgres_url)
    logic = dicomplus_module.DICOMPlusLogic()
    try:
        with pytest.raises(RuntimeError, match="psycopg"):
            logic.database  # noqa: B018
        assert logic._database is None
    finally:
        logic.close()
