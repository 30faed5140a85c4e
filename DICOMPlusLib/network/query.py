"""Query a remote node and keep the results in memory.

:func:`query` streams the frozen records of :mod:`DICOMPlusLib.models` as the responses arrive
(the same records, and the same JSON, as local search), by C-FIND (PS3.4 C.4.1) or QIDO-RS
(PS3.18 10.6), whichever transport the node prefers (:mod:`DICOMPlusLib.network.transports`;
the searches themselves are in :mod:`DICOMPlusLib.network.find`). C-FIND runs in the Study Root
model by default, or the Patient Root model (``model="patient"``, needed for the patient
level). Matching values follow PS3.4 C.2.2.2 as in local search (``PatientName=DOE*``,
``StudyDate=20240101-20241231``, ``Modality=CT``...).

Results are never written into the database: :class:`QueryResults` keeps them in memory,
expands the hierarchy lazily (the series of a study when the user opens it) and records what the
user selected for retrieve.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, overload

from DICOMPlusLib import dataclasses_lite
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.errors import QueryError
from DICOMPlusLib.models import (
    InstanceLevel,
    InstanceRecord,
    PatientLevel,
    PatientRecord,
    QueryLevel,
    Record,
    SeriesLevel,
    SeriesRecord,
    StudyLevel,
    StudyRecord,
)
from DICOMPlusLib.network.answers import QueryReport
from DICOMPlusLib.network.find import (
    RETURN_KEYS,
    build_identifier,
    dicomweb_search,
    normalize_criteria,
    open_for_query,
    record_from_identifier,
    split_wildcard_lists,
)
from DICOMPlusLib.network.models import RetrieveOptions, Selection
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, RemoteNode
from DICOMPlusLib.network.retrieve import retrieve_selection
from DICOMPlusLib.network.sources import source_for
from DICOMPlusLib.network.transports import transport_for

if TYPE_CHECKING:
    from DICOMPlusLib.jobs import CancelToken
    from DICOMPlusLib.network.models import RetrieveReport

__all__ = [
    "RETURN_KEYS",
    "QueryReport",
    "QueryResults",
    "Record",
    "Selection",
    "build_identifier",
    "dicomweb_search",
    "normalize_criteria",
    "open_for_query",
    "query",
    "record_from_identifier",
    "split_wildcard_lists",
]

logger = get_logger(__name__)


@overload
def query(
    node: RemoteNode,
    level: PatientLevel,
    criteria: Mapping[str, object] | Iterable[tuple[str, object]] | None = None,
    *,
    model: str = "study",
    calling_ae_title: str = DEFAULT_AE_TITLE,
    limit: int | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 30.0,
    return_keys: Iterable[str] = (),
    report: QueryReport | None = None,
) -> Iterator[PatientRecord]: ...
@overload
def query(
    node: RemoteNode,
    level: StudyLevel = ...,
    criteria: Mapping[str, object] | Iterable[tuple[str, object]] | None = None,
    *,
    model: str = "study",
    calling_ae_title: str = DEFAULT_AE_TITLE,
    limit: int | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 30.0,
    return_keys: Iterable[str] = (),
    report: QueryReport | None = None,
) -> Iterator[StudyRecord]: ...
@overload
def query(
    node: RemoteNode,
    level: SeriesLevel,
    criteria: Mapping[str, object] | Iterable[tuple[str, object]] | None = None,
    *,
    model: str = "study",
    calling_ae_title: str = DEFAULT_AE_TITLE,
    limit: int | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 30.0,
    return_keys: Iterable[str] = (),
    report: QueryReport | None = None,
) -> Iterator[SeriesRecord]: ...
@overload
def query(
    node: RemoteNode,
    level: InstanceLevel,
    criteria: Mapping[str, object] | Iterable[tuple[str, object]] | None = None,
    *,
    model: str = "study",
    calling_ae_title: str = DEFAULT_AE_TITLE,
    limit: int | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 30.0,
    return_keys: Iterable[str] = (),
    report: QueryReport | None = None,
) -> Iterator[InstanceRecord]: ...
@overload
def query(
    node: RemoteNode,
    level: QueryLevel | str,
    criteria: Mapping[str, object] | Iterable[tuple[str, object]] | None = None,
    *,
    model: str = "study",
    calling_ae_title: str = DEFAULT_AE_TITLE,
    limit: int | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 30.0,
    return_keys: Iterable[str] = (),
    report: QueryReport | None = None,
) -> Iterator[Record]: ...


def query(
    node: RemoteNode,
    level: QueryLevel | str = "study",
    criteria: Mapping[str, object] | Iterable[tuple[str, object]] | None = None,
    *,
    model: str = "study",
    calling_ae_title: str = DEFAULT_AE_TITLE,
    limit: int | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 30.0,
    return_keys: Iterable[str] = (),
    report: QueryReport | None = None,
) -> Iterator[Record]:
    """Yield the records matching ``criteria`` at ``level`` on ``node`` as they arrive.

    Stops after ``limit`` records (the rest of the C-FIND is cancelled, PS3.7 9.3.2.3) or when
    ``cancel`` is set. Raises :class:`QueryError` with what to check when the node cannot be
    reached, rejects us, does not answer within ``timeout`` seconds, or fails the query.
    Answers that do not match ``criteria`` are left out and counted in ``report``.
    """
    report = report if report is not None else QueryReport()
    try:
        level = QueryLevel.parse(level)
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    if model not in ("study", "patient"):
        raise QueryError(f"unknown information model {model!r}: use study or patient")
    crit = normalize_criteria(level, criteria)
    if limit is not None and limit <= 0:
        return
    try:
        yield from transport_for(node).query(node, level, crit, model=model, calling_ae_title=calling_ae_title,
                                             limit=limit, cancel=cancel, timeout=timeout, return_keys=return_keys,
                                             report=report)  # fmt: skip
    finally:
        if report.filtered or report.unchecked_keys:
            logger.info("query to %s: %s", node.name, report.message())


class QueryResults:
    """Query results kept in memory (never in the database), expanded lazily, with a selection.

    ``studies()`` runs the study query once (cached); ``series(study_uid)`` and
    ``instances(series_uid)`` query a level down when first asked. ``source`` is any
    :class:`~DICOMPlusLib.network.sources.QuerySource` (default: the node's own, DIMSE or
    DICOMweb). Thread-safe: a GUI may expand from a worker thread.
    """

    def __init__(
        self,
        node: RemoteNode,
        criteria: Mapping[str, object] | None = None,
        *,
        calling_ae_title: str = DEFAULT_AE_TITLE,
        limit: int | None = None,
        timeout: float = 30.0,
        source=None,
    ) -> None:
        self.node = node
        self.criteria = dict(criteria or {})
        self.calling_ae_title = calling_ae_title
        self.limit = limit
        self.timeout = timeout
        self.source = source or source_for(node, calling_ae_title=calling_ae_title, timeout=timeout)
        self._lock = threading.RLock()
        self._studies: list[StudyRecord] | None = None
        self._series: dict[str, list[SeriesRecord]] = {}
        self._instances: dict[str, list[InstanceRecord]] = {}
        self._series_study: dict[str, str] = {}
        self._selected_studies: set[str] = set()
        self._selected_series: dict[str, set[str]] = {}
        self._selected_instances: dict[tuple[str, str], set[str]] = {}

    # -- levels ------------------------------------------------------------------------------
    def studies(self, *, refresh: bool = False) -> list[StudyRecord]:
        with self._lock:
            if self._studies is None or refresh:
                self._studies = list(self.source.search(QueryLevel.STUDY, self.criteria, limit=self.limit))
            return list(self._studies)

    def patients(self) -> list[PatientRecord]:
        """The patients of the study results (no extra query)."""
        seen: dict[str, PatientRecord] = {}
        for s in self.studies():
            if s.PatientID not in seen:
                seen[s.PatientID] = PatientRecord(
                    PatientID=s.PatientID, PatientName=s.PatientName, PatientBirthDate=s.PatientBirthDate,
                    PatientSex=s.PatientSex,
                )  # fmt: skip
        return list(seen.values())

    def study(self, study_uid: str) -> StudyRecord | None:
        return next((s for s in self.studies() if s.StudyInstanceUID == study_uid), None)

    def series(self, study_uid: str, *, refresh: bool = False) -> list[SeriesRecord]:
        with self._lock:
            if study_uid not in self._series or refresh:
                found = list(self.source.search(QueryLevel.SERIES, {"StudyInstanceUID": study_uid}))
                parent = next((s for s in self._studies or [] if s.StudyInstanceUID == study_uid), None)
                found = [_inherit(s, study_uid, parent) for s in found]
                self._series[study_uid] = found
                for s in found:
                    self._series_study[s.SeriesInstanceUID] = study_uid
            return list(self._series[study_uid])

    def instances(self, series_uid: str, *, study_uid: str | None = None, refresh: bool = False) -> list[InstanceRecord]:  # fmt: skip
        with self._lock:
            study_uid = study_uid or self._series_study.get(series_uid)
            if study_uid is None:
                raise QueryError(f"series {series_uid} is not among the results: expand its study first")
            if series_uid not in self._instances or refresh:
                criteria = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
                self._instances[series_uid] = list(self.source.search(QueryLevel.INSTANCE, criteria))
                self._series_study[series_uid] = study_uid
            return list(self._instances[series_uid])

    # -- selection ---------------------------------------------------------------------------
    def select(self, *, patient_id: str | None = None, study_uid: str | None = None,
               series_uid: str | None = None, sop_instance_uids: Iterable[str] = ()) -> None:  # fmt: skip
        """Select a patient (all its studies among the results), a study, a series (of
        ``study_uid`` or of an expanded study) or instances of a series."""
        with self._lock:
            sops = list(sop_instance_uids)
            if patient_id is not None:
                self._selected_studies.update(
                    s.StudyInstanceUID for s in self.studies() if s.PatientID == patient_id
                )
                return
            if series_uid is not None:
                study_uid = study_uid or self._series_study.get(series_uid)
                if study_uid is None:
                    raise QueryError(f"series {series_uid}: give its study_uid (or expand its study first)")
                if sops:
                    self._selected_instances.setdefault((study_uid, series_uid), set()).update(sops)
                else:
                    self._selected_series.setdefault(study_uid, set()).add(series_uid)
                return
            if study_uid is not None:
                self._selected_studies.add(study_uid)
                return
            raise QueryError("select what? give patient_id, study_uid or series_uid")

    def deselect(self, *, study_uid: str | None = None, series_uid: str | None = None) -> None:
        with self._lock:
            if series_uid is not None:
                for series in self._selected_series.values():
                    series.discard(series_uid)
                for key in [k for k in self._selected_instances if k[1] == series_uid]:
                    del self._selected_instances[key]
            elif study_uid is not None:
                self._selected_studies.discard(study_uid)
                self._selected_series.pop(study_uid, None)
                for key in [k for k in self._selected_instances if k[0] == study_uid]:
                    del self._selected_instances[key]

    def clear_selection(self) -> None:
        with self._lock:
            self._selected_studies.clear()
            self._selected_series.clear()
            self._selected_instances.clear()

    @property
    def selection(self) -> Selection:
        with self._lock:
            return Selection(
                studies=frozenset(self._selected_studies),
                series={k: frozenset(v) for k, v in self._selected_series.items() if v},
                instances={k: frozenset(v) for k, v in self._selected_instances.items() if v},
            )

    def retrieve(self, db, **kwargs) -> RetrieveReport:
        """Retrieve exactly the selection into ``db`` (keyword arguments as
        :func:`~DICOMPlusLib.network.retrieve.retrieve`)."""
        kwargs.setdefault("options", RetrieveOptions(calling_ae_title=self.calling_ae_title))
        return retrieve_selection(self.node, db, self.selection, **kwargs)

    def retrieve_job(self, db, **kwargs):
        """The retrieve of the current selection as a :class:`~DICOMPlusLib.jobs.Job` (not
        started)."""
        from DICOMPlusLib.jobs import Job

        selection = self.selection
        kwargs.setdefault("options", RetrieveOptions(calling_ae_title=self.calling_ae_title))

        def run(progress, cancel):
            return retrieve_selection(self.node, db, selection, progress=progress, cancel=cancel, **kwargs)

        return Job(f"retrieve from {self.node.name}", run)


def _inherit(series: SeriesRecord, study_uid: str, study: StudyRecord | None) -> SeriesRecord:
    """A series record completed with what its study says (series-level C-FIND responses carry
    no patient attributes, C.6.2.1.3)."""

    changes: dict[str, Any] = {}
    if not series.StudyInstanceUID:
        changes["StudyInstanceUID"] = study_uid
    if study is not None:
        if not series.PatientID:
            changes["PatientID"] = study.PatientID
        if not series.PatientName:
            changes["PatientName"] = study.PatientName
    return dataclasses_lite.replace(series, **changes) if changes else series
