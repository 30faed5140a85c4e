"""Ctrl-C and the engine's Cancel end the waits test_cancel_stalls.py left out: a peer that accepts
the association and then stops reading (a C-STORE's data set fills its receive window and ours:
the send waits), a C-ECHO whose response never comes (the same peer: the C-ECHO-RQ is never
read) and a DICOMweb server that accepts the connection and never reads (a STOW-RS body, over
HTTP and HTTPS, fills the windows the same way). Each peer is a real socket on loopback
(:class:`~dicomplus_testing.stalls.Stall`); the library is driven with a cancel token as the CLI
and the engine drive it, then the engine's Cancel and Ctrl-C in a real terminal (exit 130, one
account, no traceback: :func:`~dicomplus_testing.stalls.ctrl_c_once_stalled`)."""

from __future__ import annotations

import fcntl
import socket
import ssl
import struct
import termios
import time

import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.stalls import PROMPT, SETTLE, cancel_when, ctrl_c_once_stalled, stall
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.engine.client import SubprocessEngine
from DICOMPlusLib.errors import CancelledError
from DICOMPlusLib.jobs import JobState
from DICOMPlusLib.network.dimse import ul
from DICOMPlusLib.network.echo import echo
from DICOMPlusLib.network.endpoints import DicomwebEndpoint
from DICOMPlusLib.network.nodes import RemoteNode
from DICOMPlusLib.network.send import send_paths
from DICOMPlusLib.network.send_models import SendOptions

#: Instances large enough (8 MiB of pixels each) that the peer's receive window and our send
#: buffer (4 MiB at most on Linux: net.ipv4.tcp_wmem) fill long before the first is sent.
SIDE = 2048
#: What the peer lets arrive unread before it counts as stalled (a send is under way).
UNREAD = 32 * 1024


def _unread(conn: socket.socket) -> int:
    return struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def accept_then_stop_reading(at_least: int):
    """A peer that accepts the association (every context, its first transfer syntax) and never
    reads again; it counts as stalled once ``at_least`` bytes wait unread (0: at once)."""

    def serve(conn: socket.socket) -> None:
        stream = ul.PDUStream(conn, max_receive=1 << 20, timeout=30)
        _, body = stream.read_pdu()
        rq = ul.AssociateRQ.decode(body)
        contexts = [ul.ContextAC(cx.id, ul.PC_ACCEPTANCE, cx.transfer_syntaxes[0]) for cx in rq.contexts]
        stream.send(ul.AssociateAC(rq.called_ae, rq.calling_ae, contexts, max_length=1 << 16).encode())
        deadline = time.monotonic() + 30
        while _unread(conn) < at_least and time.monotonic() < deadline:
            time.sleep(0.02)

    return serve


def never_read(at_least: int):
    """A server that accepts the connection (and the TLS handshake) and never reads; it counts
    as stalled once ``at_least`` bytes wait unread."""

    def serve(conn: socket.socket) -> None:
        deadline = time.monotonic() + 30
        while _unread(conn) < at_least and time.monotonic() < deadline:
            time.sleep(0.02)

    return serve


