"""The Slicer extension packages every file the module needs, and the installed tree imports.

Builds and installs the extension with real CMake against Testing/packaging/FakeSlicer (a
stand-in for Slicer's CMake package with the same slicerMacroBuildScriptedModule arguments), then
compares the source tree with what the CMake lists name and what was installed. A file that works
from the source tree but is not listed in DICOMPlusLib/CMakeLists.txt or DICOMPlus/CMakeLists.txt
fails here, with the lines to add.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dicomplus_testing.packaging import (
    LIBRARY_DIR,
    MODULE_DIR,
    REPO_ROOT,
    REQUIREMENTS,
    PackagingError,
    PackagingReport,
    check_packaging,
    cmake_executable,
    copy_source_tree,
    expected_files,
)
from dicomplus_testing.util import missing

# The module's own files, listed in DICOMPlus/CMakeLists.txt.
MODULE_FILES = (
    "DICOMPlus/DICOMPlus.py",
    "DICOMPlus/Resources/UI/DICOMPlus.ui",
    "DICOMPlus/Resources/Icons/DICOMPlus.png",
)


def _require_toolchain() -> None:
    # project(DICOMPlus) enables C and CXX, as Slicer's extension template does: CMake needs a
    # compiler even though nothing is compiled.
    if cmake_executable() is None:
        missing("cmake")
    for language, variable, names in (
        ("C", "CC", ("cc", "gcc", "clang")),
        ("C++", "CXX", ("c++", "g++", "clang++")),
    ):
        candidates = (os.environ.get(variable, ""), *names)
        if not any(name and shutil.which(name) for name in candidates):
            missing(f"a {language} compiler (Debian: build-essential), which project() needs")


def _copy_of_the_tree(destination: Path) -> Path:
    """A copy of the extension's source tree, with empty stand-ins for any module file not
    written yet (the tests using it are about the library list, not the module)."""
    source = copy_source_tree(destination)
    for name in MODULE_FILES:
        path = source / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    return source


def _as_paths(messages: list[str]) -> set[str]:
    return {message.split(":", 1)[0] for message in messages}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> PackagingReport:
    """The repository's extension, configured, built and installed once for this module."""
    _require_toolchain()
    try:
        return check_packaging(REPO_ROOT, tmp_path_factory.mktemp("packaging"))
    except PackagingError as error:
        pytest.fail(f"the extension does not build with FakeSlicer:\n{error}")


def test_every_file_is_listed_and_installed(packaged: PackagingReport):
    if packaged.problems:
        pytest.fail(packaged.format(), pytrace=False)
    # The walk found the files it is meant to guard (not an empty tree by accident).
    expected = packaged.expected
    assert f"{LIBRARY_DIR}/__init__.py" in expected
    assert all(name in expected for name in MODULE_FILES)
    for requirements in REQUIREMENTS:
        assert expected[requirements] == requirements


def test_modules_are_built_the_slicer_way(packaged: PackagingReport):
    modules = packaged.manifest.modules
    # The library is a package in its own subdirectory, never scanned for modules (DICOMLib).
    assert modules[LIBRARY_DIR]["subdir"] == LIBRARY_DIR
    assert "WITH_SUBDIR" in modules[LIBRARY_DIR]["options"]
    # The module is top level, with Slicer's generic module test and its own Test class.
    assert modules[MODULE_DIR]["subdir"] == ""
    assert "WITH_GENERIC_TESTS" in modules[MODULE_DIR]["options"]
    assert "py_nomainwindow_qSlicerDICOMPlusModuleGenericTest" in packaged.manifest.tests
    assert "py_DICOMPlus" in packaged.manifest.tests
    # Only module files sit at the top of qt-scripted-modules: Slicer loads every .py there.
    top_level_py = sorted(p.name for p in packaged.scripted_modules_dir.glob("*.py"))
    assert top_level_py == ["DICOMPlus.py"]


