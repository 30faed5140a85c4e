"""Output names and JSON sidecars for ``convert``, in dcm2niix's and BIDS's conventions.

Names come from a template like dcm2niix's ``-f``: ``%s_%d`` gives ``3_T1_MPRAGE``. Sidecars hold
the acquisition parameters a BIDS user expects, under the BIDS names (seconds for times, as the
BIDS specification says) where BIDS has one.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Any

from DICOMPlusLib.errors import DICOMPlusError
from DICOMPlusLib.loading.models import VolumeInfo

#: Template fields (dcm2niix ``-f``): letter -> (what it is, how to read it from the header).
FIELDS: dict[str, tuple[str, Callable[[Any, VolumeInfo], str]]] = {
    "a": ("coil name", lambda ds, v: _s(ds, "ReceiveCoilName")),
    "d": ("series description", lambda ds, v: _s(ds, "SeriesDescription")),
    "e": ("echo number", lambda ds, v: _s(ds, "EchoNumbers")),
    "f": ("folder name of the first file", lambda ds, v: _folder(v)),
    "i": ("patient ID", lambda ds, v: _s(ds, "PatientID")),
    "j": ("SeriesInstanceUID", lambda ds, v: v.series_uid),
    "k": ("StudyInstanceUID", lambda ds, v: _s(ds, "StudyInstanceUID")),
    "m": ("manufacturer", lambda ds, v: _s(ds, "Manufacturer")),
    "n": ("patient name", lambda ds, v: _s(ds, "PatientName")),
    "p": ("protocol name", lambda ds, v: _s(ds, "ProtocolName")),
    "r": ("instance number of the first image", lambda ds, v: _s(ds, "InstanceNumber")),
    "s": ("series number", lambda ds, v: _s(ds, "SeriesNumber")),
    "t": ("study date and time", lambda ds, v: _s(ds, "StudyDate") + _s(ds, "StudyTime").split(".")[0]),
    "u": ("acquisition number", lambda ds, v: _s(ds, "AcquisitionNumber")),
    "v": ("vendor", lambda ds, v: _s(ds, "Manufacturer").split(" ")[0]),
    "x": ("study ID", lambda ds, v: _s(ds, "StudyID")),
    "z": ("sequence name", lambda ds, v: _s(ds, "SequenceName")),
}
DEFAULT_TEMPLATE = "%s_%d"


def template_help() -> str:
    return ", ".join(f"%{k} {what}" for k, (what, _) in FIELDS.items()) + ", %% a percent sign"


def _s(ds, keyword: str) -> str:
    value = ds.get(keyword) if ds is not None else None
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = "_".join(str(v) for v in value)
    return str(value).strip()


def _folder(v: VolumeInfo) -> str:
    from pathlib import Path

    return Path(v.frames[0].path).parent.name if v.frames else ""


def check_template(template: str) -> None:
    for match in re.finditer(r"%(.)", template):
        if match.group(1) != "%" and match.group(1) not in FIELDS:
            raise DICOMPlusError(f"--name {template!r}: %{match.group(1)} is not a field ({template_help()})")
    if "/" in template or "\\" in template:
        raise DICOMPlusError(f"--name {template!r}: a name, not a path (give the folder with --out)")


def clean(text: str) -> str:
    """A file-name-safe version of ``text``: letters, digits, ``-``, ``_`` and ``.`` kept, anything
    else (spaces, slashes, carets...) becomes ``_``, runs of ``_`` are merged."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    return re.sub(r"_+", "_", text).strip("_.") or ""


def expand(template: str, ds, info: VolumeInfo) -> str:
    """The file stem for ``info`` (without suffix)."""

    def field(match: re.Match) -> str:
        letter = match.group(1)
        if letter == "%":
            return "%"
        return clean(FIELDS[letter][1](ds, info))

    stem = re.sub(r"%(.)", field, template)
    stem = re.sub(r"_+", "_", stem).strip("_")
    return stem or "volume"


def default_stem(ds, info: VolumeInfo) -> str:
    """The name a volume gets without ``--name``: :data:`DEFAULT_TEMPLATE` (``3_T1_MPRAGE``); a
    series without a description is named by its series number and modality (``3_CT``), as
    viewers list it, not by its bare number (``3``), which says nothing about what the file holds."""
    if clean(_s(ds, "SeriesDescription")):
        return expand(DEFAULT_TEMPLATE, ds, info)
    stem = "_".join(part for part in (clean(_s(ds, "SeriesNumber")), clean(_s(ds, "Modality"))) if part)
    return stem or "volume"


def volume_suffix(info: VolumeInfo, index: int) -> str:
    """What tells a volume from the others of its series: its label (echo, image type,
    acquisition), ``localizer``, or its number."""
    if info.localizer:
        return "localizer" if index == 1 else f"localizer{index}"
    label = info.label.replace("ImageType ", "").replace("acquisition ", "acq").replace("echo ", "e")
    return clean(label) or str(index)


