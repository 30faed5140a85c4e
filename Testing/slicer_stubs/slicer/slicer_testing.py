"""The application-level part of ``slicer`` that slicer-core lacks: ``slicer.app``,
``slicer.mrmlScene``, ``slicer.modules`` and stand-ins for the qMRML widgets.

slicer-core's ``slicer/__init__.py`` imports every module of every ``slicer/`` folder on sys.path
and copies its public names onto ``slicer``; this folder has no ``__init__.py`` on purpose. So
every public name here becomes ``slicer.<name>``: imports are aliased with a leading underscore
to keep them out of the namespace.

What is real: the MRML scene (``slicer.vtkMRMLScene`` with a vtkDataIOManager and vtkCacheManager,
so ``ReadFromMRB`` works), the application logic (``vtkSlicerApplicationLogic``) with the
subject hierarchy module logic registered as "SubjectHierarchy", the Qt application and
QSettings (in a temporary INI file, never the user's), and the real ``slicer.util``.

What is NOT here: a main window, layout manager, views or rendering (``layoutManager()`` and
``mainWindow()`` return None), the IO manager (``slicer.util.loadVolume``/``saveNode`` fail:
use storage nodes), CLI modules, the Python console, the extensions manager, the DICOM database
(``slicer.dicomDatabase`` is None), the automatic subject hierarchy item for every new data node
(Slicer's Qt plugin logic does that; code must call ``sh.GetItemByDataNode(n) or
sh.CreateItem(parent, n)``), ``startupCompleted()`` is never emitted.

The qMRML widget stand-ins (qMRMLWidget, qMRMLNodeComboBox, qMRMLSubjectHierarchyTreeView) are
in slicer_qmrml.py beside this file.
"""

import atexit as _atexit
import importlib.util as _importlib_util
import os as _os
import shutil as _shutil
import sys as _sys
import tempfile as _tempfile
import types as _types

_os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import ctk as _ctk  # registers the ctk stand-ins for .ui loading
import pythonqt_gil as _pythonqt_gil
import qt as _qt
import slicer_core as _core

del _ctk

# ---------------------------------------------------------------------------------------------
# Application
# ---------------------------------------------------------------------------------------------


class qSlicerModuleManager(_qt.QObject):
    """Knows the modules loaded with ``slicer.loadScriptedModule``.

    Provides ``module(name)``, ``factoryManager()`` (returns itself) with
    ``loadedModuleNames()``, signals ``moduleLoaded(QString)`` and
    ``moduleAboutToBeUnloaded(QString)`` (emitted by ``slicer.unloadScriptedModule``).
    Does NOT do: module discovery, dependencies, C++ or CLI modules, ``setCurrentModule``.
    """

    moduleLoaded = _qt.Signal(str)
    moduleAboutToBeUnloaded = _qt.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._modules = {}

    def module(self, name):
        return self._modules.get(name)

    def factoryManager(self):
        return self

    def loadedModuleNames(self):
        return list(self._modules)


