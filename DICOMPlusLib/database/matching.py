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
- range matching (C.2.2.2.5): ``a-b``, ``-b``, ``a-`` for DA, TM and DT.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from dataclasses import dataclass

from DICOMPlusLib.errors import DatabaseError

_RANGE_VRS = frozenset({"DA", "TM", "DT"})


class MatchKind(enum.Enum):
    UNIVERSAL = "universal"
    SINGLE = "single"
    WILDCARD = "wildcard"
    UID_LIST = "uid_list"
    RANGE = "range"


def keyword_vr(keyword: str) -> str:
    """The VR of a DICOM keyword; raises DatabaseError for an unknown keyword."""
    from DICOMPlusLib.database.keywords import vr_of  # not pydicom: a search starts faster

    vr = vr_of(keyword)
    if vr is None:
        raise DatabaseError(
            f"unknown DICOM keyword {keyword!r}: use the keyword from PS3.6, e.g. PatientName"
        )
    return vr


def normalize_pn(value: str) -> str:
    """PN values compare without case and without trailing empty components."""
    return value.casefold()


def _normalize_time(value: str) -> str:
    return value.replace(":", "")


@dataclass(frozen=True)
class Criterion:
    keyword: str
    vr: str
    kind: MatchKind
    value: str = ""
    low: str = ""
    high: str = ""
    values: tuple[str, ...] = ()

    @classmethod
    def parse(cls, keyword: str, value: str | None) -> Criterion:
        vr = keyword_vr(keyword)
        text = "" if value is None else str(value)
        if vr == "PN":
            text = text.rstrip("^ ")
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
    def sql(self, column: str) -> tuple[str, list[object]]:
        """A WHERE fragment over ``column`` and its parameters.

        For PN, ``column`` must hold the case-folded name (see :func:`normalize_pn`).
        """
        k = self.kind
        if k is MatchKind.UNIVERSAL:
            return "1", []
        if k is MatchKind.UID_LIST:
            return f"{column} IN ({','.join('?' * len(self.values))})", list(self.values)
        if k is MatchKind.RANGE:
            parts, params = [], []
            if self.low:
                parts.append(f"{column} >= ?")
                params.append(self.low)
            if self.high:
                # an open upper bound on a date also takes times within that date (DT)
                parts.append(f"{column} <= ?")
                params.append(self.high + ("\uffff" if self.vr == "DT" else ""))
            # only values that are dates/times at all: a malformed stored value ('***', 'unknown')
            # sorts before digits and would fall into every open lower range
            parts.append(f"{column} GLOB '[0-9]*'")
            return "(" + " AND ".join(parts) + ")", params
        value = normalize_pn(self.value) if self.vr == "PN" else self.value
        if k is MatchKind.SINGLE:
            if self.vr in ("IS", "DS"):
                return f"CAST({column} AS REAL) = ?", [float(value)]
            return f"{column} = ?", [value]
        # Wildcards: GLOB is case-sensitive and treats only * ? [ specially; escape '['.
        pattern = value.replace("[", "[[]")
        return f"{column} GLOB ?", [pattern]

    # -- Python ------------------------------------------------------------------------------
    def matches(self, stored: object) -> bool:
        """Test a stored value (a decoded header value: str, number or tuple)."""
        k = self.kind
        if k is MatchKind.UNIVERSAL:
            return True
        if stored is None:
            return False
        if isinstance(stored, tuple | list):
            return any(self.matches(v) for v in stored)
        text = str(stored).strip()
        if "\\" in text and self.vr not in ("ST", "LT", "UT"):
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
            return not (self.high and text > self.high + ("\uffff" if self.vr == "DT" else ""))
        value = self.value
        if self.vr == "PN":
            text, value = normalize_pn(text), normalize_pn(value)
        if k is MatchKind.SINGLE:
            if self.vr in ("IS", "DS", "US", "SS", "UL", "SL", "FL", "FD"):
                try:
                    return float(text) == float(value)
                except ValueError:
                    return False
            return text == value
        regex = _wildcard_regex(value)
        return regex.fullmatch(text) is not None


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    # fnmatch.translate also treats [...] as classes; DICOM does not, so escape them first.
    escaped = pattern.replace("[", "\x00").replace("]", "\x01")
    regex = fnmatch.translate(escaped).replace("\x00", r"\[").replace("\x01", r"\]")
    return re.compile(regex, re.DOTALL)


def parse_criteria(items: dict[str, str] | list[tuple[str, str]]) -> list[Criterion]:
    pairs = items.items() if isinstance(items, dict) else items
    return [Criterion.parse(k, v) for k, v in pairs]
