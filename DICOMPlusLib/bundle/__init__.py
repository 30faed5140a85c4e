"""Slicer Data Bundle: a zipped Slicer scene (MRB) inside a DICOM Secondary Capture.

Compatible both ways with stock Slicer's DICOMSlicerDataBundlePlugin; see :mod:`.format`.
"""

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

__all__ = [
    "DEFAULT_MAX_BUNDLE_BYTES",
    "BundleInfo",
    "extract_bundle",
    "is_bundle",
    "is_bundle_dataset",
    "placeholder_thumbnail",
    "read_bundle",
    "read_bundle_info",
    "save_bundle_to_study",
    "write_bundle",
]
