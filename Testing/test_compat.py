"""DICOMPlus on a Slicer older than 5.12 says so once, clearly (issue 14, Target).

DICOMPlus/DICOMPlusWidgets/compat.py is loaded by its path here, as the module loads it before
anything an old Slicer could not import.
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest

from dicomplus_testing.harness import MODULE_DIR

COMPAT_PATH = MODULE_DIR / "DICOMPlusWidgets" / "compat.py"


@pytest.fixture
def compat():
    spec = importlib.util.spec_from_file_location("dicomplus_compat_under_test", COMPAT_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def app(major, minor):
    """What PythonQt shows of qSlicerCoreApplication's Q_PROPERTYs: plain attributes."""
    return SimpleNamespace(majorVersion=major, minorVersion=minor)


@pytest.mark.parametrize("version", [(5, 12), (5, 13), (6, 0)])
def test_supported_slicer_gets_no_message(compat, version):
    shown = []
    assert compat.unsupportedSlicerMessage(app(*version)) is None
    assert compat.checkSlicerVersion(app(*version), display=shown.append) is True
    assert shown == []


@pytest.mark.parametrize("version", [(5, 10), (5, 8), (4, 11)])
def test_older_slicer_gets_one_clear_message(compat, version):
    shown = []
    for _ in range(3):  # module, widget, reload: the user sees it once
        assert compat.checkSlicerVersion(app(*version), display=shown.append) is False
    (message,) = shown
    assert message.startswith("DICOMPlus needs Slicer 5.12 or later")
    assert f"this is Slicer {version[0]}.{version[1]}" in message


def test_a_slicer_that_does_not_say_its_version_is_not_trusted(compat):
    message = compat.unsupportedSlicerMessage(SimpleNamespace())
    assert message.startswith("DICOMPlus needs Slicer 5.12 or later") and "unknown version" in message


def test_reads_the_running_application(compat, slicer_app):
    """slicer.app's properties, read the way the module reads them (default app)."""
    assert compat.slicerVersion() == (slicer_app.majorVersion, slicer_app.minorVersion) == (5, 12)
    assert compat.checkSlicerVersion(display=pytest.fail) is True


def test_loads_without_slicer_or_the_library(tmp_path):
    """Standard library only at import time: an old Slicer can load it before anything else."""
    import subprocess
    import sys

    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('compat', {str(COMPAT_PATH)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "('slicer', 'qt', 'ctk', 'vtk', 'DICOMPlusLib', 'DICOMPlusWidgets', 'pydicom'))\n"
        "assert not bad, bad\n"
    )
    run = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
