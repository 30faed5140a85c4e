"""``dicomplus listen`` against peers that break the protocol: an A-ABORT and one line each on
stderr without --verbose (as ``serve`` does, test_network_serve_hostile.py), and the listener goes
on storing what DCMTK's storescu sends.

Before: the listener's own acceptor logged a protocol error, a bad command set or a peer too slow
to finish its A-ASSOCIATE-RQ at INFO, which the command line shows only with --verbose: a PACS
admin saw nothing of a peer that kept being aborted."""

from __future__ import annotations

import re
import signal
import socket

import pytest

from dicomplus_testing.peers import LOOPBACK, dicomplus_server
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import free_port
from DICOMPlusLib.network.dimse import ul

EXPLICIT = "1.2.840.10008.1.2.1"
TITLE = "DICOMPLUS"


def _associated(port: int) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    stream = ul.PDUStream(sock, timeout=10)
    stream.send(ul.AssociateRQ(TITLE, "HOSTILE", [ul.ContextRQ(1, ul.VERIFICATION, [EXPLICIT])]).encode())
    pdu_type, _ = stream.read_pdu()
    assert pdu_type == ul.A_ASSOCIATE_AC
    return sock


#: name -> (associate first?, bytes sent, what the log line must say)
HOSTILE = {
    "unknown-pdu-type": (True, bytes([0x09, 0]) + (4).to_bytes(4, "big") + b"\0" * 4, "unrecognized PDU type 0x09"),
    "command-set-of-garbage": (True, ul.pdata_header(1, 0x03, 12) + b"\xff" * 12, "in a command set"),
}  # fmt: skip


@pytest.fixture
def listen(tmp_path):
    port = free_port()
    with dicomplus_server(
        "--db", tmp_path / "db", "listen", "--port", port, "--host", LOOPBACK, port=port
    ) as proc:
        yield proc, port


def test_hostile_pdus_get_an_abort_and_one_line_each_and_listen_goes_on(listen, dcmtk, tmp_path):
    proc, port = listen
    series = make_series(tmp_path / "s", n=2, rows=16, cols=16, seed=3)
    sent = {}
    for name, (associate, data, _) in HOSTILE.items():
        sock = _associated(port) if associate else socket.create_connection((LOOPBACK, port), timeout=10)
        sent[name] = sock.getsockname()[1]
        sock.sendall(data)
        reply = sock.recv(16)
        assert reply[:1] == bytes([ul.A_ABORT]), (name, reply)
        sock.close()
    dcmtk.run("storescu", "-aec", TITLE, LOOPBACK, port, *series.files)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert f"{series.series_uid}: 2 instances" in out, out  # stored what storescu sent after them
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err, err
    aborted = [line for line in err.splitlines() if line.endswith("; aborting")]
    assert len(aborted) == len(HOSTILE), err  # one line per bad association
    for name, (_, _, expected) in HOSTILE.items():
        [line] = [x for x in aborted if re.search(rf"\b{LOOPBACK}:{sent[name]}\b", x)]
        assert expected in line, (name, line)
