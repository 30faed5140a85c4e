"""Slicer Data Bundle: a zipped Slicer scene (MRB) inside a DICOM Secondary Capture.

Compatible both ways with stock Slicer's DICOMSlicerDataBundlePlugin; see :mod:`.format`.
Names are imported on first use (PEP 562), so the command line builds without pydicom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from DICOMPlusLib._lazy import lazy_getattr

if TYPE_CHECKING:  # the names as mypy sees them; at run time __getattr__ imports them on first use
    from DICOMPlusLib.bundle.format import DEFAULT_MAX_BUNDLE_BYTES
    from DICOMPlusLib.bundle.read import (
        BundleInfo,
        extract_bundle,
        is_bundle,
        is_bundle_dataset,
        read_bundle,
        read_bundle_info,
    )
    from DICOMPlusLib.bundle.write import placeholder_thumbnail, save_bundle_to_study, write_bundle


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


__getattr__ = lazy_getattr(__name__, _EXPORTS)
