"""Packages that load their public names on first use.

The command line imports every command module to build its parser; packages whose names pull in
numpy, pydicom or pynetdicom export them lazily so that a command that needs none of them starts
fast (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

_PYDICOM_LOCK = threading.Lock()
_pydicom_ready = False


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps a name to the submodule
    defining it; the value is cached in the package once imported."""

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__


def import_pydicom() -> None:
    """Import pydicom whole, once, one thread at a time, before a lazy ``from pydicom... import``
    on a path that worker threads run (the header scans of an import, a retrieve, a listener).

    pydicom's modules import each other: imported by two threads at once, importlib breaks the
    cycle by handing one of them a partially initialised module ("cannot import name 'Dataset'
    from partially initialized module 'pydicom.dataset'"), and that file, C-STORE or association
    fails. Once pydicom is in, this is one global read."""
    global _pydicom_ready
    if _pydicom_ready:
        return
    with _PYDICOM_LOCK:
        if not _pydicom_ready:
            # pydicom's package imports dataset, dataelem, filereader...; the lazy sites also
            # name these two.
            for name in ("pydicom", "pydicom.charset", "pydicom.datadict"):
                importlib.import_module(name)
            _pydicom_ready = True
