"""The C-STORE SCP's receiving path: a data set streamed into the database's ingest.

Every instance received by C-STORE (listener, sample PACS, a C-GET or C-MOVE retrieve) follows
one path, in this order; the listener and the sample PACS (so also a C-MOVE's arrivals) go all
the way *before* the C-STORE response is sent (PS3.4 B.2.3: success means the SCP has taken
responsibility for the instance):

1. the Part 10 file (preamble, file meta built from the C-STORE request, PS3.10 7.1, and the
   data set bytes exactly as received) is streamed into an incoming file of the database's
   ingest (:mod:`DICOMPlusLib.database.ingest`, seen here only as its ``Sink`` protocol);
2. the ingest parses its header (:meth:`IncomingFile.read_header`);
3. it moves the file atomically into the store, commits the index rows (one transaction) with the
   duplicate policy of the source (``REPLACE`` for C-STORE) and tells its subscribers, with the
   path the file really has, :class:`ReceivedInstance` (:meth:`IncomingFile.commit`).

A C-GET's sub-operations (our SCU's :mod:`~DICOMPlusLib.network.dimse.qrscu`) are answered
between 2. and 3.: the PACS keeps its copy, and what that order gains and what it changes are
said there.

Out of disk space (or any write error) answers 0xA700 "Refused: Out of Resources" and leaves no
partial file (a full disk is logged once, as a warning, until an instance is stored again); an
unreadable data set answers 0xC000 "Error: Cannot understand".
"""

from __future__ import annotations

import struct
import threading
import time
from typing import TYPE_CHECKING

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.database.ingest import (
    POLICY,
    Incoming,
    IngestSource,
    Sink,
    StoredInstance,
    StoreStatus,
)
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import disk_holding
from DICOMPlusLib.network.dimse import ul
from DICOMPlusLib.network.dimse.status import Status
from DICOMPlusLib.uids import valid_uid_text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from DICOMPlusLib.database import DatabaseProtocol
    from DICOMPlusLib.database.parsing import ParsedFile

logger = get_logger(__name__)


@dataclass(frozen=True)
class ReceiveMeta:
    """What the C-STORE request and the association say about an incoming instance."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    calling_ae: str = ""
    called_ae: str = ""
    peer: str = ""  # "host:port"
    move_originator_aet: str = ""
    move_originator_message_id: int | None = None


@dataclass(frozen=True)
class ReceivedInstance:
    """An instance that is stored and indexed (the notification ``on_instance`` receives)."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    transfer_syntax: str
    path: str
    size: int
    status: str  # "added" or "replaced"
    calling_ae: str = ""
    peer: str = ""
    move_originator_aet: str = ""
    move_originator_message_id: int | None = None
    received_at: float = 0.0


@dataclass(frozen=True)
class StoreOutcome:
    """The answer to one C-STORE: its status, a comment, and the instance when it was stored.
    ``answered``: success was answered before the instance was committed (a C-GET's
    sub-operation), and ``status`` is what its commit then found. ``transient``: the commit
    failed because the database server was away (``StoredInstance.transient``): asked for
    again a moment later, the instance can be stored."""

    status: int
    comment: str = ""
    instance: ReceivedInstance | None = None
    answered: bool = False
    transient: bool = False


