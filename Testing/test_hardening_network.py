"""Hardening of the C-STORE listener against hostile peers (issue 16, network items).

Real sockets on loopback, a real DCMTK storescu as the legitimate sender: hostile data sets
answered with a status and no file left behind, the called-AE check, and denial of service by
slow or idle connections.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from dicomplus_testing.peers import LOOPBACK, port_accepts
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.database import Database
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import scu, ul
from DICOMPlusLib.network.dimse.status import Status
from DICOMPlusLib.network.listener import Listener, ListenerConfig

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "db")
    yield database
    database.close()


def start_listener(db, **kwargs) -> Listener:
    kwargs.setdefault("port", 0)
    kwargs.setdefault("host", LOOPBACK)
    kwargs.setdefault("series_idle", 0.3)
    return Listener(db, ListenerConfig(**kwargs)).start()


def storescu(dcmtk, port: int, files, *, aec: str = "DICOMPLUS", check: bool = True, timeout: float = 300):
    return dcmtk.run("storescu", "-aet", "PUSHER", "-aec", aec, LOOPBACK, port, *files, check=check,
                     timeout=timeout)  # fmt: skip


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def nested_data_set(levels: int, sop_instance_uid: str) -> bytes:
    """An Explicit VR Little Endian data set whose Content Sequence nests ``levels`` deep, every
    sequence and item of undefined length (PS3.5 7.5.2)."""
    opening = struct.pack("<HH2s2xI", 0x0040, 0xA730, b"SQ", 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return (
        _element(0x00080016, b"UI", CT.encode())
        + _element(0x00080018, b"UI", sop_instance_uid.encode())
        + _element(0x0020000D, b"UI", b"1.2.826.0.1.3680043.10.1137.1")
        + _element(0x0020000E, b"UI", b"1.2.826.0.1.3680043.10.1137.2")
        + opening * levels
        + closing * levels
    )


def _client(port: int, calling: str = "HOSTILE", called: str = "DICOMPLUS") -> scu.ClientAssociation:
    return scu.associate(LOOPBACK, port, called_ae=called, calling_ae=calling, contexts=[(CT, [EXPLICIT])])


# --------------------------------------------------------------------------------------------
# Hostile data sets
# --------------------------------------------------------------------------------------------


def test_deeply_nested_data_set_is_refused_and_the_association_goes_on(db, dcmtk, tmp_path):
    good = make_series(tmp_path / "s", n=2, rows=16, cols=16, seed=161)
    with start_listener(db) as lst:
        assoc = _client(lst.port)
        cx = next(iter(assoc.contexts.values()))
        answer = assoc.store(
            cx, "1.2.826.0.1.3680043.10.1137.3", nested_data_set(2000, "1.2.826.0.1.3680043.10.1137.3")
        )
        assert answer.get(dimse.STATUS) == Status.CANNOT_UNDERSTAND
        # the same association still works: a shallow nesting is stored
        answer = assoc.store(
            cx, "1.2.826.0.1.3680043.10.1137.4", nested_data_set(3, "1.2.826.0.1.3680043.10.1137.4")
        )
        assert answer.get(dimse.STATUS) == Status.SUCCESS
        assoc.release()
        assert not list(db.store.root.rglob(".incoming-*"))
        storescu(dcmtk, lst.port, good.files)  # and the listener serves the next sender
    assert db.info()["instances"] == 3
    stored = {r[0] for r in db._reader().execute("SELECT SOPInstanceUID FROM instances")}
    assert "1.2.826.0.1.3680043.10.1137.3" not in stored


# --------------------------------------------------------------------------------------------
# Denial of service by slow and idle connections
# --------------------------------------------------------------------------------------------


class Trickler:
    """Connections that each send the 6-byte header of an A-ASSOCIATE-RQ, then one byte every
    ``every`` seconds (each receive sees data just in time), plus connections that send nothing."""

    def __init__(self, port: int, trickling: int, idle: int, every: float = 1.0) -> None:
        self.socks: list[socket.socket] = []
        self.idle: list[socket.socket] = []
        for _ in range(trickling):
            s = socket.create_connection((LOOPBACK, port), timeout=5)
            s.sendall(struct.pack(">BBI", 0x01, 0, 400))
            self.socks.append(s)
        for _ in range(idle):
            self.idle.append(socket.create_connection((LOOPBACK, port), timeout=5))
        self.every = every
        self.stop = threading.Event()
        self.trickled = threading.Event()  # every trickling connection has sent one more byte
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            for s in self.socks:
                with contextlib.suppress(OSError):
                    s.send(b"\x00")
            self.trickled.set()

    def closed_by_listener(self) -> int:
        """How many of the connections the listener has closed (EOF or reset on read)."""
        closed = 0
        for s in self.socks + self.idle:
            s.setblocking(False)
            try:
                closed += s.recv(64) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        return closed

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for s in self.socks + self.idle:
            s.close()


def test_trickling_and_idle_sockets_do_not_stop_a_real_sender(db, dcmtk, tmp_path):
    series = make_series(tmp_path / "s", n=100, rows=16, cols=16, seed=162)
    with start_listener(db) as lst:  # the default limits
        hostile = Trickler(lst.port, trickling=40, idle=40)
        try:
            # every hostile connection is in place (accepted) and has trickled
            assert wait_until(lambda: lst.associations >= 80, timeout=10), lst.associations
            assert hostile.trickled.wait(10)
            started = time.monotonic()
            storescu(dcmtk, lst.port, series.files, timeout=60)
            elapsed = time.monotonic() - started
        finally:
            hostile.close()
    assert elapsed < 15, elapsed
    assert db.info()["instances"] == 100


def test_deadlines_end_slow_and_idle_peers(db, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="DICOMPlusLib.network")
    with start_listener(db, acse_timeout=1.5, pdu_timeout=1.5, network_timeout=2.5) as lst:
        # a trickled A-ASSOCIATE-RQ: one byte every 0.3 s is never a timeout of one receive
        hostile = Trickler(lst.port, trickling=3, idle=3, every=0.3)
        try:
            assert wait_until(lambda: hostile.closed_by_listener() == 6, timeout=6)
        finally:
            hostile.close()
        # an established association that trickles a P-DATA-TF
        assoc = _client(lst.port)
        assoc.stream.send(struct.pack(">BBI", ul.P_DATA_TF, 0, 1000))
        started = time.monotonic()
        for _ in range(20):
            with contextlib.suppress(OSError):
                assoc.stream.sock.send(b"\x00")
            time.sleep(0.2)
            if _ended(assoc):
                break
        assert 1.0 < time.monotonic() - started < 4
        # an established association that goes idle
        assoc = _client(lst.port)
        started = time.monotonic()
        assert wait_until(lambda: _ended(assoc), timeout=6)
        assert 2.0 < time.monotonic() - started < 5
    text = caplog.text
    assert "no complete A-ASSOCIATE-RQ within 1.5 s" in text
    assert "a PDU took longer than 1.5 s to arrive" in text
    assert "idle for 2.5 s" in text


def _ended(assoc) -> bool:
    """The listener has aborted or closed the association (non-blocking look)."""
    sock = assoc.stream.sock
    sock.setblocking(False)
    try:
        data = sock.recv(16)
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)
    return data == b"" or data[:1] == bytes([ul.A_ABORT])


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# --------------------------------------------------------------------------------------------
# Called AE title
# --------------------------------------------------------------------------------------------


def test_require_called_ae_rejects_other_titles_and_says_why(db, dcmtk, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="DICOMPlusLib.network")
    series = make_series(tmp_path / "s", n=2, rows=16, cols=16, seed=163)
    with start_listener(db) as lst:  # off by default, like DCMTK and Orthanc
        storescu(dcmtk, lst.port, series.files[:1], aec="ANYTHING")
    assert db.info()["instances"] == 1
    with start_listener(db, require_called_ae=True) as lst:
        refused = storescu(dcmtk, lst.port, series.files[1:], aec="WRONG", check=False)
        assert refused.returncode != 0 and "Called AE Title Not Recognized" in refused.stderr
        assert db.info()["instances"] == 1
        storescu(dcmtk, lst.port, series.files[1:], aec="DICOMPLUS")
    assert db.info()["instances"] == 2
    assert "called AE title not recognized" in caplog.text
    # the same, as data for a front end
    rejections = [r.rejection for r in caplog.records if hasattr(r, "rejection")]
    assert [(r.calling_ae, r.called_ae) for r in rejections] == [("PUSHER", "WRONG")]
    assert rejections[0].reject == (1, 1, 7) and "--require-called-ae" in rejections[0].remedy
    assert "restart with --ae-title WRONG, or without --require-called-ae" in caplog.text
    caplog.clear()
    with start_listener(db, allowed_calling_aets=("FRIEND",)) as lst:
        storescu(dcmtk, lst.port, series.files[:1], check=False)
    assert (
        "calling AE title not recognized" in caplog.text
        and "restart with --allow FRIEND,PUSHER" in caplog.text
    )
    assert "the peer does not know" not in caplog.text  # we are the one who does not know it


def _serve_cli(tmp_path, command: str, port: int, *extra: str) -> subprocess.Popen:
    if command == "serve":  # serve reads a database that exists: the sample one, made here
        extra = ("--sample", *extra)
    cmd = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(tmp_path / "db"), command, "--port", str(port),
           "--host", LOOPBACK, "--json", *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_until(lambda: port_accepts(port) or proc.poll() is not None, timeout=30)
    assert proc.poll() is None, proc.communicate()
    return proc


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


@pytest.mark.parametrize(("command", "title"), [("listen", "DICOMPLUS"), ("serve", "DICOMPLUSPACS")])
def test_require_called_ae_option_of_listen_and_serve(dcmtk, tmp_path, command, title):
    port = free_port()
    proc = _serve_cli(tmp_path, command, port, "--require-called-ae")
    try:
        refused = dcmtk.run("echoscu", "-aec", "WRONG", LOOPBACK, port, check=False)
        assert refused.returncode != 0
        dcmtk.run("echoscu", "-aec", title, LOOPBACK, port)
    finally:
        err = _stop(proc)
    assert "rejected association from calling AE 'ECHOSCU' to called AE 'WRONG'" in err
    assert "called AE title not recognized" in err and "--require-called-ae" in err
    # advice for our side only: "check the AE title configured for the node" is a requestor's
    assert "configured for the node" not in err and "the peer's configuration" not in err
    proc = _serve_cli(tmp_path, command, port)  # without the option, any called AE title
    try:
        dcmtk.run("echoscu", "-aec", "WRONG", LOOPBACK, port)
    finally:
        _stop(proc)


def _associate_from(source: str, port: int) -> tuple[ul.PDUStream, int, bytes]:
    """Send an A-ASSOCIATE-RQ from ``source`` (any 127.x.y.z address is this machine)."""
    sock = socket.create_connection((LOOPBACK, port), timeout=5, source_address=(source, 0))
    stream = ul.PDUStream(sock, timeout=5)
    rq = ul.AssociateRQ(
        "DICOMPLUS", "ANYONE", [ul.ContextRQ(1, ul.VERIFICATION, [EXPLICIT])], max_length=16384
    )
    stream.send(rq.encode())
    pdu_type, body = stream.read_pdu()
    return stream, pdu_type, bytes(body)


def test_per_address_limit_leaves_room_for_other_addresses(db, caplog):
    caplog.set_level(logging.INFO, logger="DICOMPlusLib.network")
    with start_listener(db, max_per_address=2) as lst:
        held = [_associate_from("127.0.0.1", lst.port) for _ in range(2)]
        assert [pdu_type for _, pdu_type, _ in held] == [ul.A_ASSOCIATE_AC] * 2
        third, pdu_type, body = _associate_from("127.0.0.1", lst.port)
        assert pdu_type == ul.A_ASSOCIATE_RJ and body[1:] == bytes([2, 3, 2])  # transient, local limit
        third.close()
        other, pdu_type, _ = _associate_from("127.0.0.2", lst.port)
        assert pdu_type == ul.A_ASSOCIATE_AC
        for stream in [other] + [s for s, _, _ in held]:
            stream.send(ul.RELEASE_RQ)
            stream.close()
    assert "too many associations from 127.0.0.1: 2 are open (max_per_address)" in caplog.text


def test_a_tls_handshake_fed_byte_by_byte_ends_at_the_negotiation_deadline(db, tls_certificate):
    import ssl

    from DICOMPlusLib.network.nodes import TLSSettings

    cert, key = tls_certificate.cert, tls_certificate.key
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with contextlib.suppress(ssl.SSLWantReadError):
        client.wrap_bio(incoming, outgoing).do_handshake()
    hello = outgoing.read()
    tls = TLSSettings(cert_file=str(cert), key_file=str(key))
    with start_listener(db, tls=tls, acse_timeout=1.5) as lst:
        sock = socket.create_connection((LOOPBACK, lst.port), timeout=5)
        started = time.monotonic()
        ended = False
        for byte in hello:  # each receive sees a byte well before a per-receive timeout
            try:
                sock.send(bytes([byte]))
            except OSError:
                ended = True
            time.sleep(0.2)
            sock.setblocking(False)
            try:
                ended = ended or sock.recv(16) == b""
            except BlockingIOError:
                pass
            except OSError:
                ended = True
            sock.setblocking(True)
            if ended or time.monotonic() - started > 10:
                break
        sock.close()
    assert ended and time.monotonic() - started < 5


class _CountingSocket:
    """A socket that counts its receives and timeout changes (PDUStream only uses these
    attributes); ``os.readv`` on its descriptor, PDUStream's read without a wait, is counted by
    ``count_readv``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.receives = 0
        self.timeouts = 0

    def recv_into(self, buffer, nbytes=0):
        self.receives += 1
        return self.sock.recv_into(buffer, nbytes)

    def settimeout(self, value) -> None:
        self.timeouts += 1
        self.sock.settimeout(value)

    def gettimeout(self):
        return self.sock.gettimeout()

    def fileno(self) -> int:
        return self.sock.fileno()

    def count_readv(self, monkeypatch) -> None:
        real = os.readv

        def readv(fd, buffers):
            if fd == self.sock.fileno():
                self.receives += 1
            return real(fd, buffers)

        monkeypatch.setattr(os, "readv", readv)


