"""``dicomplus export VOLUME --study UID [--modality] (--out DIR | --send NODE)``.

The volumes are written with SimpleITK from a known array and geometry; the exported files are
read back with the pydicom oracle of test_export_series.
"""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from test_export_series import oracle_read, rotation

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.cli import main as cli_main

sitk = pytest.importorskip("SimpleITK")


def write_image(path, array: np.ndarray, direction: np.ndarray, spacing, origin) -> np.ndarray:
    """Write ``array`` [k, j, i] with SimpleITK; return its IJK->LPS matrix."""
    image = sitk.GetImageFromArray(array)
    image.SetDirection(direction.flatten().tolist())
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    sitk.WriteImage(image, str(path))
    matrix = np.eye(4)
    matrix[:3, :3] = direction @ np.diag(spacing)
    matrix[:3, 3] = origin
    return matrix


@pytest.fixture
def env(tmp_path):
    series = make_series(tmp_path / "src", n=2, rows=8, cols=8)
    db = str(tmp_path / "db")
    assert cli_main(["--db", db, "import", str(series.folder)]) == 0
    return db, series


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
@pytest.mark.parametrize("modality", ["CT", "MR", "OT"])
def test_export_nrrd_and_nifti(tmp_path, env, capsys, suffix, modality):
    db, series = env
    rng = np.random.default_rng(4)
    array = (rng.random((5, 7, 9)) * 300 - 50).astype(np.float32)
    matrix = write_image(
        tmp_path / f"vol{suffix}", array, rotation(0.1, 0.2, 0.3), (0.5, 0.75, 2.0), (3.0, -4.0, 5.0)
    )
    capsys.readouterr()
    code = cli_main(
        [
            "--db",
            db,
            "export",
            str(tmp_path / f"vol{suffix}"),
            "--study",
            series.study_uid,
            "--modality",
            modality,
            "--out",
            str(tmp_path / "out"),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["StudyInstanceUID"] == series.study_uid
    assert report["Modality"] == modality and report["SeriesNumber"] == 2
    values, read_matrix, dss = oracle_read(sorted((tmp_path / "out").iterdir()))
    assert np.abs(read_matrix - matrix).max() < 1e-4
    assert np.abs(values - array).max() <= report["rescale"]["max_error"] + 1e-9
    assert report["rescale"]["max_error"] <= 350 / 65535
    assert dss[0].SeriesDescription == "vol"
    assert {d.SeriesInstanceUID for d in dss} == {report["SeriesInstanceUID"]}


def test_export_index_and_options(tmp_path, env, capsys):
    db, series = env
    matrix = write_image(
        tmp_path / "v.nrrd", np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(3), (1, 1, 1), (0, 0, 0)
    )
    uid = "1.2.826.0.1.3680043.10.999.1"
    code = cli_main(
        [
            "--db",
            db,
            "export",
            str(tmp_path / "v.nrrd"),
            "--study",
            series.study_uid,
            "--modality",
            "ct",
            "--out",
            str(tmp_path / "out"),
            "--index",
            "--series-uid",
            uid,
            "--series-number",
            "77",
            "--description",
            "from the CLI",
            "--frame-of-reference",
            "new",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["SeriesInstanceUID"] == uid and report["SeriesNumber"] == 77 and report["indexed"]
    values, read_matrix, dss = oracle_read(sorted((tmp_path / "out").iterdir()))
    assert np.array_equal(values, np.arange(24).reshape(2, 3, 4)) and np.allclose(read_matrix, matrix)
    assert dss[0].FrameOfReferenceUID != pydicom.dcmread(series.files[0]).FrameOfReferenceUID
    assert dss[0].SeriesDescription == "from the CLI"
    assert cli_main(["--db", db, "search", "--level", "series", f"SeriesInstanceUID={uid}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["SeriesNumber"] == 77
    # the same series UID again is refused
    code = cli_main(
        [
            "--db",
            db,
            "export",
            str(tmp_path / "v.nrrd"),
            "--study",
            series.study_uid,
            "--out",
            str(tmp_path / "out2"),
            "--series-uid",
            uid,
        ]
    )
    assert code == 1
    assert "already exists" in capsys.readouterr().err


def test_export_errors_are_one_line(tmp_path, env, capsys):
    db, series = env
    write_image(tmp_path / "v.nrrd", np.zeros((2, 3, 4), np.int16), np.eye(3), (1, 1, 1), (0, 0, 0))
    cases = [
        (
            ["export", str(tmp_path / "v.nrrd"), "--study", "1.2.3.4", "--out", str(tmp_path / "a")],
            "not in the database",
            1,
        ),
        (
            [
                "export",
                str(tmp_path / "missing.nrrd"),
                "--study",
                series.study_uid,
                "--out",
                str(tmp_path / "b"),
            ],
            "no such file or folder",
            2,  # a usage error
        ),
        (
            ["export", str(tmp_path / "v.nrrd"), "--study", "../etc", "--out", str(tmp_path / "c")],
            "not a valid DICOM UID",
            1,
        ),
    ]
    for argv, message, code in cases:
        capsys.readouterr()
        assert cli_main(["--db", db, *argv]) == code
        err = capsys.readouterr().err
        assert err.startswith("dicomplus: error:") and message in err, err
    with pytest.raises(SystemExit):  # --out and --send together: usage error
        cli_main(
            [
                "--db",
                db,
                "export",
                str(tmp_path / "v.nrrd"),
                "--study",
                series.study_uid,
                "--out",
                "x",
                "--send",
                "y",
            ]
        )


@pytest.mark.peers
def test_export_and_send_to_orthanc(tmp_path, env, capsys, orthanc_session):
    """--send NODE: the series goes over C-STORE (DICOMPlusLib.network.send) and Orthanc files it
    under the chosen study."""
    db, series = env
    array = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    write_image(tmp_path / "v.nrrd", array, np.eye(3), (1, 1, 2), (0, 0, 0))
    node = f"{orthanc_session.aet}@127.0.0.1:{orthanc_session.dicom_port}"
    capsys.readouterr()
    code = cli_main(
        [
            "--db",
            db,
            "export",
            str(tmp_path / "v.nrrd"),
            "--study",
            series.study_uid,
            "--modality",
            "MR",
            "--send",
            node,
            "--nodes",
            str(tmp_path / "nodes.json"),
            "--json",
        ]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["sent"]["sent"] == 3 and report["sent"]["failed"] == 0
    found = orthanc_session.post(
        "/tools/find",
        {"Level": "Series", "Query": {"SeriesInstanceUID": report["SeriesInstanceUID"]}, "Expand": True},
    )
    assert len(found) == 1 and len(found[0]["Instances"]) == 3
    study = orthanc_session.get(f"/studies/{found[0]['ParentStudy']}")
    assert study["MainDicomTags"]["StudyInstanceUID"] == series.study_uid


def test_send_failure_is_reported(tmp_path, env, capsys):
    from dicomplus_testing.util import free_port

    db, series = env
    write_image(tmp_path / "v.nrrd", np.zeros((2, 3, 4), np.int16), np.eye(3), (1, 1, 1), (0, 0, 0))
    node = f"NOBODY@127.0.0.1:{free_port()}"  # nothing listens there
    code = cli_main(
        [
            "--db",
            db,
            "export",
            str(tmp_path / "v.nrrd"),
            "--study",
            series.study_uid,
            "--send",
            node,
            "--nodes",
            str(tmp_path / "nodes.json"),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("dicomplus: error:") and "failed" in err, err


def test_uid_root_from_the_environment_for_export_and_bundle_save(tmp_path, env, capsys, monkeypatch):
    """``$DICOMPLUS_UID_ROOT`` is the UID root of everything the CLI writes, when --uid-root is
    not given: the exported series and a saved Data Bundle alike (--uid-root still wins)."""
    import zipfile

    db, series = env
    root = "1.2.826.0.1.3680043.10.999"
    monkeypatch.setenv("DICOMPLUS_UID_ROOT", root)
    write_image(tmp_path / "vol.nrrd", np.zeros((2, 3, 4), np.int16), np.eye(3), (1, 1, 1), (0, 0, 0))
    scene = tmp_path / "scene.mrb"
    with zipfile.ZipFile(scene, "w") as z:
        z.writestr("scene/scene.mrml", "<MRML></MRML>")
    capsys.readouterr()
    study = ("--study", series.study_uid)
    assert cli_main(["--db", db, "export", str(tmp_path / "vol.nrrd"), *study, "--out", str(tmp_path / "e"),
                     "--json"]) == 0  # fmt: skip
    exported = json.loads(capsys.readouterr().out)
    assert exported["SeriesInstanceUID"].startswith(root + "."), exported
    for name, extra, expected in (("b1.dcm", [], root), ("b2.dcm", ["--uid-root", "1.2.3.4"], "1.2.3.4")):
        out = tmp_path / name
        assert cli_main(["--db", db, "bundle", "save", str(scene), *study, "--out", str(out), *extra]) == 0
        saved = pydicom.dcmread(out, stop_before_pixels=True)
        assert saved.SeriesInstanceUID.startswith(expected + "."), name
        assert saved.SOPInstanceUID.startswith(expected + "."), name


def test_export_index_says_what_it_added(tmp_path, env, capsys):
    """``--index`` said nothing of it: the text output says how many instances went into which
    database (and without --index, none)."""
    db, series = env
    write_image(tmp_path / "v.nrrd", np.zeros((3, 4, 5), np.int16), np.eye(3), (1, 1, 1), (0, 0, 0))
    base = ["--db", db, "export", str(tmp_path / "v.nrrd"), "--study", series.study_uid, "--modality", "CT"]
    capsys.readouterr()
    assert cli_main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert "indexed" not in capsys.readouterr().out
    assert cli_main([*base, "--out", str(tmp_path / "kept"), "--index"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"  indexed: 3 instances added to {tmp_path / 'db' / 'dicomplus.sqlite'}" in lines, lines
    assert cli_main(["--db", db, "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["instances"] == len(series.files) + 3
