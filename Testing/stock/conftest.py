"""The stock-Slicer tier: DICOMPlus as a user of Slicer 5.12.3 gets it (issue 14, Build item 3).

Runs in .venv-stock (Testing/stock/setup_venv.sh, ``make test-stock``): exactly the Python
packages Slicer 5.12.3 bundles, plus slicer-core, PySide6 and the harness stubs standing in for
Slicer itself; nothing of DICOMPlus installed, no pynetdicom, python-gdcm or pylibjpeg. The
extension is built and installed with CMake (Testing/packaging/FakeSlicer) and the module is
loaded from the install tree with Slicer's sys.path rule (its folder appended).

Run it with ``--confcutdir=Testing/stock`` (the Makefile does) so that Testing/conftest.py, which
is the main suite's, is not loaded: nothing here may import what the stock venv lacks.

Fixtures: ``install_tree`` (session: the installed qt-scripted-modules folder),
``installed_module`` (the module loaded from it), ``user`` (answers Slicer's confirmation
dialogs), ``stock_packaging`` (the tier's ``slicer.packaging``: real pip from the wheelhouse),
plus the harness's (``slicer_app``, ``clean_scene``, ``qtbot``...) and ``shared_series``/``manifest``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_STOCK_DIR = Path(__file__).resolve().parent
# stock_support, stock_packaging and (one folder up) dicomplus_testing: the harness and data.
for _folder in (_STOCK_DIR.parent, _STOCK_DIR):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import stock_packaging as _stock_packaging  # noqa: E402
from stock_support import NOT_IN_STOCK_SLICER, REPO_ROOT, forget_path_entries, provides_library  # noqa: E402

# A stock Slicer has no DICOMPlusLib on sys.path: drop the working directory or PYTHONPATH entry
# that would provide it (python -m pytest from the repository root puts the root first).
sys.path[:] = [entry for entry in sys.path if not provides_library(entry)]

# The harness first: it sets Qt's platform and puts the slicer stubs on sys.path.
pytest_plugins = ["dicomplus_testing.harness", "dicomplus_testing.data", "dicomplus_testing.peers"]

from dicomplus_testing.packaging import PackagingError, check_packaging, cmake_executable  # noqa: E402
from dicomplus_testing.util import missing  # noqa: E402


def pytest_sessionstart(session):
    import importlib.metadata

    found = []
    for name in NOT_IN_STOCK_SLICER:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    if found:
        pytest.exit(
            f"the stock-Slicer tier runs in .venv-stock (make test-stock), not in {sys.prefix}, "
            f"which has {', '.join(found)}",
            returncode=4,
        )


@pytest.fixture(scope="session")
def install_tree(tmp_path_factory) -> Path:
    """The extension built and installed with CMake: ``<install>/lib/Slicer-X.Y/qt-scripted-modules``."""
    if cmake_executable() is None:
        missing("cmake")
    try:
        report = check_packaging(REPO_ROOT, tmp_path_factory.mktemp("stock-install"))
    except PackagingError as error:
        pytest.fail(f"the extension does not build and install:\n{error}")
    if report.problems:
        pytest.fail(report.format())
    return report.scripted_modules_dir


@pytest.fixture(scope="session")
def stock_packaging(slicer_app, tmp_path_factory):
    """``slicer.packaging`` of the tier (stock_packaging.py), in place of the harness stub."""
    import slicer

    wheelhouse = Path(sys.prefix) / "wheelhouse"
    stub = sys.modules["slicer.packaging"]
    _stock_packaging.configure(stub, wheelhouse, tmp_path_factory.mktemp("site-overlay"))
    sys.modules["slicer.packaging"] = _stock_packaging
    slicer.packaging = _stock_packaging
    try:
        yield _stock_packaging
    finally:
        _stock_packaging.release()
        sys.modules["slicer.packaging"] = stub
        slicer.packaging = stub


class User:
    """Answers ``slicer.util.confirmOkCancelDisplay`` as a user would; remembers what was asked.
    Declines unless told ``accept = True``."""

    def __init__(self):
        self.accept = False
        self.asked: list[str] = []

    def confirmOkCancelDisplay(self, text, windowTitle=None, parent=None, **kwargs):
        self.asked.append(text)
        return self.accept


@pytest.fixture
def user(stock_packaging, monkeypatch) -> User:
    import slicer.util

    answering = User()
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", answering.confirmOkCancelDisplay)
    return answering


@pytest.fixture
def installed_module(install_tree, clean_scene, user):
    """DICOMPlus.py loaded from the install tree, as Slicer loads an installed extension's module."""
    from dicomplus_testing import harness

    saved_path = list(sys.path)
    try:
        module = harness.load_module(install_tree)
        assert Path(module.__file__) == install_tree / "DICOMPlus.py"
        yield module
    finally:
        harness.unload_module()
        forget_path_entries(saved_path)