def test_pdu_stream_takes_waiting_data_without_waiting(monkeypatch):
    """Data already in the socket is read by one non-blocking ``readv`` per buffer-full: no
    ``poll`` inside ``recv_into`` and no ``select`` before it (``receive_now``), and the socket's
    timeout is not set again per PDU (each of these system calls hands the GIL to another
    association's thread). An empty socket is not waited on; a closed one reads as the end."""
    a, b = socket.socketpair()
    try:
        b.settimeout(5.0)  # as the association's socket has it (scu.associate)
        counting = _CountingSocket(b)
        counting.count_readv(monkeypatch)
        stream = ul.PDUStream(counting, timeout=5.0)  # type: ignore[arg-type]
        assert stream.receive_now() is False  # nothing sent yet: no wait
        bodies = [bytes([k]) * (1000 + k) for k in range(5)]
        a.sendall(b"".join(struct.pack(">BBI", ul.P_DATA_TF, 0, len(body)) + body for body in bodies))
        assert stream.receive_now() is True
        for body in bodies:
            pdu_type, got = stream.read_pdu()
            assert (pdu_type, bytes(got)) == (ul.P_DATA_TF, body)
        assert counting.receives == 2  # the empty read above, then one read of all five PDUs
        assert counting.timeouts == 0  # the socket has the stream's timeout: not set again per PDU
        assert stream.receive_now() is False
        a.sendall(ul.RELEASE_RQ)
        a.shutdown(socket.SHUT_WR)
        assert stream.read_pdu()[0] == ul.A_RELEASE_RQ
        assert stream.receive_now() is True  # the peer closed: the read says so
        with pytest.raises(ul.ConnectionClosed):
            stream.read_pdu()
    finally:
        a.close()
        b.close()


