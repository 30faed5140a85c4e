"""Frozen records that cross the library's boundaries (database, network, CLI, Slicer).

Attributes that are DICOM attributes carry their DICOM keyword as name, so a record turns into
the JSON the CLI prints (keyed by keyword) without a mapping table.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Literal


class QueryLevel(enum.Enum):
    PATIENT = "patient"
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"

    @classmethod
    def parse(cls, value: str | QueryLevel) -> QueryLevel:
        if isinstance(value, QueryLevel):
            return value
        text = value.strip().lower()
        if text == "image":
            text = "instance"
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown level {value!r}: use patient, study, series or instance") from None

    @property
    def dicom(self) -> str:
        """The QueryRetrieveLevel string (PS3.4 C.6)."""
        return {"patient": "PATIENT", "study": "STUDY", "series": "SERIES", "instance": "IMAGE"}[self.value]


class _Record:
    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "extra":
                out.update(value)
            elif value is not None:
                out[f.name] = value
        return out


# Every dataclass here has a docstring: without one, @dataclass makes one from inspect.signature
# as the module is imported (~0.15 ms a class, in every command's start-up).
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


@dataclass(frozen=True)
class InstanceRecord(_Record):
    """An instance as the database indexed it (``path``: its file; ``pixel_offset`` and
    ``pixel_length``: where its pixel data is in that file)."""

    SOPInstanceUID: str
    SeriesInstanceUID: str = ""
    StudyInstanceUID: str = ""
    PatientID: str = ""
    SOPClassUID: str = ""
    TransferSyntaxUID: str = ""
    InstanceNumber: int | None = None
    NumberOfFrames: int | None = None
    Rows: int | None = None
    Columns: int | None = None
    path: str = ""
    size: int | None = None
    pixel_offset: int | None = None
    pixel_length: int | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


#: Any record a search or a query yields; which one is decided by the level asked for.
Record = PatientRecord | StudyRecord | SeriesRecord | InstanceRecord
#: The spellings of each level, for the ``typing.overload``\ s of searches and queries: a caller
#: asking for ``"series"`` gets :class:`SeriesRecord`\ s, checked by mypy.
PatientLevel = Literal[QueryLevel.PATIENT, "patient"]
StudyLevel = Literal[QueryLevel.STUDY, "study"]
SeriesLevel = Literal[QueryLevel.SERIES, "series"]
InstanceLevel = Literal[QueryLevel.INSTANCE, "instance", "image"]


@dataclass(frozen=True)
class SkippedFile:
    """A file an import, a load or a send did not take, and why."""

    path: str
    reason: str


@dataclass
class ImportReport:
    """What an import did. ``added`` counts new instances committed to the database."""

    added: int = 0
    unchanged: int = 0
    duplicates: int = 0
    replaced: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0
    files_seen: int = 0

    def to_dict(self) -> dict:
        return {
            "added": self.added,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "replaced": self.replaced,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "cancelled": self.cancelled,
            "seconds": round(self.seconds, 3),
            "files_seen": self.files_seen,
        }


@dataclass
class DeleteReport:
    """What a delete removed (or, with ``dry_run``, would remove)."""

    patients: list[str] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    instances: int = 0
    files_removed: list[str] = field(default_factory=list)
    files_kept: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TransferReport:
    """Per-instance outcome of a retrieve or a send."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already present (resume)
    failed: dict[str, str] = field(default_factory=dict)  # SOPInstanceUID (or file) -> reason
    expected: int = 0
    cancelled: bool = False

    @property
    def complete(self) -> bool:
        return not self.cancelled and not self.failed and len(self.done) + len(self.skipped) >= self.expected

    def to_dict(self) -> dict:
        return {
            "done": len(self.done),
            "skipped": len(self.skipped),
            "failed": self.failed,
            "expected": self.expected,
            "cancelled": self.cancelled,
            "complete": self.complete,
        }
