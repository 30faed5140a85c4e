"""The storage SCP side of the direct data path: association negotiation and one association's
life (PS3.8 9.2 state machine, acceptor half; PS3.4 Annex A verification and Annex B storage).

:func:`negotiate` is a pure function of the A-ASSOCIATE-RQ and the policy. :class:`StorageAssociation`
runs one accepted association on its own thread, blocking on its socket: C-STORE data fragments
are written to the store's temporary file as they arrive (memory stays bounded by one PDU,
whatever the size of the object), and the response is sent only once the instance is committed.
Anything the protocol does not allow ends the association with A-ABORT and never affects other
associations.
"""

from __future__ import annotations

import contextlib
import socket
import time
from functools import lru_cache

from DICOMPlusLib import uids
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import PDUTooSlow
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import ul
from DICOMPlusLib.network.dimse.receive import DatabaseSink, IncomingFile, ReceiveMeta, valid_uid_text
from DICOMPlusLib.network.dimse.status import Status

logger = get_logger(__name__)


@lru_cache(maxsize=1)
def _known_storage_classes() -> frozenset[str]:
    """Every storage SOP class pydicom's dictionary and pynetdicom's contexts name (the sample
    PACS proposes them all; it imports both anyway). A storage SCP of ours needs no list: see
    :func:`is_storage_class`."""
    from pydicom._uid_dict import UID_dictionary

    out = set()
    for uid, entry in UID_dictionary.items():
        name, kind = entry[0], entry[1]
        if kind == "SOP Class" and "Storage" in name and "Commitment" not in name:
            if not uid.startswith(("1.2.840.10008.1.3.", "1.2.840.10008.5.1.1.")):  # DICOMDIR, print
                out.add(uid)
    with contextlib.suppress(ImportError):
        from pynetdicom.presentation import AllStoragePresentationContexts

        out.update(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)
    return frozenset(out)


def known_transfer_syntaxes() -> frozenset[str]:
    """Every transfer syntax of PS3.6 Table A-1 (uncompressed, deflated, compressed, video)."""
    return uids.TRANSFER_SYNTAXES


def is_storage_class(uid: str, accept_unknown: bool = True) -> bool:
    """A storage SOP class (PS3.4 B.5: any in the storage arc 1.2.840.10008.5.1.4.1.1, future
    ones too, and the few outside it) and (when ``accept_unknown``) any private, non-DICOM-rooted
    UID. Plain tables (:mod:`DICOMPlusLib.uids`): negotiation imports nothing, so neither a
    listener's start nor its association threads import pydicom for it."""
    if uid.startswith(uids.STORAGE_ROOT) or uid in uids.STORAGE_OUTSIDE_ROOT:
        return True
    return accept_unknown and not uid.startswith("1.2.840.10008.")


@dataclass(frozen=True)
class AcceptorPolicy:
    """What an association acceptor accepts: its AE title, the calling AE titles, SOP classes,
    the PDU size and its timeouts."""

    ae_title: str
    allowed_calling_aets: frozenset[str] = frozenset()  # empty: anyone
    require_called_ae: bool = False
    accept_unknown_sop_classes: bool = True
    max_pdu: int = 256 * 1024
    acse_timeout: float = 10.0  # from the TCP connection to a complete A-ASSOCIATE-RQ
    network_timeout: float = 60.0  # idle: no PDU begins within it
    pdu_timeout: float = 10.0  # from the first byte of a PDU to its last


# eq=False: never compared; each generated method is compiled as the module is imported.
@dataclass(eq=False)
class Negotiated:
    """The outcome of :func:`negotiate`: an A-ASSOCIATE-AC and its accepted contexts, or the
    reason of a rejection."""

    ac: ul.AssociateAC | None
    reject: tuple[int, int, int] | None = None
    contexts: dict[int, tuple[str, str]] | None = None  # id -> (abstract syntax, transfer syntax)


