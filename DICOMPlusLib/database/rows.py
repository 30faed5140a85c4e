"""Rows of the SQLite back end as the records that cross the library's boundaries."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import TypeVar

from DICOMPlusLib.models import InstanceRecord

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
