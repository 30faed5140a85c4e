"""Deleting a patient, a study, a series or an instance, with the files DICOMPlus stored for it.

Shared by both back ends (:class:`~.database.Database` and :class:`~.postgres.PostgresDatabase`
run the same SQL through their connection). One transaction decides everything from the state
before the delete (which series, studies and patients become empty) and then applies it. The
stored files leave their names inside the transaction, while it excludes other writers, and are
removed after the commit (put back if it fails): a failed delete leaves every row with its file,
and a writer that stores the same instance again after the commit keeps its new file.

With several writing processes (PostgreSQL) the transaction first takes the advisory locks of
every patient, study and series in scope exclusively (ingest takes them shared), so a listener
storing into a study being deleted waits for the delete or the delete for it: no instance row
is left without its series, no file without its row.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING

from DICOMPlusLib.database.rows import chunks
from DICOMPlusLib.errors import DatabaseError
from DICOMPlusLib.models import DeleteReport

if TYPE_CHECKING:
    from DICOMPlusLib.database.backend import Backend, Connection


def delete(
    db: Backend,
    *,
    patient: str | None = None,
    study: str | None = None,
    series: str | None = None,
    instance: str | None = None,
    files: bool = True,
    linked_files: bool = False,
    dry_run: bool = False,
) -> DeleteReport:
    """Delete a patient (by PatientID), a study, a series or an instance from ``db``; see
    :meth:`DICOMPlusLib.database.database.Database.delete`."""
    given = [x for x in (patient, study, series, instance) if x is not None]
    if len(given) != 1:
        raise DatabaseError("delete needs exactly one of patient, study, series or instance")
    if dry_run:
        return _delete(db, db._reader(), patient, study, series, instance, files, linked_files, True, [], [])
    # Another process may write at once (PostgreSQL): lock the patients, studies and series in
    # scope (what ingest locks shared), read the scope again, and go on only if it is still
    # covered; else the next pass takes the larger set first (locks are taken all at once, in
    # one order: no deadlock).
    held: set[tuple[str, str]] = set()
    retired: list[tuple[str, str]] = []  # (temporary name, stored name) of files leaving
    user_files: list[str] = []  # linked files to remove once the rows are gone
    try:
        while True:
            with db.write() as conn:
                if not db.exclusive_writer:
                    if held:
                        db._lock_keys(conn, held)
                    keys = _scope_keys(conn, patient, study, series, instance)
                    if not keys <= held:
                        held |= keys
                        continue
                report = _delete(
                    db,
                    conn,
                    patient,
                    study,
                    series,
                    instance,
                    files,
                    linked_files,
                    False,
                    retired,
                    user_files,
                )
                break
    except BaseException:
        for tmp, path in retired:
            db.store.restore(tmp, path)
        raise
    for tmp, path in retired:
        db.store.discard(tmp, path)
    for path in user_files:
        (report.files_removed if _remove_user_file(path) else report.files_kept).append(path)
    return report


def _delete(
    db: Backend,
    conn: Connection,
    patient: str | None,
    study: str | None,
    series: str | None,
    instance: str | None,
    files: bool,
    linked_files: bool,
    dry_run: bool,
    retired: list[tuple[str, str]],
    user_files: list[str],
) -> DeleteReport:
    """Decide and (unless ``dry_run``) apply a delete on ``conn``: everything is decided from the
    state before it, then applied. The files DICOMPlus stored leave their names before the commit
    (``retired``, removed after it); the user's own files (``user_files``) go after it."""
    report = DeleteReport(dry_run=dry_run)
    # Decide everything first, from the state before the delete; then apply it.
    where, params = _delete_scope(patient, study, series, instance)
    rows = conn.execute(
        "SELECT i.SOPInstanceUID, i.path, i.linked, i.SeriesInstanceUID FROM instances i"
        " JOIN series se ON se.SeriesInstanceUID=i.SeriesInstanceUID"
        " JOIN studies st ON st.StudyInstanceUID=se.StudyInstanceUID"
        f" JOIN patients p ON p.id=st.patient WHERE {where}",
        params,
    ).fetchall()
    one = lambda sql, *args: conn.execute(sql, args).fetchone()  # noqa: E731
    series_uids = {r["SeriesInstanceUID"] for r in rows}
    if series is not None:
        series_uids.add(series)
    if study is not None:
        series_uids |= {
            r[0]
            for r in conn.execute("SELECT SeriesInstanceUID FROM series WHERE StudyInstanceUID=?", (study,))
        }
    if patient is not None:
        series_uids |= {
            r[0]
            for r in conn.execute(
                "SELECT se.SeriesInstanceUID FROM series se JOIN studies st ON st.StudyInstanceUID=se.StudyInstanceUID"
                " JOIN patients p ON p.id=st.patient WHERE p.PatientID=?",
                (patient,),
            )
        }
    deleted_in = Counter(r["SeriesInstanceUID"] for r in rows)
    gone_series = sorted(
        uid
        for uid in series_uids
        if one("SELECT COUNT(*) FROM instances WHERE SeriesInstanceUID=?", uid)[0] == deleted_in[uid]
    )
    study_of = {
        uid: (one("SELECT StudyInstanceUID FROM series WHERE SeriesInstanceUID=?", uid) or [None])[0]
        for uid in series_uids
    }
    study_uids = {s for s in study_of.values() if s}
    if study is not None:
        study_uids.add(study)
    if patient is not None:
        study_uids |= {
            r[0]
            for r in conn.execute(
                "SELECT st.StudyInstanceUID FROM studies st JOIN patients p ON p.id=st.patient WHERE p.PatientID=?",
                (patient,),
            )
        }
    gone_in = Counter(study_of[uid] for uid in gone_series)
    gone_studies = sorted(
        uid
        for uid in study_uids
        if one("SELECT COUNT(*) FROM series WHERE StudyInstanceUID=?", uid)[0] == gone_in[uid]
    )
    patient_of = {
        uid: (one("SELECT patient FROM studies WHERE StudyInstanceUID=?", uid) or [None])[0]
        for uid in study_uids
    }
    patient_rows = {p for p in patient_of.values() if p is not None}
    if patient is not None:
        patient_rows |= {r[0] for r in conn.execute("SELECT id FROM patients WHERE PatientID=?", (patient,))}
    gone_in_patient = Counter(patient_of[uid] for uid in gone_studies)
    gone_patients = sorted(
        pid
        for pid in patient_rows
        if one("SELECT COUNT(*) FROM studies WHERE patient=?", pid)[0] == gone_in_patient[pid]
    )
    report.instances = len(rows)
    report.series = gone_series
    report.studies = gone_studies
    report.patients = [one("SELECT PatientID FROM patients WHERE id=?", pid)[0] for pid in gone_patients]
    to_remove = [
        r["path"]
        for r in rows
        if (r["linked"] and linked_files) or (not r["linked"] and files and db.store.contains(r["path"]))
    ]
    removing = set(to_remove)
    report.files_kept = [r["path"] for r in rows if r["path"] not in removing]
    if dry_run:
        report.files_removed = to_remove
        return report
    sops = [r["SOPInstanceUID"] for r in rows]
    for chunk in chunks(sops, 500):
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM instances WHERE SOPInstanceUID IN ({marks})", chunk)
        conn.execute(f"DELETE FROM sources WHERE SOPInstanceUID IN ({marks})", chunk)
    for uid in gone_series:
        conn.execute("DELETE FROM series WHERE SeriesInstanceUID=?", (uid,))
    for uid in gone_studies:
        conn.execute("DELETE FROM studies WHERE StudyInstanceUID=?", (uid,))
    for pid in gone_patients:
        conn.execute("DELETE FROM patients WHERE id=?", (pid,))
    db._refresh_counts(conn, series_uids - set(gone_series), study_uids - set(gone_studies))
    linked_paths = {r["path"] for r in rows if r["linked"]}
    for path in to_remove:
        if path in linked_paths:  # the user asked for their own files to go (--files): after the commit
            user_files.append(path)
            continue
        # A copy DICOMPlus made: only from inside the store, out of its name before the commit
        tmp = db.store.retire(path) if db.store.contains(path) else None
        if tmp is not None:
            retired.append((tmp, path))
        (report.files_removed if tmp is not None else report.files_kept).append(path)
    return report


def _scope_keys(
    conn: Connection, patient: str | None, study: str | None, series: str | None, instance: str | None
) -> set[tuple[str, str]]:
    """The lock keys of what a delete may change: the patients (by PatientID), studies and
    series in scope, with the study and patient above them (the counts they hold and whether
    they become empty), and the instance when one is named."""
    keys: set[tuple[str, str]] = set()
    query = (
        "SELECT p.PatientID, st.StudyInstanceUID, se.SeriesInstanceUID FROM patients p"
        " LEFT JOIN studies st ON st.patient=p.id LEFT JOIN series se ON se.StudyInstanceUID=st.StudyInstanceUID"
    )
    if patient is not None:
        keys.add(("patient", patient))
        rows = conn.execute(f"{query} WHERE p.PatientID=?", (patient,))
    elif study is not None:
        keys.add(("study", study))
        rows = conn.execute(f"{query} WHERE st.StudyInstanceUID=?", (study,))
    elif series is not None:
        keys.add(("series", series))
        rows = conn.execute(f"{query} WHERE se.SeriesInstanceUID=?", (series,))
    else:
        keys.add(("sop", str(instance)))
        rows = conn.execute(
            f"{query} JOIN instances i ON i.SeriesInstanceUID=se.SeriesInstanceUID WHERE i.SOPInstanceUID=?",
            (instance,),
        )
    for row in rows:
        for kind, value in zip(("patient", "study", "series"), row, strict=True):
            if value is not None:
                keys.add((kind, str(value)))
    return keys


def _remove_user_file(path: str) -> bool:
    """Remove a file the user imported in place (asked for with ``linked_files``). Its folder
    stays, even when now empty: it is the user's (a study folder they made, a mount point, a
    folder a PACS or a script writes into), not one of the store's fan-out folders."""
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def _delete_scope(
    patient: str | None, study: str | None, series: str | None, instance: str | None
) -> tuple[str, tuple[str | None]]:
    if patient is not None:
        return "p.PatientID=?", (patient,)
    if study is not None:
        return "se.StudyInstanceUID=?", (study,)
    if series is not None:
        return "i.SeriesInstanceUID=?", (series,)
    return "i.SOPInstanceUID=?", (instance,)
