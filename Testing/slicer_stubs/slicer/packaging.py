"""``slicer.packaging`` for tests: checks Python requirements, never installs anything.

Slicer's module (Base/Python/slicer/packaging.py) checks requirements against the installed
distributions and runs pip for missing ones. Here:

* ``load_requirements(path)`` and ``pip_check(requirements)`` behave like Slicer's (installed
  distribution version within the specifier; environment markers evaluated; extras are NOT
  followed).
* ``pip_ensure(...)`` (same signature) returns None when everything is installed and otherwise
  raises RuntimeError naming what is missing. Slicer in testing mode would log and return, and
  the module would fail later at its import; failing here says why.
* ``pip_install``/``pip_uninstall`` raise RuntimeError: tests must never change the venv.

All functions are looked up as module attributes (``slicer.packaging.pip_ensure``), so a test can
``monkeypatch.setattr(slicer.packaging, "pip_ensure", fake)``.
"""

import importlib.metadata as _metadata

from packaging.markers import default_environment as _default_environment
from packaging.requirements import InvalidRequirement as _InvalidRequirement
from packaging.requirements import Requirement as _Requirement


def load_requirements(path):
    """Requirements of a requirements.txt file (comments, blank lines and pip options skipped)."""
    requirements = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "-")):
                requirements.append(_Requirement(line))
    return requirements


def _to_requirements(requirements):
    if isinstance(requirements, _Requirement):
        return [requirements]
    if isinstance(requirements, str):
        try:
            return [_Requirement(requirements)]
        except _InvalidRequirement:
            return [_Requirement(r) for r in requirements.split()]
    if isinstance(requirements, (list, tuple)):
        return [r if isinstance(r, _Requirement) else _Requirement(r) for r in requirements]
    raise TypeError(f"Expected str, Requirement, or list, got {type(requirements).__name__}")


def _satisfied(requirement):
    if requirement.marker is not None and not requirement.marker.evaluate(_default_environment()):
        return True
    try:
        installed = _metadata.version(requirement.name)
    except _metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(installed, prereleases=True)


def pip_check(requirements):
    """True if every requirement is installed at an acceptable version."""
    return all(_satisfied(r) for r in _to_requirements(requirements))


def pip_ensure(
    requirements,
    constraints=None,
    skip_packages=None,
    prompt_install=True,
    prompt_restart=True,
    requester=None,
    skip_in_testing=True,
    show_progress=True,
):
    """Return None if the requirements are installed; else raise RuntimeError (never runs pip)."""
    missing = [r for r in _to_requirements(requirements) if not _satisfied(r)]
    if not missing:
        return None
    who = requester or "a module"
    raise RuntimeError(
        f"{who} needs {', '.join(str(r) for r in missing)}, which is not installed in the test "
        "environment. The slicer-testing stubs never run pip: add the package to the [test] "
        "extra in pyproject.toml and reinstall the venv."
    )


def pip_install(requirements, **kwargs):
    """Refuse: installing would change the test environment."""
    raise RuntimeError(
        f"slicer.packaging.pip_install({requirements!r}) is disabled in the slicer-testing stubs "
        "(it would run pip); monkeypatch it in a test that exercises installation"
    )


def pip_uninstall(requirements, **kwargs):
    """Refuse: uninstalling would change the test environment."""
    raise RuntimeError(
        f"slicer.packaging.pip_uninstall({requirements!r}) is disabled in the slicer-testing stubs "
        "(it would run pip); monkeypatch it in a test that exercises it"
    )