def test_pdu_stream_reads_ahead_and_returns_each_pdu_whole(monkeypatch):
    """Several PDUs waiting in the socket take one receive each buffer-full, not three receives
    per PDU (type byte, rest of the header, body); one larger than the buffer grows it."""
    bodies = [bytes([1]) * 100, bytes(range(256)) * 280, bytes([7]) * (300 << 10)]
    a, b = socket.socketpair()
    try:
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        a.sendall(b"".join(struct.pack(">BBI", ul.P_DATA_TF, 0, len(body)) + body for body in bodies))
        a.sendall(ul.RELEASE_RP)
        a.shutdown(socket.SHUT_WR)
        counting = _CountingSocket(b)
        counting.count_readv(monkeypatch)
        stream = ul.PDUStream(counting, timeout=5.0)  # type: ignore[arg-type]
        for body in bodies:
            pdu_type, got = stream.read_pdu()
            assert (pdu_type, bytes(got)) == (ul.P_DATA_TF, body)
        assert stream.read_pdu()[0] == ul.A_RELEASE_RP
        assert stream.buffered == 0
        with pytest.raises(ul.ConnectionClosed):
            stream.read_pdu()
        assert counting.receives <= 6, counting.receives  # 13 without reading ahead
    finally:
        a.close()
        b.close()