def _pad(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"UN"):
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def file_meta_bytes(meta: ReceiveMeta) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group (PS3.10 7.1) for a received data
    set, in Explicit VR Little Endian as PS3.10 requires."""
    elements = [
        _element(0x00020001, b"OB", b"\x00\x01"),
        _element(0x00020002, b"UI", _pad(meta.sop_class_uid.encode("ascii"), b"\0")),
        _element(0x00020003, b"UI", _pad(meta.sop_instance_uid.encode("ascii"), b"\0")),
        _element(0x00020010, b"UI", _pad(meta.transfer_syntax.encode("ascii"), b"\0")),
        _element(0x00020012, b"UI", _pad(ul.IMPLEMENTATION_CLASS_UID.encode("ascii"), b"\0")),
        _element(0x00020013, b"SH", _pad(ul.IMPLEMENTATION_VERSION_NAME.encode("ascii"), b" ")),
    ]
    if meta.calling_ae:
        elements.append(_element(0x00020016, b"AE", _pad(meta.calling_ae.encode("ascii", "replace"), b" ")))
    body = b"".join(elements)
    return bytes(128) + b"DICM" + _element(0x00020000, b"UL", struct.pack("<I", len(body))) + body


class IncomingFile:
    """One instance being received by one association: a temporary file of the database's
    :class:`~DICOMPlusLib.database.ingest.Sink`, starting with the file meta built from the
    C-STORE request.

    The file meta goes to the file with the first data set fragment, in one ``writev``: one
    system call fewer per instance (and, with several associations' threads, one hand-off of
    the GIL fewer). A write error surfaces at that first write and is answered as any other
    (``write_safely``, then "Out of Resources"). The file's first 16 KiB (file meta and the
    start of the data set, as written) are kept: the commit scans the header from them instead
    of reading it back (``Incoming.keep_prefix``)."""

    def __init__(self, sink: DatabaseSink, meta: ReceiveMeta, file: Incoming | None = None) -> None:
        self.meta = meta
        self.sink = sink
        self.file = file if file is not None else sink.ingest.incoming()
        self.error: BaseException | None = None
        self._head: bytes | None = file_meta_bytes(meta)
        self.parsed: ParsedFile | None = None  # its header, once read (read_header)

    @property
    def size(self) -> int:
        return self.file.size + (len(self._head) if self._head is not None else 0)

    def write(self, data: bytes | memoryview) -> None:
        head, self._head = self._head, None
        if head is None:
            self.file.write(data)
        else:
            self.file.writev(head, data)
            self.file.keep_prefix(head, data)  # the header is scanned from it at the commit

    def write_safely(self, data: bytes | memoryview) -> None:
        """Write, remembering (instead of raising) the first error: the rest of the message
        still has to be read off the connection before the failure can be answered.

        The error is kept without its traceback: its frames hold ``self`` (a reference cycle)
        and ``data``, a view of the received data set (the pynetdicom engine's
        ``BytesIO.getbuffer()``), which only the garbage collector would then free; Python
        3.12.1's collector crashes on such a view (CPython gh-111049)."""
        if self.error is not None:
            return
        try:
            self.write(data)
        except OSError as exc:
            self.error = exc.with_traceback(None)
            self.file.discard()

    def discard(self) -> None:
        self.file.discard()

    def finish(self) -> StoreOutcome:
        """Store the whole instance (:meth:`read_header`, then :meth:`commit`): what the
        listener does before its answer."""
        if self._head is not None:  # a data set without a fragment of data: the file meta alone
            self.write_safely(b"")
        return self.sink.finish(self)

    def read_header(self) -> StoreOutcome | None:
        """The refusal to answer (a write that failed, a data set that cannot be read; the file
        is then gone), or None: the instance can be committed (:meth:`commit`)."""
        if self._head is not None:
            self.write_safely(b"")
        return self.sink.read_header(self)

    def commit(self) -> StoreOutcome:
        """Move the instance :meth:`read_header` read into the store, index and commit it."""
        return self.sink.commit(self)


