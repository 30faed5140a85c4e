"""The sample PACS's retrieve sub-operations on the wire: stored files sent as DCMTK sends them.

pynetdicom turns every PDU into a primitive that its DUL thread takes off a queue, runs through
its state machine and encodes, one per loop turn, with a 1 ms sleep whenever the queue is empty
(py-spy and ``strace -c`` on ``dicomplus serve`` during a getscu of 300 CT instances: 35 PDUs
per file at getscu's 16 KiB, ~3.5 sleeps per file; 4x dcmqrscp's time). Here the C-STORE-RQ
of a stored file (the file as it is, after its File Meta Information) and the C-GET-RSPs are
written by the thread that runs the retrieve handler, straight to the association's socket:
a ``sendmsg`` per ~256 KiB of PDUs, as our own C-STORE SCU does
(:func:`~DICOMPlusLib.network.dimse.scu.file_batches`). pynetdicom's DUL thread still reads
every PDU (the C-STORE-RSP arrives through its queue as before, and so do C-CANCEL, A-ABORT and
A-RELEASE), and its own writes (A-ABORT, responses to anything else) take the same lock, so
PDUs never interleave; a message is written whole under the lock.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, BinaryIO

from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import scu, ul

if TYPE_CHECKING:
    from collections.abc import Iterable

#: How often the DUL thread looks at the socket while a C-STORE response is due (seconds).
_RESPONSE_POLL = 0.0001
# Explicit VR elements whose length field is 4 bytes after 2 reserved ones (PS3.5 7.1.2)
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)


def data_set_offset(f: BinaryIO) -> int | None:
    """Where the data set of a Part 10 file begins (after the preamble, ``DICM`` and the File
    Meta Information, PS3.10 7.1), read from ``f``'s start; None when the file has no ``DICM``
    or its group 0002 cannot be walked (then pynetdicom's own path sends it)."""
    head = f.read(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    pos = 132
    while True:
        elem = f.read(8)
        if len(elem) < 8:
            return None
        if int.from_bytes(elem[0:2], "little") != 0x0002:
            return pos
        if elem[4:6] in _LONG_VRS:
            more = f.read(4)
            if len(more) < 4:
                return None
            length, size = int.from_bytes(more, "little"), 12
        else:
            length, size = int.from_bytes(elem[6:8], "little"), 8
        if length == 0xFFFFFFFF:
            return None
        pos += size + length
        f.seek(pos)


class Wire:
    """Direct writes of whole messages on one pynetdicom association (see the module)."""

    def __init__(self, assoc) -> None:
        self.assoc = assoc
        transport = assoc.dul.socket
        self.stream = ul.PDUStream(transport.socket, timeout=None)
        self.lock = threading.Lock()
        original = transport.send

        def send(bytestream: bytes) -> None:  # the DUL thread's writes
            with self.lock:
                original(bytestream)

        transport.send = send

    def _size(self) -> int:
        return scu.fragment_size(int(self.assoc.dimse.maximum_pdu_size or 0))

    def _write(self, batches: Iterable[list]) -> None:
        queue = self.assoc.dul.to_provider_queue
        while not queue.empty():  # what pynetdicom queued before goes first
            time.sleep(0.0001)
        with self.lock:
            for parts in batches:
                self.stream.send(*parts)

    def store(self, f: BinaryIO, offset: int, context_id: int, command: bytes):
        """Send a C-STORE-RQ whose data set is ``f`` from ``offset`` to its end, and return the
        C-STORE-RSP the DUL thread receives (None on the DIMSE timeout), as pynetdicom's
        ``send_c_store`` does (reactor paused around it)."""
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
            self._write(batches())
            # the DUL thread sleeps _run_loop_delay (1 ms) between looks at the socket when
            # idle: shorter while the response is due, so that it is read when it arrives
            dul._run_loop_delay = _RESPONSE_POLL
            _, rsp = assoc.dimse.get_msg(block=True)
        finally:
            dul._run_loop_delay = idle
            assoc._reactor_checkpoint.set()
        return rsp

    def send_msg(self, primitive, context_id: int) -> None:
        """pynetdicom's ``DIMSEServiceProvider.send_msg`` without the DUL queue: the message is
        encoded by pynetdicom (the same bytes) and written here."""
        from pynetdicom import evt
        from pynetdicom.dimse import _RSP_TO_MESSAGE
        from pynetdicom.pdu import P_DATA_TF

        command = _get_response(primitive)
        if command is not None:  # the common case, without pynetdicom's encoder
            self._write([scu.command_parts(context_id, command, self._size())])
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


def _get_response(primitive) -> bytes | None:
    """A C-GET-RSP without an Identifier, encoded by :func:`dimse.encode_command`; None for
    anything else (pynetdicom encodes it)."""
    if primitive.Identifier is not None or getattr(primitive, "OffendingElement", None) is not None:
        return None
    elements: dict[int, int | str] = {
        dimse.COMMAND_FIELD: dimse.C_GET_RSP,
        dimse.MESSAGE_ID_BEING_RESPONDED_TO: primitive.MessageIDBeingRespondedTo,
        dimse.COMMAND_DATA_SET_TYPE: dimse.NO_DATA_SET,
        dimse.STATUS: primitive.Status,
    }
    if primitive.AffectedSOPClassUID:
        elements[dimse.AFFECTED_SOP_CLASS_UID] = str(primitive.AffectedSOPClassUID)
    for tag, value in (
        (dimse.NUMBER_OF_REMAINING_SUBOPERATIONS, primitive.NumberOfRemainingSuboperations),
        (dimse.NUMBER_OF_COMPLETED_SUBOPERATIONS, primitive.NumberOfCompletedSuboperations),
        (dimse.NUMBER_OF_FAILED_SUBOPERATIONS, primitive.NumberOfFailedSuboperations),
        (dimse.NUMBER_OF_WARNING_SUBOPERATIONS, primitive.NumberOfWarningSuboperations),
        (dimse.ERROR_COMMENT, getattr(primitive, "ErrorComment", None)),
    ):
        if value is not None:
            elements[tag] = value
    return dimse.encode_command(elements)


def store_command(
    msg_id: int, sop_class: str, sop_instance: str, priority: int, originator_aet, originator_id
) -> bytes:
    """The C-STORE-RQ command pynetdicom would send for these arguments."""
    aet = originator_aet.decode("ascii", "replace") if isinstance(originator_aet, bytes) else originator_aet
    return dimse.store_request(msg_id, sop_class, sop_instance, priority=priority,
                               move_originator_aet=(aet or "").strip(), move_originator_id=originator_id)  # fmt: skip
