"""Rows of the SQLite back end as the records that cross the library's boundaries."""

from __future__ import annotations

import sqlite3

from DICOMPlusLib.models import InstanceRecord


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
