"""Datasets of the exported objects, module by module (PS3.3 A.3 CT, A.4 MR, A.8.5.4 SC).

* CT Image Storage (one file per slice): Patient, General Study, Patient Study, General Series,
  Frame of Reference, General Equipment, General Image, Image Plane, Image Pixel, CT Image,
  VOI LUT, SOP Common.
* MR Image Storage (one file per slice): the same with MR Image instead of CT Image. The MR IOD
  has no Modality LUT, so a rescale is written only when the values need one (fractions, wide
  ranges), as many scanners do; readers (DICOMPlus, ITK, pydicom) apply it, and dciodvfy warns
  ("not expected in standard MR IOD", a Standard Extended SOP Class) but finds no error.
* Multi-frame Grayscale Word Secondary Capture (one file for the volume) for any other modality:
  the SC IOD has no Image Plane module, but this multi-frame one takes the Frame of Reference
  and Multi-frame Functional Groups modules (PS3.3 A.8.5.4), whose Pixel Measures, Plane
  Orientation and Plane Position macros carry the geometry, frame by frame.

Derived images say so: ImageType DERIVED\\SECONDARY, a DerivationDescription.
"""

from __future__ import annotations

import datetime

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
)

from DICOMPlusLib import __version__
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.export.geometry import SliceGeometry, ds, ds_list
from DICOMPlusLib.export.pixels import PixelEncoding
from DICOMPlusLib.export.reference import copy_patient_and_study
from DICOMPlusLib.export.uids import UIDGenerator

IMPLEMENTATION_VERSION_NAME = f"DICOMPLUS_{__version__}"[:16]

SOP_CLASSES = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "SC": MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
}


@dataclass(frozen=True)
class SeriesContext:
    """What every instance of one exported series shares."""

    kind: str  # "CT", "MR" or "SC"
    modality: str  # the Modality written (CT, MR, or e.g. OT for a secondary capture)
    series_uid: str
    series_number: int
    frame_of_reference_uid: str
    position_reference_indicator: str
    series_description: str
    body_part_examined: str
    laterality: str | None  # None: leave out (see reference.series_laterality)
    patient_position: str
    manufacturer: str
    image_type: tuple[str, ...]
    derivation_description: str
    window: tuple[float, float] | None
    now: datetime.datetime


def orientation_letters(direction: np.ndarray, threshold: float = 1e-3) -> str:
    """PatientOrientation letters of a direction (PS3.3 C.7.6.1.1.1): L/R, P/A, H/F in order
    of decreasing weight, components under ``threshold`` left out."""
    letters = []
    for axis in np.argsort(-np.abs(direction)):
        value = direction[axis]
        if abs(value) < threshold:
            continue
        letters.append(("L", "P", "H")[axis] if value > 0 else ("R", "A", "F")[axis])
    return "".join(letters)


def file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def series_base(
    reference: Dataset | None,
    ctx: SeriesContext,
    encoding: PixelEncoding,
    rows: int,
    columns: int,
    *,
    uids: UIDGenerator | None = None,
) -> Dataset:
    """The attributes shared by every instance of the series (a fresh Dataset)."""
    out = Dataset()
    copy_patient_and_study(reference, out, uids=uids)
    date, time = ctx.now.strftime("%Y%m%d"), ctx.now.strftime("%H%M%S")
    # SOP Common
    out.SOPClassUID = SOP_CLASSES[ctx.kind]
    out.InstanceCreationDate = date
    out.InstanceCreationTime = time
    # General Series (C.7.3.1)
    out.Modality = ctx.modality
    out.SeriesInstanceUID = ctx.series_uid
    out.SeriesNumber = ctx.series_number
    out.SeriesDate = date
    out.SeriesTime = time
    if ctx.series_description:
        out.SeriesDescription = ctx.series_description
    if ctx.body_part_examined:
        out.BodyPartExamined = ctx.body_part_examined
    if ctx.laterality is not None:
        out.Laterality = ctx.laterality
    if ctx.kind in ("CT", "MR"):
        out.PatientPosition = ctx.patient_position  # Type 2C: required for CT and MR
    # Frame of Reference (C.7.4.1)
    out.FrameOfReferenceUID = ctx.frame_of_reference_uid
    out.PositionReferenceIndicator = ctx.position_reference_indicator
    # General Equipment (C.7.5.1)
    out.Manufacturer = ctx.manufacturer
    out.ManufacturerModelName = "DICOMPlus"
    out.SoftwareVersions = __version__
    # General Image (C.7.6.1)
    out.ContentDate = date
    out.ContentTime = time
    out.ImageType = list(ctx.image_type)
    if ctx.derivation_description:
        out.DerivationDescription = ctx.derivation_description
    out.BurnedInAnnotation = "NO"
    # Image Pixel (C.7.6.3)
    out.SamplesPerPixel = 1
    out.PhotometricInterpretation = "MONOCHROME2"
    out.Rows = rows
    out.Columns = columns
    out.BitsAllocated = 16
    out.BitsStored = 16
    out.HighBit = 15
    out.PixelRepresentation = encoding.pixel_representation
    # VOI LUT (C.11.2)
    if ctx.window is not None:
        out.WindowCenter = ds(ctx.window[0])
        out.WindowWidth = ds(max(ctx.window[1], 1e-6))
    if ctx.kind == "CT":
        # CT Image (C.8.2.1): rescale is Type 1; RescaleType 1C only when the units are not HU
        out.RescaleIntercept = encoding.intercept
        out.RescaleSlope = encoding.slope
        out.KVP = ""
        out.AcquisitionNumber = ""
    elif ctx.kind == "MR":
        # MR Image (C.8.3.1)
        out.ScanningSequence = "RM"  # research mode: derived, no acquisition to describe
        out.SequenceVariant = "NONE"
        out.ScanOptions = ""
        out.MRAcquisitionType = ""
        out.RepetitionTime = ""
        out.EchoTime = ""
        out.EchoTrainLength = ""
        if not encoding.is_identity:
            out.RescaleIntercept = encoding.intercept
            out.RescaleSlope = encoding.slope
    else:
        # SC Equipment (C.8.6.1) and SC Multi-frame Image (C.8.6.3)
        out.ConversionType = "WSD"
        out.RescaleIntercept = encoding.intercept
        out.RescaleSlope = encoding.slope
        out.RescaleType = "US"
    return out


