"""The database on PostgreSQL: one index shared by many processes on many machines.

Selected by URL (``postgresql://user@host:port/dbname``, or ``postgresql://`` with the standard
``PG*`` variables; :func:`DICOMPlusLib.database.backends.open_database`). The files stay in a
:class:`~DICOMPlusLib.database.store.FileStore` folder that every writer reaches at the same path
(``--store PATH``, remembered in the ``settings`` table on first use).

It builds, as the SQLite :class:`~DICOMPlusLib.database.database.Database` does, on
:class:`~DICOMPlusLib.database.base.BaseDatabase`: the reads, the delete and the import run their
shared SQL through :class:`~.pg_connection.PgConnection`, which speaks sqlite3's small surface
(``execute`` with ``?`` placeholders, rows by name or position). What is PostgreSQL's own is
written here: the connections, the write path and its locks, and the schema (:mod:`pg_schema`).

Concurrency model: readers use autocommit connections and never wait for writers (MVCC). A
writer's transaction first takes transaction-scoped advisory locks (:func:`~.pg_locks.lock_keys`) on the
keys it touches, all at once and in one sorted order, so no two writers deadlock on them:

- ingest takes each SOP Instance UID exclusively (a SOP Instance UID arriving at two listeners at
  once ends as one row and one file: the second sees the first's committed row and applies the
  duplicate policy) and the patient, study and series shared, those it stores into and those a
  replaced instance leaves: listeners storing into one study do not wait for each other; rows
  are upserted (``ON CONFLICT``) in one order and counts change by deltas, so they stay exact;
- a delete takes the patients, studies and series in its scope exclusively
  (:mod:`.delete`): it waits for the writers into them, and they for it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar, overload

from DICOMPlusLib._log import get_logger, quiet_by_default
from DICOMPlusLib.database import pg_schema
from DICOMPlusLib.database.base import BaseDatabase
from DICOMPlusLib.database.dialect import POSTGRES, Dialect
from DICOMPlusLib.database.ingest import DuplicatePolicy, Ingest, StoredInstance, StoreStatus
from DICOMPlusLib.database.matching import normalize_pn, parse_criteria
from DICOMPlusLib.database.parsing import ParsedFile
from DICOMPlusLib.database.pg_connection import (
    CONNECT_TIMEOUT_S,
    PgConnection,
    numeric_loader,
    redact,
)
from DICOMPlusLib.database.pg_locks import (
    SHARED_KINDS,
    Counts,
    existing_rows,
    hierarchy,
    ingest_keys,
    lock_keys,
    replaced_keys,
    select_existing,
)
from DICOMPlusLib.database.pg_search import header_elements, search_in_server
from DICOMPlusLib.database.pg_terms import add_terms, instance_terms, recompute, remove_gone
from DICOMPlusLib.database.rows import placed_record
from DICOMPlusLib.database.search import Criteria
from DICOMPlusLib.database.store import FileStore
from DICOMPlusLib.errors import DatabaseError, DatabaseUnavailableError
from DICOMPlusLib.models import QueryLevel, Record

logger = get_logger(__name__)

T = TypeVar("T")

URL_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


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


def _unreachable(exc: BaseException) -> type[DatabaseError]:
    """The kind of error for a connection the server did not take: unavailable (it may take the
    next one: down, restarting, not taking connections for now) unless the URL or the role is
    wrong (SQLSTATE classes 28, invalid authorization, and 3D, no such database)."""
    import psycopg

    state = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, psycopg.OperationalError) and not state.startswith(("28", "3D")):
        return DatabaseUnavailableError
    return DatabaseError


class PostgresDatabase(BaseDatabase):
    """Open the DICOMPlus database at a ``postgresql://`` URL (creating its tables if it has none);
    files live in ``store_dir``, else in the store recorded in the database."""

    dialect: Dialect = POSTGRES
    _ROW_LOCK = " FOR SHARE"  # see BaseDatabase._settle_retired

    def __init__(self, url: str, *, store_dir: str | os.PathLike | None = None):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise DatabaseError(
                "a PostgreSQL database needs psycopg 3: pip install 'psycopg[binary]' (dicomplus[postgresql])"
            ) from None
        quiet_by_default("psycopg")
        self.url = url
        self.display_url = redact(url)
        self._init_connections()
        self._idle_writers: list[PgConnection] = []
        #: Files of transactions whose connection broke while the server was away (retired
        #: files as (temporary name, the name it had); placed files' in-flight names): settled
        #: by the next commit that succeeds (:meth:`_settle_unsettled`), not left until exit.
        self._unsettled: tuple[list[tuple[str, str]], list[str]] = ([], [])
        self._unsettled_lock = threading.Lock()
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
        self._idle_writers.append(conn)
        #: The one way in for instances, as for SQLite (see :mod:`.ingest`).
        self.ingest = Ingest(self)
        self._sweep_store()

    def __repr__(self) -> str:
        return f"PostgresDatabase({self.display_url!r}, store={str(self.store.root)!r})"

    # -- backup ------------------------------------------------------------------------------
    def backup(self, dest: str | os.PathLike, *, progress=None, cancel=None) -> Path:
        """A PostgreSQL database is backed up by PostgreSQL's own tools, which know its server."""
        raise DatabaseError(
            f"{self.display_url} is a PostgreSQL database: back it up with pg_dump "
            "(e.g. pg_dump -Fc -f dicomplus.dump URL); the stored files are in its store folder"
        )

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> PgConnection:
        conn = PgConnection(self._open(), self.display_url, reopen=self._open)
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _open(self):
        """A new psycopg connection to the database."""
        import psycopg

        try:
            raw = psycopg.connect(
                self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="dicomplus"
            )
        except psycopg.Error as exc:
            raise _unreachable(exc)(
                f"cannot connect to the PostgreSQL database {self.display_url}: {str(exc).strip()} "
                "(is the server running and reachable? check the URL given with --db, or the PG* variables)"
            ) from exc
        raw.adapters.register_loader("numeric", numeric_loader())
        return raw

    def _broken(self, conn) -> bool:
        """A read connection (autocommit: each statement sees the latest commit) whose server
        went away, or ended its session while it was idle (:meth:`~.PgConnection.ended_by_server`),
        is replaced on the next read."""
        return self._ended(conn)

    def _ended(self, conn: PgConnection) -> bool:
        """Whether ``conn``, taken from the pool for work, must be replaced: it broke, or the
        server ended its session while it was idle (a restart, a failover, an idle timeout). It
        is then closed and no longer listed."""
        if not conn.ended_by_server():  # broken counts as ended
            return False
        logger.debug("%s: the server had ended a connection's session; a new one is opened", self.display_url)
        with self._connections_lock:
            if conn in self._connections:
                self._connections.remove(conn)
        conn.close()
        return True

    @contextlib.contextmanager
    def write(self) -> Iterator[PgConnection]:
        """One write transaction, on a writer connection of this process that no other thread
        is using: threads of one process (a listener's associations) write at once, as other
        processes do, and wait only for the locks of what they share (:func:`~.pg_locks.lock_keys`). The
        connections are kept for the next transaction: as many as writers ran at once."""
        if self._closed:
            raise DatabaseError("the database is closed")
        with self._connections_lock:
            conn = self._idle_writers.pop() if self._idle_writers else None
        if conn is None or self._ended(conn):  # none idle, or the server ended it: a new one
            conn = self._connect()
        try:
            conn.begin()
            try:
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        finally:
            with self._connections_lock:
                if not self._closed:
                    self._idle_writers.append(conn)

    def close(self) -> None:
        super().close()
        with self._connections_lock:
            self._idle_writers.clear()

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
    def _refresh_counts(self, conn, series, studies, *, modalities: bool = True) -> None:
        """The counts, and the terms (:mod:`.pg_terms`), of series and studies some instances left
        or joined: a delete and the migration from SQLite call it holding the series' locks
        exclusively."""
        series = list(series)
        super()._refresh_counts(conn, series, studies, modalities=modalities)
        recompute(conn, series)

    #: Other processes write at once: writers take advisory locks (:func:`~.pg_locks.lock_keys`).
    exclusive_writer = False

    def _lock_keys(self, conn, keys: Iterable[tuple[str, str]]) -> None:
        lock_keys(conn, keys)

    def commit_parsed(
        self,
        items: Sequence[ParsedFile],
        *,
        link: bool = False,
        on_duplicate: DuplicatePolicy | str = DuplicatePolicy.KEEP,
        records: bool = True,
    ) -> list[StoredInstance]:
        """Store and index a batch in one transaction (see :meth:`.database.Database.commit_parsed`); one
        :class:`StoredInstance` per item, whose record has the file's real path (made whatever
        ``records`` says: a few microseconds beside the server's round trips).

        Locks (:func:`~.pg_locks.ingest_keys`): the SOP Instance UIDs exclusively; the patients, studies and
        series shared (those the items name and those a replaced instance leaves), so writers into
        one study run at once while a delete of it waits for them and they for it. Which series
        a replaced instance leaves is known only by reading, under the SOP's lock: when it is
        not one already locked, the transaction ends unwritten and the next takes it too. Counts change by deltas (``n = n + 1``), which
        PostgreSQL applies to the newest version of the row, so two writers of one series both
        count. Files are moved into the store while the locks are held; if the transaction
        fails, the files it placed are removed and those it replaced put back before the locks
        go, so no other writer can have committed a row that names them."""
        if not items:
            return []
        on_duplicate = DuplicatePolicy(on_duplicate)
        elements = [header_elements(item.header) for item in items]  # CPU work, before the locks
        terms = [instance_terms(e) for e in elements]
        # One order for the rows of every batch, so that two batches cannot deadlock on them.
        order = sorted(range(len(items)), key=lambda i: hierarchy(items[i].values))
        sops = [str(item.values["SOPInstanceUID"]) for item in items]
        values = [item.values for item in items]
        batch = [
            (sop, _text(str(item.values["SeriesInstanceUID"])), _text(item.source), t)
            for sop, item, t in zip(sops, items, terms, strict=True)
        ]
        held = ingest_keys(values, ())
        placed: list[str] = []
        in_flight: list[str] = []  # the placed files' temporary names, until the commit
        retired: list[tuple[str, str]] = []  # (temporary name, the name it had)
        writer: list[PgConnection] = []
        try:
            while True:
                with self.write() as conn:
                    writer[:] = [conn]
                    with conn.pipeline():  # BEGIN, the locks and the read: one round trip
                        lock_keys(conn, held, shared_kinds=SHARED_KINDS)
                        found = select_existing(conn, sops)
                    existing = existing_rows(found)
                    keys = ingest_keys(values, existing.values())
                    keys |= replaced_keys(batch, existing, on_duplicate is DuplicatePolicy.REPLACE)
                    if keys <= held:
                        statuses = self._commit_locked(
                            conn,
                            items,
                            order,
                            elements,
                            terms,
                            existing,
                            link,
                            on_duplicate,
                            (placed, in_flight),
                            retired,
                        )
                        break
                held |= keys  # a replacement leaves another series: nothing written, lock it too
        except BaseException:
            if writer and writer[0].broken and len(in_flight) == len(placed):
                # The connection broke (the server crashed or restarted, as after a full WAL
                # disk): it may have committed before it went, and only its rows can say so.
                # Settled as a dead writer's files are: a placed file stays where a row names
                # it; the others, and the in-flight names, go. A server still away leaves them
                # under in-flight names of their own (the caller removes the temporary names
                # it gave, on any failure) to this database's next commit that succeeds, or, if
                # this process ends first, to the sweep of the next writer.
                if not self._settle_retired(retired, in_flight):
                    self._leave_unsettled(retired, in_flight)
                raise
            for tmp, path in retired:
                self.store.restore(tmp, path)
            for path in placed:
                self.store.remove(path)
            for tmp in in_flight:
                self.store.settled(tmp)
            raise
        for tmp in in_flight:
            self.store.settled(tmp)
        for tmp, path in retired:
            self.store.discard(tmp, path)
        if self._unsettled[0] or self._unsettled[1]:  # the server is back: settle what it left
            self._settle_unsettled()
        return statuses

    def _leave_unsettled(self, retired: list[tuple[str, str]], in_flight: list[str]) -> None:
        """Keep the files of a transaction whose outcome the server, away, cannot tell yet: the
        in-flight names move to names of their own (``-unsettled``) and are remembered, with
        the retired files, for :meth:`_settle_unsettled`."""
        placed = []
        for tmp in in_flight:
            with contextlib.suppress(OSError):
                if os.path.lexists(tmp):
                    os.rename(tmp, f"{tmp}-unsettled")
                    placed.append(f"{tmp}-unsettled")
        with self._unsettled_lock:
            self._unsettled[0].extend(pair for pair in retired if os.path.lexists(pair[0]))
            self._unsettled[1].extend(placed)

    def _settle_unsettled(self) -> None:
        """Settle the files :meth:`_leave_unsettled` kept (:meth:`_settle_retired`: a placed file
        stays where a row names it, a retired one goes back under a name a row still holds, the
        others go), once a commit shows the server is back; kept for the next one if it is away
        again. One thread settles them; the others go on."""
        with self._unsettled_lock:
            retired, placed = self._unsettled
            if not retired and not placed:
                return
            self._unsettled = ([], [])
        retired = [pair for pair in retired if os.path.lexists(pair[0])]
        placed = [tmp for tmp in placed if os.path.lexists(tmp)]
        try:
            settled = self._settle_retired(retired, placed)
        except Exception:  # the caller's commit is done: it must not be reported as failed
            logger.exception("cannot settle the files of a write the server did not answer")
            settled = False
        if not settled:
            with self._unsettled_lock:
                self._unsettled[0].extend(retired)
                self._unsettled[1].extend(placed)

    def _commit_locked(
        self, conn, items, order, elements, terms, existing, link, on_duplicate, files, retired
    ) -> list[StoredInstance]:
        now = time.time()
        counts = Counts()
        leftovers: list[str] = []
        statuses: dict[int, StoredInstance] = {}
        gone: dict[str, set[str]] = {}  # series -> terms a replaced instance's old version had
        pairs: set[tuple[str, str]] = set()
        for i in order:
            sop = str(_text(items[i].values["SOPInstanceUID"]))
            before = existing.get(sop)
            statuses[i] = self._commit_one(
                conn, items[i], elements[i], existing, link, on_duplicate, now, counts, leftovers, files
            )
            if statuses[i].status is StoreStatus.KEPT_EXISTING:
                continue
            series = _text(str(items[i].values["SeriesInstanceUID"]))
            if before is not None:
                lost = (
                    before["terms"] - terms[i] if before["SeriesInstanceUID"] == series else before["terms"]
                )
                if lost:
                    gone.setdefault(before["SeriesInstanceUID"], set()).update(lost)
            existing[sop]["terms"] = terms[i]
            pairs |= {(t, series) for t in terms[i]}
        for uid in sorted(gone):  # under the exclusive locks of replaced_keys
            remove_gone(conn, uid, gone[uid])
        add_terms(conn, pairs)
        counts.apply(conn)
        # A replaced file leaves its name under the locks: a writer that stores the instance
        # anew after a delete may reuse that name once this commit is done.
        self._retire(leftovers, retired)
        return [statuses[i] for i in range(len(items))]

    def _commit_one(
        self, conn, item, elems, existing_rows, link, on_duplicate, now, counts, leftovers, files
    ) -> StoredInstance:
        """One item under its locks; ``files``: (the paths placed, their in-flight names)."""
        placed, in_flight = files
        v = {k: _text(x) for k, x in item.values.items()}
        sop = str(v["SOPInstanceUID"])
        source = _text(item.source)
        existing = existing_rows.get(sop)
        replace = False
        if existing is not None:
            same_source = bool(source) and existing["source"] == source
            if on_duplicate is not DuplicatePolicy.REPLACE and not same_source:
                if item.stored_tmp:
                    leftovers.append(item.stored_tmp)
                self._pg_record_source(conn, item, sop, "duplicate SOPInstanceUID (already stored)")
                return StoredInstance(StoreStatus.KEPT_EXISTING, sop, path=existing["path"], source=source)
            replace = True
        # A replacement goes to a new name: the current file stays valid until the commit.
        path, linked = self._place_file(item, sop, link, in_flight, unique=replace)
        if not linked and (existing is None or existing["path"] != path):
            placed.append(path)
        patient = self._upsert_patient(conn, v)
        study = str(v["StudyInstanceUID"])
        series = str(v["SeriesInstanceUID"])
        from psycopg.types.json import Jsonb

        with conn.pipeline():  # the study, series and instance rows: one round trip
            conn.execute(
                "INSERT INTO studies (StudyInstanceUID, patient, StudyDate, StudyTime, StudyDescription,"
                " AccessionNumber, StudyID, ReferringPhysicianName, ReferringPhysicianNameNorm, inserted)"
                " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (StudyInstanceUID) DO NOTHING",
                (
                    study, patient, v["StudyDate"], v["StudyTime"], v["StudyDescription"], v["AccessionNumber"],
                    v["StudyID"], v["ReferringPhysicianName"], normalize_pn(str(v["ReferringPhysicianName"])), now,
                ),
            )  # fmt: skip
            series_row = conn.execute(
                "INSERT INTO series (SeriesInstanceUID, StudyInstanceUID, Modality, SeriesNumber,"
                " SeriesDescription, SeriesDate, SeriesTime, BodyPartExamined, inserted)"
                " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (SeriesInstanceUID) DO NOTHING"
                " RETURNING StudyInstanceUID, Modality",
                (
                    series, study, v["Modality"], v["SeriesNumber"], v["SeriesDescription"], v["SeriesDate"],
                    v["SeriesTime"], v["BodyPartExamined"], now,
                ),
            )  # fmt: skip
            instance_row = conn.execute(
                "INSERT INTO instances (SOPInstanceUID, SeriesInstanceUID, SOPClassUID, TransferSyntaxUID,"
                " InstanceNumber, NumberOfFrames, Rows, Columns, path, linked, size, mtime, pixel_offset,"
                " pixel_length, header, elements, source, inserted) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (SOPInstanceUID) DO UPDATE SET SeriesInstanceUID=EXCLUDED.SeriesInstanceUID,"
                " SOPClassUID=EXCLUDED.SOPClassUID, TransferSyntaxUID=EXCLUDED.TransferSyntaxUID,"
                " InstanceNumber=EXCLUDED.InstanceNumber, NumberOfFrames=EXCLUDED.NumberOfFrames, Rows=EXCLUDED.Rows,"
                " Columns=EXCLUDED.Columns, path=EXCLUDED.path, linked=EXCLUDED.linked, size=EXCLUDED.size,"
                " mtime=EXCLUDED.mtime, pixel_offset=EXCLUDED.pixel_offset, pixel_length=EXCLUDED.pixel_length,"
                " header=EXCLUDED.header, elements=EXCLUDED.elements, source=EXCLUDED.source,"
                " inserted=EXCLUDED.inserted"
                " RETURNING (SELECT StudyInstanceUID FROM series WHERE SeriesInstanceUID=?)",
                (
                    sop, series, v["SOPClassUID"], _text(item.transfer_syntax), v["InstanceNumber"],
                    v["NumberOfFrames"], v["Rows"], v["Columns"], _text(path), int(linked), item.size, item.mtime,
                    item.pixel_offset, item.pixel_length, item.header, Jsonb(elems), source, now, series,
                ),
            )  # fmt: skip
        new_series = series_row.fetchone()
        if new_series is not None:
            counts.new_series(new_series[0], new_series[1])
        row = instance_row.fetchone()
        if replace and existing["path"] != path and not existing["linked"]:
            leftovers.append(existing["path"])
        if existing is not None:
            counts.instance(existing["SeriesInstanceUID"], existing["StudyInstanceUID"], -1)
        counts.instance(series, row[0], +1)
        existing_rows[sop] = {
            "path": _text(path), "linked": int(linked), "source": source, "SeriesInstanceUID": series,
            "StudyInstanceUID": row[0], "PatientID": v["PatientID"],
        }  # fmt: skip
        self._pg_record_source(conn, item, sop, "")
        record = placed_record(v, item, _text(item.transfer_syntax), _text(path))
        status = StoreStatus.REPLACED if replace else StoreStatus.STORED
        return StoredInstance(status, sop, record, _text(path), source=source)

    @staticmethod
    def _upsert_patient(conn, v: dict) -> int:
        key = (str(v["PatientID"]), str(v["PatientName"]))
        row = conn.execute("SELECT id FROM patients WHERE PatientID=? AND PatientName=?", key).fetchone()
        if row is None:  # new: insert it, or find the row another writer has just inserted
            row = conn.execute(
                "INSERT INTO patients (PatientID, PatientName, PatientNameNorm, PatientBirthDate, PatientSex)"
                " VALUES (?,?,?,?,?) ON CONFLICT (PatientID, PatientName) DO NOTHING RETURNING id",
                (*key, normalize_pn(key[1]), v["PatientBirthDate"], v["PatientSex"]),
            ).fetchone()
        if row is None:
            row = conn.execute("SELECT id FROM patients WHERE PatientID=? AND PatientName=?", key).fetchone()
        return int(row[0])

    @staticmethod
    def _pg_record_source(conn, item: ParsedFile, sop: str | None, reason: str) -> None:
        if item.source:
            _record_source(conn, item.source, item.size, item.mtime, sop, reason)

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
