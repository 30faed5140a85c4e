"""The one way in: every instance that enters the database passes here.

Sources and their duplicate policy (what happens when the SOP Instance UID is already stored):

============================  ===========  =====================================================
source                        policy       why
============================  ===========  =====================================================
folder import (indexer)       ``KEEP``     the user's files: the first of two copies wins, so an
                                           import is the same every time; a file imported again
                                           from the same path after it changed replaces its copy
listener (C-STORE SCP)        ``REPLACE``  a sender that sends an instance again sends what it
                                           now holds (a corrected object, PS3.4 B.2.3 leaves it
                                           to the SCP); the newest copy wins
C-MOVE arrivals               ``REPLACE``  they are C-STOREs to our listener (same path)
C-GET arrivals                ``REPLACE``  C-STORE sub-operations on our association: as above
WADO-RS (DICOMweb retrieve)   ``KEEP``     a retrieve fills gaps; what is already here stays
sample data                   ``KEEP``     adding the sample patients twice adds nothing
export-and-index              ``KEEP``     an export makes new UIDs (and refuses an existing
                                           series), so a duplicate is never expected
============================  ===========  =====================================================

The table is :data:`POLICY`; callers pass ``POLICY[IngestSource.X]`` so that the choice is read
here, in one place.

:class:`Ingest` owns the temporary file inside the store (:meth:`Ingest.incoming`), the atomic
move into place, indexing and the commit (:meth:`Database.commit_parsed`, one transaction per
batch), and tells its subscribers about every instance it stored. A commit answers with a
:class:`StoredInstance`: a :class:`StoreStatus` and the record as committed, with the path the
file really has (a replacement is stored under a new, unique name until the old file goes).

``network/`` sees only :class:`Sink` (a ``typing.Protocol``): open an incoming file, commit it
(or a parsed batch, for the sample PACS), subscribe. It never sees sqlite3, file-store names or
temporary-file sweeps.
"""

from __future__ import annotations

import contextlib
import enum
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import SPACE_ERRNOS, DatabaseUnavailableError, DICOMPlusError, DiskFullError
from DICOMPlusLib.models import InstanceRecord

if TYPE_CHECKING:
    from DICOMPlusLib.database.backend import Backend
    from DICOMPlusLib.database.parsing import ParsedFile

logger = get_logger(__name__)


class DuplicatePolicy(str, enum.Enum):
    """What happens when a SOPInstanceUID that is already stored arrives again.

    ``KEEP``: the stored instance stays; the newcomer is reported as ``KEPT_EXISTING`` and its
    file is not stored. The one exception is a file imported again from the *same source path*
    after it changed (size or mtime): that replaces the stored copy. ``REPLACE``: the newcomer
    always replaces the stored instance. A ``str`` enum: ``"keep"`` and ``"replace"`` (the
    command line's words) are accepted wherever a policy is.
    """

    KEEP = "keep"
    REPLACE = "replace"


class IngestSource(enum.Enum):
    """Where an instance comes from; :data:`POLICY` gives each its duplicate policy."""

    IMPORT = "import"
    LISTENER = "listener"
    C_MOVE = "c-move"
    C_GET = "c-get"
    WADO_RS = "wado-rs"
    SAMPLE = "sample"
    EXPORT = "export"


#: The duplicate policy of each source (the module documentation says why).
POLICY: dict[IngestSource, DuplicatePolicy] = {
    IngestSource.IMPORT: DuplicatePolicy.KEEP,
    IngestSource.LISTENER: DuplicatePolicy.REPLACE,
    IngestSource.C_MOVE: DuplicatePolicy.REPLACE,
    IngestSource.C_GET: DuplicatePolicy.REPLACE,
    IngestSource.WADO_RS: DuplicatePolicy.KEEP,
    IngestSource.SAMPLE: DuplicatePolicy.KEEP,
    IngestSource.EXPORT: DuplicatePolicy.KEEP,
}


class StoreStatus(enum.Enum):
    """What a commit did with one instance."""

    STORED = "stored"  # new in the database
    REPLACED = "replaced"  # was there; the newcomer replaced it
    KEPT_EXISTING = "kept-existing"  # was there; kept, the newcomer dropped (policy KEEP)
    UNREADABLE = "unreadable"  # not usable DICOM: nothing stored
    FAILED = "failed"  # could not be written or committed (disk full, database error)

    @property
    def ok(self) -> bool:
        """The instance is in the database (the newcomer's copy or the one kept)."""
        return self in (StoreStatus.STORED, StoreStatus.REPLACED, StoreStatus.KEPT_EXISTING)


