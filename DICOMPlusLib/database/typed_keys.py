"""Search keys as people type them, checked and put in DICOM form before matching.

A query key that is not in DICOM form silently matches nothing (``StudyDate=2020``,
``Modality=ct``), so each value is checked against the VR of its keyword (PS3.5 6.2) and the
matching rules of PS3.4 C.2.2.2, and either rewritten into the equivalent DICOM form or
rejected with the form expected:

- keywords are case-insensitive (``studydate``); an unknown one suggests the nearest keyword;
- DA (C.2.2.2.5): ``20200315``, ``2020-03-15``, ``2020`` (the whole year), ``2020-03`` /
  ``202003`` (the whole month), ``today``, ``yesterday``; ranges ``A-B``, ``A-``, ``-B`` in any of
  those forms, or ISO ``A..B`` / ``A/B``. A year or month bound covers its whole span;
- TM: ``HHMMSS`` or ``HH:MM:SS`` (or shorter), and ranges of them;
- CS (C.2.2.2.1; CS values are upper case by definition): ``Modality=ct`` is ``CT``;
- PN: ``FAMILY^GIVEN``; ``Doe Peter`` or ``Doe, Peter`` is rejected with that form, since
  the order of the parts cannot be guessed;
- UI: digits and dots (a ``\\``-separated list for list matching, C.2.2.2.2); no wildcards;
- numbers (IS, DS, US, ...): a number.

An empty value or ``*`` is universal matching (C.2.2.2.3) for every VR. A key inside a sequence
is written ``Sequence.Keyword`` (C.2.2.2.6), its value checked by the last keyword's VR.
"""

from __future__ import annotations

import datetime
import re

from DICOMPlusLib.errors import (
    SearchKeyError,
)

DATE_FORMS = (
    "a date like 20200315, 2020-03-15, 2020 (the year), 2020-03 (the month), today or yesterday, "
    "or a range like 20200101-20201231, 2020-01-01..2020-12-31, 2020- or -2020"
)
TIME_FORMS = "a time like 1430, 14:30:00, or a range like 0800-1200"
_NUMBER_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_CS = re.compile(r"^[A-Z0-9 _*?\\]*$")
_TIME = re.compile(r"^\d{2}(:?\d{2}(:?\d{2}(\.\d{1,6})?)?)?$")

_keywords: dict[str, str] | None = None
#: A query level's name given where a key goes (``search series``): the --level it meant.
_LEVEL_WORDS = {
    word: level
    for level, words in (
        ("patient", ("patient", "patients")),
        ("study", ("study", "studies")),
        ("series", ("series",)),
        ("instance", ("instance", "instances", "image", "images")),
    )
    for word in words
}


def parse_typed_keys(items: list[str]) -> list[tuple[str, str]]:
    """``["KEYWORD=VALUE", ...]`` as ``[(Keyword, dicom_value), ...]``."""
    keys = []
    for item in items:
        keyword, sep, value = item.partition("=")
        if not sep or not keyword.strip():
            level = _LEVEL_WORDS.get(item.strip().lower()) if not sep else None
            hint = f"; to list {item.strip().lower()}, give --level {level}" if level else ""
            raise SearchKeyError(
                f"expected KEYWORD=VALUE, got {item!r} (e.g. PatientName=DOE* or StudyDate=2020-){hint}"
            )
        keys.append(typed_key(keyword, value))
    return keys


def typed_key(keyword: str, value: str) -> tuple[str, str]:
    """One key: the keyword as in PS3.6 and the value in DICOM form."""
    from DICOMPlusLib.database.keywords import vr_of

    if "." in keyword:
        return _sequence_key(keyword, value)
    keyword = canonical_keyword(keyword)
    vr = vr_of(keyword)
    text = value.strip()
    if text in ("", "*"):
        return keyword, text
    if vr == "SQ":
        raise SearchKeyError(
            f"{keyword}={value}: {keyword} is a sequence; match an attribute of its items, e.g. "
            f"{keyword}.CodeValue={value}"
        )
    if vr == "DA":
        return keyword, _date_value(keyword, text)
    if vr == "TM":
        return keyword, _time_value(keyword, text)
    if vr == "CS":
        upper = text.upper()
        if not _CS.match(upper):
            raise SearchKeyError(
                f"{keyword}={value}: a code string holds only letters, digits, spaces and _ (e.g. {keyword}=CT)"
            )
        return keyword, upper
    if vr == "PN":
        return keyword, _name_value(keyword, text)
    if vr == "UI":
        parts = text.split("\\")
        if not all(_UID.match(p.strip()) for p in parts):
            raise SearchKeyError(
                f"{keyword}={value}: expected a UID (digits and dots, e.g. 1.2.840.113619.2.55), or "
                "several separated by a backslash; UIDs take no wildcards"
            )
        return keyword, "\\".join(p.strip() for p in parts)
    if vr in _NUMBER_VRS and not _NUMBER.match(text):
        raise SearchKeyError(f"{keyword}={value}: expected a number (e.g. {keyword}=3)")
    return keyword, value


