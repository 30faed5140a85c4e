"""What the modules that serve both back ends (``indexer``, ``ingest``, ``delete``, ``search``) need
of the back end they work for: its own surface beside the public
:class:`~.protocol.DatabaseProtocol` (a connection to read, a write transaction, the file store).

Written down here so that those modules refer to neither back end: both back ends build on
:class:`~.base.BaseDatabase`, which imports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from DICOMPlusLib.database.dialect import Dialect
    from DICOMPlusLib.database.parsing import ParsedFile
    from DICOMPlusLib.database.store import FileStore


class Connection(Protocol):
    """What the SQL shared by the back ends needs of a connection: ``sqlite3.Connection`` for
    SQLite, :class:`~.pg_connection.PgConnection` (sqlite3's surface over psycopg) for PostgreSQL. Rows
    come back readable by position and by column name."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """A back end as the shared modules of database/ see it."""

    path: Path
    store: FileStore
    default_link: bool
    exclusive_writer: bool  # a write transaction excludes every other writer (no locks needed)
    dialect: Dialect  # the SQL spellings that differ between back ends

    @property
    def ingest(self) -> Any: ...  # its Ingest (typed Any here: ingest.py refers to this module)

    def _reader(self) -> Connection: ...

    def write(self) -> AbstractContextManager[Connection]: ...

    def _lock_keys(self, conn: Connection, keys: Iterable[tuple[str, str]]) -> None: ...

    def remember_source(self, path: str, size: int, mtime: float, reason: str) -> None: ...

    def make_durable(self, stored_path: str) -> None: ...

    def commit_parsed(
        self, items: Sequence[ParsedFile], *, link: bool = ..., on_duplicate: Any = ..., records: bool = ...
    ) -> list[Any]: ...

    def _refresh_counts(
        self, conn: Connection, series: Iterable[str], studies: Iterable[str], *, modalities: bool = True
    ) -> None: ...
