"""Export reads a NIfTI's real geometry: the sform when it holds the exact (sheared) grid and the
qform its orthogonal stand-in, refusing headers whose two matrices disagree otherwise.

Truth: the geometry of the series the NIfTI came from (the manifest's, derived independently),
or the matrices the tests write into the header themselves."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from test_export_series import rotation

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.cli import main
from DICOMPlusLib.cli.export import read_volume
from DICOMPlusLib.database import Database
from DICOMPlusLib.errors import ExportError
from DICOMPlusLib.export.nifti import choose_ijk_to_lps, read_header
from DICOMPlusLib.loading import plan_series

sitk = pytest.importorskip("SimpleITK")
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _write(path, matrix_lps: np.ndarray, shape=(4, 5, 6)) -> np.ndarray:
    """A NIfTI written by SimpleITK with an orthogonal ``matrix_lps``; returns the array."""
    array = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    spacing = np.linalg.norm(matrix_lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((matrix_lps[:3, :3] / spacing).flatten().tolist())
    image.SetOrigin(matrix_lps[:3, 3].tolist())
    sitk.WriteImage(image, str(path))
    return array


def _set_sform(path, ras: np.ndarray | None, qform_code: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    if ras is None:
        struct.pack_into("<h", data, 254, 0)
    else:
        struct.pack_into("<h", data, 254, 1)
        struct.pack_into("<12f", data, 280, *np.asarray(ras, float)[:3].flatten().tolist())
    if qform_code is not None:
        struct.pack_into("<h", data, 252, qform_code)
    path.write_bytes(bytes(data))


def _orthogonal() -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation(0.2, -0.1, 0.3) @ np.diag([0.7, 0.9, 2.5])
    m[:3, 3] = (10.0, -20.0, 30.0)
    return m


def test_qform_is_read_like_simpleitk(tmp_path):
    m = _orthogonal()
    _write(tmp_path / "v.nii", m)
    header = read_header(tmp_path / "v.nii")
    assert header.qform_code > 0
    assert np.allclose(LPS @ header.qform, m, atol=1e-4)
    assert np.allclose(read_volume(tmp_path / "v.nii")[1], m, atol=1e-4)


def test_a_sheared_sform_with_its_orthogonal_qform_wins(tmp_path):
    m = _orthogonal()
    _write(tmp_path / "v.nii", m)
    sheared = m.copy()
    sheared[:3, 2] += m[:3, 1] * 0.4  # the stack leans along j
    _set_sform(tmp_path / "v.nii", LPS @ sheared)
    matrix, note = choose_ijk_to_lps(read_header(tmp_path / "v.nii"), tmp_path / "v.nii")
    assert np.allclose(matrix, sheared, atol=1e-4)
    assert "sheared" in note
    assert np.allclose(read_volume(tmp_path / "v.nii")[1], sheared, atol=1e-4)


def test_only_an_sform(tmp_path):
    m = _orthogonal()
    _write(tmp_path / "v.nii", m)
    other = m.copy()
    other[:3, 3] += (5.0, 6.0, 7.0)
    _set_sform(tmp_path / "v.nii", LPS @ other, qform_code=0)
    assert np.allclose(read_volume(tmp_path / "v.nii")[1], other, atol=1e-4)


def test_disagreeing_qform_and_sform_are_refused(tmp_path, capsys):
    m = _orthogonal()
    _write(tmp_path / "v.nii", m)
    moved = m.copy()
    moved[:3, 3] += (0.0, 12.0, 0.0)  # not a shear: a different place
    _set_sform(tmp_path / "v.nii", LPS @ moved)
    with pytest.raises(ExportError, match="disagree"):
        read_volume(tmp_path / "v.nii")
    series = make_series(tmp_path / "src", n=2, rows=8, cols=8)
    db = str(tmp_path / "db")
    assert main(["--db", db, "import", str(series.folder)]) == 0
    capsys.readouterr()
    code = main(
        [
            "--db",
            db,
            "export",
            str(tmp_path / "v.nii"),
            "--study",
            series.study_uid,
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code != 0
    assert "disagree" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_tilted_series_survives_convert_then_export(tmp_path, manifest, capfd):
    entry = manifest["dev_ct_gantry_tilt"]
    expected = np.array(entry["expected"]["ijk_to_lps"], float)
    db_path = str(tmp_path / "db")
    assert main(["--db", db_path, "import", str(entry["folder"]), "--link"]) == 0
    assert main(["convert", str(entry["folder"]), "--out", str(tmp_path / "tilt.nii.gz")]) == 0
    capfd.readouterr()
    db = Database(db_path)
    try:
        (series,) = db.search("series", {})
        study = series.StudyInstanceUID
    finally:
        db.close()
    code = main(
        [
            *("--db", db_path, "export", str(tmp_path / "tilt.nii.gz"), "--study", study),
            *("--modality", "CT", "--out", str(tmp_path / "out"), "--index", "--json"),
        ]
    )
    assert code == 0
    captured = capfd.readouterr()  # file descriptors: ITK writes its warnings to fd 2 itself
    result = json.loads(captured.out)
    assert "WARNING" not in captured.err, captured.err  # ITK's "unexpected scales in sform"
    assert result["tilt_deg"] > 1.0 and "nifti_sheared_sform" in {n["code"] for n in result["notes"]}
    db = Database(db_path)
    try:
        (info,) = plan_series(db, result["SeriesInstanceUID"])
    finally:
        db.close()
    # every corner where the original series puts it (the qform alone misplaces slices by ~40 mm)
    assert np.abs(info.ijk_to_lps - expected).max() < 1e-3
    assert info.tilt_deg == pytest.approx(result["tilt_deg"], abs=1e-3)


def test_a_nifti2_header_is_left_to_simpleitk(tmp_path):
    """A NIfTI-2 header (sizeof_hdr 540) is not parsed here: no refusal, SimpleITK decides."""
    header = bytearray(540)
    struct.pack_into("<i", header, 0, 540)
    (tmp_path / "v2.nii").write_bytes(bytes(header) + bytes(64))
    assert read_header(tmp_path / "v2.nii") is None
    (tmp_path / "short.nii").write_bytes(b"x" * 100)
    assert read_header(tmp_path / "short.nii") is None


def test_a_sheared_nrrd_reads_back_exact(tmp_path, manifest, capsys):
    """NRRD space directions hold the sheared grid as it is (no qform/sform question)."""
    entry = manifest["dev_ct_gantry_tilt"]
    assert main(["convert", str(entry["folder"]), "--out", str(tmp_path / "tilt.nrrd")]) == 0
    capsys.readouterr()
    _, matrix = read_volume(tmp_path / "tilt.nrrd")
    assert np.abs(matrix - np.array(entry["expected"]["ijk_to_lps"], float)).max() < 1e-3
