"""The plan of a retrieve: what the selection holds on the node (PS3.4 C.4.1 queries), and the
C-GET/C-MOVE requests that bring exactly what is missing.

A whole study or series nothing of which is here yet is asked for at its own level; otherwise
the missing instances are named in image-level requests, as lists of UIDs (PS3.4 C.4.2.2.1,
C.4.3.2.1), at most ``IMAGE_CHUNK`` at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.errors import NetworkError, QueryError, RetrieveError
from DICOMPlusLib.jobs import CancelToken
from DICOMPlusLib.models import QueryLevel
from DICOMPlusLib.network.answers import QueryReport
from DICOMPlusLib.network.dimse import qrscu
from DICOMPlusLib.network.find import aborted_message, find_dimse, normalize_criteria, open_for_query
from DICOMPlusLib.network.nodes import RemoteNode
from DICOMPlusLib.uids import STORAGE_ROOT

IMAGE_CHUNK = 200  # SOP Instance UIDs per image-level request (a UI list stays well under 64 KiB)

_I = STORAGE_ROOT
#: The storage SOP classes a series of each modality (0008,0060, a required key of the
#: series level) holds, PS3.3 A.1.4 / PS3.4 B.5: what a deferred plan's C-GET proposes, with
#: every transfer syntax a known class gets. An instance of another class (a private one, a
#: secondary capture) is refused by the PACS for want of a context and fetched after the
#: image-level C-FIND, with its own class's contexts.
MODALITY_CLASSES: dict[str, tuple[str, ...]] = {
    "CT": (_I + "2", _I + "2.1", _I + "2.2"),
    "MR": (_I + "4", _I + "4.1", _I + "4.2", _I + "4.3", _I + "4.4"),
    "PT": (_I + "128", _I + "130", _I + "128.1"),
    "NM": (_I + "20",),
    "US": (_I + "6.1", _I + "3.1", _I + "6.2"),
    "CR": (_I + "1",),
    "DX": (_I + "1.1", _I + "1.1.1"),
    "MG": (_I + "1.2", _I + "1.2.1", _I + "13.1.3"),
    "XA": (_I + "12.1", _I + "12.1.1"),
    "RF": (_I + "12.2", _I + "12.2.1"),
    "SEG": (_I + "66.4",),
    "RTDOSE": (_I + "481.2",),
    "RTSTRUCT": (_I + "481.3",),
    "RTPLAN": (_I + "481.5",),
    "RTIMAGE": (_I + "481.1",),
}


# eq=False (here and below): never compared; each generated method is compiled as the module is imported.
@dataclass(frozen=True, eq=False)
class Unit:
    """One C-GET or C-MOVE request: a study, series (one or a list) or instances of a series."""

    level: str  # STUDY, SERIES or IMAGE
    study: str
    series: tuple[str, ...] = ()
    sops: tuple[str, ...] = ()
    expected: tuple[str, ...] = ()  # the SOP instances it should bring (empty: not known)
    sop_classes: frozenset[str] = frozenset()

    def identifier(self) -> dict[str, str]:
        """The retrieve identifier: unique keys of the level and above, a list of UIDs at the
        level itself (PS3.4 C.4.2.2.1, C.4.3.2.1). Plain text keys, encoded without pydicom
        (:mod:`~DICOMPlusLib.network.dimse.identifiers`)."""
        ds = {"QueryRetrieveLevel": self.level, "StudyInstanceUID": self.study}
        if self.level in ("SERIES", "IMAGE"):
            ds["SeriesInstanceUID"] = "\\".join(self.series)
        if self.level == "IMAGE":
            ds["SOPInstanceUID"] = "\\".join(self.sops)
        return ds

    def describe(self) -> str:
        if self.level == "STUDY":
            return f"study {self.study}"
        if self.level == "SERIES":
            return f"series {', '.join(self.series)}"
        return f"{len(self.sops)} instance(s) of series {self.series[0]}"


class _Cancelled(NetworkError):
    """Cancelled while planning or waiting for a slot (not an error to report)."""


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PlannedInstance:
    """An instance of the plan: its study, series, SOP Instance UID and SOP class."""

    study: str
    series: str
    sop: str
    sop_class: str = ""


@dataclass(eq=False)
class Plan:
    """What the selection holds on the node. ``instances`` is None when the node could not be
    asked at the image level (then nothing can be skipped or checked)."""

    series: dict[str, str] = field(default_factory=dict)  # series -> study, selection order
    whole_series: set[str] = field(default_factory=set)
    whole_study: str | None = None
    instances: list[PlannedInstance] | None = None
    requested_sops: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The image level is not asked before the transfer (nothing of the selection is held here):
    #: the C-GETs' counts or a C-FIND after them give ``instances`` (:func:`list_instances`).
    deferred: bool = False
    #: A deferred plan's storage classes, from the series' modalities (:data:`MODALITY_CLASSES`).
    guessed_classes: frozenset[str] = frozenset()


def make_plan(node: RemoteNode, *, study_uid: str | None, series_uids: Sequence[str], sop_uids: Sequence[str],
              calling_ae: str, timeout: float, cancel: CancelToken, parallel: int = 1,
              defer: bool = False) -> Plan:  # fmt: skip
    """Find the series (and study) of the selection, then its instances (image-level C-FIND;
    the series are listed over up to ``parallel`` associations at once).

    ``defer`` (a selection of whole series or a study nothing of which is held here): stop
    before the image level, and for a study on one association before the series level too:
    those C-FINDs cost the PACS 0.1-0.3 s of a 300-instance study (it answers response by
    response) and the requests do not need them; :func:`list_instances` asks after the transfer
    when the C-GETs' counts do not account for every instance."""

    def ask(level: QueryLevel, criteria: dict[str, str]) -> list:
        found = list(find_dimse(node, level, normalize_criteria(level, criteria), calling_ae_title=calling_ae,
                                timeout=timeout, cancel=cancel, report=QueryReport()))  # fmt: skip
        if cancel.cancelled:  # a cancelled C-FIND says nothing about what the node holds
            raise _Cancelled("cancelled while finding the selection")
        return found

    plan = Plan(requested_sops=list(sop_uids), deferred=defer and not sop_uids and bool(study_uid))
    modalities: dict[str, str] = {}
    try:
        if plan.deferred:  # the series level says which storage classes to propose
            try:
                modalities = _list_series(node, study_uid or "", calling_ae, timeout, cancel)
            except QueryError:
                plan.deferred = False
        if series_uids:
            for uid in series_uids:
                plan.series[uid] = study_uid or _study_of_series(ask, node, uid)
            if not sop_uids:
                plan.whole_series = set(series_uids)
        elif study_uid:
            series_of_study = modalities or _list_series(node, study_uid, calling_ae, timeout, cancel)
            if cancel.cancelled:
                raise _Cancelled("cancelled while finding the selection")
            if not series_of_study:
                raise RetrieveError(f"{node.label} has no study {study_uid}")
            plan.series = dict.fromkeys(series_of_study, study_uid)
            if not sop_uids:
                plan.whole_series = set(plan.series)
                plan.whole_study = study_uid
        else:
            found = ask(QueryLevel.INSTANCE, {"SOPInstanceUID": "\\".join(sop_uids)})
            for r in found:
                if not (r.StudyInstanceUID and r.SeriesInstanceUID):
                    raise RetrieveError(
                        f"{node.address} does not say which series the instances belong to: give their study "
                        "and series too"
                    )
                plan.series.setdefault(r.SeriesInstanceUID, r.StudyInstanceUID)
            if not plan.series:
                raise RetrieveError(f"{node.label} has none of the instances asked for")
    except QueryError as exc:
        raise RetrieveError(f"cannot find the selection on {node.name}: {exc}") from None
    if plan.deferred:
        classes = [MODALITY_CLASSES.get(modalities.get(uid, "").upper()) for uid in plan.series]
        plan.guessed_classes = frozenset(c for group in classes for c in group or ())
        # one request a series fills the associations (fewer: the plan splits the series), and
        # every series' modality is known
        plan.deferred = len(plan.series) >= parallel and all(classes) and len(plan.guessed_classes) <= 8
        if plan.deferred:
            return plan
    return list_instances(plan, node, calling_ae, timeout, cancel, parallel)


