"""A PostgreSQL connection with sqlite3's small surface (:class:`PgConnection`): ``execute``
with ``?`` placeholders, rows readable by position and by column name, every error a
:class:`~DICOMPlusLib.errors.DatabaseError` naming the database (without its password). The SQL
that both back ends share (:mod:`.base`, :mod:`.search`, :mod:`.delete`) runs through it
unchanged; :mod:`.postgres` builds the back end on it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
from collections.abc import Callable, Iterator, Sequence

from DICOMPlusLib.errors import DatabaseError, DatabaseFullError, DatabaseUnavailableError

CONNECT_TIMEOUT_S = 10


def redact(url: str) -> str:
    """The URL as it may be shown: no password, with what the ``PG*`` variables fill in."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(url)
    except Exception:  # a malformed URL: say only which scheme it had
        return url.split("://", 1)[0] + "://..."
    user = str(parts.get("user") or os.environ.get("PGUSER", ""))
    host = str(parts.get("host") or os.environ.get("PGHOST", "localhost"))
    port = str(parts.get("port") or os.environ.get("PGPORT", ""))
    dbname = str(parts.get("dbname") or os.environ.get("PGDATABASE", ""))
    return f"postgresql://{user + '@' if user else ''}{host}{':' + str(port) if port else ''}/{dbname}"


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """sqlite3's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Row(tuple):
    """A result row readable by position and, case-insensitively, by column name (PostgreSQL
    folds unquoted names to lower case; the shared SQL reads ``row["SOPInstanceUID"]``)."""

    __slots__ = ()
    _names: dict[str, int] = {}

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key.lower()])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@functools.lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name.lower(), i)
    return type("Row", (Row,), {"__slots__": (), "_names": index})


def _row_factory(cursor):
    description = cursor.description
    if description is None:
        return tuple
    return _row_class(tuple(d.name for d in description))


class PgConnection:
    """A psycopg connection with sqlite3's surface; every error is a DatabaseError naming the
    database (without password)."""

    def __init__(self, conn, where: str, reopen: Callable[[], object] | None = None) -> None:
        self.raw = conn
        self.where = where
        #: A new psycopg connection like this one's: a read outside a transaction whose session
        #: the server had ended (a restart, a failover, ``pg_terminate_backend`` while the
        #: connection was idle) is run again once on it (:meth:`execute`).
        self._reopen = reopen
        self._begin = False  # a transaction is asked for: BEGIN goes with the first statement
        self._deferred: list[tuple[str, tuple]] = []

    def execute(self, sql: str, params: Sequence | None = ()):
        alone = self._reopen is not None and self._alone(sql)
        try:
            return self._execute(sql, params)
        except DatabaseError as exc:
            if not (alone and self.raw.closed and session_lost(exc.__cause__)):
                raise
        self.raw = self._reopen()  # type: ignore[misc]  # alone: not None
        return self._execute(sql, params)

    def _alone(self, sql: str) -> bool:
        """Whether ``sql`` is a read in a transaction of its own (autocommit, none begun or
        open, no pipeline): lost with its session, it can run again on a new connection, since
        nothing of it can have been committed."""
        from psycopg.pq import TransactionStatus

        return (
            not self._begin
            and sql.lstrip()[:6].upper() == "SELECT"
            and " FOR " not in sql
            and not self.raw.pgconn.pipeline_status
            and self.raw.info.transaction_status == TransactionStatus.IDLE
        )

    def _execute(self, sql: str, params: Sequence | None):
        cur = self.raw.cursor(row_factory=_row_factory)
        try:
            if self._begin:
                self._begin = False
                if self.raw.pgconn.pipeline_status:  # in a pipeline already: it goes along
                    self.raw.execute("BEGIN")
                    cur.execute(translate(sql), tuple(params) if params is not None else ())
                else:
                    with self.raw.pipeline():
                        self.raw.execute("BEGIN")
                        cur.execute(translate(sql), tuple(params) if params is not None else ())
            else:
                cur.execute(translate(sql), tuple(params) if params is not None else ())
        except Exception as exc:
            raise self._failed(exc) from exc
        return cur

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[None]:
        """The statements executed inside go to the server together, in one round trip (their
        rows are read after the block); an error in one is raised at the end of the block, and
        the statements after it are not run (the transaction is then aborted)."""
        try:
            with self.raw.pipeline():
                yield
        except DatabaseError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc

    def begin(self) -> None:
        """Start a transaction with the next statement (no round trip of its own)."""
        self._begin = True
        self._deferred = []

    def defer(self, sql: str, params: Sequence = ()) -> None:
        """Run ``sql`` at the commit, in the same round trip: for statements whose answer the
        transaction does not need, and whose row locks are then held for the shortest time."""
        self._deferred.append((translate(sql), tuple(params)))

    def commit(self) -> None:
        deferred, self._deferred = self._deferred, []
        if self._begin:  # nothing was executed: no transaction to end
            self._begin = False
            return
        try:
            with self.raw.pipeline():
                for sql, params in deferred:
                    self.raw.execute(sql, params)
                self.raw.execute("COMMIT")
        except Exception as exc:
            raise self._failed(exc) from exc

    def executemany(self, sql: str, seq) -> None:
        try:
            with self.raw.cursor() as cur:
                cur.executemany(translate(sql), [tuple(p) for p in seq])
        except Exception as exc:
            raise self._failed(exc) from exc

    def rollback(self) -> None:
        self._deferred = []
        if self._begin:
            self._begin = False
            return
        with contextlib.suppress(Exception):
            self.raw.execute("ROLLBACK")

    def _failed(self, exc: BaseException) -> DatabaseError:
        """The error to raise for ``exc``. A connection whose session ``exc`` leaves in doubt
        (:func:`session_lost`) is closed first: psycopg may not know it is broken yet (libpq has
        not read the end of the stream: "cannot exit pipeline mode while busy" after the server
        ended the session in a pipeline), and its owner must neither use it again nor take its
        transaction for rolled back (the server may have committed before it went; closed, the
        server ends what it has not, and the locks go). :attr:`broken` is then true."""
        if session_lost(exc):
            self.close()
        return _database_error(self.where, exc)

    @property
    def broken(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)

    def ended_by_server(self) -> bool:
        """Whether the server has ended this connection's session while it sat idle (a restart,
        a failover, ``pg_terminate_backend``, ``idle_session_timeout``, a proxy closing idle
        connections); such a connection is closed (:attr:`broken` is then true).

        psycopg learns that a session ended only when it next sends a statement, which then
        fails: the first write after a restart was refused. The server sends nothing
        unprompted on an idle session except the FATAL message (57P01, 57P05) it ends it with,
        then the end of the stream (no LISTEN here; a ParameterStatus comes with a
        ReadyForQuery): its socket readable while no statement is in flight means the session
        ended. One ``poll`` with no timeout, nothing sent; what came is read
        (``PQconsumeInput``) so that the connection closes as lost. A connection inside a
        transaction or a pipeline is its owner's and is not checked: its next statement says."""
        if self.broken:
            return True
        from psycopg.pq import TransactionStatus

        pgconn = self.raw.pgconn
        if self._begin or pgconn.pipeline_status or pgconn.transaction_status != TransactionStatus.IDLE:
            return False
        if not _readable(pgconn.socket):
            return False
        with contextlib.suppress(Exception):  # the end of the stream: "server closed the connection"
            pgconn.consume_input()
        self.close()
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()


