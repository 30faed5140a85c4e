"""Copy an SQLite database into PostgreSQL (``dicomplus db migrate``).

A lab that starts on one workstation's SQLite file and moves to a shared index keeps what it has:
the patients, studies, series and instances (with their stored headers, from which the JSONB
``elements`` are computed here, as the ingest path computes them), and the ``sources`` table
(so that importing the same folders again skips unchanged files).

Files are either kept where they are (the rows point at the SQLite store's files; when the
PostgreSQL database has no store yet, the SQLite store becomes its store) or moved into the
PostgreSQL store (``move_files``). Files imported in place (``--link``) are the user's and are
never moved.

Resumable: instances are copied in SOPInstanceUID order, one transaction per batch, and a batch
skips the instances the target already holds. A run killed at any point (even SIGKILL) leaves
whole batches committed; the next run continues after them. A file is moved *before* its batch
commits, so a committed row never points at a missing file; a file moved by a batch that did not
commit is found at its new place by the next run. The SQLite database is only read (its schema
is brought up to date first), so running again always starts from the same source.

An instance the target already holds under the same SOPInstanceUID (received by a listener, or
copied by an earlier run) is left as it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.database.database import DB_FILE_NAME, Database
from DICOMPlusLib.dataclasses_lite import asdict, dataclass
from DICOMPlusLib.errors import DatabaseError
from DICOMPlusLib.jobs import CancelToken

logger = get_logger(__name__)

#: Instances per transaction: large enough that a commit's round trips do not dominate, small
#: enough that a killed run loses little and Ctrl-C answers within a second or two.
BATCH = 200

_INSTANCE_COLUMNS = (
    "SOPInstanceUID, SeriesInstanceUID, SOPClassUID, TransferSyntaxUID, InstanceNumber, NumberOfFrames,"
    " Rows, Columns, path, linked, size, mtime, pixel_offset, pixel_length, header, source, inserted"
)
_STUDY_COLUMNS = (
    "StudyInstanceUID, StudyDate, StudyTime, StudyDescription, AccessionNumber, StudyID,"
    " ReferringPhysicianName, ReferringPhysicianNameNorm, inserted"
)
_SERIES_COLUMNS = (
    "SeriesInstanceUID, StudyInstanceUID, Modality, SeriesNumber, SeriesDescription, SeriesDate,"
    " SeriesTime, BodyPartExamined, inserted"
)

_PATIENT_KEYS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")


@dataclass
class MigrateReport:
    """What a migration did (counts of this run; ``already`` counts what an earlier run or a
    listener had put there)."""

    total: int = 0  # instances in the SQLite database
    copied: int = 0
    already: int = 0
    files_moved: int = 0
    files_missing: int = 0  # rows copied whose file was found neither at its place nor moved
    sources: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    store: str = ""  # the PostgreSQL store this run used (where moved files went)

    def to_dict(self) -> dict:
        return asdict(self)


def sqlite_file(path: str | os.PathLike) -> Path:
    """The SQLite file ``path`` names (a folder holds ``dicomplus.sqlite``); it must exist:
    a migration never creates an empty source."""
    target = Path(path).expanduser()
    if target.is_dir():
        target = target / DB_FILE_NAME
    if not target.is_file():
        raise DatabaseError(f"no SQLite database at {path} (give the dicomplus.sqlite file or its folder)")
    return target


def migrate(
    source: str | os.PathLike,
    target: str,
    *,
    store: str | os.PathLike | None = None,
    move_files: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
    batch: int = BATCH,
) -> MigrateReport:
    """Copy the SQLite database ``source`` into the PostgreSQL database at URL ``target``.

    ``store`` is the PostgreSQL database's file store (needed unless it records one already, or
    the files are kept in place: then the SQLite store is used). Returns when done or, after
    ``cancel``, at the end of the batch under way (``report.cancelled``; run again to resume).
    """
    from DICOMPlusLib.database.postgres import PostgresDatabase, is_postgres_url, recorded_store

    if not is_postgres_url(target):
        raise DatabaseError(f"the target must be a postgresql:// URL, not {target!r}")
    started = time.monotonic()
    report = MigrateReport()
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(Database(sqlite_file(source)))
        if store is None and not move_files:
            store = recorded_store(target) or src.store_root
        dst = stack.enter_context(PostgresDatabase(target, store_dir=store))
        report.store = str(dst.store.root)
        reader = src._reader()
        (report.total,) = reader.execute("SELECT COUNT(*) FROM instances").fetchone()
        done = 0
        after = ""
        while True:
            if cancel is not None and cancel.cancelled:
                report.cancelled = True
                break
            rows = reader.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE SOPInstanceUID > ?"
                " ORDER BY SOPInstanceUID LIMIT ?",
                (after, batch),
            ).fetchall()
            if not rows:
                break
            after = rows[-1]["SOPInstanceUID"]
            present = dst.present(r["SOPInstanceUID"] for r in rows)
            todo = [r for r in rows if r["SOPInstanceUID"] not in present]
            report.already += len(rows) - len(todo)
            if todo:
                _copy_batch(src, dst, todo, move_files, report)
            done += len(rows)
            if progress is not None:
                progress(done, report.total, after)
        if not report.cancelled:
            report.sources = _copy_sources(src, dst, batch)
    report.seconds = time.monotonic() - started
    return report


def _copy_batch(src: Database, dst, rows: list, move_files: bool, report: MigrateReport) -> None:
    """Copy ``rows`` (instances the target lacks) with their series, studies and patients in
    one transaction; move their files first when asked."""
    from psycopg.types.json import Jsonb

    from DICOMPlusLib.database.pg_search import header_elements
    from DICOMPlusLib.database.postgres import _text, lock_keys

    reader = src._reader()
    series_uids = sorted({r["SeriesInstanceUID"] for r in rows})
    series = _fetch(reader, f"SELECT {_SERIES_COLUMNS} FROM series", "SeriesInstanceUID", series_uids)
    study_uids = sorted({s["StudyInstanceUID"] for s in series.values()})
    studies = _fetch(
        reader,
        f"SELECT {', '.join('st.' + c.strip() for c in _STUDY_COLUMNS.split(','))}, p.PatientID, p.PatientName,"
        " p.PatientBirthDate, p.PatientSex FROM studies st JOIN patients p ON p.id=st.patient",
        "st.StudyInstanceUID",
        study_uids,
    )
    elements = [header_elements(bytes(r["header"])) for r in rows]  # CPU work, before the locks
    paths = [_file_for(dst, r, move_files, report) for r in rows]
    keys = [("sop", r["SOPInstanceUID"]) for r in rows]
    keys += [("series", uid) for uid in series_uids] + [("study", uid) for uid in study_uids]
    keys += [("patient", str(s["PatientID"])) for s in studies.values()]
    with dst.write() as conn:
        lock_keys(conn, keys)
        for uid in study_uids:
            st = studies[uid]
            patient = dst._upsert_patient(conn, {k: _text(st[k]) for k in _PATIENT_KEYS})
            conn.execute(
                "INSERT INTO studies (StudyInstanceUID, patient, StudyDate, StudyTime, StudyDescription,"
                " AccessionNumber, StudyID, ReferringPhysicianName, ReferringPhysicianNameNorm, inserted)"
                " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (StudyInstanceUID) DO NOTHING",
                (uid, patient, *(_text(st[c.strip()]) for c in _STUDY_COLUMNS.split(",")[1:])),
            )
        conn.executemany(
            f"INSERT INTO series ({_SERIES_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (SeriesInstanceUID) DO NOTHING",
            [tuple(_text(x) for x in series[uid]) for uid in series_uids],
        )
        conn.executemany(
            f"INSERT INTO instances ({_INSTANCE_COLUMNS}, elements) VALUES ({','.join('?' * 18)})"
            " ON CONFLICT (SOPInstanceUID) DO NOTHING",
            [
                (
                    *(_text(x) for x in tuple(r)[:8]), _text(path), linked, *tuple(r)[10:14],
                    bytes(r["header"]), _text(r["source"]), r["inserted"], Jsonb(elems),
                )
                for r, (path, linked), elems in zip(rows, paths, elements, strict=True)
            ],
        )  # fmt: skip
        dst._refresh_counts(conn, series_uids, study_uids)
    report.copied += len(rows)


def _fetch(reader, select: str, key: str, uids: list[str]) -> dict:
    found = {}
    for start in range(0, len(uids), 500):
        chunk = uids[start : start + 500]
        for row in reader.execute(f"{select} WHERE {key} IN ({','.join('?' * len(chunk))})", chunk):
            found[row[0]] = row
    return found


def _file_for(dst, row, move_files: bool, report: MigrateReport) -> tuple[str, int]:
    """The path (and ``linked``) the copied row gets; the file moved into ``dst``'s store first
    when asked. Idempotent: a file an interrupted run moved is found at its new place."""
    path, linked = row["path"], int(row["linked"])
    if not move_files or linked:
        if not os.path.exists(path):
            report.files_missing += 1
        return path, linked
    final = dst.store.path_for(row["SOPInstanceUID"])
    if os.path.abspath(path) == str(final):
        return str(final), 0
    if os.path.exists(path):
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, final)  # the same file system: atomic, no copy
        except OSError:
            tmp = dst.store.temporary_name()
            try:
                shutil.copyfile(path, tmp)
                os.replace(tmp, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            os.unlink(path)
        report.files_moved += 1
        return str(final), 0
    if not final.exists():
        report.files_missing += 1
        return path, 0
    return str(final), 0


def _copy_sources(src: Database, dst, batch: int) -> int:
    """The files earlier imports saw, so that importing them again skips the unchanged ones."""
    from DICOMPlusLib.database.postgres import _text

    reader = src._reader()
    copied = 0
    after = ""
    while True:
        rows = reader.execute(
            "SELECT path, size, mtime, SOPInstanceUID, reason FROM sources WHERE path > ? ORDER BY path LIMIT ?",
            (after, batch * 5),
        ).fetchall()
        if not rows:
            return copied
        after = rows[-1]["path"]
        with dst.write() as conn:
            conn.executemany(
                "INSERT INTO sources (path, size, mtime, SOPInstanceUID, reason) VALUES (?,?,?,?,?)"
                " ON CONFLICT (path) DO NOTHING",
                [tuple(_text(x) for x in r) for r in rows],
            )
        copied += len(rows)
