"""DICOMPlus: a complete, fast and dependable DICOM workflow for 3D Slicer.

This file is the Slicer shell only: module description, the panel (Widget) and a thin Logic.
The engine (database, network, loading, export) is the plain-Python package DICOMPlusLib, which
never imports slicer, qt, ctk or vtk. Code here uses PythonQt idioms only (properties as
attributes, ``connect("signal(args)", slot)``) so it runs in Slicer and in the test harness
(Testing/slicer_stubs); Testing/test_guards.py checks that.
"""

import qt
import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin

import DICOMPlusLib

#
# DICOMPlus
#


class DICOMPlus(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DICOMPlus")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Informatics")]
        self.parent.dependencies = []
        self.parent.contributors = ["DICOMPlus developers"]
        self.parent.helpText = _(
            "Import, browse, query, retrieve, load and export DICOM data. "
            "DICOMPlus keeps its own local database, talks to PACS over DIMSE and DICOMweb, "
            "and reports what it could not load instead of failing silently."
        )
        self.parent.acknowledgementText = _(
            "DICOMPlus builds on pydicom, pynetdicom and SimpleITK, and on the DICOM module "
            "of 3D Slicer, whose behaviour it keeps where users rely on it."
        )


#
# DICOMPlusWidget
#


class DICOMPlusWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel, loaded from Resources/UI/DICOMPlus.ui."""

    def __init__(self, parent=None):
        # Set attributes before the base constructor: with parent=None it calls setup() itself.
        # VTKObservationMixin.__init__ runs from ScriptedLoadableModuleWidget's super().__init__();
        # calling it again here would forget the observers that setup() added.
        self.logic = None
        self.ui = None
        ScriptedLoadableModuleWidget.__init__(self, parent)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DICOMPlus.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = DICOMPlusLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        header = self.ui.browserTable.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, qt.QHeaderView.Stretch)
        for column in range(1, self.ui.browserTable.columnCount):
            header.setSectionResizeMode(column, qt.QHeaderView.ResizeToContents)
        self.ui.searchBox.connect("textChanged(QString)", self.onSearchTextChanged)
        self.ui.browserTable.connect("itemSelectionChanged()", self.updateButtonStates)

        self.ui.activityLabel.text = _("Idle (DICOMPlusLib {version})").format(
            version=self.logic.libraryVersion()
        )
        self.updateButtonStates()

    def cleanup(self):
        """Called when the module is unloaded or the application exits."""
        self.removeObservers()

    def onSceneEndClose(self, caller, event):
        self.updateButtonStates()

    def onSearchTextChanged(self, text):
        """Show only the top-level browser rows with ``text`` in any column of their subtree."""
        table = self.ui.browserTable
        needle = text.strip().lower()
        for row in range(table.topLevelItemCount):
            item = table.topLevelItem(row)
            item.setHidden(bool(needle) and not _subtreeContains(item, needle, table.columnCount))

    def updateButtonStates(self, *args):
        hasSelection = bool(self.ui.browserTable.selectedItems())
        self.ui.loadButton.enabled = hasSelection
        self.ui.deleteButton.enabled = hasSelection


def _subtreeContains(item, needle, columnCount):
    """True if ``needle`` (lower case) is in a column of ``item`` or of one of its descendants.

    ``item`` is a QTreeWidgetItem, not a QObject: its ``text(column)`` is a method.
    """
    if any(needle in item.text(column).lower() for column in range(columnCount)):
        return True
    return any(_subtreeContains(item.child(i), needle, columnCount) for i in range(item.childCount()))


#
# DICOMPlusLogic
#


class DICOMPlusLogic(ScriptedLoadableModuleLogic):
    """Slicer-side logic: the bridge from DICOMPlusLib to MRML, usable without the widget.

    Everything that does not need the scene belongs in DICOMPlusLib, not here.
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def libraryVersion(self):
        """Version of the DICOMPlusLib engine in use."""
        return DICOMPlusLib.__version__


#
# DICOMPlusTest
#


class DICOMPlusTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Reload and Test, or ctest) and under pytest (Testing/test_module_generic.py)."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_Logic()
        self.setUp()
        self.test_Widget()

    def test_Logic(self):
        self.delayDisplay("Logic")
        logic = DICOMPlusLogic()
        self.assertEqual(logic.libraryVersion(), DICOMPlusLib.__version__)
        parameterNode = logic.getParameterNode()
        self.assertEqual(parameterNode.GetAttribute("ModuleName"), "DICOMPlus")
        self.assertIs(logic.getParameterNode(), parameterNode)
        self.assertTrue(issubclass(DICOMPlusLib.DICOMPlusError, Exception))
        self.delayDisplay("Logic test passed")

    def test_Widget(self):
        self.delayDisplay("Widget")
        widget = DICOMPlusWidget()
        try:
            ui = widget.ui
            self.assertFalse(ui.loadButton.enabled)
            self.assertFalse(ui.deleteButton.enabled)
            patient = self._addBrowserRow(ui.browserTable, "Anonymous^Alpha", "CT chest")
            self._addBrowserRow(ui.browserTable, "Anonymous^Beta", "MR brain")
            patient.setSelected(True)
            self.assertTrue(ui.loadButton.enabled)
            ui.searchBox.text = "brain"
            self.assertTrue(patient.isHidden())
            ui.searchBox.text = ""
            self.assertFalse(patient.isHidden())
            self.assertIn(DICOMPlusLib.__version__, ui.activityLabel.text)
        finally:
            widget.cleanup()
            widget.parent.deleteLater()
        self.delayDisplay("Widget test passed")

    @staticmethod
    def _addBrowserRow(table, patientName, studyDescription):
        patient = qt.QTreeWidgetItem(table, [patientName, "", "", ""])
        qt.QTreeWidgetItem(patient, [studyDescription, "20240101", "CT", "3"])
        return patient
