"""Diffusion series: volumes formed by the acquisition's identity, each homogeneous in b-value
and gradient; b-values and gradients in LPS from standard and vendor tags.

Expected values come from the files themselves, read here with pydicom (never from the loader),
or from how the synthetic series were written.
"""

from __future__ import annotations

import random

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from dicomplus_testing.data import shared_series_dir
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.loading import load, plan_folder, plan_series
from DICOMPlusLib.loading.diffusion import homogeneity_warnings
from DICOMPlusLib.loading.models import Frame

SERIES2 = shared_series_dir().parent / "series2"


def _series2(name: str):
    folder = SERIES2 / name
    if not folder.is_dir():
        pytest.skip(f"shared data {folder} missing")
    return folder


def _tags(path) -> tuple[float, tuple[float, ...] | None]:
    """(b, gradient) of a classic file from its standard tags, read with pydicom."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    b = float(ds.DiffusionBValue)
    g = tuple(float(x) for x in ds.DiffusionGradientOrientation) if b > 5 else None
    return b, g


def test_philips_dwi_volumes_are_homogeneous():
    """The developer DWI (Philips, InstanceNumbers interleaved, AcquisitionNumber unrelated):
    every slice of every volume carries the volume's own b-value and gradient, read back from
    the file of that slice."""
    (info,) = plan_folder(_series2("dev_mr_dwi_philips_classic"))
    t, k = info.shape[:2]
    assert (t, k) == (17, 32)
    for volume in range(t):
        frames = info.frames[volume * k : (volume + 1) * k]
        encodings = {_tags(f.path) for f in frames}
        assert len(encodings) == 1, (volume, encodings)
        (b, g) = encodings.pop()
        assert info.bvals[volume] == pytest.approx(b)
        if g is not None:
            assert np.allclose(info.gradients_lps[volume], g, atol=1e-6)
        else:
            assert info.gradients_lps[volume] == (0.0, 0.0, 0.0)
    assert not [w for w in info.warnings if w.code == "diffusion_mixed"]


def _synthetic_dwi(
    folder,
    *,
    volumes=5,
    slices=6,
    scramble=True,
    seed=3,
    b0=(0,),
    shuffle_instances=False,
    trigger_per_slice=False,
):
    """A classic DWI series written here: ``volumes`` x ``slices`` MR images with the standard
    diffusion tags; InstanceNumber interleaved (slice-major, like Philips) and AcquisitionNumber
    random when ``scramble``. Returns (files by [volume][slice], bvals, gradients)."""
    rng = random.Random(seed)
    series = make_series(folder, n=volumes * slices, modality="MR", slice_step=0.0, shuffle=False)
    directions = np.random.default_rng(seed).normal(size=(volumes, 3))
    bvals = [0.0 if v in b0 else 1000.0 for v in range(volumes)]
    gradients = [
        None if v in b0 else tuple(directions[v] / np.linalg.norm(directions[v])) for v in range(volumes)
    ]
    numbers = list(range(1, volumes * slices + 1))
    if shuffle_instances:
        rng.shuffle(numbers)
    files = [[None] * slices for _ in range(volumes)]
    paths = sorted(series.files)
    for index, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        volume, k = index // slices, index % slices
        ds.ImagePositionPatient = ["-100", "-120", f"{-50 + 3.0 * k:g}"]
        ds.InstanceNumber = numbers[k * volumes + volume]
        if trigger_per_slice:  # slice timing, as some scanners put it in TriggerTime
            ds.TriggerTime = f"{k * 95.0:g}"
        ds.AcquisitionNumber = rng.randint(1, 9) if scramble else volume + 1
        ds.DiffusionBValue = bvals[volume]
        ds.DiffusionGradientOrientation = list(gradients[volume] or (0.0, 0.0, 0.0))
        ds.save_as(path, enforce_file_format=True)
        files[volume][k] = path
    return files, bvals, gradients


@pytest.mark.parametrize("b0", [(0,), (0, 3, 6)])
def test_scrambled_acquisition_number_keeps_volumes_homogeneous(tmp_path, b0):
    """AcquisitionNumber random, InstanceNumber interleaved; with one or several b=0 volumes
    (several: the same encoding acquired at different times is still one volume each)."""
    files, bvals, gradients = _synthetic_dwi(tmp_path / "dwi", volumes=8, b0=b0)
    (info,) = plan_folder(tmp_path / "dwi")
    t, k = info.shape[:2]
    assert (t, k) == (len(bvals), 6)
    by_path = {str(p): (v, s) for v, row in enumerate(files) for s, p in enumerate(row)}
    for volume in range(t):
        members = info.frames[volume * k : (volume + 1) * k]
        assert {by_path[f.path][0] for f in members} == {volume}  # one written volume, in order
        assert [by_path[f.path][1] for f in members] == list(range(k))  # slices along the normal
    assert info.bvals == pytest.approx(bvals)
    for got, want in zip(info.gradients_lps, gradients, strict=True):
        assert np.allclose(got, want if want is not None else (0, 0, 0), atol=1e-6)
    assert not [w for w in info.warnings if w.code == "diffusion_mixed"]
    volume = load(info)
    assert volume.array.shape == (len(bvals), 6, 32, 32)


def test_homogeneity_check_reports_a_mixed_volume():
    def frame(b, g, n):
        return Frame(
            sop_uid=str(n),
            path=f"f{n}",
            transfer_syntax="",
            pixel_offset=0,
            pixel_length=0,
            diffusion_b=b,
            diffusion_gradient=g,
        )

    good = [frame(1000.0, (1.0, 0.0, 0.0), i) for i in range(3)]
    mixed = [frame(1000.0, (0.0, 1.0, 0.0), 3), frame(0.0, None, 4), frame(1000.0, (0.0, 1.0, 0.0), 5)]
    warnings = homogeneity_warnings([good, mixed])
    assert [w.code for w in warnings] == ["diffusion_mixed"]
    assert "volume 2" in warnings[0].message and warnings[0].files == ("f4",)
    assert homogeneity_warnings([good, good]) == []


def _implicit_copy(src, dst):
    dst.mkdir()
    for path in sorted(src.iterdir()):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(dst / path.name, implicit_vr=True, little_endian=True, enforce_file_format=True)


@pytest.mark.parametrize("name", ["dev_mr_dwi_siemens_classic", "dev_mr_dwi_ge_classic"])
def test_vendor_tags_in_implicit_vr_files(tmp_path, name):
    """Private diffusion tags read from implicit VR files (no VR in the file) give the same
    b-values and gradients as the explicit VR originals."""
    src = _series2(name)
    _implicit_copy(src, tmp_path / "implicit")
    (a,) = plan_folder(src)
    (b,) = plan_folder(tmp_path / "implicit")
    assert a.bvals == b.bvals and max(a.bvals) > 5
    assert np.allclose(a.gradients_lps, b.gradients_lps, atol=1e-9)


def test_diffusion_from_the_database(tmp_path):
    """The stored headers of the database carry the private tags too."""
    from test_loading_support import database_with, series_uid_of

    folder = _series2("dev_mr_dwi_siemens_classic")
    db = database_with(tmp_path, folder)
    (info,) = plan_series(db, series_uid_of(folder))
    (direct,) = plan_folder(folder)
    assert info.bvals == direct.bvals
    assert np.allclose(info.gradients_lps, direct.gradients_lps)


def test_not_diffusion_when_every_b_is_zero(tmp_path):
    files, _, _ = _synthetic_dwi(tmp_path / "dwi", volumes=2, scramble=False)
    for row in files:
        for path in row:
            ds = pydicom.dcmread(path)
            ds.DiffusionBValue = 0.0
            ds.TemporalPositionIdentifier = 1 + files.index(row)
            ds.save_as(path, enforce_file_format=True)
    (info,) = plan_folder(tmp_path / "dwi")
    assert info.bvals is None and "bvals" not in info.to_dict()


def test_random_instance_numbers_still_give_homogeneous_volumes(tmp_path):
    """InstanceNumber a random permutation, AcquisitionNumber random, three b=0 volumes: every
    diffusion-weighted volume is exactly one written volume, and the b=0 volumes hold only b=0
    slices (which b=0 repetition a slice came from cannot be told without times)."""
    files, bvals, _ = _synthetic_dwi(tmp_path / "dwi", volumes=8, b0=(0, 3, 6), shuffle_instances=True)
    (info,) = plan_folder(tmp_path / "dwi")
    t, k = info.shape[:2]
    assert (t, k) == (8, 6)
    by_path = {str(p): v for v, row in enumerate(files) for p in row}
    written = [{by_path[f.path] for f in info.frames[v * k : (v + 1) * k]} for v in range(t)]
    weighted = [w for w in written if not w & {0, 3, 6}]
    assert sorted(len(w) for w in weighted) == [1] * 5
    assert {next(iter(w)) for w in weighted} == {1, 2, 4, 5, 7}
    assert all(w <= {0, 3, 6} for w in written if w & {0, 3, 6})
    assert sorted(info.bvals) == sorted(bvals)
    assert not [w for w in info.warnings if w.code == "diffusion_mixed"]


def _csa(elements: dict[str, list[str]]) -> bytes:
    """A Siemens CSA2 ("SV10") header (layout as nibabel's csareader documents it)."""
    import struct

    out = b"SV10\x04\x03\x02\x01" + struct.pack("<II", len(elements), 77)
    for name, values in elements.items():
        out += name.encode().ljust(64, b"\x00") + struct.pack(
            "<i4sii i", 1, b"FD\x00\x00", 4, len(values), 77
        )
        for value in values:
            data = value.encode() + b"\x00"
            out += struct.pack("<4i", len(data), len(data), 77, len(data)) + data.ljust(
                (len(data) + 3) // 4 * 4, b"\x00"
            )
    return out


def test_siemens_csa_header_when_the_0019_tags_are_gone(tmp_path):
    """Siemens DWI whose (0019,100C/100E) were removed: b-value and gradient from the CSA image
    header (B_value, DiffusionGradientDirection) give the same volumes."""
    src = _series2("dev_mr_dwi_siemens_classic")
    (original,) = plan_folder(src)
    dst = tmp_path / "csa"
    dst.mkdir()
    for path in sorted(src.iterdir()):
        ds = pydicom.dcmread(path)
        b = float(ds[0x0019100C].value)
        gradient = [f"{x:.8f}" for x in ds[0x0019100E].value] if 0x0019100E in ds else []
        del ds[0x0019100C]
        if 0x0019100E in ds:
            del ds[0x0019100E]
        block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        block.add_new(0x10, "OB", _csa({"B_value": [f"{b:g}"], "DiffusionGradientDirection": gradient}))
        ds.save_as(dst / path.name)
    (info,) = plan_folder(dst)
    assert info.bvals == original.bvals and max(info.bvals) > 5
    assert np.allclose(info.gradients_lps, original.gradients_lps, atol=1e-6)


def test_diffusion_weighted_volume_without_direction_is_reported(tmp_path):
    files, _, _ = _synthetic_dwi(tmp_path / "dwi", volumes=3, scramble=False)
    for path in files[2]:
        ds = pydicom.dcmread(path)
        ds.DiffusionGradientOrientation = [0.0, 0.0, 0.0]  # a trace image
        ds.save_as(path, enforce_file_format=True)
    (info,) = plan_folder(tmp_path / "dwi")
    assert info.bvals == (0.0, 1000.0, 1000.0) and info.gradients_lps[2] == (0.0, 0.0, 0.0)
    (warning,) = [w for w in info.warnings if w.code == "diffusion_without_direction"]
    assert "volume(s) 3" in warning.message


def test_trigger_time_per_slice_does_not_split_diffusion_volumes(tmp_path):
    files, _bvals, _ = _synthetic_dwi(
        tmp_path / "dwi", volumes=6, shuffle_instances=True, trigger_per_slice=True
    )
    (info,) = plan_folder(tmp_path / "dwi")
    t, k = info.shape[:2]
    assert (t, k) == (6, 6)
    by_path = {str(p): v for v, row in enumerate(files) for p in row}
    written = [{by_path[f.path] for f in info.frames[v * k : (v + 1) * k]} for v in range(t)]
    assert sorted(next(iter(w)) for w in written if len(w) == 1) == list(range(6))
    assert not [w for w in info.warnings if w.code == "diffusion_mixed"]
