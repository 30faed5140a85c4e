"""The database on PostgreSQL: one index shared by many processes on many machines.

Selected by URL (``postgresql://user@host:port/dbname``, or ``postgresql://`` with the standard
``PG*`` variables; :func:`DICOMPlusLib.database.backends.open_database`). The files stay in a
:class:`~DICOMPlusLib.database.store.FileStore` folder that every writer reaches at the same path
(``--store PATH``, remembered in the ``settings`` table on first use).

It is the SQLite :class:`~DICOMPlusLib.database.database.Database` with another connection: the
reads, the delete and the import share their SQL through :class:`PgConnection`, which speaks
sqlite3's small surface (``execute`` with ``?`` placeholders, rows by name or position). What
differs is written here: the write path and the schema (:mod:`pg_schema`).

Concurrency model: readers use autocommit connections and never wait for writers (MVCC). A
writer's transaction first takes transaction-scoped advisory locks on every patient, study,
series and SOP Instance UID it is about to touch, in one sorted order, so that two writers
that share a key run one after the other and no two writers can deadlock on rows; a SOP
Instance UID arriving at two listeners at once therefore ends as one row and one file (the
second sees the first's committed row and applies the duplicate policy).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar, overload

from DICOMPlusLib.database import pg_schema
from DICOMPlusLib.database.database import Database, DuplicatePolicy
from DICOMPlusLib.database.dialect import POSTGRES
from DICOMPlusLib.database.ingest import Ingest, StoredInstance, StoreStatus
from DICOMPlusLib.database.matching import normalize_pn, parse_criteria
from DICOMPlusLib.database.parsing import ParsedFile
from DICOMPlusLib.database.pg_search import header_elements, search_in_server
from DICOMPlusLib.database.rows import placed_record
from DICOMPlusLib.database.search import Criteria
from DICOMPlusLib.database.store import FileStore
from DICOMPlusLib.errors import DatabaseError
from DICOMPlusLib.models import QueryLevel, Record

logger = logging.getLogger(__name__)

T = TypeVar("T")

URL_SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S = 10


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


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

    def __init__(self, conn, where: str) -> None:
        self.raw = conn
        self.where = where

    def execute(self, sql: str, params: Sequence | None = ()):
        cur = self.raw.cursor(row_factory=_row_factory)
        try:
            cur.execute(translate(sql), tuple(params) if params is not None else ())
        except Exception as exc:
            raise _database_error(self.where, exc) from exc
        return cur

    def executemany(self, sql: str, seq) -> None:
        try:
            with self.raw.cursor() as cur:
                cur.executemany(translate(sql), [tuple(p) for p in seq])
        except Exception as exc:
            raise _database_error(self.where, exc) from exc

    def rollback(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.execute("ROLLBACK")

    @property
    def broken(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()


def _database_error(where: str, exc: BaseException) -> DatabaseError:
    import psycopg

    if isinstance(exc, DatabaseError):
        return exc
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return DatabaseError(
            f"{where}: permission denied ({str(exc).strip()}); the database role needs SELECT, INSERT, "
            "UPDATE and DELETE on the DICOMPlus tables (and CREATE on the schema for the first open)"
        )
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseError(f"{where}: the PostgreSQL server failed or went away: {str(exc).strip()}")
    return DatabaseError(f"{where}: {str(exc).strip()}")


@functools.lru_cache(maxsize=1)
def _numeric_loader():
    """numeric (what SUM of bigint gives) as int or float, as sqlite3 returns it, not Decimal."""
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        def load(self, data) -> int | float:
            text = bytes(data).decode("ascii")
            return int(text) if text.lstrip("-").isdigit() else float(text)

    return NumericLoader


def _lock_key(kind: str, value: str) -> int:
    """A signed 64-bit advisory-lock key for one patient, study, series or instance."""
    digest = hashlib.blake2b(f"{kind}\0{value}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@overload
def _text(value: str) -> str: ...
@overload
def _text(value: T) -> T: ...


def _text(value: object) -> object:
    """A value PostgreSQL accepts in a text column: no NUL, no lone surrogate."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value


