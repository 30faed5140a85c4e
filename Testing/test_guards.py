"""Architecture guards.

(a) DICOMPlusLib is plain Python: importing it, or any of its modules, pulls in none of slicer,
    qt, ctk, vtk or PySide6 (each module is imported in a fresh interpreter).
(b) The Slicer module (DICOMPlus/) uses PythonQt idioms only: no PySide6 import, and no getter
    call on a Qt property (``self.ui.searchBox.text()`` works in PySide6 but raises in Slicer,
    where ``text`` is the property's value). The harness's qt shim raises at run time too, but
    only on lines a test executes; this static check covers every line.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from dicomplus_testing.util import REPO_ROOT

FORBIDDEN_TOP_LEVEL = {"slicer", "slicer_core", "qt", "ctk", "vtk", "vtkmodules", "PySide6", "shiboken6"}

_CHECK = (
    "import importlib, json, sys\n"
    "importlib.import_module(sys.argv[1])\n"
    "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[2])))))\n"
)


def _library_modules() -> list[str]:
    names = []
    for path in sorted((REPO_ROOT / "DICOMPlusLib").rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        if parts[-1] == "__main__" or "__pycache__" in parts:
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def forbidden_imports(module: str, extra_path: str | None = None) -> list[str]:
    """Top-level forbidden packages present after importing ``module`` in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if extra_path:
        env["PYTHONPATH"] = extra_path
    result = subprocess.run(
        [sys.executable, "-c", _CHECK, module, json.dumps(sorted(FORBIDDEN_TOP_LEVEL))],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"importing {module} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_library_modules_import_no_slicer_qt_or_vtk():
    modules = _library_modules()
    assert "DICOMPlusLib" in modules and len(modules) > 3
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        found = dict(zip(modules, pool.map(forbidden_imports, modules), strict=True))
    offenders = {module: bad for module, bad in found.items() if bad}
    assert not offenders, f"DICOMPlusLib must stay plain Python; these imports pull in: {offenders}"


def test_import_guard_catches_an_offender(tmp_path):
    (tmp_path / "leaky_module.py").write_text("import vtk\n")
    assert "vtk" in forbidden_imports("leaky_module", extra_path=str(tmp_path))


# --- (b) PythonQt idioms in the Slicer module ---------------------------------------------------


def _qt_property_names() -> frozenset[str]:
    """Every Q_PROPERTY name of the Qt widget classes and of the ctk stand-ins."""
    from PySide6 import QtCore, QtGui, QtWidgets

    names = set()
    for module in (QtCore, QtGui, QtWidgets):
        for attribute in dir(module):
            cls = getattr(module, attribute)
            if isinstance(cls, type) and issubclass(cls, QtCore.QObject):
                meta = cls.staticMetaObject
                names.update(meta.property(i).name() for i in range(meta.propertyCount()))
    # ctk/qMRML properties that DICOMPlus may use (the stand-ins declare them as Q_PROPERTY too).
    names.update({"collapsed", "currentPath", "nodeTypes", "noneEnabled", "currentNodeID", "value"})
    return frozenset(names)


PROPERTY_NAMES = _qt_property_names()

# Receivers that are widgets: anything reached through ``ui`` (``self.ui.x``), ``slicer.app``,
# or an attribute named like a widget (``self.progressBar``, ``self.applyButton``).
WIDGET_SUFFIXES = (
    "Button", "Box", "Edit", "Label", "Table", "Tree", "View", "Bar", "Widget", "Selector",
    "Slider", "Dialog", "List", "Menu", "Action", "Frame", "Group", "Tab", "Area", "Panel",
)  # fmt: skip
FORBIDDEN_IMPORTS = ("PySide6", "PySide2", "PyQt5", "PyQt6", "shiboken6", "__feature__")


def _attribute_chain(node: ast.expr) -> list[str] | None:
    """``self.ui.searchBox`` -> ["self", "ui", "searchBox"]; None if the chain contains a call."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _is_widget(chain: list[str]) -> bool:
    return "ui" in chain or chain[:2] == ["slicer", "app"] or chain[-1].endswith(WIDGET_SUFFIXES)


def pythonqt_violations(source: str, filename: str = "<string>") -> list[str]:
    """Lines of ``source`` that would break under PythonQt (see module docstring)."""
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            modules = []
        for module in modules:
            if module.split(".")[0] in FORBIDDEN_IMPORTS:
                problems.append(f"{filename}:{node.lineno}: imports {module}; use qt/ctk/slicer")
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.args or node.keywords or node.func.attr not in PROPERTY_NAMES:
            continue
        chain = _attribute_chain(node.func.value)
        if chain and _is_widget(chain):
            where = ".".join(chain)
            problems.append(
                f"{filename}:{node.lineno}: {where}.{node.func.attr}() calls a Qt property; "
                f"in Slicer read it as {where}.{node.func.attr}"
            )
    return problems


def test_module_code_uses_pythonqt_idioms():
    files = sorted((REPO_ROOT / "DICOMPlus").rglob("*.py"))
    assert REPO_ROOT / "DICOMPlus" / "DICOMPlus.py" in files
    problems = [p for path in files for p in pythonqt_violations(path.read_text(), str(path))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "line",
    [
        "name = self.ui.searchBox.text()",
        "if self.ui.loadButton.enabled(): pass",
        "n = self.ui.browserTable.rowCount()",
        "i = ui.seriesComboBox.currentIndex()",
        "t = self.ui.modalityBox.currentText()",
        "v = self.progressBar.value()",
        "c = self.anonymizeCheckBox.checked()",
        "w = self.ui.activityCollapsibleButton.visible()",
        "x = self.ui.localDatabaseCollapsibleButton.collapsed()",
        "n = slicer.app.applicationName()",
        "from PySide6 import QtWidgets",
        "import PySide6.QtCore",
        "from __feature__ import true_property",
    ],
)
def test_idiom_guard_catches_bad_lines(line):
    assert pythonqt_violations(line), line


@pytest.mark.parametrize(
    "line",
    [
        "name = self.ui.searchBox.text",
        "self.ui.loadButton.enabled = True",
        "enabled = self.ui.loadButton.isEnabled()",
        "label = self.ui.browserTable.topLevelItem(0).text(0)",
        "value = item.text()",
        "layout = self.parent.layout()",
        "self.ui.searchBox.connect('textChanged(QString)', self.onSearch)",
        "import qt, ctk, slicer",
    ],
)
def test_idiom_guard_accepts_pythonqt_lines(line):
    assert pythonqt_violations(line) == []


def test_guard_finds_the_module(tmp_path):
    bad = tmp_path / "Bad.py"
    bad.write_text("class W:\n    def f(self):\n        return self.ui.searchBox.text()\n")
    assert pythonqt_violations(bad.read_text(), str(bad)) == [
        f"{bad}:3: self.ui.searchBox.text() calls a Qt property; in Slicer read it as self.ui.searchBox.text"
    ]


def test_forbidden_names_cover_the_brief():
    assert {"text", "value", "checked", "enabled", "visible", "currentIndex", "currentText"} <= PROPERTY_NAMES
    assert {"rowCount", "columnCount", "count", "maximum", "toolTip", "windowTitle"} <= PROPERTY_NAMES
