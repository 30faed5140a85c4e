"""Export: UIDs, scalar volumes as DICOM series in a chosen study, labelmaps as DICOM SEG.

Names are imported on first use (PEP 562), so that ``dicomplus`` builds its command line
without importing pydicom. The SEG writer (:mod:`.seg`) also needs highdicom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from DICOMPlusLib._lazy import lazy_getattr

if TYPE_CHECKING:  # the names as mypy sees them; at run time __getattr__ imports them on first use
    from DICOMPlusLib.export.geometry import SliceGeometry, slice_geometry
    from DICOMPlusLib.export.pixels import PixelEncoding, plan_encoding
    from DICOMPlusLib.export.reference import copy_patient_and_study, study_reference
    from DICOMPlusLib.export.seg import SegmentInfo, export_segmentation, export_segmentation_for_series
    from DICOMPlusLib.export.series import ExportResult, SeriesMetadata, export_volume, export_volume_to_study
    from DICOMPlusLib.export.uids import (
        UIDGenerator,
        ensure_series_is_new,
        is_valid_uid,
        new_uid,
        validate_root,
        validate_uid,
    )


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