class PostgresDatabase(Database):
    """Open the DICOMPlus database at a ``postgresql://`` URL (creating its tables if it has none);
    files live in ``store_dir``, else in the store recorded in the database."""

    dialect = POSTGRES
    _writer: PgConnection

    def __init__(self, url: str, *, store_dir: str | os.PathLike | None = None):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise DatabaseError(
                "a PostgreSQL database needs psycopg 3: pip install 'psycopg[binary]' (dicomplus[postgresql])"
            ) from None
        self.url = url
        self.display_url = redact(url)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._connections = []
        self._connections_lock = threading.Lock()
        self._closed = False
        conn = self._connect()
        try:
            pg_schema.migrate(conn, self.display_url)
            stored = pg_schema.get_setting(conn, "store")
            if store_dir is not None:
                root = os.path.abspath(store_dir)
            elif stored is not None:
                root = stored
            else:
                raise DatabaseError(
                    f"{self.display_url} has no file store yet: give one with --store PATH "
                    "(a folder that every workstation and listener reaches at the same path)"
                )
            if stored is None:
                pg_schema.set_setting(conn, "store", root)
        except BaseException:
            self.close()
            raise
        self.store = FileStore(root)
        # Where per-machine caches (thumbnails) go: beside the files, as beside an SQLite file.
        self.path = Path(root) / ".dicomplus-postgresql"
        self._writer = conn
        #: The one way in for instances, as for SQLite (see :mod:`.ingest`).
        self.ingest = Ingest(self)
        self.store.sweep()

    def __repr__(self) -> str:
        return f"PostgresDatabase({self.display_url!r}, store={str(self.store.root)!r})"

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> PgConnection:
        import psycopg

        try:
            raw = psycopg.connect(
                self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="dicomplus"
            )
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot connect to the PostgreSQL database {self.display_url}: {str(exc).strip()} "
                "(is the server running and reachable? check the URL given with --db, or the PG* variables)"
            ) from exc
        raw.adapters.register_loader("numeric", _numeric_loader())
        conn = PgConnection(raw, self.display_url)
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    @staticmethod
    def _broken(conn) -> bool:
        """A read connection (autocommit: each statement sees the latest commit) whose server
        went away is replaced on the next read."""
        return bool(conn.broken)

    @contextlib.contextmanager
    def write(self) -> Iterator[PgConnection]:
        """One write transaction on this process's writer connection."""
        if self._closed:
            raise DatabaseError("the database is closed")
        with self._write_lock:
            if self._writer.broken:  # the server restarted: a new connection, not a dead process
                self._writer = self._connect()
            conn = self._writer
            conn.execute("BEGIN")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            else:
                conn.execute("COMMIT")

    def close(self) -> None:
        self._closed = True
        store = getattr(self, "store", None)
        if store is not None:
            store.release()
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    # -- search --------------------------------------------------------------------------------
    def _search(
        self, level: QueryLevel, criteria: Criteria, text: str | None, limit: int | None, offset: int
    ) -> list[Record]:
        """Search as :func:`DICOMPlusLib.database.search.search` does, the server matching header
        keys too (:func:`~.pg_search.search_in_server`: the JSONB elements, no header scan)."""
        try:
            parsed = parse_criteria(criteria)
        except ValueError as exc:
            raise DatabaseError(f"bad search value: {exc}") from exc
        return search_in_server(self, level, parsed, text, limit, offset)

    # -- facts ---------------------------------------------------------------------------------
    def schema_version(self) -> int:
        return pg_schema.found_version(self._reader())

    # -- writing -------------------------------------------------------------------------------
    def commit_parsed(
        self,
        items: Sequence[ParsedFile],
        *,
        link: bool = False,
        on_duplicate: DuplicatePolicy | str = DuplicatePolicy.KEEP,
    ) -> list[StoredInstance]:
        """Store and index a batch in one transaction (see :meth:`Database.commit_parsed`); one
        :class:`StoredInstance` per item, whose record has the file's real path.

        Files are moved into the store inside the transaction, while its locks are held; if the
        transaction fails, the files it placed are removed before its locks are released, so no
        other writer can have committed a row pointing at them."""
        statuses: list[StoredInstance] = []
        if not items:
            return statuses
        on_duplicate = DuplicatePolicy(on_duplicate)
        elements = [header_elements(item.header) for item in items]  # CPU work, before the locks
        now = time.time()
        touched_series: set[str] = set()
        touched_studies: set[str] = set()
        leftovers: list[str] = []
        placed: list[str] = []
        with self.write() as conn:
            try:
                self._lock(conn, items)
                for item, elems in zip(items, elements, strict=True):
                    touched = (touched_series, touched_studies, leftovers, placed)
                    statuses.append(self._commit_one(conn, item, elems, link, on_duplicate, now, *touched))
                self._refresh_counts(conn, touched_series, touched_studies)
            except BaseException:
                for path in placed:
                    self.store.remove(path)
                raise
        for path in leftovers:
            if path and self.store.contains(path):
                self.store.remove(path)
        return statuses

    @staticmethod
    def _lock(conn: PgConnection, items: Sequence[ParsedFile]) -> None:
        keys: list[tuple[str, str]] = []
        for item in items:
            v = item.values
            keys.append(("patient", f"{v['PatientID']}\\{v['PatientName']}"))
            keys.append(("study", str(v["StudyInstanceUID"])))
            keys.append(("series", str(v["SeriesInstanceUID"])))
            keys.append(("sop", str(v["SOPInstanceUID"])))
        lock_keys(conn, keys)

    def _commit_one(
        self, conn, item, elems, link, on_duplicate, now, touched_series, touched_studies, leftovers, placed
    ) -> StoredInstance:
        v = {k: _text(x) for k, x in item.values.items()}
        sop = str(v["SOPInstanceUID"])
        source = _text(item.source)
        existing = conn.execute(
            "SELECT path, linked, source, SeriesInstanceUID FROM instances WHERE SOPInstanceUID=?", (sop,)
        ).fetchone()
        replace = False
        if existing is not None:
            same_source = bool(source) and existing["source"] == source
            if on_duplicate is not DuplicatePolicy.REPLACE and not same_source:
                if item.stored_tmp:
                    leftovers.append(item.stored_tmp)
                self._pg_record_source(conn, item, sop, "duplicate SOPInstanceUID (already stored)")
                return StoredInstance(StoreStatus.KEPT_EXISTING, sop, path=existing["path"], source=source)
            replace = True
            touched_series.add(existing["SeriesInstanceUID"])
        # A replacement goes to a new name: the current file stays valid until the commit.
        path, linked = self._place_file(item, sop, link, unique=replace)
        if not linked and (existing is None or existing["path"] != path):
            placed.append(path)
        patient = self._upsert_patient(conn, v)
        study = str(v["StudyInstanceUID"])
        series = str(v["SeriesInstanceUID"])
        conn.execute(
            "INSERT INTO studies (StudyInstanceUID, patient, StudyDate, StudyTime, StudyDescription,"
            " AccessionNumber, StudyID, ReferringPhysicianName, ReferringPhysicianNameNorm, inserted)"
            " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (StudyInstanceUID) DO NOTHING",
            (
                study, patient, v["StudyDate"], v["StudyTime"], v["StudyDescription"], v["AccessionNumber"],
                v["StudyID"], v["ReferringPhysicianName"], normalize_pn(str(v["ReferringPhysicianName"])), now,
            ),
        )  # fmt: skip
        conn.execute(
            "INSERT INTO series (SeriesInstanceUID, StudyInstanceUID, Modality, SeriesNumber,"
            " SeriesDescription, SeriesDate, SeriesTime, BodyPartExamined, inserted)"
            " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (SeriesInstanceUID) DO NOTHING",
            (
                series, study, v["Modality"], v["SeriesNumber"], v["SeriesDescription"], v["SeriesDate"],
                v["SeriesTime"], v["BodyPartExamined"], now,
            ),
        )  # fmt: skip
        if replace and existing["path"] != path and not existing["linked"]:
            leftovers.append(existing["path"])
        from psycopg.types.json import Jsonb

        conn.execute(
            "INSERT INTO instances (SOPInstanceUID, SeriesInstanceUID, SOPClassUID, TransferSyntaxUID,"
            " InstanceNumber, NumberOfFrames, Rows, Columns, path, linked, size, mtime, pixel_offset,"
            " pixel_length, header, elements, source, inserted) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (SOPInstanceUID) DO UPDATE SET SeriesInstanceUID=EXCLUDED.SeriesInstanceUID,"
            " SOPClassUID=EXCLUDED.SOPClassUID, TransferSyntaxUID=EXCLUDED.TransferSyntaxUID,"
            " InstanceNumber=EXCLUDED.InstanceNumber, NumberOfFrames=EXCLUDED.NumberOfFrames, Rows=EXCLUDED.Rows,"
            " Columns=EXCLUDED.Columns, path=EXCLUDED.path, linked=EXCLUDED.linked, size=EXCLUDED.size,"
            " mtime=EXCLUDED.mtime, pixel_offset=EXCLUDED.pixel_offset, pixel_length=EXCLUDED.pixel_length,"
            " header=EXCLUDED.header, elements=EXCLUDED.elements, source=EXCLUDED.source,"
            " inserted=EXCLUDED.inserted",
            (
                sop, series, v["SOPClassUID"], _text(item.transfer_syntax), v["InstanceNumber"],
                v["NumberOfFrames"], v["Rows"], v["Columns"], _text(path), int(linked), item.size, item.mtime,
                item.pixel_offset, item.pixel_length, item.header, Jsonb(elems), source, now,
            ),
        )  # fmt: skip
        self._pg_record_source(conn, item, sop, "")
        touched_series.add(series)
        touched_studies.add(study)
        record = placed_record(v, item, _text(item.transfer_syntax), _text(path))
        status = StoreStatus.REPLACED if replace else StoreStatus.STORED
        return StoredInstance(status, sop, record, _text(path), source=source)

    @staticmethod
    def _upsert_patient(conn, v: dict) -> int:
        key = (str(v["PatientID"]), str(v["PatientName"]))
        row = conn.execute(
            "INSERT INTO patients (PatientID, PatientName, PatientNameNorm, PatientBirthDate, PatientSex)"
            " VALUES (?,?,?,?,?) ON CONFLICT (PatientID, PatientName) DO NOTHING RETURNING id",
            (*key, normalize_pn(key[1]), v["PatientBirthDate"], v["PatientSex"]),
        ).fetchone()
        if row is None:
            row = conn.execute("SELECT id FROM patients WHERE PatientID=? AND PatientName=?", key).fetchone()
        return int(row[0])

    @staticmethod
    def _refresh_counts(conn, series, studies) -> None:
        series, studies = list(series), set(studies)
        for uid in series:
            row = conn.execute(
                "UPDATE series SET NumberOfSeriesRelatedInstances="
                "(SELECT COUNT(*) FROM instances WHERE SeriesInstanceUID=?) WHERE SeriesInstanceUID=?"
                " RETURNING StudyInstanceUID",
                (uid, uid),
            ).fetchone()
            if row is not None:
                studies.add(row[0])
        for uid in studies:
            conn.execute(
                "UPDATE studies SET"
                " NumberOfStudyRelatedSeries=(SELECT COUNT(*) FROM series WHERE StudyInstanceUID=?),"
                " NumberOfStudyRelatedInstances=(SELECT COALESCE(SUM(NumberOfSeriesRelatedInstances),0)"
                "   FROM series WHERE StudyInstanceUID=?),"
                " ModalitiesInStudy=(SELECT COALESCE(string_agg(Modality, '\\' ORDER BY Modality),'') FROM"
                "   (SELECT DISTINCT Modality FROM series WHERE StudyInstanceUID=? AND Modality!='') AS m)"
                " WHERE StudyInstanceUID=?",
                (uid, uid, uid, uid),
            )

    @staticmethod
    def _pg_record_source(conn, item: ParsedFile, sop: str | None, reason: str) -> None:
        if item.source:
            _record_source(conn, item.source, item.size, item.mtime, sop, reason)

    _record_source = _pg_record_source  # what the shared code calls

    def remember_source(self, path: str, size: int, mtime: float, reason: str) -> None:
        with self.write() as conn:
            _record_source(conn, path, size, mtime, None, reason)