# --------------------------------------------------------------------------------------------
# Found by hostile PDUs from a raw socket (s8 fuzzing)
# --------------------------------------------------------------------------------------------


def test_a_command_that_never_ends_is_aborted_before_it_fills_memory(db, caplog):
    """Command fragments without the last one (control 0x01, never 0x03) were kept in memory for
    as long as the peer kept sending them: each PDU within its limit, the command set without
    one. Now: A-ABORT past 64 KiB, one log line, and the listener serves the next peer."""
    caplog.set_level(logging.INFO, logger="DICOMPlusLib.network")
    with start_listener(db) as lst:
        rq = ul.AssociateRQ("DICOMPLUS", "HOSTILE", [ul.ContextRQ(1, CT, [EXPLICIT])], max_length=16384)
        sock = socket.create_connection((LOOPBACK, lst.port), timeout=10)
        stream = ul.PDUStream(sock, max_receive=1 << 20, timeout=10)
        stream.send(rq.encode())
        assert stream.read_pdu()[0] == ul.A_ASSOCIATE_AC
        fragment = b"\0" * 16000
        sent = 0
        with contextlib.suppress(OSError):  # the listener closes the connection mid-stream
            for _ in range(640):  # 10 MB if nothing stopped it
                sock.sendall(ul.pdata_header(1, 0x01, len(fragment)) + fragment)
                sent += 1
        assert stream.read_pdu()[0] == ul.A_ABORT
        stream.close()
        assert sent < 640
        good = scu.associate(LOOPBACK, lst.port, called_ae="DICOMPLUS", calling_ae="GOOD",
                             contexts=[(ul.VERIFICATION, [EXPLICIT])])  # fmt: skip
        assert good.echo() == Status.SUCCESS
        good.release()
    lines = [r.getMessage() for r in caplog.records if "command set longer than" in r.getMessage()]
    assert len(lines) == 1 and "aborting" in lines[0], lines


