"""Floor: read 300 files of 512 KiB (page cache) with cat, in-process Python, and a fresh Python.

The cheapest possible way to touch every byte of a series; what any reader (pydicom, the
DICOMPlus loader, dcmdump) costs beyond it is its own work. It also shows the runner handles
both kinds of candidate: commands (timed as child processes, with peak memory) and callables.
The files are synthetic random bytes written once to bench/_work/floor/ (git-ignored).
"""

from __future__ import annotations

import random
from pathlib import Path

from bench.runner import Benchmark, Candidate, python_command

FILES = 300
FILE_SIZE = 512 * 1024  # about one 512x512 int16 CT slice
CHUNK = 1024 * 1024

READ_LOOP = """
import sys
buffer = bytearray({chunk})
total = 0
for path in sys.argv[1:]:
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            total += n
assert total == {expected}, total
"""


def make_files(folder: Path, count: int = FILES, size: int = FILE_SIZE, seed: int = 9) -> list[Path]:
    """``count`` files of ``size`` random bytes in ``folder``; reused when already there."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"file{i:05d}.bin" for i in range(count)]
    if all(p.is_file() and p.stat().st_size == size for p in paths):
        return paths
    rng = random.Random(seed)
    for path in paths:
        path.write_bytes(rng.randbytes(size))
    return paths


def read_all(paths: list[Path], chunk: int = CHUNK) -> int:
    """Read every byte of ``paths`` into one reused buffer; the bytes read."""
    buffer = bytearray(chunk)
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buffer):
                total += n
    return total


def benchmark(work_dir: Path) -> Benchmark:
    paths = make_files(work_dir / "files")
    expected = FILES * FILE_SIZE
    names = [str(p) for p in paths]

    def python_in_process() -> None:
        total = read_all(paths)
        assert total == expected, total

    return Benchmark(
        name="floor",
        description=f"read {FILES} files x {FILE_SIZE // 1024} KiB ({expected / 1e6:.1f} MB) from the page cache",
        candidates=[
            Candidate("cat", command=["cat", *names], label="cat FILES > /dev/null"),
            Candidate(
                "python",
                function=python_in_process,
                label="readinto loop in this process (no interpreter start)",
            ),
            Candidate(
                "python-process",
                command=python_command(READ_LOOP.format(chunk=CHUNK, expected=expected), *names),
                label="same loop in a fresh python -c",
            ),
        ],
        reference="cat",
        work={"files": FILES, "MB": expected / 1e6},
    )
