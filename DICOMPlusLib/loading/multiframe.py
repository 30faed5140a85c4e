"""Enhanced (and legacy) multi-frame objects: one attribute view per frame.

An enhanced object (PS3.3 C.7.6.16, Multi-frame Functional Groups) keeps per-frame attributes in
PerFrameFunctionalGroupsSequence and attributes common to every frame in
SharedFunctionalGroupsSequence; each item holds functional group macros (Plane Position, Plane
Orientation, Pixel Measures, Pixel Value Transformation, Frame Content, ...). This module
flattens them, per frame, into the keywords a classic single-frame image would use, so the
grouping and geometry code is the same for both and an enhanced object equals its classic twin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# functional group sequence -> [(attribute inside it, classic keyword it stands for)]
_MACROS: dict[str, list[tuple[str, str]]] = {
    "PlanePositionSequence": [("ImagePositionPatient", "ImagePositionPatient")],
    "PlaneOrientationSequence": [("ImageOrientationPatient", "ImageOrientationPatient")],
    "PixelMeasuresSequence": [
        ("PixelSpacing", "PixelSpacing"),
        ("SliceThickness", "SliceThickness"),
        ("SpacingBetweenSlices", "SpacingBetweenSlices"),
    ],
    "PixelValueTransformationSequence": [
        ("RescaleSlope", "RescaleSlope"),
        ("RescaleIntercept", "RescaleIntercept"),
    ],
    "FrameVOILUTSequence": [("WindowCenter", "WindowCenter"), ("WindowWidth", "WindowWidth")],
    "FrameContentSequence": [
        ("TemporalPositionIndex", "TemporalPositionIdentifier"),
        ("FrameAcquisitionDateTime", "AcquisitionDateTime"),
        ("FrameAcquisitionNumber", "AcquisitionNumber"),
        ("StackID", "StackID"),
        ("InStackPositionNumber", "InStackPositionNumber"),
        ("DimensionIndexValues", "DimensionIndexValues"),
    ],
    "CardiacSynchronizationSequence": [("NominalCardiacTriggerDelayTime", "TriggerTime")],
    "MREchoSequence": [("EffectiveEchoTime", "EchoTime")],
    "MRTimingAndRelatedParametersSequence": [("RepetitionTime", "RepetitionTime")],
    "CTAcquisitionDetailsSequence": [("GantryDetectorTilt", "GantryDetectorTilt")],
    "MRImageFrameTypeSequence": [("FrameType", "ImageType")],
    # MR Diffusion Macro (PS3.3 C.8.13.5.9); the orientation is one level deeper, read by diffusion.read
    "MRDiffusionSequence": [
        ("DiffusionBValue", "DiffusionBValue"),
        ("DiffusionDirectionality", "DiffusionDirectionality"),
        ("DiffusionGradientDirectionSequence", "DiffusionGradientDirectionSequence"),
    ],
    "CTImageFrameTypeSequence": [("FrameType", "ImageType")],
    "PETFrameTypeSequence": [("FrameType", "ImageType")],
    "XAXRFFrameCharacteristicsSequence": [],
    "UnassignedPerFrameConvertedAttributesSequence": [],
}


def _flatten(item: Dataset | None, into: dict[str, Any]) -> None:
    if item is None:
        return
    for sequence, pairs in _MACROS.items():
        seq = item.get(sequence)
        if not seq:
            continue
        macro = seq[0]
        for inner, keyword in pairs:
            value = macro.get(inner)
            if value is not None and value != "":
                into[keyword] = value
    # Converted legacy objects (PS3.3 C.7.6.16.2.25) keep unassigned attributes as they are.
    for name in (
        "UnassignedPerFrameConvertedAttributesSequence",
        "UnassignedSharedConvertedAttributesSequence",
    ):
        seq = item.get(name)
        if seq:
            for element in seq[0]:
                if element.keyword and element.VR != "SQ":
                    into.setdefault(element.keyword, element.value)


def is_enhanced(ds: Dataset) -> bool:
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def frame_attributes(ds: Dataset) -> list[Callable[[str], Any]]:
    """One ``get(keyword)`` per frame: the per-frame groups, then the shared groups, then the
    top-level data set (PS3.3 C.7.6.16: a per-frame value overrides a shared one)."""
    count = int(ds.get("NumberOfFrames") or 1)
    shared: dict[str, Any] = {}
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    _flatten(shared_seq[0] if shared_seq else None, shared)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    getters = []
    for index in range(count):
        values = dict(shared)
        if index < len(per_frame):
            own: dict[str, Any] = {}
            _flatten(per_frame[index], own)
            values.update(own)
        getters.append(_getter(values, ds))
    return getters


def _getter(values: dict[str, Any], ds: Dataset) -> Callable[[str], Any]:
    def get(keyword: str) -> Any:
        if keyword in values:
            return values[keyword]
        try:
            return ds.get(keyword)
        except Exception:  # a malformed top-level value must not lose the frame
            return None

    return get
