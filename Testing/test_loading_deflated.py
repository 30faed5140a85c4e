"""Deflated Explicit VR Little Endian files (PS3.5 A.5) load like the same files uncompressed:
the import accepts them (Testing/test_hardening_database_import.py), and the pixels inside the
deflated stream are read from a folder and from the database."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from dicomplus_testing.peers import require_executable
from DICOMPlusLib.database import Database
from DICOMPlusLib.loading import load_folder, load_series

DCMCONV = "/usr/bin/dcmconv"  # DCMTK writes the deflated files, not us


def test_deflated_series_loads_like_the_original(manifest, tmp_path):
    require_executable(DCMCONV)
    originals = sorted(
        p for p in (manifest["dev_ct_axial_plain"]["folder"]).iterdir() if p.name.startswith("I1")
    )[:4]
    plain, deflated = tmp_path / "plain", tmp_path / "deflated"
    plain.mkdir(), deflated.mkdir()
    for path in originals:
        shutil.copy(path, plain / path.name)
        subprocess.run([DCMCONV, "+td", path, deflated / path.name], check=True)
    [expected] = load_folder(plain)
    [from_folder] = load_folder(deflated)
    np.testing.assert_array_equal(from_folder.array, expected.array)
    np.testing.assert_allclose(from_folder.ijk_to_lps, expected.ijk_to_lps)
    with Database(tmp_path / "db") as db:
        assert db.import_paths([deflated]).added == len(originals)
        [record] = db.search("series", {})
        [from_db] = load_series(db, record.SeriesInstanceUID)
    np.testing.assert_array_equal(from_db.array, expected.array)
