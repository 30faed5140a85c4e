"""A blocking association requestor for C-ECHO and C-STORE (the direct data path).

:func:`associate` opens the TCP (optionally TLS) connection, negotiates (PS3.8 7.1, PS3.7 D.3)
and returns a :class:`ClientAssociation`; every failure to get there raises
:class:`AssociationFailed` whose ``kind`` says which step failed, so that callers (echo, send, the
GUI) can tell "nothing listens there" from "the peer does not know our AE title".
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, Protocol

from DICOMPlusLib.cancel import halted
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import AssociationError, AssociationFailed, CancelledError, NetworkTimeout
from DICOMPlusLib.network.connect import (
    Cancel,
    connect_cancellable,
    in_slices,
    lookup_name,
    wait_in_slices,
)
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import ul

if TYPE_CHECKING:
    import ssl

#: Our Maximum Length Received for P-DATA-TF PDUs (PS3.8 D.1): large PDUs cost fewer headers.
DEFAULT_MAX_PDU = 256 * 1024
#: How long a peer has to answer our A-RELEASE-RQ once the work was cancelled (then: A-ABORT).
RELEASE_AFTER_CANCEL_S = 1.0
#: Bytes gathered before one sendmsg call (several PDUs per system call).
_SEND_BATCH = 256 * 1024
_READ_BLOCK = 1 << 20


class ReadableFile(Protocol):
    """A binary file that C-STORE reads into a reused buffer (``open(path, "rb")``, buffered or
    not); ``typing.BinaryIO`` has no ``readinto``."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


# eq=False (here and below): never compared; each generated method is compiled as the module is imported.
@dataclass(frozen=True, eq=False)
class PreparedStore:
    """A C-STORE-RQ framed and its first block read (:meth:`ClientAssociation.prepare_store`):
    ``first`` the parts of the first system call, ``rest`` the batches still to read and send."""

    message_id: int
    first: list[bytes | memoryview]
    rest: Iterator[list[bytes | memoryview]]


@dataclass(frozen=True, eq=False)
class AcceptedContext:
    """A presentation context the peer accepted: its ID, abstract and transfer syntax."""

    id: int
    abstract_syntax: str
    transfer_syntax: str


def connect_socket(
    host: str, port: int, timeout: float, tls: ssl.SSLContext | None, cancel: Cancel | None = None
) -> socket.socket:
    """A connected socket (TLS when ``tls``); ``cancel`` ends the wait for the connection and
    for the TLS handshake."""
    where = f"{host}:{port}"
    try:
        if cancel is None:
            # typeshed says str; create_connection hands the host to getaddrinfo, which takes bytes
            sock = socket.create_connection((lookup_name(host), port), timeout=timeout)  # type: ignore[arg-type]
        else:
            sock = connect_cancellable(host, port, timeout, cancel)
    except ConnectionRefusedError:
        raise AssociationFailed(
            "refused",
            f"connection refused by {where}: nothing listens there (is the server running? is the port right?)",
        ) from None
    except TimeoutError:
        raise AssociationFailed(
            "timeout",
            f"no answer from {where} within {timeout:g} s (host down, or a firewall drops the connection)",
        ) from None
    except socket.gaierror as exc:
        raise AssociationFailed(
            "unreachable", f"cannot resolve host {host!r}: {exc.strerror or exc}"
        ) from None
    except OSError as exc:
        raise AssociationFailed("unreachable", f"cannot connect to {where}: {exc.strerror or exc}") from None
    ul.set_nodelay(sock)
    if tls is not None:
        try:
            sock.settimeout(timeout)
            hostname = host if tls.check_hostname else None
            if cancel is None:
                sock = tls.wrap_socket(sock, server_hostname=hostname)
            else:  # a peer that accepts and never sends its ServerHello: the handshake in slices
                sock = tls.wrap_socket(sock, server_hostname=hostname, do_handshake_on_connect=False)
                in_slices(sock, sock.do_handshake, cancel, f"the TLS handshake with {where}")
        except CancelledError:
            sock.close()
            raise
        except OSError as exc:  # ssl.SSLError is an OSError; TimeoutError
            with contextlib.suppress(OSError):
                sock.close()
            raise AssociationFailed("tls", f"TLS handshake with {where} failed: {exc}") from None
    return sock


