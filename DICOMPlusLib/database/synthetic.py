"""Synthetic rows for benchmarks: a database with many instances, written by SQL.

The rows are what an import of real files would write (same tables, same columns, same count
maintenance); only the header blobs are a small shared header, which search at study level does
not read. Here, inside ``database/``, because it is SQL against the SQLite schema (bench/ uses no
SQL of its own); a PostgreSQL back end would bring its own.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from DICOMPlusLib import uids
from DICOMPlusLib.database.database import Database
from DICOMPlusLib.database.matching import Criterion, normalize_pn

FAMILY = [
    "Smith",
    "Jones",
    "Brown",
    "Taylor",
    "Wilson",
    "Davies",
    "Evans",
    "Thomas",
    "Johnson",
    "Roberts",
    "Walker",
    "Wright",
    "Robinson",
    "Thompson",
    "White",
    "Hughes",
    "Edwards",
    "Green",
    "Hall",
    "Wood",
]
GIVEN = ["Anna", "John", "Mary", "Peter", "Ruth", "Paul", "Jane", "Mark", "Lucy", "Adam"]
MODALITIES = ["CT", "MR", "US", "CR", "PT", "XA"]


def build_rows(
    path: Path, instances: int = 1_000_000, per_series: int = 50, series_per_study: int = 4, seed: int = 7
) -> Path:
    """Create (once) a database at ``path`` with ``instances`` instance rows."""
    db_file = path / "dicomplus.sqlite"
    if db_file.exists():
        conn = sqlite3.connect(db_file)
        n = conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
        conn.close()
        if n == instances:
            return db_file
        db_file.unlink()
    path.mkdir(parents=True, exist_ok=True)
    Database(path).close()  # the schema
    rng = random.Random(seed)
    conn = sqlite3.connect(db_file, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    started = time.monotonic()
    n_series = instances // per_series
    n_studies = n_series // series_per_study
    n_patients = max(1, n_studies // 3)
    header = b"\0" * 128 + b"DICM"
    conn.execute("BEGIN")
    for pid in range(n_patients):
        name = f"{rng.choice(FAMILY)}{pid % 97}^{rng.choice(GIVEN)}"
        conn.execute(
            "INSERT INTO patients (id, PatientID, PatientName, PatientNameNorm, PatientBirthDate, PatientSex)"
            " VALUES (?,?,?,?,?,?)",
            (
                pid + 1,
                f"PID{pid:07d}",
                name,
                normalize_pn(name),
                f"19{rng.randint(30, 99)}0101",
                rng.choice("MFO"),
            ),
        )
    sop = 0
    for st in range(n_studies):
        study_uid = f"1.2.826.0.1.3680043.10.1.{st}"
        date = f"{rng.randint(2005, 2025)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        modality = rng.choice(MODALITIES)
        conn.execute(
            "INSERT INTO studies (StudyInstanceUID, patient, StudyDate, StudyTime, StudyDescription, AccessionNumber,"
            " ModalitiesInStudy, NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                study_uid,
                rng.randint(1, n_patients),
                date,
                "120000",
                f"{modality} study {st}",
                f"A{st:08d}",
                modality,
                series_per_study,
                series_per_study * per_series,
            ),
        )
        for se in range(series_per_study):
            series_uid = f"{study_uid}.{se}"
            conn.execute(
                "INSERT INTO series (SeriesInstanceUID, StudyInstanceUID, Modality, SeriesNumber, SeriesDescription,"
                " NumberOfSeriesRelatedInstances) VALUES (?,?,?,?,?,?)",
                (series_uid, study_uid, modality, se + 1, f"series {se}", per_series),
            )
            rows = []
            for k in range(per_series):
                rows.append(
                    (
                        f"{series_uid}.{k}",
                        series_uid,
                        uids.CTImageStorage,
                        uids.ExplicitVRLittleEndian,
                        k + 1,
                        f"/store/{sop:08x}.dcm",
                        header,
                    )
                )
                sop += 1
            conn.executemany(
                "INSERT INTO instances (SOPInstanceUID, SeriesInstanceUID, SOPClassUID, TransferSyntaxUID,"
                " InstanceNumber, path, header) VALUES (?,?,?,?,?,?,?)",
                rows,
            )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    print(
        f"built {sop} instances, {n_series} series, {n_studies} studies, {n_patients} patients"
        f" in {time.monotonic() - started:.1f} s"
    )
    return db_file


def hand_written_study_search(db: Database, queries: Sequence[dict[str, str]]) -> Callable[[], None]:
    """The floor of a study search: hand-written SQL with the same conditions as each query
    (``PatientName``, ``StudyDate``, ``ModalitiesInStudy``), limit 100; returns a function that
    runs them all once on this thread's read connection."""
    prepared = []
    for q in queries:
        name_sql, name_params = Criterion.parse("PatientName", q["PatientName"]).sql("p.PatientNameNorm")
        date_sql, date_params = Criterion.parse("StudyDate", q["StudyDate"]).sql("st.StudyDate")
        prepared.append(
            (
                "SELECT st.* FROM studies st JOIN patients p ON p.id = st.patient"
                f" WHERE {name_sql} AND {date_sql} AND st.ModalitiesInStudy = ? LIMIT 100",
                [*name_params, *date_params, q["ModalitiesInStudy"]],
            )
        )
    conn = db._reader()

    def run() -> None:
        for sql, params in prepared:
            conn.execute(sql, params).fetchall()

    return run
