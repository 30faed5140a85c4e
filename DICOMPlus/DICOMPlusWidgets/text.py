"""How the widgets write DICOM values for people: names without carets, dates with dashes,
titles that say something when a description is empty, counts with the right plural, and load
warnings in the user's words.

Pure functions over strings and records (no Qt), so they are easy to test and to reuse.
"""

from __future__ import annotations

import fnmatch
import re

from slicer.i18n import tr as _


def formatPersonName(value):
    """A DICOM Person Name (PS3.5 6.2: ``family^given^middle^prefix^suffix``, up to three
    ``=``-separated representations) as people write it, family name first as Slicer shows it:
    "DOE^JANE" -> "DOE, JANE", "Doe^John^Q^Dr^Jr" -> "Doe, Dr John Q, Jr". Case is kept."""
    text = str(value or "").split("=")[0]  # the alphabetic representation
    parts = [part.strip() for part in text.split("^")] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    rest = " ".join(p for p in (prefix, given, middle) if p)
    name = f"{family}, {rest}" if family and rest else family or rest
    return f"{name}, {suffix}" if suffix and name else name or suffix


def formatDate(value):
    """YYYYMMDD -> YYYY-MM-DD; anything else unchanged."""
    value = str(value or "")
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


#: A date as people type it: 2016, 2016-03, 2016-03-09, 20160309, 2016.03.09 (year, month, day).
_DATE = r"(\d{4})(?:[-./]?(\d{2})(?:[-./]?(\d{2}))?)?"
_ONE_DATE = re.compile(_DATE)
#: A range: two dates, or one with an open end ("2016-01-01 -", "- 2016"); " - " or "-" between.
_DATE_RANGE = re.compile(rf"(?:{_DATE})?\s*(?:-|\.\.|\bto\b)\s*(?:{_DATE})?")


def _dateBound(year, month, day, end):
    """YYYYMMDD for the first (``end`` False) or last day a partial date covers (a month's last
    day as 31: the bound compares as text with stored dates)."""
    if year is None:
        return ""
    return year + (month or ("12" if end else "01")) + (day or ("31" if end else "01"))


def _validDate(year, month, day):
    return (month is None or "01" <= month <= "12") and (day is None or "01" <= day <= "31")


def dateBounds(text):
    """(first, last): the YYYYMMDD days a date or a range of dates as people type it covers ("" for
    an open end), else None. A year or a month means all its days: "2016" -> ("20160101",
    "20161231"); "2016-01-01 -" -> ("20160101", "")."""
    text = str(text or "").strip()
    one = _ONE_DATE.fullmatch(text)
    if one and _validDate(*one.groups()):
        return _dateBound(*one.groups(), end=False), _dateBound(*one.groups(), end=True)
    both = _DATE_RANGE.fullmatch(text)
    if not both or not _validDate(*both.groups()[:3]) or not _validDate(*both.groups()[3:]):
        return None
    start, end = _dateBound(*both.groups()[:3], end=False), _dateBound(*both.groups()[3:], end=True)
    return (start, end) if start or end else None


def dateRange(text):
    """A DICOM date range ("20160101-20161231", "20160309", "20160101-") for a date or a range of
    dates as people type them (:func:`dateBounds`), else None."""
    bounds = dateBounds(text)
    if bounds is None:
        return None
    start, end = bounds
    return start if start == end else f"{start}-{end}"


def studyDateRange(first, last):
    """The StudyDate matching value for a query form's "from" and "to" fields, each a date as
    people write it (2024-01-02, 20240102, 2024.01.02, 2024-01 or 2024 for all its days), either
    empty for an open end; "" when both are empty. ValueError, in the user's words, for a value
    that is not a date: the server would take it literally and find nothing."""
    bounds = []
    for value, end in ((first, False), (last, True)):
        value = str(value or "").strip()
        if not value:
            bounds.append("")
            continue
        found = _ONE_DATE.fullmatch(value)
        if found is None or not _validDate(*found.groups()):
            raise ValueError(
                _(
                    "Study date {value!r} is not a date: write it as 2024-01-31, 20240131, 2024-01 or 2024."
                ).format(value=value)
            )
        bounds.append(_dateBound(*found.groups(), end=end))
    start, stop = bounds
    if not start and not stop:
        return ""
    return start if start == stop else f"{start}-{stop}"


def personNameQuery(text):
    """A patient name typed as the panel shows names ("DOE, JANE") as DICOM writes it
    ("DOE^JANE"); other text unchanged."""
    text = str(text or "").strip()
    if "," in text and "^" not in text:
        family, rest = text.split(",", 1)
        return f"{family.strip()}^{rest.strip()}"
    return text


