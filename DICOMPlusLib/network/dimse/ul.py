"""The DICOM Upper Layer protocol (PS3.8 9) for the direct data path: PDU encoding and decoding
and a blocking PDU stream over a socket.

Why a second implementation next to pynetdicom: for bulk C-STORE traffic pynetdicom spends most
of its time in polling sleeps and queue hand-offs between threads (see
docs of ``network/__init__``). Here one thread per association blocks on its own socket: reads
go straight into a reusable buffer, data fragments are handed out as memoryviews, and sends put
P-DATA-TF headers and file bytes on the wire with one ``sendmsg`` call. Only the PDUs needed by
the storage and verification services and by association negotiation are implemented; the
query/retrieve SCP keeps using pynetdicom.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import time

from DICOMPlusLib import __version__, uids
from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.errors import CancelledError, ConnectionClosed, NetworkError, PDUTooSlow, ProtocolError
from DICOMPlusLib.network.connect import Cancel, wait_in_slices
from DICOMPlusLib.uninterrupted import uninterrupted

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # PS3.7 A.2.1 DICOM Application Context Name
#: Implementation Class UID of DICOMPlus (a UUID-derived UID, PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = "2.25.46723555173053157896672213210748166122"
IMPLEMENTATION_VERSION_NAME = ("DICOMPLUS_" + __version__.replace(".", ""))[:16]
VERIFICATION = uids.Verification

A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07
PDU_NAMES = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF",
             5: "A-RELEASE-RQ", 6: "A-RELEASE-RP", 7: "A-ABORT"}  # fmt: skip

# Presentation context results (PS3.8 Table 9-18)
PC_ACCEPTANCE = 0
PC_USER_REJECTION = 1
PC_NO_REASON = 2
PC_ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
PC_TRANSFER_SYNTAXES_NOT_SUPPORTED = 4
PC_RESULTS = {0: "acceptance", 1: "user rejection", 2: "no reason (provider rejection)",
              3: "abstract syntax not supported", 4: "transfer syntaxes not supported"}  # fmt: skip

# A-ABORT sources and reasons (PS3.8 Table 9-26)
ABORT_SERVICE_USER = 0
ABORT_SERVICE_PROVIDER = 2
ABORT_UNRECOGNIZED_PDU = 1
ABORT_UNEXPECTED_PDU = 2
ABORT_INVALID_PARAMETER = 6
_ABORT_REASONS = {0: "reason not specified", 1: "unrecognized PDU", 2: "unexpected PDU",
                  4: "unrecognized PDU parameter", 5: "unexpected PDU parameter",
                  6: "invalid PDU parameter value"}  # fmt: skip

# A-ASSOCIATE-RJ (PS3.8 Table 9-21)
RJ_PERMANENT = 1
RJ_TRANSIENT = 2
RJ_SOURCE_USER = 1
RJ_SOURCE_ACSE = 2
RJ_SOURCE_PRESENTATION = 3
RJ_NO_REASON = 1
RJ_APPLICATION_CONTEXT_NOT_SUPPORTED = 2
RJ_CALLING_AE_NOT_RECOGNIZED = 3
RJ_CALLED_AE_NOT_RECOGNIZED = 7
RJ_PROTOCOL_VERSION_NOT_SUPPORTED = 2  # source 2
RJ_TEMPORARY_CONGESTION = 1  # source 3
RJ_LOCAL_LIMIT_EXCEEDED = 2  # source 3


class PeerAborted(NetworkError):
    """The peer sent A-ABORT."""

    def __init__(self, source: int, reason: int) -> None:
        who = "the peer" if source == ABORT_SERVICE_USER else "the peer's DICOM stack"
        super().__init__(f"{who} aborted the association ({_ABORT_REASONS.get(reason, f'reason {reason}')})")
        self.source, self.reason = source, reason


def rejection_text(result: int, source: int, reason: int, *, ours: bool = False) -> str:
    """The meaning of an A-ASSOCIATE-RJ in words a user can act on. ``ours``: we rejected it (a
    listener's log), so the advice for a requestor ("add our AE title to the peer") is left out:
    the acceptor adds what to change on our side."""
    kind = "permanently" if result == RJ_PERMANENT else "for now (transient)"
    if source == RJ_SOURCE_USER:
        why = {
            RJ_NO_REASON: "no reason given",
            RJ_APPLICATION_CONTEXT_NOT_SUPPORTED: "application context name not supported",
            RJ_CALLING_AE_NOT_RECOGNIZED: "calling AE title not recognized",
            RJ_CALLED_AE_NOT_RECOGNIZED: "called AE title not recognized",
        }.get(reason, f"reason {reason}")
        advice = {
            RJ_CALLING_AE_NOT_RECOGNIZED: ": the peer does not know (or does not allow) our AE title; add it "
            "to the peer's configuration",
            RJ_CALLED_AE_NOT_RECOGNIZED: ": check the AE title configured for the node",
        }
        if not ours:
            why += advice.get(reason, "")
    elif source == RJ_SOURCE_ACSE:
        why = {1: "no reason given", 2: "protocol version not supported"}.get(reason, f"reason {reason}")
    else:
        why = {1: "temporary congestion", 2: "local limit exceeded (too many associations)"}.get(
            reason, f"reason {reason}"
        )
    return f"association rejected {kind}: {why}"


# --------------------------------------------------------------------------------------------
# A-ASSOCIATE PDUs
# --------------------------------------------------------------------------------------------


def _uid_bytes(uid: str) -> bytes:
    return uid.encode("ascii")


def _item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def _ae_field(title: str) -> bytes:
    data = title.encode("ascii", "replace")[:16]
    return data.ljust(16, b" ")


def _text(data: bytes | memoryview) -> str:
    return bytes(data).decode("ascii", "replace").strip("\0 ")


# eq=False (here and below): never compared; each generated method is compiled as the module is imported.
@dataclass(eq=False)
class ContextRQ:
    """A proposed presentation context (PS3.8 9.3.2.2)."""

    id: int
    abstract_syntax: str
    transfer_syntaxes: list[str]


@dataclass(eq=False)
class ContextAC:
    """The acceptor's answer for one presentation context (PS3.8 9.3.3.2)."""

    id: int
    result: int
    transfer_syntax: str = ""
    abstract_syntax: str = ""  # filled in by the requestor from its proposal


@dataclass(eq=False)
class AssociateRQ:
    """An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2), as encoded and decoded here."""

    called_ae: str
    calling_ae: str
    contexts: list[ContextRQ]
    max_length: int = 0
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version: str = IMPLEMENTATION_VERSION_NAME
    roles: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # SOP class -> (SCU, SCP)
    user_identity: bool = False  # a User Identity sub-item was present
    protocol_version: int = 1
    application_context: str = APPLICATION_CONTEXT

    def encode(self) -> bytes:
        items = [_item(0x10, _uid_bytes(self.application_context))]
        for cx in self.contexts:
            sub = _item(0x30, _uid_bytes(cx.abstract_syntax))
            sub += b"".join(_item(0x40, _uid_bytes(ts)) for ts in cx.transfer_syntaxes)
            items.append(_item(0x20, struct.pack(">BBBB", cx.id, 0, 0, 0) + sub))
        user = struct.pack(">BBHI", 0x51, 0, 4, self.max_length)
        user += _item(0x52, _uid_bytes(self.implementation_class_uid))
        for uid, (scu, scp) in self.roles.items():
            raw = _uid_bytes(uid)
            user += _item(0x54, struct.pack(">H", len(raw)) + raw + bytes([int(scu), int(scp)]))
        if self.implementation_version:
            user += _item(0x55, self.implementation_version.encode("ascii")[:16])
        items.append(_item(0x50, user))
        body = (
            struct.pack(">HH", self.protocol_version, 0)
            + _ae_field(self.called_ae)
            + _ae_field(self.calling_ae)
            + bytes(32)
            + b"".join(items)
        )
        return struct.pack(">BBI", A_ASSOCIATE_RQ, 0, len(body)) + body

    @classmethod
    def decode(cls, body: bytes | memoryview) -> AssociateRQ:
        body = memoryview(body)
        if len(body) < 68:
            raise ProtocolError("A-ASSOCIATE-RQ shorter than its fixed fields")
        rq = cls(
            called_ae=_text(body[4:20]),
            calling_ae=_text(body[20:36]),
            contexts=[],
            implementation_class_uid="",
            implementation_version="",
            protocol_version=struct.unpack_from(">H", body, 0)[0],
            application_context="",
        )
        for item_type, payload in _items(body[68:]):
            if item_type == 0x10:
                rq.application_context = _text(payload)
            elif item_type == 0x20:
                if len(payload) < 4:
                    raise ProtocolError("presentation context item too short")
                abstract, syntaxes = "", []
                for sub_type, sub in _items(payload[4:]):
                    if sub_type == 0x30:
                        abstract = _text(sub)
                    elif sub_type == 0x40:
                        syntaxes.append(_text(sub))
                rq.contexts.append(ContextRQ(payload[0], abstract, syntaxes))
            elif item_type == 0x50:
                _decode_user_info(payload, rq)
        return rq


def _decode_user_info(payload: memoryview, target) -> None:
    for sub_type, sub in _items(payload):
        if sub_type == 0x51 and len(sub) == 4:
            target.max_length = struct.unpack(">I", sub)[0]
        elif sub_type == 0x52:
            target.implementation_class_uid = _text(sub)
        elif sub_type == 0x55:
            target.implementation_version = _text(sub)
        elif sub_type == 0x54 and len(sub) >= 4:
            n = struct.unpack_from(">H", sub, 0)[0]
            if 2 + n + 2 <= len(sub):
                uid = _text(sub[2 : 2 + n])
                target.roles[uid] = (bool(sub[2 + n]), bool(sub[3 + n]))
        elif sub_type == 0x58 and hasattr(target, "user_identity"):
            target.user_identity = True


def _items(data: memoryview):
    """(type, payload) of the items in a variable field (PS3.8 9.3.2: 1 type, 1 reserved,
    2 length, payload)."""
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 4:
            raise ProtocolError("item header cut short")
        item_type = data[pos]
        length = struct.unpack_from(">H", data, pos + 2)[0]
        pos += 4
        if length > end - pos:
            raise ProtocolError(f"item 0x{item_type:02X} runs past the end of its PDU")
        yield item_type, data[pos : pos + length]
        pos += length


@dataclass(eq=False)
class AssociateAC:
    """An A-ASSOCIATE-AC PDU (PS3.8 9.3.3), as encoded and decoded here."""

    called_ae: str
    calling_ae: str
    contexts: list[ContextAC]
    max_length: int = 0
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version: str = IMPLEMENTATION_VERSION_NAME
    roles: dict[str, tuple[bool, bool]] = field(default_factory=dict)

    def encode(self) -> bytes:
        items = [_item(0x10, _uid_bytes(APPLICATION_CONTEXT))]
        for cx in self.contexts:
            ts = _item(0x40, _uid_bytes(cx.transfer_syntax)) if cx.transfer_syntax else b""
            items.append(_item(0x21, struct.pack(">BBBB", cx.id, 0, cx.result, 0) + ts))
        user = struct.pack(">BBHI", 0x51, 0, 4, self.max_length)
        user += _item(0x52, _uid_bytes(self.implementation_class_uid))
        for uid, (scu, scp) in self.roles.items():
            raw = _uid_bytes(uid)
            user += _item(0x54, struct.pack(">H", len(raw)) + raw + bytes([int(scu), int(scp)]))
        user += _item(0x55, self.implementation_version.encode("ascii")[:16])
        items.append(_item(0x50, user))
        body = (
            struct.pack(">HH", 1, 0)
            + _ae_field(self.called_ae)
            + _ae_field(self.calling_ae)
            + bytes(32)
            + b"".join(items)
        )
        return struct.pack(">BBI", A_ASSOCIATE_AC, 0, len(body)) + body

    @classmethod
    def decode(cls, body: bytes | memoryview) -> AssociateAC:
        body = memoryview(body)
        if len(body) < 68:
            raise ProtocolError("A-ASSOCIATE-AC shorter than its fixed fields")
        ac = cls(_text(body[4:20]), _text(body[20:36]), [], 0, "", "")
        for item_type, payload in _items(body[68:]):
            if item_type == 0x21:
                if len(payload) < 4:
                    raise ProtocolError("presentation context item too short")
                ts = ""
                for sub_type, sub in _items(payload[4:]):
                    if sub_type == 0x40:
                        ts = _text(sub)
                ac.contexts.append(ContextAC(payload[0], payload[2], ts))
            elif item_type == 0x50:
                _decode_user_info(payload, ac)
        return ac


def encode_reject(result: int, source: int, reason: int) -> bytes:
    return struct.pack(">BBIBBBB", A_ASSOCIATE_RJ, 0, 4, 0, result, source, reason)


def encode_abort(source: int = ABORT_SERVICE_USER, reason: int = 0) -> bytes:
    return struct.pack(">BBIBBBB", A_ABORT, 0, 4, 0, 0, source, reason)


RELEASE_RQ = struct.pack(">BBII", A_RELEASE_RQ, 0, 4, 0)
RELEASE_RP = struct.pack(">BBII", A_RELEASE_RP, 0, 4, 0)


def pdata_header(ctx: int, control: int, length: int) -> bytes:
    """Header of a P-DATA-TF PDU holding one PDV of ``length`` bytes (PS3.8 9.3.5, E.2).
    ``control``: bit 0 set for a command fragment, bit 1 set for the last fragment."""
    return struct.pack(">BBIIBB", P_DATA_TF, 0, length + 6, length + 2, ctx, control)


def iter_pdvs(body: memoryview):
    """(context id, control header, data) for every PDV item of a P-DATA-TF body."""
    pos, end = 0, len(body)
    if end == 0:
        raise ProtocolError("P-DATA-TF without a presentation data value")
    while pos < end:
        if end - pos < 6:
            raise ProtocolError("PDV item header cut short")
        length = struct.unpack_from(">I", body, pos)[0]
        if length < 2 or length > end - pos - 4:
            raise ProtocolError("PDV item length does not fit its PDU")
        yield body[pos + 4], body[pos + 5], body[pos + 6 : pos + 4 + length]
        pos += 4 + length


# --------------------------------------------------------------------------------------------
# A blocking PDU stream
# --------------------------------------------------------------------------------------------


#: The receive buffer's size: a few PDUs of the common 16-64 KiB (it grows for larger ones).
_READ_AHEAD = 256 * 1024


#: The buffers one sendmsg takes at most (Linux's IOV_MAX is 1024).
_IOV_MAX = 512
#: A send that never waits and never raises SIGPIPE; 0 where the platform lacks either flag
#: (then every send goes the usual way).
_NOWAIT_FLAGS = (
    socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
    if hasattr(socket, "MSG_DONTWAIT") and hasattr(socket, "MSG_NOSIGNAL")
    else 0
)


def _after(parts: tuple[bytes | memoryview, ...], n: int) -> tuple[bytes | memoryview, ...]:
    """``parts`` less their first ``n`` bytes (a send that took part of them)."""
    rest = list(parts)
    while n:
        if n >= len(rest[0]):
            n -= len(rest.pop(0))
        else:
            rest[0], n = memoryview(rest[0]).cast("B")[n:], 0
    return tuple(rest)


def _rest_of_pdu(parts: tuple[bytes | memoryview, ...], offset: int) -> bytes:
    """The bytes of ``parts`` (whole PDUs) from ``offset`` to the end of the PDU it falls in;
    empty when it falls between two PDUs."""
    data = b"".join(parts)
    start = 0
    while start < offset and start + 6 <= len(data):
        end = start + 6 + struct.unpack_from(">I", data, start + 2)[0]
        if offset < end:
            return data[offset:end]
        start = end
    return b""


class PDUStream:
    """Reads whole PDUs into one reusable buffer; sends byte strings and memoryviews.

    ``max_receive`` is our Maximum Length Received (0 = no limit announced); a PDU larger than
    ``limit`` (a generous multiple of it, at least 4 MiB) is refused so that a hostile peer
    cannot make us allocate gigabytes from a 4-byte length field.

    ``timeout`` is how long to wait for a PDU to *begin* (an idle peer); ``pdu_timeout`` is how
    long a PDU may take from its first byte to its last. Without the second, a peer sending one
    byte just before each receive times out would hold the connection forever.

    Reads ahead: each ``recv_into`` takes whatever the socket holds (up to the buffer's free
    space), so several PDUs often arrive in one system call and the next ``read_pdu`` needs none
    (``strace -c`` of a C-GET of 300 CT instances: 3 receives and 3 polls per PDU before). A
    caller that waits for the socket to become readable asks :attr:`buffered` first.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        max_receive: int = 0,
        timeout: float | None = 60.0,
        pdu_timeout: float | None = None,
        cancel: Cancel | None = None,
        send_now: bool = False,
    ) -> None:
        self.sock = sock
        #: Ends a send that waits for a peer that stopped reading (:meth:`send`).
        self.cancel = cancel
        #: A cancelled send had put part of its PDUs on the wire: an A-ABORT can follow them only
        #: after the rest of the PDU under way (:attr:`_tail`, :meth:`abort`).
        self.cut = False
        self._tail = b""
        self.timeout = timeout
        self.pdu_timeout = pdu_timeout
        self.limit = max(4 * max_receive, 4 << 20) if max_receive else 64 << 20
        self._buf = bytearray(_READ_AHEAD)
        self._other: bytearray | None = None  # the second buffer of _room, made when first needed
        self._start = 0  # the first byte not yet returned
        self._end = 0  # the end of what was received
        self._can_sendmsg = hasattr(sock, "sendmsg") and not is_tls(sock)
        # A plain socket's descriptor can be read directly (see _fill); a TLS one holds its own
        # buffer of decrypted bytes and must be read through its object.
        self._direct = not is_tls(sock) and hasattr(sock, "fileno")
        # The send that does not wait (_send_now): a second socket object on a duplicate of the
        # descriptor, made at the first send. Only for a stream that owns its socket (``send_now``):
        # close() closes the duplicate too, whereas a socket another owner closes (pynetdicom's, in
        # serve) would stay connected through it. False: not used (or not possible: TLS).
        self._nowait: socket.socket | bool | None = (
            None if send_now and self._can_sendmsg and self._direct and _NOWAIT_FLAGS else False
        )
        self.closed = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned by :meth:`read_pdu`."""
        return self._end - self._start

    def _room(self, need: int) -> None:
        """Make room for ``need`` bytes from ``_start``: copy what is buffered to the front of
        the other buffer (of a larger one when ``need`` does not fit) and read into that one
        from now on (the body returned before is no longer valid).

        Two buffers, not a move within one: ``buf[:n] = buf[a:b]`` copies the slice into a new
        bytearray first, and a C-GET moves ~130 KB so about once per received instance (the
        partial PDU after a ``readv`` that ended in it): twice the bytes copied and an
        allocation of that size, with the GIL held."""
        if self._start + need <= len(self._buf):
            return
        held = self._end - self._start
        size = max(need, 2 * len(self._buf)) if need > len(self._buf) else len(self._buf)
        other = self._other
        if other is None or len(other) != size:
            other = bytearray(size)
        other[:held] = memoryview(self._buf)[self._start : self._end]
        self._buf, self._other = other, self._buf
        self._start, self._end = 0, held

    def _fill(self, need: int, deadline: float | None) -> None:
        """Receive until ``need`` bytes from ``_start`` are buffered.

        Each round first takes what the socket already holds with one ``readv`` on its
        descriptor, which a socket with a timeout has non-blocking: ``recv_into`` on such a
        socket always ``poll``s first, and each of those system calls gives the GIL away and
        takes it back, which costs futex calls and a thread switch whenever other associations'
        threads wait for it (a retrieve over 4 associations: ~77 futex calls per instance).
        Only when the socket is empty does the wait go through ``recv_into`` and its timeout."""
        self._room(need)
        view = memoryview(self._buf)
        recv_into = self.sock.recv_into
        target = self._start + need
        direct = self._direct and self.sock.gettimeout() is not None  # None: a blocking descriptor
        while self._end < target:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PDUTooSlow("a PDU arrived too slowly (deadline for a whole PDU passed)")
                if not direct:
                    self.sock.settimeout(left)
            if direct:
                n = self._read_now(view, need)
                if n > 0:
                    continue
                direct = False  # empty: wait below, with the timeout, for the rest of this PDU
                if deadline is not None:
                    self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                n = recv_into(view[self._end :], len(view) - self._end)
            except TimeoutError:
                if deadline is not None:
                    raise PDUTooSlow("a PDU arrived too slowly (deadline for a whole PDU passed)") from None
                raise
            except OSError as exc:
                raise ConnectionClosed(f"connection lost: {exc.strerror or exc}") from exc
            if n == 0:
                raise ConnectionClosed(self._closed(need))
            self._end += n

    def _read_now(self, view: memoryview, need: int = 0) -> int:
        """One non-blocking read into the buffer's free space: the bytes read, 0 when the socket
        holds none. Raises ConnectionClosed when the peer closed the connection."""
        try:
            n = os.readv(self.sock.fileno(), [view[self._end :]])
        except BlockingIOError:
            return 0
        except InterruptedError:
            return 0
        except OSError as exc:
            raise ConnectionClosed(f"connection lost: {exc.strerror or exc}") from exc
        if n == 0:
            raise ConnectionClosed(self._closed(need))
        self._end += n
        return n

    def _closed(self, need: int) -> str:
        """What a connection closed by the peer cut short: nothing, or a PDU (``need`` bytes
        from ``_start``, 0: unknown) of which part arrived."""
        held = self._end - self._start
        if held <= 0:
            return "the peer closed the connection"
        of = f" of {need}" if need > held else ""
        return f"the peer closed the connection in the middle of a PDU ({held}{of} bytes received)"

    def has_pdu(self) -> bool:
        """Whether a whole PDU is buffered: :meth:`read_pdu` returns it without a wait or a
        system call."""
        held = self._end - self._start
        return held >= 6 and held - 6 >= struct.unpack_from(">I", self._buf, self._start + 2)[0]

    @property
    def readable_directly(self) -> bool:
        """Whether :meth:`fill_available` can read this stream (a plain socket with a timeout,
        whose descriptor is non-blocking; not TLS, whose object holds decrypted bytes)."""
        return self._direct and not self.closed and self.sock.gettimeout() is not None

    def fill_available(self) -> bool:
        """Take what the socket holds now into the buffer, without a wait, and say whether a whole
        PDU is buffered (or one :meth:`read_pdu` will refuse: its type or length is not DICOM's):
        the read of a driver that serves several streams from one thread once ``select`` says a
        socket is readable (:mod:`.pump`). Raises ConnectionClosed when the peer closed it."""
        held = self._end - self._start
        if held == 0:
            self._start = self._end = 0
        need = 6
        if held >= 6:
            pdu_type, _, length = struct.unpack_from(">BBI", self._buf, self._start)
            if pdu_type not in PDU_NAMES or length > self.limit:
                return True  # read_pdu says what is wrong
            need += length
        self._room(need)
        view = memoryview(self._buf)
        while self._end < len(view) and not self.has_pdu() and self._read_now(view, need) > 0:
            if self._end - self._start >= 6 and need == 6:
                return self.fill_available()  # the header is here: make room for the whole PDU
        return self.has_pdu()

    def receive_now(self) -> bool:
        """Whether a PDU's bytes are buffered, after at most one non-blocking read (no wait, no
        ``select``): a reader that waits for the socket to become readable asks this first, so
        that a socket that already holds data costs one system call, not a ``select`` and the
        read. A closed connection counts as readable (the read reports it)."""
        if self._end > self._start:
            return True
        if not self._direct or self.closed or self.sock.gettimeout() is None:
            return False
        self._start = self._end = 0
        try:
            return self._read_now(memoryview(self._buf)) > 0
        except ConnectionClosed:
            return True

    def read_pdu(
        self, timeout: float | None = -1.0, *, deadline: float | None = None
    ) -> tuple[int, memoryview]:
        """(PDU type, body). The body is valid until the next call. ``timeout`` is the wait for
        the first byte (-1: the stream's idle timeout); ``deadline`` (a ``time.monotonic()``
        value) bounds the whole read. Raises TimeoutError when nothing complete arrives in
        time, ConnectionClosed, ProtocolError."""
        wait = self.timeout if timeout == -1.0 else timeout
        if deadline is not None:
            left = max(deadline - time.monotonic(), 0.001)
            wait = left if wait is None else min(wait, left)
        if self.sock.gettimeout() != wait:  # settimeout is an ioctl (and a GIL hand-off) each time
            self.sock.settimeout(wait)
        if self._start == self._end:
            self._start = self._end = 0
            self._fill(1, None)
        end = deadline
        if self.pdu_timeout is not None:
            whole = time.monotonic() + self.pdu_timeout
            end = whole if end is None else min(end, whole)
        self._fill(6, end)
        pdu_type, _, length = struct.unpack_from(">BBI", self._buf, self._start)
        if pdu_type not in PDU_NAMES:
            if bytes(self._buf[self._start : self._start + 5]) == b"HTTP/":  # DICOM and web ports mixed up
                raise ProtocolError(
                    "it answered in HTTP: this is a web port (for DICOMweb, give the node its URL with "
                    "--dicomweb; for DIMSE, the DICOM port, e.g. Orthanc's 4242 rather than 8042)"
                )
            raise ProtocolError(f"unrecognized PDU type 0x{pdu_type:02X}")
        if length > self.limit:
            raise ProtocolError(f"{PDU_NAMES[pdu_type]} of {length} bytes exceeds the limit of {self.limit}")
        self._fill(6 + length, end)
        first = self._start + 6
        body = memoryview(self._buf)[first : first + length]
        self._start = first + length
        if end is not None and self.sock.gettimeout() != self.timeout:
            self.sock.settimeout(self.timeout)  # sends that follow get the usual time, not what was left
        return pdu_type, body

    def send(self, *parts: bytes | memoryview) -> None:
        """Send whole PDUs. What the socket takes at once goes without a wait (:meth:`_send_now`);
        the rest waits as before. With a cancel token the wait for a peer that stopped reading
        (its receive window full) is cut into slices (:meth:`_send_in_slices`)."""
        whole = parts
        sent = self._send_now(parts) if self._nowait is not False and len(parts) <= _IOV_MAX else 0
        if sent:
            total = sum(map(len, parts))
            if sent >= total:
                return
            parts = _after(parts, sent)
        if self.cancel is not None and self.sock.gettimeout():
            self._send_in_slices(parts, sent, whole)
            return
        try:
            if self._can_sendmsg and len(parts) > 1:
                total = sum(map(len, parts))
                sent = self.sock.sendmsg(parts)
                if sent < total:  # rare on blocking sockets: finish the rest
                    rest = b"".join(bytes(p) for p in parts)[sent:]
                    self.sock.sendall(rest)
            elif len(parts) == 1:
                self.sock.sendall(parts[0])
            else:
                self.sock.sendall(b"".join(parts))
        except TimeoutError:
            raise ConnectionClosed("the peer stopped reading (send timed out)") from None
        except OSError as exc:
            raise ConnectionClosed(f"connection lost while sending: {exc.strerror or exc}") from exc

    def _send_now(self, parts: tuple[bytes | memoryview, ...]) -> int:
        """Send what the socket's buffer takes now, without waiting: the bytes sent (0 when it
        is full).

        A send on a socket with a timeout costs CPython a ``poll`` before its ``sendmsg``, and
        the sliced send of a cancellable stream two ``ioctl(FIONBIO)`` around it (its
        ``settimeout`` to the slice and back): three system calls, each a hand-off of the GIL to
        another association's thread, for a C-STORE response of ~170 bytes that the buffer
        always takes. The second socket object (a duplicate descriptor, no timeout: no ``poll``)
        sends with ``MSG_DONTWAIT`` (never blocks, whatever the descriptor's mode) and
        ``MSG_NOSIGNAL`` (a closed connection raises, no SIGPIPE, in any embedding application).
        Raises ConnectionClosed when the connection is gone."""
        nowait = self._nowait
        if nowait is None:
            try:
                sock = self.sock
                nowait = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
            except (OSError, AttributeError, ValueError):
                self._nowait = False
                return 0
            self._nowait = nowait
            if self.closed:  # closed on another thread meanwhile (before or after close() looked)
                self._nowait = False
                nowait.close()
                return 0
        elif nowait is False:
            return 0
        try:
            return nowait.sendmsg(parts, (), _NOWAIT_FLAGS)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            if self.closed:
                return 0  # let the usual path report the closed stream
            raise ConnectionClosed(f"connection lost while sending: {exc.strerror or exc}") from exc

    def _send_in_slices(
        self, parts: tuple[bytes | memoryview, ...], sent: int = 0, whole: tuple[bytes | memoryview, ...] = ()
    ) -> None:
        """:meth:`send` that looks at ``cancel`` every slice while the peer takes nothing: a
        peer that accepts a C-STORE and stops reading held a cancelled send for the whole
        timeout. Each slice's ``sendmsg`` (``send`` on TLS, whose record OpenSSL finishes on the
        next call with the same bytes) either sends what fits or times out having sent nothing;
        the timeout (the socket's) counts from the last byte the peer took. CancelledError on a
        cancel (:attr:`cut` when part of these PDUs went out, the rest of the one under way
        kept for :meth:`abort`; ``whole``: the PDUs of which the first ``sent`` bytes went
        before), ConnectionClosed when the timeout passes."""
        sock, timeout = self.sock, self.sock.gettimeout()
        whole = whole or parts
        done = [sent]
        if self._can_sendmsg or len(parts) == 1:
            views = [memoryview(p).cast("B") for p in parts if len(p)]
        else:
            views = [memoryview(b"".join(parts))]

        def attempt(seconds: float) -> int:
            if sock.gettimeout() != seconds:
                sock.settimeout(seconds)
            # a second Ctrl-C in the main thread waits for the count (the slice's end at most):
            # raised between the send and the count, it left the rest of the PDU unknown
            with uninterrupted:
                n = sock.sendmsg(views[:_IOV_MAX]) if self._can_sendmsg else sock.send(views[0])
                done[0] += n
            return n

        try:
            while views:
                n = wait_in_slices(attempt, timeout, self.cancel, "the peer to read what we send")  # type: ignore[arg-type]
                while n:
                    if n >= len(views[0]):
                        n -= len(views.pop(0))
                    else:
                        views[0], n = views[0][n:], 0
        except (CancelledError, KeyboardInterrupt):  # the second: a second Ctrl-C in the main thread
            self.cut = done[0] > 0
            if self.cut and not is_tls(sock):  # TLS: OpenSSL holds the record under way
                self._tail = _rest_of_pdu(whole, done[0])
            raise
        except TimeoutError:
            raise ConnectionClosed("the peer stopped reading (send timed out)") from None
        except OSError as exc:
            raise ConnectionClosed(f"connection lost while sending: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                if sock.gettimeout() != timeout:
                    sock.settimeout(timeout)

    def abort(self, source: int = ABORT_SERVICE_USER, reason: int = 0) -> None:
        """Send A-ABORT (best effort, PS3.8 9.3.8) and close.

        After a :attr:`cut` send (a peer that stopped reading in the middle of a message) the
        A-ABORT goes after the rest of the PDU under way (else the peer reads it as that rest),
        both put in the socket's send buffer without waiting (:meth:`_queue`): the kernel
        delivers them, then the connection's end, if the peer reads again, after we are gone.
        Where they do not fit (the buffer may not grow past ``net.core.wmem_max``), or over
        TLS, the connection is only closed, as before."""
        if self.cut:
            if not is_tls(self.sock):
                self._queue(self._tail + encode_abort(source, reason))
            self.close()
            return
        with contextlib.suppress(OSError, NetworkError):
            self.sock.settimeout(1.0)
            self.sock.sendall(encode_abort(source, reason))
        self.close()

    def _queue(self, data: bytes) -> None:
        """``data`` into the socket's send buffer without waiting, what it takes of it: the
        buffer, full when the peer stopped reading, is grown by the size of ``data`` first."""
        sock = self.sock
        with contextlib.suppress(OSError, ValueError):
            sock.settimeout(0.0)  # a send with a timeout waits for room first
            size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size + len(data))
            view = memoryview(data)
            while view:
                view = view[sock.send(view, _NOWAIT_FLAGS) :]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        nowait, self._nowait = self._nowait, False
        if isinstance(nowait, socket.socket):
            with contextlib.suppress(OSError):
                nowait.close()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


def is_tls(sock) -> bool:
    """Without ``ssl`` imported no socket can be a TLS one: asking does not import it (7 ms of a
    plain ``dicomplus send``)."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(sock, ssl.SSLSocket)


def set_nodelay(sock: socket.socket) -> None:
    """Disable Nagle's algorithm: without it, each small DIMSE response waits ~40 ms for the
    delayed ACK of the peer (measured: 23 s instead of 0.56 s for 500 C-STOREs)."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
