"""The local DICOM database: SQLite index + managed file store.

Concurrency model: WAL journal, one writer at a time (a lock in this process, SQLite's own lock
across processes, with a generous busy timeout), any number of readers that never wait for the
writer. Every logical batch (a chunk of imported files, one received instance, one delete) is
one transaction, so a crash leaves only complete, committed records.

:class:`Database` brings SQLite's connections, schema (:mod:`.schema`) and write path (the SQL of
:mod:`.rows`); the reads, search, import and delete it shares with PostgreSQL come from
:class:`~.base.BaseDatabase`; a copy while in use is :mod:`.backup`'s.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.database import schema
from DICOMPlusLib.database.backend import Connection
from DICOMPlusLib.database.base import BaseDatabase
from DICOMPlusLib.database.dialect import SQLITE, Dialect
from DICOMPlusLib.database.ingest import DuplicatePolicy, Ingest, StoredInstance, StoreStatus, is_space_error
from DICOMPlusLib.database.names import normalize_pn
from DICOMPlusLib.database.protocol import DatabaseProtocol, parse_url
from DICOMPlusLib.database.rows import (
    INSERT_INSTANCE,
    INSERT_SERIES,
    INSERT_SOURCE,
    INSERT_STUDY,
    instance_row,
    placed_record,
    series_row,
    source_row,
    stored_instances,
    study_row,
    working_folder,
)
from DICOMPlusLib.database.store import FileStore, create_owner_only, sync_path
from DICOMPlusLib.errors import DatabaseError, DiskFullError

if TYPE_CHECKING:
    from DICOMPlusLib.database.parsing import ParsedFile
    from DICOMPlusLib.jobs import CancelToken, ProgressCallback

logger = get_logger(__name__)

DB_FILE_NAME = "dicomplus.sqlite"
BUSY_TIMEOUT_S = 60.0
#: Free space below which an open that fails with an I/O error is taken for a full disk.
OPEN_ROOM = 256 << 10
#: SQLite's own ``wal_autocheckpoint`` (pages): a commit that leaves more in the WAL copies them
#: into the database file (a checkpoint, two ``fdatasync``). Every writer but an import uses it,
#: and a writer that finds more at its first write checkpoints first (:meth:`Database._restart_a_large_wal`).
WAL_CHECKPOINT_PAGES = 1000
#: An import's ``wal_autocheckpoint`` (16 MiB of 4 KiB pages): its commits checkpoint only past
#: this, so one import's WAL stays below it plus one transaction (docs/reliability.md "The
#: database on disk" says what this trades).
IMPORT_WAL_PAGES = 4096


def default_database_path() -> Path:
    """``$DICOMPLUS_DB``, else ``$XDG_DATA_HOME/dicomplus/dicomplus.sqlite``
    (``~/.local/share/dicomplus/dicomplus.sqlite``)."""
    env = os.environ.get("DICOMPLUS_DB")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "dicomplus" / DB_FILE_NAME


#: Back ends other than SQLite, by URL scheme: "module:class", loaded when a URL names them. A new
#: back end is one module implementing :class:`~.protocol.DatabaseProtocol` and a line here.
BACKENDS = {
    "postgresql": "DICOMPlusLib.database.postgres:PostgresDatabase",
    "postgres": "DICOMPlusLib.database.postgres:PostgresDatabase",
}


class Database(BaseDatabase):
    """The SQLite back end of :class:`~.protocol.DatabaseProtocol`: open (or create) the database
    at ``path``; files are stored in ``store_dir`` (default: ``store/`` beside the database file).
    :meth:`open` chooses the back end by URL. What it shares with PostgreSQL is in
    :class:`~.base.BaseDatabase`; the write path (its SQL) is its own."""

    dialect: Dialect = SQLITE

    def __init__(self, path: str | os.PathLike | None = None, *, store_dir: str | os.PathLike | None = None):
        # Absolute from here on: a relative --db must not make stored paths depend on the folder
        # the command happened to run in.
        self.path = Path(os.path.abspath(path if path is not None else default_database_path()))
        if self.path.is_dir() or self.path.suffix == "":
            self.path = self.path / DB_FILE_NAME
        self.store = FileStore(os.path.abspath(store_dir) if store_dir else self.path.parent / "store")
        #: Why this database can only be read (its file or folder cannot be written: a read-only
        #: disk, a CD, a colleague's folder), or "" when it can be written. See :meth:`_read_only_uri`.
        self.read_only = _read_only_reason(self.path)
        self._init_connections()
        self._write_lock = threading.RLock()
        if self.read_only:
            self._open_read_only()
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            create_owner_only(self.path)
        except OSError as exc:  # a read-only disk, a path through a file: one line, not a traceback
            raise DatabaseError(
                f"cannot create the database {self.path}: {exc.strerror or exc} (choose another place with "
                "--db or DICOMPLUS_DB)"
            ) from None
        conn = self._connect_sqlite()
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                logger.warning("database %s could not switch to WAL (mode %s)", self.path, mode)
            schema.migrate(conn, store_root=self.store.root)
        except sqlite3.DatabaseError as exc:
            raise self._open_failed(exc) from exc
        self._writer: Connection = conn
        self._bulk_depth = 0  # imports running in this process (:meth:`_bulk_writes`)
        self._wal_checked = False  # :meth:`_restart_a_large_wal`, before the first write
        conn.execute(f"PRAGMA journal_size_limit={_wal_bytes(WAL_CHECKPOINT_PAGES)}")
        #: The one way in for instances (imports, receives, retrieves): see :mod:`.ingest`.
        self.ingest = Ingest(self)
        self._sweep_store()  # temporary files of writers that died (kill -9, power loss)

    def _open_read_only(self) -> None:
        """Open for reading only: no WAL switch, no migration, no sweep of the store (each
        writes). A schema older than this DICOMPlus cannot be upgraded here: said, not guessed."""
        conn = self._connect_sqlite()
        try:
            (found,) = conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._open_failed(exc) from exc
        if found != schema.SCHEMA_VERSION:
            raise DatabaseError(
                f"cannot read the database {self.path}: its schema (version {found}) needs upgrading "
                f"to {schema.SCHEMA_VERSION}, which needs writing, but {self.read_only}; open it once "
                "where it can be written, or copy it to a writable folder"
            )
        self._writer = conn
        self.ingest = Ingest(self)

    def _read_only_uri(self) -> str:
        """The ``file:`` URI of a database opened for reading only. In WAL mode SQLite reads
        through the ``-shm`` index beside the file and creates it when missing, which it cannot
        in a folder it cannot write ("unable to open database file"): with the ``-shm`` there,
        ``mode=ro`` reads it (and the ``-wal`` committed changes), as it does in a folder that can
        be written (a read-only file: SQLite makes the ``-shm``); without either, ``immutable=1``
        reads the file alone: no writer can be at work where no ``-shm`` can be made
        (https://sqlite.org/wal.html#readonly)."""
        uri = self.path.as_uri()
        shared = Path(f"{self.path}-shm").is_file() or os.access(self.path.parent, os.W_OK)
        return uri + ("?mode=ro" if shared else "?immutable=1")

    @classmethod
    def open(
        cls, url: str | os.PathLike | None = None, *, store_dir: str | os.PathLike | None = None
    ) -> DatabaseProtocol:
        """The database at ``url``: a path or a ``sqlite:///`` URL opens SQLite (the default,
        embedded); a ``postgresql://`` URL opens :class:`~.postgres.PostgresDatabase`."""
        scheme, location = parse_url(url if url is not None else default_database_path())
        if scheme == "sqlite":
            return cls(location, store_dir=store_dir)
        backend = BACKENDS.get(scheme)
        if backend is not None:
            # Loaded by name: a back end's driver (psycopg) is an optional extra, imported only
            # when its URL is used.
            module, _, name = backend.partition(":")
            return getattr(importlib.import_module(module), name)(location, store_dir=store_dir)
        raise DatabaseError(
            f"no database back end for {scheme}: URLs: give a file path, a sqlite:/// URL or a "
            "postgresql:// URL"
        )

    def _sync_index(self) -> None:
        """``synchronous=NORMAL`` commits to the WAL without syncing it (a kill loses nothing, a
        power cut the last commits): syncing the WAL file's data makes every commit so far
        durable, as ``synchronous=FULL`` would at each commit, for the callers that ask."""
        for path in (f"{self.path}-wal", str(self.path)):
            try:
                sync_path(path, data_only=True)
            except FileNotFoundError:
                continue  # no WAL (a rollback-journal database): its commits synced the file
            return

    # -- backup ------------------------------------------------------------------------------
    def backup(
        self,
        dest: str | os.PathLike,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Path:
        """A complete, consistent copy of the index in one file at ``dest`` (a new file, or a
        folder to hold ``dicomplus.sqlite``: a name without a suffix, as ``--db`` reads it), while
        anything else may read or write it: :func:`.backup.backup`, through a connection of its
        own."""
        from DICOMPlusLib.database.backup import backup

        target = Path(os.path.abspath(dest))
        if target.is_dir() or target.suffix == "":  # a folder, as --db reads it
            target = target / DB_FILE_NAME
        conn = self._connect_sqlite()
        try:
            return backup(conn, self.path, target, progress=progress, cancel=cancel)
        finally:
            with self._connections_lock:
                self._connections.remove(conn)
            conn.close()

    # -- connections -------------------------------------------------------------------------
    def _open_failed(self, exc: sqlite3.Error, hint: str = "") -> DatabaseError | DiskFullError:
        """The error of an open that failed. On a full disk SQLite cannot make its WAL and
        shared-memory files and says "disk I/O error": with less than :data:`OPEN_ROOM` free
        beside the database, that is what it means."""
        room = OPEN_ROOM
        with contextlib.suppress(OSError, AttributeError):
            st = os.statvfs(self.path.parent)
            room = st.f_bavail * st.f_frsize
        io = isinstance(exc, sqlite3.OperationalError) and ("I/O" in str(exc) or "unable to open" in str(exc))
        if is_space_error(exc) or (io and not self.read_only and room < OPEN_ROOM):
            return DiskFullError(str(self.path))
        return DatabaseError(f"cannot open database {self.path}: {exc}{hint}")

    def _connect(self) -> Connection:
        return self._connect_sqlite()

    def _connect_sqlite(self) -> sqlite3.Connection:
        try:
            target, uri = (self._read_only_uri(), True) if self.read_only else (str(self.path), False)
            conn = sqlite3.connect(
                target, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False, uri=uri
            )
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        except sqlite3.Error as exc:
            raise self._open_failed(exc, " (choose another file with --db or DICOMPLUS_DB)") from exc
        conn.row_factory = sqlite3.Row
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection, once a write under way in another thread has ended (its
        transaction committed or rolled back; SQLite's busy timeout bounds the wait): its
        connection closed under it crashed the process (a segmentation fault inside SQLite), a
        retrieve's commit after its answer being one such write."""
        lock = getattr(self, "_write_lock", None)  # None: the open failed before it was made
        if lock is None or not lock.acquire(timeout=BUSY_TIMEOUT_S + 5):
            super().close()
            return
        try:
            super().close()
        finally:
            lock.release()

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction, serialised with every other writer of this process."""
        if self._closed:
            raise DatabaseError("the database is closed")
        if self.read_only:
            raise DatabaseError(
                f"cannot write the database {self.path}: {self.read_only}; it was opened for reading only"
            )
        with self._write_lock:
            conn = self._writer
            if not self._wal_checked:
                self._wal_checked = True
                self._restart_a_large_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException as exc:
                conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error) and is_space_error(exc):
                    raise DiskFullError(str(self.path)) from exc
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    # SQLite rolls back after some failed COMMITs, not all: one left open would
                    # refuse this connection's next BEGIN (a ROLLBACK with none fails, harmlessly)
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    if is_space_error(exc):  # "database or disk is full": one line, not a traceback
                        raise DiskFullError(str(self.path)) from exc
                    raise

    def _restart_a_large_wal(self, conn: Connection) -> None:
        """Before this database's first write: a WAL of more than :data:`WAL_CHECKPOINT_PAGES`
        (left by another process: an import's, or any command line's) is copied into the database
        file (a ``PASSIVE`` checkpoint: it waits for no reader), so that the write starts the WAL
        over.

        SQLite starts the WAL over only at a write that finds it wholly copied, and a process that
        opens it after the last connection has gone rebuilds its index and forgets what a
        checkpoint had copied. A command line process writes and leaves by ``os._exit`` (no
        checkpoint at close): without this the WAL grew with every command, and every commit past
        1,000 pages copied all of it again (30 imports of 28 files: 2,655 pages, 11 MB).
        The file's size tells without reading it: ``journal_size_limit`` (the same size) cuts the
        file back when the WAL starts over, so it is larger only when more was written since.
        One ``stat`` a database, not a commit.
        """
        try:
            size = os.stat(f"{self.path}-wal").st_size
        except OSError:
            return
        if size > _wal_bytes(WAL_CHECKPOINT_PAGES):
            with contextlib.suppress(sqlite3.Error):  # a reader in the way: the next writer does it
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @contextlib.contextmanager
    def _bulk_writes(self) -> Iterator[None]:
        """An import checkpoints at most every :data:`IMPORT_WAL_PAGES`, not every 1,000 pages.

        A checkpoint copies the WAL into the database file between two ``fdatasync``; an import
        of 1,008 CT headers writes ~2,240 WAL pages, which took two checkpoints inside its commits
        (and the pages every batch changes again, the indexes' upper levels, were copied at each).
        With the larger limit it takes none: the next writer copies them before its first write
        (:meth:`_restart_a_large_wal`, in any process), or the close of the last connection (the
        library, Slicer); the command line leaves by ``os._exit`` and never closes. Nothing
        committed depends on it: a reader reads the WAL, a killed process loses no commit; what
        an OS crash or a power cut can lose is in docs/reliability.md. Set on the writer
        connection, under the write lock, and put back when the last import of this process ends.
        """
        if self._closed:
            raise DatabaseError("the database is closed")
        with self._write_lock:
            self._bulk_depth += 1
            if self._bulk_depth == 1:
                self._writer.execute(f"PRAGMA wal_autocheckpoint={IMPORT_WAL_PAGES}")
        try:
            yield
        finally:
            with self._write_lock:
                self._bulk_depth -= 1
                if self._bulk_depth == 0 and not self._closed:
                    with contextlib.suppress(sqlite3.Error):
                        self._writer.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")

    def schema_version(self) -> int:
        return self._reader().execute("PRAGMA user_version").fetchone()[0]

    # -- writing -------------------------------------------------------------------------------
    #: One writer at a time, across processes too (``BEGIN IMMEDIATE``).
    exclusive_writer = True

    def _lock_keys(self, conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
        """Nothing to lock: the transaction already holds the only write lock."""

    def commit_parsed(
        self,
        items: Sequence[ParsedFile],
        *,
        link: bool = False,
        on_duplicate: DuplicatePolicy | str = DuplicatePolicy.KEEP,
        records: bool = True,
    ) -> list[StoredInstance]:
        """Store and index a batch in one transaction; one :class:`StoredInstance` per item
        (``STORED``, ``REPLACED`` or ``KEPT_EXISTING``), whose record has the file's real path
        (``records=False``: no record, for a caller that reads only statuses and paths).

        Callers go through :class:`~DICOMPlusLib.database.ingest.Ingest` (``self.ingest``).
        Files are moved into the store before the commit; when the commit fails, the files this
        batch moved into place are removed again (no committed row can point to them: a
        replacement goes to a new, unique name), so a failure leaves nothing behind.

        A replaced file leaves its name inside the transaction (:meth:`FileStore.retire`), while
        ``BEGIN IMMEDIATE`` holds the write lock of every process, and is removed after the
        commit (put back if the commit fails). Removed by name after the commit instead, it could
        be the file of another process that deleted the instance and stored it anew under that
        name in between (``Testing/test_database_writers_race.py``).

        The batch costs one lookup of the instances already stored and one ``executemany`` per
        table, not five statements a file: the items are decided in order against what is stored
        and what this batch has placed so far, so the outcome is the one of committing them one
        by one (the first study and series row of a batch wins, as ``INSERT OR IGNORE`` would).
        """
        results: list[StoredInstance] = []
        if not items:
            return results
        replace_always = DuplicatePolicy(on_duplicate) is DuplicatePolicy.REPLACE
        now = time.time()
        touched_series: set[str] = set()
        touched_studies: set[str] = set()
        leftovers: list[str] = []  # temporary files of newcomers not stored (policy KEEP)
        replaced: list[str] = []  # the files of the instances replaced
        retired: list[tuple[str, str]] = []  # (temporary name, the name it had)
        placed: list[str] = []
        in_flight: list[str] = []  # the placed files' temporary names, until the commit
        patients: dict[tuple[str, str], int] = {}
        studies: dict[str, tuple] = {}
        series_rows: dict[str, tuple] = {}
        instance_rows: list[tuple] = []
        source_rows: list[tuple] = []
        # once a batch, and only for a batch that has a relative source path to make absolute: a
        # received file has no source (getcwd is a system call, a GIL hand-off per received file)
        cwd = (
            working_folder()
            if any(item.source and not os.path.isabs(item.source) for item in items)
            else None
        )
        try:
            with self.write() as conn:
                # SOPInstanceUID -> (path, linked, source, SeriesInstanceUID), kept up to date below
                stored = stored_instances(conn, [str(item.values["SOPInstanceUID"]) for item in items])
                for item in items:
                    v = item.values
                    sop = str(v["SOPInstanceUID"])
                    existing = stored.get(sop)
                    replace = False
                    if existing is not None:
                        same_source = bool(item.source) and existing[2] == item.source
                        if not replace_always and not same_source:
                            results.append(
                                StoredInstance(
                                    StoreStatus.KEPT_EXISTING, sop, path=existing[0], source=item.source
                                )
                            )
                            if item.stored_tmp:
                                leftovers.append(item.stored_tmp)
                            source_row(
                                source_rows, item, sop, "duplicate SOPInstanceUID (already stored)", cwd
                            )
                            continue
                        replace = True
                        touched_series.add(existing[3])
                    # A replacement goes to a new name: the current file stays valid until the commit.
                    path, linked = self._place_file(item, sop, link, in_flight, unique=replace, cwd=cwd)
                    if not linked:
                        placed.append(path)
                    study, series = str(v["StudyInstanceUID"]), str(v["SeriesInstanceUID"])
                    patient = self._patient_id(conn, patients, v)
                    if study not in studies:
                        studies[study] = study_row(v, study, patient, now)
                    if series not in series_rows:
                        series_rows[series] = series_row(v, series, study, now)
                    instance_rows.append(instance_row(item, sop, series, path, linked, now))
                    stored[sop] = (path, int(linked), item.source, series)
                    if replace and existing is not None and existing[0] != path and not existing[1]:
                        replaced.append(existing[0])
                    if linked and item.source:  # its path is the source's, made absolute once
                        source_rows.append((path, item.size, item.mtime, sop, ""))
                    else:
                        source_row(source_rows, item, sop, "", cwd)
                    touched_series.add(series)
                    touched_studies.add(study)
                    status = StoreStatus.REPLACED if replace else StoreStatus.STORED
                    record = placed_record(v, item, item.transfer_syntax, path) if records else None
                    results.append(StoredInstance(status, sop, record, path, source=item.source))
                # A study's modalities change only when a study or series row is new: a commit
                # never changes an existing series' Modality, and a series a replaced instance
                # leaves stays (its count 0). Recomputing them rewrites the two studies indexes
                # that hold ModalitiesInStudy: 2 of a received file's ~8 WAL pages.
                new_rows = conn.executemany(INSERT_STUDY, studies.values()).rowcount
                new_rows += conn.executemany(INSERT_SERIES, series_rows.values()).rowcount
                conn.executemany(INSERT_INSTANCE, instance_rows)
                conn.executemany(INSERT_SOURCE, source_rows)
                self._refresh_counts(conn, touched_series, touched_studies, modalities=new_rows != 0)
                self._retire(replaced, retired)  # last: the shortest time out of its name
        except BaseException:
            for tmp, path in retired:
                self.store.restore(tmp, path)
            for path in placed:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            for tmp in in_flight:
                self.store.settled(tmp)
            raise
        for tmp in in_flight:
            self.store.settled(tmp)
        for tmp, path in retired:
            self.store.discard(tmp, path)
        for path in leftovers:
            with contextlib.suppress(OSError):
                os.unlink(path)
        return results

    def _patient_id(self, conn: Connection, known: dict[tuple[str, str], int], v: dict) -> int:
        """The patients row of ``v`` (made when new), looked up once per patient in a batch."""
        key = (str(v["PatientID"]), str(v["PatientName"]))
        found = known.get(key)
        if found is None:
            found = known[key] = self._upsert_patient(conn, v)
        return found

    def remember_source(self, path: str, size: int, mtime: float, reason: str) -> None:
        with self.write() as conn:
            record_source(conn, path, size, mtime, None, reason)

    @staticmethod
    def _upsert_patient(conn: Connection, v: dict) -> int:
        key = (str(v["PatientID"]), str(v["PatientName"]))
        row = conn.execute("SELECT id FROM patients WHERE PatientID=? AND PatientName=?", key).fetchone()
        if row is not None:
            return row[0]
        cur = conn.execute(
            "INSERT INTO patients (PatientID, PatientName, PatientNameNorm, PatientBirthDate, PatientSex)"
            " VALUES (?,?,?,?,?)",
            (*key, normalize_pn(key[1]), v["PatientBirthDate"], v["PatientSex"]),
        )
        return int(cur.lastrowid)


def _wal_bytes(pages: int) -> int:
    """The size of a WAL of ``pages`` frames of 4 KiB pages (its header, a header a frame)."""
    return 32 + pages * (4096 + 24)


def record_source(conn: Connection, path: str, size: int, mtime: float, sop: str | None, reason: str) -> None:
    """What an import saw at ``path`` (size and mtime decide "unchanged" next time)."""
    conn.execute(INSERT_SOURCE, (os.path.abspath(path), size, mtime, sop, reason))


def _read_only_reason(path: Path) -> str:
    """Why an existing database cannot be written ("" when it can, or does not exist yet): its
    file, or its folder (where SQLite keeps the ``-wal`` and ``-shm`` files beside it)."""
    if not path.is_file():
        return ""
    for what, place in (("its folder", path.parent), ("the file", path)):
        if not os.access(place, os.W_OK):
            try:
                read_only_disk = bool(os.statvfs(place).f_flag & os.ST_RDONLY)
            except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
                read_only_disk = False
            return f"{what} is on a read-only disk" if read_only_disk else f"{what} cannot be written"
    return ""


@contextlib.contextmanager
def TemporaryDatabase(*, link: bool = True) -> Iterator[Database]:
    """A throw-away database in a temporary folder, for "open this folder without touching my
    database". Imports link files in place by default; everything is removed on exit."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="dicomplus-tmpdb-")
    db = Database(Path(folder) / DB_FILE_NAME)
    db.default_link = link
    try:
        yield db
    finally:
        db.close()
        shutil.rmtree(folder, ignore_errors=True)
