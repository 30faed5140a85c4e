"""One builder for synthetic single-frame CT and MR image instances.

The sample PACS data (network/pacs/sample.py, also what the module's self-test imports), and the
test suite's synthetic series (Testing/dicomplus_testing/synthetic.py) all make their instances
here, so a fix to the header (a module dciodvfy asks for, a DS formatting rule) reaches all of them.
The instances carry the modules of the CT Image and MR Image IODs (PS3.3 A.3 and A.4): patient,
general study, general series, frame of reference, general equipment, image plane, image pixel and
the CT image / MR image module. Callers choose the UIDs, so a builder run can be repeatable
(sample data) or fresh (tests).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

from DICOMPlusLib.dataclasses_lite import dataclass, field

SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}


def ds_text(value: float) -> str:
    """A DS string (PS3.5 6.2: at most 16 characters) for ``value`` rounded to a micrometre: the
    shortest of 6 to 12 significant digits that keeps that value, and never "-0"."""
    value = round(float(value), 6) + 0.0
    for digits in range(6, 13):
        text = f"{value:.{digits}g}"
        if float(text) == value:
            break
    return text


@dataclass(frozen=True)
class SeriesHeader:
    """What every instance of one synthetic series shares: patient, study, series and frame of
    reference. ``extra`` adds (or overrides) attributes by keyword, e.g. the sample data's
    institution or an MR's field strength."""

    modality: str
    study_uid: str
    series_uid: str
    frame_uid: str
    patient_id: str = "SYN001"
    patient_name: str = "Synthetic^Patient"
    birth_date: str = "19700101"
    sex: str = "O"
    study_date: str = "20240102"
    study_time: str = "100000"
    study_id: str = "1"
    accession: str = ""
    study_description: str = "Synthetic study"
    series_description: str = "Synthetic series"
    series_number: int = 1
    body_part: str = "CHEST"
    manufacturer: str = "DICOMPlus synthetic"
    referring_physician: str = ""
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SlicePlane:
    """The image plane module of one slice (PS3.3 C.7.6.2), in LPS millimetres."""

    position: tuple[float, float, float]
    row_cosine: tuple[float, float, float] = (1.0, 0.0, 0.0)
    col_cosine: tuple[float, float, float] = (0.0, 1.0, 0.0)
    pixel_spacing: tuple[float, float] = (1.0, 1.0)  # (between rows, between columns)
    thickness: float = 1.0

    @property
    def normal(self) -> np.ndarray:
        return np.cross(np.asarray(self.row_cosine, float), np.asarray(self.col_cosine, float))


def image_instance(
    header: SeriesHeader,
    plane: SlicePlane,
    pixels: np.ndarray,
    *,
    sop_uid: str,
    instance_number: int,
    bits_stored: int | None = None,
) -> Dataset:
    """One CT or MR image instance with its file meta (Explicit VR Little Endian), ready for
    ``save_as(..., enforce_file_format=True)``. ``pixels`` (rows, columns) are the stored values:
    int16 gives signed pixels, uint16 unsigned; ``bits_stored`` defaults to 16."""
    if header.modality not in SOP_CLASSES:
        raise ValueError(f"modality {header.modality!r}: the builder makes {', '.join(SOP_CLASSES)}")
    if pixels.ndim != 2 or pixels.dtype not in (np.int16, np.uint16):
        raise ValueError("pixels must be one 2-D int16 or uint16 frame")
    sop_class = SOP_CLASSES[header.modality]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(header.image_type)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = header.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = header.study_time
    ds.AccessionNumber = header.accession
    ds.Modality = header.modality
    ds.Manufacturer = header.manufacturer
    ds.ReferringPhysicianName = header.referring_physician
    ds.StudyDescription = header.study_description
    ds.SeriesDescription = header.series_description
    ds.PatientName = header.patient_name
    ds.PatientID = header.patient_id
    ds.PatientBirthDate = header.birth_date
    ds.PatientSex = header.sex
    ds.BodyPartExamined = header.body_part
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = header.study_uid
    ds.SeriesInstanceUID = header.series_uid
    ds.StudyID = header.study_id
    ds.SeriesNumber = header.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance_number
    ds.FrameOfReferenceUID = header.frame_uid
    ds.PositionReferenceIndicator = ""
    position = np.asarray(plane.position, float)
    ds.ImagePositionPatient = [ds_text(x) for x in position]
    ds.ImageOrientationPatient = [ds_text(x) for x in (*plane.row_cosine, *plane.col_cosine)]
    ds.SliceLocation = ds_text(float(position @ plane.normal))
    ds.SliceThickness = ds_text(plane.thickness)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [ds_text(plane.pixel_spacing[0]), ds_text(plane.pixel_spacing[1])]
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored or 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    if header.modality == "CT":
        ds.KVP = "120"
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
    else:
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = "500"
        ds.EchoTime = "15"
        ds.EchoTrainLength = 1
    for keyword, value in header.extra.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds
