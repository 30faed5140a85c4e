"""Make the repository's code start as an installed copy does, before timing whole processes.

``pip install`` compiles every module to bytecode (``__pycache__/*.pyc``) when it installs a
package; a user's ``dicomplus send`` reads those. A checkout run with ``PYTHONDONTWRITEBYTECODE=1``
(as on this machine's shells) has none and never writes them, so every process would compile
~40-70 modules from source again (``cProfile``: ``builtins.compile``, 80 ms of a 0.7 s send). The
process candidates would then pay a cost no installed copy pays, and DCMTK (compiled C++) pays
nothing comparable. Done untimed, once, before the rounds; the variable still stops new writes.
"""

from __future__ import annotations

import compileall
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def compile_bytecode(*packages: str) -> None:
    """Write the ``.pyc`` files of ``packages`` (folders under the repository), as pip does."""
    for package in packages or ("DICOMPlusLib",):
        if not compileall.compile_dir(REPO / package, quiet=1, force=False):
            raise RuntimeError(f"{package}: a module does not compile")
