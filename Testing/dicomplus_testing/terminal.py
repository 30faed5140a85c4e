"""The ``dicomplus`` command as a user runs it: in a real terminal (a pseudo-terminal whose line
discipline turns a typed Ctrl-C into SIGINT for the command's process group, as a shell's
terminal does) and as a plain process."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable

from dicomplus_testing.util import REPO_ROOT


def run_in_terminal(
    args: list[str],
    *,
    interrupt_at: int | None = None,
    interrupt_when: Callable[[bytes], bool] | None = None,
    timeout: float = 180,
    columns: int = 160,
) -> tuple[int, str]:
    """Run ``dicomplus ARGS`` on a pseudo-terminal (``columns`` wide); type Ctrl-C once the progress
    bar shows ``interrupt_at`` or more done, or once ``interrupt_when(what it showed)`` says so.
    Returns (exit code, everything the terminal showed)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("NO_COLOR", None)
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own with the pty as controlling terminal
        # its size is set here, before the command starts and asks for it
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        os.chdir(REPO_ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "DICOMPlusLib.cli", *args], env)
    shown, typed = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            if interrupt_at is not None and not typed:
                done = [int(a) for a, b in re.findall(rb"(\d+)/(\d+)", shown) if 0 < int(a) < int(b)]
                if done and max(done) >= interrupt_at:
                    os.write(fd, b"\x03")  # Ctrl-C, as typed
                    typed = True
            if interrupt_when is not None and not typed and interrupt_when(shown):
                os.write(fd, b"\x03")
                typed = True
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"{args} did not end in {timeout} s:\n{shown.decode(errors='replace')}")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = shown.decode(errors="replace")
    if interrupt_at is not None or interrupt_when is not None:
        assert typed, f"the command ended before it could be interrupted:\n{text}"
    return os.waitstatus_to_exitcode(status), text


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DICOMPlusLib.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
