"""Frozen records that cross the library's boundaries (database, network, CLI, Slicer).

Attributes that are DICOM attributes carry their DICOM keyword as name, so a record turns into
the JSON the CLI prints (keyed by keyword) without a mapping table.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Literal

from DICOMPlusLib import dataclasses_lite
from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.record_base import DictRecord as _Record

if TYPE_CHECKING:
    from DICOMPlusLib.query_records import PatientRecord as PatientRecord
    from DICOMPlusLib.query_records import SeriesRecord as SeriesRecord
    from DICOMPlusLib.query_records import StudyRecord as StudyRecord


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


# Every dataclass here has a docstring: without one, @dataclass makes one from inspect.signature
# as the module is imported (~0.15 ms a class, in every command's start-up).
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


if TYPE_CHECKING:
    #: Any record a search or a query yields; which one is decided by the level asked for (made
    #: with the three query records, on first use: :func:`__getattr__`).
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
        return dataclasses_lite.asdict(self)


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


#: Made on first use, in :mod:`DICOMPlusLib.query_records`: what only a search or a query answers.
_QUERY_RECORDS = frozenset({"PatientRecord", "StudyRecord", "SeriesRecord", "Record"})


def __getattr__(name: str) -> object:
    """``PatientRecord``, ``StudyRecord``, ``SeriesRecord`` and ``Record`` from
    :mod:`DICOMPlusLib.query_records`, imported when first asked for: making a frozen dataclass
    costs ~0.5-1 ms, and a command that only imports files or sends them never needs these three
    (PEP 562)."""
    if name in _QUERY_RECORDS:
        from DICOMPlusLib import query_records  # on first use: what only a search or a query needs

        made = {n: getattr(query_records, n) for n in ("PatientRecord", "StudyRecord", "SeriesRecord")}
        made["Record"] = made["PatientRecord"] | made["StudyRecord"] | made["SeriesRecord"] | InstanceRecord
        globals().update(made)
        return made[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
