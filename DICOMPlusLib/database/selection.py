"""What a selection in a browser means in series: a patient, a study or a series, expanded.

Browsers (the Slicer panel, the CLI) let people pick whole patients or studies; loading, sending
and exporting work per series. :func:`series_of` does the expansion once, for every caller.
"""

from __future__ import annotations

from collections.abc import Iterable

from DICOMPlusLib.models import QueryLevel


def series_of(db, entries: Iterable[tuple[str, str]]) -> list[str]:
    """Series Instance UIDs of ``entries`` [(level, key)], in order, each once.

    ``level`` is "patient" (key: PatientID), "study" (StudyInstanceUID) or "series"
    (SeriesInstanceUID, kept as given even if the database does not hold it: the caller reports
    what is missing when it uses it).
    """
    out: dict[str, None] = {}
    for level, key in entries:
        parsed = QueryLevel.parse(level)
        if parsed == QueryLevel.SERIES:
            out[key] = None
            continue
        if parsed == QueryLevel.STUDY:
            studies = [key]
        elif parsed == QueryLevel.PATIENT:
            studies = [s.StudyInstanceUID for s in db.search(QueryLevel.STUDY, {"PatientID": key})]
        else:
            raise ValueError(f"cannot expand a selection at level {level!r} into series")
        for study in studies:
            for series in db.search(QueryLevel.SERIES, {"StudyInstanceUID": study}):
                out[series.SeriesInstanceUID] = None
    return list(out)
