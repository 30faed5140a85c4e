"""Paths and sys.path helpers of the stock-Slicer tier (imported by its conftest and tests)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import stock_packaging

STOCK_DIR = Path(__file__).resolve().parent
TESTING_DIR = STOCK_DIR.parent
REPO_ROOT = TESTING_DIR.parent
LIBRARY = "DICOMPlusLib"

# Distributions a stock Slicer 5.12 does not have; the tier refuses to start if one is installed.
NOT_IN_STOCK_SLICER = ("dicomplus", "pynetdicom", "python-gdcm", "pylibjpeg")


def provides_library(entry: str) -> bool:
    """True if the sys.path entry ``entry`` has a DICOMPlusLib package."""
    return (Path(entry or os.getcwd()) / LIBRARY / "__init__.py").is_file()


def forget_path_entries(saved_path: list[str]) -> None:
    """Take out of sys.path what was added since ``saved_path`` (module folders), except the
    overlay where packages were installed: like Slicer's site-packages, it stays."""
    overlay = str(stock_packaging.site_packages()) if stock_packaging.overlay else None
    sys.path[:] = [entry for entry in sys.path if entry in saved_path or entry == overlay]


def forget_library() -> dict:
    """Remove DICOMPlusLib and its modules from sys.modules; return them, for restore_library."""
    names = [n for n in sys.modules if n == LIBRARY or n.startswith(LIBRARY + ".")]
    return {name: sys.modules.pop(name) for name in names}


def restore_library(saved: dict) -> None:
    forget_library()
    sys.modules.update(saved)
