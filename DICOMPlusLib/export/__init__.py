"""Export: UIDs, scalar volumes as DICOM series in a chosen study, labelmaps as DICOM SEG.

Names are imported on first use (PEP 562), so that ``dicomplus`` builds its command line
without importing pydicom. The SEG writer (:mod:`.seg`) also needs highdicom.
"""

from __future__ import annotations

from DICOMPlusLib._lazy import lazy_getattr

_EXPORTS = {
    "SliceGeometry": "geometry",
    "slice_geometry": "geometry",
    "PixelEncoding": "pixels",
    "plan_encoding": "pixels",
    "copy_patient_and_study": "reference",
    "study_reference": "reference",
    "ExportResult": "series",
    "SeriesMetadata": "series",
    "export_volume": "series",
    "export_volume_to_study": "series",
    "UIDGenerator": "uids",
    "ensure_series_is_new": "uids",
    "is_valid_uid": "uids",
    "new_uid": "uids",
    "validate_root": "uids",
    "validate_uid": "uids",
    "SegmentInfo": "seg",
    "export_segmentation": "seg",
    "export_segmentation_for_series": "seg",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
