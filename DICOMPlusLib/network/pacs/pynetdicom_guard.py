"""What ``serve`` does with a peer that breaks the protocol: an A-ABORT and one log line.

pynetdicom answers most protocol errors as PS3.8 9.2 says (A-ABORT), but silently, and some not
at all: a P-DATA-TF whose PDV item is shorter than its 2-byte header (PS3.8 9.3.5.1) raised
``IndexError`` in the DUL thread's state machine, which printed a thread traceback to stderr and
left the peer without an A-ABORT; a C-STORE-RQ on a presentation context negotiated for C-FIND was
stored as if it had been on a storage context; a PDU out of order (a P-DATA-TF before the
A-ASSOCIATE-RQ, a second A-ASSOCIATE-RQ, an A-RELEASE-RP nobody asked for) was aborted with no
word to the admin. A :class:`Guard` is installed on every connection (``evt.EVT_CONN_OPEN``,
before pynetdicom's threads run) and:

- bounds what pynetdicom reads of one PDU (it reads the length a header claims into memory
  first: a peer announcing and sending 4 GiB made the server hold 4 GiB) and refuses a PDU type
  that is none, as the direct listener's :class:`~DICOMPlusLib.network.dimse.ul.PDUStream` does;
- checks each P-DATA-TF's PDV items before pynetdicom decodes it, so a malformed one takes
  pynetdicom's own path for an invalid PDU (event 19: A-ABORT, association ended);
- names the PDU and the state when the state machine aborts for something the peer sent, and
  turns an exception of the state machine into that same abort instead of a dead thread;
- aborts a DIMSE request whose SOP class is not the abstract syntax of its presentation context
  (the context was negotiated for that abstract syntax only, PS3.8 7.1.1.13).

Each bad connection gets one WARNING line (``peer: what was wrong; aborting``), which the command
line shows on stderr; the server goes on serving the others.
"""

from __future__ import annotations

import contextlib
import socket
import struct

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.network.dimse import ul

logger = get_logger(__name__)

#: The state machine's events for a PDU received from the peer (PS3.8 9.2).
_PEER_PDUS = {"Evt3": "an A-ASSOCIATE-AC", "Evt4": "an A-ASSOCIATE-RJ", "Evt6": "an A-ASSOCIATE-RQ",
              "Evt10": "a P-DATA-TF", "Evt12": "an A-RELEASE-RQ", "Evt13": "an A-RELEASE-RP",
              "Evt19": "an unrecognized or invalid PDU"}  # fmt: skip
#: Where the association stood, in a peer's terms.
_STATES = {"Sta2": "before its A-ASSOCIATE-RQ", "Sta6": "on an established association",
           "Sta7": "while we waited for an A-RELEASE-RP", "Sta8": "after its A-RELEASE-RQ"}  # fmt: skip
#: The actions that abort for what the peer sent (PS3.8 9.2: AA-1 before the association, AA-8 after).
_ABORTS = {"AA-1", "AA-8"}


