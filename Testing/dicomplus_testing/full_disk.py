"""Helpers of the full-disk tests (test_disk_full.py for the store and SQLite,
test_disk_full_postgres.py for a PostgreSQL server's disk): run a command as a user runs it,
fill a disk, make room, and the one line a command ends with when a disk is full."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from dicomplus_testing.util import REPO_ROOT


def grow(path: Path, size: str = "32m") -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def fill(path: Path, leave: int) -> Path:
    """A file that leaves ``leave`` bytes free on the disk of ``path``."""
    st = os.statvfs(path)
    filler = path / "filler"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def dicomplus(*args, timeout: float = 120) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "DICOMPlusLib.cli", *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_full(
    code: int, err: str, where: str | os.PathLike, what: str | None = None
) -> int | None:
    """Exit 1 and one line naming the disk that is full: the one holding ``where`` (a file or
    folder), or, for a ``postgresql://`` URL, the disk of that database's server. Returns how
    many it says were stored (None: no count)."""
    assert code == 1, err
    # ITK's MetaImage writer says "file stream is fail after write" on std::cerr itself
    err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("MetaImage: "))
    assert "Traceback" not in err and err.count("\n") == 1, err
    shown = str(where)
    disk = (
        "the disk of the PostgreSQL server holding"
        if shown.startswith("postgresql://")
        else "the disk holding"
    )
    match = re.fullmatch(
        rf"dicomplus: error: (?:stored (\d+) of (\d+) {what or '[a-z]+'}; )?{disk} "
        rf"{re.escape(shown)} is full: free space there and run the same command again\n",
        err,
    )
    assert match, err
    return int(match.group(1)) if match.group(1) is not None else None