def _sequence_key(keyword: str, value: str) -> tuple[str, str]:
    """``Sequence.Keyword`` (``ProcedureCodeSequence.CodeValue=CT*``): a key on an attribute of the
    sequence's items (C.2.2.2.6), written as the library's search and C-FIND take it; each name
    before the last is a sequence (SQ), the value is checked by the last one's VR."""
    from DICOMPlusLib.database.keywords import vr_of

    *names, leaf = [canonical_keyword(part) if part.strip() else "" for part in keyword.split(".")]
    if not leaf or not all(names):
        raise SearchKeyError(
            f"{keyword.strip()!r}: a key inside a sequence is Sequence.Keyword, e.g. ProcedureCodeSequence.CodeValue"
        )
    for name in names:
        if vr_of(name) != "SQ":
            raise SearchKeyError(
                f"{keyword.strip()}: {name} is not a sequence; a key inside a sequence is Sequence.Keyword, "
                "e.g. ProcedureCodeSequence.CodeValue"
            )
    if vr_of(leaf) == "SQ":
        raise SearchKeyError(f"{keyword.strip()}: {leaf} is a sequence; name an attribute of its items")
    leaf, text = typed_key(leaf, value)
    return ".".join((*names, leaf)), text


def canonical_keyword(keyword: str) -> str:
    """``studydate`` -> ``StudyDate``; an unknown keyword names the nearest one."""
    from DICOMPlusLib.database.keywords import common_keyword

    global _keywords
    common = common_keyword(keyword.strip())
    if common:
        return common
    if _keywords is None:
        from DICOMPlusLib.database.keywords import all_keywords

        _keywords = {k.lower(): k for k in all_keywords()}
    word = keyword.strip()
    found = _keywords.get(word.lower())
    if found:
        return found
    import difflib

    near = difflib.get_close_matches(word.lower(), list(_keywords), n=1, cutoff=0.75)
    hint = f"; did you mean {_keywords[near[0]]}?" if near else " (use a keyword of PS3.6, e.g. PatientName)"
    raise SearchKeyError(f"unknown DICOM keyword {word!r}{hint}")


# -- dates -------------------------------------------------------------------------------------------
_ISO_DAY = r"\d{4}-\d{2}-\d{2}"


def _date_value(keyword: str, text: str) -> str:
    low, high, is_range = _split_date_range(text)
    if not is_range:
        first, last = _date_span(keyword, text)
        return first if first == last else f"{first}-{last}"
    first = _date_span(keyword, low)[0] if low else ""
    last = _date_span(keyword, high)[1] if high else ""
    if not first and not last:
        raise SearchKeyError(f"{keyword}={text}: expected {DATE_FORMS}")
    if first and last and first > last:
        raise SearchKeyError(f"{keyword}={text}: the range ends before it starts")
    return f"{first}-{last}"


def _split_date_range(text: str) -> tuple[str, str, bool]:
    for separator in ("..", "/"):
        if separator in text:
            low, _, high = text.partition(separator)
            return low.strip(), high.strip(), True
    if re.fullmatch(rf"{_ISO_DAY}|\d{{4}}-\d{{2}}", text):
        return text, "", False
    iso = re.fullmatch(rf"({_ISO_DAY})?\s*-\s*({_ISO_DAY})?", text)
    if iso:
        return iso.group(1) or "", iso.group(2) or "", True
    if text.count("-") == 1:
        low, _, high = text.partition("-")
        return low.strip(), high.strip(), True
    return text, "", False


def _date_span(keyword: str, text: str) -> tuple[str, str]:
    """The first and last day (YYYYMMDD) of what ``text`` names."""
    word = text.lower()
    if word in ("today", "yesterday"):
        day = datetime.date.today() - datetime.timedelta(days=word == "yesterday")
        stamp = day.strftime("%Y%m%d")
        return stamp, stamp
    import calendar

    digits = text.replace("-", "") if re.fullmatch(rf"{_ISO_DAY}|\d{{4}}-\d{{2}}", text) else text
    try:
        if re.fullmatch(r"\d{8}", digits):
            datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
            return digits, digits
        if re.fullmatch(r"\d{6}", digits):
            year, month = int(digits[:4]), int(digits[4:])
            last = calendar.monthrange(year, month)[1]
            return f"{digits}01", f"{digits}{last:02d}"
        if re.fullmatch(r"\d{4}", digits):
            return f"{digits}0101", f"{digits}1231"
    except (ValueError, calendar.IllegalMonthError):
        raise SearchKeyError(f"{keyword}={text}: no such date; expected {DATE_FORMS}") from None
    raise SearchKeyError(f"{keyword}={text}: expected {DATE_FORMS}")


# -- times and names -------------------------------------------------------------------------------
def _time_value(keyword: str, text: str) -> str:
    low, sep, high = text.partition("-")
    for part in (low, high) if sep else (low,):
        if part.strip() and not _TIME.match(part.strip()):
            raise SearchKeyError(f"{keyword}={text}: expected {TIME_FORMS}")
    if sep and not (low.strip() or high.strip()):
        raise SearchKeyError(f"{keyword}={text}: expected {TIME_FORMS}")
    return f"{low.strip()}{sep}{high.strip()}"


def _name_value(keyword: str, text: str) -> str:
    if "," in text or (" " in text.strip() and "^" not in text and not any(c in text for c in "*?")):
        parts = [p for p in re.split(r"[ ,]+", text) if p]
        raise SearchKeyError(
            f"{keyword}={text!r}: DICOM names are FAMILY^GIVEN, e.g. {keyword}='{parts[0]}^{parts[-1]}' "
            f"or {keyword}='{parts[0]}*' (or search free text with --text '{text}')"
        )
    return text