def _record_source(conn, path: str, size: int, mtime: float, sop: str | None, reason: str) -> None:
    conn.execute(
        "INSERT INTO sources (path, size, mtime, SOPInstanceUID, reason) VALUES (?,?,?,?,?)"
        " ON CONFLICT (path) DO UPDATE SET size=EXCLUDED.size, mtime=EXCLUDED.mtime,"
        " SOPInstanceUID=EXCLUDED.SOPInstanceUID, reason=EXCLUDED.reason",
        (_text(os.path.abspath(path)), size, mtime, _text(sop), _text(reason)),
    )


def lock_keys(conn: PgConnection, keys: Sequence[tuple[str, str]]) -> None:
    """Take the transaction's advisory locks on ``(kind, uid)`` keys (``"patient"``, ``"study"``,
    ``"series"``, ``"sop"``), in one sorted order: every writer (ingest, migration) that touches a
    key waits for the others, and none can deadlock on rows."""
    locks = sorted({_lock_key(kind, value) for kind, value in keys})
    conn.execute(
        "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT k FROM unnest(CAST(? AS bigint[])) AS k ORDER BY k) AS s",
        (locks,),
    )


def recorded_store(url: str) -> str | None:
    """The file store the database at ``url`` records (None: none yet, or no DICOMPlus tables),
    read without creating anything."""
    import psycopg

    where = redact(url)
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to the PostgreSQL database {where}: {str(exc).strip()}") from exc
    conn = PgConnection(raw, where)
    try:
        if pg_schema.found_version(conn) == 0:
            return None
        return pg_schema.get_setting(conn, "store")
    finally:
        conn.close()
