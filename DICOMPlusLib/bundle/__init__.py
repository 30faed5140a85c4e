"""Slicer Data Bundle: a zipped Slicer scene (MRB) inside a DICOM Secondary Capture.

Compatible both ways with stock Slicer's DICOMSlicerDataBundlePlugin; see :mod:`.format`.
Names are imported on first use (PEP 562), so the command line builds without pydicom.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DEFAULT_MAX_BUNDLE_BYTES": "format",
    "BundleInfo": "read",
    "extract_bundle": "read",
    "is_bundle": "read",
    "is_bundle_dataset": "read",
    "read_bundle": "read",
    "read_bundle_info": "read",
    "placeholder_thumbnail": "write",
    "save_bundle_to_study": "write",
    "write_bundle": "write",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
