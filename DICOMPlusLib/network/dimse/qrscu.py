"""Query/Retrieve SCU on the direct Upper Layer: C-FIND, C-GET, C-MOVE and C-CANCEL.

One :class:`QRAssociation` wraps an association we requested (:func:`scu.associate`) and runs one
operation at a time on the calling thread, blocking on its own socket (PS3.7 9.1.2-9.1.4, the
messages of 9.3.2-9.3.4). A C-GET receives its C-STORE sub-operations on the same association
(PS3.4 C.4.3): their data set fragments are written to the store's temporary file as they arrive
and each instance is stored and indexed through the listener's own path (:mod:`storage`), in two
halves: its header is read (a write that failed or a data set that cannot be read is refused as
the listener refuses it), its C-STORE response goes out, and then it is moved into place, indexed
and committed, while the SCP reads and sends its next instance. An SCP sends a C-GET's next
sub-operation only after our response to the one before: committing first (as the listener does,
whose senders count on an answered instance being kept) made every instance wait for its commit
(a third of a retrieve's time from ``dicomplus serve``). The PACS keeps its copy whatever we
answer, so nothing is lost when a commit after the answer fails or the process is killed: the
retrieve counts an instance done only once committed, reports one whose commit failed (the PACS
counts it completed; a full disk still stops the retrieve; one whose database server was away is
asked for again), and a killed writer's placed file without its row is removed by the next
command's sweep, to be fetched again by the same retrieve.

Cancel (PS3.7 9.3.2.3): when the :class:`CancelToken` is set, a C-CANCEL-RQ goes out at once;
the operation then has ``grace`` seconds to end with its final response, after which the
association is aborted (some SCPs ignore C-CANCEL, pynetdicom#553). An instance whose data set
was not complete when the association ended is discarded, never indexed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Mapping, Sequence
from io import BytesIO
from typing import TYPE_CHECKING, Any, NoReturn, overload

from DICOMPlusLib import uids
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.cancel import halted
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import CancelledError, NetworkError, OperationAborted
from DICOMPlusLib.network.connect import Cancel, wait_in_slices
from DICOMPlusLib.network.dimse import identifiers, scu, ul
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse.receive import (
    DatabaseSink,
    IncomingFile,
    ReceiveMeta,
    StoreOutcome,
    valid_uid_text,
)
from DICOMPlusLib.network.dimse.status import Category, Status, category, describe

if TYPE_CHECKING:
    from pydicom import Dataset

    from DICOMPlusLib.database.ingest import Incoming
    from DICOMPlusLib.jobs import CancelToken
    from DICOMPlusLib.network.dimse.pump import ReceivePump

logger = get_logger(__name__)

EXPLICIT_LE = uids.ExplicitVRLittleEndian
IMPLICIT_LE = uids.ImplicitVRLittleEndian
UNCOMPRESSED = [EXPLICIT_LE, IMPLICIT_LE]

# Query/Retrieve information models (PS3.4 C.6.1, C.6.2), defined in dimse
PATIENT_ROOT_FIND = dimse.PATIENT_ROOT_FIND
PATIENT_ROOT_MOVE = dimse.PATIENT_ROOT_MOVE
PATIENT_ROOT_GET = dimse.PATIENT_ROOT_GET
STUDY_ROOT_FIND = dimse.STUDY_ROOT_FIND
STUDY_ROOT_MOVE = dimse.STUDY_ROOT_MOVE
STUDY_ROOT_GET = dimse.STUDY_ROOT_GET
MODELS = {
    ("patient", "find"): PATIENT_ROOT_FIND,
    ("patient", "move"): PATIENT_ROOT_MOVE,
    ("patient", "get"): PATIENT_ROOT_GET,
    ("study", "find"): STUDY_ROOT_FIND,
    ("study", "move"): STUDY_ROOT_MOVE,
    ("study", "get"): STUDY_ROOT_GET,
}

_FIELDS = {dimse.C_FIND_RQ: "C-FIND", dimse.C_GET_RQ: "C-GET", dimse.C_MOVE_RQ: "C-MOVE"}
_RESPONSE = {
    dimse.C_FIND_RQ: dimse.C_FIND_RSP,
    dimse.C_GET_RQ: dimse.C_GET_RSP,
    dimse.C_MOVE_RQ: dimse.C_MOVE_RSP,
}


# eq=False (here and below): never compared; each generated method is compiled as the module is imported.
@dataclass(frozen=True, eq=False)
class SubOperations:
    """Sub-operation counts of a C-GET or C-MOVE response (PS3.4 C.4.2.1.4)."""

    remaining: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0

    @property
    def total(self) -> int | None:
        if self.remaining is None:
            return None
        return self.remaining + self.completed + self.failed + self.warning


@dataclass(frozen=True, eq=False)
class Response:
    """One C-FIND/C-GET/C-MOVE response: status, command, and identifier when one came with it."""

    status: int
    command: dimse.Command
    identifier: Dataset | Mapping[str, str] | None = None  # a mapping answers a plain request

    @property
    def pending(self) -> bool:
        return category(self.status) is Category.PENDING

    @property
    def category(self) -> str:
        return category(self.status).value

    @property
    def comment(self) -> str:
        return str(self.command.get(dimse.ERROR_COMMENT, "") or "")

    @property
    def suboperations(self) -> SubOperations:
        get = self.command.get
        remaining = get(dimse.NUMBER_OF_REMAINING_SUBOPERATIONS)
        return SubOperations(
            remaining=int(remaining) if remaining is not None else None,
            completed=int(get(dimse.NUMBER_OF_COMPLETED_SUBOPERATIONS, 0) or 0),
            failed=int(get(dimse.NUMBER_OF_FAILED_SUBOPERATIONS, 0) or 0),
            warning=int(get(dimse.NUMBER_OF_WARNING_SUBOPERATIONS, 0) or 0),
        )

    @property
    def failed_sop_instances(self) -> list[str]:
        """FailedSOPInstanceUIDList (0008,0058) of the identifier, if any."""
        if self.identifier is None:
            return []
        value = self.identifier.get("FailedSOPInstanceUIDList")
        if not value:
            return []
        if isinstance(value, str):
            return [v for v in value.split("\\") if v]
        return [str(v) for v in value]


# --------------------------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------------------------


def encode_identifier(ds: Dataset, transfer_syntax: str) -> bytes:
    """A query/retrieve identifier in the context's transfer syntax (PS3.7 9.3.2.1)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buf = DicomBytesIO()
    buf.is_little_endian = True
    buf.is_implicit_VR = transfer_syntax == IMPLICIT_LE
    write_dataset(buf, ds)
    return buf.getvalue()


