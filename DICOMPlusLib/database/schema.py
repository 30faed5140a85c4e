"""The SQLite schema and its in-place migrations (``PRAGMA user_version``).

Columns are named by DICOM keyword. A new schema version appends a migration to
:data:`MIGRATIONS`; opening an older database runs the missing ones in one transaction. Nothing
ever forces a re-index.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from DICOMPlusLib.errors import DatabaseError

_V1 = """
CREATE TABLE patients (
    id INTEGER PRIMARY KEY,
    PatientID TEXT NOT NULL DEFAULT '',
    PatientName TEXT NOT NULL DEFAULT '',
    PatientNameNorm TEXT NOT NULL DEFAULT '',
    PatientBirthDate TEXT NOT NULL DEFAULT '',
    PatientSex TEXT NOT NULL DEFAULT '',
    UNIQUE (PatientID, PatientName)
);
CREATE INDEX patients_name ON patients (PatientNameNorm);

CREATE TABLE studies (
    StudyInstanceUID TEXT PRIMARY KEY,
    patient INTEGER NOT NULL REFERENCES patients (id),
    StudyDate TEXT NOT NULL DEFAULT '',
    StudyTime TEXT NOT NULL DEFAULT '',
    StudyDescription TEXT NOT NULL DEFAULT '',
    AccessionNumber TEXT NOT NULL DEFAULT '',
    StudyID TEXT NOT NULL DEFAULT '',
    ReferringPhysicianName TEXT NOT NULL DEFAULT '',
    ReferringPhysicianNameNorm TEXT NOT NULL DEFAULT '',
    ModalitiesInStudy TEXT NOT NULL DEFAULT '',
    NumberOfStudyRelatedSeries INTEGER NOT NULL DEFAULT 0,
    NumberOfStudyRelatedInstances INTEGER NOT NULL DEFAULT 0,
    inserted REAL NOT NULL DEFAULT 0
);
CREATE INDEX studies_patient ON studies (patient);
CREATE INDEX studies_date ON studies (StudyDate);
CREATE INDEX studies_accession ON studies (AccessionNumber);

CREATE TABLE series (
    SeriesInstanceUID TEXT PRIMARY KEY,
    StudyInstanceUID TEXT NOT NULL REFERENCES studies (StudyInstanceUID),
    Modality TEXT NOT NULL DEFAULT '',
    SeriesNumber INTEGER,
    SeriesDescription TEXT NOT NULL DEFAULT '',
    SeriesDate TEXT NOT NULL DEFAULT '',
    SeriesTime TEXT NOT NULL DEFAULT '',
    BodyPartExamined TEXT NOT NULL DEFAULT '',
    NumberOfSeriesRelatedInstances INTEGER NOT NULL DEFAULT 0,
    inserted REAL NOT NULL DEFAULT 0
);
CREATE INDEX series_study ON series (StudyInstanceUID);
CREATE INDEX series_modality ON series (Modality, StudyInstanceUID);

CREATE TABLE instances (
    SOPInstanceUID TEXT PRIMARY KEY,
    SeriesInstanceUID TEXT NOT NULL REFERENCES series (SeriesInstanceUID),
    SOPClassUID TEXT NOT NULL DEFAULT '',
    TransferSyntaxUID TEXT NOT NULL DEFAULT '',
    InstanceNumber INTEGER,
    NumberOfFrames INTEGER,
    Rows INTEGER,
    Columns INTEGER,
    path TEXT NOT NULL,
    linked INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    mtime REAL NOT NULL DEFAULT 0,
    pixel_offset INTEGER NOT NULL DEFAULT -1,
    pixel_length INTEGER NOT NULL DEFAULT -1,
    header BLOB NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    inserted REAL NOT NULL DEFAULT 0
);
CREATE INDEX instances_series ON instances (SeriesInstanceUID);

-- Files seen by an import, so that unchanged files are skipped without reading them.
CREATE TABLE sources (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    SOPInstanceUID TEXT,
    reason TEXT NOT NULL DEFAULT ''
);
"""


def _v2_absolute_store_paths(conn: sqlite3.Connection, store_root: Path) -> None:
    """Version 1 stored a copied file's path as the store path joined to a possibly relative
    database path, so it was relative to whatever folder the import ran in (and ``delete`` run
    from another folder could reach files outside the store). A copied file's place in the store
    is always ``hh/<name>.dcm``: rebuild it under the store's absolute root. Linked files were
    always stored absolute and are left alone."""
    rows = conn.execute("SELECT SOPInstanceUID, path FROM instances WHERE linked=0").fetchall()
    for sop, path in rows:
        if os.path.isabs(path):
            continue
        parts = Path(path).parts
        if len(parts) >= 2 and len(parts[-2]) == 2 and parts[-1].startswith(parts[-2]):
            fixed = str(store_root / parts[-2] / parts[-1])
        else:  # not the store's layout: keep it, but never relative to the current folder
            fixed = os.path.abspath(path)
        conn.execute("UPDATE instances SET path=? WHERE SOPInstanceUID=?", (fixed, sop))


def _v3_person_names_normalised_again(conn: sqlite3.Connection, store_root: Path) -> None:
    """Version 2 kept a name's trailing component and group delimiters (``Wang^XiaoDong=王^小東=``)
    in the normalised column that person-name matching reads, so it could not match the same name
    written without them. Every path now normalises alike (matching.normalize_pn): redo the
    stored column from the names themselves."""
    from DICOMPlusLib.database.names import normalize_pn

    for table, key, column in (
        ("patients", "id", "PatientName"),
        ("studies", "StudyInstanceUID", "ReferringPhysicianName"),
    ):
        rows = conn.execute(f"SELECT {key}, {column} FROM {table}").fetchall()
        conn.executemany(
            f"UPDATE {table} SET {column}Norm=? WHERE {key}=?",
            [(normalize_pn(name or ""), rowkey) for rowkey, name in rows],
        )


# Version 4: study search at scale (issue 19). A study's date, modalities and patient in one
# index (walked in date order, the modality tested in the index: a row is read only when it
# matches), and its patient, date and modalities in another (a search by name starts from the
# patients and filters the rest in the index). They cover the old single-column indexes.
_V4 = """
CREATE INDEX IF NOT EXISTS studies_date_modalities ON studies (StudyDate, ModalitiesInStudy, patient);
CREATE INDEX IF NOT EXISTS studies_patient_date ON studies (patient, StudyDate, ModalitiesInStudy);
DROP INDEX IF EXISTS studies_date;
DROP INDEX IF EXISTS studies_patient
"""

Migration = str | Callable[[sqlite3.Connection, Path], None]
MIGRATIONS: list[Migration] = [_V1, _v2_absolute_store_paths, _v3_person_names_normalised_again, _V4]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, *, store_root: str | os.PathLike = "store") -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` in place; return the version found.

    ``store_root`` is the managed store's absolute folder (data migrations use it)."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found > SCHEMA_VERSION:
        raise DatabaseError(
            f"this database has schema version {found}, newer than this DICOMPlus ({SCHEMA_VERSION}): "
            "upgrade DICOMPlus or use another database"
        )
    if found == SCHEMA_VERSION:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        (found,) = conn.execute("PRAGMA user_version").fetchone()  # another process may have won
        for version in range(found, SCHEMA_VERSION):
            step = MIGRATIONS[version]
            if callable(step):
                step(conn, Path(store_root))
                continue
            for statement in step.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
