"""The sample PACS: a Query/Retrieve SCP (PS3.4 Annex C) over a DICOMPlus database.

Services: Verification (C-ECHO), Storage (C-STORE, through the same persist-then-respond path
as the listener), C-FIND in the Patient Root and Study Root information models at every level
they define (C.6.1, C.6.2), C-MOVE to configured destinations (an unknown destination answers
0xA801, C.4.2.1.4.1; a known one that cannot be reached 0xA702 with the reason) and C-GET
(C.4.3). Matching is the database's own (PS3.4 C.2.2.2:
universal, single value, wildcard, UID list, date/time range), on any attribute the database
stores; return keys the database has no column for are read from the stored headers.

Built on pynetdicom (``start_server(block=False)``, event handlers). The retrieve
sub-operations send the stored bytes, or decode a losslessly compressed instance for a requester
that accepts only uncompressed syntaxes (:mod:`~DICOMPlusLib.network.pacs.qrscp_send`).
"""

from __future__ import annotations

import concurrent.futures
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from DICOMPlusLib import uids
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import DICOMPlusError
from DICOMPlusLib.models import QueryLevel
from DICOMPlusLib.network.dimse.messages import (  # the Q/R information models (PS3.4 C.6.1, C.6.2)
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
)
from DICOMPlusLib.network.dimse.status import Status
from DICOMPlusLib.network.nodes import TLSSettings, check_ae_title, check_port
from DICOMPlusLib.network.pacs import SAMPLE_AE_TITLE, SAMPLE_PORT, qrscp_send
from DICOMPlusLib.network.storage import DatabaseSink, Notifier
from DICOMPlusLib.uninterrupted import uninterrupted

if TYPE_CHECKING:
    from pynetdicom import AE
    from pynetdicom.transport import ThreadedAssociationServer

    from DICOMPlusLib.database import DatabaseProtocol

logger = get_logger(__name__)


#: Seconds the running associations get to end on their own when the server is stopped (a
#: retrieve under way finishes), as ``dicomplus listen`` gives its own.
STOP_GRACE = 10.0

_PATIENT_ROOT = {PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET}
_LEVELS = {"PATIENT": QueryLevel.PATIENT, "STUDY": QueryLevel.STUDY, "SERIES": QueryLevel.SERIES,
           "IMAGE": QueryLevel.INSTANCE}  # fmt: skip
# Unique keys per level (C.6.1.1, C.6.2.1): what identifies the entities to retrieve.
_UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
           "IMAGE": "SOPInstanceUID"}  # fmt: skip
_SKIP = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "InstanceAvailability",
         "TimezoneOffsetFromUTC"}  # fmt: skip

# Status codes of the Query/Retrieve service (PS3.4 C.4.1.1.4, C.4.2.1.5)


