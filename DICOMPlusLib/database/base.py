"""What the two back ends share: :class:`BaseDatabase`, the behaviour of a database that does
not depend on the server behind it.

:class:`~.database.Database` (SQLite) and :class:`~.postgres.PostgresDatabase` both build on it,
and neither on the other: each brings its connections, its write transaction, its schema and its
write path (:meth:`BaseDatabase.commit_parsed`, :meth:`BaseDatabase.remember_source`); the
reads, the counts' refresh, search, import and delete are written once, here and in the modules
that serve both (:mod:`.search`, :mod:`.delete`, :mod:`.indexer`, :mod:`.ingest`), in the SQL
both servers speak through their connection (sqlite3's, or :class:`~.pg_connection.PgConnection`
with sqlite3's surface); where the spellings differ the back end's :class:`~.dialect.Dialect`
says how. Callers outside ``database/`` see neither class: they use
:class:`~.protocol.DatabaseProtocol`, which both implement.
"""

from __future__ import annotations

import abc
import contextlib
import os
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.database.rows import absolute, chunks, instance_record
from DICOMPlusLib.errors import DatabaseError
from DICOMPlusLib.models import (
    DeleteReport,
    InstanceLevel,
    InstanceRecord,
    PatientLevel,
    QueryLevel,
    SeriesLevel,
    StudyLevel,
)

if TYPE_CHECKING:
    from typing import TypeVar

    import pydicom

    from DICOMPlusLib.database.backend import Connection
    from DICOMPlusLib.database.dialect import Dialect
    from DICOMPlusLib.database.ingest import DuplicatePolicy, Ingest, StoredInstance
    from DICOMPlusLib.database.parsing import ParsedFile
    from DICOMPlusLib.database.search import Criteria
    from DICOMPlusLib.database.store import FileStore

    # annotations only: made when a search or a query first needs them (DICOMPlusLib.query_records)
    from DICOMPlusLib.models import PatientRecord, Record, SeriesRecord, StudyRecord

    # for the type checker only: at run time a bound given as a string is compiled (typing's
    # ForwardRef), and a process's first compile() costs ~1 ms of every command's start
    Self = TypeVar("Self", bound="BaseDatabase")

logger = get_logger(__name__)


