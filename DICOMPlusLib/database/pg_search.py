"""Keys on any tag, matched by the PostgreSQL server.

SQLite's search tests a key on a tag that is not a column by scanning the stored headers of the
candidates in Python (:func:`DICOMPlusLib.database.search._header_matches`). On PostgreSQL every
instance carries ``elements``, a JSONB object written once at ingest by :func:`header_elements`:

    {"RepetitionTime": ["500"], "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
     "PatientName": ["doe^john"], "ProcedureCodeSequence": [{"CodeValue": ["CTCHEST"], ...}]}

Each value is stored as :meth:`Criterion.matches` compares it (a multi-valued element split at
its backslashes, person names normalised, times without colons), so the same PS3.4 C.2.2.2 rules
become SQL over it: an exact value is a containment test (``@>``), other rules test the array's
elements, sequence keys (C.2.2.2.6) walk the items. An exact key on a text element first finds
the series that have its term (:mod:`.pg_terms`), and only their instances are tested. The values
echoed into ``extra`` come from one matching instance's stored header, read as SQLite's search
reads it.
"""

from __future__ import annotations

import itertools
import json
import re
from io import BytesIO

from DICOMPlusLib import dataclasses_lite
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.database.dialect import POSTGRES
from DICOMPlusLib.database.headerscan import ScanError, scan
from DICOMPlusLib.database.matching import (
    _NUMERIC_VRS,
    _SINGLE_TEXT_VRS,
    Criterion,
    MatchKind,
    SequenceCriterion,
    normalize_pn,
)
from DICOMPlusLib.database.pg_terms import MAX_TERM_VALUE, kept
from DICOMPlusLib.database.search import _DOWN, _LEVEL_ALIAS, COLUMNS, _record, build_query
from DICOMPlusLib.errors import DatabaseError
from DICOMPlusLib.models import QueryLevel

logger = get_logger(__name__)

#: VRs whose values are not searchable text or numbers (bulk data, tags).
_SKIPPED_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN", "AT"})
#: Sequences nested deeper than this are not indexed (real objects stay far below).
_MAX_DEPTH = 8


def header_elements(header: bytes) -> dict:
    """The ``elements`` object of a stored header (``{}`` when pydicom cannot read it: its
    instance then matches no key on a header-only tag, as in SQLite's scan)."""
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(BytesIO(header), force=True, stop_before_pixels=True)
            return _dataset_elements(ds, 0)
    except Exception as exc:  # a header pydicom cannot read or decode
        logger.debug("header not indexed for any-tag search: %s", exc)
        return {}


def _dataset_elements(ds, depth: int) -> dict:
    out: dict = {}
    for elem in ds:
        keyword = elem.keyword
        if not keyword or elem.VR in _SKIPPED_VRS or elem.tag.group == 0x0002:
            continue
        if elem.VR == "SQ":
            if depth < _MAX_DEPTH:
                out[keyword] = [_dataset_elements(item, depth + 1) for item in elem.value or ()]
            continue
        out[keyword] = _values(elem.VR, elem.value)
    return out


def _values(vr: str, value) -> list[str]:
    """One element's values as the matching rules compare them."""
    if value is None or value == "":
        return []
    if isinstance(value, bytes):
        return []
    items = (
        list(value) if type(value).__name__ == "MultiValue" or isinstance(value, list | tuple) else [value]
    )
    out = []
    for item in items:
        text = _clean(str(item).strip())
        parts = [text] if vr in _SINGLE_TEXT_VRS else [p.strip() for p in text.split("\\")]
        for part in parts:
            if vr == "PN":
                part = normalize_pn(part)
            elif vr == "TM":
                part = part.replace(":", "")
            out.append(part)
    return out


