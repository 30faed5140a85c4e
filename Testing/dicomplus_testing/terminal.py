"""The ``dicomplus`` command as a user runs it: in a real terminal (a pseudo-terminal whose line
discipline turns a typed Ctrl-C into SIGINT for the command's process group, as a shell's
terminal does) and as a plain process."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable

from dicomplus_testing.util import REPO_ROOT

#: The child's first step: a session of its own whose controlling terminal is its stdin (the
#: pseudo-terminal), then the command in the same process (``execv``): what ``pty.fork`` does,
#: without running Python in a forked copy of this multi-threaded process (which may deadlock
#: there, Python 3.12 warns).
_TAKE_THE_TERMINAL = (
    "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def spawn_in_terminal(argv: list[str], *, env: dict[str, str], columns: int = 160,
                      rows: int = 40) -> tuple[subprocess.Popen, int]:  # fmt: skip
    """Start ``argv`` on a new pseudo-terminal (``columns`` x ``rows``, set before it starts and
    asks), as the leader of a session whose controlling terminal that is: a typed Ctrl-C
    (``\\x03``) is SIGINT for its process group, closing the terminal SIGHUP for it. Returns the
    process and the terminal's controlling side (the caller closes it)."""
    controller, terminal = pty.openpty()
    try:
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        proc = subprocess.Popen([sys.executable, "-c", _TAKE_THE_TERMINAL, *argv], stdin=terminal,
                                stdout=terminal, stderr=terminal, cwd=REPO_ROOT, env=env)  # fmt: skip
    except BaseException:
        os.close(controller)
        raise
    finally:
        os.close(terminal)
    return proc, controller


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
    proc, fd = spawn_in_terminal([sys.executable, "-m", "DICOMPlusLib.cli", *args], env=env, columns=columns)
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
            proc.kill()
            raise AssertionError(f"{args} did not end in {timeout} s:\n{shown.decode(errors='replace')}")
    finally:
        code = proc.wait()
        os.close(fd)
    text = shown.decode(errors="replace")
    if interrupt_at is not None or interrupt_when is not None:
        assert typed, f"the command ended before it could be interrupted:\n{text}"
    return code, text


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DICOMPlusLib.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
