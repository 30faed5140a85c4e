"""Start-up: `dicomplus --version` and `dicomplus search` as whole processes, next to bare Python.

The target (issue 19) is <= 0.15 s for both. Every candidate is a fresh process, so each pays the
interpreter's own start-up (``python -c pass``, the reference, is that floor). ``import pydicom``
is what every command paid before pydicom left the start-up path (it imports numpy and each pixel
decoder it finds, GDCM included); DCMTK's ``dcmdump --version`` is a compiled tool's start-up.
The searches run piped (tab-separated output) on a database of 20 synthetic studies made once in
bench/_work/startup/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from bench.runner import Benchmark, Candidate

REPO = Path(__file__).resolve().parents[1]
STUDIES = 20


def make_database(folder: Path) -> Path:
    """A database of ``STUDIES`` one-instance studies; reused when already there."""
    db = folder / "db"
    if (db / "dicomplus.sqlite").is_file():
        return db
    sys.path.insert(0, str(REPO / "Testing"))
    from dicomplus_testing.synthetic import make_series
    from DICOMPlusLib.database import Database

    for i in range(STUDIES):
        make_series(folder / "files" / f"s{i}", n=1, rows=8, cols=8, patient_id=f"P{i:03d}",
                    patient_name=f"Doe^Person{i}", study_date=f"2020{i % 12 + 1:02d}15", seed=i)  # fmt: skip
    with Database(db) as database:
        database.import_paths([folder / "files"], jobs=1)
    return db


def benchmark(work_dir: Path) -> Benchmark:
    db = make_database(work_dir)
    cli = [sys.executable, "-m", "DICOMPlusLib.cli"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    candidates = [
        Candidate("python", command=[sys.executable, "-c", "pass"], label="python -c pass (the floor)"),
        Candidate("version", command=[*cli, "--version"], cwd=REPO, env=env, label="dicomplus --version"),
        Candidate(
            "search",
            command=[*cli, "--db", str(db), "search"],
            cwd=REPO,
            env=env,
            label="dicomplus search (every study, piped)",
        ),
        Candidate(
            "search-keys",
            command=[*cli, "--db", str(db), "search", "PatientName=doe*", "StudyDate=2020", "Modality=ct"],
            cwd=REPO,
            env=env,
            label="dicomplus search PatientName=doe* StudyDate=2020 Modality=ct",
        ),
        Candidate(
            "import-pydicom",
            command=[sys.executable, "-c", "import pydicom"],
            label="python -c 'import pydicom' (what a command paid before)",
        ),
    ]
    if shutil.which("dcmdump"):
        candidates.append(Candidate("dcmdump", command=["dcmdump", "--version"], label="dcmdump --version"))
    return Benchmark(
        name="startup",
        description="whole-process start-up of dicomplus commands (target <= 0.15 s)",
        candidates=candidates,
        reference="python",
    )
