"""What a stock Slicer lacks, the module asks for, installs for real and then uses.

The requirement lines come from the installed Resources/requirements-{decoders,network}.txt and
go through ``slicer.packaging.pip_ensure`` (the tier's, stock_packaging.py): only the download is
replaced, by the wheelhouse. The tests run in this order in one session (pytest keeps file
order), because an install stays for the session: decline then accept for the decoders, then for
the network, then the module's own self-test, which needs the network packages.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from stock_support import REPO_ROOT


def requirement_lines(purpose: str) -> list[str]:
    text = (REPO_ROOT / "Resources" / f"requirements-{purpose}.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("#", "-"))]


def requests_from_dicomplus(stock_packaging, since: int = 0) -> list[list[str]]:
    return [c["requirements"] for c in stock_packaging.calls[since:] if c["requester"] == "DICOMPlus"]


def import_series(module, tmp_path, folder):
    logic = module.DICOMPlusLogic(
        databasePath=str(tmp_path / "db" / "dicomplus.sqlite"), nodesPath=str(tmp_path / "nodes.json")
    )
    logic.importFolder([str(folder)])
    [series] = logic.search("series")
    return logic, series.SeriesInstanceUID


def test_compressed_series_says_which_decoder_it_needs_then_loads_after_install(
    installed_module, manifest, user, stock_packaging, tmp_path
):
    """JPEG Lossless SV1 needs python-gdcm (pyjpegls, bundled, is JPEG-LS only)."""
    import slicer

    assert importlib.util.find_spec("gdcm") is None, "python-gdcm must not be installed yet"
    entry = manifest["dev_mr_jpeg_lossless"]
    logic, seriesUID = import_series(installed_module, tmp_path, entry["folder"])
    since = len(stock_packaging.calls)

    with pytest.raises(Exception):  # noqa: B017  (declined: whatever the Logic raises, no volume)
        logic.loadSeries(seriesUID)
    [question] = user.asked
    assert "python-gdcm" in question
    [asked] = requests_from_dicomplus(stock_packaging, since)
    assert "python-gdcm>=3.0.24" in asked
    assert set(asked) <= set(requirement_lines("decoders")), "only lines of requirements-decoders.txt"
    assert stock_packaging.installs == []
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0

    user.accept = True
    [node] = logic.loadSeries(seriesUID)
    assert len(user.asked) == 2
    assert stock_packaging.installs and all(set(i) <= set(asked) for i in stock_packaging.installs)
    assert importlib.util.find_spec("gdcm") is not None
    jpeg_lossless = slicer.util.arrayFromVolume(node).copy()
    assert list(jpeg_lossless.shape[::-1]) == entry["expected"]["dims"]

    # The same acquisition as JPEG-LS (bundled decoder): identical pixels, and nothing asked.
    logic_ls, seriesUID_ls = import_series(
        installed_module, tmp_path / "jpegls", manifest["dev_mr_jpegls"]["folder"]
    )
    [node_ls] = logic_ls.loadSeries(seriesUID_ls)
    assert np.array_equal(slicer.util.arrayFromVolume(node_ls), jpeg_lossless)
    assert len(user.asked) == 2


def test_network_panel_asks_before_installing_pynetdicom_and_works_after(
    installed_module, user, stock_packaging, storescp, qtbot, tmp_path
):
    assert importlib.util.find_spec("pynetdicom") is None, "pynetdicom must not be installed yet"
    logic = installed_module.DICOMPlusLogic(
        databasePath=str(tmp_path / "db" / "dicomplus.sqlite"), nodesPath=str(tmp_path / "nodes.json")
    )
    widget = installed_module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    widget.setLogic(logic)
    network = widget.network
    try:
        network.addNode("Store SCP", storescp.aet, "127.0.0.1", storescp.port)
        echoes = []
        network.echoFinished.connect(lambda ok, message: echoes.append((ok, message)))
        since = len(stock_packaging.calls)

        network.onEcho()  # the user declines
        [question] = user.asked
        assert "pynetdicom" in question
        assert requests_from_dicomplus(stock_packaging, since) == [requirement_lines("network")]
        assert "declined" in network.echoText().lower(), network.echoText()
        assert stock_packaging.installs == [] or "pynetdicom" not in str(stock_packaging.installs)
        assert importlib.util.find_spec("pynetdicom") is None
        assert echoes == []

        user.accept = True
        network.onEcho()  # asked again, accepted: installed, then the echo runs
        assert len(user.asked) == 2
        assert any("pynetdicom" in line for lines in stock_packaging.installs for line in lines)
        assert importlib.util.find_spec("pynetdicom") is not None
        # A child process of the venv's Python (the engine runs Slicer's) sees it too.
        child = subprocess.run([sys.executable, "-c", "import pynetdicom"], capture_output=True, text=True)
        assert child.returncode == 0, child.stderr
        qtbot.waitUntil(lambda: bool(echoes), timeout=30000)
        assert echoes[0][0] is True, echoes
        network.onEcho()  # installed now: not asked again
        assert len(user.asked) == 2
    finally:
        widget.cleanup()


@pytest.fixture
def network_packages(user, stock_packaging):
    """The network packages installed as a user would (asked, accepted), if not already."""
    import slicer.packaging

    user.accept = True
    slicer.packaging.pip_ensure(requirement_lines("network"), requester="DICOMPlus")
    assert importlib.util.find_spec("pynetdicom") is not None


def test_module_self_test_passes(installed_module, network_packages):
    """DICOMPlusTest.runTest, as Slicer's "Reload and Test" runs it, from the install tree."""
    import slicer

    slicer.selfTests["DICOMPlus"]()
