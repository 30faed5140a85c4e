"""Query a remote node (C-FIND, or QIDO-RS for a DICOMweb node) and keep the results in memory.

:func:`query` streams the frozen records of :mod:`DICOMPlusLib.models` as the responses arrive
(the same records, and the same JSON, as local search). Results are never written into the
database: :class:`QueryResults` keeps them in memory, expands the hierarchy lazily (the series of
a study when the user opens it) and records what the user selected for retrieve.

C-FIND (PS3.4 C.4.1) runs in the Study Root model by default, or the Patient Root model
(``model="patient"``, needed for the patient level), hierarchically (C.4.1.2.1): unique keys of
the levels above the query level are single values. Matching values follow PS3.4 C.2.2.2 as in
local search (``PatientName=DOE*``, ``StudyDate=20240101-20241231``, ``Modality=CT``...). The
request declares Specific Character Set ISO_IR 192 (UTF-8, PS3.5 6.1.2.5); responses are decoded
with the character set they declare.

Every answer is re-checked against the criteria with the matching rules of local search
(:mod:`DICOMPlusLib.database.matching`): peers ignore keys they do not index (dcmqrscp answers a
``SeriesDescription=*T1*`` query with every series), and a DICOMweb query may ask a superset
(see :func:`DICOMPlusLib.network.web.qido.qido_split`). What was left out is counted in a
:class:`~DICOMPlusLib.network.answers.QueryReport` and logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from DICOMPlusLib.database.matching import explicit_upper_bound
from DICOMPlusLib.errors import NetworkError, QueryError
from DICOMPlusLib.models import InstanceRecord, PatientRecord, QueryLevel, SeriesRecord, StudyRecord
from DICOMPlusLib.network.answers import QueryReport, checked
from DICOMPlusLib.network.dimse import qrscu
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, RemoteNode, RetrieveMethod, check_ae_title

if TYPE_CHECKING:
    from pydicom import Dataset

    from DICOMPlusLib.jobs import CancelToken
    from DICOMPlusLib.network.retrieve import RetrieveReport

logger = logging.getLogger(__name__)

Record = PatientRecord | StudyRecord | SeriesRecord | InstanceRecord
_RECORD = {QueryLevel.PATIENT: PatientRecord, QueryLevel.STUDY: StudyRecord, QueryLevel.SERIES: SeriesRecord,
           QueryLevel.INSTANCE: InstanceRecord}  # fmt: skip

#: Return keys asked for at each level: the record's DICOM attributes (PS3.4 C.6.1.1, C.6.2.1).
RETURN_KEYS = {
    QueryLevel.PATIENT: ["PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                         "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                         "NumberOfPatientRelatedInstances"],
    QueryLevel.STUDY: ["StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                       "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber", "StudyID",
                       "ReferringPhysicianName", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                       "NumberOfStudyRelatedInstances"],
    QueryLevel.SERIES: ["SeriesInstanceUID", "StudyInstanceUID", "Modality", "SeriesNumber",
                        "SeriesDescription", "SeriesDate", "SeriesTime", "BodyPartExamined",
                        "NumberOfSeriesRelatedInstances"],
    QueryLevel.INSTANCE: ["SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "SOPClassUID",
                          "InstanceNumber", "NumberOfFrames", "Rows", "Columns"],
}  # fmt: skip
# In the Patient Root model the levels below the patient carry its unique key (C.6.1.1).
_PATIENT_ROOT_EXTRA = ["PatientID"]
_SKIP_EXTRA = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "InstanceAvailability"}
_INT_VRS = {"IS", "US", "UL", "SS", "SL", "UV", "SV"}


def _keyword_vr(keyword: str) -> str:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        raise QueryError(f"unknown DICOM keyword {keyword!r}: use the keyword from PS3.6, e.g. PatientName")
    return dictionary_VR(tag).split(" or ")[0]


def normalize_criteria(
    level: QueryLevel, criteria: Mapping[str, object] | Iterable[tuple[str, object]] | None
) -> dict[str, str]:
    """Criteria as {keyword: matching value}; ``Modality`` at study level becomes
    ``ModalitiesInStudy`` (the study-level attribute, C.6.2.1.2)."""
    pairs = criteria.items() if isinstance(criteria, Mapping) else (criteria or [])
    out: dict[str, str] = {}
    for keyword, value in pairs:
        keyword = str(keyword).strip()
        if level is QueryLevel.STUDY and keyword == "Modality":
            keyword = "ModalitiesInStudy"
        for part in keyword.split("."):  # Sequence.Keyword keys (C.2.2.2.6)
            _keyword_vr(part)
        out[keyword] = "" if value is None else str(value)
    return out


def build_identifier(
    level: QueryLevel,
    criteria: Mapping[str, str],
    *,
    model: str = "study",
    return_keys: Iterable[str] = (),
    charset: str | None = "ISO_IR 192",
) -> Dataset:
    """The C-FIND identifier: QueryRetrieveLevel, the matching keys with their values, and the
    return keys (empty, C.2.2.1.2)."""
    from pydicom import Dataset
    from pydicom import config as pydicom_config
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import DataElement

    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = level.dicom
    keys = list(RETURN_KEYS[level])
    if model == "patient" and level is not QueryLevel.PATIENT:
        keys += _PATIENT_ROOT_EXTRA
    keys += [k for k in return_keys if k not in keys]
    keys += [k for k in criteria if k not in keys]
    for keyword in keys:
        *sequences, leaf = keyword.split(".")
        target = ds
        for name in sequences:  # Sequence.Keyword: a key inside the sequence's one item (C.2.2.2.6)
            if name not in target or not target[name].value:
                target.add(DataElement(tag_for_keyword(name), "SQ", [Dataset()]))
            target = target[name].value[0]
        if leaf in target:
            continue
        vr = _keyword_vr(leaf)
        text = criteria.get(keyword, "")
        if vr == "SQ":
            value = []
        elif not text:
            value = None
        elif vr in ("US", "UL", "SS", "SL"):
            try:
                value = int(text)
            except ValueError:
                raise QueryError(f"{keyword} needs a number, not {text!r}") from None
        elif vr == "PN":
            value = _person_name_key(text)
        else:
            value = explicit_upper_bound(vr, text)  # peers that compare "-0930" as written miss 093000
        target.add(DataElement(tag_for_keyword(leaf), vr, value, validation_mode=pydicom_config.IGNORE))
    return ds


def split_wildcard_lists(criteria: Mapping[str, str]) -> list[dict[str, str]]:
    """The criteria as the C-FINDs that together ask them: one, unless a list of values has
    wildcards (``ModalitiesInStudy=S?\\O*``), which peers (Orthanc 1.10) do not apply inside a
    list (C.2.2.2.8); such a list becomes one C-FIND per value."""
    variants: list[dict[str, str]] = [{}]
    for key, value in criteria.items():
        parts = [p for p in str(value).split("\\") if p]
        vr = _keyword_vr(key.split(".")[-1])
        if len(parts) > 1 and vr not in ("ST", "LT", "UT", "UR") and any("*" in p or "?" in p for p in parts):
            variants = [{**v, key: p} for v in variants for p in dict.fromkeys(parts)]
        else:
            variants = [{**v, key: value} for v in variants]
    return variants


def _person_name_key(text: str) -> str:
    """A PN matching value as sent: without trailing empty components and groups, and, for one
    name, as a pattern that also finds the name stored with trailing delimiters (``Doe^Jane`` ->
    ``Doe^Jane*``) and whose ``?`` is ``*`` (a peer's ``?`` may match one byte of an accented
    letter): peers that compare delimiters or bytes (Orthanc 1.10) then answer a superset, which
    :func:`~DICOMPlusLib.network.answers.check_answer` narrows to what matches. A list is sent as it is, normalised (peers do
    not apply wildcards inside a list)."""
    names = ["=".join(g.rstrip("^ ") for g in v.split("=")).rstrip("=") for v in text.split("\\")]
    if len(names) > 1:
        return "\\".join(names)
    name = names[0].replace("?", "*")
    return name if not name or name.endswith("*") else name + "*"


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(v) for v in value)
    return str(value).strip()


def _int(value) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(float(str(value)))
    except (TypeError, ValueError):
        return None


def record_from_identifier(level: QueryLevel, ds: Dataset, extra_keys: Iterable[str] = ()) -> Record:
    """A C-FIND response identifier as the record of ``level``. Attributes the peer did not
    return (dcmqrscp omits what it does not support) stay empty; ``extra_keys`` that are not
    record fields are echoed into ``extra``, as local search does for header keys."""
    import dataclasses

    cls = _RECORD[level]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name[0].isupper()}  # DICOM keywords
    values = {}
    for name, f in fields.items():
        if name not in ds:
            continue
        raw = ds.get(name)
        values[name] = _int(raw) if "int" in str(f.type) else _text(raw)
    key = next(iter(fields))
    values.setdefault(key, "")
    extra = {}
    for keyword in extra_keys:
        if keyword not in fields and keyword not in _SKIP_EXTRA and "." not in keyword and keyword in ds:
            extra[keyword] = _text(ds.get(keyword))
    return cls(**values, extra=extra)


def dicomweb_search(client, level: QueryLevel | str, criteria: Mapping[str, str] | None = None, *,
                    limit: int | None = None, report: QueryReport | None = None) -> Iterator[Record]:  # fmt: skip
    """QIDO-RS records matching ``criteria`` exactly: asked in as many requests as it takes
    (:func:`~DICOMPlusLib.network.web.qido.qido_split`), each entity once, every answer
    re-checked (the requests may ask a superset, see
    :func:`~DICOMPlusLib.network.web.qido.qido_split`); ``client`` is a
    :class:`~DICOMPlusLib.network.web.client.DicomwebClient`."""
    from DICOMPlusLib.network.web.qido import qido_split

    level = _level(level)
    criteria = dict(criteria or {})
    report = report if report is not None else QueryReport()

    def answers():
        variants = qido_split(criteria)
        seen: set[str] = set()
        for variant in variants:
            for record in client.search(level, variant):
                key = getattr(record, _unique_fields(level)[0])
                if len(variants) > 1:
                    if key in seen:
                        continue
                    seen.add(key)
                yield record, None

    yield from checked(answers(), criteria, report, limit)


def _unique_fields(level: QueryLevel) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(_RECORD[level]) if f.name[0].isupper()]


def uses_dicomweb(node: RemoteNode) -> bool:
    """A node whose preferred retrieve is DICOMweb is queried with QIDO-RS too."""
    return node.retrieve_method is RetrieveMethod.DICOMWEB


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
        yield from _query(node, level, criteria, model=model, calling_ae_title=calling_ae_title, limit=limit,
                          cancel=cancel, timeout=timeout, return_keys=return_keys, report=report)  # fmt: skip
    finally:
        if report.filtered or report.unchecked_keys:
            logger.info("query to %s: %s", node.name, report.message())


def _query(node, level, criteria, *, model, calling_ae_title, limit, cancel, timeout, return_keys,
           report: QueryReport) -> Iterator[Record]:  # fmt: skip
    level = _level(level)
    if model not in ("study", "patient"):
        raise QueryError(f"unknown information model {model!r}: use study or patient")
    if level is QueryLevel.PATIENT and model != "patient":
        model = "patient"  # the patient level exists only in the Patient Root model (C.6.1)
    crit = normalize_criteria(level, criteria)
    if limit is not None and limit <= 0:
        return
    if uses_dicomweb(node):
        from DICOMPlusLib.network.sources import DicomwebSource

        source = DicomwebSource(node, timeout=timeout)
        if level is QueryLevel.PATIENT:  # QIDO-RS has none: the patients of the matching studies
            yield from source.search(level, crit, limit=limit)
        else:
            yield from dicomweb_search(source.client, level, crit, limit=limit, report=report)
        return
    calling = check_ae_title(calling_ae_title, "calling AE title")
    variants = split_wildcard_lists(crit)
    identifiers = [build_identifier(level, v, model=model, return_keys=return_keys) for v in variants]
    extra_keys = list(crit) + [k for k in return_keys if k not in crit]
    sop_class = qrscu.MODELS[(model, "find")]
    assoc = open_for_query(node, calling, [sop_class], timeout)
    count = 0
    seen: set[str] = set()
    unique = _unique_fields(level)[0]
    try:
        for identifier in identifiers:
            results = assoc.find(sop_class, identifier, cancel=cancel)
            try:
                for ds in results:
                    record = record_from_identifier(level, ds, extra_keys)
                    if len(identifiers) > 1:
                        if getattr(record, unique) in seen:
                            continue
                        seen.add(getattr(record, unique))
                    if not any(True for _ in checked([(record, ds)], crit, report, None)):
                        continue
                    yield record
                    count += 1
                    if limit is not None and count >= limit:
                        return
            finally:
                results.close()
    except qrscu.FinalStatusError as exc:
        raise QueryError(f"{node.address}: {exc}") from None
    except qrscu.OperationAborted as exc:
        raise QueryError(_aborted_message(node, calling, exc, timeout)) from None
    except NetworkError as exc:
        if isinstance(exc, QueryError):
            raise
        raise QueryError(f"{node.address}: {exc}") from None
    finally:
        if assoc.assoc.established:
            assoc.release(timeout)


def open_for_query(
    node: RemoteNode, calling: str, sop_classes: list[str], timeout: float
) -> qrscu.QRAssociation:
    """An association proposing the C-FIND models ``sop_classes`` (QueryError when it fails)."""
    from DICOMPlusLib.network.dimse import scu

    tls = node.tls_settings.client_context(node.host) if node.tls else None
    try:
        assoc = qrscu.open_association(
            node.host, node.port, called_ae=node.ae_title, calling_ae=calling,
            contexts=[(uid, qrscu.UNCOMPRESSED) for uid in sop_classes], tls=tls, timeout=timeout,
        )  # fmt: skip
    except scu.AssociationFailed as exc:
        raise QueryError(f"cannot query {node.name} ({node.address}): {exc}") from None
    if not any(assoc.context_for(uid) for uid in sop_classes):
        assoc.abort()
        raise QueryError(
            f"{node.address} accepted the association but not the query model "
            f"({', '.join(sop_classes)}): it does not offer C-FIND to us"
        )
    return assoc


def _aborted_message(node: RemoteNode, calling: str, exc: Exception, timeout: float) -> str:
    text = f"query to {node.name} ({node.address}) failed: {exc}"
    if "aborted the association" in str(exc):
        text += (
            f". A server aborts like this when it does not allow C-FIND from our AE title {calling} "
            "(Orthanc: the AE title must be in its DicomModalities)"
        )
    elif "within" in str(exc):
        text += (
            f". Some servers (Orthanc among them) do not answer a query from an AE title they do not "
            f"know: check that {node.address} knows our AE title {calling}"
        )
    return text


def _level(level: QueryLevel | str) -> QueryLevel:
    try:
        return QueryLevel.parse(level)
    except ValueError as exc:
        raise QueryError(str(exc)) from None


# --------------------------------------------------------------------------------------------
# Results in memory, lazy expansion, selection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """What the user chose to retrieve: whole studies, series of a study, instances of a series."""

    studies: frozenset[str] = frozenset()
    series: Mapping[str, frozenset[str]] = field(default_factory=dict)  # study -> series
    instances: Mapping[tuple[str, str], frozenset[str]] = field(
        default_factory=dict
    )  # (study, series) -> SOPs

    @property
    def empty(self) -> bool:
        return not (self.studies or self.series or self.instances)

    def requests(self) -> list[dict]:
        """Keyword arguments of :func:`retrieve` for each part of the selection; a study
        selected whole absorbs the series and instances chosen inside it."""
        out = [{"study_uid": s} for s in sorted(self.studies)]
        for study, series in sorted(self.series.items()):
            if study not in self.studies and series:
                out.append({"study_uid": study, "series_uids": sorted(series)})
        for (study, series), sops in sorted(self.instances.items()):
            if study in self.studies or series in self.series.get(study, ()):
                continue
            out.append({"study_uid": study, "series_uids": [series], "sop_instance_uids": sorted(sops)})
        return out


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
        from DICOMPlusLib.network.sources import source_for

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
        """Retrieve exactly the selection into ``db`` (keyword arguments as :func:`retrieve`)."""
        from DICOMPlusLib.network.retrieve import retrieve_selection

        kwargs.setdefault("calling_ae_title", self.calling_ae_title)
        return retrieve_selection(self.node, db, self.selection, **kwargs)

    def retrieve_job(self, db, **kwargs):
        """The retrieve of the current selection as a :class:`~DICOMPlusLib.jobs.Job` (not
        started)."""
        from DICOMPlusLib.jobs import Job

        selection = self.selection
        kwargs.setdefault("calling_ae_title", self.calling_ae_title)

        def run(progress, cancel):
            from DICOMPlusLib.network.retrieve import retrieve_selection

            return retrieve_selection(self.node, db, selection, progress=progress, cancel=cancel, **kwargs)

        return Job(f"retrieve from {self.node.name}", run)


def _inherit(series: SeriesRecord, study_uid: str, study: StudyRecord | None) -> SeriesRecord:
    """A series record completed with what its study says (series-level C-FIND responses carry
    no patient attributes, C.6.2.1.3)."""
    import dataclasses

    changes = {}
    if not series.StudyInstanceUID:
        changes["StudyInstanceUID"] = study_uid
    if study is not None:
        if not series.PatientID:
            changes["PatientID"] = study.PatientID
        if not series.PatientName:
            changes["PatientName"] = study.PatientName
    return dataclasses.replace(series, **changes) if changes else series
