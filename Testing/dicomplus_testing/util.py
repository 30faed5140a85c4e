"""Small helpers shared by the fixture modules."""

from __future__ import annotations

import os
import shutil
import socket
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


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def output_dir() -> Path:
    """Where tests write screenshots and artefacts for people to look at (git-ignored)."""
    path = Path(os.environ.get("DICOMPLUS_TEST_OUTPUT", REPO_ROOT / "Testing" / "output"))
    path.mkdir(parents=True, exist_ok=True)
    return path
