"""The slicer-testing stubs as pytest fixtures: real MRML (slicer-core), real Qt (PySide6).

Importing this plugin only sets the environment and sys.path; Qt and slicer are imported by the
fixtures, so tests that use neither pay nothing. It must be imported before anything imports
``slicer`` (Testing/conftest.py lists it in ``pytest_plugins``):

* ``QT_QPA_PLATFORM=offscreen`` (no display, deterministic screenshots) and
  ``PYTEST_QT_API=pyside6`` are set before any Qt import;
* ``Testing/slicer_stubs`` is put first on sys.path, so ``import qt``, ``import ctk`` and the
  ``slicer/`` namespace additions (``slicer.app``, ``slicer.mrmlScene``...) are the stubs.

Fixtures: ``slicer_app`` (session), ``qapp`` (pytest-qt's, made to be ``slicer.app``),
``clean_scene``, ``dicomplus_module``, ``screenshot``, ``pythonqt_gil`` and ``latency_probe``.
Functions for code outside fixtures: ``load_module(module_dir=None)``, ``unload_module(name)``,
``screenshot(widget, name)``, ``fit_panel(widget, width, height)``, ``wait_until(condition,
timeout)`` and ``idle(ms)``.

The PythonQt GIL mode (Testing/slicer_stubs/pythonqt_gil.py). In Slicer the main thread keeps
the GIL while the Qt event loop idles, so Python worker threads starve unless Python runs on the
main thread; PySide6 releases it, so by default these tests cannot see that. Under the mode the
main thread keeps the GIL wherever a test or the module idles: ``slicer.app.processEvents()``,
``qtbot.wait``/``waitUntil``/``waitSignal`` and ``wait_until``/``idle``. Turn it on for one test
with the ``pythonqt_gil`` fixture, or for the whole run with ``DICOMPLUS_PYTHONQT_GIL=1``::

    DICOMPLUS_PYTHONQT_GIL=1 python -m pytest Testing/test_module_database.py

In the mode ``qtbot.waitUntil`` and ``wait_until`` check their condition every 200 ms instead of
10 ms: each check is Python on the main thread and hands workers a slice (up to 5 ms), so a
tighter poll would feed the threads the mode is meant to starve. The ``latency_probe`` fixture
(a 20 ms QTimer with a Python slot that keeps the worst gap between ticks; ``probe.start()``,
``probe.stop()``, ``probe.worst_ms``) measures how responsive the GUI stays while work runs.
Anything else that waits inside a PySide call (``QThread.msleep``, a dialog's ``exec()`` called
from Python) still releases the GIL: see pythonqt_gil.py for what stays less strict than Slicer.
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


def fit_panel(widget, width: int, height: int | None = None) -> tuple[int, int]:
    """Size a module panel (a QWidget, or a ScriptedLoadableModuleWidget) as Slicer's module
    panel does and return its size: the panel sits in a scroll area that gives it the viewport's
    size (``width`` by ``height``; height None: its size hint, all of it shown), or its minimum
    where that is larger (the panel then scrolls; it is never squeezed below its minimum).

    A plain ``resize`` does not always hold: below the panel's minimum its layout grows it back
    once it is shown, and right after a section was folded the layout still holds the larger
    minimum it had (the export test asked for 900 and got 968): a test would say a size that it,
    and its screenshot, do not have. This shows the panel, lets the layout catch up, and asserts
    its size is the one the scroll area gives."""
    slicer = import_slicer()
    import qt

    qwidget = widget if isinstance(widget, qt.QWidget) else widget.parent
    asked = (width, qwidget.sizeHint.height() if height is None else height)
    qwidget.resize(*asked)
    if not qwidget.isVisible():
        qwidget.show()
    slicer.app.processEvents()
    hint, kept = qwidget.minimumSizeHint, qwidget.minimumSize  # the layout's, or set by the panel
    expected = (max(asked[0], hint.width(), kept.width()), max(asked[1], hint.height(), kept.height()))
    qwidget.resize(*expected)
    slicer.app.processEvents()
    assert (qwidget.width, qwidget.height) == expected, (qwidget.width, qwidget.height, asked, expected)
    return expected


def engine_panel(dicomplus_module, qtbot, database, nodes, *, network_open: bool = False):
    """The module's panel on a logic of ``database`` and ``nodes``, its engine up (a ping
    answered) so that a test's first figure or click does not pay its start; ``network_open``:
    the Network section unfolded. The caller cleans it up (``widget.cleanup()``)."""
    widget = dicomplus_module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    widget.setLogic(dicomplus_module.DICOMPlusLogic(databasePath=database, nodesPath=nodes))
    if network_open:
        widget.ui.networkCollapsibleButton.collapsed = False
    widget.logic.engine.call("ping")
    return widget


@pytest.fixture
def listener_panel(dicomplus_module, pythonqt_gil, tmp_path, qtbot):
    """The panel in the PythonQt GIL mode on a database and nodes of the test's own, its engine
    up and the Network section open: what the listener's Start and Stop tests click."""
    widget = engine_panel(
        dicomplus_module,
        qtbot,
        tmp_path / "db" / "dicomplus.sqlite",
        tmp_path / "nodes.json",
        network_open=True,
    )
    yield widget
    widget.cleanup()


