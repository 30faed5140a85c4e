"""Sample data for the sample PACS: two patients, a CT and an MR study, made with pydicom.

The instances are complete enough for viewers and for dciodvfy (CT Image and MR Image IODs,
PS3.3 A.3 and A.4: patient, study, series, frame of reference, equipment, image plane and pixel
modules), and small (128 x 128 pixels; made by DICOMPlusLib.synthetic, the one CT/MR builder) so that ``dicomplus serve --sample`` starts at once. The
UIDs are derived from fixed names (UUID-derived UIDs, PS3.5 B.2), so running it again adds
nothing new.
"""

from __future__ import annotations

import uuid
from io import BytesIO
from typing import TYPE_CHECKING

from DICOMPlusLib.dataclasses_lite import dataclass

if TYPE_CHECKING:
    from DICOMPlusLib.database import DatabaseProtocol

_NAMESPACE = uuid.UUID("6f1c1a3e-5d2b-4a8e-9b77-2d6f0c3e8a51")


def sample_uid(name: str) -> str:
    return f"2.25.{uuid.uuid5(_NAMESPACE, name).int}"


@dataclass(frozen=True)
class _SeriesSpec:
    """One series of the sample data and the patient and study it belongs to."""

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
    # Imported here: ``dicomplus serve`` without --sample should not pay for numpy and pydicom.
    from DICOMPlusLib.synthetic import SeriesHeader, SlicePlane, image_instance

    header = SeriesHeader(
        modality=spec.modality,
        study_uid=sample_uid(f"study/{spec.study_key}"),
        series_uid=sample_uid(f"series/{spec.key}"),
        frame_uid=sample_uid(f"for/{spec.study_key}"),
        patient_id=spec.patient_id,
        patient_name=spec.patient_name,
        birth_date=spec.birth_date,
        sex=spec.sex,
        study_date=spec.study_date,
        study_time="093000",
        study_id=spec.accession[-4:],
        accession=spec.accession,
        study_description=spec.study_description,
        series_description=spec.series_description,
        series_number=spec.series_number,
        body_part=spec.body_part,
        manufacturer="DICOMPlus",
        referring_physician="Smith^John",
        image_type=("ORIGINAL", "PRIMARY", "AXIAL" if spec.modality == "CT" else "OTHER"),
        extra=_MR_EXTRA if spec.modality == "MR" else _EXTRA,
    )
    z = -((spec.slices - 1) / 2) * spec.spacing + k * spec.spacing
    plane = SlicePlane(
        position=(-119.0625, -119.0625, z), pixel_spacing=(1.875, 1.875), thickness=spec.spacing
    )
    ds = image_instance(header, plane, _phantom(spec, k), sop_uid=sample_uid(f"instance/{spec.key}/{k}"),
                        instance_number=k + 1, bits_stored=12 if spec.modality == "CT" else 16)  # fmt: skip
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


_EXTRA = {"ManufacturerModelName": "Sample PACS phantom", "InstitutionName": "DICOMPlus sample data"}
_MR_EXTRA = {**_EXTRA, "MagneticFieldStrength": "1.5", "ImagedNucleus": "1H", "WindowCenter": "700",
             "WindowWidth": "1400"}  # fmt: skip


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


def make_sample_data(db: DatabaseProtocol) -> dict[str, int]:
    """Add the sample patients to ``db`` (nothing is added twice); returns the counts added."""
    from DICOMPlusLib.database.ingest import POLICY, IngestSource, StoreStatus
    from DICOMPlusLib.database.parsing import parse_bytes
    from DICOMPlusLib.errors import DiskFullError, space_error_in

    parsed = [parse_bytes(data) for data in sample_files()]
    try:
        results = db.ingest.commit_batch(parsed, POLICY[IngestSource.SAMPLE])
    except OSError as exc:  # one transaction: nothing of it was kept
        if space_error_in(exc) is None:
            raise
        raise DiskFullError(str(db.store_root)) from exc
    added = sum(1 for r in results if r.status is StoreStatus.STORED)
    return {"added": added, "already there": len(results) - added}
