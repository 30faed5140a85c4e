"""Generic checks of the DICOMPlus scripted module, after Slicer's qSlicerModuleGenericTest.

Slicer runs qSlicerModuleGenericTest for modules built WITH_GENERIC_TESTS: the module has a
title, categories and contributors, its logic and widget can be created, and the widget accepts
a scene. This file checks the same under the harness, plus a screenshot for people to review.
"""

from __future__ import annotations

import shutil
import sys

import pytest

from dicomplus_testing.harness import MODULE_DIR, load_module, unload_module
from dicomplus_testing.synthetic import make_series


@pytest.fixture
def slicer(slicer_app):
    import slicer

    return slicer


def test_module_description(dicomplus_module, slicer):
    module = slicer.modules.dicomplus
    assert module.title == "DICOMPlus"
    assert module.categories == ["Informatics"]
    assert module.contributors and all(name.strip() for name in module.contributors)
    assert len(module.helpText) > 50
    assert len(module.acknowledgementText) > 20
    assert module.dependencies == []
    assert not module.icon.isNull()  # found at Resources/Icons/DICOMPlus.png
    assert module.icon.availableSizes()[0].width() == 128
    assert slicer.util.modulePath("DICOMPlus") == str(MODULE_DIR / "DICOMPlus.py")
    assert isinstance(slicer.modules.DICOMPlusInstance, dicomplus_module.DICOMPlus)
    assert slicer.app.moduleManager().module("DICOMPlus") is module


def test_logic_instantiates_without_a_widget(dicomplus_module, slicer):
    import DICOMPlusLib

    logic = dicomplus_module.DICOMPlusLogic()
    assert logic.libraryVersion() == DICOMPlusLib.__version__
    node = logic.getParameterNode()
    assert node.IsA("vtkMRMLScriptedModuleNode") and node.GetAttribute("ModuleName") == "DICOMPlus"
    assert slicer.mrmlScene.GetNodeByID(node.GetID()) is node


def test_widget_shows_and_accepts_a_scene(dicomplus_module, slicer, qtbot, screenshot):
    import DICOMPlusWidgets

    widget = dicomplus_module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    assert widget.parent.visible is True
    ui = widget.ui
    for name in ("importButton", "loadButton", "deleteButton", "messagesText", "networkPlaceholderLabel"):
        assert hasattr(ui, name), name
    # the panel is composed of the embeddable widgets, each in its frame of the .ui
    for attribute, cls, frame in (
        ("browser", DICOMPlusWidgets.DICOMPlusBrowserWidget, ui.browserFrame),
        ("preview", DICOMPlusWidgets.DICOMPlusPreviewWidget, ui.previewFrame),
        ("activity", DICOMPlusWidgets.DICOMPlusActivityWidget, ui.activityFrame),
    ):
        child = getattr(widget, attribute)
        assert isinstance(child, cls) and child.parentWidget() is frame, attribute
    assert DICOMPlusWidgets.__file__.startswith(str(MODULE_DIR))
    assert ui.DICOMPlus.mrmlScene() is slicer.mrmlScene

    otherScene = slicer.vtkMRMLScene()
    widget.parent.setMRMLScene(otherScene)
    ui.DICOMPlus.setMRMLScene(otherScene)
    assert ui.DICOMPlus.mrmlScene() is otherScene
    ui.DICOMPlus.setMRMLScene(slicer.mrmlScene)
    widget.parent.setMRMLScene(slicer.mrmlScene)

    # as in Slicer's module panel: a scroll area gives the panel its preferred height, never
    # less than its minimum (the browser's list takes what is left: its own hint is small)
    height = max(widget.parent.sizeHint.height(), widget.parent.minimumSizeHint.height())
    widget.parent.resize(420, height)
    path = screenshot(widget, "DICOMPlus_widget")
    assert path.is_file() and path.stat().st_size > 10_000
    import qt

    image = qt.QImage(str(path))
    assert (image.width(), image.height()) == (420, height)
    colors = {image.pixel(x, y) for x in range(0, 420, 3) for y in range(0, height, 3)}
    assert len(colors) > 20  # text and frames, not a blank window


def test_widget_buttons_follow_the_selection(dicomplus_module, qtbot, tmp_path):
    widget = dicomplus_module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    logic = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db" / "dicomplus.sqlite")
    alpha = make_series(tmp_path / "a", n=2, rows=8, cols=8, patient_id="ALPHA", patient_name="Anonymous^Alpha",
                        study_description="CT chest")  # fmt: skip
    beta = make_series(tmp_path / "b", n=2, rows=8, cols=8, patient_id="BETA", patient_name="Anonymous^Beta",
                       modality="MR", study_description="MR brain")  # fmt: skip
    logic.importFolder([alpha.folder, beta.folder]).get()
    widget.setLogic(logic)
    browser = widget.browser
    assert browser.entries("patient") == [("patient", "ALPHA"), ("patient", "BETA")]
    assert widget.ui.loadButton.enabled is False
    browser.selectEntry("patient", "ALPHA")
    assert widget.ui.loadButton.enabled is True and widget.ui.deleteButton.enabled is True
    qtbot.keyClicks(browser.searchBox(), "brain")  # a database search, once typing stops
    qtbot.waitUntil(lambda: browser.entries("patient") == [("patient", "BETA")])
    assert browser.entries("series") == [("series", beta.series_uid)]
    assert widget.ui.loadButton.enabled is False  # the selected patient is no longer shown
    browser.searchBox().clear()
    qtbot.waitUntil(lambda: len(browser.entries("patient")) == 2)
    browser.selectEntry("study", alpha.study_uid)
    assert widget.ui.loadButton.enabled is True
    browser.clearSelection()
    assert widget.ui.loadButton.enabled is False


def test_unloading_runs_cleanup(dicomplus_module, qtbot):
    widget = dicomplus_module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    assert widget.Observations  # scene observers added by setup()
    unload_module("DICOMPlus")
    assert widget.Observations == []


def test_module_self_test_passes(dicomplus_module, slicer):
    slicer.selfTests["DICOMPlus"]()  # DICOMPlusTest.runTest, as Slicer's "Reload and Test" runs it


def test_module_loads_from_another_folder(slicer_app, clean_scene, qtbot, tmp_path, monkeypatch):
    """What a packaging test does: load the module from an installed tree, not the sources."""
    import slicer

    monkeypatch.setattr(sys, "path", list(sys.path))  # load_module prepends the module folder
    installed = tmp_path / "qt-scripted-modules"
    shutil.copytree(MODULE_DIR, installed, ignore=shutil.ignore_patterns("__pycache__"))
    try:
        module = load_module(installed)
        assert slicer.modules.dicomplus.path == str(installed / "DICOMPlus.py")
        widget = module.DICOMPlusWidget()
        qtbot.addWidget(widget.parent)
        assert widget.resourcePath("UI/DICOMPlus.ui") == str(installed / "Resources" / "UI" / "DICOMPlus.ui")
        assert widget.ui.importButton.text == "Import..."
    finally:
        unload_module("DICOMPlus")
    assert not hasattr(slicer.modules, "dicomplus")


@pytest.mark.parametrize("dicomplus_module", [MODULE_DIR], indirect=True)
def test_module_folder_can_be_given_by_indirect_parametrization(dicomplus_module, slicer):
    assert slicer.modules.dicomplus.path == str(MODULE_DIR / "DICOMPlus.py")
