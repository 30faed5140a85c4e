"""Rows of the SQLite back end as the records that cross the library's boundaries."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

from DICOMPlusLib.models import InstanceRecord

if TYPE_CHECKING:
    from DICOMPlusLib.database.parsing import ParsedFile

T = TypeVar("T")


def instance_record(row: sqlite3.Row) -> InstanceRecord:
    """An instances row (joined with its series and patient) as a record."""
    return InstanceRecord(
        SOPInstanceUID=row["SOPInstanceUID"],
        SeriesInstanceUID=row["SeriesInstanceUID"],
        StudyInstanceUID=row["StudyInstanceUID"],
        PatientID=row["PatientID"],
        SOPClassUID=row["SOPClassUID"],
        TransferSyntaxUID=row["TransferSyntaxUID"],
        InstanceNumber=row["InstanceNumber"],
        NumberOfFrames=row["NumberOfFrames"],
        Rows=row["Rows"],
        Columns=row["Columns"],
        path=row["path"],
        size=row["size"],
        pixel_offset=row["pixel_offset"],
        pixel_length=row["pixel_length"],
    )


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size`` (SQL ``IN (...)`` lists stay below bound-parameter limits)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def placed_record(
    values: Mapping[str, object], item: ParsedFile, transfer_syntax: str, path: str
) -> InstanceRecord:
    """The record of an instance a back end has just placed at ``path`` and indexed from the
    parsed ``values`` (both back ends commit the same record)."""
    return InstanceRecord(
        SOPInstanceUID=str(values["SOPInstanceUID"]),
        SeriesInstanceUID=str(values["SeriesInstanceUID"]),
        StudyInstanceUID=str(values["StudyInstanceUID"]),
        PatientID=str(values["PatientID"]),  # as the patient row stores it
        SOPClassUID=str(values.get("SOPClassUID") or ""),
        TransferSyntaxUID=transfer_syntax,
        InstanceNumber=values["InstanceNumber"],  # type: ignore[arg-type]  # int | None, as parsed
        NumberOfFrames=values["NumberOfFrames"],  # type: ignore[arg-type]
        Rows=values["Rows"],  # type: ignore[arg-type]
        Columns=values["Columns"],  # type: ignore[arg-type]
        path=path,
        size=item.size,
        pixel_offset=item.pixel_offset,
        pixel_length=item.pixel_length,
    )