class DatabaseSink:
    """Answers C-STOREs by handing each received instance to the database's ingest
    (:class:`~DICOMPlusLib.database.ingest.Sink`) with the policy of ``source``, and mapping
    the outcome to a DIMSE status. Notifications come from the ingest's subscribers (see
    :meth:`Notifier.attach`), so every way in announces alike."""

    def __init__(
        self, db: DatabaseProtocol, *, fsync: bool = False, source: IngestSource = IngestSource.LISTENER
    ) -> None:
        self.db = db
        self.ingest: Sink = db.ingest
        self.policy = POLICY[source]
        self.fsync = fsync
        #: Whether the full disk was said since the last instance stored: one line when it fills,
        #: not one per refused instance (a sender may go on sending thousands).
        self._full_said = False
        self._said_lock = threading.Lock()
        #: Whether a transaction of several instances failed (:meth:`commit_many`): the callers
        #: that gather instances for one then commit each alone.
        self.one_at_a_time = False

    def begin(self, meta: ReceiveMeta, spare: Incoming | None = None) -> IncomingFile:
        """Open the temporary file, or take ``spare`` (one :meth:`spare` made ahead); raises
        OSError when even that is impossible."""
        return IncomingFile(self, meta, spare)

    def spare(self) -> Incoming | None:
        """A temporary file made ahead of the C-STORE that will fill it (None when it cannot be
        made now: :meth:`begin` then tries again and reports why).

        Creating a file costs 0.2-1 ms (an ext4 create on a loaded machine), and a C-GET's SCP
        sends its next instance only after our response to the previous one: made while the
        SCP reads and sends its next file, the create is off that serial path. The caller
        discards an unused one (a crash leaves it to the store's sweep, as any temporary)."""
        try:
            return self.ingest.incoming()
        except OSError:
            return None

    def refuse(self, exc: BaseException) -> StoreOutcome:
        if self.ingest.note_space(exc):
            return self._out_of_space()
        return StoreOutcome(Status.OUT_OF_RESOURCES, f"cannot write: {getattr(exc, 'strerror', None) or exc}")

    def _out_of_space(self) -> StoreOutcome:
        """0xA700 for a store that found no room (PS3.4 Table GG.4-1: Refused, Out of Resources),
        said once in the log until an instance is stored again."""
        with self._said_lock:
            said, self._full_said = self._full_said, True
        if not said:
            logger.warning("%s is full: instances sent to us are refused (0xA700, out of resources) until "
                           "there is room; free space there", disk_holding(self.ingest.full))  # fmt: skip
        return StoreOutcome(Status.OUT_OF_RESOURCES, "out of disk space")

    def store_bytes(self, meta: ReceiveMeta, data: bytes | memoryview) -> StoreOutcome:
        """The whole path for a data set received in memory (the pynetdicom engine)."""
        if not valid_uid_text(meta.sop_instance_uid) or not valid_uid_text(meta.sop_class_uid):
            return StoreOutcome(Status.CANNOT_UNDERSTAND, "invalid Affected SOP Class/Instance UID")
        try:
            incoming = self.begin(meta)
        except OSError as exc:
            return self.refuse(exc)
        incoming.write_safely(data)
        return self.finish(incoming)

    def finish(self, incoming: IncomingFile) -> StoreOutcome:
        """Parse, move into place, index, notify (all in the ingest). Never raises; the outcome
        carries the status."""
        return self.read_header(incoming) or self.commit(incoming)

    def read_header(self, incoming: IncomingFile) -> StoreOutcome | None:
        """The first half of :meth:`finish`: the header of the whole file read (``incoming.parsed``),
        or the refusal to answer. Never raises."""
        if incoming.error is not None:
            return self.refuse(incoming.error)
        parsed = self.ingest.read_header(incoming.file, fsync=self.fsync)
        if isinstance(parsed, StoredInstance):
            return self._outcome(parsed, incoming.meta)
        incoming.parsed = parsed
        return None

    def commit(self, incoming: IncomingFile) -> StoreOutcome:
        """The second half of :meth:`finish`: the instance :meth:`read_header` read moved into
        place, indexed and committed, the subscribers told. Never raises."""
        return self.commit_many([incoming])[0]

    def commit_many(self, incomings: Sequence[IncomingFile]) -> list[StoreOutcome]:
        """:meth:`commit` for several instances whose headers are read, in one transaction."""
        items = []
        for incoming in incomings:
            parsed, incoming.parsed = incoming.parsed, None
            assert parsed is not None, "commit() before read_header()"
            items.append((parsed, incoming.meta))
        results = self.ingest.commit_headers(items, self.policy, fsync=self.fsync)
        if len(items) > 1 and all(r.status is StoreStatus.FAILED and not r.out_of_space for r in results):
            # one instance's row may have failed them all: from now on, one a transaction (what
            # a retrieve asks for again then fails alone)
            self.one_at_a_time = True
        return [
            self._outcome(result, incoming.meta) for result, incoming in zip(results, incomings, strict=True)
        ]

    def _outcome(self, result: StoredInstance, meta: ReceiveMeta) -> StoreOutcome:
        if result.status is StoreStatus.UNREADABLE:
            logger.info("%s: cannot understand %s (%s); answered 0xC000", meta.peer, meta.sop_instance_uid,
                        result.reason)  # fmt: skip
            return StoreOutcome(
                Status.CANNOT_UNDERSTAND, f"cannot understand the data set: {result.reason}"[:64]
            )
        if result.status is StoreStatus.FAILED:
            if result.out_of_space:
                return self._out_of_space()
            return StoreOutcome(
                Status.OUT_OF_RESOURCES, f"cannot write: {result.reason}", transient=result.transient
            )
        if self._full_said:
            self._full_said = False  # room again: a disk that fills again is said again
        return StoreOutcome(Status.SUCCESS, "", received_instance(result, meta))


def received_instance(result: StoredInstance, meta: ReceiveMeta) -> ReceivedInstance:
    """The notification for a stored instance: the committed record (its real path) and what
    the C-STORE request said."""
    record = result.record
    assert record is not None  # a stored or replaced instance has its record
    return ReceivedInstance(
        sop_instance_uid=record.SOPInstanceUID,
        sop_class_uid=record.SOPClassUID or meta.sop_class_uid,
        series_instance_uid=record.SeriesInstanceUID,
        study_instance_uid=record.StudyInstanceUID,
        patient_id=record.PatientID,
        transfer_syntax=record.TransferSyntaxUID or meta.transfer_syntax,
        path=record.path,
        size=record.size or 0,
        status="replaced" if result.status is StoreStatus.REPLACED else "added",
        calling_ae=meta.calling_ae,
        peer=meta.peer,
        move_originator_aet=meta.move_originator_aet,
        move_originator_message_id=meta.move_originator_message_id,
        received_at=time.time(),
    )