_TEXT_VRS = {"SH", "LO", "ST", "LT", "UT", "UC", "PN"}


def decode_identifier(data: bytes, transfer_syntax: str) -> Dataset:
    """A response identifier. Its text is decoded with its own Specific Character Set (PS3.5
    6.1.2.5); an SCP that sends 8-bit text without declaring it (non-conformant, but seen) gets
    UTF-8 when the bytes are valid UTF-8, else ISO 8859-1."""
    from pydicom.filereader import read_dataset

    implicit = transfer_syntax == IMPLICIT_LE
    ds = read_dataset(BytesIO(data), implicit, True)
    if "SpecificCharacterSet" in ds:
        return ds
    eight_bit = [
        elem.value
        for elem in ds.elements()
        if getattr(elem, "VR", None) in _TEXT_VRS
        and isinstance(elem.value, bytes)
        and not elem.value.isascii()
    ]
    if not eight_bit:
        return ds
    try:
        for value in eight_bit:
            value.decode("utf-8")
        encoding = "utf_8"
    except UnicodeDecodeError:
        encoding = "latin_1"
    return read_dataset(BytesIO(data), implicit, True, parent_encoding=encoding)


# --------------------------------------------------------------------------------------------
# The association
# --------------------------------------------------------------------------------------------


class QRAssociation:
    """An association on which we run C-FIND, C-GET and C-MOVE (one operation at a time)."""

    def __init__(self, assoc: scu.ClientAssociation, *, calling_ae: str = "", peer: str = "") -> None:
        self.assoc = assoc
        self.stream = assoc.stream
        self.calling_ae = calling_ae
        self.called_ae = assoc.rq.called_ae
        self.peer = peer
        self.poll = 0.05  # seconds between checks of the cancel token while waiting
        self._drain_deadline: float | None = None
        self.stored = 0
        #: The keys to read from response identifiers when the request was a plain mapping
        #: (:mod:`.identifiers`, no pydicom); None: decode them as pydicom Datasets.
        self._plain_keys: tuple[str, ...] | None = None

    # -- contexts and roles ------------------------------------------------------------------
    def context_for(self, abstract_syntax: str) -> scu.AcceptedContext | None:
        for cx in self.assoc.contexts.values():
            if cx.abstract_syntax == abstract_syntax:
                return cx
        return None

    def scp_role_accepted(self, sop_class: str) -> bool:
        """True when the acceptor agreed that we act as SCP for ``sop_class`` (PS3.7 D.3.3.4)."""
        role = self.assoc.ac.roles.get(sop_class)
        return bool(role and role[1])

    @property
    def local_address(self) -> str:
        """Our address as the peer sees it on this connection (the host to configure there)."""
        with contextlib.suppress(OSError):
            return self.stream.sock.getsockname()[0]
        return ""

    # -- operations --------------------------------------------------------------------------
    @overload
    def find(self, sop_class: str, identifier: Dataset, *, cancel: CancelToken | None = None,
             grace: float = 1.0) -> Generator[Dataset, None, None]: ...  # fmt: skip

    @overload
    def find(self, sop_class: str, identifier: Mapping[str, str], *, cancel: CancelToken | None = None,
             grace: float = 1.0) -> Generator[Mapping[str, str], None, None]: ...  # fmt: skip

    def find(self, sop_class: str, identifier, *, cancel: CancelToken | None = None,
             grace: float = 1.0) -> Generator[Any, None, None]:  # fmt: skip
        """Yield the identifier of every pending C-FIND response. Closing the generator early
        (``limit``, a ``break``) cancels the query: C-CANCEL, then the final response is awaited
        for ``grace`` seconds (else the association is aborted)."""
        mid, cx = self._request(dimse.C_FIND_RQ, sop_class, identifier)
        events = self._events(dimse.C_FIND_RQ, mid, cx, cancel=cancel, grace=grace)
        finished = False
        try:
            for kind, item in events:
                if kind == "final":
                    finished = True
                    self._raise_for_final(item, "C-FIND")
                    return
                if item.identifier is not None:
                    yield item.identifier
        finally:
            if not finished and self.assoc.established:
                self._cancel_and_drain(events, mid, cx, grace)
            events.close()

    def get(self, sop_class: str, identifier: Dataset | Mapping[str, str], *, sink: DatabaseSink, on_pending=None,
            on_stored=None, cancel: Cancel | None = None, grace: float = 1.0,
            pump: ReceivePump | None = None) -> Response:  # fmt: skip
        """C-GET: store every C-STORE sub-operation through ``sink``; returns the final
        response. ``on_pending(Response)`` hears each pending response, ``on_stored(sop_uid,
        StoreOutcome)`` each instance (stored or refused). With a ``pump`` (several C-GETs at
        once), the pump's thread receives and stores the instances (and calls the two hooks)
        while this thread waits; a TLS association is received here all the same."""
        mid, cx = self._request(dimse.C_GET_RQ, sop_class, identifier)
        pumped = pump is not None and self.stream.readable_directly
        answered = _Answered(sink) if pumped else None
        events = self._events(
            dimse.C_GET_RQ, mid, cx, sink=sink, cancel=cancel, grace=grace, answered=answered
        )
        if answered is not None:
            events = self._committing(events, answered)

        def hear(kind: str, item) -> None:
            if kind == "pending" and on_pending is not None:
                on_pending(item)
            elif kind == "stored" and on_stored is not None:
                on_stored(*item)

        if pumped:
            return pump.run(self.stream, events, hear)  # type: ignore[union-attr]  # pumped: not None
        try:
            for kind, item in events:
                if kind == "final":
                    return item
                hear(kind, item)
        finally:  # its clean-ups now, not when the generator is collected (see the pump)
            events.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def move(self, sop_class: str, identifier: Dataset | Mapping[str, str], destination: str, *, on_pending=None,
             cancel: Cancel | None = None, grace: float = 1.0) -> Response:  # fmt: skip
        """C-MOVE to ``destination`` (an AE title the SCP knows); returns the final response."""
        mid, cx = self._request(dimse.C_MOVE_RQ, sop_class, identifier, destination)
        for kind, item in self._events(dimse.C_MOVE_RQ, mid, cx, cancel=cancel, grace=grace):
            if kind == "final":
                return item
            if kind == "pending" and on_pending is not None:
                on_pending(item)
        raise AssertionError("unreachable")  # pragma: no cover

    def next_message_id(self) -> int:
        """The Message ID the next request will carry (a C-MOVE's sub-operations quote it as
        Move Originator Message ID, PS3.7 9.3.1.1)."""
        return self.assoc._message_id % 0xFFFF + 1

    # -- ending ------------------------------------------------------------------------------
    def release(self, timeout: float = 5.0) -> None:
        self.assoc.release(timeout)

    def abort(self) -> None:
        self.assoc.abort()

    def __enter__(self) -> QRAssociation:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.release()
        else:
            self.abort()

    # -- internals ---------------------------------------------------------------------------
    def _request(
        self, field: int, sop_class: str, identifier: Dataset | Mapping[str, str], destination: str = ""
    ):
        cx = self.context_for(sop_class)
        if cx is None:
            raise NetworkError(
                f"{self.called_ae} did not accept the {_FIELDS[field]} information model {sop_class}"
            )
        mid = self.assoc._next_id()
        command = dimse.query_request(field, mid, sop_class, move_destination=destination)
        if isinstance(identifier, Mapping):
            data = identifiers.encode(identifier, cx.transfer_syntax)
            self._plain_keys = (*identifier, "FailedSOPInstanceUIDList")
        else:
            data = encode_identifier(identifier, cx.transfer_syntax)
            self._plain_keys = None
        parts = self.assoc._command_parts(cx.id, command)
        try:
            for batch in scu._batches(cx.id, memoryview(data), self.assoc._fragment_size(), final=True):
                self.stream.send(*parts, *batch)
                parts = []
        except ul.NetworkError:
            self.assoc.established = False
            self.stream.close()
            raise
        return mid, cx

    def _send_cancel(self, mid: int, cx: scu.AcceptedContext) -> None:
        with contextlib.suppress(ul.NetworkError):
            self.stream.send(*self.assoc._command_parts(cx.id, dimse.cancel_request(mid)))

    def _cancel_and_drain(self, events, mid: int, cx: scu.AcceptedContext, grace: float) -> None:
        """After a caller stopped reading: C-CANCEL, then read on (``events``) until the final
        response, for at most ``grace`` seconds; else abort."""
        self._send_cancel(mid, cx)
        self._drain_deadline = time.monotonic() + grace
        try:
            for kind, _ in events:
                if kind == "final":
                    return
        except (NetworkError, OSError):
            self.assoc.established = False
            self.stream.close()
        finally:
            self._drain_deadline = None

    def _abort_cancelled(self, waiting: _Waiting, what: str, grace: float) -> NoReturn:
        """Abort an operation whose cancel's grace passed (or that was halted)."""
        self.abort()
        if waiting.cancel_sent_at is not None:
            raise OperationAborted(
                f"{what} cancelled: no final response within {grace:g} s of C-CANCEL; association aborted",
                cancelled=True,
            ) from None
        raise OperationAborted(f"{what}: no final response in time; association aborted") from None

    def _timed_out(self, what: str, timeout: float) -> NoReturn:
        """Abort after ``timeout`` seconds in which nothing of a PDU arrived (an idle peer), or
        nothing more of one begun (a peer that stopped inside a message)."""
        self.abort()
        if self.stream.buffered:
            raise OperationAborted(f"{what}: the peer stopped in the middle of a message") from None
        raise OperationAborted(
            f"no {what} response from {self.called_ae}@{self.peer} within {timeout:g} s; association aborted"
        ) from None

    def _raise_for_final(self, response: Response, what: str) -> None:
        if response.status in (Status.SUCCESS, Status.CANCEL):
            return
        comment = f" ({response.comment})" if response.comment else ""
        raise _FinalStatus(
            f"{what} failed with status 0x{response.status:04X}: {describe(response.status, 'qr')}{comment}",
            response,
        )

    def _events(self, field: int, mid: int, cx: scu.AcceptedContext, *, sink: DatabaseSink | None = None,
                cancel: Cancel | None = None, grace: float = 1.0, answered: _Answered | None = None):  # fmt: skip
        """Yield ("pending", Response), ("stored", (SOP UID, StoreOutcome)) and ("final", Response)
        for the operation with Message ID ``mid``. Raises OperationAborted when the association
        ends first (then it is closed).

        ``answered`` (a pumped C-GET): never wait for the socket; yield ("wait", None) whenever
        no whole PDU is buffered, for a driver that reads the socket when it is readable
        (:mod:`.pump`) and then resumes this. The cancel (C-CANCEL, the grace) and the idle
        timeout are looked at then, as the waits of the other mode look at them between their
        slices. The instances answered are committed together (:class:`_Answered`): before a
        wait once the first has waited :data:`COMMIT_EVERY_S`, and before the final response;
        :meth:`_committing` commits the rest when the operation ends otherwise."""
        expected_field = _RESPONSE[field]
        timeout = self.assoc.dimse_timeout
        command_buf = bytearray()
        current = None  # (kind, ctx id, command, IncomingFile | bytearray | None)
        spare: Incoming | None = None  # the next sub-operation's temporary file, made ahead
        what = _FIELDS[field]
        waiting = _Waiting(self, mid, cx, cancel, grace)
        stream = self.stream
        idle = _Idle(stream, timeout) if answered is not None else None
        try:
            while True:
                if idle is not None:  # driven by a pump: never wait here
                    if waiting.cancelled and time.monotonic() >= waiting.grace_end():
                        self._abort_cancelled(waiting, what, grace)
                    if not stream.has_pdu():
                        if answered is not None and answered.due():
                            yield from self._commit_answered(answered)
                        if idle.expired():
                            self._timed_out(what, timeout)
                        yield "wait", None
                        continue
                    pdu_type, body = stream.read_pdu(self.poll)
                    idle.seen = -1  # something arrived: the idle time starts again
                elif cancel is None and self._drain_deadline is None:
                    try:
                        pdu_type, body = stream.read_pdu(timeout)
                    except TimeoutError:
                        self._timed_out(what, timeout)
                elif stream.has_pdu() and not waiting.cancelled:
                    # what arrived already, without a wait: the C-GET receive path takes most
                    # PDUs this way (several come with each read); a call of the helper with its
                    # hooks apiece (~3 us) added up over the ~10,000 PDUs of a C-GET of 300 CT
                    # instances from Orthanc (16 KiB PDUs)
                    pdu_type, body = stream.read_pdu(self.poll)
                else:  # in slices that look at the cancel: C-CANCEL, then the grace
                    try:
                        pdu_type, body = wait_in_slices(
                            stream.read_pdu, timeout, waiting, f"the {what} response", step=self.poll,
                            on_cancel=waiting.grace_end, progress=waiting.received,
                        )  # fmt: skip
                    except CancelledError:
                        self._abort_cancelled(waiting, what, grace)
                    except TimeoutError:
                        self._timed_out(what, timeout)
                if pdu_type == ul.A_ABORT:
                    self.assoc.established = False
                    self.stream.close()
                    raise OperationAborted(
                        str(ul.PeerAborted(body[2] if len(body) > 2 else 0, body[3] if len(body) > 3 else 0)),
                        cancelled=waiting.cancel_sent_at is not None,
                    )
                if pdu_type == ul.A_RELEASE_RQ:
                    with contextlib.suppress(ul.NetworkError):
                        self.stream.send(ul.RELEASE_RP)
                    self.assoc.established = False
                    self.stream.close()
                    raise OperationAborted(f"the peer released the association during the {what}")
                if pdu_type != ul.P_DATA_TF:
                    self.assoc.abort(ul.ABORT_SERVICE_PROVIDER, ul.ABORT_UNEXPECTED_PDU)
                    raise OperationAborted(f"unexpected {ul.PDU_NAMES[pdu_type]} during the {what}")
                for ctx, control, data in ul.iter_pdvs(body):
                    if control & 0x01:  # a command fragment
                        if current is not None:
                            raise ul.ProtocolError("a command arrived inside a data set")
                        dimse.add_command_fragment(command_buf, data)
                        if not control & 0x02:
                            continue
                        command = dimse.decode_command(command_buf)
                        command_buf.clear()
                        if command.field == dimse.C_STORE_RQ and command.has_data_set:
                            target = self._begin_store(ctx, command, sink, spare)
                            if isinstance(target, IncomingFile) and target.file is spare:
                                spare = None
                            current = ("store", ctx, command, target)
                        elif (
                            command.field == expected_field
                            and command.get(dimse.MESSAGE_ID_BEING_RESPONDED_TO) == mid
                        ):
                            if command.has_data_set:
                                current = ("response", ctx, command, bytearray())
                            else:
                                event = self._response(command, None, cx)
                                if (yield from self._deliver(event, answered)):
                                    return
                        elif command.has_data_set:
                            current = ("ignore", ctx, command, None)
                        else:
                            logger.info("%s: ignoring command 0x%04X", self.peer, command.field)
                    else:  # a data set fragment
                        if current is None or ctx != current[1]:
                            raise ul.ProtocolError("a data set fragment without its command")
                        kind, _, command, target = current
                        if kind == "store":
                            target.write_safely(data)
                        elif kind == "response":
                            target += data
                        if control & 0x02:
                            current = None
                            if kind == "store":
                                sop = str(command.get(dimse.AFFECTED_SOP_INSTANCE_UID, ""))
                                outcome = self._finish_store(ctx, command, target, answered)
                                if spare is None and sink is not None:  # the SCP now reads its next file
                                    spare = sink.spare()
                                if outcome is not None:
                                    yield "stored", (sop, outcome)
                            elif kind == "response":
                                event = self._response(command, bytes(target), cx)
                                if (yield from self._deliver(event, answered)):
                                    return
                            else:
                                self._reply(
                                    ctx, dimse.generic_response(command, Status.UNRECOGNIZED_OPERATION)
                                )
        except (ul.ProtocolError, dimse.CommandError) as exc:
            self.assoc.abort(ul.ABORT_SERVICE_PROVIDER, ul.ABORT_INVALID_PARAMETER)
            raise OperationAborted(
                f"{what}: the peer broke the protocol ({exc}); association aborted"
            ) from None
        except ul.ConnectionClosed as exc:
            self.assoc.established = False
            self.stream.close()
            raise OperationAborted(f"{what}: {exc}", cancelled=waiting.cancel_sent_at is not None) from None
        finally:
            if current is not None and current[0] == "store" and current[3] is not None:
                current[3].discard()  # an incomplete instance never reaches the database
            if spare is not None:
                spare.discard()

    def _response(self, command: dimse.Command, data: bytes | None, cx: scu.AcceptedContext):
        status = int(command.get(dimse.STATUS, -1))
        identifier: Dataset | Mapping[str, str] | None = None
        if data:
            try:
                if self._plain_keys is not None:
                    identifier = identifiers.decode(data, cx.transfer_syntax, self._plain_keys)
                else:
                    identifier = decode_identifier(data, cx.transfer_syntax)
            except Exception as exc:  # a broken identifier: keep the status, report it
                logger.info("%s: cannot decode a response identifier: %s", self.peer, exc)
        response = Response(status, command, identifier)
        return ("pending" if response.pending else "final"), response

    # -- C-STORE sub-operations (C-GET) ------------------------------------------------------
    def _begin_store(
        self, ctx: int, command: dimse.Command, sink: DatabaseSink | None, spare: Incoming | None = None
    ):
        sop_class = str(command.get(dimse.AFFECTED_SOP_CLASS_UID, ""))
        sop_instance = str(command.get(dimse.AFFECTED_SOP_INSTANCE_UID, ""))
        accepted = self.assoc.contexts.get(ctx)
        if sink is None or accepted is None:
            return _Refused(Status.UNRECOGNIZED_OPERATION, "C-STORE not expected here")
        if not valid_uid_text(sop_instance) or not valid_uid_text(sop_class):
            return _Refused(Status.CANNOT_UNDERSTAND, "invalid Affected SOP Class/Instance UID")
        meta = ReceiveMeta(
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            transfer_syntax=accepted.transfer_syntax,
            calling_ae=self.called_ae,  # the peer sends: it is the "calling" side of this C-STORE
            called_ae=self.calling_ae,
            peer=self.peer,
            move_originator_aet=str(command.get(dimse.MOVE_ORIGINATOR_AET, "")),
            move_originator_message_id=command.get(dimse.MOVE_ORIGINATOR_MESSAGE_ID),
        )
        try:
            return sink.begin(meta, spare)
        except OSError as exc:
            outcome = sink.refuse(exc)
            return _Refused(outcome.status, outcome.comment)

    @overload
    def _finish_store(
        self, ctx: int, command: dimse.Command, incoming, answered: None = None
    ) -> StoreOutcome: ...
    @overload
    def _finish_store(
        self, ctx: int, command: dimse.Command, incoming, answered: _Answered
    ) -> StoreOutcome | None: ...

    def _finish_store(self, ctx: int, command: dimse.Command, incoming, answered=None):
        """Answer a C-STORE sub-operation whose data set is whole, and store its instance: the
        answer once its header is read, the commit after it (the module's documentation says
        why). With ``answered``, an instance answered success is left to its commit (None)."""
        if isinstance(incoming, IncomingFile):
            refusal = incoming.read_header()
            if refusal is None:
                if answered is not None:
                    answered.add(command, incoming)  # before the answer: committed even when it fails
                    self._reply(ctx, dimse.store_response(command, Status.SUCCESS, ""))
                    return None
                try:
                    self._reply(ctx, dimse.store_response(command, Status.SUCCESS, ""))
                finally:  # also when the answer could not go out: the instance is whole
                    outcome = incoming.commit()
                return self._committed(command, outcome)
            outcome = refusal
        else:
            outcome = incoming.outcome()
        logger.info("%s: C-STORE sub-operation %s answered 0x%04X %s", self.peer,
                    command.get(dimse.AFFECTED_SOP_INSTANCE_UID), outcome.status, outcome.comment)  # fmt: skip
        self._reply(ctx, dimse.store_response(command, outcome.status, outcome.comment))
        return outcome

    def _deliver(self, event, answered: _Answered | None):
        """Yield a response's event, after committing what ``answered`` holds when it is the final
        one (its instances are counted before it); whether it was."""
        final = event[0] == "final"
        if final and answered is not None:
            yield from self._commit_answered(answered)
        yield event
        return final

    def _committed(self, command: dimse.Command, outcome: StoreOutcome) -> StoreOutcome:
        """The outcome of an instance answered success, once its commit is done."""
        if outcome.status == Status.SUCCESS:
            self.stored += 1
            return outcome
        logger.warning("%s: C-STORE sub-operation %s answered success, then not stored here: %s",
                       self.peer, command.get(dimse.AFFECTED_SOP_INSTANCE_UID), outcome.comment)  # fmt: skip
        return StoreOutcome(outcome.status, outcome.comment, answered=True, transient=outcome.transient)

    def _commit_answered(self, answered: _Answered):
        """Commit the instances ``answered`` holds (one transaction); yield ("stored", ...) for each."""
        items = answered.take()
        if not items:
            return
        outcomes = answered.sink.commit_many([incoming for _, incoming in items])
        for (command, _), outcome in zip(items, outcomes, strict=True):
            sop = str(command.get(dimse.AFFECTED_SOP_INSTANCE_UID, ""))
            yield "stored", (sop, self._committed(command, outcome))

    def _committing(self, events, answered: _Answered):
        """``events``, and when they end other than by their final response (an abort, a
        timeout, a broken connection, a cancel's grace), the instances answered before the end
        committed and heard of first: each was answered success and is whole."""
        try:
            yield from events
        except GeneratorExit:  # the driver closed it: commit, nobody hears now
            for _ in self._commit_answered(answered):
                pass
            raise
        except BaseException:
            yield from self._commit_answered(answered)
            raise

    def _reply(self, ctx: int, command: bytes) -> None:
        self.stream.send(*self.assoc._command_parts(ctx, command))


