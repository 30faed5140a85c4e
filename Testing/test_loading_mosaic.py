"""Siemens mosaics: the slice count from (0019,100A) or the CSA header, the slice direction from the
CSA SliceNormalVector, and a warning (never a misplaced giant slice) when the header does not say.

Files are copies of the developer mosaic (../shared/data/series2/dev_mr_mosaic_siemens) edited
here with pydicom; expected positions come from the manifest.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import pytest

from dicomplus_testing.data import shared_series_dir
from DICOMPlusLib.loading import load, plan_folder
from DICOMPlusLib.loading.mosaic import csa_values

SERIES2 = shared_series_dir().parent / "series2"
NAME = "dev_mr_mosaic_siemens"


@pytest.fixture
def mosaic(tmp_path):
    src = SERIES2 / NAME
    if not src.is_dir():
        pytest.skip(f"shared data {src} missing")
    dst = tmp_path / "mosaic"
    shutil.copytree(src, dst)
    expected = next(
        e["expected"]
        for e in json.loads((SERIES2 / "manifest.json").read_text())["series"]
        if e["id"] == NAME
    )
    return dst, expected


def _edit(folder, change):
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path)


def test_count_from_the_csa_header_alone(mosaic):
    folder, expected = mosaic
    _edit(folder, lambda ds: ds.__delitem__(0x0019100A))
    (info,) = plan_folder(folder)
    assert list(info.dims) == expected["dims"]
    assert np.allclose(info.ijk_to_lps, expected["ijk_to_lps"], atol=1e-3)


def test_csa_parser_reads_the_mosaic_fields(mosaic):
    folder, _ = mosaic
    ds = pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
    values = csa_values(ds[0x00291010].value)
    assert values["NumberOfImagesInMosaic"] == ["5"]
    assert [float(x) for x in values["SliceNormalVector"]] == pytest.approx([0.0, 0.0, 1.0])


def test_descending_slices_follow_the_slice_normal(mosaic):
    """A SliceNormalVector against row x column means the tiles run the other way: the first
    tile is then the highest slice, and sorting along the normal gives the same volume with
    the tiles in reverse order."""
    folder, expected = mosaic
    (before,) = plan_folder(folder)
    original = load(before).array

    def flip(ds):
        raw = bytearray(ds[0x00291010].value)
        # replace the SliceNormalVector's z item "1.00000000" by "-1.0000000" (same length)
        at = bytes(raw).find(b"SliceNormalVector")
        z = bytes(raw).find(b"1.00000000", at)
        assert at >= 0 and z > at
        raw[z : z + 10] = b"-1.0000000"
        ds[0x00291010].value = bytes(raw)

    _edit(folder, flip)
    (info,) = plan_folder(folder)
    step = np.asarray(expected["ijk_to_lps"], float)[:3, 2]
    assert np.allclose(info.ijk_to_lps[:3, 2], step, atol=1e-3)
    assert np.allclose(
        info.ijk_to_lps[:3, 3], np.asarray(expected["ijk_to_lps"])[:3, 3] - 4 * step, atol=1e-3
    )
    assert np.array_equal(load(info).array, original[:, ::-1])


def test_unsplittable_mosaic_is_reported(mosaic):
    folder, _ = mosaic

    def strip(ds):
        del ds[0x0019100A]
        del ds[0x00291010]

    _edit(folder, strip)
    (info,) = plan_folder(folder)
    codes = [w.code for w in info.warnings]
    assert "mosaic_unsplit" in codes
    assert list(info.dims[:2]) == [216, 216] and not info.mosaic


@pytest.mark.parametrize("name", [NAME, "dev_mr_mosaic_uih_dwi"])
def test_mosaic_from_the_database(tmp_path, name):
    """The database's stored headers split the mosaic the same way as the files."""
    from test_loading_support import database_with, series_uid_of

    from DICOMPlusLib.loading import plan_series

    folder = SERIES2 / name
    if not folder.is_dir():
        pytest.skip(f"shared data {folder} missing")
    db = database_with(tmp_path, folder)
    (stored,) = plan_series(db, series_uid_of(folder))
    (direct,) = plan_folder(folder)
    assert stored.mosaic and stored.dims == direct.dims
    assert np.allclose(stored.ijk_to_lps, direct.ijk_to_lps)
    assert np.array_equal(load(stored).array, load(direct).array)
