"""echo(node) against real peers, and its diagnosis of each way an echo fails."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading

import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.database import Database
from DICOMPlusLib.network.echo import EchoProblem, echo
from DICOMPlusLib.network.listener import Listener, ListenerConfig
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode


@pytest.fixture
def listener(tmp_path):
    db = Database(tmp_path / "db")
    lst = Listener(
        db, ListenerConfig(port=0, host=LOOPBACK, allowed_calling_aets=("DICOMPLUS", "FRIEND"))
    ).start()
    yield lst
    lst.stop()
    db.close()


@contextlib.contextmanager
def tcp_server(behaviour: str):
    """A TCP server on loopback that accepts and then stays silent or closes at once."""
    server = socket.create_server((LOOPBACK, 0))
    stop = threading.Event()
    held = []

    def run():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            if behaviour == "close":
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def test_echo_ok_against_our_listener_and_orthanc(listener, orthanc_session):
    ours = echo(RemoteNode("us", DimseEndpoint("DICOMPLUS", LOOPBACK, listener.port)))
    assert ours.ok and ours.status == 0 and ours.problem is None
    theirs = echo(
        RemoteNode("orthanc", DimseEndpoint(orthanc_session.aet, LOOPBACK, orthanc_session.dicom_port))
    )
    assert theirs.ok, theirs.message


def test_connection_refused():
    result = echo(RemoteNode("nobody", DimseEndpoint("X", LOOPBACK, free_port())))
    assert not result.ok and result.problem is EchoProblem.REFUSED
    assert "nothing listens" in result.message


def test_calling_ae_not_allowed(listener):
    result = echo(
        RemoteNode("us", DimseEndpoint("DICOMPLUS", LOOPBACK, listener.port)), calling_ae_title="STRANGER"
    )
    assert result.problem is EchoProblem.REJECTED_CALLING_AE
    assert "STRANGER" in result.message and "calling AE title not recognized" in result.message
    assert echo(
        RemoteNode("us", DimseEndpoint("DICOMPLUS", LOOPBACK, listener.port)), calling_ae_title="FRIEND"
    ).ok


def test_called_ae_not_recognised_by_orthanc(orthanc_session):
    result = echo(RemoteNode("orthanc", DimseEndpoint("WRONGAE", LOOPBACK, orthanc_session.dicom_port)))
    assert result.problem is EchoProblem.REJECTED_CALLED_AE
    assert "WRONGAE" in result.message


def test_the_web_port_of_orthanc_instead_of_its_dicom_port(orthanc_session):
    """A node given Orthanc's HTTP port (8042) instead of its DICOM port (4242): said in those
    words, not "unrecognized PDU type 0x48" (the H of its "HTTP/1.1 400" answer)."""
    result = echo(RemoteNode("orthanc", DimseEndpoint("ORTHANC", LOOPBACK, orthanc_session.http_port)))
    assert not result.ok and result.problem is EchoProblem.PROTOCOL, result.message
    assert "it answered in HTTP: this is a web port" in result.message and "--dicomweb" in result.message
    assert "0x48" not in result.message


def test_timeout_when_nothing_answers():
    with tcp_server("silent") as port:
        result = echo(RemoteNode("mute", DimseEndpoint("X", LOOPBACK, port)), timeout=0.5)
    assert result.problem is EchoProblem.TIMEOUT
    assert "did not answer" in result.message


def test_connection_closed_without_an_answer():
    with tcp_server("close") as port:
        result = echo(RemoteNode("rude", DimseEndpoint("X", LOOPBACK, port)), timeout=5)
    assert result.problem is EchoProblem.CLOSED


def test_unresolvable_host():
    result = echo(RemoteNode("ghost", DimseEndpoint("X", "no-such-host.invalid", 104)), timeout=5)
    assert result.problem is EchoProblem.UNREACHABLE


def test_cli_echo(listener, tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "DICOMPlusLib.cli", *map(str, args)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    ok = cli("echo", f"DICOMPLUS@{LOOPBACK}:{listener.port}")
    assert ok.returncode == 0 and ok.stdout.startswith("ok:")
    nodes = tmp_path / "nodes.json"
    assert (
        cli("nodes", "add", "mine", f"DICOMPLUS@{LOOPBACK}:{listener.port}", "--nodes", nodes).returncode == 0
    )
    by_name = cli("echo", "mine", "--nodes", nodes, "--json")
    assert by_name.returncode == 0 and json.loads(by_name.stdout)["ok"] is True
    rejected = cli("echo", "mine", "--nodes", nodes, "--calling-ae", "STRANGER")
    assert rejected.returncode == 1 and rejected.stdout.count("calling AE title not recognized") == 1, (
        rejected.stdout
    )
    unknown = cli("echo", "nosuchnode", "--nodes", nodes)
    assert unknown.returncode == 2 and "nodes add" in unknown.stderr