def list_instances(plan: Plan, node: RemoteNode, calling_ae: str, timeout: float, cancel: CancelToken,
                   parallel: int = 1) -> Plan:  # fmt: skip
    """The plan's instances by image-level C-FIND (the series listed over up to ``parallel``
    associations at once); a PACS that cannot list them leaves ``instances`` None, with a
    warning."""
    plan.deferred = False
    wanted = set(plan.requested_sops)
    try:
        instances = [
            i
            for i in _list_all(node, plan.series, calling_ae, timeout, cancel, parallel)
            if not wanted or i.sop in wanted
        ]
        if cancel.cancelled:
            raise _Cancelled("cancelled while listing the instances")
    except QueryError as exc:
        plan.warnings.append(
            f"{node.name} could not list the instances ({exc}): nothing is skipped and completeness is taken "
            "from the sub-operation counts"
        )
        return plan
    plan.instances = instances
    if not instances and not wanted:
        raise RetrieveError(f"{node.label} holds no instance of the selection")
    return plan


def from_arrivals(plan: Plan, arrived: Sequence) -> Plan:
    """The plan of a deferred selection whose every C-GET accounted for all it matched: the
    instances that arrived (``ReceivedInstance``), in the order they came."""
    plan.deferred = False
    plan.instances = [PlannedInstance(i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid,
                                      i.sop_class_uid) for i in arrived]  # fmt: skip
    for i in plan.instances:
        plan.series.setdefault(i.series, i.study)
    return plan


