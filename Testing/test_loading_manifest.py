"""Every series of the shared manifest loads with the expected volumes, geometry and warnings.

Expectations are read from ../shared/data/series/manifest.json (established with pydicom,
dcm2niix, SimpleITK and the repositories' reference NIfTI files); voxels are checked against
pydicom's own decoding, in an order the test computes itself from ImagePositionPatient.
"""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_rescale
from test_loading_support import assert_matrix, database_with, series_uid_of

from dicomplus_testing.data import shared_series_dir
from DICOMPlusLib.loading import load, load_series, plan_folder, plan_series


def _ids() -> list[str]:
    path = shared_series_dir() / "manifest.json"
    if not path.is_file():
        return ["shared-data-missing"]
    return [s["id"] for s in json.loads(path.read_text())["series"]]


IDS = _ids()


@pytest.fixture(scope="module")
def folder_volumes(manifest):
    return {sid: [load(i) for i in plan_folder(entry["folder"])] for sid, entry in manifest.items()}


def _entry(manifest, sid):
    if sid not in manifest:
        pytest.skip(f"{sid} not in the manifest")
    return manifest[sid]


@pytest.mark.parametrize("sid", IDS)
def test_volumes_match_manifest(manifest, folder_volumes, sid):
    entry = _entry(manifest, sid)
    expected = entry["expected"]
    volumes = folder_volumes[sid]
    assert not any(v.localizer for v in volumes)
    assert len(volumes) == expected["n_orientations"]
    if "orientation_groups" in expected:
        for group in expected["orientation_groups"]:
            iop = np.array(group["iop"])
            matches = [
                v for v in volumes if np.allclose(np.array(v.info.frames[0].orientation), iop, atol=1e-3)
            ]
            assert len(matches) == 1, group["iop"]
            v = matches[0]
            assert list(v.dims) == group["dims"]
            assert np.allclose(v.spacing, group["spacing"], atol=1e-3)
            assert_matrix(v.ijk_to_ras, group["ijk_to_ras"])
            names = sorted(p.rsplit("/", 1)[-1] for p in v.info.files)
            assert names == sorted(group["files"])
        return
    (v,) = volumes
    assert list(v.dims) == expected["dims"]
    assert np.allclose(v.spacing, expected["spacing"], atol=1e-3)
    assert_matrix(v.ijk_to_lps, expected["ijk_to_lps"])
    assert_matrix(v.ijk_to_ras, expected["ijk_to_ras"])
    report = v.info.spacing_report
    assert report.minimum == pytest.approx(expected["slice_spacing_min"], abs=1e-3)
    assert report.maximum == pytest.approx(expected["slice_spacing_max"], abs=1e-3)
    if "slice_positions_along_normal_mm" in expected:
        assert np.allclose(report.distances, expected["slice_positions_along_normal_mm"], atol=1e-3)
    codes = {w.code for w in v.warnings}
    assert report.regular is not expected["irregular_spacing"]
    assert ("irregular_spacing" in codes) is expected["irregular_spacing"]
    assert v.info.tilt_deg == pytest.approx(expected["stack_vs_normal_angle_deg"], abs=0.05)
    assert ("gantry_tilt" in codes) is (expected["stack_vs_normal_angle_deg"] > 0.1)
    assert np.linalg.det(v.ijk_to_lps[:3, :3]) > 0


def test_edge_case_series_carry_their_warnings(manifest, folder_volumes):
    def codes(sid):
        return [{w.code for w in v.warnings} for v in folder_volumes[_entry(manifest, sid)["id"]]]

    (missing,) = codes("dev_ct_missing_slice")
    assert {"missing_slices", "irregular_spacing"} <= missing
    (v,) = folder_volumes["dev_ct_missing_slice"]
    positions = manifest["dev_ct_missing_slice"]["expected"]["slice_positions_along_normal_mm"]
    gaps = np.diff(positions)
    (gap,) = v.info.spacing_report.missing
    assert gap.after == int(np.argmax(gaps)) and gap.count == round(gaps.max() / np.median(gaps)) - 1

    (irregular,) = codes("dev_ct_irregular_spacing")
    assert {"irregular_spacing", "gantry_tilt"} <= irregular
    (v,) = folder_volumes["dev_ct_irregular_spacing"]
    tilt = next(w for w in v.warnings if w.code == "gantry_tilt")
    assert "no GantryDetectorTilt" in tilt.message  # measured from the positions, no tag there

    (tilted,) = codes("dev_ct_gantry_tilt")
    assert "gantry_tilt" in tilted

    for mixed in codes("dev_mr_mixed_orientation"):
        assert "mixed_orientation" in mixed

    (plain,) = codes("dev_ct_axial_plain")
    assert plain == set()


def test_enhanced_equals_its_classic_twin(manifest, folder_volumes):
    (enhanced,) = folder_volumes[_entry(manifest, "dev_mr_enhanced_multiframe")["id"]]
    (classic,) = folder_volumes[_entry(manifest, "dev_mr_classic_pair_of_enhanced")["id"]]
    assert enhanced.info.frames[0].number_of_frames == 40 and classic.info.frames[0].number_of_frames == 1
    assert enhanced.array.dtype == classic.array.dtype
    assert np.array_equal(enhanced.array, classic.array)
    assert np.allclose(enhanced.ijk_to_lps, classic.ijk_to_lps, atol=1e-6)
    assert enhanced.dims == classic.dims


