"""The destination study: its stored header, and the patient and study modules copied from it.

Everything DICOMPlus writes into an existing study (a volume, a SEG, a Data Bundle) carries the
Patient, Clinical Trial Subject, General Study, Patient Study and Clinical Trial Study modules
(PS3.3 C.7.1.1, C.7.1.3, C.7.2.1, C.7.2.2, C.7.2.3) of an instance already in that study, so
the new series files under the same patient and study everywhere (dcentvfy checks exactly this:
one value per patient and study attribute across files). Values are decoded with the reference's
character set and written as UTF-8 (``ISO_IR 192``), so names in any character set survive.
"""

from __future__ import annotations

import copy
import datetime

from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.valuerep import PersonName, validate_value

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.errors import ExportError
from DICOMPlusLib.export.uids import UIDGenerator, new_uid, validate_uid

logger = get_logger(__name__)

#: What we write: UTF-8 (PS3.3 C.12.1.1.2).
CHARACTER_SET = "ISO_IR 192"

PATIENT_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "TypeOfPatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "QualityControlSubject",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "EthnicGroup",
    "PatientComments",
    "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence",
    "PatientBreedDescription",
    "PatientBreedCodeSequence",
    "BreedRegistrationSequence",
    "ResponsiblePerson",
    "ResponsiblePersonRole",
    "ResponsibleOrganization",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    # Clinical Trial Subject
    "ClinicalTrialSponsorName",
    "ClinicalTrialProtocolID",
    "ClinicalTrialProtocolName",
    "ClinicalTrialSiteID",
    "ClinicalTrialSiteName",
    "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID",
)

STUDY_KEYWORDS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence",
    "StudyID",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "StudyDescription",
    "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy",
    "RequestingServiceCodeSequence",
    "ProcedureCodeSequence",
    # Patient Study
    "AdmittingDiagnosesDescription",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "Occupation",
    "AdditionalPatientHistory",
    "AdmissionID",
    "PatientSexNeutered",
    "PregnancyStatus",
    # Clinical Trial Study
    "ClinicalTrialTimePointID",
    "ClinicalTrialTimePointDescription",
)

#: Type 2 attributes of the Patient and General Study modules: present, empty when unknown.
TYPE2_DEFAULTS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def _valid(vr: str, value) -> bool:
    if vr == "SQ" or value is None or value == "":
        return True
    values = value if isinstance(value, list) else [value]
    try:
        for item in values:
            validate_value(vr, item, config.RAISE)
    except (ValueError, TypeError):
        return False
    return True


def _decoded(value, vr: str):
    """A copy of an element value with text decoded (no raw bytes in the old character set)."""
    if vr == "SQ":
        return Sequence([_decoded_dataset(item) for item in value])
    if vr == "PN":
        if isinstance(value, MultiValue | list | tuple):
            return [PersonName(str(v)) for v in value]
        return PersonName(str(value)) if value is not None else ""
    if isinstance(value, MultiValue):
        return list(value)
    return copy.deepcopy(value)


def _decoded_dataset(ds: Dataset) -> Dataset:
    out = Dataset()
    for elem in ds:  # iterating converts raw elements, decoding text with ds's character set
        if elem.tag.is_private or elem.tag.element == 0:
            continue
        out.add_new(elem.tag, elem.VR, _decoded(elem.value, elem.VR))
    return out


def copy_patient_and_study(
    reference: Dataset | None, target: Dataset, *, uids: UIDGenerator | None = None
) -> str:
    """Copy the patient and study modules of ``reference`` into ``target``; return the
    StudyInstanceUID. Without a reference, a new study with empty Type 2 attributes.

    Raises :class:`ExportError` if the reference's StudyInstanceUID is not a valid UID.
    """
    target.SpecificCharacterSet = CHARACTER_SET
    if reference is not None:
        study_uid = str(reference.get("StudyInstanceUID") or "")
        validate_uid(study_uid, "StudyInstanceUID of the reference study")
        # Identifying (Type 2) attributes are copied as they are, even slightly malformed: the
        # new series must file under the same patient and study. Any other copied attribute
        # whose value is invalid for its VR (e.g. PatientAge "0Y") is left out rather than
        # propagated into a new object.
        with config.disable_value_validation():
            for keyword in (*PATIENT_KEYWORDS, *STUDY_KEYWORDS):
                if keyword not in reference:
                    continue
                elem = reference[keyword]
                vr = elem.VR if elem.VR not in ("UN", "") else dictionary_VR(elem.tag)
                value = _decoded(elem.value, vr)
                if keyword not in TYPE2_DEFAULTS and not _valid(vr, value):
                    logger.debug("not copying %s %r: invalid for VR %s", keyword, value, vr)
                    continue
                target.add_new(elem.tag, vr, value)
    else:
        study_uid = new_uid(uids)
        target.StudyInstanceUID = study_uid
        now = datetime.datetime.now()
        target.StudyDate = now.strftime("%Y%m%d")
        target.StudyTime = now.strftime("%H%M%S")
    for keyword in TYPE2_DEFAULTS:
        if keyword not in target:
            target.add_new(Tag(keyword), dictionary_VR(keyword), "")
    return study_uid


def series_laterality(reference: Dataset | None, body_part: str) -> str | None:
    """Laterality (0020,0060) for a new series of the reference's study; None: leave it out.

    Type 2C (PS3.3 C.7.3.1): required for a paired body part unless the image says it. With the
    reference's own body part, follow the reference (its value, or absent like it); with no body
    part, or another one, the laterality is unknown: present and empty, as the Standard allows.
    """
    ref_part = str(reference.get("BodyPartExamined") or "").upper() if reference is not None else ""
    if body_part and reference is not None and body_part == ref_part:
        value = reference.get("Laterality")
        if value is None:
            return None
        value = str(value).strip().upper()
        return value if value in ("R", "L") else ""
    return ""


def study_reference(db, study_uid: str, *, scan: int = 50) -> Dataset:
    """The stored header of an instance of ``study_uid`` in ``db`` to copy the study from.

    Prefers an image that has a FrameOfReferenceUID (so the frame of reference can be reused);
    raises :class:`ExportError` when the study is not in the database.
    """
    validate_uid(study_uid, "StudyInstanceUID")
    records = db.search("instance", {"StudyInstanceUID": study_uid}, limit=scan)
    if not records:
        raise ExportError(
            f"study {study_uid} is not in the database ({db.path}); import or retrieve it first, "
            "or choose another study (dicomplus search --level study)"
        )
    first = None
    for record in records:
        header = db.header(record.SOPInstanceUID)
        if first is None:
            first = header
        if header.get("FrameOfReferenceUID") and header.get("ImagePositionPatient") is not None:
            return header
    assert first is not None, "records is not empty"
    return first


def next_series_number(db, study_uid: str) -> int:
    """One more than the largest SeriesNumber in the study (1 for an empty one)."""
    numbers = [r.SeriesNumber for r in db.search("series", {"StudyInstanceUID": study_uid})]
    numbers = [int(n) for n in numbers if n is not None]
    return max(numbers, default=0) + 1