def negotiate(rq: ul.AssociateRQ, policy: AcceptorPolicy) -> Negotiated:
    """Accept or reject an association request (PS3.8 7.1.1.9, PS3.7 D.3.3).

    Order of the checks follows PS3.8 Table 9-21: protocol version and application context
    (service-user/provider), called AE title, calling AE title. A presentation context is
    accepted when its abstract syntax is Verification or a storage SOP class, with the first of
    its proposed transfer syntaxes that is a standard one (the requestor's preference)."""
    if not rq.protocol_version & 0x01:
        return Negotiated(None, (ul.RJ_PERMANENT, ul.RJ_SOURCE_ACSE, ul.RJ_PROTOCOL_VERSION_NOT_SUPPORTED))
    if rq.application_context != ul.APPLICATION_CONTEXT:
        return Negotiated(None, (ul.RJ_PERMANENT, ul.RJ_SOURCE_USER, ul.RJ_APPLICATION_CONTEXT_NOT_SUPPORTED))
    if policy.require_called_ae and rq.called_ae != policy.ae_title:
        return Negotiated(None, (ul.RJ_PERMANENT, ul.RJ_SOURCE_USER, ul.RJ_CALLED_AE_NOT_RECOGNIZED))
    if policy.allowed_calling_aets and rq.calling_ae not in policy.allowed_calling_aets:
        return Negotiated(None, (ul.RJ_PERMANENT, ul.RJ_SOURCE_USER, ul.RJ_CALLING_AE_NOT_RECOGNIZED))
    known = known_transfer_syntaxes()
    results, accepted = [], {}
    seen: set[int] = set()
    for cx in rq.contexts:
        if cx.id in seen or not cx.id % 2:
            results.append(ul.ContextAC(cx.id, ul.PC_NO_REASON))
            continue
        seen.add(cx.id)
        if not (
            cx.abstract_syntax == ul.VERIFICATION
            or (
                valid_uid_text(cx.abstract_syntax)  # a 64 KiB "UID" is no private SOP class
                and is_storage_class(cx.abstract_syntax, policy.accept_unknown_sop_classes)
            )
        ):
            results.append(ul.ContextAC(cx.id, ul.PC_ABSTRACT_SYNTAX_NOT_SUPPORTED))
            continue
        ts = next((t for t in cx.transfer_syntaxes if t in known), "")
        if not ts:
            results.append(ul.ContextAC(cx.id, ul.PC_TRANSFER_SYNTAXES_NOT_SUPPORTED))
            continue
        results.append(ul.ContextAC(cx.id, ul.PC_ACCEPTANCE, ts))
        accepted[cx.id] = (cx.abstract_syntax, ts)
    ac = ul.AssociateAC(
        called_ae=rq.called_ae,
        calling_ae=rq.calling_ae,
        contexts=results,
        max_length=policy.max_pdu,
    )
    return Negotiated(ac, None, accepted)


@dataclass(frozen=True)
class Rejection:
    """An association we rejected: carried by its log record as ``record.rejection`` so that a
    front end (the CLI, the Slicer panel) can show it without parsing text."""

    peer: str
    calling_ae: str
    called_ae: str
    reject: tuple[int, int, int]  # result, source, reason (PS3.8 Table 9-21)
    remedy: str  # what to change on our side to accept it

    @property
    def reason(self) -> str:
        return ul.rejection_text(*self.reject, ours=True)


def log_rejection(rejection: Rejection) -> None:
    logger.warning("%s: rejected association from calling AE %r to called AE %r: %s; %s", rejection.peer,
                   rejection.calling_ae, rejection.called_ae, rejection.reason, rejection.remedy,
                   extra={"rejection": rejection})  # fmt: skip


def rejection_remedy(rq: ul.AssociateRQ, reject: tuple[int, int, int], policy: AcceptorPolicy) -> str:
    """What to change on our side to accept an association that :func:`negotiate` rejected."""
    reason = reject[2] if reject[1] == ul.RJ_SOURCE_USER else None
    if reason == ul.RJ_CALLED_AE_NOT_RECOGNIZED:
        return (
            f"it called {rq.called_ae!r} but we are {policy.ae_title!r}: to accept it, restart with "
            f"--ae-title {rq.called_ae}, or without --require-called-ae"
        )
    if reason == ul.RJ_CALLING_AE_NOT_RECOGNIZED:
        allowed = ",".join(sorted({*policy.allowed_calling_aets, rq.calling_ae}))
        return f"to accept it, restart with --allow {allowed}"
    if reason == ul.RJ_APPLICATION_CONTEXT_NOT_SUPPORTED:
        return "the peer is not speaking DICOM (application context); nothing to change here"
    return "the peer's DICOM stack is incompatible; nothing to change here"


class _Discard:
    """Stands in for an IncomingFile when a data set must be read and thrown away."""

    error = None

    def write_safely(self, data) -> None:
        pass

    def discard(self) -> None:
        pass