class ClientAssociation:
    """An established association on which we are the requestor."""

    def __init__(
        self,
        stream: ul.PDUStream,
        rq: ul.AssociateRQ,
        ac: ul.AssociateAC,
        *,
        dimse_timeout: float,
        cancel: Cancel | None = None,
    ) -> None:
        self.stream = stream
        self.cancel = cancel  # ends the wait for a response (CancelledError, the association aborted)
        self.rq, self.ac = rq, ac
        self.dimse_timeout = dimse_timeout
        proposed = {cx.id: cx.abstract_syntax for cx in rq.contexts}
        self.contexts: dict[int, AcceptedContext] = {}
        self.rejected: dict[int, int] = {}
        for cx in ac.contexts:
            if cx.id not in proposed:
                continue
            if cx.result == ul.PC_ACCEPTANCE and cx.transfer_syntax:
                self.contexts[cx.id] = AcceptedContext(cx.id, proposed[cx.id], cx.transfer_syntax)
            else:
                self.rejected[cx.id] = cx.result
        self.peer_max = ac.max_length
        self._message_id = 0
        self.established = True

    # -- contexts ----------------------------------------------------------------------------
    def find_context(self, abstract_syntax: str, transfer_syntaxes: Sequence[str]) -> AcceptedContext | None:
        """The accepted context for ``abstract_syntax`` whose transfer syntax comes first in
        ``transfer_syntaxes``."""
        for ts in transfer_syntaxes:
            for cx in self.contexts.values():
                if cx.abstract_syntax == abstract_syntax and cx.transfer_syntax == ts:
                    return cx
        return None

    def _next_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    # -- DIMSE -------------------------------------------------------------------------------
    def _fragment_size(self) -> int:
        return fragment_size(self.peer_max)

    def _command_parts(self, ctx: int, command: bytes) -> list[bytes | memoryview]:
        return command_parts(ctx, command, self._fragment_size())

    def _wait_response(self, message_id: int) -> dimse.Command:
        buf = bytearray()
        while True:
            try:
                pdu_type, body = read_in_slices(self.stream, self.dimse_timeout, self.cancel, "the response")
            except CancelledError:
                self.abort()
                raise
            except TimeoutError:
                self.abort()
                raise NetworkTimeout(
                    f"no response within {self.dimse_timeout:g} s; association aborted"
                ) from None
            except ul.NetworkError:
                self.established = False
                self.stream.close()
                raise
            if pdu_type == ul.P_DATA_TF:
                try:
                    for _ctx, control, data in ul.iter_pdvs(body):
                        if not control & 0x01:
                            continue  # a data set fragment of a response we do not expect: ignore
                        dimse.add_command_fragment(buf, data)
                        if control & 0x02:
                            command = dimse.decode_command(buf)
                            buf.clear()
                            if command.get(dimse.MESSAGE_ID_BEING_RESPONDED_TO) == message_id:
                                return command
                except (ul.ProtocolError, dimse.CommandError) as exc:
                    self.abort(ul.ABORT_SERVICE_PROVIDER, ul.ABORT_INVALID_PARAMETER)
                    raise ul.ProtocolError(f"malformed response: {exc}") from None
            elif pdu_type == ul.A_ABORT:
                self.established = False
                self.stream.close()
                raise ul.PeerAborted(body[2] if len(body) > 2 else 0, body[3] if len(body) > 3 else 0)
            elif pdu_type == ul.A_RELEASE_RQ:
                with contextlib.suppress(ul.NetworkError):
                    self.stream.send(ul.RELEASE_RP)
                self.established = False
                self.stream.close()
                raise ul.ConnectionClosed("the peer released the association while we waited for a response")
            else:
                self.abort(ul.ABORT_SERVICE_PROVIDER, ul.ABORT_UNEXPECTED_PDU)
                raise ul.ProtocolError(f"unexpected {ul.PDU_NAMES[pdu_type]} while waiting for a response")

    def echo(self) -> int:
        """C-ECHO (PS3.7 9.1.5); returns the status."""
        cx = next((c for c in self.contexts.values() if c.abstract_syntax == ul.VERIFICATION), None)
        if cx is None:
            raise AssociationError(
                "the peer did not accept the Verification SOP Class (C-ECHO not supported)"
            )
        mid = self._next_id()
        self.stream.send(*self._command_parts(cx.id, dimse.echo_request(mid)))
        return int(self._wait_response(mid).get(dimse.STATUS, -1))

    def store(
        self,
        cx: AcceptedContext,
        sop_instance: str,
        data: bytes | memoryview | ReadableFile,
        length: int | None = None,
        *,
        move_originator_aet: str = "",
        move_originator_id: int | None = None,
    ) -> dimse.Command:
        """C-STORE (PS3.7 9.1.1) of an encoded data set: ``data`` bytes, or a binary file
        positioned at the data set's first byte with ``length`` bytes to send. The bytes go on
        the wire as they are. Returns the response command (``.get(dimse.STATUS)``)."""
        prepared = self.prepare_store(
            cx,
            sop_instance,
            data,
            length,
            move_originator_aet=move_originator_aet,
            move_originator_id=move_originator_id,
        )
        self.send_prepared(prepared)
        return self.response_to(prepared)

    def prepare_store(
        self,
        cx: AcceptedContext,
        sop_instance: str,
        data: bytes | memoryview | ReadableFile,
        length: int | None = None,
        *,
        move_originator_aet: str = "",
        move_originator_id: int | None = None,
        buffer: bytearray | None = None,
    ) -> PreparedStore:
        """A C-STORE-RQ ready to go, as :meth:`store` takes it: the data set's first block read
        (``buffer``, reused, when given) and its PDUs framed, nothing sent yet. A sender prepares
        the next file while the peer stores the previous one (one operation outstanding on the
        association, PS3.7 10.1: only the reading overlaps, not the messages). Raises OSError
        when the first block cannot be read: nothing went on the wire and no Message ID is used."""
        size = self._fragment_size()
        if isinstance(data, bytes | bytearray | memoryview):
            batches = _batches(cx.id, memoryview(data), size, final=True)
        else:
            if length is None:
                raise ValueError("length is needed when data is a file")
            batches = file_batches(cx.id, data, length, size, buffer=buffer)
        first = next(batches)  # the file's first block is read here
        mid = self._next_id()
        command = dimse.store_request(
            mid,
            cx.abstract_syntax,
            sop_instance,
            move_originator_aet=move_originator_aet,
            move_originator_id=move_originator_id,
        )
        return PreparedStore(mid, [*self._command_parts(cx.id, command), *first], batches)

    def send_prepared(self, prepared: PreparedStore) -> None:
        """Put a prepared C-STORE-RQ on the wire (the command shares the first system call with
        the data set's first batch). OSError: the rest of the file could not be read (the
        message is then broken: the caller aborts); NetworkError: the association is lost;
        CancelledError: cancelled while the peer was not reading it (the association aborted)."""
        try:
            self.stream.send(*prepared.first)
            for parts in prepared.rest:
                self.stream.send(*parts)
        except CancelledError:
            self.abort()
            raise
        except ul.NetworkError:
            self.established = False
            self.stream.close()
            raise

    def response_to(self, prepared: PreparedStore) -> dimse.Command:
        """The response to a sent :class:`PreparedStore` (``.get(dimse.STATUS)``)."""
        return self._wait_response(prepared.message_id)

    # -- ending ------------------------------------------------------------------------------
    def release(self, timeout: float = 10.0) -> None:
        """A-RELEASE (PS3.8 7.2); aborts if the peer does not answer in time. After a cancel the
        peer is given RELEASE_AFTER_CANCEL_S, not the whole timeout; a cancel that comes while
        the release waits aborts it, and so does the token halted (a second Ctrl-C) during those
        RELEASE_AFTER_CANCEL_S. A halted token aborts without a release."""
        if not self.established:
            return
        cancel = self.cancel
        if cancel is not None and halted(cancel):  # stop at once: nothing is waited for
            self.abort()
            return
        self.established = False
        if cancel is not None and cancel.cancelled:
            timeout, cancel = min(timeout, RELEASE_AFTER_CANCEL_S), _Halt(cancel)
        try:
            self.stream.send(ul.RELEASE_RQ)
            while True:
                pdu_type, _ = read_in_slices(self.stream, timeout, cancel, "the A-RELEASE-RP")
                if pdu_type in (ul.A_RELEASE_RP, ul.A_ABORT):
                    break
                if pdu_type == ul.A_RELEASE_RQ:  # release collision (PS3.8 7.2.1.2)
                    self.stream.send(ul.RELEASE_RP)
        except (TimeoutError, CancelledError, ul.NetworkError, OSError, KeyboardInterrupt) as exc:
            self.stream.abort()  # a second Ctrl-C in the main thread: the peer gets an A-ABORT too
            if isinstance(exc, KeyboardInterrupt):
                raise
            return
        self.stream.close()

    def abort(self, source: int = ul.ABORT_SERVICE_USER, reason: int = 0) -> None:
        self.established = False
        self.stream.abort(source, reason)

    def __enter__(self) -> ClientAssociation:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.release()
        else:
            self.abort()


