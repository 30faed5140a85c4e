"""NRRD/NIfTI written through SimpleITK read back with the same geometry; NIfTI matches dcm2niix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from test_loading_support import assert_matrix, make, tilt_series

from dicomplus_testing.util import require_executable
from DICOMPlusLib.loading import load_folder
from DICOMPlusLib.loading.models import LPS_TO_RAS
from DICOMPlusLib.loading.writers import read_nifti_affine, write_volume


def sitk_matrix(image) -> np.ndarray:
    """IJK->LPS of a 3D SimpleITK image (ITK works in LPS)."""
    d = np.array(image.GetDirection()).reshape(image.GetDimension(), image.GetDimension())[:3, :3]
    m = np.eye(4)
    m[:3, :3] = d * np.array(image.GetSpacing()[:3])
    m[:3, 3] = image.GetOrigin()[:3]
    return m


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".nii"])
@pytest.mark.parametrize("sid", ["dev_mr_oblique", "dev_ct_axial_plain", "dev_mr_enhanced_multiframe"])
def test_written_files_read_back_with_the_same_geometry(manifest, tmp_path, suffix, sid):
    (v,) = load_folder(manifest[sid]["folder"])
    path = tmp_path / f"out{suffix}"
    assert write_volume(v, path) == []
    image = sitk.ReadImage(str(path))
    assert_matrix(sitk_matrix(image), v.ijk_to_lps, mm=1e-4, direction=1e-5)
    assert_matrix(sitk_matrix(image), manifest[sid]["expected"]["ijk_to_lps"])
    if suffix == ".nrrd" or v.array.dtype.kind != "f":
        assert np.array_equal(sitk.GetArrayFromImage(image), v.array)
    else:  # NIfTI stores the integers and scl_slope/scl_inter, which are float32 (as dcm2niix does)
        assert np.allclose(sitk.GetArrayFromImage(image), v.array, rtol=1e-6, atol=1e-6)
    if suffix != ".nrrd":
        sform, dims = read_nifti_affine(path)
        assert dims == v.dims
        assert_matrix(sform, v.ijk_to_ras, mm=1e-4, direction=1e-5)


def test_4d_nifti(manifest, tmp_path):
    (v,) = load_folder(manifest["dev_mr_4d_fmri"]["folder"])
    path = tmp_path / "fmri.nii.gz"
    write_volume(v, path)
    image = sitk.ReadImage(str(path))
    assert image.GetSize() == (64, 64, 15, 10)
    assert np.array_equal(sitk.GetArrayFromImage(image), v.array)
    assert_matrix(sitk_matrix(image), v.ijk_to_lps, mm=1e-4)


def test_sheared_volume_nrrd_keeps_the_shear_and_nifti_sform_is_exact(tmp_path):
    series = make(tmp_path / "s", n=6)
    exact = tilt_series(series, 15.0, tag=True)
    (v,) = load_folder(series.folder)
    nrrd = tmp_path / "tilt.nrrd"
    assert write_volume(v, nrrd) == []
    assert_matrix(sitk_matrix(sitk.ReadImage(str(nrrd))), exact)
    nifti = tmp_path / "tilt.nii.gz"
    (note,) = write_volume(v, nifti)
    assert note.code == "nifti_sheared"
    sform, _ = read_nifti_affine(nifti)
    assert_matrix(sform, LPS_TO_RAS @ exact)
    resampled = tmp_path / "tilt_resampled.nii.gz"
    assert write_volume(v, resampled, resample=True) == []
    image = sitk.ReadImage(str(resampled))
    sform, _ = read_nifti_affine(resampled)
    assert_matrix(sitk_matrix(image), LPS_TO_RAS @ sform, mm=1e-4)  # qform and sform agree


def _dcm2niix(folder: Path, out: Path) -> Path:
    exe = require_executable(str(Path(sys.executable).parent / "dcm2niix"))
    out.mkdir()
    subprocess.run(
        [exe, "-z", "n", "-b", "n", "-f", "%s", "-o", str(out), str(folder)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (nii,) = sorted(out.glob("*.nii"))
    return nii


@pytest.mark.parametrize("sid", ["dev_ct_axial_plain", "dev_mr_oblique"])
def test_nifti_affine_matches_dcm2niix(manifest, tmp_path, sid):
    """dcm2niix writes RAS and flips rows (and may order slices differently): the two voxel grids
    must be the same set of points, related by a signed permutation with integer offsets, and
    hold the same values at the same points."""
    (v,) = load_folder(manifest[sid]["folder"])
    ours = tmp_path / "ours.nii"
    write_volume(v, ours)
    theirs = _dcm2niix(manifest[sid]["folder"], tmp_path / "dcm2niix")
    a_ours, dims_ours = read_nifti_affine(ours)
    a_theirs, dims_theirs = read_nifti_affine(theirs)
    mapping = np.linalg.inv(a_theirs) @ a_ours  # our voxel index -> their voxel index
    rotation, offset = mapping[:3, :3], mapping[:3, 3]
    assert np.allclose(rotation, np.round(rotation), atol=1e-4)
    assert np.allclose(np.abs(np.round(rotation)).sum(axis=0), 1) and np.allclose(
        np.abs(np.round(rotation)).sum(axis=1), 1
    )
    assert np.allclose(offset, np.round(offset), atol=1e-3 / min(v.spacing))
    assert sorted(dims_ours[:3]) == sorted(dims_theirs[:3])
    # same values at the same points (dcm2niix keeps raw values + scl_slope/inter; ITK applies them)
    ours_img = sitk.GetArrayFromImage(sitk.ReadImage(str(ours)))
    theirs_img = sitk.GetArrayFromImage(sitk.ReadImage(str(theirs)))
    rng = np.random.default_rng(0)
    ijk = np.stack([rng.integers(0, d, 500) for d in dims_ours[:3]] + [np.ones(500, int)])
    corners = np.array(
        [
            [i, j, k, 1]
            for i in (0, dims_ours[0] - 1)
            for j in (0, dims_ours[1] - 1)
            for k in (0, dims_ours[2] - 1)
        ]
    ).T
    ijk = np.concatenate([ijk, corners], axis=1)
    mapped = np.rint(mapping @ ijk).astype(int)
    assert (mapped[:3].min(axis=1) >= 0).all() and (mapped[:3].T < np.array(dims_theirs[:3])).all()
    assert np.allclose(
        ours_img[ijk[2], ijk[1], ijk[0]], theirs_img[mapped[2], mapped[1], mapped[0]], atol=1e-3
    )


def test_contact_sheet_tiles_thumbnails(manifest):
    import zlib

    from DICOMPlusLib.loading import plan_folder
    from DICOMPlusLib.loading.preview import contact_sheet, thumbnail_image

    images = [
        thumbnail_image(plan_folder(manifest[name]["folder"])[0], size=64)
        for name in ("dev_ct_axial_plain", "dev_mr_oblique", "dev_mr_rle")
    ]
    png = contact_sheet(images, columns=2, cell=64, gap=2)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (2 * 66 + 2, 2 * 66 + 2)
    idat = png[png.index(b"IDAT") + 4 :]
    raw = zlib.decompress(idat[: idat.index(b"IEND") - 8])
    assert len(raw) == height * (width + 1)
    assert any(raw)  # not all black: thumbnails were drawn