def _readable(fd: int) -> bool:
    """Whether the socket ``fd`` has something to read (or was closed), without waiting."""
    if hasattr(select, "poll"):  # not on Windows; select() there takes any socket number
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


#: PostgreSQL's SQLSTATE for a full disk (PostgreSQL Appendix A, class 53: insufficient resources).
DISK_FULL = "53100"
#: How the server's messages end when a write found no room but the SQLSTATE does not say so:
#: PostgreSQL maps only ENOSPC to 53100 (errcode_for_file_access: an exceeded quota or a file
#: too large is XX000, internal_error, with the system's message).
_NO_ROOM = ("No space left on device", "Disk quota exceeded", "File too large")


def is_disk_full(exc: BaseException) -> bool:
    """Whether a psycopg error says the server's disk (or its quota) is full."""
    if getattr(exc, "sqlstate", None) == DISK_FULL:
        return True
    primary = getattr(getattr(exc, "diag", None), "message_primary", None) or ""
    return getattr(exc, "sqlstate", None) is not None and primary.endswith(_NO_ROOM)


def session_lost(exc: BaseException | None) -> bool:
    """Whether a psycopg error leaves the connection's session in doubt: libpq's own failures
    (no SQLSTATE: a closed socket, a pipeline left busy by one), a connection exception (class
    08) or the server ending the session (57P0x: a terminated backend, a shutdown, a crash, an
    idle session timed out). A server error of a statement (a refused row, a full disk) leaves
    it usable."""
    import psycopg

    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(("08", "57P0"))


def _database_error(where: str, exc: BaseException) -> DatabaseError:
    import psycopg

    if isinstance(exc, DatabaseError):
        return exc
    if is_disk_full(exc):  # the transaction was rolled back; one line, as for a full local disk
        return DatabaseFullError(where)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return DatabaseError(
            f"{where}: permission denied ({str(exc).strip()}); the database role needs SELECT, INSERT, "
            "UPDATE and DELETE on the DICOMPlus tables (and CREATE on the schema for the first open)"
        )
    if isinstance(exc, psycopg.OperationalError):  # libpq's message has a line per hint: one line
        kind = DatabaseUnavailableError if session_lost(exc) else DatabaseError
        return kind(f"{where}: the PostgreSQL server failed or went away: {' '.join(str(exc).split())}")
    return DatabaseError(f"{where}: {str(exc).strip()}")


@functools.lru_cache(maxsize=1)
def numeric_loader():
    """numeric (what SUM of bigint gives) as int or float, as sqlite3 returns it, not Decimal."""
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        def load(self, data) -> int | float:
            text = bytes(data).decode("ascii")
            return int(text) if text.lstrip("-").isdigit() else float(text)

    return NumericLoader