def associate(
    host: str,
    port: int,
    *,
    called_ae: str,
    calling_ae: str,
    contexts: Sequence[tuple[str, Sequence[str]]],
    roles: dict[str, tuple[bool, bool]] | None = None,
    tls: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
    acse_timeout: float = 30.0,
    dimse_timeout: float = 60.0,
    max_pdu: int = DEFAULT_MAX_PDU,
    cancel: Cancel | None = None,
) -> ClientAssociation:
    """Open an association proposing ``contexts`` [(abstract syntax, [transfer syntaxes])]
    (at most 128, PS3.8 9.3.2.2: context IDs are the odd numbers 1-255). ``cancel`` (a
    :class:`~DICOMPlusLib.jobs.CancelToken`) ends the wait for the answer: CancelledError."""
    if not contexts:
        raise ValueError("propose at least one presentation context")
    if len(contexts) > 128:
        raise ValueError(f"{len(contexts)} presentation contexts: at most 128 fit in one association")
    rq = ul.AssociateRQ(
        called_ae=called_ae,
        calling_ae=calling_ae,
        contexts=[ul.ContextRQ(2 * i + 1, a, list(t)) for i, (a, t) in enumerate(contexts)],
        max_length=max_pdu,
        roles=dict(roles or {}),
    )
    sock = connect_socket(host, port, connect_timeout, tls, cancel)
    stream = ul.PDUStream(sock, max_receive=max_pdu, timeout=dimse_timeout, cancel=cancel, send_now=True)
    where = f"{called_ae}@{host}:{port}"
    try:
        stream.send(rq.encode())
        pdu_type, body = read_in_slices(stream, acse_timeout, cancel, "the association to be accepted")
    except (CancelledError, KeyboardInterrupt):  # the second: a second Ctrl-C in the main thread
        stream.abort()
        raise
    except TimeoutError:
        stream.abort()
        raise AssociationFailed(
            "timeout",
            f"{host}:{port} accepted the connection but did not answer the association request within "
            f"{acse_timeout:g} s (not a DICOM server, busy, or it ignores unknown AE titles)",
        ) from None
    except ul.ConnectionClosed:
        stream.close()
        raise AssociationFailed(
            "closed",
            f"{host}:{port} closed the connection without answering the association request "
            "(not a DICOM server, or it expects TLS)",
        ) from None
    except ul.ProtocolError as exc:
        stream.abort()
        raise AssociationFailed(
            "protocol", f"{host}:{port} does not answer like a DICOM server: {exc}"
        ) from None
    if pdu_type == ul.A_ASSOCIATE_AC:
        try:
            ac = ul.AssociateAC.decode(body)
        except ul.ProtocolError as exc:
            stream.abort(ul.ABORT_SERVICE_PROVIDER, ul.ABORT_INVALID_PARAMETER)
            raise AssociationFailed("protocol", f"malformed A-ASSOCIATE-AC from {where}: {exc}") from None
        return ClientAssociation(stream, rq, ac, dimse_timeout=dimse_timeout, cancel=cancel)
    if pdu_type == ul.A_ASSOCIATE_RJ and len(body) >= 4:
        stream.close()
        result, source, reason = body[1], body[2], body[3]
        raise AssociationFailed(
            "rejected",
            f"{where}: {ul.rejection_text(result, source, reason)}",
            result=result,
            source=source,
            reason=reason,
        )
    if pdu_type == ul.A_ABORT:
        stream.close()
        raise AssociationFailed("aborted", f"{where} aborted the association request")
    stream.abort(ul.ABORT_SERVICE_PROVIDER, ul.ABORT_UNEXPECTED_PDU)
    raise AssociationFailed(
        "protocol", f"{where} answered the association request with {ul.PDU_NAMES[pdu_type]}"
    )


