"""Bundles written the way stock Slicer writes them, read by DICOMPlus.

``stock_slicer_bundle`` replays DICOMLib/DICOMExportScene.createDICOMFileForScene (Slicer/Slicer)
with the same DCMTK tools and arguments (see ../shared/notes/slicer-anchor.md 1.10):

1. ``dcmdump --print-all --write-pixel DIR REFERENCE`` -> the reference as a text dump;
2. append ``(cadb,0010) LO [3D Slicer <size>]``, ``(cadb,1008) LO [<size>]`` and
   ``(cadb,1010) OB =scene.zip``;
3. ``dump2dcm dump template --generate-new-uids --overwrite-uids --ignore-errors``;
4. ``img2dcm -k SeriesDescription=Slicer Data Bundle [--no-latin1] --dataset-from template
   scene.jpg SlicerDataBundle.dcm`` (a JPEG Secondary Capture; ``--no-latin1`` only where this
   DCMTK has it: it appeared after 3.6.7).

The result has no hash and new UIDs (stock Slicer's behaviour); DICOMPlus must read it anyway.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from test_bundle_write_read import make_zip, stock_slicer_load

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import require_executable
from DICOMPlusLib.bundle import extract_bundle, is_bundle, read_bundle, read_bundle_info
from DICOMPlusLib.cli import main as cli_main
from DICOMPlusLib.errors import BundleError

DUMP2DCM = "/usr/bin/dump2dcm"
IMG2DCM = "/usr/bin/img2dcm"

pytestmark = pytest.mark.peers


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)


def stock_slicer_bundle(dcmtk, folder: Path, reference: Path, zip_bytes: bytes) -> Path:
    """Write a Data Bundle exactly as stock Slicer's DICOMExportScene does (module docstring)."""
    require_executable(DUMP2DCM)
    require_executable(IMG2DCM)
    image = pytest.importorskip("PIL.Image")
    folder.mkdir(parents=True, exist_ok=True)
    zip_file = folder / "scene.zip"
    zip_file.write_bytes(zip_bytes)
    pixels = (np.random.default_rng(5).random((48, 64, 3)) * 255).astype(np.uint8)
    image.fromarray(pixels).save(folder / "scene.jpg")
    zip_size = zip_file.stat().st_size
    dump = dcmtk.run("dcmdump", "--print-all", "--write-pixel", folder, reference).stdout
    creator = f"3D Slicer {zip_size}"
    dump += (
        f"(cadb,0010) LO [{creator}]           #  {len(creator)}, 1 PrivateCreator\n"
        f"(cadb,1008) LO [{zip_size}]                                         #   4, 1 Unknown Tag & Data\n"
        f"(cadb,1010) OB ={zip_file}                                          #  {zip_size}, 1 Unknown Tag & Data\n"
    )
    (folder / "dump.dcm").write_text(dump)
    proc = _run(
        [
            DUMP2DCM,
            str(folder / "dump.dcm"),
            str(folder / "template.dcm"),
            "--generate-new-uids",
            "--overwrite-uids",
            "--ignore-errors",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    out = folder / "SlicerDataBundle.dcm"
    argv = [
        IMG2DCM,
        "-k",
        "SeriesDescription=Slicer Data Bundle",
        "--no-latin1",
        "--dataset-from",
        str(folder / "template.dcm"),
        str(folder / "scene.jpg"),
        str(out),
    ]
    proc = _run(argv)
    if proc.returncode != 0 and "--no-latin1" in proc.stderr + proc.stdout:
        argv.remove("--no-latin1")  # DCMTK <= 3.6.7
        proc = _run(argv)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return out


@pytest.fixture
def reference_file(tmp_path) -> Path:
    return make_series(tmp_path / "src", n=1, rows=16, cols=16).files[0]


@pytest.mark.parametrize("payload", [6000, 6001])
def test_read_stock_bundle(tmp_path, dcmtk, reference_file, payload):
    data = make_zip(payload)
    path = stock_slicer_bundle(dcmtk, tmp_path / "stock", reference_file, data)
    # the fixture is faithful: stock Slicer's own reading gets the zip back
    assert stock_slicer_load(path) == data
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"  # JPEG baseline
    info = read_bundle_info(path)
    assert info.writer == "slicer" and info.sha256 is None and info.zip_size == len(data)
    assert info.series_description == "Slicer Data Bundle"
    assert is_bundle(path)
    assert read_bundle(path) == data
    extract_bundle(path, tmp_path / "out.zip")
    assert (tmp_path / "out.zip").read_bytes() == data


def test_stock_bundle_through_the_cli(tmp_path, dcmtk, reference_file, capsys):
    data = make_zip(4321)
    path = stock_slicer_bundle(dcmtk, tmp_path / "stock", reference_file, data)
    assert cli_main(["bundle", "extract", str(path), "--out", str(tmp_path / "scene.zip")]) == 0
    assert (tmp_path / "scene.zip").read_bytes() == data
    assert "slicer bundle, no hash recorded" in capsys.readouterr().out


def test_stock_bundle_oversize_refused(tmp_path, dcmtk, reference_file):
    path = stock_slicer_bundle(dcmtk, tmp_path / "stock", reference_file, make_zip(9000))
    with pytest.raises(BundleError, match="over the limit"):
        read_bundle(path, max_size=8000)
