"""The sample PACS's retrieve sub-operations on the wire: stored files sent as DCMTK sends them.

pynetdicom turns every PDU into a primitive that its DUL thread takes off a queue, runs through
its state machine and encodes, one per loop turn, with a 1 ms sleep whenever the queue is empty
(py-spy and ``strace -c`` on ``dicomplus serve`` during a getscu of 300 CT instances: 35 PDUs
per file at getscu's 16 KiB, ~3.5 sleeps per file; 4x dcmqrscp's time). Here the C-STORE-RQ
of a stored file (the file as it is, after its File Meta Information) and the C-GET-RSPs are
written by the thread that runs the retrieve handler, straight to the association's socket:
a ``sendmsg`` per ~256 KiB of PDUs, as our own C-STORE SCU does
(:func:`~DICOMPlusLib.network.dimse.scu.file_batches`). So are the C-FIND-RSPs (command and
Identifier as pynetdicom's C-FIND service encoded it): queued, they waited for the DUL thread,
which a handler busy making answers let have the GIL only every switch interval (5 ms), so an
image-level C-FIND of 300 instances (a retrieve's plan) went out in bursts over 0.2 s (perf
trace of both processes during ``dicomplus retrieve`` from ``serve``). pynetdicom's DUL thread's own writes
(A-ABORT, responses to anything else) take the same lock, so PDUs never interleave; a message is
written whole under the lock.

The C-STORE-RSP is read by the same thread, which takes the socket from pynetdicom's DUL
thread only through a hand-over (:meth:`Wire._take`): the DUL thread holds ``read_lock`` from
its look at the socket until what it read has been delivered (its event queue is empty: a
P-DATA-TF is then in the DIMSE provider's queue or message, a C-CANCEL in its cancel list), and
the handler's thread takes the socket under that lock, only after the DUL thread has looked
through the wrapper once (so that it is not inside a look of its own begun before the wrapper
was installed). A CI run found what a plain flag allowed: a DUL thread preempted inside its look
read the response while the handler waited on the socket (``test_network_serve`` forces that
interleaving). The handler's thread then waits on the socket and, every 50 ms, on the DIMSE
provider's queue (where pynetdicom puts what ends an association), reads exactly the response's
P-DATA-TF PDU(s) and hands them to the DIMSE provider as the DUL thread would (``DT-2``: the same
decoding, status checks, C-CANCEL bookkeeping); only a C-STORE-RSP of plain success to the
request is recognised here without pynetdicom (no ``EVT_DIMSE_RECV`` for it: serve binds none).
Waiting on the DUL thread instead cost a wake-up every 0.1 ms per file on a 2-core machine shared
with the peer (py-spy of ``serve`` during a getscu). Anything else that arrives first (A-ABORT,
A-RELEASE-RQ, a closed connection) and a TLS socket are left to the DUL thread, and the response
is awaited as pynetdicom does.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, BinaryIO

from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import scu, ul

if TYPE_CHECKING:
    from collections.abc import Iterable

#: What :meth:`Wire.store` returns for a C-STORE-RSP of plain success to its request (the
#: only status Dataset pynetdicom would make of it is ``Status = 0``)
SUCCESS = object()
#: The elements of such a response (the group length is not kept by dimse.decode_command)
_SUCCESS_ELEMENTS = frozenset({dimse.COMMAND_FIELD, dimse.MESSAGE_ID_BEING_RESPONDED_TO, dimse.COMMAND_DATA_SET_TYPE,
                               dimse.STATUS, dimse.AFFECTED_SOP_CLASS_UID, dimse.AFFECTED_SOP_INSTANCE_UID})  # fmt: skip
#: How often the DUL thread looks at the socket while a C-STORE response is due (seconds).
_RESPONSE_POLL = 0.0001
#: How often a thread waiting for the other looks at whether the DUL thread still runs, and the
#: handler's thread at the DIMSE provider's queue while it waits on the socket (seconds).
_CHECK = 0.05
#: The bytes of a stored file read to find its data set: the file meta of a stored instance is
#: a few hundred bytes; one longer goes by pynetdicom's own path.
_META_HEAD = 16384


def data_set_offset(f: BinaryIO) -> int | None:
    """Where the data set of a Part 10 file begins (after the preamble, ``DICM`` and the File
    Meta Information, PS3.10 7.1), read from ``f``'s start; None when the file has no ``DICM``
    or its group 0002 cannot be walked (then pynetdicom's own path sends it). The walk is
    :func:`DICOMPlusLib.database.headerscan.data_set_offset`, a send's too."""
    from DICOMPlusLib.database.headerscan import data_set_offset as walk_meta

    return walk_meta(f.read(_META_HEAD)) or None


class Wire:
    """Direct writes of whole messages on one pynetdicom association (see the module)."""

    def __init__(self, assoc) -> None:
        self.assoc = assoc
        dul = assoc.dul
        transport = dul.socket
        self.stream = ul.PDUStream(transport.socket, timeout=None)
        self.lock = threading.Lock()
        self.sock = transport.socket
        self.direct = not ul.is_tls(self.sock)
        #: held by the DUL thread from its look at the socket until what it read is delivered
        self.read_lock = threading.Lock()
        self.reading = False  # this thread reads the socket: the DUL thread leaves it alone
        self._dul_holds = False  # the DUL thread holds read_lock (only the DUL thread uses it)
        self._wrapped = threading.Event()  # the DUL thread has looked through the wrapper
        original = transport.send
        transport_event = dul._is_transport_event
        do_action = dul.state_machine.do_action

        def release_when_delivered() -> None:  # on the DUL thread
            if self._dul_holds and dul.event_queue.empty():
                self._dul_holds = False
                self.read_lock.release()

        def is_transport_event() -> bool:  # the DUL thread's look at the socket
            if not self._dul_holds:
                self.read_lock.acquire()
                self._dul_holds = True
            if not self._wrapped.is_set():
                self._wrapped.set()
            try:
                return False if self.reading else transport_event()
            finally:
                release_when_delivered()  # else held until the state machine took the PDU

        def action(event) -> None:  # the DUL thread's state machine (DT-2 delivers a P-DATA-TF)
            try:
                do_action(event)
            finally:
                release_when_delivered()

        dul._is_transport_event = is_transport_event
        dul.state_machine.do_action = action

        def send(bytestream: bytes) -> None:  # the DUL thread's writes
            with self.lock:
                original(bytestream)

        transport.send = send

    def _lock_read(self, deadline: float) -> bool:
        """``read_lock``, unless the DUL thread ends (or holds it past ``deadline``) first."""
        dul = self.assoc.dul
        while not self.read_lock.acquire(timeout=_CHECK):
            if not dul.is_alive() or time.monotonic() > deadline:
                return False
        return True

    def _take(self) -> bool:
        """Take the socket from the DUL thread for one response: True when this thread is to
        read it. The DUL thread must have looked through the wrapper once (a look it began
        before is over) and delivered all it read; nothing of another message may be pending."""
        assoc, dul = self.assoc, self.assoc.dul
        timeout = assoc.dimse.dimse_timeout
        deadline = time.monotonic() + (timeout if timeout is not None else 60.0)
        while not self._wrapped.wait(_CHECK):  # once per association (the DUL thread polls every ms)
            if not dul.is_alive() or time.monotonic() > deadline:
                return False
        if not self._lock_read(deadline):
            return False
        try:
            dimse = assoc.dimse
            if dimse.message is not None or not dimse.msg_queue.empty():
                return False
            if dul.state_machine.current_state != "Sta6":  # not (or no longer) an open association
                return False
            self.reading = True
            return True
        finally:
            self.read_lock.release()

    def _give_back(self) -> None:
        """The socket back to the DUL thread (under ``read_lock``: its next look sees it)."""
        if not self.reading:
            return
        if self._lock_read(time.monotonic() + 60.0):
            self.reading = False
            self.read_lock.release()
        else:  # the DUL thread is gone: nobody reads any more
            self.reading = False

    def _size(self) -> int:
        return scu.fragment_size(int(self.assoc.dimse.maximum_pdu_size or 0))

    def _write(self, batches: Iterable[list]) -> None:
        queue = self.assoc.dul.to_provider_queue
        while not queue.empty():  # what pynetdicom queued before goes first
            time.sleep(0.0001)
        with self.lock:
            for parts in batches:
                self.stream.send(*parts)

    def store(self, f: BinaryIO, offset: int, context_id: int, command: bytes, message_id: int):
        """Send C-STORE-RQ ``message_id`` whose data set is ``f`` from ``offset`` to its end, and
        return its C-STORE-RSP as pynetdicom decodes it (None on the DIMSE timeout), as
        pynetdicom's ``send_c_store`` does (reactor paused around it), or :data:`SUCCESS`."""
        assoc = self.assoc
        size = self._size()
        length = os.fstat(f.fileno()).st_size - offset
        f.seek(offset)

        def batches():
            pending = scu.command_parts(context_id, command, size)
            for parts in scu.file_batches(context_id, f, length, size):
                yield pending + parts  # the command shares the first system call
                pending = []

        dul = assoc.dul
        idle = dul._run_loop_delay
        assoc._reactor_checkpoint.clear()
        try:
            while not assoc._is_paused:
                time.sleep(0.0001)
            # before the request goes out: the response is then this thread's to read
            taken = self.direct and self._take()
            try:
                self._write(batches())
                if taken:
                    found, rsp = self._read_response(context_id, message_id)
                    if found:
                        return rsp
            finally:
                self._give_back()
            # the DUL thread sleeps _run_loop_delay (1 ms) between looks at the socket when
            # idle: shorter while the response is due, so that it is read when it arrives
            dul._run_loop_delay = _RESPONSE_POLL
            _, rsp = assoc.dimse.get_msg(block=True)
        finally:
            dul._run_loop_delay = idle
            assoc._reactor_checkpoint.set()
        return rsp

    def _read_response(self, context_id: int, message_id: int) -> tuple[bool, object]:
        """(True, the message) when the response was read here or is in the DIMSE provider's
        queue; (True, None) on the DIMSE timeout, when the connection failed inside a PDU (the
        caller aborts: the DUL thread could not read on from the middle of a PDU) or the DUL
        thread ended; (False, None) when the DUL thread is to read what came. A response of
        plain success to ``message_id`` is :data:`SUCCESS` (pynetdicom's decoding of it cost
        0.25 ms a file); any other message, status or element is pynetdicom's to decode and
        check."""
        from pynetdicom.pdu import P_DATA_TF

        assoc, sock = self.assoc, self.sock
        dimse, dul = assoc.dimse, assoc.dul
        timeout = dimse.dimse_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if not dimse.msg_queue.empty():  # e.g. (None, None): pynetdicom ended the association
                return True, dimse.msg_queue.get_nowait()[1]
            left = _CHECK if deadline is None else min(_CHECK, deadline - time.monotonic())
            if left <= 0:
                return True, None
            if not select.select([sock], [], [], left)[0]:
                if not dul.is_alive():
                    return True, None
                continue
            try:
                head = sock.recv(6, socket.MSG_PEEK)
            except OSError:
                return False, None
            if len(head) < 6 or head[0] != 0x04:  # not a P-DATA-TF (or closed, or a header in parts)
                return False, None
            data = self._recv_exactly(6 + struct.unpack_from(">I", head, 2)[0])
            if data is None:
                return True, None
            dul._idle_timer.restart()
            if _is_success(data, context_id, message_id):
                return True, SUCCESS
            pdu = P_DATA_TF()
            pdu.decode(bytes(data))
            dimse.receive_primitive(pdu.to_primitive())
            # a whole message is in the queue (taken above); a fragment or a C-CANCEL: read on

    def _recv_exactly(self, size: int) -> bytearray | None:
        """``size`` bytes from the socket (already announced by a PDU header); None when the
        connection closes first."""
        buf = bytearray(size)
        view, got = memoryview(buf), 0
        while got < size:
            try:
                n = self.sock.recv_into(view[got:], size - got)
            except OSError:
                return None
            if n == 0:
                return None
            got += n
        return buf

    def send_msg(self, primitive, context_id: int) -> None:
        """pynetdicom's ``DIMSEServiceProvider.send_msg`` without the DUL queue: the message is
        encoded by pynetdicom (the same bytes) and written here."""
        from pynetdicom import evt
        from pynetdicom.dimse import _RSP_TO_MESSAGE
        from pynetdicom.pdu import P_DATA_TF

        encoded = _response(primitive)
        if encoded is not None:  # the common case, without pynetdicom's encoder
            command, identifier = encoded
            size = self._size()
            parts = scu.command_parts(context_id, command, size)
            if identifier is not None:
                parts += data_parts(context_id, identifier, size)
            self._write([parts])
            return
        message = _RSP_TO_MESSAGE[primitive.__class__]()
        message.primitive_to_message(primitive)
        message.context_id = context_id
        evt.trigger(self.assoc, evt.EVT_DIMSE_SENT, {"message": message})
        pdus = []
        for pdata in message.encode_msg(context_id, self.assoc.dimse.maximum_pdu_size):
            pdu = P_DATA_TF()
            pdu.from_primitive(pdata)
            pdus.append(pdu.encode())
        self._write([pdus])


def data_parts(ctx: int, data: bytes, size: int) -> list[bytes | memoryview]:
    """(PDU header, fragment) parts of an encoded data set (an Identifier), one PDV of at most
    ``size`` bytes per P-DATA-TF PDU, the last one flagged last, as pynetdicom fragments it."""
    parts: list[bytes | memoryview] = []
    for start in range(0, len(data), size):
        chunk = data[start : start + size]
        last = start + size >= len(data)
        parts += [ul.pdata_header(ctx, 0x02 if last else 0x00, len(chunk)), chunk]
    return parts


def _is_success(pdu: bytearray, context_id: int, message_id: int) -> bool:
    """Whether ``pdu`` is a whole C-STORE-RSP of status Success (0000H) to ``message_id`` on
    ``context_id``, in one command PDV, with no element but those of :data:`_SUCCESS_ELEMENTS`."""
    if len(pdu) < 12 or struct.unpack_from(">I", pdu, 6)[0] != len(pdu) - 10:
        return False
    if pdu[10] != context_id or pdu[11] != 0x03:  # one PDV: a command's last fragment
        return False
    try:
        command = dimse.decode_command(memoryview(pdu)[12:])
    except dimse.CommandError:
        return False
    return (
        command.elements.keys() <= _SUCCESS_ELEMENTS
        and command.field == dimse.C_STORE_RSP
        and command.get(dimse.MESSAGE_ID_BEING_RESPONDED_TO) == message_id
        and command.get(dimse.STATUS) == 0x0000
        and not command.has_data_set
    )


def _response(primitive) -> tuple[bytes, bytes | None] | None:
    """A C-GET-RSP without an Identifier or a C-FIND-RSP, encoded by
    :func:`dimse.encode_command` (the Identifier as pynetdicom's C-FIND service encoded it);
    None for anything else (pynetdicom encodes it)."""
    from pynetdicom.dimse_primitives import C_FIND, C_GET

    if getattr(primitive, "OffendingElement", None) is not None:
        return None
    identifier = None
    if isinstance(primitive, C_GET):
        if primitive.Identifier is not None:
            return None
        field = dimse.C_GET_RSP
    elif isinstance(primitive, C_FIND):
        if primitive.Identifier is not None:
            identifier = primitive.Identifier.getvalue()
            if not identifier:  # pynetdicom would announce a data set and send none
                return None
        field = dimse.C_FIND_RSP
    else:
        return None
    elements: dict[int, int | str] = {
        dimse.COMMAND_FIELD: field,
        dimse.MESSAGE_ID_BEING_RESPONDED_TO: primitive.MessageIDBeingRespondedTo,
        dimse.COMMAND_DATA_SET_TYPE: dimse.NO_DATA_SET if identifier is None else 0x0001,
        dimse.STATUS: primitive.Status,
    }
    if primitive.AffectedSOPClassUID:
        elements[dimse.AFFECTED_SOP_CLASS_UID] = str(primitive.AffectedSOPClassUID)
    counts = (
        (dimse.NUMBER_OF_REMAINING_SUBOPERATIONS, "NumberOfRemainingSuboperations"),
        (dimse.NUMBER_OF_COMPLETED_SUBOPERATIONS, "NumberOfCompletedSuboperations"),
        (dimse.NUMBER_OF_FAILED_SUBOPERATIONS, "NumberOfFailedSuboperations"),
        (dimse.NUMBER_OF_WARNING_SUBOPERATIONS, "NumberOfWarningSuboperations"),
    )
    for tag, name in (*counts, (dimse.ERROR_COMMENT, "ErrorComment")):
        value = getattr(primitive, name, None)
        if value is not None:
            elements[tag] = value
    return dimse.encode_command(elements), identifier


def store_command(
    msg_id: int, sop_class: str, sop_instance: str, priority: int, originator_aet, originator_id
) -> bytes:
    """The C-STORE-RQ command pynetdicom would send for these arguments."""
    aet = originator_aet.decode("ascii", "replace") if isinstance(originator_aet, bytes) else originator_aet
    return dimse.store_request(msg_id, sop_class, sop_instance, priority=priority,
                               move_originator_aet=(aet or "").strip(), move_originator_id=originator_id)  # fmt: skip
