"""DICOM attribute matching (PS3.4 C.2.2.2), as SQL for stored columns and in Python for the rest.

A query key is parsed once into a :class:`Criterion` that can render itself as a SQL condition
over a column and can test a Python value, so that a key on a column (``PatientName``) and a key
on a tag that only lives in the stored header (``RepetitionTime``) follow the same rules:

- universal matching (C.2.2.2.3): an empty value or a lone ``*`` matches everything;
- single value matching (C.2.2.2.1): exact; case-insensitive only for PN, where this
  implementation (like most archives) ignores case, as the Standard allows for PN;
- wildcard matching (C.2.2.2.4): ``*`` any run of characters, ``?`` one character; SQL's own
  wildcard characters ``%`` and ``_`` in the value are matched literally;
- list of UID matching (C.2.2.2.2): ``uid1\\uid2`` for UI attributes;
- range matching (C.2.2.2.5): ``a-b``, ``-b``, ``a-`` for DA, TM and DT; an upper bound with
  fewer digits than the stored value covers the whole unit it names (``-0930`` takes
  ``093000`` and ``093059``), as for DT;
- multiple value matching (C.2.2.2.8): ``CT\\MR`` matches when any of the values matches, on
  every VR whose values may be multiple (not ST, LT, UT, UR, where ``\\`` is a character);
- sequence matching (C.2.2.2.6): a key written ``Sequence.Keyword`` (``ProcedureCodeSequence.
  CodeValue=CTCHEST``; deeper paths nest) matches when one item of the stored sequence matches
  every key given for that sequence (:class:`SequenceCriterion`).

Person names (PN) compare after :func:`normalize_pn`, on every path (SQL column, stored header,
network key), so ``Wang^XiaoDong=王^小東=`` and ``Wang^XiaoDong=王^小東`` are the same name.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Mapping, Sequence

from DICOMPlusLib.database.dialect import SQLITE, Dialect
from DICOMPlusLib.database.names import normalize_pn as normalize_pn  # the importers' name for it
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import DatabaseError

_RANGE_VRS = frozenset({"DA", "TM", "DT"})
# VRs whose value is one text in which a backslash is an ordinary character (PS3.5 6.2)
_SINGLE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UR", "OB", "OW", "OD", "OF", "OL", "OV", "UN", "SQ"})
_NUMERIC_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})


class MatchKind(enum.Enum):
    UNIVERSAL = "universal"
    SINGLE = "single"
    WILDCARD = "wildcard"
    UID_LIST = "uid_list"
    RANGE = "range"
    MULTIPLE = "multiple"


def keyword_vr(keyword: str) -> str:
    """The VR of a DICOM keyword; raises DatabaseError for an unknown keyword."""
    from DICOMPlusLib.database.keywords import vr_of  # not pydicom: a search starts faster

    vr = vr_of(keyword)
    if vr is None:
        raise DatabaseError(
            f"unknown DICOM keyword {keyword!r}: use the keyword from PS3.6, e.g. PatientName"
        )
    return vr


def explicit_upper_bound(vr: str, value: str) -> str:
    """A TM range with its upper bound written to the full precision it implies (``-0930`` ->
    ``-093059.999999``), for peers that compare the bound as it is written and so miss
    ``093000`` (Orthanc 1.10). Other values are returned unchanged."""
    if vr != "TM" or "-" not in value or "\\" in value:
        return value
    low, _, high = value.partition("-")
    digits = high.strip().replace(":", "")
    if not digits or not digits.isdigit() or len(digits) not in (2, 4, 6):
        return value
    return f"{low}-{digits}{'5959'[: 6 - len(digits)] if len(digits) < 6 else ''}.999999"


def _normalize_time(value: str) -> str:
    return value.replace(":", "")


@dataclass(frozen=True)
class Criterion:
    """One key of a query as PS3.4 C.2.2.2 matches it: the attribute, its VR, the kind of matching
    and its operands (``values`` of a UID list, ``low``/``high`` of a range, ``alternatives``:
    one criterion per value of a list of values)."""

    keyword: str
    vr: str
    kind: MatchKind
    value: str = ""
    low: str = ""
    high: str = ""
    values: tuple[str, ...] = ()
    alternatives: tuple[Criterion, ...] = ()

    @classmethod
    def parse(cls, keyword: str, value: str | None) -> Criterion:
        vr = keyword_vr(keyword)
        text = "" if value is None else str(value)
        if "\\" in text and vr not in _SINGLE_TEXT_VRS and vr != "UI":
            parts = tuple(dict.fromkeys(p for p in text.split("\\") if p.strip()))
            alternatives = tuple(cls._parse_one(keyword, vr, p) for p in parts)
            if not alternatives or any(a.kind is MatchKind.UNIVERSAL for a in alternatives):
                return cls(keyword, vr, MatchKind.UNIVERSAL)
            if len(alternatives) == 1:
                return alternatives[0]
            return cls(keyword, vr, MatchKind.MULTIPLE, value=text, alternatives=alternatives)
        return cls._parse_one(keyword, vr, text)

    @classmethod
    def _parse_one(cls, keyword: str, vr: str, text: str) -> Criterion:
        if vr == "PN":
            text = normalize_pn(text)
        if text in ("", "*"):
            return cls(keyword, vr, MatchKind.UNIVERSAL)
        if vr in _RANGE_VRS and "-" in text:
            low, _, high = text.partition("-")
            if vr == "TM":
                low, high = _normalize_time(low), _normalize_time(high)
            return cls(keyword, vr, MatchKind.RANGE, low=low.strip(), high=high.strip())
        if vr == "UI" and "\\" in text:
            return cls(
                keyword,
                vr,
                MatchKind.UID_LIST,
                values=tuple(v.strip() for v in text.split("\\") if v.strip()),
            )
        if vr in _RANGE_VRS:
            text = _normalize_time(text) if vr == "TM" else text
        if ("*" in text or "?" in text) and vr not in ("UI",):
            return cls(keyword, vr, MatchKind.WILDCARD, value=text)
        return cls(keyword, vr, MatchKind.SINGLE, value=text)

    # -- SQL ---------------------------------------------------------------------------------
    def sql(self, column: str, dialect: Dialect = SQLITE) -> tuple[str, list[object]]:
        """A WHERE fragment over ``column`` and its parameters, in ``dialect``'s SQL.

        For PN, ``column`` must hold the case-folded name (see :func:`normalize_pn`).
        """
        k = self.kind
        if k is MatchKind.UNIVERSAL:
            return "1", []
        if k is MatchKind.MULTIPLE:
            parts, params = [], []
            for alternative in self.alternatives:
                sql, p = alternative.sql(column, dialect)
                parts.append(sql)
                params.extend(p)
            return "(" + " OR ".join(parts) + ")", params
        if k is MatchKind.UID_LIST:
            return f"{column} IN ({','.join('?' * len(self.values))})", list(self.values)
        if k is MatchKind.RANGE:
            parts, params = [], []
            if self.low:
                parts.append(f"{dialect.text(column)} >= ?")
                params.append(self.low)
            if self.high:
                parts.append(f"{dialect.text(column)} <= ?")
                params.append(self._upper())
            # only values that are dates/times at all: a malformed stored value ('***', 'unknown')
            # sorts before digits and would fall into every open lower range
            parts.append(dialect.starts_with_digit(column))
            return "(" + " AND ".join(parts) + ")", params
        value = self.value
        if k is MatchKind.SINGLE:
            if self.vr in _NUMERIC_VRS:
                return f"{dialect.number(column)} = ?", [_number(self.keyword, value)]
            return f"{column} = ?", [value]
        return dialect.wildcard(column, value)

    # -- Python ------------------------------------------------------------------------------
    def matches(self, stored: object) -> bool:
        """Test a stored value (a decoded header value: str, number or tuple)."""
        k = self.kind
        if k is MatchKind.UNIVERSAL:
            return True
        if stored is None:
            return False
        if k is MatchKind.MULTIPLE:
            return any(a.matches(stored) for a in self.alternatives)
        if isinstance(stored, tuple | list):
            return any(self.matches(v) for v in stored)
        text = str(stored).strip()
        if "\\" in text and self.vr not in _SINGLE_TEXT_VRS:
            return any(self.matches(part) for part in text.split("\\"))
        if k is MatchKind.UID_LIST:
            return text in self.values
        if k is MatchKind.RANGE:
            if self.vr == "TM":
                text = _normalize_time(text)
            if not text[:1].isdigit():
                return False
            if self.low and text < self.low:
                return False
            return not (self.high and text > self._upper())
        value = self.value
        if self.vr == "PN":
            text = normalize_pn(text)
        if k is MatchKind.SINGLE:
            if self.vr in _NUMERIC_VRS:
                try:
                    return float(text) == float(value)
                except ValueError:
                    return False
            return text == value
        regex = _wildcard_regex(value)
        return regex.fullmatch(text) is not None

    def _upper(self) -> str:
        """The upper bound of a range as it compares with stored text: a time or date-time
        bound covers every value that starts with it (``0930`` takes ``093059.5``)."""
        return self.high + ("\uffff" if self.vr in ("DT", "TM") else "")


def _number(keyword: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DatabaseError(f"{keyword} needs a number, not {value!r}") from None


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    # fnmatch.translate also treats [...] as classes; DICOM does not, so escape them first.
    escaped = pattern.replace("[", "\x00").replace("]", "\x01")
    regex = fnmatch.translate(escaped).replace("\x00", r"\[").replace("\x01", r"\]")
    return re.compile(regex, re.DOTALL)


@dataclass(frozen=True)
class SequenceCriterion:
    """Sequence matching (PS3.4 C.2.2.2.6): the key of a sequence attribute is one item of item
    keys; an entity matches when one of the items of its stored sequence matches every item key
    (an item without keys matches any sequence, as universal matching)."""

    keyword: str
    items: tuple[Criterion | SequenceCriterion, ...]
    vr: str = "SQ"

    @property
    def kind(self) -> MatchKind:
        return MatchKind.UNIVERSAL if not self.items else MatchKind.SINGLE

    def matches(self, stored) -> bool:
        if not self.items:
            return True
        for item in stored or ():
            if all(key.matches(_item_value(item, key)) for key in self.items):
                return True
        return False


def _item_value(item, key: Criterion | SequenceCriterion):
    """The value of ``key`` in a pydicom item, as :meth:`Criterion.matches` takes it."""
    elem = item.get(key.keyword)
    if elem is None:
        return None
    value = item[key.keyword].value
    if isinstance(key, SequenceCriterion):
        return value
    if value is None:
        return None
    if isinstance(value, str | bytes | int | float):
        return value
    if type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return str(value)


def _sequence_criterion(path: list[str], value: str) -> Criterion | SequenceCriterion:
    if len(path) == 1:
        return Criterion.parse(path[0], value)
    if keyword_vr(path[0]) != "SQ":
        raise DatabaseError(f"{path[0]} is not a sequence: {'.'.join(path)} cannot be matched")
    return SequenceCriterion(path[0], (_sequence_criterion(path[1:], value),))


def _merge(criteria: list) -> list:
    """Keys into one sequence make one item key: ``S.A=x`` and ``S.B=y`` match one item."""
    out: list = []
    for c in criteria:
        same = next((o for o in out if isinstance(o, SequenceCriterion) and o.keyword == c.keyword), None)
        if isinstance(c, SequenceCriterion) and same is not None:
            out[out.index(same)] = SequenceCriterion(c.keyword, tuple(_merge([*same.items, *c.items])))
        else:
            out.append(c)
    return out


def parse_criteria(
    items: Mapping[str, str] | Sequence[tuple[str, str]],
) -> list[Criterion | SequenceCriterion]:
    pairs = items.items() if isinstance(items, Mapping) else items
    parsed = [_sequence_criterion(k.split("."), v) if "." in k else Criterion.parse(k, v) for k, v in pairs]
    return _merge(parsed)
