"""Re-checking query answers against the criteria (issue: peers that ignore keys).

A peer may ignore a matching key it does not index (dcmqrscp answers ``SeriesDescription=*T1*``
with every series), apply a rule differently (Orthanc 1.10 and trailing ``^``, ``?`` against an
accented letter, sequences), or be asked a superset on purpose (QIDO-RS values Orthanc cannot
decode, names sent as patterns). Every answer is checked with local search's matching
(:mod:`DICOMPlusLib.database.matching`); what does not match is left out and counted, and a key
an answer carries no value for is reported as not checked, in a :class:`QueryReport`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from DICOMPlusLib.dataclasses_lite import dataclass, field

if TYPE_CHECKING:
    from pydicom import Dataset

    from DICOMPlusLib.models import Record


@dataclass
class QueryReport:
    """How many answers a query received, how many were left out because they do not match the
    criteria (the peer ignored a key, or the request asked a superset), and which keys could
    not be checked because the peer did not return them (dcmqrscp omits the keys it does not
    support: its answers are then not filtered by them)."""

    received: int = 0
    filtered: int = 0
    filtered_keys: dict[str, int] = field(default_factory=dict)
    unchecked_keys: dict[str, int] = field(default_factory=dict)

    def message(self) -> str:
        parts = []
        if self.filtered:
            keys = ", ".join(f"{k} ({n})" for k, n in sorted(self.filtered_keys.items()))
            parts.append(
                f"{self.filtered} of {self.received} answers did not match the criteria and were left out: {keys}"
            )
        for key, n in sorted(self.unchecked_keys.items()):
            parts.append(f"the peer did not return {key} in {n} answers, which are not checked against it")
        return "; ".join(parts)


def _answer_value(record: Record, keyword: str):
    value = getattr(record, keyword, None) if keyword[0].isupper() else None
    if value is None:
        value = record.extra.get(keyword)
    return value


def check_answer(
    record: Record, criteria: Mapping[str, str], ds: Dataset | None = None
) -> tuple[str | None, list[str]]:
    """(the first key ``record`` does not meet, or None; the keys that could not be checked).

    Matching is local search's (PS3.4 C.2.2.2, :mod:`DICOMPlusLib.database.matching`).
    ``ds``, the answer as received (C-FIND), holds the sequences a ``Sequence.Keyword`` key is
    checked against. A key the answer carries no value for is not checked: a peer that ignores
    a key omits it (dcmqrscp) or returns it empty, and a peer that matched it returns a value."""
    from DICOMPlusLib.database.matching import MatchKind, SequenceCriterion, parse_criteria

    try:
        parsed = parse_criteria(dict(criteria))
    except Exception:  # an unknown keyword was refused before the query was sent
        return None, []
    unchecked = []
    for criterion in parsed:
        if criterion.kind is MatchKind.UNIVERSAL:
            continue
        if isinstance(criterion, SequenceCriterion):
            stored = ds[criterion.keyword].value if ds is not None and criterion.keyword in ds else None
            present = bool(stored)
            label = next(k for k in criteria if k.split(".")[0] == criterion.keyword)
        else:
            stored = _answer_value(record, criterion.keyword)
            present = stored not in (None, "")
            label = next((k for k in criteria if k == criterion.keyword), criterion.keyword)
        if not present or (ds is not None and not _representable(str(criteria[label]), ds)):
            unchecked.append(label)
        elif not criterion.matches(stored):
            return label, unchecked
    return None, unchecked


def _representable(text: str, ds: Dataset) -> bool:
    """Whether the answer's character set (PS3.3 C.12.1.1.2) can hold ``text``: a peer that
    answers in Latin-1 (Orthanc's default) replaces the characters it cannot encode, so such an
    answer cannot be checked against a Japanese or Cyrillic key."""
    if text.isascii():
        return True
    from pydicom.charset import python_encoding

    charsets = ds.get("SpecificCharacterSet") or ""
    charsets = [charsets] if isinstance(charsets, str) else list(charsets)
    if any("2022" in c for c in charsets):
        return True  # code extensions: several repertoires, assume the name fits
    codec = python_encoding.get(str(charsets[0]).strip() if charsets else "", "ascii")
    try:
        text.encode(codec)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def checked(answers: Iterable[tuple[Record, Dataset | None]], criteria: Mapping[str, str], report: QueryReport,
             limit: int | None) -> Iterator[Record]:  # fmt: skip
    count = 0
    for record, ds in answers:
        report.received += 1
        key, unchecked = check_answer(record, criteria, ds)
        for k in unchecked:
            report.unchecked_keys[k] = report.unchecked_keys.get(k, 0) + 1
        if key is not None:
            report.filtered += 1
            report.filtered_keys[key] = report.filtered_keys.get(key, 0) + 1
            continue
        yield record
        count += 1
        if limit is not None and count >= limit:
            return
