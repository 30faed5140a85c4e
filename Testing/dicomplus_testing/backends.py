"""Both database back ends for one test: SQLite (a file) and PostgreSQL (a database on the
session's throwaway server, :mod:`dicomplus_testing.postgres`).

Fixtures:

* ``backend`` (function, parametrised): ``"sqlite"`` or ``"postgresql"``.
* ``open_db`` (function): ``open_db(folder)`` opens the database of ``backend`` that belongs to
  ``folder`` (the SQLite file in it, or one PostgreSQL database per folder with its store in
  ``folder/store``); opening the same folder again opens the same database. Every database it
  opened is closed at the end of the test.

:func:`database_for` does the same for module-scoped fixtures.
"""

from __future__ import annotations

import os

import pytest

from DICOMPlusLib.database import Database

BACKENDS = ["sqlite", "postgresql"]


class Databases:
    """Opens (and at the end closes) the databases of one back end, one per folder."""

    def __init__(self, request, backend: str) -> None:
        self.request = request
        self.backend = backend
        self.urls: dict[str, str] = {}
        self.opened: list[Database] = []

    def url_of(self, folder: str | os.PathLike) -> str:
        key = os.path.abspath(folder)
        if key not in self.urls:
            server = self.request.getfixturevalue("postgres_server")
            self.urls[key] = server.create_database()
        return self.urls[key]

    def __call__(self, folder: str | os.PathLike) -> Database:
        if self.backend == "sqlite":
            db = Database(folder)
        else:
            from DICOMPlusLib.database.postgres import PostgresDatabase

            db = PostgresDatabase(self.url_of(folder), store_dir=os.path.join(folder, "store"))
        self.opened.append(db)
        return db

    def close(self) -> None:
        for db in self.opened:
            db.close()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def open_db(request, backend):
    databases = Databases(request, backend)
    try:
        yield databases
    finally:
        databases.close()


def database_for(request, backend: str, folder) -> Database:
    """A database of ``backend`` for ``folder``, for fixtures of any scope (the caller closes it)."""
    return Databases(request, backend)(folder)
