"""The slicer-testing stubs behave like Slicer where DICOMPlus relies on it.

Each test pins one promise of Testing/slicer_stubs (PythonQt semantics, real MRML, testing-mode
dialogs, the ctk/qMRML stand-ins); if a stub drifts, the test names what broke.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from dicomplus_testing.harness import STUBS_DIR
from dicomplus_testing.util import REPO_ROOT

pytestmark = pytest.mark.usefixtures("clean_scene")


@pytest.fixture
def slicer(slicer_app):
    import slicer

    return slicer


@pytest.fixture
def qt(slicer_app):
    import qt

    return qt


def _write_ui(tmp_path, body, root_class="QWidget", connections=""):
    path = tmp_path / "test.ui"
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<ui version="4.0">\n <class>Root</class>\n'
        f' <widget class="{root_class}" name="Root">\n  <layout class="QVBoxLayout" name="rootLayout">\n'
        f"{body}  </layout>\n </widget>\n <resources/>\n <connections>{connections}</connections>\n</ui>\n"
    )
    return path


# --- the environment ---------------------------------------------------------------------------


def test_plugin_import_is_cheap_and_sets_the_environment():
    code = (
        "import os, sys\n"
        "import dicomplus_testing.harness as h\n"
        "assert os.environ['QT_QPA_PLATFORM'] == 'offscreen', os.environ['QT_QPA_PLATFORM']\n"
        "assert os.environ['PYTEST_QT_API'] == 'pyside6'\n"
        "assert sys.path[0] == str(h.STUBS_DIR), sys.path[:3]\n"
        "heavy = sorted({'PySide6', 'slicer', 'slicer_core', 'vtk', 'qt', 'ctk'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "Testing"), "QT_QPA_PLATFORM": "xcb"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_offscreen_platform_and_testing_mode(slicer, qt):
    assert qt.QGuiApplication.platformName() == "offscreen"
    assert slicer.app is qt.QApplication.instance()
    assert slicer.app.testingEnabled() is True
    assert slicer.app.layoutManager() is None
    assert slicer.util.mainWindow() is None
    assert os.path.isdir(slicer.app.temporaryPath)


def test_settings_live_in_a_temporary_ini(slicer, qt):
    settings = qt.QSettings()
    settings.setValue("DICOMPlus/harnessProbe", "1")
    settings.sync()
    assert settings.fileName().endswith(".ini")
    assert not settings.fileName().startswith(os.path.expanduser("~"))
    assert slicer.util.settingsValue("DICOMPlus/harnessProbe", None) == "1"


def test_mrml_scene_is_real_and_reads_mrb(slicer, tmp_path):
    scene = slicer.mrmlScene
    assert type(scene).__name__ == "vtkMRMLScene"
    assert type(scene).__module__.startswith("slicer_core")
    assert isinstance(scene, slicer.vtkMRMLScene)
    assert slicer.app.applicationLogic().GetMRMLScene() is scene
    assert slicer.app.applicationLogic().GetModuleLogic("SubjectHierarchy") is not None

    voxels = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    volume = slicer.util.addVolumeFromArray(voxels, name="harnessVolume")
    assert slicer.util.getNode("harnessVolume") is volume
    mrb = tmp_path / "scene.mrb"
    assert scene.WriteToMRB(str(mrb))
    scene.Clear(0)
    assert not slicer.util.getNodes("harnessVolume")
    assert scene.ReadFromMRB(str(mrb))  # needs the DataIOManager + CacheManager of the stub
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(slicer.util.getNode("harnessVolume")), voxels)


def test_clean_scene_starts_without_data_nodes(clean_scene):
    assert clean_scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0
    assert clean_scene.GetNumberOfNodesByClass("vtkMRMLSelectionNode") == 1  # singletons stay


# --- PythonQt semantics ---------------------------------------------------------------------


def test_properties_are_attributes_and_getters_are_hidden(qt):
    label = qt.QLabel("before")
    assert label.text == "before"
    with pytest.raises(TypeError, match="not callable"):
        label.text()
    label.text = "after"
    assert label.text == "after"
    label.enabled = False
    assert label.isEnabled() is False and label.enabled is False
    label.setEnabled(True)
    assert label.enabled is True
    with pytest.raises(AttributeError, match="read only"):
        label.width = 10
    progress = qt.QProgressBar()
    progress.maximum = 10
    progress.value = 4
    assert (progress.value, progress.maximum) == (4, 10)


def test_name_is_object_name_and_class_level_access_is_unchanged(qt, slicer):
    button = qt.QPushButton()
    button.name = "applyButton"
    assert button.objectName == "applyButton"
    assert button.className() == "QPushButton"
    assert qt.QApplication.applicationName() == slicer.app.applicationName == "Slicer"
    fired = []
    qt.QTimer.singleShot(0, lambda: fired.append(True))  # QTimer.singleShot is not a property
    slicer.app.processEvents()
    assert fired == [True]


def test_virtual_property_getters_do_not_recurse(qt):
    button = qt.QPushButton("A label that needs room")
    container = qt.QWidget()
    layout = qt.QVBoxLayout(container)
    layout.addWidget(button)
    container.show()  # the layout calls the C++ virtual sizeHint() through Shiboken
    assert isinstance(button.sizeHint, qt.QSize)
    assert button.sizeHint.width() > 50
    assert isinstance(container.minimumSizeHint, qt.QSize)
    container.close()


def test_string_signature_connect_and_disconnect(qt):
    button = qt.QPushButton()
    calls = []

    def onClicked():
        calls.append("clicked")

    assert button.connect("clicked(bool)", onClicked) is True
    button.click()
    assert calls == ["clicked"]
    assert button.disconnect("clicked(bool)", onClicked) is True
    button.click()
    assert calls == ["clicked"]
    with pytest.raises(AttributeError, match=r"no signal 'clicked\(int\)'.*clicked\(bool\)"):
        button.connect("clicked(int)", onClicked)
    with pytest.raises(AttributeError, match="no signal 'pressedTwice"):
        button.connect("pressedTwice()", onClicked)


def test_stand_in_signals_match_their_cpp_signatures(slicer, qt):
    combo = slicer.qMRMLNodeComboBox()
    combo.nodeTypes = ["vtkMRMLScalarVolumeNode"]
    nodes, flags = [], []
    combo.connect("currentNodeChanged(vtkMRMLNode*)", nodes.append)
    combo.connect("currentNodeChanged(bool)", flags.append)
    combo.setMRMLScene(slicer.mrmlScene)
    volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "first")
    assert combo.currentNode() is volume  # noneEnabled is False: the first node is selected
    assert nodes == [volume] and flags == [True]
    assert combo.currentNodeID == volume.GetID()
    slicer.mrmlScene.RemoveNode(volume)
    assert combo.currentNode() is None and nodes[-1] is None and flags[-1] is False


# --- .ui loading and ctk ---------------------------------------------------------------------


def test_ui_loader_wires_connections_to_stand_ins(slicer, tmp_path):
    body = (
        '   <item><widget class="qMRMLNodeComboBox" name="volumeSelector">\n'
        '    <property name="nodeTypes"><stringlist><string>vtkMRMLScalarVolumeNode</string></stringlist></property>\n'
        '    <property name="noneEnabled"><bool>true</bool></property>\n'
        "   </widget></item>\n"
    )
    body += (
        '   <item><widget class="QCheckBox" name="enableBox"/></item>\n'
        '   <item><widget class="QPushButton" name="applyButton">'
        '<property name="enabled"><bool>false</bool></property></widget></item>\n'
    )
    connection = (
        "<connection><sender>Root</sender><signal>mrmlSceneChanged(vtkMRMLScene*)</signal>"
        "<receiver>volumeSelector</receiver><slot>setMRMLScene(vtkMRMLScene*)</slot></connection>"
        "<connection><sender>enableBox</sender><signal>toggled(bool)</signal>"
        "<receiver>applyButton</receiver><slot>setEnabled(bool)</slot></connection>"
    )
    widget = slicer.util.loadUI(str(_write_ui(tmp_path, body, "qMRMLWidget", connection)))
    ui = slicer.util.childWidgetVariables(widget)
    ui.enableBox.checked = True  # a Qt-to-Qt connection of the .ui is wired too
    assert ui.applyButton.enabled is True
    assert ui.volumeSelector.noneEnabled is True
    assert ui.volumeSelector.mrmlScene() is None
    widget.setMRMLScene(slicer.mrmlScene)
    assert ui.volumeSelector.mrmlScene() is slicer.mrmlScene
    volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "listed")
    assert ui.volumeSelector.nodeCount() == 1
    assert ui.volumeSelector.currentNode() is None  # "None" stays selected
    ui.volumeSelector.setCurrentNode(volume)
    assert ui.volumeSelector.currentNodeID == volume.GetID()


def test_ui_loader_rejects_unknown_classes_and_reports_ignored_properties(slicer, tmp_path):
    unknown = '   <item><widget class="ctkDICOMBrowser" name="browser"/></item>\n'
    with pytest.raises(RuntimeError, match="ctkDICOMBrowser"):
        slicer.util.loadUI(str(_write_ui(tmp_path, unknown)))
    ignored = (
        '   <item><widget class="ctkCollapsibleButton" name="section">\n'
        '    <property name="contentsFrameShadow"><enum>QFrame::Raised</enum></property>\n'
        "   </widget></item>\n"
    )
    with pytest.warns(UserWarning, match="ignores .ui property 'contentsFrameShadow'"):
        slicer.util.loadUI(str(_write_ui(tmp_path, ignored)))


def test_collapsible_button_hides_and_shows_its_children(slicer, qt, qtbot, tmp_path):
    body = (
        '   <item><widget class="ctkCollapsibleButton" name="openSection">\n'
        '    <property name="text"><string>Open</string></property>\n'
        '    <layout class="QVBoxLayout" name="openLayout"><item><widget class="QLabel" name="openLabel"/></item></layout>\n'
        "   </widget></item>\n"
        '   <item><widget class="ctkCollapsibleButton" name="closedSection">\n'
        '    <property name="collapsed"><bool>true</bool></property>\n'
        '    <layout class="QVBoxLayout" name="closedLayout"><item><widget class="QLabel" name="closedLabel"/></item></layout>\n'
        "   </widget></item>\n"
    )
    widget = slicer.util.loadUI(str(_write_ui(tmp_path, body)))
    qtbot.addWidget(widget)
    ui = slicer.util.childWidgetVariables(widget)
    widget.show()
    assert ui.openLabel.visible is True
    assert ui.closedLabel.visible is False  # collapsed in the .ui before the label was added

    collapsedSignals = []
    ui.openSection.connect("contentsCollapsed(bool)", collapsedSignals.append)
    expandedHeight = ui.openSection.sizeHint.height()
    ui.openSection.collapsed = True
    assert ui.openLabel.visible is False and ui.openSection.checked is False
    assert ui.openSection.sizeHint.height() < expandedHeight

    below_header = qt.QPoint(20, ui.closedSection.height - 2)
    qtbot.mouseClick(ui.closedSection, qt.Qt.MouseButton.LeftButton, pos=below_header)
    assert ui.closedSection.collapsed is True  # only the header is a button
    qtbot.mouseClick(ui.closedSection, qt.Qt.MouseButton.LeftButton, pos=qt.QPoint(20, 5))
    assert ui.closedSection.collapsed is False and ui.closedLabel.visible is True
    ui.openSection.collapsed = False
    assert ui.openLabel.visible is True
    assert collapsedSignals == [True, False]


def test_ctk_stand_ins(slicer, qt, tmp_path):
    import ctk

    box = ctk.ctkCollapsibleGroupBox()
    label = qt.QLabel(box)
    box.show()
    box.collapsed = True
    assert label.visible is False and label.isEnabled()
    box.collapsed = False
    assert label.visible is True
    box.close()

    pathEdit = ctk.ctkPathLineEdit()
    paths, valid = [], []
    pathEdit.connect("currentPathChanged(QString)", paths.append)
    pathEdit.connect("validInputChanged(bool)", valid.append)
    pathEdit.currentPath = str(tmp_path)
    assert pathEdit.currentPath == str(tmp_path) and paths == [str(tmp_path)] and valid == [True]

    slider = ctk.ctkSliderWidget()
    values = []
    slider.connect("valueChanged(double)", values.append)
    slider.minimum, slider.maximum, slider.singleStep = -100.0, 500.0, 0.5
    slider.value = 42.5
    assert slider.value == 42.5 and values[-1] == 42.5

    combo = ctk.ctkCheckableComboBox()
    combo.addItems(["CT", "MR", "SEG"])
    assert combo.noneChecked()
    combo.setCheckState(combo.model().index(1, 0), qt.Qt.CheckState.Checked)
    assert [index.row() for index in combo.checkedIndexes()] == [1]
    assert not combo.allChecked()

    box = ctk.ctkMessageBox()
    box.dontShowAgain = True
    assert box.dontShowAgain is True


def test_subject_hierarchy_tree_view_shows_the_real_hierarchy(slicer):
    view = slicer.qMRMLSubjectHierarchyTreeView()
    view.setMRMLScene(slicer.mrmlScene)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Anonymous^Tree")
    study = sh.CreateStudyItem(patient, "CT study")
    model = view.model()
    assert model.index(0, 0).data() == "Anonymous^Tree"
    assert model.index(0, 0, model.index(0, 0)).data() == "CT study"
    changed = []
    view.connect("currentItemChanged(vtkIdType)", changed.append)
    view.setCurrentItem(study)
    assert view.currentItem() == study and changed == [study]


# --- slicer.util in testing mode ---------------------------------------------------------------


def test_message_displays_log_and_return_without_blocking(slicer, caplog):
    start = time.monotonic()
    with caplog.at_level(logging.INFO):
        assert slicer.util.errorDisplay("harness error") is None
        assert slicer.util.infoDisplay("harness info") is None
        assert slicer.util.warningDisplay("harness warning") is None
        # The real slicer.util returns testingReturnValue=True and compares it with
        # qt.QMessageBox.Yes, which is False in PythonQt too: in testing mode a confirmation
        # reads as "No". DICOMPlus code must not depend on a testing-mode "Yes".
        assert slicer.util.confirmYesNoDisplay("harness question?") is False
        assert slicer.util.confirmOkCancelDisplay("harness question?") is False
    assert time.monotonic() - start < 2.0
    assert ("root", logging.ERROR, "harness error") in caplog.record_tuples
    assert ("root", logging.WARNING, "harness warning") in caplog.record_tuples


def test_progress_dialog_and_try_with_error_display(slicer):
    progress = slicer.util.createProgressDialog(maximum=10, value=3, labelText="Importing")
    assert (progress.value, progress.maximum, progress.labelText) == (3, 10, "Importing")
    assert progress.wasCanceled is False
    progress.value = 10
    progress.close()
    with pytest.raises(ValueError, match="boom"), slicer.util.tryWithErrorDisplay("failed"):
        raise ValueError("boom")


def test_pip_ensure_checks_and_never_installs(slicer, monkeypatch):
    import slicer.packaging

    assert slicer.packaging.pip_ensure("pydicom>=2", requester="DICOMPlus") is None
    assert slicer.packaging.pip_check(["numpy", "pydicom>=2"])
    with pytest.raises(RuntimeError, match=r"dicomplus-no-such-package.*never run pip"):
        slicer.packaging.pip_ensure(["dicomplus-no-such-package>=1"], requester="DICOMPlus")
    with pytest.raises(RuntimeError, match="pydicom>=999"):
        slicer.packaging.pip_ensure("pydicom>=999")
    with pytest.raises(RuntimeError, match="disabled"):
        slicer.util.pip_install("pydicom")  # delegates to slicer.packaging.pip_install
    calls = []
    monkeypatch.setattr(slicer.packaging, "pip_ensure", lambda *args, **kwargs: calls.append(args))
    slicer.packaging.pip_ensure("dicomplus-no-such-package")
    assert calls == [("dicomplus-no-such-package",)]


def test_stubs_are_where_the_plugin_put_them(slicer):
    import ctk
    import qt

    assert os.path.dirname(qt.__file__) == str(STUBS_DIR)
    assert os.path.dirname(ctk.__file__) == str(STUBS_DIR)
    assert sys.modules["slicer.ScriptedLoadableModule"].__file__.startswith(str(STUBS_DIR))
    assert not hasattr(slicer, "qt")  # stub imports stay out of the slicer namespace


def test_scripted_module_base_classes(slicer):
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

    class ProbeLogic(ScriptedLoadableModuleLogic):
        pass

    logic = ProbeLogic()
    assert logic.moduleName == "Probe"
    singleton = logic.getParameterNode()
    assert singleton.GetSingletonTag() == "Probe" and logic.getParameterNode() is singleton
    logic.isSingletonParameterNode = False
    assert logic.getParameterNode() is singleton  # the first node of the module is reused
    assert logic.getAllParameterNodes() == [singleton]


def test_i18n_is_the_identity(slicer):
    from slicer.i18n import getContext, tr, translate

    assert tr("Load {count} series") == "Load {count} series"
    assert translate("qSlicerAbstractCoreModule", "Informatics") == "Informatics"
    assert getContext(str(REPO_ROOT / "DICOMPlus" / "DICOMPlus.py")) == "DICOMPlus"