class _Waiting:
    """What the event loop's waits look at (:func:`~DICOMPlusLib.network.connect.wait_in_slices`):
    the caller's token, or a drain after the caller stopped reading (``_cancel_and_drain``, whose
    C-CANCEL is out); the C-CANCEL a cancel sends, once, and the end of its grace."""

    def __init__(self, qa: QRAssociation, mid: int, cx: scu.AcceptedContext, token: Cancel | None,
                 grace: float) -> None:  # fmt: skip
        self.qa, self.mid, self.cx, self.token, self.grace = qa, mid, cx, token, grace
        self.cancel_sent_at: float | None = None

    @property
    def cancelled(self) -> bool:
        token = self.token
        return (token is not None and token.cancelled) or self.qa._drain_deadline is not None

    def grace_end(self) -> float:
        """The hook of a cancel: C-CANCEL the first time, then the end of its grace; now when
        the token is halted (a second Ctrl-C: the association is aborted at once)."""
        if self.token is not None and halted(self.token):
            return 0.0
        if self.cancel_sent_at is None:
            if self.token is None or not self.token.cancelled:  # a drain: its C-CANCEL is out
                return self.qa._drain_deadline  # type: ignore[return-value]  # set when not cancelled
            self.qa._send_cancel(self.mid, self.cx)
            self.cancel_sent_at = time.monotonic()
            logger.info("%s: C-CANCEL sent for message %d", self.qa.peer, self.mid)
        end = self.cancel_sent_at + self.grace
        drain = self.qa._drain_deadline
        return end if drain is None else min(end, drain)

    def received(self) -> int:
        """Bytes of a PDU begun (what makes the idle timeout start again)."""
        return self.qa.stream.buffered


