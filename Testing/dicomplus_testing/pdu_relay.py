"""A loopback TCP relay between a DICOM client and a real SCP that watches the PDUs both ways.

What the client sends goes through whole, its PDU types recorded per connection (an A-ABORT, an
A-RELEASE-RQ: what the peer saw at the end). What the SCP sends goes through PDU by PDU, except:

- ``delay``: each P-DATA-TF waits that long first (the C-STORE responses of a send come slowly:
  a sender is between two files when a test's signal comes);
- ``hold_release_rp``: an A-RELEASE-RP is never relayed (the client waits for it);
- ``stall_at_store``: once the Nth C-STORE-RQ (a C-GET's sub-operation) was relayed on a
  connection, the next P-DATA-TF (its data set) goes out half and nothing more of the SCP's
  reaches that client (what the SCP still sends is read and dropped: it is never stuck sending).

Connections end when either side closes.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from dicomplus_testing.peers import LOOPBACK
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import ul


class PDURelay:
    def __init__(
        self,
        target: int,
        *,
        delay: float = 0.0,
        hold_release_rp: bool = False,
        stall_at_store: int = 0,
    ) -> None:
        self.target, self.delay, self.hold_release_rp = target, delay, hold_release_rp
        self.stall_at_store = stall_at_store
        #: Per connection, the PDU types the client sent, in order.
        self.from_client: list[list[int]] = []
        #: What the clients of the connections stalled sent (items of ``from_client``).
        self.stalled: list[list[int]] = []
        self.lock = threading.Lock()
        self.sock = socket.create_server((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.sock.accept()
                server = socket.create_connection((LOOPBACK, self.target))
                seen: list[int] = []
                with self.lock:
                    self.from_client.append(seen)
                    self._conns += [client, server]
                threading.Thread(target=self._from_client, args=(client, server, seen), daemon=True).start()
                threading.Thread(target=self._from_scp, args=(server, client, seen), daemon=True).start()

    @staticmethod
    def _pdus(src: socket.socket):
        pending = b""
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                pending += chunk
                while len(pending) >= 6:
                    _, _, length = struct.unpack_from(">BBI", pending)
                    if len(pending) < 6 + length:
                        break
                    pdu, pending = pending[: 6 + length], pending[6 + length :]
                    yield pdu

    def _from_client(self, src: socket.socket, dst: socket.socket, seen: list[int]) -> None:
        for pdu in self._pdus(src):
            with self.lock:
                seen.append(pdu[0])
            with contextlib.suppress(OSError):
                dst.sendall(pdu)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _from_scp(self, src: socket.socket, dst: socket.socket, seen: list[int]) -> None:
        command, stores, stalled = bytearray(), 0, False
        for pdu in self._pdus(src):
            if stalled or (pdu[0] == ul.A_RELEASE_RP and self.hold_release_rp):
                continue
            if pdu[0] == ul.P_DATA_TF and self.stall_at_store and stores >= self.stall_at_store:
                with contextlib.suppress(OSError):
                    dst.sendall(pdu[: len(pdu) // 2])
                stalled = True
                with self.lock:
                    self.stalled.append(seen)
                continue
            if pdu[0] == ul.P_DATA_TF and self.delay:
                time.sleep(self.delay)
            with contextlib.suppress(OSError):
                dst.sendall(pdu)
            if pdu[0] != ul.P_DATA_TF or not self.stall_at_store:
                continue
            for _ctx, control, data in ul.iter_pdvs(memoryview(pdu)[6:]):
                if control & 0x01:
                    dimse.add_command_fragment(command, data)
                    if control & 0x02:
                        stores += dimse.decode_command(command).field == dimse.C_STORE_RQ
                        command.clear()
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def sent(self, pdu_type: int) -> int:
        """How many connections' clients sent a PDU of ``pdu_type``."""
        with self.lock:
            return sum(1 for seen in self.from_client if pdu_type in seen)

    def close(self) -> None:
        self.sock.close()
        with self.lock:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.close()
