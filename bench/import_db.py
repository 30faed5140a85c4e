"""Import: `dicomplus import` of real 512x512 CT files, as a user runs it, vs dcmdump and cp + dcmdump.

The source is 1,008 files (36 series of 28) made from the real CT series
``/work/shared/data/series/dev_ct_axial_plain`` (or ``$DICOMPLUS_BENCH_CT``): every file's bytes
as scanned (532 KB, 512x512 int16), with only its Study/Series/SOP Instance UIDs rewritten so that
each copy is a distinct instance. Generated once into ``bench/_work/import_db/src`` (git-ignored).

Candidates, each a whole process as typed at a shell unless said otherwise:

- ``dcmdump``: DCMTK parsing every file (``-M``: large values not loaded). It copies nothing.
- ``cp+dcmdump``: ``cp -r`` of the folder then ``dcmdump`` of the copy: the same work as an import
  that copies (files copied and every header parsed), by the reference tools.
- ``cp``: ``cp -r`` alone, the floor of a copying import: the kernel's copy of the bytes, which
  ``dcmdump`` never spends (ext4 has no reflinks).
- ``dicomplus``: ``dicomplus import DIR`` into an empty database (files copied into the store).
- ``jobs1``: the same with ``--jobs 1`` (no worker threads: the scans, copies and commits in the
  importing thread), to tell what the worker threads gain on this machine.
- ``in-process``: the same import called from Python in this (already started) process.
- ``link``: ``dicomplus import --link DIR`` (indexed in place, nothing copied).
- ``reimport``: ``dicomplus import DIR`` again (unchanged files skipped) into a database made by
  one ``dicomplus import DIR`` before the rounds: a read-only command, so every round opens that
  database as the process left it, its WAL not yet copied into the database file, as a user's
  second import does. ``reimport-in-process`` the same from Python (without the interpreter's
  start-up) on a database of its own (closing it there checkpoints the WAL).
- ``python``: ``python -c pass`` with the same interpreter, the floor of any command-line process
  (the interpreter and its ``site``), to set beside ``reimport``.
- ``dicomplus-cold`` and ``dcmdump-cold``: as above after the source files' pages were evicted
  from the page cache (``posix_fadvise(DONTNEED)`` on each file: no root needed and nothing else
  on the machine is disturbed); every other candidate reads a warm cache.

After each run its output (database and store, or the copy) is moved aside, the file system
written out and the moved files dropped from the page cache (untimed), so that no run pays for
another's writes; nothing is deleted until the benchmark ends (bench.runner.SetAside: this
machine's file system makes a file created soon after thousands were deleted cost more to create,
which the copying candidates paid for the bench's own deletions and ``dcmdump`` did not). DICOMPlusLib is byte-compiled first
(untimed), as ``pip install`` leaves it: with ``PYTHONDONTWRITEBYTECODE`` set (as on the build
machine) and no ``__pycache__``, every process would compile the modules it imports again. Goals (issue 19): copy >= 0.8x
dcmdump's throughput, link >= 1.5x, importing again >= 20x faster than the first import (at
this size 20x faster is less than the interpreter's own start: ``import_scale`` measures it at
10,080 files).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench.runner import BenchError, Benchmark, Candidate, SetAside, drop_from_cache, remove_tree

SERIES = 36
DCMDUMP = "/usr/bin/dcmdump"
DEFAULT_CT = "/work/shared/data/series/dev_ct_axial_plain"


def make_source(folder: Path, copies: int = SERIES) -> int:
    """Write the source files once (``copies`` series, each the real one with new UIDs); return how many."""
    marker = folder.with_name(folder.name + ".complete")
    if marker.exists():
        return int(marker.read_text())
    import pydicom
    from pydicom.uid import generate_uid

    real = Path(os.environ.get("DICOMPLUS_BENCH_CT", DEFAULT_CT))
    originals = []
    for path in sorted(real.iterdir()) if real.is_dir() else []:
        try:
            ds = pydicom.dcmread(path)
        except Exception:  # the folder's DIRFILE and anything else that is not an image
            continue
        if "PixelData" in ds and ds.get("Rows") == 512 and ds.get("Columns") == 512:
            originals.append(ds)
    if not originals:  # no real data on this machine: synthetic slices with a scanner-like header
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
        from dicomplus_testing.synthetic import make_series

        made = make_series(folder.with_name("synthetic"), n=28, rows=512, cols=512, fat_header=True)
        originals = [pydicom.dcmread(p) for p in made.files]
        (folder.with_name("SYNTHETIC")).write_text(f"no 512x512 CT in {real}\n")
    shutil.rmtree(folder, ignore_errors=True)
    count = 0
    width = len(str(copies - 1))
    for s in range(copies):
        out = folder / f"series{s:0{max(width, 2)}d}"
        out.mkdir(parents=True)
        study, series = generate_uid(), generate_uid()
        for i, ds in enumerate(originals):
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(out / f"IM{i:04d}.dcm", enforce_file_format=True)
            count += 1
    marker.write_text(str(count))
    return count


def _evict(folder: Path) -> None:
    """Drop the files' pages from the page cache (the next read comes from the disk)."""
    os.sync()
    drop_from_cache(folder)


def evicted(folder: Path) -> Callable[[], None]:
    """A candidate's untimed ``before``: drop ``folder``'s pages from the page cache."""

    def before() -> None:
        _evict(folder)

    return before


def moved_aside(aside: SetAside, *paths: Path) -> Callable[[], None]:
    """A candidate's untimed ``after``: its output moved aside (the file system written out, so
    that one run's writes are not paid for by the next: the kernel throttles a writer while
    earlier dirty pages are written back)."""

    def after() -> None:
        aside.move(*paths)

    return after


