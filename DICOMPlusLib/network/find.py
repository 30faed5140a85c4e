"""C-FIND and QIDO-RS searches below the query service: the identifier of a C-FIND (PS3.4
C.4.1, hierarchical, C.4.1.2.1), its responses as the frozen records of
:mod:`DICOMPlusLib.models`, the QIDO-RS search of a DICOMweb client, and the association a
C-FIND runs on. :func:`DICOMPlusLib.network.query.query` chooses between them by the node's
transport; the retrieve plan uses the C-FIND directly.

Matching values follow PS3.4 C.2.2.2 as in local search; the request declares Specific Character
Set ISO_IR 192 (UTF-8, PS3.5 6.1.2.5). Every answer is re-checked against the criteria with the
matching rules of local search (:mod:`DICOMPlusLib.database.matching`): peers ignore keys they
do not index, and a DICOMweb query may ask a superset
(:func:`DICOMPlusLib.network.web.qido.qido_split`). What was left out is counted in a
:class:`~DICOMPlusLib.network.answers.QueryReport`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from DICOMPlusLib import dataclasses_lite
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.database.matching import explicit_upper_bound
from DICOMPlusLib.errors import CancelledError, NetworkError, QueryError
from DICOMPlusLib.models import InstanceRecord, PatientRecord, QueryLevel, Record, SeriesRecord, StudyRecord
from DICOMPlusLib.network.answers import QueryReport, checked
from DICOMPlusLib.network.dimse import qrscu
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, RemoteNode, check_ae_title

if TYPE_CHECKING:
    from pydicom import Dataset

    from DICOMPlusLib.jobs import CancelToken

logger = get_logger(__name__)

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


def _keyword_tag(keyword: str) -> int:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        raise QueryError(f"unknown DICOM keyword {keyword!r}: use the keyword from PS3.6, e.g. PatientName")
    return tag


def _keyword_vr(keyword: str) -> str:
    from pydicom.datadict import dictionary_VR

    return dictionary_VR(_keyword_tag(keyword)).split(" or ")[0]


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
                target.add(DataElement(_keyword_tag(name), "SQ", [Dataset()]))
            target = target[name].value[0]
        if leaf in target:
            continue
        vr = _keyword_vr(leaf)
        text = criteria.get(keyword, "")
        value: object
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
        target.add(DataElement(_keyword_tag(leaf), vr, value, validation_mode=pydicom_config.IGNORE))
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

    cls = _RECORD[level]
    fields = {f.name: f for f in dataclasses_lite.fields(cls) if f.name[0].isupper()}  # DICOM keywords
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

    def answers() -> Iterator[tuple[Record, None]]:
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

    return [f.name for f in dataclasses_lite.fields(_RECORD[level]) if f.name[0].isupper()]


def find_dimse(node: RemoteNode, level: QueryLevel, crit: dict[str, str], *, model: str = "study",
               calling_ae_title: str = DEFAULT_AE_TITLE, limit: int | None = None, cancel: CancelToken | None = None,
               timeout: float = 30.0, return_keys: Iterable[str] = (), report: QueryReport) -> Iterator[Record]:  # fmt: skip
    """C-FIND on the node's DIMSE endpoint (``crit`` already normalized); records as they arrive,
    each re-checked against ``crit``."""
    if level is QueryLevel.PATIENT and model != "patient":
        model = "patient"  # the patient level exists only in the Patient Root model (C.6.1)
    calling = check_ae_title(calling_ae_title, "calling AE title")
    variants = split_wildcard_lists(crit)
    identifiers = [build_identifier(level, v, model=model, return_keys=return_keys) for v in variants]
    extra_keys = list(crit) + [k for k in return_keys if k not in crit]
    sop_class = qrscu.MODELS[(model, "find")]
    assoc = open_for_query(node, calling, [sop_class], timeout, cancel)
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
        if exc.cancelled:  # the peer ignored C-CANCEL, or stopped inside a PDU: still a cancel (130)
            raise CancelledError(f"{node.address}: {exc}") from None
        raise QueryError(aborted_message(node, calling, exc, timeout)) from None
    except NetworkError as exc:
        if isinstance(exc, QueryError):
            raise
        raise QueryError(f"{node.address}: {exc}") from None
    finally:
        if assoc.assoc.established:
            assoc.release(timeout)


def open_for_query(
    node: RemoteNode, calling: str, sop_classes: list[str], timeout: float, cancel: CancelToken | None = None
) -> qrscu.QRAssociation:
    """An association proposing the C-FIND models ``sop_classes`` (QueryError when it fails)."""
    from DICOMPlusLib.network.dimse import scu

    endpoint = node.require_dimse()
    tls = endpoint.tls_context()
    try:
        assoc = qrscu.open_association(
            endpoint.host, endpoint.port, called_ae=endpoint.ae_title, calling_ae=calling,
            contexts=[(uid, qrscu.UNCOMPRESSED) for uid in sop_classes], tls=tls, timeout=timeout,
            cancel=cancel,
        )  # fmt: skip
    except scu.AssociationFailed as exc:
        raise QueryError(f"cannot query {node.label}: {exc}") from None
    if not any(assoc.context_for(uid) for uid in sop_classes):
        assoc.abort()
        raise QueryError(
            f"{node.address} accepted the association but not the query model "
            f"({', '.join(sop_classes)}): it does not offer C-FIND to us"
        )
    return assoc


def aborted_message(node: RemoteNode, calling: str, exc: Exception, timeout: float) -> str:
    text = f"query to {node.label} failed: {exc}"
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