class qSlicerApplication(_qt.QApplication):
    """``slicer.app``: a QApplication in testing mode.

    Provides ``testingEnabled()`` (True), ``temporaryPath``, ``majorVersion``/``minorVersion``
    (5.12), ``applicationLogic()``,
    ``mrmlScene()``, ``moduleManager()``, ``settings()``/``userSettings()`` (a QSettings in the
    temporary INI), ``layoutManager()``/``mainWindow()``/``pythonConsole()`` (None), signals
    ``startupCompleted()`` and ``urlReceived(QString)``. ``processEvents()`` keeps the GIL while
    the PythonQt GIL mode is on (pythonqt_gil.py beside this folder), as PythonQt does.
    """

    startupCompleted = _qt.Signal()
    urlReceived = _qt.Signal(str)

    def __init__(self, argv, root):
        super().__init__(argv)
        self._root = root
        self._temporaryPath = _os.path.join(root, "temp")
        _os.makedirs(self._temporaryPath, exist_ok=True)
        self._testingEnabled = True
        self._moduleManager = qSlicerModuleManager(self)
        self._applicationLogic = None

    def _getTemporaryPath(self):
        return self._temporaryPath

    temporaryPath = _qt.Property(str, _getTemporaryPath)
    # The Slicer these stubs stand for (qSlicerCoreApplication's majorVersion/minorVersion).
    majorVersion = _qt.Property(int, lambda self: 5)
    minorVersion = _qt.Property(int, lambda self: 12)

    def processEvents(self, *args):
        if _pythonqt_gil.enabled():
            _pythonqt_gil.process_events(*args)
        else:
            _qt.QApplication.processEvents(*args)

    def testingEnabled(self):
        return self._testingEnabled

    def setTestingEnabled(self, enabled):
        self._testingEnabled = bool(enabled)

    def applicationLogic(self):
        return self._applicationLogic

    def mrmlScene(self):
        return self._applicationLogic.GetMRMLScene()

    def moduleManager(self):
        return self._moduleManager

    def settings(self):
        return _qt.QSettings()

    def userSettings(self):
        return _qt.QSettings()

    def layoutManager(self):
        return None

    def mainWindow(self):
        return None

    def pythonConsole(self):
        return None


def _create_application():
    existing = _qt.QApplication.instance()
    if existing is not None:
        if isinstance(existing, qSlicerApplication):
            return existing
        raise RuntimeError(
            f"a {type(existing).__name__} exists already: import slicer (the test stubs) before "
            "creating a QApplication, so that slicer.app is the application"
        )
    root = _tempfile.mkdtemp(prefix="slicer-testing-")
    _atexit.register(_shutil.rmtree, root, ignore_errors=True)
    # Never read or write the user's Slicer settings.
    _qt.QSettings.setDefaultFormat(_qt.QSettings.Format.IniFormat)
    _qt.QSettings.setPath(
        _qt.QSettings.Format.IniFormat, _qt.QSettings.Scope.UserScope, _os.path.join(root, "user")
    )
    _qt.QSettings.setPath(
        _qt.QSettings.Format.IniFormat, _qt.QSettings.Scope.SystemScope, _os.path.join(root, "system")
    )
    _qt.QCoreApplication.setOrganizationName("slicer-testing")
    _qt.QCoreApplication.setOrganizationDomain("slicer.org")
    _qt.QCoreApplication.setApplicationName("Slicer")
    application = qSlicerApplication([_sys.argv[0] if _sys.argv else "slicer-testing"], root)

    scene = _core.vtkMRMLScene()
    cacheManager = _core.vtkCacheManager()
    cacheManager.SetRemoteCacheDirectory(_os.path.join(root, "cache"))
    dataIOManager = _core.vtkDataIOManager()
    dataIOManager.SetCacheManager(cacheManager)
    scene.SetDataIOManager(dataIOManager)
    scene.SetCacheManager(cacheManager)

    applicationLogic = _core.vtkSlicerApplicationLogic()
    applicationLogic.SetMRMLScene(scene)
    subjectHierarchyLogic = _core.vtkSlicerSubjectHierarchyModuleLogic()
    subjectHierarchyLogic.SetMRMLScene(scene)
    applicationLogic.SetModuleLogic("SubjectHierarchy", subjectHierarchyLogic)
    application._applicationLogic = applicationLogic
    application._subjectHierarchyLogic = subjectHierarchyLogic  # keep the Python reference
    return application


app = _create_application()
mrmlScene = app.mrmlScene()
dicomDatabase = None
modules = _types.SimpleNamespace()

# ---------------------------------------------------------------------------------------------
# Scripted module loading
# ---------------------------------------------------------------------------------------------

_TEXT = str
_TEXT_LIST = "list of str"


