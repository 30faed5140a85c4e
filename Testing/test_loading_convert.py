"""``dicomplus convert`` as a dcm2niix alternative: 4D NIfTI with .bval/.bvec in FSL's convention,
a BIDS-style JSON sidecar, and file names from a dcm2niix-like template.

Expected gradients come from dcm2niix's own .bvec (manifest ``bvecs_fsl`` of
../shared/data/series2), mapped to LPS through dcm2niix's axes; expected sidecar values and
names from the headers, read here with pydicom.
"""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from test_loading_series2 import ENTRIES, SERIES2

from DICOMPlusLib.cli import main

DIFFUSION = sorted(sid for sid, e in ENTRIES.items() if e["expected"]["kind"] == "diffusion")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _folder(sid):
    if sid not in ENTRIES:
        pytest.skip(f"shared data {SERIES2} missing")
    return SERIES2 / ENTRIES[sid]["folder"]


def _expected_lps(expected) -> list[np.ndarray | None]:
    """dcm2niix's bvec is along (row, -column, normal) of its NIfTI (determinant < 0: x kept)."""
    m = np.asarray(expected["ijk_to_lps"], float)[:3, :3]
    r, c, n = (m[:, a] / np.linalg.norm(m[:, a]) for a in range(3))
    out = []
    for b, fsl in zip(expected["bvals"], expected["bvecs_fsl"], strict=True):
        g = fsl[0] * r - fsl[1] * c + fsl[2] * n
        out.append(None if b <= 5 else g / np.linalg.norm(g))
    return out


def _read_fsl(stem):
    bvals = [float(x) for x in stem.with_name(stem.name + ".bval").read_text().split()]
    rows = [
        [float(x) for x in line.split()]
        for line in stem.with_name(stem.name + ".bvec").read_text().splitlines()
    ]
    assert len(rows) == 3 and all(len(r) == len(bvals) for r in rows)
    return bvals, np.array(rows).T


@pytest.mark.parametrize("sid", DIFFUSION or ["series2-missing"])
def test_bval_bvec_in_fsl_convention(tmp_path, capsys, sid):
    folder = _folder(sid)
    expected = ENTRIES[sid]["expected"]
    out = tmp_path / "dwi.nii.gz"
    code, _text, err = run(capsys, "convert", str(folder), "--out", str(out))
    assert code == 0, err
    image = sitk.ReadImage(str(out))
    assert list(image.GetSize()) == expected["dims"]
    bvals, bvecs = _read_fsl(tmp_path / "dwi")
    want = _expected_lps(expected)
    # match the volumes by b-value and direction (dcm2niix's order may differ for enhanced files)
    direction = np.array(image.GetDirection()).reshape(4, 4)[:3, :3]  # LPS unit axes of the file
    ras = np.diag([-1.0, -1.0, 1.0]) @ direction
    assert np.linalg.det(ras) > 0  # our files: FSL's rule negates x
    unmatched = list(range(len(want)))
    for b, v in zip(bvals, bvecs, strict=True):
        g = direction @ (v * np.array([-1.0, 1.0, 1.0]))
        for i in unmatched:
            if abs(expected["bvals"][i] - b) > 1e-3 * max(1.0, b):
                continue
            if want[i] is None:
                ok = np.allclose(v, 0.0)
            else:
                ok = min(np.abs(g - want[i]).max(), np.abs(g + want[i]).max()) < 2e-3
            if ok:
                unmatched.remove(i)
                break
        else:
            raise AssertionError(f"volume b={b} bvec={v} matches no dcm2niix volume")
    assert not unmatched
    if "enhanced" not in sid:
        assert bvals == pytest.approx(expected["bvals"], rel=1e-4, abs=1e-3)


def test_sidecar_holds_bids_fields(tmp_path, capsys):
    folder = _folder("dev_mr_mosaic_siemens")
    out = tmp_path / "bold.nii.gz"
    code, _, err = run(capsys, "convert", str(folder), "--out", str(out))
    assert code == 0, err
    side = json.loads((tmp_path / "bold.json").read_text())
    ds = pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
    assert side["EchoTime"] == pytest.approx(float(ds.EchoTime) / 1000)
    assert side["RepetitionTime"] == pytest.approx(float(ds.RepetitionTime) / 1000)
    assert side["FlipAngle"] == pytest.approx(float(ds.FlipAngle))
    assert side["Manufacturer"] == ds.Manufacturer and side["SeriesNumber"] == int(ds.SeriesNumber)
    assert side["SliceTiming"] == pytest.approx([t / 1000 for t in ds[0x00191029].value])
    assert side["ConversionSoftware"] == "dicomplus"
    assert not (tmp_path / "bold.bval").exists()  # not a diffusion series


