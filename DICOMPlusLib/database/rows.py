"""Rows of the SQLite back end as the records that cross the library's boundaries, and parsed
files as the rows a batch commit writes (one ``executemany`` per table)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

from DICOMPlusLib.database.names import normalize_pn
from DICOMPlusLib.models import InstanceRecord

if TYPE_CHECKING:
    from DICOMPlusLib.database.backend import Connection
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


INSERT_STUDY = (
    "INSERT OR IGNORE INTO studies (StudyInstanceUID, patient, StudyDate, StudyTime, StudyDescription,"
    " AccessionNumber, StudyID, ReferringPhysicianName, ReferringPhysicianNameNorm, inserted)"
    " VALUES (?,?,?,?,?,?,?,?,?,?)"
)
INSERT_SERIES = (
    "INSERT OR IGNORE INTO series (SeriesInstanceUID, StudyInstanceUID, Modality, SeriesNumber,"
    " SeriesDescription, SeriesDate, SeriesTime, BodyPartExamined, inserted) VALUES (?,?,?,?,?,?,?,?,?)"
)
INSERT_INSTANCE = (
    "INSERT OR REPLACE INTO instances (SOPInstanceUID, SeriesInstanceUID, SOPClassUID,"
    " TransferSyntaxUID, InstanceNumber, NumberOfFrames, Rows, Columns, path, linked, size, mtime,"
    " pixel_offset, pixel_length, header, source, inserted) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
INSERT_SOURCE = (
    "INSERT OR REPLACE INTO sources (path, size, mtime, SOPInstanceUID, reason) VALUES (?,?,?,?,?)"
)


def stored_instances(conn: Connection, sops: list[str]) -> dict[str, tuple[str, int, str, str]]:
    """(path, linked, source, SeriesInstanceUID) of those of ``sops`` that are stored already."""
    found: dict[str, tuple[str, int, str, str]] = {}
    for chunk in chunks(sorted(set(sops)), 500):
        for row in conn.execute(
            "SELECT SOPInstanceUID, path, linked, source, SeriesInstanceUID FROM instances"
            f" WHERE SOPInstanceUID IN ({','.join('?' * len(chunk))})",
            chunk,
        ):
            found[row[0]] = (row[1], row[2], row[3], row[4])
    return found


def study_row(v: dict, study: str, patient: int, now: float) -> tuple:
    return (
        study,
        patient,
        v["StudyDate"],
        v["StudyTime"],
        v["StudyDescription"],
        v["AccessionNumber"],
        v["StudyID"],
        v["ReferringPhysicianName"],
        normalize_pn(str(v["ReferringPhysicianName"])),
        now,
    )


def series_row(v: dict, series: str, study: str, now: float) -> tuple:
    return (
        series,
        study,
        v["Modality"],
        v["SeriesNumber"],
        v["SeriesDescription"],
        v["SeriesDate"],
        v["SeriesTime"],
        v["BodyPartExamined"],
        now,
    )


def instance_row(item: ParsedFile, sop: str, series: str, path: str, linked: bool, now: float) -> tuple:
    v = item.values
    return (
        sop,
        series,
        v["SOPClassUID"],
        item.transfer_syntax,
        v["InstanceNumber"],
        v["NumberOfFrames"],
        v["Rows"],
        v["Columns"],
        path,
        int(linked),
        item.size,
        item.mtime,
        item.pixel_offset,
        item.pixel_length,
        item.header,
        item.source,
        now,
    )


def working_folder() -> str:
    """The current folder, or "" when it was deleted (a shell left in a removed folder): absolute
    paths still import there, and a relative one could not be opened anyway."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        return ""


def absolute(path: str, cwd: str | None = None) -> str:
    """``os.path.abspath(path)``, against the working folder ``cwd`` when the caller looked it up
    once for a batch (``getcwd`` is a system call), else against the current one."""
    if os.path.isabs(path):
        return os.path.normpath(path)
    return os.path.normpath(os.path.join(cwd if cwd is not None else os.getcwd(), path))


def source_row(
    rows: list[tuple], item: ParsedFile, sop: str | None, reason: str, cwd: str | None = None
) -> None:
    """What an import saw at the item's source path (nothing for received data, which has none)."""
    if item.source:
        rows.append((absolute(item.source, cwd), item.size, item.mtime, sop, reason))
