"""The module, installed with CMake and loaded from the install tree, works in a stock Slicer with
no package installed: import, browse and load of uncompressed (and bundled-codec) series."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from stock_support import REPO_ROOT, forget_library, forget_path_entries, restore_library

# What only pip_ensure may bring: none of it is imported while the user did not ask for it.
ON_DEMAND_MODULES = ("pynetdicom", "gdcm", "pylibjpeg", "openjpeg", "rle")


def imported_on_demand_modules() -> list[str]:
    return sorted(n for n in sys.modules if n.split(".")[0] in ON_DEMAND_MODULES)


def test_module_loads_from_the_install_tree(installed_module, install_tree):
    import slicer

    import DICOMPlusLib

    assert Path(DICOMPlusLib.__file__).is_relative_to(install_tree)
    assert slicer.modules.dicomplus.title == "DICOMPlus"
    # Slicer appends the module folder at registration: after the standard library and
    # site-packages, so an installed package of the same name would win.
    purelib = sysconfig.get_path("purelib")
    assert sys.path.index(str(install_tree)) > sys.path.index(purelib)


def load_through_the_panel(module, qtbot, tmp_path, folder):
    """Import ``folder`` with the Logic, find its series in the panel's browser, load it."""
    logic = module.DICOMPlusLogic(databasePath=str(tmp_path / "db" / "dicomplus.sqlite"))
    logic.importFolder([str(folder)])
    widget = module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    widget.setLogic(logic)
    entries = widget.browser.entries("series")
    assert len(entries) == 1, entries
    [(_, seriesUID)] = entries
    assert widget.browser.selectSeries(seriesUID)
    nodes = logic.loadSeries(seriesUID)
    return widget, nodes


@pytest.mark.parametrize("series_id", ["dev_ct_axial_plain", "dev_mr_jpegls"])
def test_import_browse_and_load_need_no_extra_package(
    installed_module, manifest, user, stock_packaging, qtbot, tmp_path, series_id
):
    """Uncompressed CT, and JPEG-LS (pyjpegls is bundled with Slicer 5.12): nothing to install."""
    import slicer

    entry = manifest[series_id]
    widget, nodes = load_through_the_panel(installed_module, qtbot, tmp_path, entry["folder"])
    try:
        [node] = nodes
        array = slicer.util.arrayFromVolume(node)
        assert list(array.shape[::-1]) == entry["expected"]["dims"]
        assert np.ptp(array) > 0, "pixels were read"
        assert np.allclose(node.GetSpacing(), entry["expected"]["spacing"], atol=1e-3)
    finally:
        widget.cleanup()
    assert user.asked == [], "nothing was missing, so nothing was asked"
    assert stock_packaging.installs == []
    assert imported_on_demand_modules() == []


def test_module_loads_from_a_clone_with_only_the_module_folder(clean_scene, user):
    """``Slicer --additional-module-paths <clone>/DICOMPlus``: Slicer appends <clone>/DICOMPlus to
    sys.path and nothing else; the module finds its sibling <clone>/DICOMPlusLib itself."""
    from dicomplus_testing import harness

    saved_path, saved_library = list(sys.path), forget_library()
    try:
        module = harness.load_module(REPO_ROOT / "DICOMPlus")
        import DICOMPlusLib

        assert Path(module.__file__) == REPO_ROOT / "DICOMPlus" / "DICOMPlus.py"
        assert Path(DICOMPlusLib.__file__) == REPO_ROOT / "DICOMPlusLib" / "__init__.py"
        added = [entry for entry in sys.path if entry not in saved_path]
        assert added == [str(REPO_ROOT / "DICOMPlus"), str(REPO_ROOT)], "both appended, module folder first"
        assert sys.path[-2:] == added
        logic = module.DICOMPlusLogic()
        assert logic.libraryVersion() == DICOMPlusLib.__version__
    finally:
        harness.unload_module()
        forget_path_entries(saved_path)
        restore_library(saved_library)