class _Halt:
    """A cancelled token seen by a wait that a cancel leaves to run (the A-RELEASE-RP for a
    second): cancelled once the token is halted (:meth:`~DICOMPlusLib.jobs.CancelToken.halt`)."""

    __slots__ = ("token",)

    def __init__(self, token: Cancel) -> None:
        self.token = token

    @property
    def cancelled(self) -> bool:
        return halted(self.token)


def read_in_slices(stream: ul.PDUStream, timeout: float | None, cancel: Cancel | None, what: str):
    """The next PDU, waited for in slices of CANCEL_POLL_S that look at ``cancel``: a peer that
    accepts the connection and never answers the association request, or takes a C-STORE and
    never sends its response, held a Ctrl-C'd command for the whole timeout (30 s, 60 s), which
    then ended as a failure (1) instead of a cancel (130). Waking up mid-PDU is harmless: the
    stream keeps what it buffered and the next read goes on from there. CancelledError on a
    cancel (the caller aborts), TimeoutError after ``timeout`` (None: no limit). The socket is
    left with the stream's own timeout, as a read without slices leaves it."""
    if cancel is None:
        return stream.read_pdu(timeout)
    try:
        return wait_in_slices(stream.read_pdu, timeout, cancel, what, final=(ul.PDUTooSlow,))
    finally:  # the sends that follow (a C-STORE's data set) get the stream's time, not a slice's
        if not stream.closed and stream.sock.gettimeout() != stream.timeout:
            stream.sock.settimeout(stream.timeout)