def in_process_import(database: Path, src: Path, files: int, *, again: bool = False) -> Callable[[], None]:
    """``Database.import_paths([src])`` into ``database`` in the benchmark's process; it must
    add every file (``again``: find every file unchanged)."""

    def run() -> None:
        from DICOMPlusLib.database import Database

        with Database(database) as db:
            report = db.import_paths([src])
        if again and report.unchanged != files:
            raise BenchError(f"in-process import again: {report.unchanged} of {files} unchanged")
        if not again and report.added != files:
            raise BenchError(f"in-process import added {report.added} of {files}")

    return run


def imported_once(dicomplus: str, database: Path, src: Path, *options: str) -> None:
    """``dicomplus import`` of ``src`` into a new ``database``, as a user's first import (a
    process, which leaves its WAL for the next one to open)."""
    remove_tree(database)
    subprocess.run(
        [dicomplus, "--db", str(database), "import", *options, str(src), "--json"],
        check=True,
        capture_output=True,
    )


def byte_compile() -> None:
    """Compile the package the ``dicomplus`` command imports, as an installed package is."""
    import compileall

    import DICOMPlusLib

    compileall.compile_dir(str(Path(DICOMPlusLib.__file__).parent), quiet=1)


def benchmark(work_dir: Path) -> Benchmark:
    byte_compile()
    src = work_dir / "src"
    files = make_source(src)
    kind = "synthetic" if (work_dir / "SYNTHETIC").exists() else "real"
    megabytes = sum(p.stat().st_size for p in src.rglob("*.dcm")) / 1e6
    dicomplus = str(Path(sys.executable).with_name("dicomplus"))
    fresh, linked, full, full_inproc, inproc, copied = (
        work_dir / n for n in ("fresh", "linked", "full", "full-inproc", "inproc", "copied")
    )

    for path in (fresh, linked, inproc, copied):
        remove_tree(path)
    aside = SetAside(work_dir / "set-aside")

    def away(path: Path):
        return moved_aside(aside, path)

    import_in_process = in_process_import(inproc, src, files)
    reimport_in_process = in_process_import(full_inproc, src, files, again=True)
    # Each import again has a database of its own: closing one in this process checkpoints its
    # WAL, which a command line process (ended by os._exit) never does; shared, every round
    # but the first would have timed the process on a database no user's second import meets.
    imported_once(dicomplus, full, src)
    imported_once(dicomplus, full_inproc, src)
    dump = f"{DCMDUMP} -q -M +sd +r"
    return Benchmark(
        name="import_db",
        description=(
            f"{files} {kind} CT files 512x512 ({megabytes / files * 1000:.0f} KB each, {megabytes:.0f} MB), "
            f"{os.cpu_count()} cores; page cache warm except the -cold candidates"
        ),
        candidates=[
            Candidate(
                "dcmdump", command=f"{dump} {src} > /dev/null", shell=True, label="dcmdump -q -M +sd +r DIR"
            ),
            Candidate(
                "cp+dcmdump",
                command=f"cp -r {src} {copied} && {dump} {copied} > /dev/null",
                shell=True,
                after=away(copied),
                label="cp -r DIR COPY && dcmdump -q -M +sd +r COPY",
            ),
            Candidate(
                "cp",
                command=["cp", "-r", str(src), str(copied)],
                after=away(copied),
                label="cp -r DIR COPY (the copy alone)",
            ),
            Candidate(
                "dicomplus",
                command=[dicomplus, "--db", str(fresh), "import", str(src), "--json"],
                after=away(fresh),
                label="dicomplus import DIR (copy into the store)",
            ),
            Candidate(
                "jobs1",
                command=[dicomplus, "--db", str(fresh), "import", "--jobs", "1", str(src), "--json"],
                after=away(fresh),
                label="dicomplus import --jobs 1 DIR (no worker threads)",
            ),
            Candidate(
                "in-process",
                function=import_in_process,
                after=away(inproc),
                label="Database.import_paths([DIR]) in the benchmark's process",
            ),
            Candidate(
                "link",
                command=[dicomplus, "--db", str(linked), "import", "--link", str(src), "--json"],
                after=away(linked),
                label="dicomplus import --link DIR",
            ),
            Candidate(
                "reimport",
                command=[dicomplus, "--db", str(full), "import", str(src), "--json"],
                label="dicomplus import DIR again (unchanged files)",
            ),
            Candidate(
                "python",
                command=[sys.executable, "-c", "pass"],
                label="python -c pass (the interpreter's start-up, floor of any command)",
            ),
            Candidate(
                "reimport-in-process",
                function=reimport_in_process,
                label="Database.import_paths([DIR]) again, in the benchmark's process",
            ),
            Candidate(
                "dcmdump-cold",
                command=f"{dump} {src} > /dev/null",
                shell=True,
                before=evicted(src),
                label="dcmdump, source evicted from the page cache",
            ),
            Candidate(
                "dicomplus-cold",
                command=[dicomplus, "--db", str(fresh), "import", str(src), "--json"],
                before=evicted(src),
                after=away(fresh),
                label="dicomplus import DIR, source evicted from the page cache",
            ),
        ],
        reference="dcmdump",
        pairs=[("dicomplus", "jobs1")],
        work={"files": files, "MB": round(megabytes, 1)},
        cleanup=lambda: [
            remove_tree(p) for p in (aside.root, fresh, linked, full, full_inproc, inproc, copied)
        ],
    )