def _list_all(node: RemoteNode, series: dict[str, str], calling_ae: str, timeout: float, cancel: CancelToken,
              parallel: int) -> list[PlannedInstance]:  # fmt: skip
    """The instances of every series, in selection order; several series are listed at once
    when ``parallel`` allows (the PACS answers each C-FIND response by response: the waits add up)."""
    workers = max(1, min(parallel, len(series)))
    if workers == 1:
        return _list_instances(node, series, calling_ae, timeout, cancel)
    import concurrent.futures

    items = list(series.items())
    parts = [dict(items[k::workers]) for k in range(workers)]
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="dicomplus-plan") as pool:
        found = list(pool.map(lambda part: _list_instances(node, part, calling_ae, timeout, cancel), parts))
    order = {uid: k for k, uid in enumerate(series)}
    return sorted((i for part in found for i in part), key=lambda i: order[i.series])


def _list_series(node: RemoteNode, study_uid: str, calling_ae: str, timeout: float,
                 cancel: CancelToken) -> dict[str, str]:  # fmt: skip
    """Series-level C-FIND of the study (C.6.2.1.4), asking only the Series Instance UID and the
    Modality: {series: modality}, in the PACS's order. Plain keys, no pydicom (a ``dicomplus
    retrieve`` process would spend 0.4 s importing it)."""
    assoc = open_for_query(node, calling_ae, [qrscu.STUDY_ROOT_FIND], timeout, cancel)
    found: dict[str, str] = {}
    try:
        identifier = {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": study_uid, "SeriesInstanceUID": "",
                      "Modality": ""}  # fmt: skip
        for ds in assoc.find(qrscu.STUDY_ROOT_FIND, identifier, cancel=cancel):
            uid = str(ds.get("SeriesInstanceUID") or "").strip()
            if uid and uid not in found:
                found[uid] = str(ds.get("Modality") or "").strip()
    except qrscu.OperationAborted as exc:  # e.g. Orthanc, for an AE title it does not know
        raise QueryError(aborted_message(node, calling_ae, exc, timeout)) from None
    except NetworkError as exc:  # a failure status, a timed out association
        raise QueryError(f"{node.address}: {exc}") from None
    finally:
        if assoc.assoc.established:
            assoc.release(timeout)
    return found