class StorageAssociation:
    """One association with a storage SCU, run by :meth:`run` on the calling thread."""

    def __init__(
        self,
        sock: socket.socket,
        peer: str,
        policy: AcceptorPolicy,
        sink: DatabaseSink,
        *,
        admit=None,
        deadline: float | None = None,
        on_close=None,
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.policy = policy
        self.sink = sink
        # admit(self) -> None, or why the listener cannot take one more association now
        self.admit = admit
        self.deadline = deadline if deadline is not None else time.monotonic() + policy.acse_timeout
        self.on_close = on_close
        self.stream = ul.PDUStream(
            sock,
            max_receive=policy.max_pdu,
            timeout=policy.network_timeout,
            pdu_timeout=policy.pdu_timeout,
            send_now=True,  # closed by this association's end (run's finally), never by another owner
        )
        self.calling_ae = ""
        self.called_ae = ""
        self.contexts: dict[int, tuple[str, str]] = {}
        self.stored = 0
        self.failed = 0
        self._incoming: IncomingFile | _Discard | None = None
        self._pending_status: tuple[int, str] | None = None
        self._peer_max = 0
        self.established = False

    # -- lifecycle -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            if self._establish():
                self._serve()
        except TimeoutError as exc:
            if not self.established:
                why = f"no complete A-ASSOCIATE-RQ within {self.policy.acse_timeout:g} s"
            elif isinstance(exc, PDUTooSlow):
                why = f"a PDU took longer than {self.policy.pdu_timeout:g} s to arrive"
            else:
                why = f"idle for {self.policy.network_timeout:g} s"
            logger.warning("%s: %s; aborting", self.peer, why)
            self.stream.abort(ul.ABORT_SERVICE_PROVIDER, 0)
        except ul.ProtocolError as exc:
            logger.warning("%s: protocol error (%s); aborting", self.peer, exc)
            self.stream.abort(ul.ABORT_SERVICE_PROVIDER, ul.ABORT_UNRECOGNIZED_PDU)
        except (ul.ConnectionClosed, ul.PeerAborted) as exc:
            logger.info("%s: %s", self.peer, exc)
        except dimse.CommandError as exc:
            logger.warning("%s: bad command set (%s); aborting", self.peer, exc)
            self.stream.abort(ul.ABORT_SERVICE_PROVIDER, ul.ABORT_INVALID_PARAMETER)
        except Exception:
            logger.exception("%s: association failed", self.peer)
            self.stream.abort(ul.ABORT_SERVICE_PROVIDER, 0)
        finally:
            if self._incoming is not None:
                self._incoming.discard()
                self._incoming = None
            self.stream.close()
            if self.on_close is not None:
                self.on_close(self)

    def kill(self) -> None:
        """From another thread: abort the association now (listener stopping)."""
        self.stream.abort(ul.ABORT_SERVICE_PROVIDER, 0)

    def _establish(self) -> bool:
        pdu_type, body = self.stream.read_pdu(deadline=self.deadline)
        if pdu_type != ul.A_ASSOCIATE_RQ:
            raise ul.ProtocolError(f"{ul.PDU_NAMES[pdu_type]} before A-ASSOCIATE-RQ")
        rq = ul.AssociateRQ.decode(body)
        self.calling_ae, self.called_ae = rq.calling_ae, rq.called_ae
        self._peer_max = rq.max_length
        result = negotiate(rq, self.policy)
        if result.reject is not None:
            self._reject(rq, result.reject, rejection_remedy(rq, result.reject, self.policy))
            return False
        refusal = self.admit(self) if self.admit is not None else None
        if refusal is not None:
            self._reject(
                rq, (ul.RJ_TRANSIENT, ul.RJ_SOURCE_PRESENTATION, ul.RJ_LOCAL_LIMIT_EXCEEDED), refusal
            )
            return False
        assert result.ac is not None  # negotiate builds the A-ASSOCIATE-AC whenever it does not reject
        self.contexts = result.contexts or {}
        self.established = True
        self.stream.send(result.ac.encode())
        logger.info(
            "%s: association from %r accepted (%d contexts)", self.peer, rq.calling_ae, len(self.contexts)
        )
        return True

    def _reject(self, rq: ul.AssociateRQ, reject: tuple[int, int, int], remedy: str) -> None:
        self.stream.send(ul.encode_reject(*reject))
        log_rejection(Rejection(self.peer, rq.calling_ae, rq.called_ae, reject, remedy))
        # give the peer a moment to read the rejection before the connection closes
        with contextlib.suppress(OSError, TimeoutError, ul.NetworkError):
            self.stream.read_pdu(1.0)

    # -- established ---------------------------------------------------------------------------
    def _serve(self) -> None:
        command_buf = bytearray()
        command_ctx = -1
        current: tuple[int, dimse.Command] | None = None  # the request whose data set we receive
        while True:
            pdu_type, body = self.stream.read_pdu()
            if pdu_type == ul.P_DATA_TF:
                for ctx, control, data in ul.iter_pdvs(body):
                    if ctx not in self.contexts:
                        raise ul.ProtocolError(
                            f"P-DATA on presentation context {ctx}, which was not accepted"
                        )
                    if control & 0x01:  # command fragment
                        if current is not None:
                            raise ul.ProtocolError("a command arrived inside a data set")
                        if command_buf and ctx != command_ctx:
                            raise ul.ProtocolError("command fragments on two presentation contexts")
                        command_ctx = ctx
                        dimse.add_command_fragment(command_buf, data)
                        if control & 0x02:
                            command = dimse.decode_command(command_buf)
                            command_buf.clear()
                            current = self._on_command(ctx, command)
                    else:  # data set fragment
                        if current is None or ctx != current[0] or self._incoming is None:
                            raise ul.ProtocolError("a data set fragment without its command")
                        self._incoming.write_safely(data)
                        if control & 0x02:
                            self._on_data_set_end(*current)
                            current = None
            elif pdu_type == ul.A_RELEASE_RQ:
                self.stream.send(ul.RELEASE_RP)
                logger.info("%s: released (%d stored, %d failed)", self.peer, self.stored, self.failed)
                return
            elif pdu_type == ul.A_ABORT:
                logger.info("%s: the peer aborted the association", self.peer)
                return
            else:
                raise ul.ProtocolError(f"unexpected {ul.PDU_NAMES[pdu_type]} on an established association")

    def _on_command(self, ctx: int, command: dimse.Command) -> tuple[int, dimse.Command] | None:
        field = command.field
        abstract = self.contexts[ctx][0]
        if field == dimse.C_ECHO_RQ:
            if command.has_data_set:
                raise ul.ProtocolError("C-ECHO-RQ with a data set")
            self._respond(ctx, dimse.echo_response(command))
            return None
        if field == dimse.C_CANCEL_RQ:
            return None
        if field == dimse.C_STORE_RQ and command.has_data_set:
            sop_class = str(command.get(dimse.AFFECTED_SOP_CLASS_UID, ""))
            sop_instance = str(command.get(dimse.AFFECTED_SOP_INSTANCE_UID, ""))
            if abstract == ul.VERIFICATION:
                self._incoming = _Discard()
                self._pending_status = (Status.SOP_CLASS_NOT_SUPPORTED, "C-STORE on the Verification context")
            elif not valid_uid_text(sop_instance) or not valid_uid_text(sop_class):
                self._incoming = _Discard()
                self._pending_status = (Status.CANNOT_UNDERSTAND, "invalid Affected SOP Class/Instance UID")
            else:
                meta = ReceiveMeta(
                    sop_class_uid=sop_class,
                    sop_instance_uid=sop_instance,
                    transfer_syntax=self.contexts[ctx][1],
                    calling_ae=self.calling_ae,
                    called_ae=self.called_ae,
                    peer=self.peer,
                    move_originator_aet=str(command.get(dimse.MOVE_ORIGINATOR_AET, "")),
                    move_originator_message_id=command.get(dimse.MOVE_ORIGINATOR_MESSAGE_ID),
                )
                try:
                    self._incoming = self.sink.begin(meta)
                    self._pending_status = None
                except OSError as exc:
                    self._incoming = _Discard()
                    outcome = self.sink.refuse(exc)
                    self._pending_status = (outcome.status, outcome.comment)
            return ctx, command
        # anything else: read its data set (if any) and answer "unrecognized operation"
        if command.has_data_set:
            self._incoming = _Discard()
            self._pending_status = (Status.UNRECOGNIZED_OPERATION, "")
            return ctx, command
        self._respond(ctx, dimse.generic_response(command, Status.UNRECOGNIZED_OPERATION))
        return None

    def _on_data_set_end(self, ctx: int, command: dimse.Command) -> None:
        incoming, self._incoming = self._incoming, None
        assert incoming is not None  # _serve ends a data set only while it has somewhere to go
        if self._pending_status is not None:
            status, comment = self._pending_status
            incoming.discard()
        else:
            assert isinstance(incoming, IncomingFile)  # no refusal pending: the sink began a file
            outcome = incoming.finish()
            status, comment = outcome.status, outcome.comment
        if status == Status.SUCCESS:
            self.stored += 1
        else:
            self.failed += 1
            logger.info("%s: C-STORE of %s answered 0x%04X %s", self.peer,
                        command.get(dimse.AFFECTED_SOP_INSTANCE_UID), status, comment)  # fmt: skip
        if command.field == dimse.C_STORE_RQ:
            self._respond(ctx, dimse.store_response(command, status, comment))
        else:
            self._respond(ctx, dimse.generic_response(command, status))

    def _respond(self, ctx: int, command: bytes) -> None:
        size = self._peer_max - 6 if self._peer_max > 6 else len(command)
        parts: list[bytes] = []
        for start in range(0, len(command), size):
            chunk = command[start : start + size]
            last = start + size >= len(command)
            parts += [ul.pdata_header(ctx, 0x03 if last else 0x01, len(chunk)), chunk]
        self.stream.send(*parts)