class qSlicerScriptedLoadableModule:
    """``slicer.modules.<name>``: the object that ``ScriptedLoadableModule.__init__`` describes.

    Attributes are typed like the Qt properties of the C++ class: ``title``, ``helpText``,
    ``acknowledgementText`` (str), ``categories``, ``contributors``, ``dependencies``
    (list/tuple of str; read back as list), ``hidden`` (bool), ``index`` (int), ``icon``
    (qt.QIcon); ``name`` and ``path`` are read-only. A wrong type raises TypeError.
    Does NOT do: ``widgetRepresentation()``, ``logic()``, ``createNewWidgetRepresentation()``.
    """

    _TYPES = {
        "title": _TEXT,
        "helpText": _TEXT,
        "acknowledgementText": _TEXT,
        "categories": _TEXT_LIST,
        "contributors": _TEXT_LIST,
        "dependencies": _TEXT_LIST,
        "hidden": bool,
        "index": int,
        "icon": _qt.QIcon,
    }

    def __init__(self, name, path):
        values = {"title": "", "helpText": "", "acknowledgementText": "", "hidden": False, "index": -1}
        values.update(categories=[], contributors=[], dependencies=[], icon=_qt.QIcon())
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "path", path)

    def __getattr__(self, attribute):
        values = object.__getattribute__(self, "_values")
        if attribute in values:
            value = values[attribute]
            return list(value) if isinstance(value, list) else value
        raise AttributeError(f"module '{self.name}' has no attribute '{attribute}'")

    def __setattr__(self, attribute, value):
        expected = self._TYPES.get(attribute)
        if expected is None:
            raise AttributeError(f"cannot set '{attribute}' on module '{self.name}'")
        if expected == _TEXT_LIST:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"{attribute} must be a list of str, got {value!r}")
            value = list(value)
        elif not isinstance(value, expected):
            raise TypeError(f"{attribute} must be {expected.__name__}, got {value!r}")
        self._values[attribute] = value

    def __repr__(self):
        return f"<qSlicerScriptedLoadableModule {self.name} from {self.path}>"


def loadScriptedModule(path):
    """Load a scripted module file as Slicer does and return ``(pythonModule, moduleName)``.

    Imports ``<Name>.py`` as module ``<Name>`` (replacing one of that name from another path),
    appends its folder to sys.path if absent (as Slicer does when it registers a module file), instantiates ``<Name>(parent)``,
    and registers ``slicer.modules.<name lowercase>`` and ``slicer.modules.<Name>Instance``.
    """
    path = _os.path.abspath(_os.fspath(path))
    directory, filename = _os.path.split(path)
    name = _os.path.splitext(filename)[0]
    # Slicer's rule (qSlicerCorePythonManager::appendPythonPath, at registration, before the file
    # runs): the module's folder is APPENDED, so anything earlier on sys.path wins.
    if directory not in _sys.path:
        _sys.path.append(directory)
    spec = _importlib_util.spec_from_file_location(name, path)
    if spec is None:
        raise ImportError(f"cannot load a scripted module from {path}")
    pythonModule = _importlib_util.module_from_spec(spec)
    _sys.modules[name] = pythonModule
    try:
        spec.loader.exec_module(pythonModule)
        moduleClass = getattr(pythonModule, name, None)
        if moduleClass is None:
            raise ImportError(f"{path} defines no class {name}")
        parent = qSlicerScriptedLoadableModule(name, path)
        instance = moduleClass(parent)
    except BaseException:
        _sys.modules.pop(name, None)
        raise
    setattr(modules, name.lower(), parent)
    setattr(modules, name + "Instance", instance)
    app.moduleManager()._modules[name] = parent
    app.moduleManager().moduleLoaded.emit(name)
    return pythonModule, name


def unloadScriptedModule(name):
    """Undo ``loadScriptedModule``: emit ``moduleAboutToBeUnloaded(name)`` (widgets run
    ``cleanup()``), then forget the module. Unknown names are ignored."""
    manager = app.moduleManager()
    if manager.module(name) is None:
        return
    manager.moduleAboutToBeUnloaded.emit(name)
    del manager._modules[name]
    for attribute in (name.lower(), name + "Instance"):
        if hasattr(modules, attribute):
            delattr(modules, attribute)
    selfTests = getattr(_sys.modules["slicer"], "selfTests", None)
    if selfTests is not None:
        selfTests.pop(name, None)
    _sys.modules.pop(name, None)
