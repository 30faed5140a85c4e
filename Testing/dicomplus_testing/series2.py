"""The second developer data set (../shared/data/series2): diffusion, mosaics, colour, RT Dose, SEG.

Its manifest.json gives, per series, the expected result and how it was computed (README.md there
explains the keys); the data are read in place, never copied into the repository.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dicomplus_testing.util import REPO_ROOT, missing


def series2_dir() -> Path:
    """../shared/data/series2 beside the repository (or ``DICOMPLUS_TEST_DATA2``)."""
    env = os.environ.get("DICOMPLUS_TEST_DATA2")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "series2"


def series2_entries(kind: str | None = None) -> dict[str, dict]:
    """Manifest entries by id (``folder`` made absolute), optionally of one ``expected.kind``;
    empty when the data set is not there (tests then report it missing)."""
    path = series2_dir() / "manifest.json"
    if not path.is_file():
        return {}
    entries = {}
    for entry in json.loads(path.read_text())["series"]:
        if kind is None or entry["expected"].get("kind") == kind:
            entries[entry["id"]] = {**entry, "folder": series2_dir() / entry["folder"]}
    return entries


def series2_entry(sid: str) -> dict:
    """One entry, or the test is reported as missing its data (a failure with peers required)."""
    entries = series2_entries()
    if sid not in entries:
        missing(f"series2 entry {sid} at {series2_dir()}")
    return entries[sid]
