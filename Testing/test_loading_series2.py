"""Every diffusion and mosaic series of ../shared/data/series2/manifest.json loads as expected.

Expected values are the manifest's (dcm2niix's NIfTI and bval/bvec rewritten in the DICOM IJK
convention, see series2/README.md): dims, spacing, IJK->RAS at the corners, the files of each
volume, b-values, gradients in LPS (up to sign: a gradient and its opposite encode the same
diffusion), the FSL bvecs, the demosaiced size; voxels are compared with pydicom's pixels.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pydicom
import pytest

from dicomplus_testing.data import shared_series_dir
from DICOMPlusLib.loading import load, plan_folder

SERIES2 = shared_series_dir().parent / "series2"
CORNER_TOLERANCE_MM = 0.05


def _entries() -> dict:
    path = SERIES2 / "manifest.json"
    if not path.is_file():
        return {}
    out = {}
    for entry in json.loads(path.read_text())["series"]:
        expected = entry["expected"]
        if expected.get("kind") == "diffusion" or expected.get("mosaic"):
            out[entry["id"]] = entry
    return out


ENTRIES = _entries()
IDS = sorted(ENTRIES) or ["series2-missing"]


@pytest.fixture(scope="module")
def planned():
    return {}


def _plan(planned, sid):
    if sid not in ENTRIES:
        pytest.skip(f"shared data {SERIES2} missing")
    if sid not in planned:
        planned[sid] = plan_folder(SERIES2 / ENTRIES[sid]["folder"])
    return planned[sid]


def _corners(matrix, dims) -> np.ndarray:
    m = np.asarray(matrix, float)
    points = [np.array([i, j, k, 1.0]) for i, j, k in itertools.product(*[(0, d - 1) for d in dims[:3]])]
    return np.array([m @ p for p in points])[:, :3]


def _same_up_to_sign(a, b, atol) -> bool:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(min(np.abs(a - b).max(), np.abs(a + b).max()) <= atol)


def _membership(info) -> list[set]:
    t, k = info.shape[0], info.shape[1]
    volumes = []
    for v in range(t):
        frames = info.frames[v * k : (v + 1) * k]
        enhanced = any(f.number_of_frames > 1 for f in frames)
        volumes.append({(f.sop_uid, f.frame + 1) if enhanced else f.sop_uid for f in frames})
    return volumes


def _expected_membership(expected) -> list[set]:
    return [
        {tuple(m) if isinstance(m, list) else m for m in volume} for volume in expected["volume_sop_uids"]
    ]


def _order(info, expected) -> list[int]:
    """Which loaded volume is each expected volume (by the files it holds)."""
    got = _membership(info)
    want = _expected_membership(expected)
    return [got.index(w) for w in want]


@pytest.mark.parametrize("sid", IDS)
def test_geometry(planned, sid):
    volumes = _plan(planned, sid)
    expected = ENTRIES[sid]["expected"]
    assert len(volumes) == expected["n_orientations"] == 1
    (info,) = volumes
    assert list(info.dims) == expected["dims"]
    assert np.allclose(info.spacing, expected["spacing"], atol=1e-3)
    error = np.abs(
        _corners(info.ijk_to_ras, info.dims) - _corners(expected["ijk_to_ras"], expected["dims"])
    ).max()
    assert error <= CORNER_TOLERANCE_MM, error
    assert np.allclose(info.ijk_to_lps, expected["ijk_to_lps"], atol=1e-3)
    if expected.get("mosaic"):
        assert info.mosaic and list(info.dims[:3]) == expected["demosaiced_dims"]
        assert not [w for w in info.warnings if w.code.startswith("mosaic")]


@pytest.mark.parametrize("sid", IDS)
def test_volume_membership(planned, sid):
    (info,) = _plan(planned, sid)
    expected = ENTRIES[sid]["expected"]
    assert info.shape[0] == expected["n_volumes"]
    order = _order(info, expected)
    assert order == list(range(expected["n_volumes"]))  # dcm2niix's volume order too


@pytest.mark.parametrize(
    "sid", [s for s in IDS if ENTRIES.get(s, {}).get("expected", {}).get("kind") == "diffusion"]
)
def test_bvals_and_gradients(planned, sid):
    (info,) = _plan(planned, sid)
    expected = ENTRIES[sid]["expected"]
    order = _order(info, expected)
    bvals = [info.bvals[o] for o in order]
    gradients = [info.gradients_lps[o] for o in order]
    assert np.allclose(bvals, expected["bvals"], rtol=1e-4, atol=1e-3)
    r, c, n = (np.asarray(expected["ijk_to_lps"], float)[:3, a] for a in range(3))
    r, c, n = r / np.linalg.norm(r), c / np.linalg.norm(c), n / np.linalg.norm(n)
    for b, got, want, fsl in zip(
        bvals, gradients, expected["gradients_lps"], expected["bvecs_fsl"], strict=True
    ):
        if b <= 5:
            assert got == (0.0, 0.0, 0.0)
            continue
        assert abs(np.linalg.norm(got) - 1) < 1e-6
        assert _same_up_to_sign(got, want, 2e-3), (got, want)
        # dcm2niix's bvec is along (row, -column, normal) of its NIfTI (determinant < 0, x kept)
        from_fsl = fsl[0] * r - fsl[1] * c + fsl[2] * n
        assert _same_up_to_sign(got, from_fsl / np.linalg.norm(from_fsl), 2e-3), (got, from_fsl)
    document = info.to_dict()
    assert document["dims"] == expected["dims"] and len(document["bvals"]) == expected["n_volumes"]
    assert len(document["gradients_lps"]) == expected["n_volumes"]


@pytest.mark.parametrize("sid", IDS)
def test_voxels_equal_pydicom(planned, sid):
    """Each loaded slice equals the pixels of its file (the tile of a mosaic) as pydicom reads them."""
    (info,) = _plan(planned, sid)
    volume = load(info)
    t, k = info.shape[:2]
    checked = 0
    for index in list(range(0, t * k, max(1, (t * k) // 12)))[:12]:
        f = info.frames[index]
        ds = pydicom.dcmread(f.path)
        pixels = ds.pixel_array
        if f.number_of_frames > 1:
            pixels = pixels[f.frame]
        if f.mosaic is not None:
            per_row = f.mosaic[1] // f.columns
            y, x = divmod(f.mosaic[2], per_row)
            pixels = pixels[y * f.rows : (y + 1) * f.rows, x * f.columns : (x + 1) * f.columns]
        want = pixels * f.rescale_slope + f.rescale_intercept
        got = volume.array[index // k, index % k]
        assert np.allclose(got, want, atol=1e-3 * max(1.0, abs(f.rescale_slope))), (sid, index)
        checked += 1
    assert checked


def test_first_series_set_still_loads():
    """The classic developer set of ../shared/data/series keeps loading (each folder plans)."""
    root = shared_series_dir()
    if not (root / "manifest.json").is_file():
        pytest.skip("shared data missing")
    for entry in json.loads((root / "manifest.json").read_text())["series"]:
        volumes = [v for v in plan_folder(root / entry["folder"]) if not v.localizer]
        assert len(volumes) == entry["expected"]["n_orientations"], entry["id"]
        assert all(v.bvals is None and not v.mosaic for v in volumes), entry["id"]


@pytest.mark.parametrize("sid", IDS)
def test_voxels_equal_dcm2niix(planned, sid, tmp_path):
    """Every voxel equals dcm2niix's, run here on the same folder: dcm2niix's NIfTI axes are
    (i, -j, k) of ours (series2/README.md), its volumes in its order (matched by files above)."""
    import subprocess
    import sys
    from pathlib import Path

    import SimpleITK as sitk

    from dicomplus_testing.util import require_executable

    (info,) = _plan(planned, sid)
    expected = ENTRIES[sid]["expected"]
    exe = require_executable(str(Path(sys.executable).parent / "dcm2niix"))
    subprocess.run(
        [exe, "-z", "n", "-b", "n", "-f", "out", "-o", str(tmp_path), str(SERIES2 / ENTRIES[sid]["folder"])],
        check=True,
        capture_output=True,
        timeout=300,
    )
    theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out.nii")))  # [t, k, -j, i]
    theirs = theirs[..., ::-1, :]
    ours = load(info).array
    order = _order(info, expected)
    ours = ours[order]
    assert theirs.shape == ours.shape
    scale = 1.0
    if "philips" in sid:  # dcm2niix writes Philips "precise" values: ours times one constant
        nonzero = ours != 0
        scale = float(np.median(theirs[nonzero] / ours[nonzero]))
    assert np.allclose(theirs, ours * scale, rtol=1e-5, atol=1e-3 * scale)