def test_extension_description_is_installed(packaged: PackagingReport):
    (description,) = packaged.install_dir.glob("share/Slicer-*/DICOMPlus.s4ext")
    fields = {}
    for line in description.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            fields[key] = value
    assert fields["category"] == "Informatics"
    assert fields["depends"] == "NA"
    for key in ("homepage", "contributors", "iconurl", "description", "screenshoturls"):
        assert fields[key], key


def test_check_reports_an_unlisted_library_file(tmp_path: Path):
    """The check itself: a module added to DICOMPlusLib but not to its CMake list is reported."""
    _require_toolchain()
    source = _copy_of_the_tree(tmp_path / "src")
    (source / LIBRARY_DIR / "extra_module.py").write_text('"""Not in the CMake list."""\n')

    report = check_packaging(source, tmp_path / "work")

    assert "DICOMPlusLib/extra_module.py" in _as_paths(report.not_listed)
    assert "DICOMPlusLib/extra_module.py" in _as_paths(report.not_installed)
    assert "extra_module.py" in report.format()


def test_listing_a_file_that_does_not_exist_fails_configure(tmp_path: Path):
    """Like Slicer's macro: a stale entry in a CMake list stops the build at configure time."""
    _require_toolchain()
    source = _copy_of_the_tree(tmp_path / "src")
    cmake_lists = source / LIBRARY_DIR / "CMakeLists.txt"
    text = cmake_lists.read_text(encoding="utf-8")
    assert "  __init__.py\n" in text
    cmake_lists.write_text(text.replace("  __init__.py\n", "  __init__.py\n  removed_module.py\n"))

    with pytest.raises(PackagingError, match=r"given nonexistent\s+file or directory\s+'removed_module.py'"):
        check_packaging(source, tmp_path / "work")


def _requirement_lines(name: str) -> dict[str, str]:
    lines = (REPO_ROOT / "Resources" / name).read_text(encoding="utf-8").splitlines()
    return {
        _requirement_name(line): line.replace(" ", "")
        for line in (raw.strip() for raw in lines)
        if line and not line.startswith(("#", "-"))
    }


def test_requirements_match_pyproject():
    """Resources/requirements-network.txt and -decoders.txt hold, between them, exactly the
    dependencies Slicer does not bundle (pyjpegls is bundled from 5.12 on, and still the JPEG-LS
    decoder), each in one file."""
    tomllib = pytest.importorskip("tomllib")
    bundled_by_slicer = {"pydicom", "numpy", "simpleitk", "highdicom", "requests"}
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {_requirement_name(r): r.replace(" ", "") for r in pyproject["project"]["dependencies"]}
    network = _requirement_lines("requirements-network.txt")
    decoders = _requirement_lines("requirements-decoders.txt")
    assert "pynetdicom" in network and "python-gdcm" in decoders
    assert not set(network) & set(decoders), "a requirement is in both files"
    command_line_only = {"rich", "argcomplete"}  # imported by DICOMPlusLib/cli only
    assert set(network) | set(decoders) == set(declared) - bundled_by_slicer - command_line_only
    for name, requirement in {**network, **decoders}.items():
        assert requirement == declared[name], f"{name}: Resources/ and pyproject.toml disagree"
    # The PostgreSQL back end is an optional extra (dicomplus[postgresql]), installed in Slicer
    # before the first use of a postgresql:// URL.
    postgresql = _requirement_lines("requirements-postgresql.txt")
    extra = pyproject["project"]["optional-dependencies"]["postgresql"]
    assert postgresql == {_requirement_name(r): r.replace(" ", "") for r in extra}


def _requirement_name(requirement: str) -> str:
    name = requirement
    for separator in "<>=!~;[ ":
        name = name.split(separator, 1)[0]
    return name.strip().lower().replace("_", "-")