@dataclass(frozen=True)
class Destination:
    """A C-MOVE destination: the AE title a C-MOVE names, and where it listens."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, spec: str) -> Destination:
        from DICOMPlusLib.network.nodes import RemoteNode

        node = RemoteNode.parse(spec)
        return cls(node.ae_title, node.host, node.port)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class QRConfig:
    """How the sample PACS serves: its AE title and address, its C-MOVE destinations, whom it
    accepts, and its limits."""

    ae_title: str = SAMPLE_AE_TITLE
    port: int = SAMPLE_PORT
    host: str = ""
    destinations: tuple[Destination, ...] = ()
    allowed_calling_aets: tuple[str, ...] = ()
    require_called_ae: bool = False  # reject associations addressed to another AE title
    max_associations: int = 16
    max_pdu: int = 256 * 1024
    timeout: float = 60.0
    tls: TLSSettings | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title, "server AE title"))
        if self.port:
            check_port(self.port)


def _retrieve_criteria(identifier, level: str, patient_root: bool) -> list[tuple[str, str]]:
    """Unique keys at and above ``level`` (C.4.2.2.1: a retrieve names entities by unique keys)."""
    order = ["PATIENT", "STUDY", "SERIES", "IMAGE"] if patient_root else ["STUDY", "SERIES", "IMAGE"]
    keys = []
    for lv in order[: order.index(level) + 1]:
        keyword = _UNIQUE[lv]
        value = identifier.get(keyword)
        if value not in (None, ""):
            keys.append((keyword, _text(value)))
    return keys


class QueryRetrieveSCP:
    """The sample PACS as an object: ``start()``, ``stop()``, ``describe()``."""

    def __init__(
        self, db: DatabaseProtocol, config: QRConfig | None = None, *, notifier: Notifier | None = None
    ) -> None:
        self.db = db
        self.config = config or QRConfig()
        self.notifier = notifier or Notifier()
        self.sink = DatabaseSink(db)
        self._detach: Callable[[], None] | None = None
        self._server: ThreadedAssociationServer | None = None
        self._ae: AE | None = None
        self._destinations = {d.ae_title: d for d in self.config.destinations}
        # Database reads run on two threads of our own: pynetdicom serves each association on a
        # new thread, and every thread that reads the database keeps a connection open.
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._stored_bytes = False
        # the association carrying each running retrieve's C-STORE sub-operations, by id(event)
        self._store_associations: dict[int, object] = {}

    def _read(self, func, *args, **kwargs):
        if self._readers is None:
            return func(*args, **kwargs)
        return self._readers.submit(func, *args, **kwargs).result()

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else 0

    def start(self) -> QueryRetrieveSCP:
        from pynetdicom import AE, build_context, evt

        from DICOMPlusLib.network.pacs.pynetdicom_glue import (
            nodelay_handler,
            rejection_handler,
            start_server,
            storage_sop_classes,
            store_handler,
            transfer_syntaxes_preferred,
        )

        _import_what_associations_need()
        cfg = self.config
        ae = AE(ae_title=cfg.ae_title)
        ae.maximum_pdu_size = cfg.max_pdu
        ae.maximum_associations = cfg.max_associations
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = cfg.timeout
        if cfg.allowed_calling_aets:
            ae.require_calling_aet = list(cfg.allowed_calling_aets)
        ae.require_called_aet = cfg.require_called_ae
        uncompressed = [uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian]
        ae.add_supported_context(uids.Verification, uncompressed)
        for uid in (
            PATIENT_ROOT_FIND,
            PATIENT_ROOT_MOVE,
            PATIENT_ROOT_GET,
            STUDY_ROOT_FIND,
            STUDY_ROOT_MOVE,
            STUDY_ROOT_GET,
        ):
            ae.add_supported_context(uid, uncompressed)
        syntaxes = transfer_syntaxes_preferred()
        for uid in sorted(set(storage_sop_classes()) | self._stored_sop_classes()):
            # both roles: SCP for C-STORE pushed to us, SCU for C-GET sub-operations (PS3.7 D.3.3.4)
            ae.add_supported_context(uid, syntaxes, scu_role=True, scp_role=True)
        self._build_context = build_context
        handlers = [
            (evt.EVT_CONN_OPEN, nodelay_handler),
            (evt.EVT_C_STORE, store_handler(self.sink)),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_GET, self._on_get),
            (
                evt.EVT_REJECTED,
                rejection_handler(cfg.ae_title, cfg.allowed_calling_aets, cfg.require_called_ae),
            ),
        ]
        ssl_context = cfg.tls.server_context() if cfg.tls else None
        qrscp_send.use_stored_bytes(True)
        self._stored_bytes = True
        self.notifier.start()
        self._detach = self.notifier.attach(self.sink.ingest)
        self._readers = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="dicomplus-qr-db")
        try:
            self._server = start_server(ae, cfg.host, cfg.port, handlers, ssl_context)
        except BaseException:
            self.stop()
            raise
        self._ae = ae
        logger.info("Q/R SCP %s listening on port %d", cfg.ae_title, self.port)
        return self

    def _stored_sop_classes(self) -> set[str]:
        """The private SOP classes of the stored instances (a vendor's, e.g. Philips
        1.3.46.670589.11.0.0.12.2), so that a C-GET requester proposing them is accepted;
        standard classes are those pynetdicom knows as storage classes."""
        from pydicom.uid import UID

        classes = self._read(self.db.sop_classes)
        return {str(uid) for uid in classes if uid and UID(uid).is_private}

    def stop(self, grace: float = 0.0, *, at_once: Callable[[], bool] | None = None) -> None:
        """Stop accepting; let the running associations (a C-GET or C-MOVE under way) end on
        their own for up to ``grace`` seconds (``dicomplus serve`` and the panel give them
        :data:`STOP_GRACE`, as ``dicomplus listen`` does), which ``at_once()`` turning true (a
        second Ctrl-C or SIGTERM, a cancel) or a KeyboardInterrupt cuts short; then end those
        left (an A-ABORT, and after a second the connection closed under them: a peer that
        stopped reading a C-GET's or C-MOVE's C-STORE held them, and the process, for the
        network timeout)."""
        if self._server is not None:
            from DICOMPlusLib.network.pacs.pynetdicom_glue import end_associations, let_associations_end

            server, self._server = self._server, None
            try:  # a second Ctrl-C may come at any point: the associations are ended all the same
                server.shutdown()
                let_associations_end(server.ae, grace, at_once)
            finally:
                # uninterrupted: one more Ctrl-C waits for their end (a second or so). Raised
                # inside a lock of an association's, it left the lock held and the association's
                # DUL thread, which the process waits for at its exit, blocked on it for good.
                with uninterrupted:
                    end_associations(server.ae)
                    self._stopped()
        else:
            self._stopped()

    def _stopped(self) -> None:
        """What outlives the associations: the database readers, the notifier."""
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        if self._stored_bytes:
            self._stored_bytes = False
            qrscp_send.use_stored_bytes(False)
        if self._detach is not None:
            self._detach()
            self._detach = None
        self.notifier.stop()

    def __enter__(self) -> QueryRetrieveSCP:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def add_destination(self, destination: Destination) -> None:
        self._destinations[destination.ae_title] = destination

    @property
    def destinations(self) -> list[Destination]:
        return list(self._destinations.values())

    def describe(self) -> dict:
        from DICOMPlusLib.database.backends import location

        return {
            "ae_title": self.config.ae_title,
            "host": self.config.host or "127.0.0.1",
            "hostname": socket.gethostname(),
            "port": self.port,
            "tls": self.config.tls is not None,
            "calling_ae_titles": list(self.config.allowed_calling_aets) or "any",
            "destinations": [str(d) for d in self.destinations],
            "database": location(self.db),
            "contents": self._read(self.db.info),
        }

    # -- C-FIND --------------------------------------------------------------------------------
    def _on_find(self, event):
        from pydicom import Dataset

        # the responses written by this thread, not queued PDU by PDU for pynetdicom's DUL
        # thread, which took the GIL from this one only every switch interval (5 ms): an
        # image-level C-FIND of 300 instances answered in bursts, 0.2 s (qrscp_wire)
        qrscp_send.install_sender(event.assoc)
        identifier = event.identifier
        model = str(event.request.AffectedSOPClassUID)
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in _LEVELS or (level == "PATIENT" and model not in _PATIENT_ROOT):
            yield Status.DATA_SET_DOES_NOT_MATCH, None
            return
        criteria, wanted = [], []
        for elem in identifier:
            keyword = elem.keyword
            if elem.tag.group in (0x0000, 0x0002) or keyword in _SKIP:
                continue
            if not keyword:
                if elem.tag.is_private:  # returned (empty when unknown), never matched
                    wanted.append(elem)
                continue
            wanted.append(elem)
            if elem.VR == "SQ":
                criteria += _sequence_keys(keyword, elem.value)
                continue
            if elem.value in (None, "", b""):
                continue
            text = _text(elem.value)
            if text and text != "*":
                criteria.append((keyword, text))
        try:
            records = self._read(self.db.search, _LEVELS[level], criteria)
        except DICOMPlusError as exc:
            logger.info("C-FIND refused: %s", exc)
            yield Status.CANNOT_UNDERSTAND, None
            return
        for record in records:
            if event.is_cancelled:
                yield Status.CANCEL, None
                return
            values = record.to_dict()
            answer = Dataset()
            answer.QueryRetrieveLevel = level
            header = None
            for elem in wanted:
                keyword = elem.keyword
                value = values.get(keyword) if keyword else None
                if value is None:
                    if header is None:
                        header = self._representative_header(level, values) or Dataset()
                    if elem.tag in header and _same_private_block(elem.tag, identifier, header):
                        value = header[elem.tag].value
                if not keyword:
                    answer.add_new(elem.tag, header[elem.tag].VR if value is not None else elem.VR, value)
                elif elem.VR == "SQ":
                    setattr(answer, keyword, value or [])
                else:
                    setattr(answer, keyword, "" if value is None else value)
            if any(isinstance(v, str) and not v.isascii() for v in values.values()) or (
                header is not None and "SpecificCharacterSet" in header
            ):
                answer.SpecificCharacterSet = "ISO_IR 192"
            answer.RetrieveAETitle = self.config.ae_title
            yield Status.PENDING, answer

    def _representative_header(self, level: str, values: dict):
        """The stored header of one instance under the matched entity (for return keys the
        database keeps no column for)."""
        key = _UNIQUE[level]
        uid = values.get(key)
        if not uid:
            return None
        try:
            if level == "IMAGE":
                return self._read(self.db.header, uid)
            found = self._read(self.db.search, QueryLevel.INSTANCE, {key: uid}, limit=1)
            return self._read(self.db.header, found[0].SOPInstanceUID) if found else None
        except DICOMPlusError:
            return None

    # -- C-MOVE / C-GET --------------------------------------------------------------------------
    def _matches(self, event) -> list:
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in _LEVELS:
            return []
        patient_root = str(event.request.AffectedSOPClassUID) in _PATIENT_ROOT
        criteria = _retrieve_criteria(identifier, level, patient_root)
        if not criteria:
            return []
        return self._read(self.db.search, QueryLevel.INSTANCE, criteria)

    def _contexts_for(self, records) -> list:
        pairs = []
        for r in records:
            pair = (r.SOPClassUID, r.TransferSyntaxUID or uids.ImplicitVRLittleEndian)
            if pair not in pairs:
                pairs.append(pair)
        contexts, uncompressed = [], [uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian]
        for sop_class, ts in pairs:
            syntaxes = [ts] + [t for t in uncompressed if t != ts]
            contexts.append(self._build_context(sop_class, syntaxes))
        if len(contexts) > 128:
            logger.warning(
                "C-MOVE needs %d presentation contexts; only the first 128 are proposed", len(contexts)
            )
        return contexts[:128]

    def _on_move(self, event):
        from pynetdicom import evt

        destination = self._destinations.get(str(event.move_destination or "").strip())
        if destination is None:
            logger.info("C-MOVE to unknown destination %r refused (0xA801)", event.move_destination)
            yield None, None
            return
        records = self._matches(event)
        _prefetch(records)

        def established(store_event) -> None:
            qrscp_send.install_sender(store_event.assoc)
            self._store_associations[id(event)] = store_event.assoc

        yield (
            destination.host,
            destination.port,
            {
                "contexts": self._contexts_for(records) or None,
                "evt_handlers": [(evt.EVT_ESTABLISHED, established)],
            },
        )
        restore = _explain_unreachable(event, destination, len(records), self.config.timeout)
        try:
            yield len(records)
            yield from self._sub_operations(event, records)
        finally:
            restore()
            self._store_associations.pop(id(event), None)

    def _on_get(self, event):
        records = self._matches(event)
        _prefetch(records)
        qrscp_send.install_sender(event.assoc)
        self._store_associations[id(event)] = event.assoc
        yield len(records)
        try:
            yield from self._sub_operations(event, records)
        finally:
            self._store_associations.pop(id(event), None)

    def _sub_operations(self, event, records):
        """(status, dataset) per matched instance; the dataset is resolved into the stored bytes
        or a decoded copy by the sender installed on the association that carries them."""
        import pydicom

        commented = False
        for record in records:
            if event.is_cancelled:
                yield Status.CANCEL, None
                return
            assoc = self._store_associations.get(id(event))
            if assoc is None or not getattr(assoc, "_dicomplus_sender", False):
                try:  # no sender on that association: pynetdicom encodes the dataset
                    yield Status.PENDING, pydicom.dcmread(record.path)
                except (OSError, pydicom.errors.InvalidDicomError) as exc:
                    logger.warning("cannot read %s for a retrieve: %s", record.path, exc)
                    failed = pydicom.Dataset()
                    failed.FailedSOPInstanceUIDList = record.SOPInstanceUID
                    yield Status.CANNOT_UNDERSTAND, failed
                    return
                continue
            status = Status.PENDING
            if not commented and qrscp_send.needs_decoding(
                assoc, record.SOPClassUID, record.TransferSyntaxUID
            ):
                # the comment stays on this and every later response of the operation, the final one included
                status = pydicom.Dataset()
                status.Status = Status.PENDING
                status.ErrorComment = qrscp_send.DECOMPRESSED_COMMENT
                commented = True
            yield (
                status,
                qrscp_send.stored_instance(
                    record.path, record.SOPClassUID, record.SOPInstanceUID, record.TransferSyntaxUID
                ),
            )


def _import_what_associations_need() -> None:
    """Import, on the thread that starts the server, what the first C-GET, C-MOVE or C-FIND
    would otherwise import on its association's (or database reader's) thread: the wire of the
    sub-operations, the DIMSE encoder, the keyword dictionary of the database's matching, the
    prefetch, the database's search (which a database imports when it first searches: an
    import does not need it). Each association then starts with its modules loaded, and no two
    threads import one package at once (see :func:`DICOMPlusLib._lazy.import_pydicom` for what
    that did to pydicom)."""
    import DICOMPlusLib.database.keywords
    import DICOMPlusLib.database.search
    import DICOMPlusLib.loading.prefetch
    import DICOMPlusLib.network.pacs.qrscp_wire  # noqa: F401


def _prefetch(records) -> None:
    """Ask the kernel for the files of a retrieve's sub-operations before they are sent, on a
    thread of its own (a warm page cache costs ~10 ms per 300 files, not paid by the sender).

    A study imported earlier (or whose pages the kernel dropped since) is read from the disk
    the first time it is retrieved: one file after another, each read waiting for the disk
    between two sends, unless the reads are queued ahead; this is what made the first C-GET
    after ``dicomplus serve`` starts slower than the next ones."""
    paths = [r.path for r in records if getattr(r, "path", None)]
    if len(paths) < 2:
        return
    from DICOMPlusLib.loading.prefetch import prefetch

    threading.Thread(target=prefetch, args=(paths,), name="dicomplus-qr-prefetch", daemon=True).start()


def _explain_unreachable(event, destination: Destination, count: int, timeout: float):
    """Make the answer to a C-MOVE whose (known) destination cannot be reached say so.

    pynetdicom answers 0xA801 "Move Destination unknown" whenever the association to the
    destination fails, which sends the user looking for a configuration error. The destination
    is known here: the answer becomes 0xA702 (sub-operations failed, PS3.4 C.4.2.1.5) with every
    sub-operation counted as failed and an Error Comment that says why, as dcmqrscp does.
    Returns the function that undoes the change (when the C-MOVE is over)."""
    from pynetdicom.dimse_primitives import C_MOVE

    dimse = event.assoc.dimse
    original = dimse.send_msg
    message_id = event.request.MessageID

    def send_msg(primitive, context_id):
        if (
            isinstance(primitive, C_MOVE)
            and primitive.Status == Status.MOVE_DESTINATION_UNKNOWN
            and primitive.MessageIDBeingRespondedTo == message_id
        ):
            reason = _why_unreachable(destination, min(timeout, 5.0))
            logger.info("C-MOVE to %s failed: %s", destination, reason)
            primitive.Status = Status.OUT_OF_RESOURCES_SUB_OPERATIONS
            primitive.ErrorComment = reason[:64]
            primitive.NumberOfRemainingSuboperations = None
            primitive.NumberOfFailedSuboperations = count
            primitive.NumberOfWarningSuboperations = 0
            primitive.NumberOfCompletedSuboperations = 0
        return original(primitive, context_id)

    dimse.send_msg = send_msg

    def restore() -> None:
        if dimse.send_msg is send_msg:
            del dimse.send_msg  # back to the class's method

    return restore


def _why_unreachable(destination: Destination, timeout: float) -> str:
    try:
        with socket.create_connection((destination.host, destination.port), timeout=timeout):
            pass
    except TimeoutError:
        return f"{destination.ae_title} unreachable: no answer from {destination.host}:{destination.port}"
    except OSError as exc:
        return f"{destination.ae_title} unreachable at {destination.host}:{destination.port}: {exc.strerror or exc}"
    return f"{destination.ae_title} at {destination.host}:{destination.port} refused the association"


def _sequence_keys(keyword: str, items) -> list[tuple[str, str]]:
    """The item keys of a sequence matching key (PS3.4 C.2.2.2.6: one item) as dotted search
    keys ``Sequence.Keyword``; an empty item (or none) asks for the sequence only."""
    keys = []
    for item in list(items or [])[:1]:
        for elem in item:
            if (
                not elem.keyword
                or elem.tag.group in (0x0000, 0x0002)
                or elem.keyword == "SpecificCharacterSet"
            ):
                continue
            if elem.VR == "SQ":
                keys += _sequence_keys(f"{keyword}.{elem.keyword}", elem.value)
            elif elem.value not in (None, "", b""):
                text = _text(elem.value)
                if text and text != "*":
                    keys.append((f"{keyword}.{elem.keyword}", text))
    return keys


def _same_private_block(tag, identifier, header) -> bool:
    """A private data element is the one asked for only if its block has the same creator
    (PS3.5 7.8.1); creator elements and public tags always are."""
    if not tag.is_private or tag.element < 0x1000:
        return True
    creator = (tag.group << 16) | (tag.element >> 8)
    if creator not in identifier or not identifier[creator].value:
        return True
    return creator in header and str(header[creator].value).strip() == str(identifier[creator].value).strip()


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)