@dataclass(frozen=True)
class StoredInstance:
    """The answer of a commit for one instance.

    ``record`` is the row as committed (for ``STORED`` and ``REPLACED``): its ``path`` is where
    the file really is. For ``KEPT_EXISTING``, ``path`` is the kept instance's file; for
    failures, ``reason`` says what went wrong, ``out_of_space`` whether the disk (or the
    database) is full and ``transient`` whether the database server was away for the commit
    (:class:`~DICOMPlusLib.errors.DatabaseUnavailableError`: the same commit may succeed a
    moment later).
    """

    status: StoreStatus
    sop_instance_uid: str = ""
    record: InstanceRecord | None = None
    path: str = ""
    reason: str = ""
    out_of_space: bool = False
    source: str = ""  # the imported file it came from ("" when received)
    transient: bool = False

    @property
    def ok(self) -> bool:
        return self.status.ok


def is_space_error(exc: BaseException) -> bool:
    """Whether ``exc`` means "no room": a full disk or quota, or SQLite's "database or disk is
    full" (recognised by its message: sqlite3 has no error code attribute before Python 3.11)."""
    if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in SPACE_ERRNOS):
        return True
    return isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()


def full_path(db: Backend, exc: BaseException) -> str:
    """What is full, for the message: the database (SQLite's "database or disk is full") or the
    store (a file that could not be written)."""
    if isinstance(exc, DiskFullError):
        return exc.path
    if isinstance(exc, sqlite3.Error):
        return str(getattr(db, "path", "") or db.store.root)
    return str(db.store.root)