class Guard:
    """One connection's checks (see the module); ``limit``: the largest PDU read, in bytes."""

    def __init__(self, assoc, address, limit: int) -> None:
        from pynetdicom.fsm import TRANSITION_TABLE

        self.transitions = TRANSITION_TABLE
        self.assoc = assoc
        self.dul = assoc.dul
        self.address = f"{address[0]}:{address[1]}" if address else "peer"
        self.limit = limit
        self.refused = False  # the connection was refused here: nothing more is read
        self.noted = False  # its one log line was written
        self.reason = ""  # why the last PDU could not be decoded
        self.last = 0  # the type of the last PDU decoded
        # pynetdicom's internals (3.0): every one is looked up before any is replaced, so a
        # pynetdicom without one of them leaves the connection as pynetdicom made it
        transport = self.dul.socket
        self._read = transport.recv
        self._decode = self.dul._decode_pdu
        self._do_action = self.dul.state_machine.do_action
        self._serve = assoc._serve_request
        assoc._accepted_cx  # noqa: B018 - read by _serve_request
        transport.recv = self._recv
        self.dul._decode_pdu = self._decode_pdu
        self.dul.state_machine.do_action = self._action
        assoc._serve_request = self._serve_request

    def peer(self) -> str:
        calling = str(getattr(self.assoc.requestor, "ae_title", "") or "").strip()
        return f"{self.address} ({calling})" if calling else self.address

    def note(self, why: str) -> None:
        """The connection's one log line."""
        if not self.noted:
            self.noted = True
            logger.warning("%s: %s; aborting", self.peer(), why)

    # -- the socket, read by pynetdicom's DUL thread ------------------------------------------------
    def _refuse(self, why: str) -> None:
        self.note(why)
        self.refused = True
        sock = self.dul.socket.socket
        with contextlib.suppress(OSError, AttributeError):
            sock.sendall(ul.encode_abort(ul.ABORT_SERVICE_PROVIDER, ul.ABORT_UNRECOGNIZED_PDU))
            sock.shutdown(socket.SHUT_RDWR)  # nothing more read: pynetdicom sees it closed

    def _recv(self, nr_bytes: int) -> bytearray:
        if self.refused:  # what the peer sent after: not read
            return bytearray()
        if nr_bytes > self.limit:
            self._refuse(f"a PDU of {nr_bytes} bytes exceeds the limit of {self.limit}")
            return bytearray()
        data = self._read(nr_bytes)
        if nr_bytes == 6 and len(data) == 6 and data[0] not in ul.PDU_NAMES:  # a PDU header
            self._refuse(f"unrecognized PDU type 0x{data[0]:02X}")
        return data

    def _decode_pdu(self, data):
        self.reason = ""
        self.last = data[0] if data else 0
        if self.last == ul.P_DATA_TF:
            problem = _pdv_problem(memoryview(data)[6:])
            if problem:
                self.reason = f"a P-DATA-TF with {problem}"
                raise ValueError(self.reason)  # pynetdicom's invalid-PDU path: event 19
        try:
            return self._decode(data)
        except Exception as exc:
            name = ul.PDU_NAMES.get(data[0], "unknown") if data else "empty"
            self.reason = f"a PDU ({name}) that cannot be decoded ({type(exc).__name__}: {exc})"
            raise

    # -- the state machine, run by pynetdicom's DUL thread ---------------------------------------
    def _action(self, event: str) -> None:
        state = self.dul.state_machine.current_state
        if self.transitions.get((event, state)) in _ABORTS and event in _PEER_PDUS:
            if event == "Evt19":  # a PDU not decoded, or a P-DATA-TF whose DIMSE message is not valid
                message = "a P-DATA-TF whose DIMSE message is not valid" if self.last == ul.P_DATA_TF else ""
                self.note(self.reason or message or _PEER_PDUS[event])
            else:
                self.note(f"{_PEER_PDUS[event]} {_STATES.get(state, f'in state {state}')} (PS3.8 9.2)")
        try:
            self._do_action(event)
        except Exception as exc:  # pynetdicom's action failed on what the peer sent
            self.note(
                f"{_PEER_PDUS.get(event, event)} pynetdicom could not process ({type(exc).__name__}: {exc})"
            )
            self._abort_after_failure()

    def _abort_after_failure(self) -> None:
        """End the association as for an invalid PDU (A-ABORT, association aborted), or, if the
        state machine cannot, as pynetdicom's DUL thread does for its own exceptions."""
        dul = self.dul
        dul._kill_thread = False  # set by the failed action; the abort below needs the thread
        try:
            self._do_action("Evt19")
            return
        except Exception:  # no transition for it: the hard way
            pass
        with contextlib.suppress(OSError, AttributeError):
            dul.socket.socket.sendall(ul.encode_abort(ul.ABORT_SERVICE_PROVIDER, 0))
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        dul._kill_thread = True

    # -- DIMSE requests, on pynetdicom's association thread -------------------------------------------
    def _serve_request(self, msg, context_id: int) -> None:
        context = self.assoc._accepted_cx.get(context_id)
        name = type(msg).__name__.replace("_", "-") + "-RQ"
        if context is None:
            self.note(f"a {name} on presentation context {context_id}, which was not accepted")
            self.assoc.abort()
            return
        sop_class = getattr(msg, "AffectedSOPClassUID", None) or getattr(msg, "RequestedSOPClassUID", None)
        if msg.is_valid_request and str(sop_class or "") != str(context.abstract_syntax):
            self.note(
                f"a {name} for {_named(sop_class)} on presentation context {context_id}, "
                f"which was negotiated for {_named(context.abstract_syntax)}"
            )
            self.assoc.abort()
            return
        # a request under way (its final response included): stopping the server lets it finish
        self.assoc.dicomplus_serving = True
        try:
            self._serve(msg, context_id)
        finally:
            self.assoc.dicomplus_serving = False


def _named(uid) -> str:
    """A SOP class UID and, when pydicom knows it, its name."""
    from pydicom.uid import UID

    if not uid:
        return "no SOP class"
    name = UID(str(uid)).name
    return f"{uid} ({name})" if name and name != str(uid) else str(uid)


def _pdv_problem(body: memoryview) -> str:
    """What is wrong with a P-DATA-TF's PDV items (PS3.8 9.3.5.1), '' if nothing: each is a
    4-byte length, then that many bytes, at least the context ID and the message control
    header."""
    at = 0
    if not body:
        return "no PDV item"
    while at < len(body):
        if at + 4 > len(body):
            return f"{len(body) - at} bytes after its last PDV item (PS3.8 9.3.5.1)"
        (length,) = struct.unpack_from(">I", body, at)
        if length < 2:
            return f"a PDV item of length {length} (at least 2: context ID and message control header, PS3.8 9.3.5.1)"
        if at + 4 + length > len(body):
            return f"a PDV item of length {length} where {len(body) - at - 4} bytes remain (PS3.8 9.3.5.1)"
        at += 4 + length
    return ""


def guard_handler(max_pdu: int):
    """An ``evt.EVT_CONN_OPEN`` handler installing a :class:`Guard`; a PDU is read up to four
    times ``max_pdu`` (at least 4 MiB; 64 MiB when ``max_pdu`` is 0, unlimited)."""
    limit = max(4 * max_pdu, 4 << 20) if max_pdu else 64 << 20

    def handle(event) -> None:
        try:
            Guard(event.assoc, getattr(event, "address", None), limit)
        except (AttributeError, ImportError) as exc:  # another pynetdicom than the one this was written for
            if not _unguarded:
                _unguarded.append(exc)
                logger.warning("pynetdicom %s: peers breaking the protocol are not checked (%s)",
                               _pynetdicom_version(), exc)  # fmt: skip

    return handle


_unguarded: list[Exception] = []  # said once a process


def _pynetdicom_version() -> str:
    import pynetdicom

    return str(getattr(pynetdicom, "__version__", "?"))