class _Idle:
    """The idle timeout of an operation driven by a pump: it runs out once ``timeout`` seconds
    have passed in which no PDU and no byte of one arrived (as the waits of the other mode: an
    idle timeout, not a deadline for the whole). ``seen`` is set to -1 when a PDU is read."""

    __slots__ = ("seen", "since", "stream", "timeout")

    def __init__(self, stream: ul.PDUStream, timeout: float | None) -> None:
        self.stream, self.timeout = stream, timeout
        self.seen = -1
        self.since = time.monotonic()

    def expired(self) -> bool:
        if self.timeout is None:
            return False
        now = time.monotonic()
        held = self.stream.buffered
        if held != self.seen:
            self.seen, self.since = held, now
            return False
        return now - self.since >= self.timeout


#: A pumped C-GET commits the instances it answered together, once the first has waited this
#: long (or :data:`COMMIT_MOST` wait): one transaction per instance was a quarter of the CPU of
#: ``retrieve --parallel 4`` (its WAL pages and ``BEGIN``/``COMMIT``; docs/performance.md).
#: The SCP sends its next instance once it has our answer, so the wait costs it nothing.
COMMIT_EVERY_S = 0.02
COMMIT_MOST = 64


class _Answered:
    """The instances a pumped C-GET answered success and has not committed yet."""

    __slots__ = ("items", "since", "sink")

    def __init__(self, sink: DatabaseSink) -> None:
        self.sink = sink
        self.items: list[tuple[dimse.Command, IncomingFile]] = []
        self.since = 0.0

    def add(self, command: dimse.Command, incoming: IncomingFile) -> None:
        if not self.items:
            self.since = time.monotonic()
        self.items.append((command, incoming))

    def due(self) -> bool:
        items = self.items
        return bool(items) and (
            len(items) >= COMMIT_MOST
            or self.sink.one_at_a_time
            or time.monotonic() - self.since >= COMMIT_EVERY_S
        )

    def take(self) -> list[tuple[dimse.Command, IncomingFile]]:
        items, self.items = self.items, []
        return items