def failure(exc: BaseException, sop: str = "") -> StoredInstance:
    """A ``FAILED`` answer for an error while writing or committing."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return StoredInstance(StoreStatus.FAILED, sop, reason=reason, out_of_space=is_space_error(exc),
                          transient=isinstance(exc, DatabaseUnavailableError))  # fmt: skip


class Incoming:
    """A temporary file inside the store, owned by this writer, being filled by a caller (one
    received instance). :meth:`Ingest.commit` moves it into place or removes it; :meth:`discard`
    removes it when the caller gives up. Raises OSError from :meth:`write`."""

    #: How much of a file's start its writer keeps in memory (:attr:`prefix`): as much as the
    #: header scan reads first (``parsing.FIRST_READ``; a shorter prefix is read back instead).
    PREFIX = 16 * 1024

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path
        self.size = 0
        #: The file's first bytes when the writer kept them (:meth:`keep_prefix`): its header is
        #: then scanned from memory, not read back from the file.
        self.prefix: bytes | None = None

    def keep_prefix(self, *parts: bytes | memoryview) -> None:
        """Keep the start of ``parts``, the first bytes written to the file (up to :attr:`PREFIX`)."""
        kept = b""
        for part in parts:
            kept += bytes(memoryview(part)[: self.PREFIX - len(kept)])
            if len(kept) >= self.PREFIX:
                break
        self.prefix = kept

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.size += n

    def writev(self, *parts: bytes | memoryview) -> None:
        """Write ``parts`` one after another, in one system call when the kernel takes them all."""
        total = sum(len(p) for p in parts)
        n = os.writev(self.fd, parts)
        self.size += n
        if n < total:
            self.write(memoryview(b"".join(parts))[n:])

    def fsync(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


#: A subscriber: called (on the committing thread, after the commit) with each instance stored
#: or replaced and the ``context`` the caller gave the commit (e.g. the C-STORE request's).
Subscriber = Callable[[StoredInstance, object], object]


class Sink(Protocol):
    """What a transport needs to put instances into a database (network/ depends on this only)."""

    #: Writes that failed for lack of space so far, and what was full at the last (a path).
    space_failures: int
    full: str

    def incoming(self) -> Incoming:
        """A new temporary file inside the store (raises OSError when even that is impossible)."""
        ...

    def commit(
        self, incoming: Incoming, policy: DuplicatePolicy, *, context: object = None, fsync: bool = False
    ) -> StoredInstance:
        """Parse, move into place, index, commit, tell subscribers; never raises for the data."""
        ...

    def read_header(self, incoming: Incoming, *, fsync: bool = False) -> ParsedFile | StoredInstance:
        """The first half of :meth:`commit`: the parsed header, or the failure to answer."""
        ...

    def commit_header(
        self, parsed: ParsedFile, policy: DuplicatePolicy, *, context: object = None, fsync: bool = False
    ) -> StoredInstance:
        """The second half of :meth:`commit`: move into place, index, commit, tell subscribers."""
        ...

    def commit_headers(
        self, items: Sequence[tuple[ParsedFile, object]], policy: DuplicatePolicy, *, fsync: bool = False
    ) -> list[StoredInstance]:
        """:meth:`commit_header` for several (parsed, context) in one transaction; one result
        each, in order; never raises for the data."""
        ...

    def commit_batch(
        self,
        items: Sequence[ParsedFile],
        policy: DuplicatePolicy,
        *,
        link: bool = False,
        context: object = None,
    ) -> list[StoredInstance]:
        """Store and index already parsed files in one transaction (the sample PACS's data)."""
        ...

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` for every instance stored from now on; returns the unsubscribe."""
        ...

    def note_space(self, exc: BaseException) -> bool:
        """Count ``exc`` when it means "no room" (a write of the caller's failed); whether it did."""
        ...


class Ingest:
    """The :class:`Sink` of one database (``db.ingest``), and the batch path of imports."""

    def __init__(self, db: Backend) -> None:
        self.db = db
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        #: Writes that failed for lack of space, and what was full at the last: a retrieve
        #: compares the count before and after, to say "the disk is full" rather than what the
        #: sender made of our refusals (0xA702 "out of resources", a C-MOVE that "brought nothing").
        self.space_failures = 0
        self.full = ""

    def note_space(self, exc: BaseException) -> bool:
        if not is_space_error(exc):
            return False
        with self._lock:
            self.space_failures += 1
            self.full = full_path(self.db, exc)
        return True

    # -- subscribers -----------------------------------------------------------------------------
    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

        return unsubscribe

    def _announce(self, results: Sequence[StoredInstance], context: object) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for result in results:
            if result.status not in (StoreStatus.STORED, StoreStatus.REPLACED):
                continue
            for subscriber in subscribers:
                try:
                    subscriber(result, context)
                except Exception:  # one bad subscriber must not fail a stored instance
                    logger.exception("ingest subscriber failed")

    # -- one file at a time (network receives) -------------------------------------------------
    def incoming(self) -> Incoming:
        fd, path = self.db.store.temporary_file()
        return Incoming(fd, path)

    def commit(
        self, incoming: Incoming, policy: DuplicatePolicy, *, context: object = None, fsync: bool = False
    ) -> StoredInstance:
        """Parse ``incoming``, move it into the store, index and commit it (one transaction):
        :meth:`read_header`, then :meth:`commit_header`.

        Never raises for a bad data set or a failed write: the status says so (``UNREADABLE``,
        ``FAILED`` with ``out_of_space``), and nothing is left behind: neither the temporary
        file nor a file moved into place without its committed row.
        """
        parsed = self.read_header(incoming, fsync=fsync)
        if isinstance(parsed, StoredInstance):
            return parsed
        return self.commit_header(parsed, policy, context=context, fsync=fsync)

    def read_header(self, incoming: Incoming, *, fsync: bool = False) -> ParsedFile | StoredInstance:
        """The parsed header of a whole ``incoming`` file, ready for :meth:`commit_header`, or
        the failure to answer (``FAILED``: a sync that failed; ``UNREADABLE``: not usable
        DICOM), its file then removed. With ``fsync``, the file's bytes are synced first."""
        from DICOMPlusLib.database.parsing import parse_incoming, parse_path

        try:
            if fsync:
                incoming.fsync()
            if incoming.fd >= 0:  # read the header through the descriptor it was written by
                parsed = parse_incoming(incoming.fd, incoming.path, incoming.prefix)
                incoming.close()
            else:  # the caller closed it already (a DICOMweb part)
                parsed = parse_path(incoming.path, keep_data=False)
        except OSError as exc:
            incoming.discard()
            self.note_space(exc)
            return failure(exc)
        except DICOMPlusError as exc:
            incoming.discard()
            return StoredInstance(StoreStatus.UNREADABLE, reason=str(exc))
        except RecursionError:
            incoming.discard()
            return StoredInstance(StoreStatus.UNREADABLE, reason="nested too deeply")
        except Exception as exc:  # a parser bug on one data set must not end a transfer
            incoming.discard()
            logger.exception("cannot parse %s", incoming.path)
            return StoredInstance(StoreStatus.UNREADABLE, reason=f"{type(exc).__name__}: {exc}")
        parsed.source = ""  # not an import: no source path to remember
        parsed.data = None
        parsed.stored_tmp = incoming.path
        return parsed

    def commit_header(
        self, parsed: ParsedFile, policy: DuplicatePolicy, *, context: object = None, fsync: bool = False
    ) -> StoredInstance:
        """Move a received file :meth:`read_header` parsed into the store, index and commit it
        (one transaction), tell the subscribers. Never raises for a failed write: the status
        says so, and the file does not stay. With ``fsync``, its row and its name are synced
        too before this returns."""
        return self.commit_headers([(parsed, context)], policy, fsync=fsync)[0]

    def commit_headers(
        self, items: Sequence[tuple[ParsedFile, object]], policy: DuplicatePolicy, *, fsync: bool = False
    ) -> list[StoredInstance]:
        """:meth:`commit_header` for several received files at once: one transaction (a retrieve
        over several associations commits what they brought together: a commit per instance
        was a quarter of its CPU, docs/performance.md), each file's subscribers told with its
        own ``context``. When the transaction fails, every item gets the failure."""
        results = self._commit_items(items, policy)
        if fsync:
            for i, result in enumerate(results):
                if result.status not in (StoreStatus.STORED, StoreStatus.REPLACED) or result.record is None:
                    continue
                try:  # answered only once its row and its name are on the disk too, not just its bytes
                    self.db.make_durable(result.record.path)
                except OSError as exc:
                    logger.warning("cannot sync instance %s: %s", result.sop_instance_uid, exc)
                    self.note_space(exc)
                    results[i] = failure(exc, result.sop_instance_uid)
        return results

    def commit_bytes(self, data: bytes, policy: DuplicatePolicy, *, context: object = None) -> StoredInstance:
        """A whole Part 10 file held in memory (raises ImportFileError when it is not DICOM)."""
        from DICOMPlusLib.database.parsing import parse_bytes

        return self.commit_one(parse_bytes(data), policy, context=context)

    def commit_one(
        self, parsed: ParsedFile, policy: DuplicatePolicy, *, context: object = None
    ) -> StoredInstance:
        return self._commit_items([(parsed, context)], policy)[0]

    def _commit_items(
        self, items: Sequence[tuple[ParsedFile, object]], policy: DuplicatePolicy
    ) -> list[StoredInstance]:
        parsed_files = [parsed for parsed, _ in items]
        try:
            results = self.db.commit_parsed(parsed_files, on_duplicate=policy)
        except BaseException as exc:
            for parsed in parsed_files:
                if parsed.stored_tmp:  # not moved into place, or moved and taken back
                    with contextlib.suppress(OSError):
                        os.unlink(parsed.stored_tmp)
            if not isinstance(exc, Exception):
                raise
            sops = [str(parsed.values.get("SOPInstanceUID") or "") for parsed in parsed_files]
            logger.warning(
                "cannot store instance%s %s: %s", "s" if len(sops) > 1 else "", ", ".join(sops), exc
            )
            self.note_space(exc)
            return [failure(exc, sop) for sop in sops]
        for parsed, result in zip(parsed_files, results, strict=True):
            if parsed.stored_tmp and result.status not in (StoreStatus.STORED, StoreStatus.REPLACED):
                with contextlib.suppress(OSError):  # kept (the backend removes it too) or unreadable
                    os.unlink(parsed.stored_tmp)
        # STORED or REPLACED: the backend removed the in-flight name after its commit (FileStore.place)
        for (_, context), result in zip(items, results, strict=True):
            self._announce([result], context)
        return results

    # -- batches (folder import, sample data) --------------------------------------------------
    def commit_batch(
        self,
        items: Sequence[ParsedFile],
        policy: DuplicatePolicy,
        *,
        link: bool = False,
        context: object = None,
        records: bool = True,
    ) -> list[StoredInstance]:
        """Store and index ``items`` in one transaction (raises on a database error: an import
        reports it; nothing of the batch is committed then). ``records=False``: the caller reads
        only statuses and paths, so the results' ``record`` may be None, unless someone has
        subscribed (their notifications carry the records)."""
        announce = bool(self._subscribers)
        results = self.db.commit_parsed(items, link=link, on_duplicate=policy, records=records or announce)
        if announce:
            self._announce(results, context)
        return results
