"""What every pynetdicom AE of DICOMPlus shares: TCP_NODELAY, the C-STORE handler over the
storage sink, supported storage contexts, a clear error when the port is taken, and the end of
a server's associations when it stops.

pynetdicom never disables Nagle's algorithm; against DCMTK peers (and Orthanc, which uses DCMTK)
each small response then waits for a delayed ACK: ~40 ms per C-STORE. The handler below sets
TCP_NODELAY as soon as a connection opens (``evt.EVT_CONN_OPEN``), for the server side; clients
call :func:`nodelay_association` after ``associate()``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Iterable

from DICOMPlusLib import uids
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.network.dimse import ul
from DICOMPlusLib.network.listener import bind_error
from DICOMPlusLib.network.storage import DatabaseSink, ReceiveMeta

logger = get_logger(__name__)

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


def let_associations_end(ae, grace: float, at_once: Callable[[], bool] | None = None) -> None:
    """Wait up to ``grace`` seconds for the requests under way on the associations of ``ae`` (a
    C-GET or C-MOVE sending its instances, a C-FIND its matches: what the guard of
    :mod:`.pynetdicom_guard` marks as serving, until its final response is sent) to end, once
    its server stopped accepting. An association that serves nothing (a peer that keeps one
    open between requests) is not waited for. Returns early when ``at_once()`` turns true
    (looked at every 0.1 s); a KeyboardInterrupt ends the wait as it is. A sleep, not
    ``Thread.join``: a KeyboardInterrupt inside a join marks the thread stopped while it runs on
    (Python 3.11's and 3.12's ``_wait_for_tstate_lock``), and :func:`end_associations` would
    skip it."""
    deadline = time.monotonic() + grace
    while not (at_once is not None and at_once()):
        left = deadline - time.monotonic()
        serving = [a for a in ae.active_associations if a.ae is ae and getattr(a, "dicomplus_serving", False)]
        if not serving or left <= 0:
            return
        time.sleep(min(left, 0.1))


def end_associations(ae, grace: float = 1.0) -> None:
    """End every association of ``ae`` (the ones it accepted and the ones it requested: a
    C-MOVE's to its destination) once its server stopped accepting: pynetdicom's server
    ``shutdown()`` leaves them running, and its ``abort()`` waits for the DUL thread, which a
    peer that stopped reading holds inside ``send`` for the network timeout (then again for the
    A-ABORT behind it); its non-daemon DUL threads kept ``dicomplus serve`` alive that long
    after Ctrl-C or SIGTERM, and the engine's PACS sending after the panel stopped it.

    Each gets an A-ABORT (queued behind the PDU being sent, as PS3.8 wants it) and ``grace``
    seconds to end; the connections of those still running are then closed under them: the
    socket is shut down, which wakes a send or receive blocked on it at once, with SO_LINGER 0
    so that the close resets the connection rather than leaving the kernel to push the unread
    bytes at a peer that never takes them; whoever waits for a DIMSE message on them is woken."""
    running = [a for a in ae.active_associations if a.ae is ae]
    for assoc in running:
        with contextlib.suppress(Exception):  # already ending
            assoc.abort(block=False)
    deadline = time.monotonic() + grace
    for assoc in running:
        assoc.join(max(0.0, deadline - time.monotonic()))
    for assoc in running:
        if not assoc.is_alive():
            continue
        logger.info("%s: ending an association that did not end on A-ABORT", assoc.name)
        sock = getattr(assoc.dul.socket, "socket", None)
        if sock is None:
            continue
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    for assoc in running:  # a handler waiting for a DIMSE message on them (a C-GET's C-STORE response)
        with contextlib.suppress(Exception):
            assoc.dimse.msg_queue.put((None, None))
    deadline = time.monotonic() + 5.0
    threads = [thread for assoc in running for thread in (assoc, assoc.dul) if thread.ident is not None]
    while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
        _wake_c_store_waits(running)
        time.sleep(0.005)


def _wake_c_store_waits(running: list) -> None:
    """Put an end (what pynetdicom queues when an association ends) in the DIMSE message queue
    of each ended association that has none: a C-MOVE handler (on the thread of the
    association that asked for the move) waits there for its destination's C-STORE response.

    Put only as the associations were ended (still done), it left the handler at times waiting
    out the DIMSE timeout (60 s) all the same, past the 5 s join (a loaded full suite): pynetdicom's
    abort restarts the association's paused reactor, which polls that queue every millisecond
    until its thread ends, and took the end meant for the handler as it took pynetdicom's own.
    Put again once that thread has ended, it stays for the handler."""
    for assoc in running:
        if assoc.is_alive():  # its reactor may still take what is put
            continue
        with contextlib.suppress(Exception):
            if assoc.dimse.msg_queue.empty():
                assoc.dimse.msg_queue.put((None, None))


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
