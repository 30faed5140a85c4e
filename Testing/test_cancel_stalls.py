"""Ctrl-C and the engine's Cancel end the waits on a peer that stops halfway, at once rather than
after --timeout: a TLS handshake whose ServerHello never comes (DIMSE over TLS and HTTPS), a
DICOMweb answer whose body stops (a QIDO-RS JSON answer, a WADO-RS multipart retrieve, over HTTP
and HTTPS), a C-FIND answer that stops inside a PDU, a C-STORE whose response never comes.

Each peer is a real socket on loopback that answers up to the chosen point and then keeps the
connection open, silent (:class:`~dicomplus_testing.stalls.Stall`); the C-STORE peer is
pynetdicom with a handler that does not return. The library is driven as the CLI and the engine
drive it (the services, a cancel token), then the engine's Cancel and Ctrl-C in a real terminal
(exit 130, one account: :func:`~dicomplus_testing.stalls.ctrl_c_once_stalled`)."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable

import pytest
from test_cli_terminal import leftovers

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.stalls import PROMPT, SETTLE, cancel_when, ctrl_c_once_stalled, stall
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database
from DICOMPlusLib.engine.client import SubprocessEngine
from DICOMPlusLib.errors import CancelledError
from DICOMPlusLib.jobs import JobState
from DICOMPlusLib.network.dimse import ul
from DICOMPlusLib.network.endpoints import DicomwebEndpoint, DimseEndpoint
from DICOMPlusLib.network.models import RetrieveOptions
from DICOMPlusLib.network.nodes import RemoteNode
from DICOMPlusLib.network.query import query
from DICOMPlusLib.network.retrieve import retrieve
from DICOMPlusLib.network.send import send_paths
from DICOMPlusLib.network.send_models import SendOptions

STUDY, SERIES = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"


def client_hello(conn: socket.socket) -> None:
    """Take the TLS ClientHello and never send the ServerHello."""
    conn.recv(4096)


def _json(items: list) -> bytes:
    body = json.dumps(items).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


#: A QIDO-RS answer whose body stops after its first bytes (it announced 4000).
QIDO_CUT = b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 4000\r\n\r\n[{"
#: A WADO-RS answer whose body stops inside its first part.
WADO_CUT = (
    b'HTTP/1.1 200 OK\r\nContent-Type: multipart/related; type="application/dicom"; boundary=CUT\r\n'
    b"Connection: close\r\n\r\n--CUT\r\nContent-Type: application/dicom\r\n\r\n" + b"\0" * 300
)


def http(answers: Callable[[str], bytes]) -> Callable[[socket.socket], None]:
    """Answer each request with ``answers(its path)``; a cut answer (QIDO_CUT, WADO_CUT) is the
    last: the connection then stays silent."""

    def serve(conn: socket.socket) -> None:
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                pending += chunk
            head, pending = pending.split(b"\r\n\r\n", 1)
            answer = answers(head.split(b" ")[1].decode())
            conn.sendall(answer)
            if answer in (QIDO_CUT, WADO_CUT):
                return

    return serve


def wado(path: str) -> bytes:
    """A study of one series of two instances, whose retrieve stops inside the first part."""
    if "/instances" in path:
        return _json([{"00080018": {"vr": "UI", "Value": [f"{SERIES}.{i}"]}} for i in (1, 2)])
    if path.split("?")[0].endswith("/series"):
        return _json([{"0020000E": {"vr": "UI", "Value": [SERIES]}}])
    return WADO_CUT


def c_find_cut_in_a_pdu(conn: socket.socket) -> None:
    """Accept the association, take the C-FIND-RQ and answer with a P-DATA-TF PDU that stops
    after 20 of the 200 bytes it announces."""
    stream = ul.PDUStream(conn, max_receive=1 << 20, timeout=30)
    _, body = stream.read_pdu()
    rq = ul.AssociateRQ.decode(body)
    contexts = [ul.ContextAC(cx.id, ul.PC_ACCEPTANCE, cx.transfer_syntaxes[0]) for cx in rq.contexts]
    stream.send(ul.AssociateAC(rq.called_ae, rq.calling_ae, contexts, max_length=1 << 16).encode())
    stream.read_pdu()  # the command; the identifier may follow in another PDU
    conn.sendall(ul.pdata_header(rq.contexts[0].id, 0x03, 200) + b"\0" * 20)


@pytest.fixture(scope="module")
def certificate(tls_certificate):
    """A self-signed certificate for 127.0.0.1 and the server context that shows it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_certificate.cert, tls_certificate.key)
    return tls_certificate.cert, context


