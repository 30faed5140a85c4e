"""Peers that stop halfway (:class:`Stall`), and cutting the work out of their waits as a user
does: a cancel token (:func:`cancel_when`) and Ctrl-C in a real terminal
(:func:`ctrl_c_once_stalled`). Used by the tests of Ctrl-C and Cancel (test_cancel_stalls.py,
test_cancel_waits.py, test_serve_stop_stalled.py)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.terminal import cli, run_in_terminal
from DICOMPlusLib.jobs import CancelToken

#: How long after the peer went silent the cancel comes (well inside the wait), and how soon after
#: it the work must have ended (the timeouts are 600 s).
SETTLE, PROMPT = 0.3, 5.0


class Stall:
    """A loopback server whose connections ``serve(conn)`` answers up to the chosen point; then
    the connection stays open and silent until the test ends. ``stalled`` is set once it is."""

    def __init__(self, serve: Callable[[socket.socket], None], tls: ssl.SSLContext | None = None) -> None:
        self.serve, self.tls = serve, tls
        self.stalled = threading.Event()
        self.held: list[socket.socket] = []
        self.sock = socket.create_server((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.held.append(conn)
                threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                self.held.append(conn)
            self.serve(conn)
            self.stalled.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            with contextlib.suppress(OSError):
                conn.close()


@contextlib.contextmanager
def stall(serve: Callable[[socket.socket], None], tls: ssl.SSLContext | None = None):
    server = Stall(serve, tls)
    try:
        yield server
    finally:
        server.close()


def cancel_when(event: threading.Event) -> tuple[CancelToken, list[float]]:
    """A token cancelled SETTLE seconds after ``event``; the time of the cancel goes in the list."""
    token, at = CancelToken(), []

    def later():
        if event.wait(30):
            time.sleep(SETTLE)
            at.append(time.monotonic())
            token.cancel()

    threading.Thread(target=later, daemon=True).start()
    return token, at


def ctrl_c_once_stalled(
    stalled: threading.Event, node: list[str], command: list[str], account: str, db: Path
) -> str:
    """Add the node STALL (``node``: what ``nodes add STALL`` takes after the name) to the node
    list ($DICOMPLUS_NODES: the test sets it), run ``dicomplus --db DB OP STALL ARGS --timeout
    600`` (``command``: OP, then ARGS) in a real terminal and type Ctrl-C SETTLE seconds after the
    peer went silent. The command must end within PROMPT seconds of it with exit 130, no traceback
    and no error, and say ``account`` once. Returns what the terminal showed."""
    added = cli("nodes", "add", "STALL", *node)
    assert added.returncode == 0, added.stderr
    typed_at: list[float] = []

    def silent(_shown: bytes) -> bool:
        if not stalled.is_set():
            return False
        time.sleep(SETTLE)
        typed_at.append(time.monotonic())
        return True

    op, *rest = command
    args = ["--db", str(db), op, "STALL", *rest, "--timeout", "600"]
    code, text = run_in_terminal(args, interrupt_when=silent, timeout=60)
    assert time.monotonic() - typed_at[0] < PROMPT, text
    assert code == 130, text
    assert "Traceback" not in text and "error" not in text, text
    assert text.count(account) == 1, text
    return text


def exit_code_within(proc: subprocess.Popen, seconds: float) -> int | None:
    """``proc``'s exit code once it has ended, or None when it has not ended within ``seconds``
    (the caller kills it)."""
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return None