def _copy(base: Dataset) -> Dataset:
    """A new Dataset sharing base's elements (which are never modified in place)."""
    out = Dataset()
    for elem in base:
        out.add(elem)
    return out


def single_frame(
    base: Dataset,
    geometry: SliceGeometry,
    index: int,
    sop_uid: str,
    pixels: np.ndarray,
) -> Dataset:
    """One CT or MR slice: the base plus Image Plane (C.7.6.2) and pixel data."""
    out = _copy(base)
    out.file_meta = file_meta(base.SOPClassUID, sop_uid)
    out.SOPInstanceUID = sop_uid
    out.InstanceNumber = index + 1
    out.ImagePositionPatient = ds_list(geometry.positions[index])
    out.ImageOrientationPatient = ds_list(geometry.orientation)
    out.PixelSpacing = ds_list(geometry.pixel_spacing)
    out.SliceThickness = ds(geometry.spacing_along_normal)
    out.SliceLocation = ds(geometry.distances[index])
    if base.SOPClassUID == MRImageStorage:
        out.SpacingBetweenSlices = ds(geometry.spacing_along_normal)
    out.PixelData = np.ascontiguousarray(pixels).tobytes()
    return out


def multi_frame(base: Dataset, geometry: SliceGeometry, sop_uid: str, pixel_bytes: bytes) -> Dataset:
    """The whole volume as one multi-frame secondary capture with functional groups."""
    out = _copy(base)
    frames = len(geometry.positions)
    out.file_meta = file_meta(base.SOPClassUID, sop_uid)
    out.SOPInstanceUID = sop_uid
    out.InstanceNumber = 1
    out.NumberOfFrames = frames
    # General Image: PatientOrientation (2C) since there is no top-level Image Plane module
    out.PatientOrientation = [
        orientation_letters(geometry.row_cosine),
        orientation_letters(geometry.column_cosine),
    ]
    # Multi-frame (C.7.6.6) and SC Multi-frame Vector (C.8.6.4): frames are slices
    out.FrameIncrementPointer = 0x00182005  # SliceLocationVector
    out.SliceLocationVector = ds_list(geometry.distances)
    # SC Multi-frame Image (C.8.6.3)
    out.PresentationLUTShape = "IDENTITY"
    # Multi-frame Functional Groups (C.7.6.16): shared geometry, per-frame positions
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = ds_list(geometry.pixel_spacing)
    measures.SliceThickness = ds(geometry.spacing_along_normal)
    measures.SpacingBetweenSlices = ds(geometry.spacing_along_normal)
    shared.PixelMeasuresSequence = Sequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = ds_list(geometry.orientation)
    shared.PlaneOrientationSequence = Sequence([orientation])
    out.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for index in range(frames):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = ds_list(geometry.positions[index])
        item.PlanePositionSequence = Sequence([position])
        per_frame.append(item)
    out.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    out.PixelData = pixel_bytes
    return out