def test_installed_library_imports_from_the_install_tree(packaged: PackagingReport, tmp_path: Path):
    """Every DICOMPlusLib module imports from qt-scripted-modules, not from the source tree.

    A plain interpreter stands in for Slicer's: PYTHONPATH is the installed qt-scripted-modules
    directory (Slicer puts it on sys.path), the working directory is elsewhere, and the editable
    install's finder (which maps DICOMPlusLib to the source tree) is removed first.
    """
    installed = packaged.scripted_modules_dir
    modules = sorted(
        _dotted(relative)
        for relative in expected_files(REPO_ROOT)
        if relative.startswith(LIBRARY_DIR + "/") and relative.endswith(".py")
    )
    code = (
        "import importlib, json, sys, traceback\n"
        "sys.meta_path[:] = [f for f in sys.meta_path\n"
        "                    if not getattr(f, '__module__', '').startswith('__editable__')]\n"
        "result = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        result[name] = {'file': importlib.import_module(name).__file__}\n"
        "    except BaseException:\n"
        "        result[name] = {'error': traceback.format_exc()}\n"
        "print(json.dumps(result))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=str(installed), PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
    run = subprocess.run(
        [sys.executable, "-c", code, json.dumps(modules)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    failures = {name: r["error"] for name, r in result.items() if "error" in r}
    assert not failures, "\n".join(f"{name}:\n{error}" for name, error in failures.items())
    outside = {
        name: r["file"]
        for name, r in result.items()
        if not Path(r["file"]).resolve().is_relative_to(installed.resolve())
    }
    assert not outside, f"imported from outside the install tree {installed}: {outside}"


def _dotted(relative: str) -> str:
    parts = relative.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _provides_library(path_entry: str) -> bool:
    return (Path(path_entry or os.getcwd()) / LIBRARY_DIR / "__init__.py").is_file()


def _module_of(finder: object) -> str:
    return getattr(finder, "__module__", "") or ""


def _library_modules() -> dict[str, object]:
    return {n: m for n, m in sys.modules.items() if n == LIBRARY_DIR or n.startswith(LIBRARY_DIR + ".")}


def test_installed_module_loads_in_the_harness(packaged: PackagingReport, request, monkeypatch):
    """The installed DICOMPlus.py loads as Slicer would load it, finds its .ui, icon and
    requirement files beside it, and imports the installed DICOMPlusLib (the source tree's copy
    is taken out of sys.modules for the test and put back after)."""
    harness = importlib.import_module("dicomplus_testing.harness")
    if not all(hasattr(harness, name) for name in ("load_module", "unload_module")):
        pytest.skip("the slicer-testing harness (dicomplus_testing.harness.load_module) is not there yet")
    try:
        request.getfixturevalue("clean_scene")
        qtbot = request.getfixturevalue("qtbot")
    except pytest.FixtureLookupError as error:
        pytest.skip(f"the slicer-testing harness fixture is missing: {error}")
    installed = packaged.scripted_modules_dir
    # Slicer appends the module folder to sys.path, so only a Slicer without DICOMPlusLib
    # elsewhere shows that the installed tree is enough: take out the source tree (PYTHONPATH,
    # the working directory) and the editable install's finder for the test.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not _provides_library(p)])
    monkeypatch.setattr(
        sys, "meta_path", [f for f in sys.meta_path if not _module_of(f).startswith("__editable__")]
    )
    source_library = _library_modules()
    for name in source_library:
        del sys.modules[name]
    try:
        module = harness.load_module(installed)
        assert Path(module.__file__) == installed / "DICOMPlus.py"
        library = _library_modules()
        assert LIBRARY_DIR in library
        outside = {
            name: getattr(m, "__file__", None)
            for name, m in library.items()
            if not Path(getattr(m, "__file__", "") or "/").resolve().is_relative_to(installed.resolve())
        }
        assert not outside, f"imported from outside {installed}: {outside}"

        widget = module.DICOMPlusWidget()
        qtbot.addWidget(widget.parent)
        resources = ["UI/DICOMPlus.ui", "Icons/DICOMPlus.png"]
        resources += [Path(r).name for r in REQUIREMENTS]
        for resource in resources:
            path = Path(widget.resourcePath(resource))
            assert path == installed / "Resources" / resource
            assert path.is_file(), path
    finally:
        harness.unload_module()
        for name in _library_modules():
            del sys.modules[name]
        sys.modules.update(source_library)
