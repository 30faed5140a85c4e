"""How PostgreSQL writers stay out of each other's way: advisory locks taken all at once in one
order (:func:`lock_keys`), the keys an ingest batch takes (:func:`ingest_keys`, with what a
replaced instance leaves, :func:`select_existing`), and the counts it changes as deltas
(:class:`Counts`). :mod:`.postgres` (ingest), :mod:`.delete` (through the back end) and
:mod:`.migrate` use them; the model is described in :mod:`.postgres`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class Connection(Protocol):
    """What these need of a :class:`~.pg_connection.PgConnection`."""

    def execute(self, sql: str, params: Sequence | None = ..., /) -> Any: ...

    def defer(self, sql: str, params: Sequence = ..., /) -> None: ...


def _lock_key(kind: str, value: str) -> int:
    """A signed 64-bit advisory-lock key for one patient, study, series or instance."""
    digest = hashlib.blake2b(f"{kind}\0{value}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


#: Kinds of keys a writer that adds instances locks shared (it only needs them to stay): a delete,
#: which removes them, takes them exclusively.
SHARED_KINDS = frozenset({"patient", "study", "series"})


def lock_keys(
    conn: Connection, keys: Iterable[tuple[str, str]], *, shared_kinds: frozenset[str] = frozenset()
) -> None:
    """Take the transaction's advisory locks on ``(kind, uid)`` keys (``"patient"`` by
    PatientID, ``"study"``, ``"series"``, ``"sop"``), those of ``shared_kinds`` shared and the
    others exclusive, in one sorted order. Every writer takes all its locks at its start, in
    that order, so none can deadlock with another on them; ingest takes the patient, study and
    series shared (writers into one study do not wait for each other) and a delete takes them
    exclusively (it waits for those writers, and they for it). A kind ending in ``!`` is the
    same lock as the kind without it, taken exclusively (:func:`replaced_keys`)."""
    shared: dict[int, bool] = {}
    for kind, value in keys:
        key = _lock_key(kind.rstrip("!"), value)
        shared[key] = shared.get(key, True) and kind in shared_kinds
    ordered = sorted(shared)
    conn.execute(
        "SELECT count(CASE WHEN s THEN pg_advisory_xact_lock_shared(k) ELSE pg_advisory_xact_lock(k) END)"
        " FROM (SELECT k, s FROM unnest(CAST(? AS bigint[]), CAST(? AS boolean[])) AS u(k, s) ORDER BY k) AS t",
        (ordered, [shared[k] for k in ordered]),
    )


def ingest_keys(values: Iterable[dict], existing: Iterable[dict]) -> set[tuple[str, str]]:
    """The keys a batch of instances (their ``values``) locks: each one's SOP Instance UID,
    series, study and patient, and the series, study and patient of the stored instances they
    replace (``existing``, rows of :func:`select_existing`)."""
    keys: set[tuple[str, str]] = set()
    for v in values:
        keys.add(("sop", str(v["SOPInstanceUID"])))
        keys.add(("series", str(v["SeriesInstanceUID"])))
        keys.add(("study", str(v["StudyInstanceUID"])))
        keys.add(("patient", str(v["PatientID"])))
    for row in existing:
        for kind, column in (
            ("series", "SeriesInstanceUID"),
            ("study", "StudyInstanceUID"),
            ("patient", "PatientID"),
        ):
            if row[column] is not None:
                keys.add((kind, str(row[column])))
    return keys


def replaced_keys(
    items: Sequence[tuple[str, str, str, set[str]]], existing: dict[str, dict], replace_all: bool
):
    """The series whose terms an ingest batch may take away (:func:`.pg_terms.remove_gone`), as
    ``("series!", uid)`` keys, locked exclusively: those an instance it replaces (``replace_all``,
    else those from the same source) leaves or has a term in that its new version lacks, and
    those of a SOP Instance UID it holds twice. An instance sent again unchanged takes none.
    ``items`` are (SOP Instance UID, series, source, terms) of the batch; ``existing`` has the
    stored instances' ``terms``."""
    keys: set[tuple[str, str]] = set()
    seen: dict[str, str] = {}
    for sop, series, source, terms in items:
        row = existing.get(sop)
        if (
            row is not None
            and row["SeriesInstanceUID"]
            and (replace_all or (source and row["source"] == source))
        ):
            if row["SeriesInstanceUID"] != series or not row["terms"] <= terms:
                keys.add(("series!", str(row["SeriesInstanceUID"])))
        if sop in seen:
            keys |= {("series!", seen[sop]), ("series!", series)}
        seen[sop] = series
    return keys