def test_a_64_kib_abstract_syntax_is_refused_not_taken_for_a_private_class():
    from DICOMPlusLib.network.dimse.acceptor import AcceptorPolicy, negotiate

    rq = ul.AssociateRQ(
        "DICOMPLUS", "HOSTILE",
        [ul.ContextRQ(1, "1." * 32000, [EXPLICIT]), ul.ContextRQ(3, "1.2.826.0.1.3680043.10.1137.5", [EXPLICIT])],
    )  # fmt: skip
    result = negotiate(rq, AcceptorPolicy("DICOMPLUS"))
    assert [cx.result for cx in result.ac.contexts] == [ul.PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, ul.PC_ACCEPTANCE]
    assert list(result.contexts) == [3]  # a private SOP class of a valid UID is still accepted


def test_serve_aborts_a_pdu_longer_than_its_limit_instead_of_holding_it(db, caplog):
    """pynetdicom reads the length a PDU claims into memory before it looks at the PDU: a peer
    announcing 4 GiB and sending it made ``serve`` hold all of it (and it answered an unknown PDU
    type with nothing at all). Now both get an A-ABORT at once and one log line, and the server
    goes on serving."""
    from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP

    caplog.set_level(logging.INFO, logger="DICOMPlusLib.network")
    server = QueryRetrieveSCP(db, QRConfig(port=0, host=LOOPBACK, timeout=10)).start()
    try:
        for header in (struct.pack(">BBI", ul.A_ASSOCIATE_RQ, 0, 0xFFFFFFF0), b"\x09\x00\x00\x00\x00\x04"):
            sock = socket.create_connection((LOOPBACK, server.port), timeout=5)
            sent = 0
            with contextlib.suppress(OSError):  # the server shuts the connection mid-stream
                sock.sendall(header)
                for _ in range(640):  # 10 MB if nothing stopped it
                    sock.sendall(b"\0" * 16000)
                    sent += 1
            assert sock.recv(16)[:1] == bytes([ul.A_ABORT])
            sock.close()
            assert sent < 640
        good = scu.associate(LOOPBACK, server.port, called_ae=server.config.ae_title, calling_ae="GOOD",
                             contexts=[(ul.VERIFICATION, [EXPLICIT])])  # fmt: skip
        assert good.echo() == Status.SUCCESS
        good.release()
    finally:
        server.stop()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().endswith("; aborting")]
    assert len(lines) == 2, lines
    assert "exceeds the limit" in lines[0] and "unrecognized PDU type 0x09" in lines[1]


