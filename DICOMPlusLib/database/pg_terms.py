"""The terms of each series: what an exact any-tag key on PostgreSQL looks up first (issue 20).

An exact key on a top-level text element that is no column (``Manufacturer=SIEMENS``) is the term
``'Manufacturer=SIEMENS'`` (:func:`~.pg_search._term`). Such elements are nearly always series or
study attributes, the same in every instance of a series: the table ``series_terms`` keeps the
distinct terms of each series (a few thousand rows a term at most, one per series), where an
index over the instances' terms walked every matching instance (hundreds of thousands for a
common value) and cost a third of the server's CPU per ingested instance.

The table is exact: a series has a term if and only if one of its instances has it, so a search
with one key needs no instance check at series level and above. Every writer keeps it so:

- ingest and the SQLite-to-PostgreSQL migration add the terms of the instances they store
  (:func:`add_terms`: one statement a transaction, in one sorted order, so that writers into one
  series, which hold its lock shared, never deadlock on these rows);
- a delete that leaves some instances of a series recomputes the series' terms from the
  instances left (:func:`recompute`); a replacement whose old version had terms its new one
  lacks, or was in another series, takes away those no instance has now (:func:`remove_gone`).
  Both hold the series' lock exclusively, so that no writer adds a term meanwhile (an instance
  sent again unchanged, the common replacement, takes no such lock and changes nothing); a
  series deleted whole takes its terms with it (``ON DELETE CASCADE``).

Terms of numeric elements and of the columns' elements are not kept: no any-tag key looks for
them (a numeric key compares numbers, a column's key is a test on the column).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

#: Values longer than this have no term (the same limit as ``dicomplus_terms`` in SQL).
MAX_TERM_VALUE = 200


class Connection(Protocol):
    def execute(self, sql: str, params: Sequence | None = ..., /) -> Any: ...


@functools.cache
def skipped_keywords() -> frozenset[str]:
    """Keywords whose terms are not kept: numeric VRs and the columns' keywords."""
    from DICOMPlusLib.database.keywords import _entries, vr_of
    from DICOMPlusLib.database.matching import _NUMERIC_VRS
    from DICOMPlusLib.database.search import COLUMNS

    numeric = {k for k in _entries() if vr_of(k) in _NUMERIC_VRS}
    return frozenset(numeric | set(COLUMNS))


def kept(keyword: str) -> bool:
    """Whether terms of ``keyword`` are kept (an any-tag key on it may look them up)."""
    return keyword not in skipped_keywords()


def instance_terms(elements: dict) -> set[str]:
    """The kept terms of one instance's ``elements`` (:func:`~.pg_search.header_elements`): what
    ``dicomplus_terms`` gives in SQL, less the skipped keywords."""
    skip = skipped_keywords()
    out = set()
    for keyword, values in elements.items():
        if keyword in skip or not isinstance(values, list):
            continue
        for value in values:
            if isinstance(value, str) and len(value) <= MAX_TERM_VALUE:
                out.add(f"{keyword}={value}")
    return out


def add_terms(conn: Connection, pairs: Iterable[tuple[str, str]]) -> None:
    """Add ``(term, SeriesInstanceUID)`` pairs, in one statement, sorted byte-wise (as ``COLLATE
    "C"`` orders them): two writers inserting the same new rows wait for each other in one order.
    """
    rows = sorted(set(pairs), key=lambda p: (p[0].encode("utf-8", "surrogatepass"), p[1].encode()))
    if not rows:
        return
    conn.execute(
        "INSERT INTO series_terms (term, series) SELECT t, s FROM unnest(CAST(? AS text[]), CAST(? AS text[]))"
        " WITH ORDINALITY AS u(t, s, n) ORDER BY n ON CONFLICT DO NOTHING",
        ([t for t, _ in rows], [s for _, s in rows]),
    )


#: The kept terms of the instances of some series, computed by the server from ``elements``.
_TERMS_OF = (
    'SELECT DISTINCT t.term COLLATE "C", i.SeriesInstanceUID FROM instances i,'
    " unnest(dicomplus_terms(i.elements)) AS t(term)"
    " WHERE split_part(t.term, '=', 1) NOT IN (SELECT unnest(CAST(? AS text[])))"
)


def remove_gone(conn: Connection, series: str, terms: Iterable[str]) -> None:
    """Take away those of ``terms`` that no instance of ``series`` has now (a replacement's old
    terms its new version lacks: each is looked for among the series' instances, usually found
    in the first). The caller holds the series' lock exclusively."""
    terms = sorted(set(terms))
    if not terms:
        return
    conn.execute(
        "DELETE FROM series_terms st WHERE st.series = ? AND st.term = ANY(CAST(? AS text[]))"
        " AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.SeriesInstanceUID = st.series AND i.elements @>"
        " jsonb_build_object(split_part(st.term, '=', 1), jsonb_build_array(substr(st.term, strpos(st.term, '=') + 1))))",
        (series, terms),
    )


def recompute(conn: Connection, series: Iterable[str]) -> None:
    """Make the terms of ``series`` those of their instances now. The caller holds the series'
    locks exclusively (a delete, a replacement): no other writer adds terms to them meanwhile."""
    uids = sorted(set(series))
    if not uids:
        return
    conn.execute("DELETE FROM series_terms WHERE series = ANY(CAST(? AS text[]))", (uids,))
    conn.execute(
        f"INSERT INTO series_terms (term, series) {_TERMS_OF} AND i.SeriesInstanceUID = ANY(CAST(? AS text[]))"
        " ORDER BY 1, 2 ON CONFLICT DO NOTHING",
        (sorted(skipped_keywords()), uids),
    )


def migrate_v4(conn: Connection) -> None:
    """Schema version 4: ``series_terms``, filled from the stored instances; the instances' terms
    index (version 3) goes, nothing else reads it."""
    conn.execute(
        'CREATE TABLE IF NOT EXISTS series_terms (term text COLLATE "C" NOT NULL,'
        ' series text COLLATE "C" NOT NULL REFERENCES series (SeriesInstanceUID) ON DELETE CASCADE,'
        " PRIMARY KEY (term, series))"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS series_terms_series ON series_terms (series)")
    fill(conn)
    conn.execute("DROP INDEX IF EXISTS instances_terms")


def fill(conn: Connection) -> None:
    """Add the terms of every stored instance (a migration, a bulk load), then their statistics."""
    conn.execute(
        f"INSERT INTO series_terms (term, series) {_TERMS_OF} ORDER BY 1, 2 ON CONFLICT DO NOTHING",
        (sorted(skipped_keywords()),),
    )
    conn.execute("ANALYZE series_terms")
