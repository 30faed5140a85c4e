"""Import: `dicomplus import` of 2,000 files with ~10 KB headers vs dcmdump and a pydicom loop.

The files are 256x256 int16 CT slices with a realistic ~9.6 KB header (a private block and a
20-item sequence, as scanners write), generated once into bench/_work/import_db/src. Candidates:
``dcmdump`` scanning every file (the DCMTK reference), a one-process pydicom loop reading every
header (``stop_before_pixels``), ``dicomplus import`` into an empty database (files copied into the
store, the default), ``--link`` (indexed in place), and importing the same folder again into a full
database (unchanged files are skipped by size and mtime). Before each import into an empty
database the previous one is removed and dirty pages are flushed (untimed), so runs do not pay
for each other's disk writes. Target: import throughput >= 0.5x
dcmdump's, i.e. a time ratio <= 2.0; importing again >= 10x faster than importing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.runner import Benchmark, Candidate, python_command

FILES = 2000
PER_SERIES = 200
DCMDUMP = "/usr/bin/dcmdump"

PYDICOM_LOOP = """
import os, sys, pydicom
n = 0
for root, _, files in os.walk(sys.argv[1]):
    for name in files:
        ds = pydicom.dcmread(os.path.join(root, name), stop_before_pixels=True)
        n += bool(ds.SOPInstanceUID)
assert n == int(sys.argv[2]), n
"""


def make_source(folder: Path) -> Path:
    marker = folder.with_name(folder.name + ".complete")
    if marker.exists():
        return folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
    from dicomplus_testing.synthetic import make_series

    shutil.rmtree(folder, ignore_errors=True)
    for i in range(FILES // PER_SERIES):
        make_series(
            folder / f"series{i:02d}",
            n=PER_SERIES,
            rows=256,
            cols=256,
            fat_header=True,
            seed=i,
            patient_id=f"BENCH{i % 3}",
        )
    marker.write_text("ok")
    return folder


def benchmark(work_dir: Path) -> Benchmark:
    src = make_source(work_dir / "src")
    dicomplus = str(Path(sys.executable).with_name("dicomplus"))
    fresh = work_dir / "fresh"
    linked = work_dir / "linked"
    full = work_dir / "full"

    def empty(path: Path):
        # Untimed: remove the previous run's database and store, and flush the page cache's dirty
        # pages (os.sync) so that one run's 276 MB of writes is not paid for by the next run (the
        # kernel throttles a writer while earlier dirty pages are written back).
        def before() -> None:
            shutil.rmtree(path, ignore_errors=True)
            os.sync()

        return before

    shutil.rmtree(full, ignore_errors=True)
    subprocess.run(
        [dicomplus, "--db", str(full), "import", str(src), "--json"], check=True, capture_output=True
    )
    header = (src / "series00").iterdir().__next__().stat().st_size
    return Benchmark(
        name="import_db",
        description=f"{FILES} CT files 256x256 with ~10 KB headers ({header / 1024:.0f} KiB each), {os.cpu_count()} cores",
        candidates=[
            Candidate(
                "dcmdump",
                command=f"{DCMDUMP} -q -M +sd +r {src} > /dev/null",
                shell=True,
                label="dcmdump -q -M +sd +r DIR > /dev/null",
            ),
            Candidate(
                "pydicom",
                command=python_command(PYDICOM_LOOP, str(src), str(FILES)),
                label="pydicom dcmread(stop_before_pixels) loop, one process",
            ),
            Candidate(
                "dicomplus",
                command=[dicomplus, "--db", str(fresh), "import", str(src), "--json"],
                before=empty(fresh),
                label="dicomplus import DIR (copy into the store)",
            ),
            Candidate(
                "dicomplus-link",
                command=[dicomplus, "--db", str(linked), "import", "--link", str(src), "--json"],
                before=empty(linked),
                label="dicomplus import --link DIR",
            ),
            Candidate(
                "reimport",
                command=[dicomplus, "--db", str(full), "import", str(src), "--json"],
                label="dicomplus import DIR again (unchanged files)",
            ),
        ],
        reference="dcmdump",
        work={"files": FILES},
        cleanup=lambda: [shutil.rmtree(p, ignore_errors=True) for p in (fresh, linked, full)],
    )
