"""The records a search or a query answers at the PATIENT, STUDY and SERIES levels (PS3.4
C.6.1.1).

Part of :mod:`DICOMPlusLib.models`, which imports this module the first time one of them (or
``Record``, their union with ``InstanceRecord``) is asked for: ``from DICOMPlusLib.models import
StudyRecord`` works as before, and a command which never searches or queries (an import, a send)
does not make these frozen dataclasses as it starts. It imports nothing of ``models`` (no cycle).
"""

from __future__ import annotations

from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.record_base import DictRecord as _Record

# Every dataclass here has a docstring: without one, @dataclass makes one from inspect.signature
# as the module is imported (~0.15 ms a class).


@dataclass(frozen=True)
class PatientRecord(_Record):
    """A patient as a search or a query at the PATIENT level answers it."""

    PatientID: str
    PatientName: str = ""
    PatientBirthDate: str = ""
    PatientSex: str = ""
    NumberOfPatientRelatedStudies: int | None = None
    NumberOfPatientRelatedSeries: int | None = None
    NumberOfPatientRelatedInstances: int | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class StudyRecord(_Record):
    """A study as a search or a query at the STUDY level answers it."""

    StudyInstanceUID: str
    PatientID: str = ""
    PatientName: str = ""
    PatientBirthDate: str = ""
    PatientSex: str = ""
    StudyDate: str = ""
    StudyTime: str = ""
    StudyDescription: str = ""
    AccessionNumber: str = ""
    StudyID: str = ""
    ReferringPhysicianName: str = ""
    ModalitiesInStudy: str = ""
    NumberOfStudyRelatedSeries: int | None = None
    NumberOfStudyRelatedInstances: int | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class SeriesRecord(_Record):
    """A series as a search or a query at the SERIES level answers it."""

    SeriesInstanceUID: str
    StudyInstanceUID: str = ""
    PatientID: str = ""
    PatientName: str = ""
    Modality: str = ""
    SeriesNumber: int | None = None
    SeriesDescription: str = ""
    SeriesDate: str = ""
    SeriesTime: str = ""
    BodyPartExamined: str = ""
    NumberOfSeriesRelatedInstances: int | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)
