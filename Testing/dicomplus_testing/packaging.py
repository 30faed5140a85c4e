"""Check that the Slicer extension packages every file the module needs.

Slicer's ``slicerMacroBuildScriptedModule`` copies and installs only the files its ``SCRIPTS``
and ``RESOURCES`` lists name. A library module that is imported from the source tree but missing
from ``DICOMPlusLib/CMakeLists.txt`` works in development and fails with ``ModuleNotFoundError``
in an installed extension. :func:`check_packaging` builds and installs the extension with real
CMake against ``Testing/packaging/FakeSlicer`` (a stand-in for Slicer's CMake package that records
what each macro call was given) and compares three sets:

* the files the source tree says should ship (:func:`expected_files`),
* the files named in the CMake lists (the manifest the fake macro writes),
* the files present, byte for byte, in the installed ``qt-scripted-modules`` tree.

Standard library only, so it also runs as a script:
``python Testing/dicomplus_testing/packaging.py [--cmake-lists | --update-cmake-lists]``.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_SLICER_DIR = REPO_ROOT / "Testing" / "packaging" / "FakeSlicer"
MANIFEST_NAME = "FakeSlicerManifest.tsv"

MODULE_DIR = "DICOMPlus"
LIBRARY_DIR = "DICOMPlusLib"
# Installed by an explicit install(FILES) in DICOMPlus/CMakeLists.txt, not by the macro: what
# the module asks slicer.packaging.pip_ensure for, one file per purpose.
REQUIREMENTS = (
    "Resources/requirements-network.txt",
    "Resources/requirements-decoders.txt",
    "Resources/requirements-postgresql.txt",
)
# What a copy of the tree needs for CMake (see copy_source_tree).
SOURCE_ENTRIES = ("CMakeLists.txt", MODULE_DIR, LIBRARY_DIR, "Resources", "README.md")

_IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_IGNORED_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}


class PackagingError(RuntimeError):
    """CMake failed to configure, build or install the extension; the message has its output."""


@dataclass(frozen=True)
class ManifestEntry:
    """One file named in a ``slicerMacroBuildScriptedModule`` call."""

    module: str
    kind: str  # "SCRIPTS" or "RESOURCES"
    source: Path
    destination: str  # relative to qt-scripted-modules, as the macro computed it


@dataclass
class Manifest:
    scripted_modules_dir: str  # Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR
    modules: dict[str, dict[str, str]] = field(default_factory=dict)
    entries: list[ManifestEntry] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)


@dataclass
class PackagingReport:
    source_dir: Path
    build_dir: Path
    install_dir: Path
    manifest: Manifest
    expected: dict[str, str]  # source path (relative, posix) -> destination in qt-scripted-modules
    not_listed: list[str] = field(default_factory=list)
    wrong_destination: list[str] = field(default_factory=list)
    not_installed: list[str] = field(default_factory=list)

    @property
    def scripted_modules_dir(self) -> Path:
        """The installed ``lib/Slicer-X.Y/qt-scripted-modules`` directory."""
        return self.install_dir / self.manifest.scripted_modules_dir

    @property
    def problems(self) -> list[str]:
        return self.not_listed + self.wrong_destination + self.not_installed

    def format(self) -> str:
        if not self.problems:
            return f"packaging OK: {len(self.expected)} files listed and installed"
        # A file that is not listed is not installed either: say it once.
        unlisted = set(_paths(self.not_listed))
        shown = self.not_listed + self.wrong_destination
        shown += [p for p in self.not_installed if p.split(":", 1)[0] not in unlisted]
        lines = [f"{len(shown)} file(s) not packaged right from {self.source_dir}:"]
        lines += [f"  - {p}" for p in shown]
        missing_lib = [path for path in _paths(self.not_listed) if path.startswith(LIBRARY_DIR + "/")]
        if missing_lib:
            lines.append(f"Add to MODULE_PYTHON_SCRIPTS/RESOURCES in {LIBRARY_DIR}/CMakeLists.txt:")
            lines += [f"  {path.removeprefix(LIBRARY_DIR + '/')}" for path in missing_lib]
            lines.append(
                "(for .py files: python Testing/dicomplus_testing/packaging.py --update-cmake-lists)"
            )
        return "\n".join(lines)


def _paths(messages: list[str]) -> list[str]:
    return [message.split(":", 1)[0] for message in messages]


def _shipped(path: Path) -> bool:
    return (
        not (_IGNORED_DIRS & set(path.parts))
        and path.suffix not in _IGNORED_SUFFIXES
        and not path.name.startswith(".")
        and path.name != "CMakeLists.txt"
    )


def expected_files(source_dir: Path) -> dict[str, str]:
    """Files the extension must ship, as {source path relative to the tree: installed path
    relative to qt-scripted-modules}.

    * ``DICOMPlus/**/*.py`` (the module and its helper packages) and everything under
      ``DICOMPlus/Resources/`` -> beside the module, with their relative paths;
    * everything under ``DICOMPlusLib/`` (every ``.py``, and any data file a module reads) ->
      ``DICOMPlusLib/`` (the library is installed WITH_SUBDIR, like Slicer's DICOMLib);
    * ``Resources/requirements*.txt`` (:data:`REQUIREMENTS`) -> the same path, where the
      module's ``resourcePath("requirements-network.txt")`` looks.
    """
    source_dir = Path(source_dir)
    expected: dict[str, str] = {}
    module = source_dir / MODULE_DIR
    for path in sorted(module.rglob("*.py")):  # the module and its helper packages
        if "__pycache__" in path.parts:
            continue
        expected[path.relative_to(source_dir).as_posix()] = path.relative_to(module).as_posix()
    for root in (module / "Resources", source_dir / LIBRARY_DIR):
        for path in sorted(root.rglob("*")):
            if path.is_file() and _shipped(path.relative_to(source_dir)):
                relative = path.relative_to(source_dir).as_posix()
                destination = relative.removeprefix(MODULE_DIR + "/")
                expected[relative] = destination
    for requirements in REQUIREMENTS:
        expected[requirements] = requirements
    return expected


def library_scripts(source_dir: Path = REPO_ROOT) -> list[str]:
    """``DICOMPlusLib/**/*.py`` relative to ``DICOMPlusLib/``, in the order the CMake list uses."""
    library = Path(source_dir) / LIBRARY_DIR
    paths = [
        p.relative_to(library).as_posix() for p in library.rglob("*.py") if _shipped(p.relative_to(library))
    ]
    # Package by package, each package's __init__.py first.
    return sorted(paths, key=lambda p: (p.rpartition("/")[0], not p.endswith("__init__.py"), p))


def update_library_cmake_lists(source_dir: Path = REPO_ROOT) -> bool:
    """Rewrite the MODULE_PYTHON_SCRIPTS list in DICOMPlusLib/CMakeLists.txt to every
    ``DICOMPlusLib/**/*.py`` now in the tree; True if the file changed."""
    path = Path(source_dir) / LIBRARY_DIR / "CMakeLists.txt"
    text = path.read_text(encoding="utf-8")
    start_marker, end_marker = "set(MODULE_PYTHON_SCRIPTS\n", "\n  )\n"
    start = text.index(start_marker) + len(start_marker)
    end = text.index(end_marker, start)
    listing = "\n".join(f"  {script}" for script in library_scripts(source_dir))
    updated = text[:start] + listing + text[end:]
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return updated != text


def read_manifest(build_dir: Path) -> Manifest:
    path = Path(build_dir) / MANIFEST_NAME
    manifest: Manifest | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if fields[0] == "LAYOUT":
            manifest = Manifest(scripted_modules_dir=fields[2])
        elif manifest is None:
            raise PackagingError(f"{path}: no LAYOUT line before {line!r}")
        elif fields[0] == "MODULE":
            name, source, subdir, options = fields[1:5]
            manifest.modules[name] = {"source_dir": source, "subdir": subdir, "options": options}
        elif fields[0] in ("SCRIPTS", "RESOURCES"):
            manifest.entries.append(
                ManifestEntry(
                    module=fields[1],
                    kind=fields[0],
                    source=Path(fields[2]),
                    destination=os.path.normpath(fields[3]).replace(os.sep, "/"),
                )
            )
        elif fields[0] == "TEST":
            manifest.tests.append(fields[2])
    if manifest is None:
        raise PackagingError(f"{path} is empty")
    return manifest


def _run(command: list[str], what: str, cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackagingError(
            f"{what} failed (exit {result.returncode}): {' '.join(command)}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )


def cmake_executable() -> str | None:
    return shutil.which("cmake")


def build_and_install(
    source_dir: Path, work_dir: Path, fake_slicer_dir: Path = FAKE_SLICER_DIR
) -> tuple[Path, Path]:
    """Configure, build and install the extension in ``work_dir``; return (build, install) dirs.

    Raises PackagingError with CMake's output when a step fails (for example when a CMake list
    names a file that does not exist: the macro stops at configure time, as Slicer's does).
    """
    cmake = cmake_executable()
    if cmake is None:
        raise PackagingError("cmake is not on PATH")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    build_dir, install_dir = work_dir / "build", work_dir / "install"
    _run(
        [
            cmake,
            "-S",
            str(source_dir),
            "-B",
            str(build_dir),
            f"-DSlicer_DIR={fake_slicer_dir}",
            f"-DCMAKE_INSTALL_PREFIX={install_dir}",
            "-DCMAKE_BUILD_TYPE=Release",
        ],
        "configure",
        work_dir,
    )
    _run([cmake, "--build", str(build_dir)], "build", work_dir)
    _run([cmake, "--install", str(build_dir)], "install", work_dir)
    return build_dir, install_dir


def compare(source_dir: Path, build_dir: Path, install_dir: Path) -> PackagingReport:
    """Compare the expected files with the manifest in ``build_dir`` and the ``install_dir`` tree."""
    source_dir = Path(source_dir).resolve()
    manifest = read_manifest(build_dir)
    report = PackagingReport(
        source_dir=source_dir,
        build_dir=Path(build_dir),
        install_dir=Path(install_dir),
        manifest=manifest,
        expected=expected_files(source_dir),
    )
    listed: dict[str, ManifestEntry] = {}
    for entry in manifest.entries:
        try:
            listed[entry.source.resolve().relative_to(source_dir).as_posix()] = entry
        except ValueError:
            continue  # a file from outside the tree; not ours to judge
    for relative, destination in report.expected.items():
        entry = listed.get(relative)
        if relative not in REQUIREMENTS:
            if entry is None:
                cmake_file = (LIBRARY_DIR if relative.startswith(LIBRARY_DIR + "/") else MODULE_DIR) + (
                    "/CMakeLists.txt"
                )
                report.not_listed.append(f"{relative}: not listed in {cmake_file}")
            elif entry.destination != destination:
                report.wrong_destination.append(
                    f"{relative}: listed in {entry.module} {entry.kind}, installed as "
                    f"qt-scripted-modules/{entry.destination}, expected qt-scripted-modules/{destination}"
                )
        installed = report.scripted_modules_dir / destination
        if not installed.is_file():
            report.not_installed.append(f"{relative}: not installed as {installed}")
        elif not filecmp.cmp(source_dir / relative, installed, shallow=False):
            report.not_installed.append(f"{relative}: installed copy {installed} differs")
    return report


def check_packaging(
    source_dir: Path, work_dir: Path, fake_slicer_dir: Path = FAKE_SLICER_DIR
) -> PackagingReport:
    """Build and install the extension in ``source_dir`` and report what is not packaged."""
    build_dir, install_dir = build_and_install(source_dir, work_dir, fake_slicer_dir)
    return compare(source_dir, build_dir, install_dir)


def copy_source_tree(destination: Path, source_dir: Path = REPO_ROOT) -> Path:
    """Copy what CMake reads (not .git, .venv, build outputs) to ``destination``."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns(*_IGNORED_DIRS, *(f"*{s}" for s in _IGNORED_SUFFIXES))
    for name in SOURCE_ENTRIES:
        path = Path(source_dir) / name
        if path.is_dir():
            shutil.copytree(path, destination / name, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, destination / name)
    return destination


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=REPO_ROOT, help="extension source tree")
    parser.add_argument("--work", type=Path, help="build/install directory (default: a temporary one)")
    parser.add_argument(
        "--cmake-lists",
        action="store_true",
        help=f"print the MODULE_PYTHON_SCRIPTS lines for {LIBRARY_DIR}/CMakeLists.txt and exit",
    )
    parser.add_argument(
        "--update-cmake-lists",
        action="store_true",
        help=f"rewrite MODULE_PYTHON_SCRIPTS in {LIBRARY_DIR}/CMakeLists.txt from the tree and exit",
    )
    args = parser.parse_args(argv)
    if args.update_cmake_lists:
        changed = update_library_cmake_lists(args.source)
        print(f"{LIBRARY_DIR}/CMakeLists.txt {'updated' if changed else 'already up to date'}")
        return 0
    if args.cmake_lists:
        print("\n".join(f"  {path}" for path in library_scripts(args.source)))
        return 0
    if args.work is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="dicomplus-packaging-") as work:
            report = check_packaging(args.source, Path(work))
            print(report.format())
    else:
        report = check_packaging(args.source, args.work)
        print(report.format())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
