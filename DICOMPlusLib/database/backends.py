"""Which database a name means: an SQLite file (the embedded default) or a PostgreSQL URL.

Every place that names a database (``--db``, ``$DICOMPLUS_DB``, the Slicer setting, the
library) goes through :func:`open_database`, so a ``postgresql://`` URL works wherever a path does.
"""

from __future__ import annotations

import os

from DICOMPlusLib.database.database import Database
from DICOMPlusLib.database.protocol import DatabaseProtocol


def is_url(target: object) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than an SQLite file."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def open_database(
    target: str | os.PathLike | None = None, *, store: str | os.PathLike | None = None
) -> DatabaseProtocol:
    """The database ``target`` names: :class:`~DICOMPlusLib.database.postgres.PostgresDatabase`
    for a ``postgresql://`` URL (``postgresql://`` alone: the ``PG*`` variables), else the SQLite
    :class:`~DICOMPlusLib.database.database.Database` at that path or ``sqlite:///`` URL (default:
    :func:`~DICOMPlusLib.database.database.default_database_path`). ``store`` is the file store
    folder (for PostgreSQL, needed the first time unless the database already records one)."""
    if target is None:
        env = os.environ.get("DICOMPLUS_DB")
        target = env if env and is_url(env) else None
    if target is None:
        return Database(None, store_dir=store)
    return Database.open(target, store_dir=store)  # a path, sqlite:///..., postgresql://...


def location(db: DatabaseProtocol) -> str:
    """The database as output may name it: the SQLite file, or the PostgreSQL URL without its
    password (a PostgreSQL database's ``path`` is a marker inside its store, not a place to look)."""
    return str(getattr(db, "display_url", None) or db.path)
