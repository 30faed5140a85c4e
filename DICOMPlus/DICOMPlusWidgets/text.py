"""How the widgets write DICOM values for people: names without carets, dates with dashes,
titles that say something when a description is empty, counts with the right plural, and load
warnings in the user's words.

Pure functions over strings and records (no Qt), so they are easy to test and to reuse.
"""

from __future__ import annotations

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