class BaseDatabase(abc.ABC):
    """A database (:class:`~.protocol.DatabaseProtocol`) whose back end supplies the connections
    (:meth:`_connect`, :meth:`write`), the schema and the write path (:meth:`commit_parsed`,
    :meth:`remember_source`, :meth:`_lock_keys`)."""

    #: Where the database lives (the SQLite file; a folder beside the store for PostgreSQL).
    path: Path
    #: The copied files (:class:`~.store.FileStore`).
    store: FileStore
    #: The one way in for instances (imports, receives, retrieves): see :mod:`.ingest`.
    ingest: Ingest
    #: Whether imports link files in place instead of copying them, when not told otherwise.
    default_link: bool = False
    #: The SQL spellings that differ between back ends (search, and the counts' refresh).
    dialect: Dialect
    #: Whether a write transaction excludes every other writer (SQLite's one writer at a time,
    #: across processes too): then a delete needs no locks of its own (:meth:`_lock_keys`).
    exclusive_writer: bool

    def _init_connections(self) -> None:
        """The per-thread readers and the list of every connection (closed by :meth:`close`)."""
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False

    @property
    def store_root(self) -> Path:
        return self.store.root

    # -- connections -------------------------------------------------------------------------
    @abc.abstractmethod
    def _connect(self) -> Connection:
        """A new connection, listed for :meth:`close`."""

    def _reader(self) -> Connection:
        """This thread's read connection (readers never wait for a writer: WAL, MVCC). Private:
        callers outside ``database/`` use the methods of :class:`~.protocol.DatabaseProtocol`,
        so that another back end can serve them."""
        if self._closed:
            raise DatabaseError("the database is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None or self._broken(conn):
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _broken(self, conn: Connection) -> bool:
        """Whether a thread's read connection must be replaced (a server-side back end's can be
        lost; a local SQLite file's cannot)."""
        return False

    def release_reader(self) -> None:
        """Close this thread's read connection (for threads that end, e.g. network handlers)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._connections_lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            with contextlib.suppress(Exception):
                conn.close()

    @abc.abstractmethod
    def write(self) -> AbstractContextManager[Connection]:
        """One write transaction: committed when the block ends, rolled back when it raises."""

    def close(self) -> None:
        self._closed = True
        store = getattr(self, "store", None)  # None: the open failed before the store was known
        if store is not None:
            store.release()
        with self._connections_lock:
            for conn in self._connections:
                with contextlib.suppress(Exception):
                    conn.close()
            self._connections.clear()

    def __enter__(self: Self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- facts ---------------------------------------------------------------------------------
    def info(self) -> dict[str, int]:
        conn = self._reader()
        out = {}
        for key, table in (
            ("patients", "patients"),
            ("studies", "studies"),
            ("series", "series"),
            ("instances", "instances"),
        ):
            out[key] = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        return out

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    def make_durable(self, stored_path: str) -> None:
        """After a commit: the committed rows and the stored file's name survive an OS crash or
        a power cut (the listener's ``fsync`` setting; its bytes were synced before the commit).
        The folder entries of the file are synced here; the rows by :meth:`_sync_index`."""
        from DICOMPlusLib.database.store import sync_path

        self._sync_index()
        folder = os.path.dirname(stored_path)
        for path in (folder, os.path.dirname(folder)):  # the fan-out folder may be new
            with contextlib.suppress(OSError):
                sync_path(path)

    def _sync_index(self) -> None:  # noqa: B027 (a back end whose commit syncs has nothing to add)
        """The rows committed so far on the disk. A PostgreSQL commit is as durable as the
        server's ``synchronous_commit`` makes it (on by default): nothing to add here."""

    def check_writable(self) -> None:
        reason = getattr(self, "read_only", "")  # SQLite: opened for reading only, and why
        if reason:
            raise DatabaseError(f"cannot write the database {self.path}: {reason}")
        self.store.check_writable()

    # -- writing -------------------------------------------------------------------------------
    @abc.abstractmethod
    def _lock_keys(self, conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
        """Lock ``(kind, uid)`` keys for the transaction on ``conn`` (:mod:`.delete`)."""

    @abc.abstractmethod
    def commit_parsed(
        self,
        items: Sequence[ParsedFile],
        *,
        link: bool = False,
        on_duplicate: DuplicatePolicy | str = "keep",
        records: bool = True,
    ) -> list[StoredInstance]:
        """Store and index a batch in one transaction; one :class:`~.ingest.StoredInstance` per
        item (``STORED``, ``REPLACED`` or ``KEPT_EXISTING``), whose record has the file's real
        path. Callers go through :class:`~.ingest.Ingest` (``self.ingest``). ``records=False``:
        a caller that reads only the statuses and paths lets the back end leave ``record`` None
        (SQLite does: ~3.5 us a file of an import; PostgreSQL makes them anyway)."""

    @abc.abstractmethod
    def remember_source(self, path: str, size: int, mtime: float, reason: str) -> None:
        """Remember a file that was seen and skipped (``reason``), so an unchanged copy of it is
        not read again by the next import."""

    def _place_file(
        self,
        item: ParsedFile,
        sop: str,
        link: bool,
        in_flight: list[str],
        *,
        unique: bool = False,
        cwd: str | None = None,
    ) -> tuple[str, bool]:
        """Put the item's file under its stored name (:meth:`~.store.FileStore.place`) inside the
        transaction that adds its row; adds its in-flight name to ``in_flight``, which the caller
        removes (:meth:`~.store.FileStore.settled`) once the transaction is over. A linked file
        stays where it is, its path made absolute against ``cwd`` (a batch looks the working
        folder up once: ``getcwd`` is a system call)."""
        if link:
            return absolute(item.source, cwd), True
        if item.stored_tmp:
            final, tmp = self.store.place(sop, item.stored_tmp, unique=unique)
        elif item.data is not None:
            final, tmp = self.store.write_bytes(sop, item.data, unique=unique)
        elif item.source:
            import shutil

            source_copy = self.store.temporary_name()
            try:
                shutil.copyfile(item.source, source_copy)
                final, tmp = self.store.place(sop, source_copy, unique=unique)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(source_copy)
                raise
        else:
            raise DatabaseError(f"instance {sop} has neither data nor a source file")
        if tmp is not None:
            in_flight.append(tmp)
        return str(final), False

    def _retire(self, paths: Iterable[str], retired: list[tuple[str, str]]) -> None:
        """Move the files of replaced instances out of their names (:meth:`~.store.FileStore.retire`)
        inside the replacing transaction, while it excludes every writer that could store the
        instance anew under such a name; adds (temporary name, name) to ``retired``: the caller
        discards them after the commit and restores them when it fails."""
        for path in paths:
            tmp = self.store.retire(path) if path and self.store.contains(path) else None
            if tmp is not None:
                retired.append((tmp, path))

    #: What the settling of retired files adds to its SELECT: PostgreSQL locks the rows (``FOR
    #: SHARE``), so that no delete or replacement moves them between the look and the put-back.
    _ROW_LOCK = ""

    def _sweep_store(self) -> None:
        """Remove dead writers' temporary files; settle their retired and placed ones
        (:meth:`_settle_retired`)."""
        self.store.sweep(settle=self._settle_retired)

    def _settle_retired(self, retired: list[tuple[str, str]], placed: Sequence[str] = ()) -> bool:
        """Put back the retired files of writers killed before their commit, remove the others;
        remove the files such writers had placed (``placed``: their in-flight names,
        :meth:`~.store.FileStore.place`) under names no row points to.

        A writer moves a replaced or deleted instance's file to a temporary name inside its
        transaction (:meth:`~.store.FileStore.retire`); killed before COMMIT, its transaction
        rolls back and the row still points to the file's name, now empty. In a write
        transaction where those rows cannot change (SQLite: the write lock; PostgreSQL: each
        instance's lock, which every writer of it holds from its start to its end, and the rows
        locked against a delete), each file whose name a row still holds goes back under it
        (unless a file is there), with the new files such a killed replacement had placed for the
        instance (:meth:`_drop_placed`); every other one is removed. When the database cannot be
        written, the files stay for a later sweep, and this returns False (True: settled).

        A placed file's names are found from the SOP Instance UID in its header, and its
        instance's lock is held (PostgreSQL) while a name no row points to is removed: no
        writer can be storing the instance under that name meanwhile."""
        placed_at: list[tuple[str, list[str]]] = []  # (in-flight name, its stored names)
        keys_placed: set[tuple[str, str]] = set()
        for tmp in placed:
            sop = _sop_instance_uid(tmp)
            if sop is None:  # no readable header: removed as a temporary (its other link stays)
                self.store.settled(tmp)
                continue
            placed_at.append((tmp, self.store.unsettled_names(tmp, sop)))
            keys_placed.add(("sop", sop))
        names = sorted({name for _, name in retired} | {n for _, found in placed_at for n in found})
        # Looked up by the instances' SOP Instance UIDs (the primary key), read from the files:
        # ``instances`` has no index on path, and a search by path reads every row.
        sops = {sop for _, sop in keys_placed}
        sops.update(filter(None, (_sop_instance_uid(tmp) for tmp, _ in retired)))
        held: set[tuple[str, str]] = set()
        try:
            while True:
                with self.write() as conn:
                    if held:
                        self._lock_keys(conn, held)
                    rows = self._rows_at(conn, names, sops, lock=bool(held) or self.exclusive_writer)
                    keys = {("sop", str(sop)) for sop in rows.values()} | keys_placed
                    if not self.exclusive_writer and not keys <= held:
                        held |= keys
                        continue
                    for tmp, name in retired:
                        if name in rows:
                            self.store.reinstate(tmp, name)
                            self._drop_placed(conn, name, rows[name])
                        else:
                            self.store.discard(tmp, name)
                    for tmp, found in placed_at:
                        for name in found:
                            if name not in rows and _same_file(name, tmp):
                                self.store.remove(name)  # its transaction never committed
                        self.store.settled(tmp)
                    return True
        except (DatabaseError, OSError) as exc:
            logger.warning("files of a stopped writer left for a later sweep: %s", exc)
            return False

    def _rows_at(
        self, conn: Connection, paths: list[str], sops: Iterable[str], *, lock: bool
    ) -> dict[str, str]:
        """{path: SOPInstanceUID} of the stored instances at ``paths`` (``lock``: rows locked).

        Looked up by ``sops``, the SOP Instance UIDs of the instances the paths may belong to
        (a stored name is the hash of its instance's UID): ``instances`` is keyed by UID and has
        no index on path, which no other query needs (every ingest would pay for one). A path of
        none of ``sops`` (a file whose header did not say its UID) is looked up by path."""
        found: dict[str, str] = {}
        wanted = set(paths)
        by_uid = sorted(sops)
        digests = {_digest(self.store.relative_path_for(sop)) for sop in by_uid}
        rest = [p for p in paths if _digest(p) not in digests]
        suffix = self._ROW_LOCK if lock else ""
        for part in chunks(by_uid, 500):
            marks = ",".join("?" * len(part))
            sql = f"SELECT path, SOPInstanceUID, linked FROM instances WHERE SOPInstanceUID IN ({marks})"
            found.update(
                (row[0], row[1])
                for row in conn.execute(sql + suffix, part)
                if not row[2] and row[0] in wanted
            )
        for part in chunks(rest, 500):
            marks = ",".join("?" * len(part))
            sql = f"SELECT path, SOPInstanceUID FROM instances WHERE linked=0 AND path IN ({marks})"
            found.update((row[0], row[1]) for row in conn.execute(sql + suffix, part))
        return found

    def _drop_placed(self, conn: Connection, name: str, sop: str) -> None:
        """Remove the instance's other files (``hh/<hash>-<suffix>.dcm``) no row points to: a
        replacement killed before its commit had placed its new file under a new name. Only the
        instance's own row can point to its hash's names, and no writer of it is running (its
        lock is held by the caller)."""
        others = [str(p) for p in self.store.names_of(sop) if str(p) != name]
        if others:
            kept = self._rows_at(conn, others, [sop], lock=False)
            for other in others:
                if other not in kept:
                    self.store.remove(other)

    def _refresh_counts(
        self, conn: Connection, series: Iterable[str], studies: Iterable[str], *, modalities: bool = True
    ) -> None:
        """Recount ``series``, ``studies`` and the studies of ``series``; ``modalities=False``: the
        caller knows no series was added to or removed from them (ModalitiesInStudy stays)."""
        series, studies = list(series), set(studies)
        recount = (
            "UPDATE series SET NumberOfSeriesRelatedInstances="
            "(SELECT COUNT(*) FROM instances WHERE SeriesInstanceUID=?) WHERE SeriesInstanceUID=?"
        )
        for uid in series:
            if self.dialect.returning:  # the series' study in the same statement: one fewer per received file
                rows = conn.execute(recount + " RETURNING StudyInstanceUID", (uid, uid)).fetchall()
                row = rows[0] if rows else None
            else:
                conn.execute(recount, (uid, uid))
                row = conn.execute(
                    "SELECT StudyInstanceUID FROM series WHERE SeriesInstanceUID=?", (uid,)
                ).fetchone()
            if row is not None:
                studies.add(row[0])
        counts = (
            "UPDATE studies SET"
            " NumberOfStudyRelatedSeries=(SELECT COUNT(*) FROM series WHERE StudyInstanceUID=?),"
            " NumberOfStudyRelatedInstances=(SELECT COALESCE(SUM(NumberOfSeriesRelatedInstances),0)"
            "   FROM series WHERE StudyInstanceUID=?)"
        )
        for uid in studies:
            if modalities:
                conn.execute(
                    counts
                    + f", ModalitiesInStudy={self.dialect.modalities_of_study()} WHERE StudyInstanceUID=?",
                    (uid, uid, uid, uid),
                )
            else:
                conn.execute(counts + " WHERE StudyInstanceUID=?", (uid, uid, uid))

    # -- reading -------------------------------------------------------------------------------
    def instance(self, sop_instance_uid: str) -> InstanceRecord:
        row = (
            self._reader()
            .execute(
                "SELECT i.*, se.StudyInstanceUID, p.PatientID FROM instances i"
                " JOIN series se ON se.SeriesInstanceUID=i.SeriesInstanceUID"
                " JOIN studies st ON st.StudyInstanceUID=se.StudyInstanceUID"
                " JOIN patients p ON p.id=st.patient WHERE i.SOPInstanceUID=?",
                (sop_instance_uid,),
            )
            .fetchone()
        )
        if row is None:
            raise DatabaseError(f"no instance {sop_instance_uid} in the database")
        return instance_record(row)

    def instances(self, series_instance_uid: str) -> list[InstanceRecord]:
        rows = (
            self._reader()
            .execute(
                "SELECT i.*, se.StudyInstanceUID, p.PatientID FROM instances i"
                " JOIN series se ON se.SeriesInstanceUID=i.SeriesInstanceUID"
                " JOIN studies st ON st.StudyInstanceUID=se.StudyInstanceUID"
                " JOIN patients p ON p.id=st.patient WHERE i.SeriesInstanceUID=?"
                " ORDER BY i.InstanceNumber, i.SOPInstanceUID",
                (series_instance_uid,),
            )
            .fetchall()
        )
        return [instance_record(r) for r in rows]

    def header_bytes(self, series_instance_uid: str) -> dict[str, bytes]:
        """{SOPInstanceUID: stored header bytes} of every instance of a series, in one query.

        The bytes are the file's own encoding up to the pixel data (a Part 10 prefix), which the
        fast scanner reads without pydicom.
        """
        rows = self._reader().execute(
            "SELECT SOPInstanceUID, header FROM instances WHERE SeriesInstanceUID=?", (series_instance_uid,)
        )
        return {sop: bytes(blob) for sop, blob in rows}

    def header(self, sop_instance_uid: str) -> pydicom.Dataset:
        """The stored header of an instance as a pydicom Dataset (every element but pixel data)."""
        import pydicom

        row = (
            self._reader()
            .execute("SELECT header FROM instances WHERE SOPInstanceUID=?", (sop_instance_uid,))
            .fetchone()
        )
        if row is None:
            raise DatabaseError(f"no instance {sop_instance_uid} in the database")
        return pydicom.dcmread(BytesIO(row[0]), force=True)

    def present(self, sop_instance_uids: Iterable[str]) -> set[str]:
        """The instances of ``sop_instance_uids`` the database holds (one query per 500)."""
        sops = list(dict.fromkeys(sop_instance_uids))
        found: set[str] = set()
        conn = self._reader()
        for chunk in chunks(sops, 500):
            rows = conn.execute(
                f"SELECT SOPInstanceUID FROM instances WHERE SOPInstanceUID IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update(r[0] for r in rows)
        return found

    def sop_classes(self) -> set[str]:
        """Every SOP Class UID of the stored instances."""
        return {uid for (uid,) in self._reader().execute("SELECT DISTINCT SOPClassUID FROM instances") if uid}

    def instance_paths(self) -> dict[str, str]:
        """{SOPInstanceUID: path} of every stored instance (checks and benchmarks)."""
        return dict(self._reader().execute("SELECT SOPInstanceUID, path FROM instances").fetchall())

    @overload
    def search(
        self,
        level: PatientLevel,
        criteria: Criteria | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[PatientRecord]: ...
    @overload
    def search(
        self,
        level: StudyLevel = ...,
        criteria: Criteria | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[StudyRecord]: ...
    @overload
    def search(
        self,
        level: SeriesLevel,
        criteria: Criteria | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SeriesRecord]: ...
    @overload
    def search(
        self,
        level: InstanceLevel,
        criteria: Criteria | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[InstanceRecord]: ...
    @overload
    def search(
        self,
        level: QueryLevel | str,
        criteria: Criteria | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Record]: ...
    def search(
        self,
        level: QueryLevel | str = "study",
        criteria: Criteria | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Any]:  # list[Record], narrowed by the overloads (a list is invariant)
        """Records at ``level`` (of that level's record type) matching ``criteria``; see
        :func:`DICOMPlusLib.database.search.search`."""
        return self._search(QueryLevel.parse(level), criteria or {}, text, limit, offset)

    def _search(
        self, level: QueryLevel, criteria: Criteria, text: str | None, limit: int | None, offset: int
    ) -> list[Record]:
        # .search, .matching and .delete are imported when used: an import of files, the
        # commonest write, needs none of them (~3 ms of a command's start-up).
        from DICOMPlusLib.database.search import search

        return search(self, level, criteria, text=text, limit=limit, offset=offset)

    def count(
        self, level: QueryLevel | str = "study", criteria: Criteria | None = None, *, text: str | None = None
    ) -> int | None:
        """How many records a search would find in all; None when header keys would make
        counting a full scan. See :func:`DICOMPlusLib.database.search.count`."""
        from DICOMPlusLib.database.search import count

        return count(self, level, criteria or {}, text=text)

    def import_paths(self, paths, **kwargs):
        """Import files and folders; see :func:`DICOMPlusLib.database.indexer.import_paths`."""
        # Imported here to keep start-up fast: the indexer brings multiprocessing and
        # concurrent.futures, which a search or a load never needs.
        from DICOMPlusLib.database.indexer import import_paths

        with self._bulk_writes():
            return import_paths(self, paths, **kwargs)

    def _bulk_writes(self) -> AbstractContextManager[None]:
        """While an import commits its batches: a back end may write differently (SQLite's
        checkpoints: :meth:`.database.Database._bulk_writes`). Nothing here."""
        return contextlib.nullcontext()

    # -- deleting ------------------------------------------------------------------------------
    def delete(
        self,
        *,
        patient: str | None = None,
        study: str | None = None,
        series: str | None = None,
        instance: str | None = None,
        files: bool = True,
        linked_files: bool = False,
        dry_run: bool = False,
    ) -> DeleteReport:
        """Delete a patient (by PatientID), a study, a series or an instance.

        ``files`` removes the files DICOMPlus copied into its store (default); ``linked_files``
        also removes files that were imported in place (never by default: they are the user's).
        ``dry_run`` reports what would go and changes nothing.
        """
        from DICOMPlusLib.database.delete import delete

        return delete(
            self,
            patient=patient,
            study=study,
            series=series,
            instance=instance,
            files=files,
            linked_files=linked_files,
            dry_run=dry_run,
        )


def _digest(path: str) -> str:
    """The hash a stored name starts with (``hh/<hash>[-<suffix>].dcm``)."""
    return os.path.basename(path).partition("-")[0].partition(".")[0]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _sop_instance_uid(path: str) -> str | None:
    """The SOP Instance UID in the header of a file a writer had placed (None: unreadable)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"], force=True)
        return str(ds.SOPInstanceUID) or None
    except Exception:  # a damaged file is a temporary like any other
        return None
