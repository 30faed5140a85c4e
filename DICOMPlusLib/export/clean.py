"""Values copied from a source into a new object are checked, and invalid ones cleaned and reported.

A new series carries the patient and study modules of the images it derives from (PS3.3 C.7.1.1,
C.7.2.1). Real archives hold values that break their VR (StudyDate ``***``, PatientAge ``0Y``,
times with letters); copied into a new object they make writers refuse it (highdicom converts
DA/TM/DT values and raises) or make the new object invalid. Type 2 attributes (PS3.5 7.4.5:
present, possibly empty) are written empty; any other invalid attribute is left out. Every
change is an :class:`ExportNote`, so the user sees what the new object does not repeat.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

from pydicom import config
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.valuerep import validate_value

from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.export.reference import PATIENT_KEYWORDS, STUDY_KEYWORDS, TYPE2_DEFAULTS


@dataclass(frozen=True)
class ExportNote:
    """Something an export changed or decided that the user should know. ``code`` is stable."""

    code: str
    message: str

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


def _invalid(vr: str, value) -> str:
    """Why ``value`` is not valid for ``vr`` ("" when it is)."""
    if vr in ("SQ", "UN", "OB", "OW") or value is None or value == "":
        return ""
    values = value if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" else [value]
    try:
        for item in values:
            validate_value(
                vr, item if isinstance(item, str | bytes | int | float) else str(item), config.RAISE
            )
    except (ValueError, TypeError) as exc:
        return str(exc).strip() or "invalid"
    return ""


def _raw_value(element):
    value = element.value
    if isinstance(value, bytes) and element.VR not in ("OB", "OW", "UN"):
        return value.decode("latin-1", "replace")
    return value


def clean_copied_values(
    datasets: Sequence[Dataset], keywords: Iterable[str] = (*PATIENT_KEYWORDS, *STUDY_KEYWORDS)
) -> tuple[list[Dataset], list[ExportNote]]:
    """Copies of ``datasets`` (only those that need a change; the others are returned as they
    are) whose ``keywords`` hold valid values, and one note per attribute and value changed."""
    keywords = tuple(keywords)
    out: list[Dataset] = []
    notes: dict[tuple[str, str], ExportNote] = {}
    for ds in datasets:
        changes: list[tuple[str, str, str]] = []
        with config.disable_value_validation():
            for keyword in keywords:
                if keyword not in ds:
                    continue
                element = ds[keyword]
                vr = element.VR if element.VR not in ("UN", "") else dictionary_VR(element.tag)
                try:
                    value = _raw_value(element)
                except Exception as exc:  # a value pydicom cannot even decode
                    changes.append((keyword, "?", str(exc)))
                    continue
                why = _invalid(vr, value)
                if why:
                    changes.append((keyword, str(value), why))
        if not changes:
            out.append(ds)
            continue
        fixed = copy.deepcopy(ds)
        for keyword, shown, why in changes:
            tag = fixed[keyword].tag
            if keyword in TYPE2_DEFAULTS:
                fixed[keyword].value = ""
                action = "written empty"
            else:
                del fixed[tag]
                action = "left out"
            vr = dictionary_VR(tag)
            notes.setdefault(
                (keyword, shown),
                ExportNote(
                    "invalid_value_cleaned",
                    f"{keyword_for_tag(tag) or keyword} {shown!r} copied from the source is not a valid {vr}: "
                    f"{action}" + (f" ({why})" if shown == "?" else ""),
                ),
            )
        out.append(fixed)
    return out, list(notes.values())
