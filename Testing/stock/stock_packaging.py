"""``slicer.packaging`` of the stock-Slicer tier: Slicer 5.12's order of operations, real pip.

Slicer's ``Base/Python/slicer/packaging.py`` (5.12.3; ../shared/notes/slicer-runtime.md section 2)
checks each requirement against the installed distributions, asks the user, then runs
``PythonSlicer -m pip install`` in a subprocess. This module does the same with two differences,
both at the edge:

* the download: pip runs with ``--no-index --find-links <wheelhouse>``, the wheels that
  Testing/stock/setup_venv.sh downloaded for Resources/requirements-*.txt;
* the destination: ``--prefix <overlay>``, a throwaway folder, so the stock venv stays stock for
  the next run. pip resolves against the stock venv, so what is there is not installed again.
  As if it were Slicer's site-packages, the overlay is added to this process's sys.path with
  ``site.addsitedir`` and, for child processes (the engine runs Slicer's Python), named in a
  ``.pth`` file of the venv's site-packages for the session (:func:`configure`/:func:`release`).

Slicer's testing mode would skip ``pip_ensure`` (log and return None); the tier is a user's
Slicer, so it asks through ``slicer.util.confirmOkCancelDisplay``, which the tests answer.
``load_requirements`` and ``pip_check`` are the harness stub's. Every call is recorded in
``calls`` (requirement lines and requester) and every install in ``installs``.
"""

from __future__ import annotations

import importlib
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

from packaging.requirements import Requirement

wheelhouse: Path | None = None
overlay: Path | None = None
calls: list[dict] = []
installs: list[list[str]] = []

_stub = None  # the harness's slicer.packaging, for load_requirements and pip_check


# In the venv's site-packages while a session runs: every Python of the venv sees the overlay.
OVERLAY_PTH = Path(sysconfig.get_path("purelib")) / "_dicomplus_stock_overlay.pth"


def configure(stub, wheelhouse_dir: Path, overlay_dir: Path) -> None:
    """Take over from the harness stub ``stub``: install from ``wheelhouse_dir`` into ``overlay_dir``."""
    global _stub, wheelhouse, overlay
    _stub, wheelhouse, overlay = stub, Path(wheelhouse_dir), Path(overlay_dir)
    if not any(wheelhouse.glob("*.whl")):
        raise RuntimeError(f"no wheels in {wheelhouse}: run Testing/stock/setup_venv.sh")
    # site.py skips a .pth line naming a folder that does not exist (yet, or any more).
    OVERLAY_PTH.write_text(f"{site_packages()}\n", encoding="utf-8")


def release() -> None:
    """Forget the overlay for child processes (end of the session)."""
    OVERLAY_PTH.unlink(missing_ok=True)


def site_packages() -> Path:
    """The overlay's site-packages (where ``pip install --prefix`` puts packages)."""
    relative = Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)
    return overlay / relative


def load_requirements(path):
    return _stub.load_requirements(path)


def pip_check(requirements):
    return _stub.pip_check(requirements)


def _requirements(requirements) -> list[Requirement]:
    if isinstance(requirements, (str, Requirement)):
        requirements = [requirements]
    return [r if isinstance(r, Requirement) else Requirement(str(r)) for r in requirements]


def isPipInstallInProgress():
    return False


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
    """Slicer 5.12.3's pip_ensure: check, ask, install; None when nothing was missing."""
    import slicer.util

    requirements = _requirements(requirements)
    calls.append({"requirements": [str(r) for r in requirements], "requester": requester})
    missing = [r for r in requirements if not pip_check(r)]
    if not missing:
        return None
    if prompt_install:
        who = requester or "A module"
        text = (
            f"{who} requires the following Python packages, which are not installed:\n\n"
            + "\n".join(f"  - {r}" for r in missing)
            + "\n\nInstall them now?"
        )
        if not slicer.util.confirmOkCancelDisplay(text, windowTitle="Install Python packages"):
            raise RuntimeError("User declined package installation")
    return pip_install(missing, constraints=constraints, skip_packages=skip_packages)


def pip_install(requirements, constraints=None, skip_packages=None, blocking=True, **kwargs):
    """``pip install`` the requirements from the wheelhouse into the overlay (blocking)."""
    lines = [str(r) for r in _requirements(requirements)]
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    command += ["--no-index", "--find-links", str(wheelhouse), "--prefix", str(overlay)]
    if constraints is not None:
        command += ["-c", str(constraints)]
    run = subprocess.run([*command, *lines], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise subprocess.CalledProcessError(run.returncode, command, run.stdout, run.stderr)
    installs.append(lines)
    if str(site_packages()) not in sys.path:
        site.addsitedir(str(site_packages()))
    importlib.invalidate_caches()
    return None


def pip_uninstall(requirements, **kwargs):
    raise RuntimeError("the stock tier never uninstalls: its overlay is thrown away after the session")