def _position_order(datasets):
    """Indices of datasets sorted by IPP . (row x col), computed here without the loader."""
    iop = np.array([float(x) for x in datasets[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    d = [float(np.array([float(x) for x in ds.ImagePositionPatient]) @ normal) for ds in datasets]
    return sorted(range(len(datasets)), key=lambda i: (round(d[i], 3), int(datasets[i].InstanceNumber)))


def test_compressed_variants_decode_to_identical_pixels(manifest, folder_volumes):
    names = ["dev_mr_jpeg_lossless", "dev_mr_jpeg2000", "dev_mr_rle", "dev_mr_jpegls"]
    arrays = [folder_volumes[_entry(manifest, n)["id"]][0].array for n in names]
    for name, array in zip(names[1:], arrays[1:], strict=True):
        assert np.array_equal(arrays[0], array), name
    # and equal to GDCM's decoding through pydicom (another decoder than the loader's for 3 of 4)
    for name, array in zip(names, arrays, strict=True):
        files = sorted(manifest[name]["folder"].iterdir())
        datasets = [pydicom.dcmread(f) for f in files]
        order = _position_order(datasets)
        for k, index in enumerate(order):
            ds = datasets[index]
            ref = ds.pixel_array if "gdcm" not in _plugins(ds) else _decode(ds, "gdcm")
            assert np.array_equal(ref, array[k]), (name, k)


def _plugins(ds):
    from pydicom.pixels import get_decoder

    return get_decoder(ds.file_meta.TransferSyntaxUID).available_plugins


def _decode(ds, plugin):
    from pydicom.pixels import pixel_array

    return pixel_array(ds, decoding_plugin=plugin)


@pytest.mark.parametrize(
    "sid", ["dev_ct_axial_plain", "dev_mr_oblique", "dev_ct_gantry_tilt", "dev_mr_classic_pair_of_enhanced"]
)
def test_classic_voxels_equal_pydicom(manifest, folder_volumes, sid):
    entry = _entry(manifest, sid)
    (v,) = folder_volumes[sid]
    datasets = []
    for f in sorted(entry["folder"].iterdir()):
        ds = pydicom.dcmread(f)
        if "PixelData" in ds:
            datasets.append(ds)
    order = _position_order(datasets)
    for k, index in enumerate(order):
        ds = datasets[index]
        ref = apply_rescale(ds.pixel_array, ds)
        assert np.array_equal(np.asarray(ref, v.array.dtype), v.array[k]), (sid, k)
    exact_int = all(
        float(ds.get("RescaleSlope", 1)) == 1 and float(ds.get("RescaleIntercept", 0)).is_integer()
        for ds in datasets
    )
    assert v.array.dtype == (np.int16 if exact_int else np.float32)


def test_enhanced_voxels_equal_pydicom_frames(manifest, folder_volumes):
    for sid in ("dev_mr_enhanced_multiframe", "dev_mr_enhanced_small"):
        entry = _entry(manifest, sid)
        (v,) = folder_volumes[sid]
        (path,) = sorted(entry["folder"].iterdir())
        ds = pydicom.dcmread(path)
        frames = ds.pixel_array
        per_frame = ds.PerFrameFunctionalGroupsSequence
        positions = np.array(
            [[float(x) for x in it.PlanePositionSequence[0].ImagePositionPatient] for it in per_frame]
        )
        iop = np.array([float(x) for x in per_frame[0].PlaneOrientationSequence[0].ImageOrientationPatient])
        order = np.argsort(positions @ np.cross(iop[:3], iop[3:]), kind="stable")
        for k, f in enumerate(order):
            t = per_frame[f].PixelValueTransformationSequence[0]
            ref = frames[f] * float(t.RescaleSlope) + float(t.RescaleIntercept)
            assert np.allclose(v.array[k], ref.astype(np.float32)), (sid, k)


def test_4d_time_points_follow_instance_order(manifest, folder_volumes):
    entry = _entry(manifest, "dev_mr_4d_fmri")
    (v,) = folder_volumes["dev_mr_4d_fmri"]
    assert list(v.dims) == entry["expected"]["dims"]
    datasets = [pydicom.dcmread(f) for f in sorted(entry["folder"].iterdir())]
    z = sorted({round(float(ds.ImagePositionPatient[2]), 2) for ds in datasets})
    by_z = {
        p: sorted(
            (ds for ds in datasets if round(float(ds.ImagePositionPatient[2]), 2) == p),
            key=lambda ds: int(ds.InstanceNumber),
        )
        for p in z
    }
    for t in (0, 4, 9):
        for k in (0, 7, 14):
            assert np.array_equal(v.array[t, k], by_z[z[k]][t].pixel_array)
    points = v.time_points()
    assert len(points) == 10 and points[3].array.shape == (15, 64, 64)
    assert np.shares_memory(points[3].array, v.array)
    assert len(v.time_axis) == 10 and list(v.time_axis) == sorted(v.time_axis)


@pytest.mark.parametrize("sid", IDS)
def test_database_and_folder_give_the_same_volumes(manifest, folder_volumes, tmp_path, sid):
    entry = _entry(manifest, sid)
    uid = series_uid_of(entry["folder"])
    # one database per series: the four compressed variants share their SOP Instance UIDs
    shared_db = database_with(tmp_path, entry["folder"])  # files copied: paths differ from the folder
    from_db = load_series(shared_db, uid)
    from_folder = folder_volumes[sid]
    assert len(from_db) == len(from_folder)
    for a, b in zip(from_db, from_folder, strict=True):
        assert a.array.dtype == b.array.dtype and np.array_equal(a.array, b.array)
        assert np.array_equal(a.ijk_to_lps, b.ijk_to_lps)
        assert a.sop_uids == b.sop_uids
        assert [(w.code, w.message) for w in a.warnings] == [(w.code, w.message) for w in b.warnings]
        assert a.time_axis == b.time_axis
        assert not set(a.info.files) & set(b.info.files)  # really read from two places
    infos = plan_series(shared_db, uid)
    assert [i.to_dict() for i in infos] == [v.to_dict() for v in from_folder]
    shared_db.close()