class _Refused:
    """Stands in for an IncomingFile when a sub-operation's data set is read and thrown away."""

    error = None

    def __init__(self, status: int, comment: str) -> None:
        self.status, self.comment = status, comment

    def write_safely(self, data) -> None:
        pass

    def discard(self) -> None:
        pass

    def outcome(self) -> StoreOutcome:
        return StoreOutcome(self.status, self.comment)


class _FinalStatus(NetworkError):
    """A C-FIND ended with a failure status."""

    def __init__(self, message: str, response: Response) -> None:
        super().__init__(message)
        self.response = response


FinalStatusError = _FinalStatus


def open_association(
    host: str,
    port: int,
    *,
    called_ae: str,
    calling_ae: str,
    contexts: Sequence[tuple[str, Sequence[str]]],
    roles: dict[str, tuple[bool, bool]] | None = None,
    tls=None,
    timeout: float = 30.0,
    max_pdu: int = scu.DEFAULT_MAX_PDU,
    cancel=None,
) -> QRAssociation:
    """Associate (raises :class:`scu.AssociationFailed` with a diagnosis when it fails;
    CancelledError when ``cancel`` is cancelled before the peer answers)."""
    assoc = scu.associate(
        host,
        port,
        called_ae=called_ae,
        calling_ae=calling_ae,
        contexts=contexts,
        roles=roles,
        tls=tls,
        connect_timeout=timeout,
        acse_timeout=timeout,
        dimse_timeout=timeout,
        max_pdu=max_pdu,
        cancel=cancel,
    )
    return QRAssociation(assoc, calling_ae=calling_ae, peer=f"{host}:{port}")