def searchQuery(text):
    """What the browser's search box asks: ``(criteria, text, pattern)`` for ``Database.search``
    (``criteria`` and ``text``) and :func:`seriesMatches` (``pattern``, or None).

    Plain words search names, IDs, descriptions and accession numbers (the database's ``text``);
    a date or a range of dates, the study date; ``*`` and ``?`` are wildcards over a whole value
    ("dicom*", "*RTDOSE"), and a name as the browser shows it ("DOE, JANE") finds the patient
    stored as "DOE^JANE": both matched here, as the database's text search takes them literally."""
    text = str(text or "").strip()
    if not text:
        return {}, None, None
    dates = dateRange(text)
    if dates is not None:
        return {"StudyDate": dates}, None, None
    if "*" in text or "?" in text:
        return {}, None, text
    if "," in text:
        return {}, None, f"*{text}*"
    return {}, text, None


def seriesMatches(pattern, series, study=None):
    """True when ``pattern`` (``*``/``?`` wildcards, case-insensitive) matches one of the series'
    values: the patient's name (as stored and as shown), ID, the study's description and
    accession number, the series' description."""
    pattern = pattern.casefold().replace("[", "[[]")  # "[" is literal, as in DICOM matching
    values = [
        getattr(series, "PatientName", None),
        formatPersonName(getattr(series, "PatientName", None)),
        getattr(series, "PatientID", None),
        getattr(series, "SeriesDescription", None),
        getattr(study, "StudyDescription", None),
        getattr(study, "AccessionNumber", None),
    ]
    return any(fnmatch.fnmatchcase(str(v).casefold(), pattern) for v in values if v)


def count(n, one, many):
    """``count(3, "series", "series")`` -> "3 series"; ``one``/``many`` are already translated."""
    return f"{n} {one if n == 1 else many}"


def patientTitle(patient):
    """The patient's readable name, else its ID, else "Anonymous patient"."""
    return formatPersonName(patient.PatientName) or patient.PatientID or _("Anonymous patient")


def studyTitle(study):
    """The study description, else what it holds ("CT study", "CT/PT study"), else "Study"."""
    description = getattr(study, "StudyDescription", None)
    if description:
        return str(description)
    found = getattr(study, "ModalitiesInStudy", None) or ""
    if not isinstance(found, str):  # a multi-valued attribute from a query
        found = " ".join(str(m) for m in found)
    modalities = "/".join(m for m in found.replace("\\", " ").replace(",", " ").split() if m)
    return _("{modalities} study").format(modalities=modalities) if modalities else _("Study")


def seriesTitle(series):
    """The series description, else "CT series", else "Series" (the number is shown apart)."""
    description = getattr(series, "SeriesDescription", None)
    if description:
        return str(description)
    modality = getattr(series, "Modality", None)
    if modality:
        return _("{modality} series").format(modality=modality)
    return _("Series")


def _warningTexts():
    """What a load warning means for the user and what they can do, by LoadWarning.code (string
    literals inside ``_()`` so that Slicer's translation tools find them)."""
    return {
        "gantry_tilt": _(
            "The slices were acquired with a tilted gantry, so the volume is slanted. It is shown in "
            "the right place; for tools that need a regular grid, use Load resampled."
        ),
        "irregular_spacing": _(
            "The gaps between slices are not all equal. Load resampled gives a volume with a "
            "regular slice spacing."
        ),
        "missing_slices": _(
            "Some slices seem to be missing, so distances across the gap are wrong. Load resampled "
            "fills the gap by interpolation."
        ),
        "resampled": _("Loaded resampled onto a regular grid."),
        "localizer": _("A localizer (scout) image was found and loaded as a separate volume."),
        "no_geometry": _("The images have no position in the patient: they are shown as a plain stack."),
    }


#: Warning codes for which "Load resampled" gives a regular volume (DICOMPlusLib.loading.resample).
RESAMPLE_CODES = frozenset({"gantry_tilt", "irregular_spacing", "missing_slices"})


def warningText(warning):
    """One line for a LoadWarning (or an exception, or a text) in the user's words, without its
    code. Codes not listed above show the library's message, which already says what happened."""
    texts = _warningTexts()
    code = getattr(warning, "code", None)
    if code in texts:
        return texts[code]
    message = str(getattr(warning, "message", warning) or "").strip()
    return message[:1].upper() + message[1:]


def offersResample(warnings):
    """True when loading resampled would fix one of ``warnings`` (LoadWarnings)."""
    return any(getattr(w, "code", None) in RESAMPLE_CODES for w in warnings)