def _list_instances(node: RemoteNode, series: dict[str, str], calling_ae: str, timeout: float,
                    cancel: CancelToken) -> list[PlannedInstance]:  # fmt: skip
    """Image-level C-FIND of each series on one association, asking only what the plan needs
    (SOP Instance UID and SOP Class UID, C.6.2.1.5), with plain keys (no pydicom)."""
    assoc = open_for_query(node, calling_ae, [qrscu.STUDY_ROOT_FIND], timeout, cancel)
    out: list[PlannedInstance] = []
    try:
        for series_uid, study_uid in series.items():
            identifier = {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": study_uid,
                          "SeriesInstanceUID": series_uid, "SOPInstanceUID": "", "SOPClassUID": ""}  # fmt: skip
            for ds in assoc.find(qrscu.STUDY_ROOT_FIND, identifier, cancel=cancel):
                sop = str(ds.get("SOPInstanceUID") or "").strip()
                if sop:
                    out.append(
                        PlannedInstance(study_uid, series_uid, sop, str(ds.get("SOPClassUID") or "").strip())
                    )
    except NetworkError as exc:  # a failure status, an aborted or timed out association
        raise QueryError(f"{node.address}: {exc}") from None
    finally:
        if assoc.assoc.established:
            assoc.release(timeout)
    return out


def _study_of_series(ask, node: RemoteNode, series_uid: str) -> str:
    found = ask(QueryLevel.SERIES, {"SeriesInstanceUID": series_uid, "StudyInstanceUID": ""})
    study = next((s.StudyInstanceUID for s in found if s.StudyInstanceUID), "")
    if not study:
        raise RetrieveError(
            f"{node.label} does not find series {series_uid} without its study: give the "
            "study too (--study UID)"
        )
    return study


def make_units(plan: Plan, have: set[str], *, parallel: int = 1) -> list[Unit]:
    """Requests for what is still missing: the whole study or series when nothing of it is here,
    else lists of the missing instances."""
    if plan.instances is None:
        if plan.requested_sops:
            (series, study), *_ = plan.series.items()
            return [Unit("IMAGE", study, (series,), tuple(plan.requested_sops), tuple(plan.requested_sops))]
        if plan.whole_study and parallel <= 1:
            return [Unit("STUDY", plan.whole_study)]
        return [Unit("SERIES", study, (series,)) for series, study in plan.series.items()]
    by_series: dict[str, list[PlannedInstance]] = {}
    for inst in plan.instances:
        by_series.setdefault(inst.series, []).append(inst)
    units: list[Unit] = []
    untouched = True
    for series, members in by_series.items():
        missing = [i for i in members if i.sop not in have]
        if not missing:
            untouched = False
            continue
        classes = frozenset(i.sop_class for i in missing if i.sop_class)
        study = members[0].study
        if series in plan.whole_series and len(missing) == len(members):
            units.append(Unit("SERIES", study, (series,), (), tuple(i.sop for i in members), classes))
            continue
        untouched = False
        for k in range(0, len(missing), IMAGE_CHUNK):
            chunk = missing[k : k + IMAGE_CHUNK]
            sops = tuple(i.sop for i in chunk)
            units.append(
                Unit(
                    "IMAGE",
                    study,
                    (series,),
                    sops,
                    sops,
                    frozenset(i.sop_class for i in chunk if i.sop_class),
                )
            )
    if plan.whole_study and untouched and len(units) == len(plan.series) and parallel <= 1:
        expected = tuple(s for u in units for s in u.expected)
        classes = frozenset(c for u in units for c in u.sop_classes)
        return [Unit("STUDY", plan.whole_study, (), (), expected, classes)]
    return _balance(units, parallel)


def _balance(units: list[Unit], parallel: int) -> list[Unit]:
    """With more associations than units, split the biggest series into image-level chunks."""
    if parallel <= 1 or len(units) >= parallel:
        return units
    units = sorted(units, key=lambda u: -len(u.expected))
    while len(units) < parallel and units and len(units[0].expected) > 1:
        big = units.pop(0)
        half = (len(big.expected) + 1) // 2
        for part in (big.expected[:half], big.expected[half:]):
            units.append(Unit("IMAGE", big.study, big.series, part, part, big.sop_classes))
        units.sort(key=lambda u: -len(u.expected))
    return units


def _distribute(units: Sequence[Unit], workers: int) -> list[list[Unit]]:
    """Units over ``workers`` lists, biggest first onto the least loaded."""
    lists: list[list[Unit]] = [[] for _ in range(max(1, min(workers, len(units))))]
    loads = [0] * len(lists)
    for unit in sorted(units, key=lambda u: -max(1, len(u.expected))):
        k = loads.index(min(loads))
        lists[k].append(unit)
        loads[k] += max(1, len(unit.expected))
    return lists