@pytest.fixture(scope="module")
def https_server(tls_certificate):
    """The self-signed certificate for 127.0.0.1 and the server context that shows it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_certificate.cert, tls_certificate.key)
    return tls_certificate.cert, context


@pytest.fixture(scope="module")
def large_series(tmp_path_factory):
    return make_series(tmp_path_factory.mktemp("large"), n=2, rows=SIDE, cols=SIDE, seed=98)


def test_a_send_to_a_peer_that_stops_reading(large_series):
    with stall(accept_then_stop_reading(UNREAD)) as peer:
        node = RemoteNode.parse(f"DEAF@{LOOPBACK}:{peer.port}")
        token, at = cancel_when(peer.stalled)
        report = send_paths(
            node, [large_series.folder], SendOptions(timeout=600, dimse_timeout=600), cancel=token
        )
        assert at and time.monotonic() - at[0] < PROMPT
    assert report.cancelled and not report.sent, report
    # the file cut short was not sent (the peer cannot have stored half a message), nor the other
    assert [(r.category, r.message) for r in report.results] == [("cancelled", "not sent")] * 2, (
        report.results
    )


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_stow_to_a_server_that_stops_reading(scheme, large_series, https_server):
    cert, context = https_server
    with stall(never_read(UNREAD), context if scheme == "https" else None) as peer:
        url = f"{scheme}://{LOOPBACK}:{peer.port}/dicom-web"
        node = RemoteNode("DEAF", web=DicomwebEndpoint(url, verify=str(cert)))
        token, at = cancel_when(peer.stalled)
        report = send_paths(node, [large_series.folder], SendOptions(timeout=600), cancel=token)
        assert at and time.monotonic() - at[0] < PROMPT
    assert report.cancelled and not report.sent, report
    assert [(r.category, r.message) for r in report.results] == [("cancelled", "not sent")] * 2, (
        report.results
    )


def test_a_c_echo_whose_response_never_comes():
    with stall(accept_then_stop_reading(0)) as peer:
        node = RemoteNode.parse(f"MUTE@{LOOPBACK}:{peer.port}")
        token, at = cancel_when(peer.stalled)
        with pytest.raises(CancelledError):
            echo(node, timeout=600, cancel=token)
        assert at and time.monotonic() - at[0] < PROMPT


#: How each case's peer is made: (the operation, its peer).
PEERS = {
    "send": ("send", lambda: accept_then_stop_reading(UNREAD)),
    "echo": ("echo", lambda: accept_then_stop_reading(0)),
    "stow": ("send", lambda: never_read(UNREAD)),
}


@pytest.mark.parametrize("case", list(PEERS))
def test_the_engines_cancel_ends_the_wait_at_once(case, large_series, tmp_path):
    op, serve = PEERS[case]
    db = str(tmp_path / "db")
    with stall(serve()) as peer, SubprocessEngine() as engine:
        node = (
            RemoteNode("STALL", web=DicomwebEndpoint(f"http://{LOOPBACK}:{peer.port}/dicom-web"))
            if case == "stow"
            else RemoteNode.parse(f"STALL@{LOOPBACK}:{peer.port}")
        )
        if op == "send":
            engine.call("import", {"db": db, "paths": [str(large_series.folder)]}, timeout=60)
            job = engine.submit("send", {"db": db, "node": node, "studies": [large_series.study_uid]})
        else:
            job = engine.submit("echo", {"node": node, "timeout": 600})
        assert peer.stalled.wait(30), job.error
        time.sleep(SETTLE)
        job.cancel()
        assert job.wait(PROMPT), "the cancel was not seen while the peer was not reading"
    assert job.state is JobState.CANCELLED, job.error
    if job.result is not None:  # a send's report
        assert job.result.cancelled and not job.result.sent, job.result


@pytest.mark.parametrize("case", list(PEERS))
def test_ctrl_c_ends_the_wait_at_once(case, large_series, tmp_path, monkeypatch):
    op, serve = PEERS[case]
    monkeypatch.setenv("DICOMPLUS_NODES", str(tmp_path / "nodes.json"))
    with stall(serve()) as peer:
        node = (
            ["--dicomweb", f"http://{LOOPBACK}:{peer.port}/dicom-web"]
            if case == "stow"
            else [f"STALL@{LOOPBACK}:{peer.port}"]
        )
        rest = [str(large_series.folder)] if op == "send" else []
        account = {
            "send": "cancelled after 0/2 files; 0 kept",  # the file cut short was not sent
            "echo": "dicomplus: interrupted",  # as when Ctrl-C stops it while connecting
        }[op]
        ctrl_c_once_stalled(peer.stalled, node, [op, *rest], account, tmp_path / "db")