def _clean(text: str) -> str:
    """Text JSONB accepts: no NUL, no lone surrogate."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


# -- SQL ---------------------------------------------------------------------------------------
def key_condition(key: Criterion | SequenceCriterion, obj: str, names=None) -> tuple[str, list[object]]:
    """SQL testing one key against the JSONB object ``obj`` (an instance's elements or an item)."""
    names = names if names is not None else itertools.count()
    if isinstance(key, SequenceCriterion):
        if not key.items:
            return "TRUE", []
        item = f"item{next(names)}"
        parts, params = [], []
        for sub in key.items:
            sql, p = key_condition(sub, item, names)
            parts.append(sql)
            params.extend(p)
        return (
            f"EXISTS (SELECT 1 FROM jsonb_array_elements({obj} -> ?) AS {item} WHERE {' AND '.join(parts)})",
            [key.keyword, *params],
        )
    if key.kind is MatchKind.UNIVERSAL:
        return "TRUE", []
    if key.kind is MatchKind.SINGLE and key.vr not in _NUMERIC_VRS:
        return f"{obj} @> CAST(? AS jsonb)", [json.dumps({key.keyword: [key.value]})]
    value = f"v{next(names)}"
    sql, params = key.sql(value, POSTGRES)
    return (
        f"EXISTS (SELECT 1 FROM jsonb_array_elements_text({obj} -> ?) AS {value} WHERE {sql})",
        [key.keyword, *params],
    )


def conditions(keys: list, obj: str) -> tuple[list[str], list[object]]:
    """SQL testing every key against ``obj``, the exact keys on text elements as one containment.

    One ``@>`` for all of them (``{"Manufacturer": ["Philips"], "StationName": ["CT4"]}``, a
    keyword's values merged: an array contains several values if it contains each) is the same
    test as one a key, but the planner estimates it once. Having no statistics on what a JSONB
    object holds, it takes any containment for 1% of the rows, and two of them for 0.01%: one
    row of the ~8,500 instances of the series holding two common values at 100k, which it then
    joined to the studies and patients by sequential scans before sorting them all (0.4-0.9 s,
    EXPLAIN ANALYZE); taken for 1%, it walks the series in order and stops at the page (3-10 ms)."""
    names = itertools.count()
    exact: dict[str, list[str]] = {}
    conds: list[str] = []
    params: list[object] = []
    for key in keys:
        if isinstance(key, Criterion) and key.kind is MatchKind.SINGLE and key.vr not in _NUMERIC_VRS:
            values = exact.setdefault(key.keyword, [])
            if key.value not in values:
                values.append(key.value)
            continue
        sql, p = key_condition(key, obj, names)
        conds.append(sql)
        params.extend(p)
    if exact:
        conds.insert(0, f"{obj} @> CAST(? AS jsonb)")
        params.insert(0, json.dumps(exact))
    return conds, params


def _term(key: Criterion | SequenceCriterion) -> str | None:
    """The ``series_terms`` entry (:mod:`.pg_terms`) an exact key on a top-level text element
    must find, else None."""
    if not isinstance(key, Criterion) or key.kind is not MatchKind.SINGLE or key.vr in _NUMERIC_VRS:
        return None
    if len(key.value) > MAX_TERM_VALUE or not kept(key.keyword):
        return None
    return f"{key.keyword}={key.value}"


_KEY = {"p": "id", "st": "StudyInstanceUID", "se": "SeriesInstanceUID", "i": "SOPInstanceUID"}
#: The entities at each level above the instances that hold a series of ``dicomplus_series``.
_OF_SERIES = {
    "p": "SELECT st2.patient FROM dicomplus_series c JOIN series se2 ON se2.SeriesInstanceUID = c.series"
    " JOIN studies st2 ON st2.StudyInstanceUID = se2.StudyInstanceUID",
    "st": "SELECT se2.StudyInstanceUID FROM dicomplus_series c JOIN series se2 ON se2.SeriesInstanceUID = c.series",
    "se": "SELECT series FROM dicomplus_series",
}


def search_in_server(db, level: QueryLevel, criteria: list, text: str | None, limit, offset) -> list:
    """:func:`DICOMPlusLib.database.search.search` on PostgreSQL, header keys included."""
    lv = _LEVEL_ALIAS[level]
    keys = [c for c in criteria if c.kind is not MatchKind.UNIVERSAL and c.keyword not in COLUMNS]
    conds, cparams = conditions(keys, "i2.elements")
    terms = sorted({t for k in keys if (t := _term(k)) is not None})
    source, link = _DOWN[lv]
    also: tuple[str, list[object]] | None = None
    series_cte: tuple[str, list[object]] | None = None
    if terms:
        # The series holding every term (series_terms, :mod:`.pg_terms`): a few index entries a
        # series, where the matching instances are up to all of them. The table is exact, so
        # one key at series level or above needs no more; otherwise (keys that must hold in one
        # instance, an instance's own match) the instances of those series only are checked.
        found = " INTERSECT ".join(["SELECT series FROM series_terms WHERE term = ?"] * len(terms))
        check = lv == "i" or len(keys) > 1
        if check and lv != "i":
            found = (
                f"SELECT c.series FROM ({found}) AS c WHERE EXISTS (SELECT 1 FROM instances i2"
                f" WHERE i2.SeriesInstanceUID = c.series AND {' AND '.join(conds)})"
            )
            series_cte = (f"dicomplus_series AS MATERIALIZED ({found})", [*terms, *cparams])
        else:
            series_cte = (f"dicomplus_series AS MATERIALIZED ({found})", list(terms))
        if lv == "i":
            also = (
                "i.SeriesInstanceUID IN (SELECT series FROM dicomplus_series)"
                f" AND EXISTS (SELECT 1 FROM {source} WHERE {link} AND {' AND '.join(conds)})",
                cparams,
            )
        else:
            also = (f"{lv}.{_KEY[lv]} IN ({_OF_SERIES[lv]})", [])
    elif keys:
        also = (f"EXISTS (SELECT 1 FROM {source} WHERE {link} AND {' AND '.join(conds)})", cparams)
    sql, params, _ = build_query(level, criteria, text, POSTGRES, also)
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params = [*params, int(limit), int(offset)]
    elif offset:
        sql += " OFFSET ?"
        params = [*params, int(offset)]
    if keys:
        # The matching instance's header is fetched for the rows of this page only, after the
        # ORDER BY and LIMIT (in the page's own query it was read for every matching row), from
        # the matching series only when some are known. Those are tested against an array made
        # once, on the series of the row's own study or patient: as a join (``IN (SELECT ...)``)
        # the planner walked every matching series and its instances for each row, and kept
        # those of the row's study or patient (2.5-5 s for two exact keys on 100k real-header
        # instances, ~57k loops; 5-20 ms so, EXPLAIN ANALYZE).
        order = sql.rpartition(" ORDER BY ")[2].partition(" LIMIT ")[0].partition(" OFFSET ")[0]
        link_q = link.replace(f"{lv}.{_KEY[lv]}", f"q.{_KEY[lv]}")
        order_q = re.sub(rf"\b{lv}\.", "q.", order)
        within = ""
        if series_cte and lv in ("p", "st"):
            within = " AND se2.SeriesInstanceUID = ANY (ARRAY(SELECT series FROM dicomplus_series))"
        elif series_cte:  # a series or an instance: the row's own series
            within = " AND i2.SeriesInstanceUID IN (SELECT series FROM dicomplus_series)"
        sql = (
            f"SELECT q.*, (SELECT i2.header FROM {source} WHERE {link_q}{within} AND {' AND '.join(conds)} LIMIT 1)"
            f" AS dicomplus_match FROM ({sql}) AS q ORDER BY {order_q}"
        )
        params = [*cparams, *params]
        if series_cte is not None:
            sql = f"WITH {series_cte[0]} {sql}"
            params = [*series_cte[1], *params]
    rows = db._reader().execute(sql, params).fetchall()
    if not keys:
        return [_record(lv, row) for row in rows]
    return [
        dataclasses_lite.replace(_record(lv, row), extra=_echo(row["dicomplus_match"], keys)) for row in rows
    ]


def _echo(header: bytes | None, keys: list) -> dict[str, object]:
    """The header keys' values in the matching instance, as SQLite's search echoes them."""
    from pydicom.datadict import tag_for_keyword

    plain = [k for k in keys if isinstance(k, Criterion)]
    if header is None:
        raise DatabaseError("a matching instance went away during the search; search again")
    tags = {k.keyword: tag for k in plain if (tag := tag_for_keyword(k.keyword)) is not None}
    try:
        values = scan(bytes(header), frozenset(tags.values()), complete=True).values
    except ScanError:
        values = {}
    return {k.keyword: values.get(tags[k.keyword]) if k.keyword in tags else None for k in plain}
