"""DICOM keywords and their VRs (PS3.6), read from pydicom's data dictionary without importing
pydicom.

``import pydicom`` also imports numpy and every pixel decoder plugin it finds (GDCM, pylibjpeg,
pyjpegls): about half a second that a ``dicomplus search PatientName=...`` does not need. The
dictionary itself is one plain module of literals (``pydicom/_dicom_dict.py``), loaded here
on its own; when pydicom is already imported, its own copy is used.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

#: The keywords people search by most (the database's columns), so that the common search does
#: not load the whole dictionary. Values from PS3.6; a test checks them against pydicom's.
COMMON: dict[str, tuple[int, str]] = {
    "PatientID": (0x00100020, "LO"),
    "PatientName": (0x00100010, "PN"),
    "PatientBirthDate": (0x00100030, "DA"),
    "PatientSex": (0x00100040, "CS"),
    "StudyInstanceUID": (0x0020000D, "UI"),
    "StudyDate": (0x00080020, "DA"),
    "StudyTime": (0x00080030, "TM"),
    "StudyDescription": (0x00081030, "LO"),
    "AccessionNumber": (0x00080050, "SH"),
    "StudyID": (0x00200010, "SH"),
    "ReferringPhysicianName": (0x00080090, "PN"),
    "ModalitiesInStudy": (0x00080061, "CS"),
    "SeriesInstanceUID": (0x0020000E, "UI"),
    "Modality": (0x00080060, "CS"),
    "SeriesNumber": (0x00200011, "IS"),
    "SeriesDescription": (0x0008103E, "LO"),
    "SeriesDate": (0x00080021, "DA"),
    "SeriesTime": (0x00080031, "TM"),
    "BodyPartExamined": (0x00180015, "CS"),
    "SOPInstanceUID": (0x00080018, "UI"),
    "SOPClassUID": (0x00080016, "UI"),
    "InstanceNumber": (0x00200013, "IS"),
    "NumberOfFrames": (0x00280008, "IS"),
    "Rows": (0x00280010, "US"),
    "Columns": (0x00280011, "US"),
}
_COMMON_LOWER = {k.lower(): k for k in COMMON}


@functools.cache
def _entries() -> dict[str, tuple[int, str]]:
    """keyword -> (tag, VR)."""
    if "pydicom.datadict" in sys.modules:
        dictionary = sys.modules["pydicom.datadict"].DicomDictionary
    else:
        spec = importlib.util.find_spec("pydicom")
        if spec is None or spec.origin is None:
            raise ImportError("pydicom is not installed")
        path = Path(spec.origin).with_name("_dicom_dict.py")
        loader_spec = importlib.util.spec_from_file_location("_dicomplus_pydicom_dictionary", path)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError(f"cannot load pydicom's dictionary from {path}")
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
        dictionary = module.DicomDictionary
    return {entry[4]: (tag, entry[0]) for tag, entry in dictionary.items() if entry[4]}


def vr_of(keyword: str) -> str | None:
    """The VR of a keyword (the first one where PS3.6 allows several), None if unknown."""
    found = COMMON.get(keyword) or _entries().get(keyword)
    return found[1].split(" or ")[0] if found else None


def tag_of(keyword: str) -> int | None:
    found = COMMON.get(keyword) or _entries().get(keyword)
    return found[0] if found else None


def common_keyword(text: str) -> str | None:
    """``studydate`` -> ``StudyDate`` for the common keywords (no dictionary loaded)."""
    return _COMMON_LOWER.get(text.lower())


def all_keywords() -> list[str]:
    return list(_entries())
