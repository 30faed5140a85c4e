"""Every colour, RT Dose and SEG series of ../shared/data/series2/manifest.json loads as its
manifest says, from a folder and from the database, checking every key the README defines for
those categories (values computed there with pydicom and highdicom)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from test_loading_support import assert_matrix, database_with, series_uid_of

from dicomplus_testing.series2 import series2_entries, series2_entry
from DICOMPlusLib.loading import load, plan_folder, plan_series
from DICOMPlusLib.loading.seg import layout_of, read_segment_masks

IDS = {
    kind: sorted(series2_entries(kind)) or [f"series2-{kind}-missing"] for kind in ("color", "rtdose", "seg")
}

# the keys each category defines, so that a new key in the manifest is not silently ignored
CHECKED = {
    "color": {
        "kind",
        "dims",
        "photometric",
        "planar_configuration",
        "bits_allocated",
        "rgb_dtype",
        "rgb_probes",
        "rgb_tolerance",
        "has_geometry",
    },
    "rtdose": {
        "kind",
        "dims",
        "spacing",
        "ijk_to_ras",
        "ijk_to_lps",
        "grid_frame_offsets",
        "dose_grid_scaling",
        "dose_max_gy",
        "dose_sum_gy",
    },
    "seg": {
        "kind",
        "segmentation_type",
        "n_segments",
        "segments",
        "dims",
        "spacing",
        "ijk_to_lps",
        "ijk_to_ras",
        "n_frames",
        "labelmap_rule",
        "n_orientations",
    },
}


def _single(entry):
    infos = plan_folder(entry["folder"])
    assert len(infos) == 1, [i.dims for i in infos]
    assert set(entry["expected"]) <= CHECKED[entry["expected"]["kind"]], (
        "a manifest key this test does not check"
    )
    return infos[0]


@pytest.mark.parametrize("sid", IDS["color"])
def test_colour(sid):
    entry = series2_entry(sid)
    expected = entry["expected"]
    info = _single(entry)
    f0 = info.frames[0]
    assert (f0.photometric, f0.bits_allocated) == (expected["photometric"], expected["bits_allocated"])
    if expected["planar_configuration"] is not None:
        assert f0.planar_configuration == expected["planar_configuration"]
    assert list(info.dims) == expected["dims"]
    assert info.components == 3
    assert ("no_geometry" not in {w.code for w in info.warnings}) == expected["has_geometry"]
    volume = load(info)
    assert volume.array.shape == (*info.shape, 3)
    assert volume.array.dtype == np.dtype(expected["rgb_dtype"])
    for probe in expected["rgb_probes"]:
        got = volume.array[probe["frame"], probe["row"], probe["col"]].astype(int)
        assert np.abs(got - probe["rgb"]).max() <= expected["rgb_tolerance"], probe


@pytest.mark.parametrize("sid", IDS["rtdose"])
def test_rtdose(sid):
    entry = series2_entry(sid)
    expected = entry["expected"]
    info = _single(entry)
    assert list(info.dims) == expected["dims"]
    assert np.allclose(info.spacing, expected["spacing"], atol=1e-4)
    assert_matrix(info.ijk_to_ras, expected["ijk_to_ras"], mm=0.05)
    assert_matrix(info.ijk_to_lps, expected["ijk_to_lps"], mm=0.05)
    normal = info.ijk_to_lps[:3, 2] / np.linalg.norm(info.ijk_to_lps[:3, 2])
    along = (info.slice_positions - info.slice_positions[0]) @ normal
    assert np.allclose(along, expected["grid_frame_offsets"], atol=1e-3)
    assert {f.rescale_slope for f in info.frames} == {expected["dose_grid_scaling"]}
    dose = load(info).array.astype(np.float64)
    assert dose.max() == pytest.approx(expected["dose_max_gy"], rel=1e-6)
    assert dose.sum() == pytest.approx(expected["dose_sum_gy"], rel=1e-6)


@pytest.mark.parametrize("sid", IDS["seg"])
def test_seg(sid):
    entry = series2_entry(sid)
    expected = entry["expected"]
    info = _single(entry)
    layout = layout_of(info)
    assert layout.segmentation_type == expected["segmentation_type"]
    assert len(layout.segments) == expected["n_segments"]
    assert len(info.frames) == expected["n_frames"]
    assert len({f.orientation for f in info.frames}) == expected["n_orientations"]
    assert list(info.dims) == expected["dims"]
    assert np.allclose(info.spacing, expected["spacing"], atol=1e-4)
    assert_matrix(info.ijk_to_ras, expected["ijk_to_ras"], mm=0.05)
    assert_matrix(info.ijk_to_lps, expected["ijk_to_lps"], mm=0.05)
    got = [(s.number, s.label, s.voxels, s.voxels_nonzero) for s in layout.segments]
    want = [(s["number"], s["label"], s["voxels"], s["voxels_nonzero"]) for s in expected["segments"]]
    assert got == want
    # labelmap_rule: value = segment number, fractional members where fraction >= 0.5
    labels = load(info).array
    masks = read_segment_masks(info)
    for segment in expected["segments"]:
        assert int(masks[segment["number"]].sum()) == segment["voxels"]
        if layout.overlap_voxels == 0:
            assert int((labels == segment["number"]).sum()) == segment["voxels"]
    assert "labelmap_rule" in expected and "segment number" in expected["labelmap_rule"]


def test_objects_load_alike_from_the_database(tmp_path):
    entries = {**series2_entries("color"), **series2_entries("rtdose"), **series2_entries("seg")}
    if not entries:
        series2_entry("dev_seg_binary")  # reports the data set missing
    db = database_with(tmp_path, *[e["folder"] for e in entries.values()])
    try:
        for sid, entry in entries.items():
            (from_folder,) = plan_folder(entry["folder"])
            (from_db,) = plan_series(db, series_uid_of(entry["folder"]))
            assert from_db.to_dict() == from_folder.to_dict(), sid
            assert np.array_equal(load(from_db).array, load(from_folder).array), sid
    finally:
        db.close()


def test_seg_header_matches_the_file():
    entry = series2_entry("dev_seg_binary")
    path = next(entry["folder"].glob("*.dcm"))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    layout = layout_of(_single(entry))
    assert layout.referenced_series_uid == ds.ReferencedSeriesSequence[0].SeriesInstanceUID
