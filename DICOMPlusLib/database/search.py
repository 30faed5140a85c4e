"""Search the local database at patient, study, series or instance level on any stored tag.

Keys on indexed columns become SQL (see :mod:`matching`); keys on any other tag are tested
against the stored headers of the instances under each candidate, with the same matching rules,
so ``RepetitionTime=500`` or ``ProtocolName=*T1*`` work like ``PatientName=DOE*``. An entity
matches when one of its instances matches every header key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from DICOMPlusLib import dataclasses_lite
from DICOMPlusLib.database.dialect import SQLITE, Dialect
from DICOMPlusLib.database.headerscan import ScanError, scan
from DICOMPlusLib.database.matching import Criterion, MatchKind, SequenceCriterion, parse_criteria
from DICOMPlusLib.database.rows import instance_record
from DICOMPlusLib.errors import DatabaseError
from DICOMPlusLib.models import PatientRecord, QueryLevel, Record, SeriesRecord, StudyRecord

if TYPE_CHECKING:
    from DICOMPlusLib.database.backend import Backend, Connection

#: Search keys: {keyword: matching value} or (keyword, value) pairs (a keyword may repeat).
Criteria = Mapping[str, str] | Sequence[tuple[str, str]]

_LEVEL_ORDER = {"p": 0, "st": 1, "se": 2, "i": 3}
_LEVEL_ALIAS = {
    QueryLevel.PATIENT: "p",
    QueryLevel.STUDY: "st",
    QueryLevel.SERIES: "se",
    QueryLevel.INSTANCE: "i",
}
# keyword -> (table alias, column)
COLUMNS: dict[str, tuple[str, str]] = {
    "PatientID": ("p", "PatientID"),
    "PatientName": ("p", "PatientNameNorm"),
    "PatientBirthDate": ("p", "PatientBirthDate"),
    "PatientSex": ("p", "PatientSex"),
    "StudyInstanceUID": ("st", "StudyInstanceUID"),
    "StudyDate": ("st", "StudyDate"),
    "StudyTime": ("st", "StudyTime"),
    "StudyDescription": ("st", "StudyDescription"),
    "AccessionNumber": ("st", "AccessionNumber"),
    "StudyID": ("st", "StudyID"),
    "ReferringPhysicianName": ("st", "ReferringPhysicianNameNorm"),
    "NumberOfStudyRelatedSeries": ("st", "NumberOfStudyRelatedSeries"),
    "NumberOfStudyRelatedInstances": ("st", "NumberOfStudyRelatedInstances"),
    "SeriesInstanceUID": ("se", "SeriesInstanceUID"),
    "Modality": ("se", "Modality"),
    "ModalitiesInStudy": ("se", "Modality"),
    "SeriesNumber": ("se", "SeriesNumber"),
    "SeriesDescription": ("se", "SeriesDescription"),
    "SeriesDate": ("se", "SeriesDate"),
    "SeriesTime": ("se", "SeriesTime"),
    "BodyPartExamined": ("se", "BodyPartExamined"),
    "NumberOfSeriesRelatedInstances": ("se", "NumberOfSeriesRelatedInstances"),
    "SOPInstanceUID": ("i", "SOPInstanceUID"),
    "SOPClassUID": ("i", "SOPClassUID"),
    "TransferSyntaxUID": ("i", "TransferSyntaxUID"),
    "InstanceNumber": ("i", "InstanceNumber"),
    "NumberOfFrames": ("i", "NumberOfFrames"),
    "Rows": ("i", "Rows"),
    "Columns": ("i", "Columns"),
}
_JOIN_UP = {
    "i": "JOIN series se ON se.SeriesInstanceUID = i.SeriesInstanceUID",
    "se": "JOIN studies st ON st.StudyInstanceUID = se.StudyInstanceUID",
    "st": "JOIN patients p ON p.id = st.patient",
}
_FROM = {"p": "patients p", "st": "studies st", "se": "series se", "i": "instances i"}
# How to reach the instances below a row of each level (for EXISTS and header keys).
_DOWN = {
    "p": (
        "studies st2 JOIN series se2 ON se2.StudyInstanceUID = st2.StudyInstanceUID"
        " JOIN instances i2 ON i2.SeriesInstanceUID = se2.SeriesInstanceUID",
        "st2.patient = p.id",
    ),
    "st": (
        "series se2 JOIN instances i2 ON i2.SeriesInstanceUID = se2.SeriesInstanceUID",
        "se2.StudyInstanceUID = st.StudyInstanceUID",
    ),
    "se": ("instances i2", "i2.SeriesInstanceUID = se.SeriesInstanceUID"),
    "i": ("instances i2", "i2.SOPInstanceUID = i.SOPInstanceUID"),
}
_BELOW_ALIAS = {"st": "st2", "se": "se2", "i": "i2"}
_TEXT_COLUMNS = {
    "p": ["p.PatientName", "p.PatientID"],
    "st": ["st.StudyDescription", "st.AccessionNumber"],
    "se": ["se.SeriesDescription"],
}


def _select(level: str) -> str:
    if level == "p":
        return (
            "SELECT p.*, (SELECT COUNT(*) FROM studies s WHERE s.patient = p.id) AS n_studies,"
            " (SELECT COALESCE(SUM(NumberOfStudyRelatedSeries), 0) FROM studies s WHERE s.patient = p.id) AS n_series,"
            " (SELECT COALESCE(SUM(NumberOfStudyRelatedInstances), 0) FROM studies s WHERE s.patient = p.id)"
            " AS n_instances"
        )
    if level == "st":
        return "SELECT st.*, p.PatientID, p.PatientName, p.PatientBirthDate, p.PatientSex"
    if level == "se":
        return "SELECT se.*, p.PatientID, p.PatientName"
    return (
        "SELECT i.SOPInstanceUID, i.SeriesInstanceUID, i.SOPClassUID, i.TransferSyntaxUID, i.InstanceNumber,"
        " i.NumberOfFrames, i.Rows, i.Columns, i.path, i.size, i.pixel_offset, i.pixel_length,"
        " se.StudyInstanceUID, p.PatientID"
    )


_ORDER = {
    "p": "p.PatientNameNorm, p.PatientID",
    "st": "st.StudyDate DESC, st.StudyTime DESC, st.StudyInstanceUID",
    "se": "se.StudyInstanceUID, se.SeriesNumber, se.SeriesInstanceUID",
    "i": "i.SeriesInstanceUID, i.InstanceNumber, i.SOPInstanceUID",
}


def _in_study(c: Criterion, dialect: Dialect) -> tuple[str, list[object]] | None:
    """``ModalitiesInStudy`` exact values tested on the study's own column (the distinct
    modalities of its series, sorted and backslash-joined, kept by every write in the same
    transaction) instead of an EXISTS over its series: one test on the row already read, where
    the EXISTS cost an index probe per candidate study (issue 19, search at 10M instances).
    None for a wildcard (then the series are searched as before)."""
    singles = c.alternatives if c.kind is MatchKind.MULTIPLE else (c,)
    if any(a.kind is not MatchKind.SINGLE for a in singles):
        return None
    test = dialect.contains_exactly("'\\' || st.ModalitiesInStudy || '\\'")
    return "(" + " OR ".join([test] * len(singles)) + ")", [f"\\{a.value}\\" for a in singles]


def build_query(
    level: QueryLevel,
    criteria: Sequence[Criterion | SequenceCriterion],
    text: str | None,
    dialect: Dialect = SQLITE,
    also: tuple[str, list[object]] | None = None,
) -> tuple[str, list[object], list[Criterion | SequenceCriterion]]:
    """SQL for the column keys; returns (sql, params, header_criteria).

    ``also`` is one more WHERE condition with its parameters (PostgreSQL's header keys)."""
    lv = _LEVEL_ALIAS[level]
    depth = _LEVEL_ORDER[lv]
    joins = []
    alias = lv
    while alias != "p":
        joins.append(_JOIN_UP[alias])
        alias = {"i": "se", "se": "st", "st": "p"}[alias]
    where: list[str] = []
    params: list[object] = []
    header: list[Criterion | SequenceCriterion] = []
    below: list[tuple[str, list[object]]] = []
    deepest = depth
    for c in criteria:
        if c.kind is MatchKind.UNIVERSAL:
            continue
        if isinstance(c, SequenceCriterion) or c.keyword not in COLUMNS:
            header.append(c)
            continue
        if (
            c.keyword == "ModalitiesInStudy"
            and lv == "st"
            and (in_study := _in_study(c, dialect)) is not None
        ):
            where.append(in_study[0])
            params.extend(in_study[1])
            continue
        table, column = COLUMNS[c.keyword]
        if _LEVEL_ORDER[table] <= depth:
            sql, p = c.sql(f"{table}.{column}", dialect)
            where.append(sql)
            params.extend(p)
        else:
            sql, p = c.sql(f"{_BELOW_ALIAS[table]}.{column}", dialect)
            below.append((sql, p))
            deepest = max(deepest, _LEVEL_ORDER[table])
    if below:
        source, link = _DOWN[lv]
        # join only as deep as the keys need (instances are the bulk of the rows)
        if lv == "st" and deepest == 2:
            source, link = "series se2", "se2.StudyInstanceUID = st.StudyInstanceUID"
        elif lv == "p" and deepest == 1:
            source, link = "studies st2", "st2.patient = p.id"
        elif lv == "p" and deepest == 2:
            source, link = (
                "studies st2 JOIN series se2 ON se2.StudyInstanceUID = st2.StudyInstanceUID",
                "st2.patient = p.id",
            )
        where.append(
            f"EXISTS (SELECT 1 FROM {source} WHERE {link} AND " + " AND ".join(s for s, _ in below) + ")"
        )
        for _, p in below:
            params.extend(p)
    if text:
        needle = text.strip().casefold()
        ors = []
        for table, cols in _TEXT_COLUMNS.items():
            for col in cols:
                if _LEVEL_ORDER[table] <= depth:
                    ors.append(dialect.contains(col))
                    params.append(needle)
        if depth < 2:
            ors.append(
                "EXISTS (SELECT 1 FROM series se3 WHERE se3.StudyInstanceUID IN "
                + (
                    "(st.StudyInstanceUID)"
                    if lv == "st"
                    else "(SELECT StudyInstanceUID FROM studies WHERE patient = p.id)"
                )
                + f" AND {dialect.contains('se3.SeriesDescription')})"
            )
            params.append(needle)
        where.append("(" + " OR ".join(ors) + ")")
    if also is not None:
        where.append(also[0])
        params.extend(also[1])
    sql = f"{_select(lv)} FROM {_FROM[lv]} {' '.join(joins)}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {_ORDER[lv]}"
    return sql, params, header


def _header_matches(
    conn: Connection, lv: str, row: sqlite3.Row, header: list[Criterion | SequenceCriterion]
) -> dict[str, object] | None:
    """The header keys' values of the first instance under ``row`` that matches them all.
    Sequence keys (C.2.2.2.6) are matched on the header as pydicom reads it."""
    from io import BytesIO

    import pydicom
    from pydicom.datadict import tag_for_keyword

    sequences = [c for c in header if isinstance(c, SequenceCriterion)]
    plain = [c for c in header if isinstance(c, Criterion)]
    tags = {c.keyword: tag for c in plain if (tag := tag_for_keyword(c.keyword)) is not None}
    wanted = frozenset(tags.values())
    source, link = _DOWN[lv]
    key = {"p": "id", "st": "StudyInstanceUID", "se": "SeriesInstanceUID", "i": "SOPInstanceUID"}[lv]
    link_sql = link.replace(
        {"p": "p.id", "st": "st.StudyInstanceUID", "se": "se.SeriesInstanceUID", "i": "i.SOPInstanceUID"}[lv],
        "?",
    )
    for (blob,) in conn.execute(f"SELECT i2.header FROM {source} WHERE {link_sql}", (row[key],)):
        try:
            values = scan(blob, wanted, complete=True).values
        except ScanError:
            continue
        found = {c.keyword: values.get(tags[c.keyword]) if c.keyword in tags else None for c in plain}
        if not all(c.matches(found[c.keyword]) for c in plain):
            continue
        if sequences:
            try:
                ds = pydicom.dcmread(BytesIO(blob), force=True, stop_before_pixels=True)
            except Exception:  # an unreadable header matches no key
                continue
            if not all(c.matches(ds[c.keyword].value if c.keyword in ds else None) for c in sequences):
                continue
        return found
    return None


def _record(lv: str, row: sqlite3.Row) -> Record:
    if lv == "p":
        return PatientRecord(
            PatientID=row["PatientID"],
            PatientName=row["PatientName"],
            PatientBirthDate=row["PatientBirthDate"],
            PatientSex=row["PatientSex"],
            NumberOfPatientRelatedStudies=row["n_studies"],
            NumberOfPatientRelatedSeries=row["n_series"],
            NumberOfPatientRelatedInstances=row["n_instances"],
        )
    if lv == "st":
        return StudyRecord(
            StudyInstanceUID=row["StudyInstanceUID"],
            PatientID=row["PatientID"],
            PatientName=row["PatientName"],
            PatientBirthDate=row["PatientBirthDate"],
            PatientSex=row["PatientSex"],
            StudyDate=row["StudyDate"],
            StudyTime=row["StudyTime"],
            StudyDescription=row["StudyDescription"],
            AccessionNumber=row["AccessionNumber"],
            StudyID=row["StudyID"],
            ReferringPhysicianName=row["ReferringPhysicianName"],
            ModalitiesInStudy=row["ModalitiesInStudy"],
            NumberOfStudyRelatedSeries=row["NumberOfStudyRelatedSeries"],
            NumberOfStudyRelatedInstances=row["NumberOfStudyRelatedInstances"],
        )
    if lv == "se":
        return SeriesRecord(
            SeriesInstanceUID=row["SeriesInstanceUID"],
            StudyInstanceUID=row["StudyInstanceUID"],
            PatientID=row["PatientID"],
            PatientName=row["PatientName"],
            Modality=row["Modality"],
            SeriesNumber=row["SeriesNumber"],
            SeriesDescription=row["SeriesDescription"],
            SeriesDate=row["SeriesDate"],
            SeriesTime=row["SeriesTime"],
            BodyPartExamined=row["BodyPartExamined"],
            NumberOfSeriesRelatedInstances=row["NumberOfSeriesRelatedInstances"],
        )
    return instance_record(row)


def search(
    db: Backend,
    level: QueryLevel | str,
    criteria: Criteria,
    *,
    text: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Record]:
    """Records at ``level`` matching every key in ``criteria`` (and ``text`` anywhere in names,
    IDs, descriptions and accession numbers), ordered, paged with ``limit``/``offset``.

    Header keys (tags that are not columns) are echoed into each record's ``extra`` with the
    value of the first matching instance, so the CLI can print the matched attributes.
    """
    level = QueryLevel.parse(level)
    try:
        parsed = parse_criteria(criteria)
    except ValueError as exc:
        raise DatabaseError(f"bad search value: {exc}") from exc
    sql, params, header = build_query(level, parsed, text)
    conn = db._reader()
    lv = _LEVEL_ALIAS[level]
    if not header:
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params = [*params, int(limit), int(offset)]
        elif offset:
            sql += f" LIMIT {SQLITE.no_limit} OFFSET ?"
            params = [*params, int(offset)]
        try:
            return [_record(lv, row) for row in conn.execute(sql, params)]
        except sqlite3.Error as exc:
            raise DatabaseError(f"search failed: {exc}") from exc
    out = []
    skipped = 0
    for row in conn.execute(sql, params):
        found = _header_matches(conn, lv, row, header)
        if found is None:
            continue
        if skipped < offset:
            skipped += 1
            continue
        out.append(dataclasses_lite.replace(_record(lv, row), extra=found))
        if limit is not None and len(out) >= limit:
            break
    return out


def count(
    db: Backend,
    level: QueryLevel | str,
    criteria: Criteria,
    *,
    text: str | None = None,
) -> int | None:
    """How many records :func:`search` finds in all (without a limit); None when header keys
    would make counting a full scan of the stored headers."""
    try:
        parsed = parse_criteria(criteria)
    except ValueError as exc:
        raise DatabaseError(f"bad search value: {exc}") from exc
    sql, params, header = build_query(QueryLevel.parse(level), parsed, text, db.dialect)
    if header:
        return None
    return db._reader().execute(f"SELECT COUNT(*) FROM ({sql}) AS matched", params).fetchone()[0]
