"""What every pynetdicom AE of DICOMPlus shares: TCP_NODELAY, the C-STORE handler over the
storage sink, supported storage contexts, and a clear error when the port is taken.

pynetdicom never disables Nagle's algorithm; against DCMTK peers (and Orthanc, which uses DCMTK)
each small response then waits for a delayed ACK: ~40 ms per C-STORE. The handler below sets
TCP_NODELAY as soon as a connection opens (``evt.EVT_CONN_OPEN``), for the server side; clients
call :func:`nodelay_association` after ``associate()``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from DICOMPlusLib import uids
from DICOMPlusLib.network.dimse import ul
from DICOMPlusLib.network.listener import bind_error
from DICOMPlusLib.network.storage import DatabaseSink, ReceiveMeta

logger = logging.getLogger(__name__)

_UNCOMPRESSED_LAST = (
    uids.ExplicitVRLittleEndian,  # Explicit VR Little Endian
    uids.DeflatedExplicitVRLittleEndian,  # Deflated Explicit VR Little Endian
    uids.ImplicitVRLittleEndian,  # Implicit VR Little Endian
    uids.ExplicitVRBigEndian,  # Explicit VR Big Endian (retired)
)


def transfer_syntaxes_preferred() -> list[str]:
    """Every standard transfer syntax, compressed ones first: pynetdicom picks the acceptor's
    first match, and a compressed original is kept as it is rather than decompressed by the
    sender."""
    from DICOMPlusLib.network.dimse.acceptor import known_transfer_syntaxes

    compressed = sorted(t for t in known_transfer_syntaxes() if t not in _UNCOMPRESSED_LAST)
    return compressed + list(_UNCOMPRESSED_LAST)


def storage_sop_classes() -> list[str]:
    from DICOMPlusLib.network.dimse.acceptor import _known_storage_classes

    return sorted(_known_storage_classes())


def add_storage_contexts(ae, sop_classes: Iterable[str] | None = None) -> None:
    """Verification plus every storage SOP class, each with every transfer syntax."""
    syntaxes = transfer_syntaxes_preferred()
    ae.add_supported_context(ul.VERIFICATION, [uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian])
    for uid in sop_classes if sop_classes is not None else storage_sop_classes():
        ae.add_supported_context(uid, syntaxes)


def nodelay_handler(event) -> None:
    ul.set_nodelay(event.assoc.dul.socket.socket)


def nodelay_association(assoc) -> None:
    """TCP_NODELAY on a requestor association's socket (after ``ae.associate``)."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        ul.set_nodelay(sock)


def store_handler(sink: DatabaseSink):
    """An ``evt.EVT_C_STORE`` handler storing the received bytes as they are (no decoding)."""

    def handle(event):
        from pydicom import Dataset

        req = event.request
        assoc = event.assoc
        meta = ReceiveMeta(
            sop_class_uid=str(req.AffectedSOPClassUID or ""),
            sop_instance_uid=str(req.AffectedSOPInstanceUID or ""),
            transfer_syntax=str(event.context.transfer_syntax),
            calling_ae=str(assoc.requestor.ae_title or "").strip(),
            called_ae=str(assoc.acceptor.ae_title or "").strip(),
            peer=f"{assoc.requestor.address}:{assoc.requestor.port}",
            move_originator_aet=str(req.MoveOriginatorApplicationEntityTitle or "").strip(),
            move_originator_message_id=req.MoveOriginatorMessageID,
        )
        outcome = sink.store_bytes(meta, req.DataSet.getbuffer())
        if outcome.status == 0:
            return 0x0000
        status = Dataset()
        status.Status = outcome.status
        if outcome.comment:
            status.ErrorComment = outcome.comment[:64]
        return status

    return handle


def start_server(ae, host: str, port: int, handlers: list, ssl_context=None):
    """``ae.start_server(block=False)`` with a clear message when the port cannot be bound, and
    each connection guarded against peers that break the protocol
    (:mod:`~DICOMPlusLib.network.pacs.pynetdicom_guard`: the PDU length bounded, one log line and
    an A-ABORT for the rest)."""
    from pynetdicom import evt

    from DICOMPlusLib.network.pacs.pynetdicom_guard import guard_handler

    handlers = [*handlers, (evt.EVT_CONN_OPEN, guard_handler(ae.maximum_pdu_size))]
    try:
        server = ae.start_server((host, port), block=False, evt_handlers=handlers, ssl_context=ssl_context)
    except OSError as exc:
        raise bind_error(host, port, exc) from exc
    _cheap_context_copies(server.contexts)
    return server


def _cheap_context_copies(contexts: list) -> None:
    """pynetdicom deep-copies the server's presentation contexts for every association it
    accepts: ~70 ms for the sample PACS's 205 storage classes x 63 transfer syntaxes (an echoscu
    took twice dcmqrscp's time). Their values are UIDs (immutable strings), flags and lists of
    UIDs, so a copy of the lists is a deep copy."""
    from pynetdicom.presentation import PresentationContext

    class _Copied(PresentationContext):
        def __deepcopy__(self, memo):
            new = PresentationContext.__new__(PresentationContext)
            new.__dict__.update({k: list(v) if isinstance(v, list) else v for k, v in self.__dict__.items()})
            return new

    for context in contexts:
        if type(context) is PresentationContext:
            context.__class__ = _Copied


def rejection_handler(ae_title: str, allowed_calling_aets, require_called_ae: bool):
    """An ``evt.EVT_REJECTED`` handler that logs each rejected association with its reason and
    what to change on our side (the same words as the direct engine)."""
    from DICOMPlusLib.network.dimse.acceptor import AcceptorPolicy, Rejection, log_rejection, rejection_remedy

    policy = AcceptorPolicy(ae_title, frozenset(allowed_calling_aets), require_called_ae)

    def handle(event) -> None:
        assoc = event.assoc
        answer = assoc.acceptor.primitive
        request = assoc.requestor.primitive
        reject = (int(answer.result or 0), int(answer.result_source or 0), int(answer.diagnostic or 0))
        rq = ul.AssociateRQ(
            called_ae=str(getattr(request, "called_ae_title", "") or "").strip(),
            calling_ae=str(getattr(request, "calling_ae_title", "") or "").strip(),
            contexts=[],
        )
        if reject[1] == ul.RJ_SOURCE_PRESENTATION:
            remedy = "too many associations are open; retry later"
        else:
            remedy = rejection_remedy(rq, reject, policy)
        peer = f"{assoc.requestor.address}:{assoc.requestor.port}"
        log_rejection(Rejection(peer, rq.calling_ae, rq.called_ae, reject, remedy))

    return handle
