"""A loopback TCP relay between a DICOM requester and a real SCP that sees every whole PDU.

A test puts it between the two (the requester connects to ``relay.port``, the relay to
``target``) and watches or changes the traffic by overriding :meth:`PduRelay.from_scp` or
:meth:`PduRelay.to_scp`: each is called with every whole PDU going that way and relays it unless
told otherwise. :func:`commands` decodes the DIMSE commands a P-DATA-TF PDU completes.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

from dicomplus_testing.peers import LOOPBACK
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import ul

#: What a direction's hook is called with: the PDU's type, the whole PDU (header included), the
#: connection it came from and the one it goes to; it returns False to stop relaying that way
#: (after doing with both connections what it wants).
PduHook = Callable[[int, bytes, socket.socket, socket.socket], bool]


class TcpRelay:
    """Relays every connection made to :attr:`port` to ``target`` on loopback: the listening
    socket, the connections and their end; :meth:`_relay` (a subclass's) moves the bytes of one
    connection pair, on threads of its own."""

    def __init__(self, target: int, *, rcvbuf: int = 0) -> None:
        self.target = target
        self.sock = socket.create_server((LOOPBACK, 0))
        if rcvbuf:  # the requesters' connections inherit it: what a stopped relay lets them send
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.sock.accept()
                server = socket.create_connection((LOOPBACK, self.target))
                self._conns += [client, server]
                self._relay(client, server)

    def close(self) -> None:
        self.sock.close()
        for sock in self._conns:
            with contextlib.suppress(OSError):
                sock.close()


class PduRelay(TcpRelay):
    """Relays every connection made to :attr:`port` to ``target`` on loopback, PDU by PDU."""

    def __init__(self, target: int, *, rcvbuf: int = 0) -> None:
        #: How many requesters ended their connection (what they sent all relayed).
        self.requesters_ended = 0
        super().__init__(target, rcvbuf=rcvbuf)

    def from_scp(self, pdu_type: int, pdu: bytes, src: socket.socket, dst: socket.socket) -> bool:
        """A PDU the SCP sent: relayed to the requester."""
        dst.sendall(pdu)
        return True

    def to_scp(self, pdu_type: int, pdu: bytes, src: socket.socket, dst: socket.socket) -> bool:
        """A PDU the requester sent: relayed to the SCP."""
        dst.sendall(pdu)
        return True

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        threading.Thread(target=self._pump, args=(client, server, self.to_scp), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client, self.from_scp), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, hook: PduHook) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                pending += chunk
                while len(pending) >= 6:
                    pdu_type, _, length = struct.unpack_from(">BBI", pending)
                    if len(pending) < 6 + length:
                        break
                    pdu, pending = pending[: 6 + length], pending[6 + length :]
                    if not hook(pdu_type, pdu, src, dst):
                        return
        if hook == self.to_scp:
            self.requesters_ended += 1
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def commands(pdu_type: int, pdu: bytes, partial: bytearray) -> Iterator[dimse.Command]:
    """The DIMSE commands a PDU completes; ``partial`` (one per direction of a connection) holds
    a command's fragments from one PDU to the next."""
    if pdu_type != ul.P_DATA_TF:
        return
    for _ctx, control, data in ul.iter_pdvs(memoryview(pdu)[6:]):
        if control & 0x01:
            dimse.add_command_fragment(partial, data)
            if control & 0x02:
                yield dimse.decode_command(partial)
                partial.clear()


class StallingRelay(PduRelay):
    """Records the PDU types each connection's requester sends (an A-ABORT, an A-RELEASE-RQ:
    what the peer saw at the end) and holds back some of what the SCP sends:

    - ``delay``: each P-DATA-TF waits that long first (the C-STORE responses of a send come
      slowly: a sender is between two files when a test's signal comes);
    - ``hold_release_rp``: an A-RELEASE-RP is never relayed (the requester waits for it);
    - ``stall_at_store``: once the Nth C-STORE-RQ (a C-GET's sub-operation) was relayed on a
      connection, the next P-DATA-TF (its data set) goes out half and nothing more of the SCP's
      reaches that requester (what the SCP still sends is read and dropped: it is never stuck
      sending);
    - ``stall_requester_at_store``: the same the other way, for a requester that sends C-STOREs
      (a PACS storing a C-MOVE's instances to its destination): once its Nth C-STORE-RQ was
      relayed, half its next P-DATA-TF reaches the SCP and nothing more of the requester's does;
    - ``hold_requester_at_store``: once a requester's Nth C-STORE-RQ was relayed, its next
      P-DATA-TF waits, and the reading of its connection with it, until :meth:`resume`: a sender
      blocked in the middle of its message (with a small ``rcvbuf``, once its socket's buffer is
      full). :attr:`held` counts the connections held.
    """

    def __init__(
        self,
        target: int,
        *,
        delay: float = 0.0,
        hold_release_rp: bool = False,
        stall_at_store: int = 0,
        stall_requester_at_store: int = 0,
        hold_requester_at_store: int = 0,
        rcvbuf: int = 0,
    ) -> None:
        self.delay, self.hold_release_rp, self.stall_at_store = delay, hold_release_rp, stall_at_store
        self.stall_requester_at_store = stall_requester_at_store
        self.hold_requester_at_store = hold_requester_at_store
        #: How many connections ``hold_requester_at_store`` holds (or held).
        self.held = 0
        self._resume = threading.Event()
        #: Per connection, the PDU types its requester sent, in order.
        self.from_client: list[list[int]] = []
        #: Per connection (as in ``from_client``), the DIMSE commands its requester sent (their
        #: Command Field: a C-MOVE-RQ tells a C-MOVE's association from a C-FIND's).
        self.commands_from_client: list[list[int]] = []
        #: Per connection (as in ``from_client``), how many data sets its requester sent whole
        #: (their last fragment relayed).
        self.data_sets_from_client: list[int] = []
        #: What the requesters of the connections stalled sent (items of ``from_client``).
        self.stalled: list[list[int]] = []
        self.lock = threading.Lock()
        self._seen: dict[int, tuple[list[int], list[int], list[int]]] = {}  # by the requester's socket
        self._scp: dict[int, list] = {}  # by the requester's socket: [C-STORE-RQs, stalled, partial]
        self._requester: dict[
            int, list
        ] = {}  # by the requester's socket: [C-STORE-RQs, stalled, partial, held]
        super().__init__(target, rcvbuf=rcvbuf)

    def resume(self) -> None:
        """Relay what ``hold_requester_at_store`` held, and all that follows."""
        self._resume.set()

    def _seen_by(self, requester: socket.socket) -> tuple[list[int], list[int], list[int]]:
        """The items of ``from_client`` and ``commands_from_client`` of ``requester``'s
        connection, and a list holding its item of ``data_sets_from_client``."""
        with self.lock:
            mine = self._seen.get(id(requester))
            if mine is None:
                mine = self._seen[id(requester)] = ([], [], [len(self.data_sets_from_client)])
                self.from_client.append(mine[0])
                self.commands_from_client.append(mine[1])
                self.data_sets_from_client.append(0)
            return mine

    def to_scp(self, pdu_type: int, pdu: bytes, src: socket.socket, dst: socket.socket) -> bool:
        seen, asked, index = self._seen_by(src)
        state = self._requester.setdefault(id(src), [0, False, bytearray(), False])
        if (
            pdu_type == ul.P_DATA_TF
            and self.hold_requester_at_store
            and state[0] >= self.hold_requester_at_store
        ):
            if not state[3]:
                state[3] = True
                with self.lock:
                    self.held += 1
            self._resume.wait()
        fields = [c.field for c in commands(pdu_type, pdu, state[2])]
        with self.lock:
            seen.append(pdu_type)
            asked += fields
            if pdu_type == ul.P_DATA_TF:
                self.data_sets_from_client[index[0]] += sum(
                    1 for _, control, _ in ul.iter_pdvs(memoryview(pdu)[6:]) if control & 0x03 == 0x02
                )
        if state[1]:
            return True  # read and dropped
        limit = self.stall_requester_at_store
        if pdu_type == ul.P_DATA_TF and limit and state[0] >= limit:
            with contextlib.suppress(OSError):
                dst.sendall(pdu[: len(pdu) // 2])
            state[1] = True
            with self.lock:
                self.stalled.append(seen)
            return True
        with contextlib.suppress(OSError):
            dst.sendall(pdu)
        state[0] += fields.count(dimse.C_STORE_RQ)
        return True

    def from_scp(self, pdu_type: int, pdu: bytes, src: socket.socket, dst: socket.socket) -> bool:
        state = self._scp.setdefault(id(dst), [0, False, bytearray()])
        if state[1] or (pdu_type == ul.A_RELEASE_RP and self.hold_release_rp):
            return True  # read and dropped
        if pdu_type == ul.P_DATA_TF and self.stall_at_store and state[0] >= self.stall_at_store:
            with contextlib.suppress(OSError):
                dst.sendall(pdu[: len(pdu) // 2])
            state[1] = True
            seen = self._seen_by(dst)[0]
            with self.lock:
                self.stalled.append(seen)
            return True
        if pdu_type == ul.P_DATA_TF and self.delay:
            time.sleep(self.delay)
        with contextlib.suppress(OSError):
            dst.sendall(pdu)
        if self.stall_at_store:
            state[0] += sum(c.field == dimse.C_STORE_RQ for c in commands(pdu_type, pdu, state[2]))
        return True

    def close(self) -> None:
        self._resume.set()
        super().close()

    def sent(self, pdu_type: int) -> int:
        """How many connections' requesters sent a PDU of ``pdu_type``."""
        with self.lock:
            return sum(1 for seen in self.from_client if pdu_type in seen)