# -- sidecar ------------------------------------------------------------------------------------
#: BIDS name -> (DICOM keyword, scale) for numbers; times in BIDS are seconds, DICOM ms.
_NUMBERS = {
    "MagneticFieldStrength": ("MagneticFieldStrength", 1.0),
    "EchoTime": ("EchoTime", 0.001),
    "RepetitionTime": ("RepetitionTime", 0.001),
    "InversionTime": ("InversionTime", 0.001),
    "FlipAngle": ("FlipAngle", 1.0),
    "SliceThickness": ("SliceThickness", 1.0),
    "SpacingBetweenSlices": ("SpacingBetweenSlices", 1.0),
    "PixelBandwidth": ("PixelBandwidth", 1.0),
    "ImagingFrequency": ("ImagingFrequency", 1.0),
    "EchoTrainLength": ("EchoTrainLength", 1.0),
    "PercentPhaseFOV": ("PercentPhaseFieldOfView", 1.0),
    "PercentSampling": ("PercentSampling", 1.0),
    "EchoNumber": ("EchoNumbers", 1.0),
    "SeriesNumber": ("SeriesNumber", 1.0),
    "AcquisitionNumber": ("AcquisitionNumber", 1.0),
    "KVP": ("KVP", 1.0),
    "XRayTubeCurrent": ("XRayTubeCurrent", 1.0),
    "ExposureTime": ("ExposureTime", 0.001),
}
_TEXTS = {
    "Modality": "Modality",
    "Manufacturer": "Manufacturer",
    "ManufacturersModelName": "ManufacturerModelName",
    "InstitutionName": "InstitutionName",
    "StationName": "StationName",
    "DeviceSerialNumber": "DeviceSerialNumber",
    "SoftwareVersions": "SoftwareVersions",
    "BodyPartExamined": "BodyPartExamined",
    "PatientPosition": "PatientPosition",
    "ProcedureStepDescription": "PerformedProcedureStepDescription",
    "SeriesDescription": "SeriesDescription",
    "ProtocolName": "ProtocolName",
    "ScanningSequence": "ScanningSequence",
    "SequenceVariant": "SequenceVariant",
    "ScanOptions": "ScanOptions",
    "SequenceName": "SequenceName",
    "MRAcquisitionType": "MRAcquisitionType",
    "ReceiveCoilName": "ReceiveCoilName",
    "ConvolutionKernel": "ConvolutionKernel",
    "ImageComments": "ImageComments",
    "SeriesInstanceUID": "SeriesInstanceUID",
    "StudyInstanceUID": "StudyInstanceUID",
}


def sidecar(ds, info: VolumeInfo, version: str) -> dict:
    """The BIDS-style JSON sidecar of a written volume, from the header of its first image."""
    out: dict[str, Any] = {}
    for name, keyword in _TEXTS.items():
        text = _s(ds, keyword).replace("_", " ") if keyword in ("ScanningSequence",) else _s(ds, keyword)
        if text:
            out[name] = text
    if ds is not None and ds.get("ImageType"):
        out["ImageType"] = [str(x) for x in ds.ImageType]
    time = _s(ds, "AcquisitionTime")
    if len(time) >= 6:
        out["AcquisitionTime"] = f"{time[0:2]}:{time[2:4]}:{time[4:]}"
    for name, (keyword, scale) in _NUMBERS.items():
        value = ds.get(keyword) if ds is not None else None
        if value is None:
            continue
        try:
            number = float(value[0] if isinstance(value, list | tuple) else value)
        except (TypeError, ValueError, IndexError):
            continue
        number *= scale
        out[name] = int(number) if number.is_integer() and scale == 1.0 else round(number, 9)
    direction = _s(ds, "InPlanePhaseEncodingDirection").upper()
    if direction.startswith("COL"):
        out["PhaseEncodingAxis"] = "j"
    elif direction.startswith("ROW"):
        out["PhaseEncodingAxis"] = "i"
    timing = _slice_timing(ds)
    if timing:
        out["SliceTiming"] = timing
    if info.bvals is not None:
        out["DiffusionVolumes"] = len(info.bvals)
    if info.time_axis and info.time_unit == "s" and len(info.time_axis) > 1:
        out["VolumeTiming"] = [round(t, 6) for t in info.time_axis]
    out["ImageOrientationPatientDICOM"] = [float(x) for x in (info.frames[0].orientation or ())]
    out["ConversionSoftware"] = "dicomplus"
    out["ConversionSoftwareVersion"] = version
    if info.warnings:
        out["ConversionWarnings"] = [f"[{w.code}] {w.message}" for w in info.warnings]
    return out


def _slice_timing(ds) -> list[float] | None:
    """Siemens MosaicRefAcqTimes (0019,1029), ms from the start of the volume -> seconds."""
    if ds is None:
        return None
    element = ds.get(0x00191029)
    if element is None or not _s(ds, "Manufacturer").upper().startswith("SIEMENS"):
        return None
    value = element.value
    if isinstance(value, bytes):
        value = struct.unpack(f"<{len(value) // 8}d", value[: len(value) // 8 * 8])
    try:
        values = [float(x) for x in (value if isinstance(value, list | tuple) else list(value))]
    except (TypeError, ValueError):
        return None
    return [round(x / 1000.0, 6) for x in values] or None
