"""The slicer-testing stubs as pytest fixtures: real MRML (slicer-core), real Qt (PySide6).

Importing this plugin only sets the environment and sys.path; Qt and slicer are imported by the
fixtures, so tests that use neither pay nothing. It must be imported before anything imports
``slicer`` (Testing/conftest.py lists it in ``pytest_plugins``):

* ``QT_QPA_PLATFORM=offscreen`` (no display, deterministic screenshots) and
  ``PYTEST_QT_API=pyside6`` are set before any Qt import;
* ``Testing/slicer_stubs`` is put first on sys.path, so ``import qt``, ``import ctk`` and the
  ``slicer/`` namespace additions (``slicer.app``, ``slicer.mrmlScene``...) are the stubs.

Fixtures: ``slicer_app`` (session), ``qapp`` (pytest-qt's, made to be ``slicer.app``),
``clean_scene``, ``dicomplus_module`` and ``screenshot``. Functions for code outside fixtures:
``load_module(module_dir=None)``, ``unload_module(name)`` and ``screenshot(widget, name)``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from dicomplus_testing.util import REPO_ROOT, output_dir

os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["PYTEST_QT_API"] = "pyside6"

STUBS_DIR = Path(__file__).resolve().parents[1] / "slicer_stubs"
MODULE_DIR = REPO_ROOT / "DICOMPlus"
MODULE_NAME = "DICOMPlus"

if str(STUBS_DIR) not in sys.path:
    sys.path.insert(0, str(STUBS_DIR))


def import_slicer():
    """``import slicer`` with the stubs, or a clear error if slicer was imported without them."""
    import slicer

    if not hasattr(slicer, "app"):
        raise RuntimeError(
            f"'slicer' was imported before {STUBS_DIR} was on sys.path, so slicer.app is missing: "
            "load dicomplus_testing.harness (Testing/conftest.py) before anything imports slicer"
        )
    return slicer


def load_module(module_dir: str | os.PathLike | None = None, name: str = MODULE_NAME):
    """Load ``<module_dir>/<name>.py`` as Slicer would and return the Python module.

    ``module_dir`` defaults to the source tree (DICOMPlus/); a packaging test passes the folder
    of an installed tree instead. The module is registered as ``slicer.modules.<name lowercase>``
    and its folder is appended to sys.path (as Slicer does when it registers a module file).
    """
    slicer = import_slicer()
    path = Path(module_dir if module_dir is not None else MODULE_DIR) / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no scripted module at {path}")
    pythonModule, _ = slicer.loadScriptedModule(path)
    return pythonModule


def unload_module(name: str = MODULE_NAME) -> None:
    """Emit ``moduleAboutToBeUnloaded`` (widgets run ``cleanup()``) and forget the module."""
    import_slicer().unloadScriptedModule(name)


def screenshot(widget, name: str) -> Path:
    """Save ``widget`` (a QWidget, or a ScriptedLoadableModuleWidget) as ``<output>/<name>.png``.

    The output folder is ``DICOMPLUS_TEST_OUTPUT`` (default Testing/output). The widget is shown
    and events are processed first, so layouts are done.
    """
    slicer = import_slicer()
    import qt

    qwidget = widget if isinstance(widget, qt.QWidget) else widget.parent
    if not qwidget.isVisible():
        qwidget.show()
    slicer.app.processEvents()
    path = output_dir() / f"{name}.png"
    if not qwidget.grab().save(str(path)):
        raise OSError(f"could not write {path}")
    return path


@pytest.fixture(scope="session")
def slicer_app():
    """``slicer.app``: the QApplication of the stubs, in testing mode."""
    return import_slicer().app


@pytest.fixture(scope="session")
def qapp(slicer_app):
    """pytest-qt's application fixture, overridden so that ``qtbot`` uses ``slicer.app``."""
    return slicer_app


@pytest.fixture
def clean_scene(slicer_app):
    """``slicer.mrmlScene``, cleared before and after the test (singleton nodes stay, as in Slicer)."""
    scene = import_slicer().mrmlScene
    scene.Clear(0)
    yield scene
    scene.Clear(0)


@pytest.fixture
def dicomplus_module(request, clean_scene):
    """The DICOMPlus Python module, loaded with ``slicer.loadScriptedModule``.

    Another module folder (an installed tree) can be given by indirect parametrization::

        @pytest.mark.parametrize("dicomplus_module", [installed_dir], indirect=True)

    At teardown the module is unloaded (widgets' ``cleanup()`` runs) and sys.path is restored.
    """
    saved_path = list(sys.path)
    module_dir = getattr(request, "param", None)
    try:
        yield load_module(module_dir)
    finally:
        unload_module(MODULE_NAME)
        sys.path[:] = saved_path


@pytest.fixture(name="screenshot")
def screenshot_fixture(slicer_app):
    """The ``screenshot(widget, name) -> Path`` helper."""
    return screenshot