def test_our_scu_aborts_a_response_command_that_never_ends():
    """The SCU side of the same limit: a peer that answers a C-ECHO with command fragments and
    never the last one was read into memory for as long as it sent them. Now: past 64 KiB the
    SCU aborts and says the response is malformed."""
    from DICOMPlusLib.network.dimse.acceptor import AcceptorPolicy, negotiate

    server = socket.create_server((LOOPBACK, 0))
    port = server.getsockname()[1]
    outcome: dict[str, object] = {}

    def hostile() -> None:
        conn, _ = server.accept()
        stream = ul.PDUStream(conn, max_receive=1 << 20, timeout=10)
        pdu_type, body = stream.read_pdu()
        assert pdu_type == ul.A_ASSOCIATE_RQ
        stream.send(negotiate(ul.AssociateRQ.decode(body), AcceptorPolicy("HOSTILE")).ac.encode())
        stream.read_pdu()  # the C-ECHO request
        fragment = b"\0" * 16000
        sent = 0
        with contextlib.suppress(OSError):
            for _ in range(640):  # 10 MB if nothing stopped it
                conn.sendall(ul.pdata_header(1, 0x01, len(fragment)) + fragment)
                sent += 1
        outcome["sent"] = sent
        with contextlib.suppress(OSError, ul.NetworkError):
            outcome["last"] = stream.read_pdu()[0]
        conn.close()

    thread = threading.Thread(target=hostile, daemon=True)
    thread.start()
    try:
        assoc = scu.associate(LOOPBACK, port, called_ae="HOSTILE", calling_ae="US",
                              contexts=[(ul.VERIFICATION, [EXPLICIT])])  # fmt: skip
        with pytest.raises(ul.ProtocolError, match="command set longer than"):
            assoc.echo()
        thread.join(30)
    finally:
        server.close()
    assert outcome.get("last") == ul.A_ABORT or outcome.get("sent", 640) < 640, outcome