def _batches(ctx: int, view: memoryview, size: int, *, final: bool):
    """Lists of (PDU header, fragment) parts of about _SEND_BATCH bytes covering ``view``; the
    last fragment is flagged last when ``final`` (PS3.8 E.2 message control header)."""
    total = len(view)
    if total == 0:
        if final:
            yield [ul.pdata_header(ctx, 0x02, 0)]
        return
    per_batch = max(size, _SEND_BATCH // size * size)
    for start in range(0, total, per_batch):
        stop = min(total, start + per_batch)
        parts: list[bytes | memoryview] = []
        for pos in range(start, stop, size):
            chunk = view[pos : min(pos + size, stop)]
            last = final and pos + len(chunk) >= total
            parts += [ul.pdata_header(ctx, 0x02 if last else 0x00, len(chunk)), chunk]
        yield parts


def fragment_size(peer_max: int) -> int:
    """The largest PDV fragment a PDU of the peer's Maximum Length Received holds (0: no limit)."""
    return (peer_max - 6) if peer_max and peer_max > 6 else _READ_BLOCK


def command_parts(ctx: int, command: bytes, size: int) -> list[bytes | memoryview]:
    """(PDU header, fragment) parts of an encoded command, fragments of at most ``size`` bytes."""
    parts: list[bytes | memoryview] = []
    for start in range(0, len(command), size):
        chunk = command[start : start + size]
        last = start + size >= len(command)
        parts += [ul.pdata_header(ctx, 0x03 if last else 0x01, len(chunk)), chunk]
    return parts


def file_batches(ctx: int, f: ReadableFile, length: int, size: int, *, buffer: bytearray | None = None):
    """Like :func:`_batches` for ``length`` bytes read from ``f`` into one reused buffer
    (``buffer`` when given and large enough: a sender's files then share one)."""
    if length == 0:
        yield [ul.pdata_header(ctx, 0x02, 0)]
        return
    block = max(size, _READ_BLOCK // size * size)
    want_size = min(block, length)
    buf = buffer if buffer is not None and len(buffer) >= want_size else bytearray(want_size)
    done = 0
    while done < length:
        want = min(want_size, length - done)
        view = memoryview(buf)[:want]
        got = 0
        while got < want:
            n = f.readinto(view[got:])
            if not n:
                raise OSError(f"the file ended {length - done - got} bytes early")
            got += n
        done += want
        yield from _batches(ctx, view, size, final=done >= length)


def file_length(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size