def single_shot(seconds: float, callback):
    """A started single-shot QTimer that calls ``callback`` in ``seconds`` (keep the timer and
    ``stop()`` it afterwards): what a user does while the main thread runs something, if the
    event loop turns meanwhile."""
    import_slicer()
    import qt

    timer = qt.QTimer()
    timer.setSingleShot(True)
    timer.setInterval(int(seconds * 1000))
    timer.connect("timeout()", callback)
    timer.start()
    return timer


def idle(ms: float) -> None:
    """Let the Qt event loop idle for ``ms`` milliseconds, as Slicer's main thread does (the GIL
    stays with the main thread while the PythonQt GIL mode is on)."""
    import_slicer()
    import pythonqt_gil

    pythonqt_gil.idle(ms)


def wait_until(condition, timeout: float = 5.0, interval: float | None = None) -> None:
    """Idle the event loop until ``condition()`` is true (or None, for an ``assert`` function);
    ``TimeoutError`` after ``timeout`` seconds. See the module docstring for the check interval."""
    import_slicer()
    import pythonqt_gil

    pythonqt_gil.wait_until(condition, timeout, interval)


def _install_pytest_qt_hooks() -> None:
    """Make pytest-qt's waits keep the GIL while the mode is on (no change otherwise).

    ``qtbot.wait`` and ``waitSignal`` run a QEventLoop through ``qt_api.exec``; ``waitUntil``
    polls every 10 ms, replaced by :func:`wait_until`'s 200 ms in the mode.
    """
    try:
        from pytestqt import exceptions, qt_compat, qtbot
    except ImportError:  # no pytest-qt: nothing of it to adapt
        return

    originalExec = qt_compat._QtApi.exec
    originalWaitUntil = qtbot.QtBot.waitUntil

    def exec_(self, obj, *args, **kwargs):
        import pythonqt_gil

        if pythonqt_gil.enabled() and type(obj).__name__ == "QEventLoop":
            return pythonqt_gil.exec_event_loop(obj, *args)
        return originalExec(self, obj, *args, **kwargs)

    def waitUntil(self, callback, *, timeout=5000):
        __tracebackhide__ = True
        import pythonqt_gil

        if not pythonqt_gil.enabled():
            return originalWaitUntil(self, callback, timeout=timeout)

        def condition():
            result = callback()
            if result not in (None, True, False):
                raise ValueError(f"waitUntil() callback must return None, True or False, returned {result!r}")
            return result

        try:
            pythonqt_gil.wait_until(condition, timeout / 1000)
        except TimeoutError as error:
            raise exceptions.TimeoutError(f"waitUntil timed out in {timeout} milliseconds") from error

    qt_compat._QtApi.exec = exec_
    qtbot.QtBot.waitUntil = waitUntil


_install_pytest_qt_hooks()


@pytest.fixture
def pythonqt_gil(slicer_app):
    """The PythonQt GIL mode, on for this test (and restored after); yields the
    ``pythonqt_gil`` module (``idle``, ``wait_until``, ``LatencyProbe``, ``enable``)."""
    import pythonqt_gil as mode

    previous = mode.enable(True)
    try:
        yield mode
    finally:
        mode.enable(previous)


@pytest.fixture
def latency_probe(slicer_app):
    """A :class:`pythonqt_gil.LatencyProbe` (20 ms), not started; stopped at teardown."""
    import pythonqt_gil as mode

    probe = mode.LatencyProbe()
    yield probe
    probe.stop()


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