class _SendCountingSocket(_CountingSocket):
    """A plain socket that also counts what PDUStream's send path calls on it: a send through
    the socket object (``poll`` first when it has a timeout); the timeout changes (an
    ``ioctl(FIONBIO)`` each) are counted by :class:`_CountingSocket`. The send without a wait
    goes through a duplicate descriptor."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.family, self.type, self.proto = sock.family, sock.type, sock.proto
        self.sends = 0

    def sendmsg(self, buffers, *args):
        self.sends += 1
        return self.sock.sendmsg(buffers, *args)

    def sendall(self, data):
        self.sends += 1
        return self.sock.sendall(data)

    def shutdown(self, how) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(1 << 20, n - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def test_pdu_stream_sends_what_fits_without_a_wait_or_a_timeout_change():
    """A C-STORE response (or any PDU the socket's buffer takes) goes in one ``sendmsg`` with
    ``MSG_DONTWAIT`` on a duplicate descriptor: no ``poll`` before it (CPython's send on a socket
    with a timeout) and, with a cancel token, no ``settimeout`` to a slice and back (two
    ``ioctl``). Each of those system calls handed the GIL to another association's thread. What
    does not fit (a peer that stopped reading) waits as before, in slices that look at the
    cancel token; the bytes arrive whole and in order; a closed stream closes its duplicate."""
    from DICOMPlusLib.jobs import CancelToken

    a, b = socket.socketpair()
    try:
        b.settimeout(5.0)  # as the association's socket has it
        counting = _SendCountingSocket(b)
        stream = ul.PDUStream(counting, timeout=5.0, cancel=CancelToken(), send_now=True)  # type: ignore[arg-type]
        response = [struct.pack(">BBI", ul.P_DATA_TF, 0, 160), bytes(range(160))]
        for _ in range(20):
            stream.send(*response)
        assert _read_exactly(a, 20 * 166) == b"".join(response) * 20
        assert (counting.sends, counting.timeouts) == (0, 0)

        # more than the socket buffers take while the peer reads slowly: the rest waits (in slices)
        big = os.urandom(8 << 20)
        received: list[bytes] = []
        reader = threading.Thread(
            target=lambda: (time.sleep(0.3), received.append(_read_exactly(a, len(big))))
        )
        reader.start()
        stream.send(big[:1000], memoryview(big)[1000:])
        reader.join(10)
        assert received == [big]
        assert counting.sends >= 1  # the part that did not fit went the waiting way
        assert b.gettimeout() == 5.0

        duplicate = stream._nowait
        assert isinstance(duplicate, socket.socket)
        stream.close()
        assert duplicate.fileno() == -1
        a.settimeout(5.0)
        assert a.recv(10) == b""  # the peer sees the connection end: no descriptor left open
    finally:
        a.close()
        b.close()


def test_pdu_stream_of_a_socket_it_does_not_own_keeps_no_second_descriptor():
    """serve's direct writes share pynetdicom's socket, which pynetdicom closes: a stream
    without ``send_now`` never makes the duplicate descriptor (it would keep the connection
    open after that close), and sends as before."""
    a, b = socket.socketpair()
    try:
        b.settimeout(5.0)
        counting = _SendCountingSocket(b)
        stream = ul.PDUStream(counting, timeout=None)  # type: ignore[arg-type]
        stream.send(ul.RELEASE_RQ, b"")
        assert _read_exactly(a, len(ul.RELEASE_RQ)) == ul.RELEASE_RQ
        assert stream._nowait is False and counting.sends == 1
        b.close()  # its owner closes the socket: the peer sees the end at once
        a.settimeout(5.0)
        assert a.recv(10) == b""
    finally:
        a.close()
        b.close()


def test_pdu_stream_send_to_a_closed_peer_raises_connection_closed():
    """The send without a wait on a connection the peer closed raises ConnectionClosed (no
    SIGPIPE: ``MSG_NOSIGNAL``), as the waiting send does."""
    a, b = socket.socketpair()
    try:
        b.settimeout(5.0)
        stream = ul.PDUStream(b, timeout=5.0, send_now=True)
        a.close()
        with pytest.raises(ul.ConnectionClosed):
            for _ in range(3):  # the first may still land in the buffer of a socket pair
                stream.send(ul.RELEASE_RQ, b"")
    finally:
        b.close()