@contextlib.contextmanager
def store_without_answer():
    """pynetdicom storing nothing: its C-STORE handler waits until the test ends, so the
    response never comes. Yields the port and an Event set once a C-STORE-RQ arrived."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    arrived, done = threading.Event(), threading.Event()

    def hold(_event):
        arrived.set()
        done.wait(60)
        return 0x0000

    ae = AE("HOLD")
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server((LOOPBACK, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, hold)])
    try:
        yield server.server_address[1], arrived
    finally:
        done.set()
        server.shutdown()


def _query_is_cancelled(node: RemoteNode, event: threading.Event) -> None:
    token, at = cancel_when(event)
    with pytest.raises(CancelledError):
        list(query(node, "study", {}, cancel=token, timeout=600))
    assert at and time.monotonic() - at[0] < PROMPT


def test_a_tls_handshake_without_server_hello_dimse():
    with stall(client_hello) as peer:
        node = RemoteNode("HELLO", DimseEndpoint("HELLO", LOOPBACK, peer.port, tls=True))
        _query_is_cancelled(node, peer.stalled)


def test_a_tls_handshake_without_server_hello_https():
    with stall(client_hello) as peer:
        node = RemoteNode("HELLO", web=DicomwebEndpoint(f"https://{LOOPBACK}:{peer.port}/dicom-web"))
        _query_is_cancelled(node, peer.stalled)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_qido_answer_that_stops_halfway(scheme, certificate):
    cert, context = certificate
    with stall(http(lambda _path: QIDO_CUT), context if scheme == "https" else None) as peer:
        url = f"{scheme}://{LOOPBACK}:{peer.port}/dicom-web"
        _query_is_cancelled(RemoteNode("CUT", web=DicomwebEndpoint(url, verify=str(cert))), peer.stalled)


def test_a_c_find_answer_that_stops_inside_a_pdu():
    with stall(c_find_cut_in_a_pdu) as peer:
        node = RemoteNode.parse(f"CUT@{LOOPBACK}:{peer.port}")
        token, at = cancel_when(peer.stalled)
        with pytest.raises(CancelledError):
            list(query(node, "study", {}, cancel=token, timeout=600))
        assert at and time.monotonic() - at[0] < PROMPT


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_wado_retrieve_that_stops_inside_a_part(scheme, certificate, tmp_path):
    cert, context = certificate
    with stall(http(wado), context if scheme == "https" else None) as peer:
        node = RemoteNode(
            "CUT", web=DicomwebEndpoint(f"{scheme}://{LOOPBACK}:{peer.port}/dicom-web", verify=str(cert))
        )
        db = Database(tmp_path / "db")
        token, at = cancel_when(peer.stalled)
        report = retrieve(node, db, study_uid=STUDY, options=RetrieveOptions(timeout=600), cancel=token)
        assert at and time.monotonic() - at[0] < PROMPT
        assert report.cancelled and not report.done and report.expected == 2, report
        assert not leftovers(tmp_path / "db"), "a part cut short left its temporary file"
        db.close()


def test_a_c_store_whose_response_never_comes(tmp_path):
    series = make_series(tmp_path / "s", n=2, rows=4, cols=4, seed=95)
    with store_without_answer() as (port, arrived):
        node = RemoteNode.parse(f"HOLD@{LOOPBACK}:{port}")
        token, at = cancel_when(arrived)
        options = SendOptions(timeout=600, dimse_timeout=600)
        report = send_paths(node, [series.folder], options, cancel=token)
        assert at and time.monotonic() - at[0] < PROMPT
    assert report.cancelled and not report.sent, report
    assert not [r for r in report.results if r.category == "failure"], report.results


#: The stalls the engine and the CLI are cut out of: (operation, peer, how the node is given).
STALLS = {
    "dimse-tls-handshake": ("query", lambda: stall(client_hello), "dimse-tls"),
    "https-handshake": ("query", lambda: stall(client_hello), "https"),
    "qido-body": ("query", lambda: stall(http(lambda _path: QIDO_CUT)), "http"),
    "wado-body": ("retrieve", lambda: stall(http(wado)), "http"),
    "c-find-inside-a-pdu": ("query", lambda: stall(c_find_cut_in_a_pdu), "dimse"),
    "c-store-response": ("send", None, "dimse"),
}


@contextlib.contextmanager
def stalled_peer(name: str):
    """The peer of STALLS[name]: (its port, the Event set once it went silent)."""
    _op, make, _kind = STALLS[name]
    if make is None:
        with store_without_answer() as (port, arrived):
            yield port, arrived
    else:
        with make() as peer:
            yield peer.port, peer.stalled


def _node(kind: str, port: int) -> RemoteNode:
    if kind in ("http", "https"):
        return RemoteNode("STALL", web=DicomwebEndpoint(f"{kind}://{LOOPBACK}:{port}/dicom-web"))
    return RemoteNode("STALL", DimseEndpoint("STALL", LOOPBACK, port, tls=kind == "dimse-tls"))


@pytest.mark.parametrize("name", list(STALLS))
def test_the_engines_cancel_ends_a_stalled_peer_at_once(name, tmp_path):
    op, _make, kind = STALLS[name]
    series = make_series(tmp_path / "s", n=2, rows=4, cols=4, seed=96)
    db = str(tmp_path / "db")
    with stalled_peer(name) as (port, stalled), SubprocessEngine() as engine:
        node = _node(kind, port)
        engine.call("import", {"db": db, "paths": [str(series.folder)]}, timeout=60)
        args = {
            "query": {"node": node, "level": "study", "criteria": {}},
            "retrieve": {"db": db, "node": node, "study": STUDY},
            "send": {"db": db, "node": node, "studies": [series.study_uid]},
        }[op]
        job = engine.submit(op, args)
        assert stalled.wait(30), job.error
        time.sleep(SETTLE)
        job.cancel()
        assert job.wait(PROMPT), "the cancel was not seen while the peer was silent"
    assert job.state is JobState.CANCELLED, job.error
    if job.result is not None:  # a retrieve's or a send's report
        assert job.result.cancelled, job.result


@pytest.mark.parametrize("name", list(STALLS))
def test_ctrl_c_ends_a_stalled_peer_at_once(name, tmp_path, monkeypatch):
    """In a real terminal: exit 130, the command's one account, no traceback, within seconds of
    the Ctrl-C (the timeout is 600 s)."""
    op, _make, kind = STALLS[name]
    monkeypatch.setenv("DICOMPLUS_NODES", str(tmp_path / "nodes.json"))
    series = make_series(tmp_path / "s", n=2, rows=4, cols=4, seed=97)
    with stalled_peer(name) as (port, stalled):
        node = (
            ["--dicomweb", f"{kind}://{LOOPBACK}:{port}/dicom-web"]
            if "http" in kind
            else [f"STALL@{LOOPBACK}:{port}", *(["--tls"] if kind == "dimse-tls" else [])]
        )
        rest = {"query": [], "retrieve": ["--study", STUDY], "send": [str(series.folder)]}[op]
        account = {
            "query": "cancelled after 0 results",
            "retrieve": "cancelled after 0/2 instances; 0 kept",
            "send": "cancelled after 1/2 files; 0 kept",  # the file the peer took and never answered
        }[op]
        ctrl_c_once_stalled(stalled, node, [op, *rest], account, tmp_path / "db")
