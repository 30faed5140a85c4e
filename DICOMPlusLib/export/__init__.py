"""Export: UIDs, scalar volumes as DICOM series in a chosen study, labelmaps as DICOM SEG.

The SEG writer (:mod:`.seg`) needs highdicom and is imported on demand.
"""

from DICOMPlusLib.export.geometry import SliceGeometry, slice_geometry
from DICOMPlusLib.export.pixels import PixelEncoding, plan_encoding
from DICOMPlusLib.export.reference import copy_patient_and_study, study_reference
from DICOMPlusLib.export.series import ExportResult, SeriesMetadata, export_volume, export_volume_to_study
from DICOMPlusLib.export.uids import (
    UIDGenerator,
    ensure_series_is_new,
    is_valid_uid,
    new_uid,
    validate_root,
    validate_uid,
)

__all__ = [
    "ExportResult",
    "PixelEncoding",
    "SeriesMetadata",
    "SliceGeometry",
    "UIDGenerator",
    "copy_patient_and_study",
    "ensure_series_is_new",
    "export_volume",
    "export_volume_to_study",
    "is_valid_uid",
    "new_uid",
    "plan_encoding",
    "slice_geometry",
    "study_reference",
    "validate_root",
    "validate_uid",
]
