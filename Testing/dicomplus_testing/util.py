"""Small helpers shared by the fixture modules."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def peers_required() -> bool:
    """In CI every peer is installed: a missing one is a failure, not a skip."""
    return os.environ.get("DICOMPLUS_REQUIRE_PEERS", "") not in ("", "0", "false")


def missing(what: str) -> None:
    """Skip (developer machine) or fail (CI) because ``what`` is not available."""
    message = f"{what} is not available; install it (see README) or run .ci/run"
    if peers_required():
        pytest.fail(message + " [DICOMPLUS_REQUIRE_PEERS=1]")
    pytest.skip(message)


def require_executable(path: str) -> str:
    """Return ``path`` if it is an executable file, else skip/fail. DCMTK tools are called by
    absolute path because pynetdicom's console scripts of the same name shadow them in a venv."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        found = shutil.which(os.path.basename(path))
        missing(f"{path}" + (f" (found {found} instead)" if found else ""))
    return path


# free_port hands out ports below Linux's ephemeral range (32768-60999, where bind(0) and every
# outgoing connection take theirs), one block per pytest-xdist worker, starting at a random place
# in the block: a port chosen now but bound later (a peer's DicomModalities entry for our listener)
# is then not taken meanwhile by another worker's connection or by its own free_port.
_PORT_BASE, _PORT_BLOCK = 12000, 2500
_next_port: list[int] = []


def _port_block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    start = _PORT_BASE + (index % 8) * _PORT_BLOCK
    return range(start, start + _PORT_BLOCK)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now, and that this process has not handed out
    recently (it walks its worker's block: see above)."""
    block = _port_block()
    if not _next_port:
        _next_port.append(block.start + random.randrange(len(block)))
    for _ in range(len(block)):
        port = _next_port[0]
        _next_port[0] = block.start + (port + 1 - block.start) % len(block)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", port))  # as the peers bind: also fails if 127.0.0.1:port is taken
            except OSError:
                continue
        return port
    raise OSError(f"no free port in {block.start}-{block.stop - 1}")


def output_dir() -> Path:
    """Where tests write screenshots and artefacts for people to look at (git-ignored)."""
    path = Path(os.environ.get("DICOMPLUS_TEST_OUTPUT", REPO_ROOT / "Testing" / "output"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_for(condition, timeout: float = 10.0, what: str = "the condition") -> None:
    """Poll ``condition()`` until it is true; ``AssertionError`` naming ``what`` after ``timeout``
    seconds. For "the event has happened" checks: a fixed sleep is either too short on a loaded
    machine or wasted time on an idle one."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


# /proc/net/tcp states in which data can still flow: SYN_SENT, SYN_RECV, ESTABLISHED.
_OPEN_STATES = {"01", "02", "03"}


def open_connections(port: int) -> int:
    """TCP connections on this machine with ``port`` at either end that can still carry data
    (Linux /proc/net/tcp{,6}). Once it is 0 for a peer's port, nothing more can arrive from that
    peer: the event-based form of "wait a second and check that nothing more arrived"."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote, state = fields[1], fields[2], fields[3]
                ports = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
                count += state in _OPEN_STATES and port in ports
    return count


def data_set_bytes(path: Path | str) -> bytes:
    """The bytes after a Part 10 file's preamble and File Meta Information (what travels in a
    C-STORE), found by reading the meta group's length, not by the library's own scanner."""
    with open(path, "rb") as f:
        f.seek(128)
        assert f.read(4) == b"DICM", path
        meta_start = f.tell()
        f.seek(meta_start + 8)
        group_length = int.from_bytes(f.read(4), "little")
        f.seek(meta_start + 12 + group_length)
        return f.read()


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``dicomplus ARGS`` through the CLI's ``main`` in this process: (exit code, stdout, stderr)."""
    from DICOMPlusLib.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return int(code), out, err


def run_script(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``script`` in a Python process of its own (``dicomplus_testing`` importable), its output
    captured; a hang past ``timeout`` raises ``subprocess.TimeoutExpired``."""
    testing = str(Path(__file__).resolve().parents[1])
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([testing, str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run([sys.executable, "-c", script, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def serve_in_thread(server: socketserver.BaseServer) -> threading.Thread:
    """Run ``server.serve_forever()`` on a daemon thread (started), checking for ``shutdown()``
    every 50 ms: at socketserver's default of 0.5 s, every ``shutdown()`` (a test's teardown)
    waited ~0.5 s for the loop to notice."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return thread
