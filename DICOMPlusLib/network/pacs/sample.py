"""Sample data for the sample PACS: two patients, a CT and an MR study, made with pydicom.

The instances are complete enough for viewers and for dciodvfy (CT Image and MR Image IODs,
PS3.3 A.3 and A.4: patient, study, series, frame of reference, equipment, image plane and pixel
modules), and small (128 x 128 pixels) so that ``dicomplus serve --sample`` starts at once. The
UIDs are derived from fixed names (UUID-derived UIDs, PS3.5 B.2), so running it again adds
nothing new.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from DICOMPlusLib.database import Database

_NAMESPACE = uuid.UUID("6f1c1a3e-5d2b-4a8e-9b77-2d6f0c3e8a51")
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def sample_uid(name: str) -> str:
    return f"2.25.{uuid.uuid5(_NAMESPACE, name).int}"


@dataclass(frozen=True)
class _SeriesSpec:
    key: str
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    study_key: str
    study_date: str
    study_description: str
    accession: str
    modality: str
    series_number: int
    series_description: str
    body_part: str
    slices: int
    spacing: float


SAMPLE = (
    _SeriesSpec("ct-chest", "DPLUS-001", "Doe^Jane", "19700412", "F", "p1-ct", "20240315", "CT Chest",
                "ACC1001", "CT", 2, "Chest 5mm", "CHEST", 24, 5.0),
    _SeriesSpec("mr-head", "DPLUS-001", "Doe^Jane", "19700412", "F", "p1-mr", "20240402", "MR Brain",
                "ACC1002", "MR", 3, "T1 axial", "HEAD", 16, 6.0),
    _SeriesSpec("ct-abdomen", "DPLUS-002", "Roe^Richard", "19581101", "M", "p2-ct", "20231120",
                "CT Abdomen", "ACC2001", "CT", 2, "Abdomen 3mm", "ABDOMEN", 20, 3.0),
)  # fmt: skip


def _phantom(spec: _SeriesSpec, k: int):
    import numpy as np

    n = 128
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) - (n - 1) / 2
    z = (k - (spec.slices - 1) / 2) * spec.spacing
    body = (x / 58) ** 2 + (y / 46) ** 2 <= 1
    ball = x**2 + y**2 + (z * 1.2) ** 2 <= 24**2
    if spec.modality == "CT":
        image = np.full((n, n), -1000, np.int16)  # air, HU
        image[body] = 40
        image[ball] = 300
        return (image + 1024).astype(np.uint16)  # stored = HU + 1024 (RescaleIntercept -1024)
    image = np.zeros((n, n), np.uint16)
    image[body] = 600
    image[ball] = 1400
    return image


def _instance(spec: _SeriesSpec, k: int):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    study_uid = sample_uid(f"study/{spec.study_key}")
    series_uid = sample_uid(f"series/{spec.key}")
    sop_uid = sample_uid(f"instance/{spec.key}/{k}")
    sop_class = CT_IMAGE_STORAGE if spec.modality == "CT" else MR_IMAGE_STORAGE
    pixels = _phantom(spec, k)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if spec.modality == "CT" else "OTHER"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = spec.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
    ds.AccessionNumber = spec.accession
    ds.Modality = spec.modality
    ds.Manufacturer = "DICOMPlus"
    ds.ManufacturerModelName = "Sample PACS phantom"
    ds.InstitutionName = "DICOMPlus sample data"
    ds.ReferringPhysicianName = "Smith^John"
    ds.StudyDescription = spec.study_description
    ds.SeriesDescription = spec.series_description
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = spec.birth_date
    ds.PatientSex = spec.sex
    ds.BodyPartExamined = spec.body_part
    ds.SliceThickness = f"{spec.spacing:g}"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = spec.accession[-4:]
    ds.SeriesNumber = spec.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = k + 1
    z = -((spec.slices - 1) / 2) * spec.spacing + k * spec.spacing
    ds.ImagePositionPatient = ["-119.0625", "-119.0625", f"{z:g}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = sample_uid(f"for/{spec.study_key}")
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = f"{z:g}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 128
    ds.PixelSpacing = ["1.875", "1.875"]
    ds.BitsAllocated = 16
    ds.BitsStored = 12 if spec.modality == "CT" else 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if spec.modality == "CT":
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
        ds.MagneticFieldStrength = "1.5"
        ds.ImagedNucleus = "1H"
        ds.WindowCenter = "700"
        ds.WindowWidth = "1400"
    ds.PixelData = pixels.tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def sample_files() -> list[bytes]:
    """Every sample instance as Part 10 bytes."""
    return [_instance(spec, k) for spec in SAMPLE for k in range(spec.slices)]


def write_sample_files(folder) -> str:
    """Write every sample instance into ``folder`` (created) as ``NNN.dcm``; returns the folder."""
    import os

    os.makedirs(folder, exist_ok=True)
    for index, data in enumerate(sample_files()):
        with open(os.path.join(folder, f"{index:03d}.dcm"), "wb") as f:
            f.write(data)
    return str(folder)


def make_sample_data(db: Database) -> dict[str, int]:
    """Add the sample patients to ``db`` (nothing is added twice); returns the counts added."""
    from DICOMPlusLib.database.ingest import POLICY, IngestSource, StoreStatus
    from DICOMPlusLib.database.parsing import parse_bytes

    parsed = [parse_bytes(data) for data in sample_files()]
    results = db.ingest.commit_batch(parsed, POLICY[IngestSource.SAMPLE])
    added = sum(1 for r in results if r.status is StoreStatus.STORED)
    return {"added": added, "already there": len(results) - added}