def test_name_template_and_folder_output(tmp_path, capsys):
    folder = _folder("dev_mr_dwi_siemens_classic")
    ds = pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
    code, _text, err = run(
        capsys, "convert", str(folder), "--out", str(tmp_path / "out"), "--name", "%s_%m_%i"
    )
    assert code == 0, err
    stem = f"{ds.SeriesNumber}_{ds.Manufacturer}_{ds.PatientID}".replace(" ", "_")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(f"{stem}{ext}" for ext in (".nii.gz", ".bval", ".bvec", ".json")), names


def test_no_sidecar_and_nrrd_format(tmp_path, capsys):
    folder = _folder("dev_mr_dwi_ge_classic")
    code, _, err = run(
        capsys,
        "convert",
        str(folder),
        "--out",
        str(tmp_path),
        "--format",
        "nrrd",
        "--no-sidecar",
        "--name",
        "%p",
    )
    assert code == 0, err
    assert [p.suffix for p in tmp_path.iterdir()] == [".nrrd"]


def test_bad_template_is_a_usage_error(tmp_path, capsys):
    folder = _folder("dev_mr_dwi_ge_classic")
    code, _, err = run(capsys, "convert", str(folder), "--out", str(tmp_path), "--name", "%q_%s")
    assert code == 2 and "%q is not a field" in err
    code, _, err = run(capsys, "convert", str(folder), "--out", str(tmp_path / "x.nii.gz"), "--name", "%s")
    assert code == 2 and "--out FOLDER" in err
    assert not list(tmp_path.iterdir())


def test_several_volumes_get_readable_distinct_names(manifest, tmp_path, capsys):
    """Volumes whose template gives one name: one file per volume, told apart by a suffix."""
    folder = manifest["dev_mr_mixed_orientation"]["folder"]
    code, text, err = run(capsys, "convert", str(folder), "--out", str(tmp_path), "--name", "scan", "--json")
    assert code == 0, err
    names = [w["path"].split("/")[-1] for w in json.loads(text)["written"]]
    assert names == ["scan_1.nii.gz", "scan_2.nii.gz"]
    assert all((tmp_path / name).is_file() for name in names)


def test_rescaled_voxels_are_stored_as_integers_with_scl_slope(tmp_path, capsys):
    """Like dcm2niix: the stored integers and the rescale in scl_slope/scl_inter (PS3.3
    C.11.1.1.2 values), read back equal to the loaded volume; --gz-level changes only the size."""
    import struct
    import zlib

    from DICOMPlusLib.loading import load, plan_folder

    folder = _folder("dev_mr_dwi_philips_classic")
    sizes = {}
    for level in ("1", "9"):
        out = tmp_path / f"l{level}.nii.gz"
        code, _, err = run(
            capsys, "convert", str(folder), "--out", str(out), "--gz-level", level, "--no-sidecar"
        )
        assert code == 0, err
        sizes[level] = out.stat().st_size
    raw = zlib.decompress((tmp_path / "l9.nii.gz").read_bytes(), 31)
    datatype, bitpix = struct.unpack_from("<hh", raw, 70)
    slope, intercept = struct.unpack_from("<ff", raw, 112)
    ds = pydicom.dcmread(
        next(p for p in sorted(folder.iterdir()) if p.name.startswith("IM_")), stop_before_pixels=True
    )
    assert (datatype, bitpix) in ((4, 16), (512, 16))
    assert slope == pytest.approx(float(ds.RescaleSlope), rel=1e-6)
    assert intercept == pytest.approx(float(ds.RescaleIntercept), abs=1e-6)
    (info,) = plan_folder(folder)
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "l1.nii.gz")))
    assert np.allclose(image, load(info).array, rtol=1e-6, atol=1e-5)
    assert sizes["9"] < sizes["1"]


def test_inspect_contract_for_a_diffusion_series(capsys):
    folder = _folder("dev_mr_dwi_siemens_classic")
    expected = ENTRIES["dev_mr_dwi_siemens_classic"]["expected"]
    code, text, err = run(capsys, "inspect", str(folder), "--json")
    assert code == 0, err
    (volume,) = json.loads(text)["volumes"]
    assert volume["dims"] == expected["dims"]
    assert volume["bvals"] == pytest.approx(expected["bvals"])
    assert np.allclose(volume["gradients_lps"], expected["gradients_lps"], atol=2e-3)
    code, text, _ = run(capsys, "inspect", str(folder))
    assert code == 0 and "diffusion: 2 volumes, b-values 0, 1000 s/mm2" in text