def select_existing(conn: Connection, sops: Sequence[str]):
    """The stored rows of the instances of ``sops`` (a cursor for :func:`_existing_rows`), with
    the study and patient their series belongs to (what a replacement leaves)."""
    return conn.execute(
        "SELECT i.SOPInstanceUID, i.path, i.linked, i.source, i.SeriesInstanceUID, se.StudyInstanceUID,"
        " p.PatientID, i.elements FROM instances i LEFT JOIN series se ON se.SeriesInstanceUID=i.SeriesInstanceUID"
        " LEFT JOIN studies st ON st.StudyInstanceUID=se.StudyInstanceUID LEFT JOIN patients p ON p.id=st.patient"
        " WHERE i.SOPInstanceUID = ANY(CAST(? AS text[]))",
        (list(sops),),
    )


def existing_rows(cursor) -> dict[str, dict]:
    """{SOPInstanceUID: row} of :func:`select_existing`'s answer, with the stored instance's
    ``terms`` (:func:`.pg_terms.instance_terms`) in place of its elements."""
    from DICOMPlusLib.database.pg_terms import instance_terms

    names = ("path", "linked", "source", "SeriesInstanceUID", "StudyInstanceUID", "PatientID")
    out = {}
    for r in cursor.fetchall():
        out[r[0]] = dict(zip(names, tuple(r)[1:7], strict=True))
        out[r[0]]["terms"] = instance_terms(r[7] or {})
    return out


def hierarchy(v: dict) -> tuple[str, str, str, str]:
    return (
        str(v["PatientID"]),
        str(v["StudyInstanceUID"]),
        str(v["SeriesInstanceUID"]),
        str(v["SOPInstanceUID"]),
    )


class Counts:
    """What a batch changes in the counts of series and studies, applied at its end as deltas
    (``n = n + d``: PostgreSQL applies an UPDATE to the newest version of a row, waiting for a
    writer that holds it, so concurrent writers of one series all count, where a recount in the
    same statement would read an older snapshot), series then studies, each in sorted order.
    They go with the COMMIT (:meth:`~.pg_connection.PgConnection.defer`): the rows every writer of a study
    updates are locked for one round trip only."""

    def __init__(self) -> None:
        self.series: Counter[str] = Counter()
        self.study_instances: Counter[str] = Counter()
        self.study_series: Counter[str] = Counter()
        self.modalities: dict[str, set[str]] = {}

    def instance(self, series: str, study: str | None, n: int) -> None:
        self.series[series] += n
        if study is not None:
            self.study_instances[study] += n

    def new_series(self, study: str, modality: str) -> None:
        self.study_series[study] += 1
        if modality:
            self.modalities.setdefault(study, set()).add(modality)

    def apply(self, conn: Connection) -> None:
        for uid in sorted(self.series):
            if self.series[uid]:
                conn.defer(
                    "UPDATE series SET NumberOfSeriesRelatedInstances=NumberOfSeriesRelatedInstances+?"
                    " WHERE SeriesInstanceUID=?",
                    (self.series[uid], uid),
                )
        for uid in sorted(set(self.study_instances) | set(self.study_series)):
            added = sorted(self.modalities.get(uid, ()))
            if not (self.study_instances[uid] or self.study_series[uid] or added):
                continue
            conn.defer(
                "UPDATE studies SET NumberOfStudyRelatedSeries=NumberOfStudyRelatedSeries+?,"
                " NumberOfStudyRelatedInstances=NumberOfStudyRelatedInstances+?,"
                " ModalitiesInStudy=CASE WHEN cardinality(CAST(? AS text[]))=0 THEN ModalitiesInStudy ELSE"
                "  (SELECT COALESCE(string_agg(m, '\\' ORDER BY m COLLATE \"C\"), '') FROM (SELECT DISTINCT m"
                "   FROM unnest(string_to_array(ModalitiesInStudy, '\\') || CAST(? AS text[])) AS u(m)"
                "   WHERE m <> '') AS d) END"
                " WHERE StudyInstanceUID=?",
                (self.study_series[uid], self.study_instances[uid], added, added, uid),
            )
