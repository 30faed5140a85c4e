"""Fixtures for test data: the shared real series and synthetic series."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dicomplus_testing.util import REPO_ROOT, missing


def shared_series_dir() -> Path:
    """../shared/data/series beside the repository (or ``DICOMPLUS_TEST_DATA``)."""
    env = os.environ.get("DICOMPLUS_TEST_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "series"


@pytest.fixture(scope="session")
def shared_series() -> Path:
    path = shared_series_dir()
    if not (path / "manifest.json").is_file():
        missing(f"shared test data at {path}")
    return path


@pytest.fixture(scope="session")
def manifest(shared_series) -> dict:
    """The manifest, as a dict id -> entry (entry['folder'] is an absolute Path)."""
    data = json.loads((shared_series / "manifest.json").read_text())
    entries = {}
    for entry in data["series"]:
        entry = dict(entry)
        entry["folder"] = shared_series / entry["folder"]
        entries[entry["id"]] = entry
    return entries


@pytest.fixture
def synthetic_ct(tmp_path):
    """An 8-slice synthetic CT series (shuffled file order) with known geometry."""
    # Imported here: the builder is DICOMPlusLib's, which the stock-Slicer tier (that loads this
    # plugin too) has only from the install tree, once a test installs it.
    from dicomplus_testing.synthetic import make_series

    return make_series(tmp_path / "ct", n=8)
