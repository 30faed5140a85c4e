"""Images that the database cannot index but a folder load can still show.

An image without SeriesInstanceUID (seen in the wild, e.g. JPEG-LS files written by conversion
tools) is not a composite instance the database can file, but its pixels and geometry are fine.
Loading a folder gives it a generated series key (a ``2.25`` UID derived from its folder and
study, so files of one folder and study stay together and the key is the same on every run)
and says so with a ``generated_series_uid`` warning. Everything else the index refuses
(DICOMDIR, truncated files, non-DICOM files) stays refused.
"""

from __future__ import annotations

import os

from DICOMPlusLib import uids
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.loading.models import LoadWarning

_NAMESPACE = "5f0b6a8e-2d43-4d0e-9a59-6c1f0d2b7e11"  # a uuid.UUID when used: uuid is imported then


@dataclass(frozen=True)
class UnindexedImage:
    """What :func:`DICOMPlusLib.loading.sources.InstanceSource` needs, plus why it is unusual."""

    sop_uid: str
    series_uid: str
    transfer_syntax: str
    pixel_offset: int
    pixel_length: int
    header: bytes
    number_of_frames: int
    sop_class: str
    instance_number: int | None


def generated_uid(*parts: str) -> str:
    """A deterministic UID under the UUID root 2.25 (PS3.5 B.2) for ``parts``."""
    import uuid

    return f"2.25.{uuid.uuid5(uuid.UUID(_NAMESPACE), '|'.join(parts)).int}"


def image_without_series(path: str) -> UnindexedImage | None:
    """The pieces of an image file that has pixel data but no SeriesInstanceUID, else None."""
    from DICOMPlusLib.database.headerscan import ScanError, scan

    wanted = {
        0x00020002: "MediaStorageSOPClassUID",
        0x00080016: "SOPClassUID",
        0x00080018: "SOPInstanceUID",
        0x00080060: "Modality",
        0x0020000D: "StudyInstanceUID",
        0x0020000E: "SeriesInstanceUID",
        0x00200013: "InstanceNumber",
        0x00280008: "NumberOfFrames",
    }
    try:
        with open(path, "rb") as handle:
            if handle.read(132)[128:] != b"DICM":  # only Part 10 files; never read a large non-DICOM file
                return None
            handle.seek(0)
            data = handle.read()
        result = scan(data, frozenset(wanted), complete=True)
    except (OSError, ScanError, ValueError):
        return None
    values = {wanted[tag]: str(value).strip() for tag, value in result.values.items() if value is not None}
    if values.get("SeriesInstanceUID") or result.pixel_offset < 0:
        return None
    if result.media_sop_class == uids.MediaStorageDirectoryStorage:  # a DICOMDIR is never an image
        return None
    if result.pixel_length >= 0 and result.pixel_offset + result.pixel_length > len(data):
        return None
    folder = os.path.dirname(os.path.abspath(path))
    try:
        number = int(float(values["InstanceNumber"])) if values.get("InstanceNumber") else None
    except ValueError:
        number = None
    try:
        frames = max(1, int(float(values.get("NumberOfFrames") or 1)))
    except ValueError:
        frames = 1
    return UnindexedImage(
        sop_uid=values.get("SOPInstanceUID") or generated_uid("sop", os.path.abspath(path)),
        series_uid=generated_uid(
            "series", folder, values.get("StudyInstanceUID", ""), values.get("Modality", "")
        ),
        transfer_syntax=result.transfer_syntax or uids.ImplicitVRLittleEndian,
        pixel_offset=result.pixel_offset,
        pixel_length=result.pixel_length,
        header=bytes(data[: result.header_end]),
        number_of_frames=frames,
        sop_class=values.get("SOPClassUID") or result.media_sop_class,
        instance_number=number,
    )


def generated_series_warning(series_uid: str, files) -> LoadWarning:
    return LoadWarning(
        "generated_series_uid",
        f"{len(files)} file(s) have no SeriesInstanceUID: grouped by folder and study under the generated "
        f"series key {series_uid}; the database cannot index them",
        tuple(files),
    )
