"""A host name whose lookup hangs: Ctrl-C and --timeout end it (before, getaddrinfo held the command
inside the C library for as long as the resolver kept trying: a KeyboardInterrupt waits for it
to return, and the cancel token is not looked at there).

The lookup hangs for real: each command runs in network and mount namespaces of its own
(``unshare``, which the test runs as root; where the machine does not allow it the test fails and
says why) in which /etc/resolv.conf names 127.0.0.1, where a UDP socket takes the queries and
never answers; the machine's own resolver configuration is not touched. ``RES_OPTIONS`` makes
glibc wait 30 s per try, 5 tries: far past the bounds checked here."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dicomplus_testing.stalls import PROMPT, SETTLE
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT

HOST = "pacs.example.test"

#: Runs inside the namespaces: takes DNS queries on 127.0.0.1:53, answers none, notes each in
#: its log (the first line is its PID, for the test to end it).
SINK = """
import socket, sys
log = open(sys.argv[1], "a", buffering=1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
log.write(f"{__import__('os').getpid()}\\n")
while True:
    sock.recvfrom(4096)
    log.write("query\\n")
"""

#: sh script run by unshare: loopback up, our resolv.conf over the machine's (in this mount
#: namespace only), the sink in the background, then the command in place of the shell.
SETUP = """set -e
ip link set lo up
mount --bind "$1" /etc/resolv.conf
"$2" "$3" "$4" </dev/null >/dev/null 2>&1 &
shift 4
while ! grep -q . "$SINK_LOG" 2>/dev/null; do sleep 0.01; done
exec "$@"
"""


def in_hung_resolver(tmp_path: Path, args: list[str]) -> tuple[subprocess.Popen, Path]:
    """``dicomplus ARGS`` started where every name lookup hangs; (the process, the sink's log)."""
    resolv, log, sink = tmp_path / "resolv.conf", tmp_path / "sink.log", tmp_path / "sink.py"
    resolv.write_text("nameserver 127.0.0.1\n")
    sink.write_text(SINK)
    env = dict(os.environ, RES_OPTIONS="timeout:30 attempts:5", SINK_LOG=str(log))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    cmd = ["unshare", "--net", "--mount", "sh", "-c", SETUP, "setup", str(resolv),
           sys.executable, str(sink), str(log), sys.executable, "-m", "DICOMPlusLib.cli", *args]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return proc, log


def _queried(log: Path) -> bool:
    return log.exists() and "query" in log.read_text()


def _end(proc: subprocess.Popen, log: Path) -> tuple[str, str]:
    """The command's output; the sink and the command (if it still runs) ended by their PIDs."""
    if log.exists() and log.read_text().strip():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(log.read_text().split()[0]), signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    return proc.communicate(timeout=30)


def _wait_for_the_lookup(proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while not _queried(log):
        if proc.poll() is not None:
            out, err = _end(proc, log)
            pytest.fail(f"the command ended before its lookup hung (namespaces not allowed?):\n{out}{err}")
        assert time.monotonic() < deadline, "no DNS query reached the sink"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("command", "account"),
    [
        (["echo"], "dicomplus: interrupted"),
        (["query"], "cancelled after 0 results"),
        (["send", "FILES"], "cancelled after 0/2 files; 0 kept"),
    ],
)
def test_ctrl_c_ends_a_hung_name_lookup(command, account, tmp_path):
    series = make_series(tmp_path / "s", n=2, rows=4, cols=4, seed=93)
    rest = [str(series.folder) if a == "FILES" else a for a in command[1:]]
    args = ["--db", str(tmp_path / "db"), command[0], f"PACS@{HOST}:104", *rest, "--timeout", "600"]
    proc, log = in_hung_resolver(tmp_path, args)
    try:
        _wait_for_the_lookup(proc, log)
        time.sleep(SETTLE)
        proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends the command
        try:
            code = proc.wait(PROMPT)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        out, err = _end(proc, log)
    assert code == 130, (code, out, err)
    assert account in err and "Traceback" not in err, err
    assert "failed" not in out + err and "error" not in err, (out, err)


def test_timeout_ends_a_hung_name_lookup(tmp_path):
    proc, log = in_hung_resolver(tmp_path, ["echo", f"PACS@{HOST}:104", "--timeout", "1"])
    try:
        _wait_for_the_lookup(proc, log)
        try:
            code = proc.wait(PROMPT)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        out, err = _end(proc, log)
    assert code == 1, (code, out, err)
    assert f"cannot resolve host '{HOST}': the name server did not answer within 1 s" in out, (out, err)
