"""The tier's venv is a stock Slicer 5.12.3's Python, and nothing more than its stand-ins need."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from stock_support import NOT_IN_STOCK_SLICER, REPO_ROOT, STOCK_DIR, provides_library

CONSTRAINTS = STOCK_DIR / "slicer-5.12.3.txt"
# What stands in for Slicer itself (its MRML, Qt, the launcher's test runner), with the
# packages they depend on; anything else installed is a leak.
STAND_INS = ("slicer-core", "vtk", "PySide6-Essentials", "pytest", "pytest-qt")


def pins() -> dict[str, str]:
    found = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[canonicalize_name(name)] = version
    return found


def installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}


def dependencies_of(names) -> set[str]:
    """``names`` and everything they require (markers evaluated, extras not followed)."""
    environment = default_environment()
    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({**environment, "extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def test_python_is_slicers_minor_version():
    assert sys.version_info[:2] == (3, 12), f"Slicer 5.12 runs CPython 3.12, this is {sys.version}"


def test_every_package_slicer_bundles_is_pinned_exactly():
    have = installed()
    wrong = {name: (have.get(name), version) for name, version in pins().items() if have.get(name) != version}
    assert not wrong, f"installed vs Slicer 5.12.3's pin: {wrong}"


def test_nothing_else_than_the_stand_ins_and_their_dependencies():
    allowed = set(pins()) | dependencies_of(STAND_INS)
    extra = sorted(set(installed()) - allowed)
    assert not extra, f"not in stock Slicer and not needed by a stand-in: {extra}"
    for name in NOT_IN_STOCK_SLICER:
        assert canonicalize_name(name) not in installed()
    assert not [n for n in installed() if n.startswith("pylibjpeg")]


def test_dicomplus_is_not_installed_nor_on_the_path():
    """Only the install tree (added by the module loader) may provide DICOMPlusLib."""
    assert [entry for entry in sys.path if provides_library(entry)] == []
    assert not [f for f in sys.meta_path if "editable" in (getattr(f, "__module__", "") or "")]
    assert "dicomplus" not in installed()


def test_the_wheelhouse_has_what_the_module_may_ask_for():
    """Every requirement of Resources/requirements-{network,decoders}.txt has a wheel for this
    Python in <venv>/wheelhouse, so the tier installs it for real without a network."""
    wheels = [p.name for p in (Path(sys.prefix) / "wheelhouse").glob("*.whl")]
    for purpose in ("network", "decoders"):
        path = REPO_ROOT / "Resources" / f"requirements-{purpose}.txt"
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith(("#", "-")):
                continue
            name = canonicalize_name(Requirement(line).name).replace("-", "_")
            matching = [w for w in wheels if re.match(rf"{re.escape(name)}-", w, re.IGNORECASE)]
            assert matching, f"{line} ({path.name}): no wheel in the wheelhouse"
