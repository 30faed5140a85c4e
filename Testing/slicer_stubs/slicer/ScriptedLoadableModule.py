"""``slicer.ScriptedLoadableModule`` for tests: the four base classes of a scripted module.

Written from the documented behaviour of Slicer's Base/Python/slicer/ScriptedLoadableModule.py:
the same names, constructor signatures and naming conventions (``<Name>``, ``<Name>Widget``,
``<Name>Logic``, ``<Name>Test``), the singleton parameter node, and ``parent=None`` creating a
shown top-level ``qMRMLWidget``.

Does NOT do: the developer "Reload & Test" section (``setupDeveloperSection`` does nothing, as
in Slicer when developer mode is off), ``onReload``/``onEditSource``,
``getDefaultModuleDocumentationLink`` and ``ScriptedLoadableModuleTest.takeScreenshot`` (they
need the main window and documentation URLs).

Imports are aliased with a leading underscore because slicer-core copies every public name of
this file onto ``slicer``; ``from slicer.ScriptedLoadableModule import *`` gives ``__all__``.
"""

import importlib as _importlib
import logging as _logging
import os as _os
import unittest as _unittest

import qt as _qt
import slicer as _slicer

__all__ = [
    "ScriptedLoadableModule",
    "ScriptedLoadableModuleLogic",
    "ScriptedLoadableModuleTest",
    "ScriptedLoadableModuleWidget",
]


class ScriptedLoadableModule:
    """Describes a module: sets defaults on ``parent`` (``slicer.modules.<name>``), the icon
    from ``Resources/Icons/<Name>.svg|png``, and registers ``slicer.selfTests[<Name>]``."""

    def __init__(self, parent):
        super().__init__()
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""
        moduleDir = _os.path.dirname(parent.path)
        for extension in (".svg", ".png"):
            iconPath = _os.path.join(moduleDir, "Resources", "Icons", self.moduleName + extension)
            if _os.path.isfile(iconPath):
                parent.icon = _qt.QIcon(iconPath)
                break
        if not hasattr(_slicer, "selfTests"):
            _slicer.selfTests = {}
        _slicer.selfTests[self.moduleName] = self.runTest

    def resourcePath(self, filename):
        """Absolute path of ``filename`` in the module's ``Resources`` folder."""
        return _os.path.join(_os.path.dirname(self.parent.path), "Resources", filename)

    def runTest(self, msec=100, **kwargs):
        """Run ``<Name>Test().runTest(**kwargs)`` from the module's Python file."""
        module = _importlib.import_module(self.__module__)
        className = self.moduleName + "Test"
        testCaseClass = getattr(module, className, None)
        if testCaseClass is None:
            raise AssertionError(f"Test case class not found: {self.__module__}.{className}")
        testCase = testCaseClass()
        testCase.messageDelay = msec
        testCase.runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    """The module panel. With ``parent=None`` a top-level ``slicer.qMRMLWidget`` with a
    QVBoxLayout is created, given ``slicer.mrmlScene``, ``setup()`` is called and it is shown;
    the caller owns ``self.parent``. ``cleanup()`` runs when the module is unloaded."""

    def __init__(self, parent=None):
        super().__init__()
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Widget"):
            self.moduleName = self.moduleName[: -len("Widget")]
        self.developerMode = _slicer.util.settingsValue(
            "Developer/DeveloperMode", False, converter=_slicer.util.toBool
        )
        if not parent:
            self.parent = _slicer.qMRMLWidget()
            self.parent.setLayout(_qt.QVBoxLayout())
            self.parent.setMRMLScene(_slicer.mrmlScene)
        else:
            self.parent = parent
        self.layout = self.parent.layout()
        if not parent:
            self.setup()
            self.parent.show()
        _slicer.app.moduleManager().connect(
            "moduleAboutToBeUnloaded(QString)", self._onModuleAboutToBeUnloaded
        )

    def resourcePath(self, filename):
        """Absolute path of ``filename`` in the module's ``Resources`` folder."""
        modulePath = _slicer.util.modulePath(self.moduleName)
        return _os.path.join(_os.path.dirname(modulePath), "Resources", filename)

    def cleanup(self):
        """Override to release resources (observers, timers) when the module is unloaded."""

    def _onModuleAboutToBeUnloaded(self, moduleName):
        if moduleName == self.moduleName:
            self.cleanup()
            _slicer.app.moduleManager().disconnect(
                "moduleAboutToBeUnloaded(QString)", self._onModuleAboutToBeUnloaded
            )

    def setupDeveloperSection(self):
        """The Reload & Test section is not provided by the test stubs."""

    def setup(self):
        self.setupDeveloperSection()


class ScriptedLoadableModuleLogic:
    """Module logic; ``getParameterNode()`` returns the module's singleton
    ``vtkMRMLScriptedModuleNode`` in ``slicer.mrmlScene`` (created on first use)."""

    def __init__(self, parent=None):
        super().__init__()
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[: -len("Logic")]
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        scene = _slicer.mrmlScene
        if self.isSingletonParameterNode:
            node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node:
                if node.GetAttribute("ModuleName") != self.moduleName:
                    node.SetAttribute("ModuleName", self.moduleName)
                return node
        else:
            nodes = self.getAllParameterNodes()
            if nodes:
                return nodes[0]
        return scene.AddNode(self.createParameterNode())

    def getAllParameterNodes(self):
        scene = _slicer.mrmlScene
        count = scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode")
        nodes = (scene.GetNthNodeByClass(i, "vtkMRMLScriptedModuleNode") for i in range(count))
        return [n for n in nodes if n.GetAttribute("ModuleName") == self.moduleName]

    def createParameterNode(self):
        scene = _slicer.mrmlScene
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)  # the Python variable owns it now
        if self.isSingletonParameterNode:
            node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(scene.GenerateUniqueName(self.moduleName))
        return node


class ScriptedLoadableModuleTest(_unittest.TestCase):
    """Base of ``<Name>Test``; ``delayDisplay`` logs and processes events (below 400 ms the real
    ``slicer.util.delayDisplay`` opens no dialog)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.enableScreenshots = False
        self.screenshotScaleFactor = 1.0

    def delayDisplay(self, message, requestedDelay=None, msec=None):
        if hasattr(self, "messageDelay"):
            msec = self.messageDelay
        if msec is None:
            msec = requestedDelay
        if msec is None:
            msec = 100
        _slicer.util.delayDisplay(message, msec)

    def runTest(self):
        _logging.warning("No test is defined in " + self.__class__.__name__)
