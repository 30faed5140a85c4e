"""Ctrl-C in a real terminal while a DICOMweb (HTTP) connection waits for a host that drops
packets: the command ends at once with its one account and exit code 130, as it does on a DIMSE
node (test_cli_terminal.py), not after --timeout. ``requests`` connects with a blocking
``connect()`` that the CLI's Ctrl-C handler (which only cancels) does not interrupt."""

from __future__ import annotations

import http.server
import socket
import time

import pytest
from test_cli_terminal import assert_account_above_summary, cli, interrupt_once_connecting, run_in_terminal

from dicomplus_testing.peers import LOOPBACK, port_that_drops
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import serve_in_thread


@pytest.mark.parametrize(
    ("command", "account"),
    [
        (["echo"], "dicomplus: interrupted"),
        (["query"], "cancelled after 0 results"),
        (["retrieve", "--study", "1.2.3"], "cancelled after 0 instances"),
        (["send", "FILES"], "cancelled after 0/2 files; 0 kept"),
    ],
)
def test_ctrl_c_while_connecting_to_a_dicomweb_host_that_drops_packets(
    command, account, tmp_path, monkeypatch
):
    """The host drops every SYN (a listening socket whose backlog is full): Ctrl-C once the
    connection waits in SYN-SENT ends the command within a few seconds, exit 130, one account."""
    monkeypatch.setenv("DICOMPLUS_NODES", str(tmp_path / "nodes.json"))
    series = make_series(tmp_path / "s", n=2, rows=4, cols=4, seed=92)
    with port_that_drops() as port:
        added = cli("nodes", "add", "DROPS", "--dicomweb", f"http://{LOOPBACK}:{port}/dicom-web")
        assert added.returncode == 0, added.stderr
        rest = [str(series.folder) if a == "FILES" else a for a in command[1:]]
        args = ["--db", str(tmp_path / "db"), command[0], "DROPS", *rest, "--timeout", "600"]
        typed_at: list[float] = []
        connecting = interrupt_once_connecting(port, typed_at)
        code, text = run_in_terminal(args, interrupt_when=connecting, timeout=60)  # far below --timeout 600
    assert time.monotonic() - typed_at[0] < 5, text  # at once, not after --timeout
    assert code == 130, text
    assert account in text and "Traceback" not in text, text
    assert "failed" not in text and "error" not in text, text  # a cancel, not files that failed
    assert text.count(account) == 1, text
    if command[0] == "send":
        assert_account_above_summary(text, "sent ")


@pytest.mark.parametrize(
    ("command", "account"),
    [
        (["query"], "cancelled after 0 results"),
        (["retrieve", "--study", "1.2.3"], "cancelled after 0 instances"),
        (["send", "FILES"], "cancelled after 0/2 files; 0 kept"),
    ],
)
def test_ctrl_c_while_a_dicomweb_server_does_not_answer(command, account, tmp_path, monkeypatch):
    """The server takes the HTTP request and never answers: Ctrl-C ends the command at once
    (130, its one account), not after --timeout, as on a DIMSE peer that holds the association
    request unanswered (test_cli_terminal.py)."""
    monkeypatch.setenv("DICOMPLUS_NODES", str(tmp_path / "nodes.json"))
    series = make_series(tmp_path / "s", n=2, rows=4, cols=4, seed=94)
    with socket.socket() as silent:
        silent.bind((LOOPBACK, 0))
        silent.listen()
        silent.settimeout(60)
        added = cli(
            "nodes", "add", "SILENT", "--dicomweb", f"http://{LOOPBACK}:{silent.getsockname()[1]}/dicom-web"
        )
        assert added.returncode == 0, added.stderr
        rest = [str(series.folder) if a == "FILES" else a for a in command[1:]]
        args = ["--db", str(tmp_path / "db"), command[0], "SILENT", *rest, "--timeout", "600"]
        held, typed_at = [], []

        def requested(_shown: bytes) -> bool:  # the request arrived: the command now waits for the answer
            conn, _ = silent.accept()
            conn.settimeout(60)
            held.append(conn)
            if not conn.recv(4096).startswith((b"GET ", b"POST ")):
                return False
            time.sleep(0.3)  # well inside the wait for the answer
            typed_at.append(time.monotonic())
            return True

        try:
            code, text = run_in_terminal(
                args, interrupt_when=requested, timeout=60
            )  # far below --timeout 600
        finally:
            for conn in held:
                conn.close()
    assert time.monotonic() - typed_at[0] < 5, text
    assert code == 130, text
    assert account in text and "Traceback" not in text, text
    assert "failed" not in text and "error" not in text, text


def test_ctrl_c_while_waiting_for_a_busy_server(tmp_path, monkeypatch):
    """A server that answers 503 with Retry-After: 30 is asked again after 30 s, four times:
    Ctrl-C during that wait ends the query at once (130, its one account)."""
    monkeypatch.setenv("DICOMPLUS_NODES", str(tmp_path / "nodes.json"))
    asked = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(time.monotonic())
            self.send_response(503)
            self.send_header("Retry-After", "30")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Busy)
    serve_in_thread(server)
    try:
        url = f"http://{LOOPBACK}:{server.server_address[1]}/dicom-web"
        assert cli("nodes", "add", "BUSY", "--dicomweb", url).returncode == 0
        typed_at = []

        def waiting(_shown: bytes) -> bool:
            if not asked or time.monotonic() - asked[0] < 0.5:
                return False
            typed_at.append(time.monotonic())
            return True

        code, text = run_in_terminal(
            ["query", "BUSY", "--timeout", "600"], interrupt_when=waiting, timeout=60
        )
    finally:
        server.shutdown()
        server.server_close()
    assert time.monotonic() - typed_at[0] < 5 and len(asked) == 1, text
    assert code == 130, text
    assert "cancelled after 0 results" in text and "Traceback" not in text and "503" not in text, text
