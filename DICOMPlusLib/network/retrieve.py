"""Retrieve exactly a selection (a study, series, or instances) from a node into the database.

``retrieve(node, db, study_uid=..., series_uids=[...], sop_instance_uids=[...])``:

1. **Plan** (PS3.4 C.4.1): an image-level C-FIND of the selection says which instances (and
   SOP classes) to expect; instances already in the database are skipped (**resume**).
2. **Transfer** by C-GET (instances come back on our association and are stored by the
   listener's path), C-MOVE (to our own listener, started when needed, after a pre-flight check)
   or DICOMweb WADO-RS: whole series when nothing of them is here yet, else exactly the missing
   instances (a list of UIDs at the image level). ``parallel`` associations share the work.
3. **Check** the result against the plan: what did not arrive is reported as failed; transient
   failures (a lost association, a timeout) are retried with back-off, fetching only what is
   still missing.

Progress comes from the instances stored (and from the sub-operation counts when the plan is
unknown); cancel sends C-CANCEL and aborts after a short grace period, so a retrieve stops within
about a second and leaves only complete instances. Each association to a node takes a slot of a
per-node cap (:func:`set_node_limit`), so parallel retrieves do not swamp a PACS.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from DICOMPlusLib.errors import NetworkError, QueryError, RetrieveError
from DICOMPlusLib.jobs import CancelToken, Job, ProgressCallback
from DICOMPlusLib.models import QueryLevel
from DICOMPlusLib.network import qrscu, scu
from DICOMPlusLib.network.dicomweb import TransferReport
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, RemoteNode, RetrieveMethod, check_ae_title
from DICOMPlusLib.network.retrieve_dimse import (
    RunState,
    Unit,
    move_listener,
    present_in_db,
    run_get,
    run_move,
    storage_context_groups,
)

if TYPE_CHECKING:
    from DICOMPlusLib.database import Database
    from DICOMPlusLib.network.listener import Listener, ListenerConfig
    from DICOMPlusLib.network.query import Selection

logger = logging.getLogger(__name__)

IMAGE_CHUNK = 200  # SOP Instance UIDs per image-level request (a UI list stays well under 64 KiB)
DEFAULT_NODE_LIMIT = 4


@dataclass
class RetrieveReport(TransferReport):
    """What a retrieve did: ``done`` (SOP Instance UIDs received), ``skipped`` (already in the
    database), ``failed`` (SOP Instance UID -> reason), ``expected`` (from the plan),
    ``cancelled``; ``complete`` when everything expected is here. The same shape as the DICOMweb
    :class:`~DICOMPlusLib.network.dicomweb.TransferReport`, plus how it went."""

    node: str = ""
    method: str = ""
    seconds: float = 0.0
    associations: int = 0
    attempts: int = 0
    warnings: list[str] = field(default_factory=list)

    def merge(self, other: TransferReport) -> RetrieveReport:
        self.done += [s for s in other.done if s not in set(self.done)]
        self.skipped += other.skipped
        self.failed.update(other.failed)
        self.expected += other.expected
        self.cancelled = self.cancelled or other.cancelled
        if isinstance(other, RetrieveReport):
            self.seconds += other.seconds
            self.associations += other.associations
            self.attempts = max(self.attempts, other.attempts)
            self.warnings += other.warnings
        return self

    def to_dict(self) -> dict:
        return {
            **super().to_dict(),
            "node": self.node,
            "method": self.method,
            "seconds": round(self.seconds, 3),
            "associations": self.associations,
            "attempts": self.attempts,
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------------------------
# Per-node cap on parallel associations
# --------------------------------------------------------------------------------------------

_LIMITS: dict[str, int] = {}
_SEMAPHORES: dict[str, threading.BoundedSemaphore] = {}
_LIMITS_LOCK = threading.Lock()


def _node_key(node: RemoteNode) -> str:
    return f"{node.ae_title}@{node.host}:{node.port}"


def set_node_limit(node: RemoteNode, limit: int) -> None:
    """At most ``limit`` retrieve associations to ``node`` at once in this process (default 4)."""
    if limit < 1:
        raise RetrieveError("the per-node limit must be at least 1")
    with _LIMITS_LOCK:
        _LIMITS[_node_key(node)] = limit
        _SEMAPHORES[_node_key(node)] = threading.BoundedSemaphore(limit)


def node_limit(node: RemoteNode) -> int:
    with _LIMITS_LOCK:
        return _LIMITS.get(_node_key(node), DEFAULT_NODE_LIMIT)


@contextlib.contextmanager
def node_slot(node: RemoteNode, cancel: CancelToken):
    """Hold one of the node's association slots (waiting, but not past a cancel)."""
    with _LIMITS_LOCK:
        key = _node_key(node)
        semaphore = _SEMAPHORES.get(key)
        if semaphore is None:
            semaphore = _SEMAPHORES[key] = threading.BoundedSemaphore(_LIMITS.get(key, DEFAULT_NODE_LIMIT))
    while not semaphore.acquire(timeout=0.1):
        if cancel.cancelled:
            raise _Cancelled("cancelled while waiting for a free association slot")
    try:
        yield
    finally:
        semaphore.release()


class _Cancelled(NetworkError):
    pass


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedInstance:
    study: str
    series: str
    sop: str
    sop_class: str = ""


@dataclass
class Plan:
    """What the selection holds on the node. ``instances`` is None when the node could not be
    asked at the image level (then nothing can be skipped or checked)."""

    series: dict[str, str] = field(default_factory=dict)  # series -> study, selection order
    whole_series: set[str] = field(default_factory=set)
    whole_study: str | None = None
    instances: list[PlannedInstance] | None = None
    requested_sops: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def make_plan(node: RemoteNode, *, study_uid: str | None, series_uids: Sequence[str], sop_uids: Sequence[str],
              calling_ae: str, timeout: float, cancel: CancelToken) -> Plan:  # fmt: skip
    """Find the series (and study) of the selection, then its instances (image-level C-FIND)."""
    from DICOMPlusLib.network.query import query

    def ask(level, criteria, **kw):
        found = list(
            query(node, level, criteria, calling_ae_title=calling_ae, timeout=timeout, cancel=cancel, **kw)
        )
        if cancel.cancelled:  # a cancelled C-FIND says nothing about what the node holds
            raise _Cancelled("cancelled while finding the selection")
        return found

    plan = Plan(requested_sops=list(sop_uids))
    try:
        if series_uids:
            for uid in series_uids:
                plan.series[uid] = study_uid or _study_of_series(ask, node, uid)
            if not sop_uids:
                plan.whole_series = set(series_uids)
        elif study_uid:
            found = ask(QueryLevel.SERIES, {"StudyInstanceUID": study_uid})
            if not found:
                raise RetrieveError(f"{node.name} ({node.address}) has no study {study_uid}")
            plan.series = {s.SeriesInstanceUID: study_uid for s in found}
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
                raise RetrieveError(f"{node.name} ({node.address}) has none of the instances asked for")
    except QueryError as exc:
        raise RetrieveError(f"cannot find the selection on {node.name}: {exc}") from None
    wanted = set(sop_uids)
    try:
        instances = [
            i
            for i in _list_instances(node, plan.series, calling_ae, timeout, cancel)
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
        raise RetrieveError(f"{node.name} ({node.address}) holds no instance of the selection")
    return plan


def _list_instances(node: RemoteNode, series: dict[str, str], calling_ae: str, timeout: float,
                    cancel: CancelToken) -> list[PlannedInstance]:  # fmt: skip
    """Image-level C-FIND of each series on one association, asking only what the plan needs
    (SOP Instance UID and SOP Class UID, C.6.2.1.5)."""
    from pydicom import Dataset

    from DICOMPlusLib.network.query import open_for_query

    assoc = open_for_query(node, calling_ae, [qrscu.STUDY_ROOT_FIND], timeout)
    out: list[PlannedInstance] = []
    try:
        for series_uid, study_uid in series.items():
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "IMAGE"
            identifier.StudyInstanceUID = study_uid
            identifier.SeriesInstanceUID = series_uid
            identifier.SOPInstanceUID = ""
            identifier.SOPClassUID = ""
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
            f"{node.name} ({node.address}) does not find series {series_uid} without its study: give the "
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


# --------------------------------------------------------------------------------------------
# Retrieve
# --------------------------------------------------------------------------------------------


def resolve_method(method: str | RetrieveMethod | None, node: RemoteNode) -> RetrieveMethod:
    """``get``, ``move``, ``dicomweb`` (or the RetrieveMethod names); None: the node's own."""
    if method is None:
        return node.retrieve_method
    if isinstance(method, RetrieveMethod):
        return method
    text = str(method).strip().lower().replace("_", "-")
    aliases = {"get": RetrieveMethod.C_GET, "move": RetrieveMethod.C_MOVE, "dicomweb": RetrieveMethod.DICOMWEB,
               "wado": RetrieveMethod.DICOMWEB, "wado-rs": RetrieveMethod.DICOMWEB}  # fmt: skip
    if text in aliases:
        return aliases[text]
    try:
        return RetrieveMethod.parse(text)
    except NetworkError as exc:
        raise RetrieveError(f"unknown retrieve method {method!r}: use get, move or dicomweb") from exc


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, RetrieveError | _Cancelled):
        return False
    if isinstance(exc, scu.AssociationFailed):
        return exc.kind != "rejected"
    return isinstance(exc, NetworkError | OSError)


def retrieve(
    node: RemoteNode,
    db: Database,
    *,
    study_uid: str | None = None,
    series_uids: Iterable[str] | str = (),
    sop_instance_uids: Iterable[str] | str = (),
    method: str | RetrieveMethod | None = None,
    listener: Listener | None = None,
    listener_config: ListenerConfig | None = None,
    calling_ae_title: str = DEFAULT_AE_TITLE,
    resume: bool = True,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 30.0,
    retries: int = 2,
    backoff: float = 0.5,
    parallel: int = 1,
    grace: float = 1.0,
) -> RetrieveReport:
    """Retrieve exactly the selection into ``db``; see the module documentation.

    ``method``: ``"get"``, ``"move"``, ``"dicomweb"`` or None (the node's preferred). For C-MOVE,
    ``listener`` is the destination (it must store into ``db``); without one, a listener is
    started on ``listener_config`` (default: AE ``calling_ae_title``, port 11112) for the time of
    the retrieve. Raises :class:`RetrieveError` when nothing can be done (the selection is not on
    the node, the node rejects us, does not know our listener as a move destination: the message
    says what to configure); otherwise the report says what arrived and what did not.
    """
    started = time.monotonic()
    cancel = cancel or CancelToken()
    calling = check_ae_title(calling_ae_title, "calling AE title")
    series_uids = [series_uids] if isinstance(series_uids, str) else list(series_uids)
    sop_uids = [sop_instance_uids] if isinstance(sop_instance_uids, str) else list(sop_instance_uids)
    if not (study_uid or series_uids or sop_uids):
        raise RetrieveError("nothing to retrieve: give a study, series or instances")
    how = resolve_method(method, node)
    report = RetrieveReport(node=node.name, method=how.value)
    if how is RetrieveMethod.DICOMWEB:
        from DICOMPlusLib.network.retrieve_web import retrieve_dicomweb

        retrieve_dicomweb(node, db, report, study_uid=study_uid, series_uids=series_uids, sop_uids=sop_uids,
                          resume=resume, progress=progress, cancel=cancel, timeout=timeout)  # fmt: skip
        report.seconds = time.monotonic() - started
        return report
    try:
        if cancel.cancelled:
            raise _Cancelled("cancelled before it started")
        plan = make_plan(node, study_uid=study_uid, series_uids=series_uids, sop_uids=sop_uids,
                         calling_ae=calling, timeout=timeout, cancel=cancel)  # fmt: skip
    except _Cancelled:
        report.cancelled = True
        report.seconds = time.monotonic() - started
        return report
    report.warnings += plan.warnings
    expected = [i.sop for i in plan.instances] if plan.instances is not None else []
    if plan.instances is not None:
        report.expected = len(expected)
        found = set(expected)
        for sop in plan.requested_sops:
            if sop not in found:
                report.failed[sop] = f"not found on {node.name}"
    present = present_in_db(db, expected) if expected else set()
    report.skipped = [s for s in expected if s in present] if resume else []
    if progress is not None:
        progress(len(report.skipped), report.expected, "")
    state = RunState(node, db, report, calling_ae=calling, progress=progress, cancel=cancel, timeout=timeout,
                     grace=grace, present_before=present, expected=set(expected))  # fmt: skip
    state.plan = plan
    with contextlib.ExitStack() as stack:
        destination = None
        if how is RetrieveMethod.C_MOVE:
            destination = stack.enter_context(move_listener(db, listener, listener_config, calling))
            stack.enter_context(destination.subscribe(state.on_arrival, match=state.matches_arrival))
        _transfer(state, plan, set(report.skipped), how, destination, retries, backoff, parallel)
    report.cancelled = report.cancelled or cancel.cancelled
    if plan.instances is not None:
        have = set(report.done) | set(report.skipped)
        for sop in expected:
            if sop not in have and sop not in report.failed:
                report.failed[sop] = "cancelled before it arrived" if report.cancelled else "did not arrive"
    report.seconds = time.monotonic() - started
    return report


def _transfer(state: RunState, plan: Plan, skipped: set[str], how: RetrieveMethod, destination,
              retries: int, backoff: float, parallel: int) -> None:  # fmt: skip
    """The attempts: run the units, retry what is still missing after a transient failure."""
    report = state.report
    last_error: BaseException | None = None
    for attempt in range(1, retries + 2):
        report.attempts = attempt
        units = make_units(plan, skipped | state.done, parallel=parallel)
        if not units:
            return
        outcomes = _run_units(state, units, how, destination, parallel)
        report.associations += sum(o.associations for o in outcomes)
        for o in outcomes:
            report.warnings += o.warnings
        errors = [o.error for o in outcomes if o.error is not None]
        aborted = [e for e in errors if isinstance(e, qrscu.OperationAborted) and e.cancelled]
        report.warnings += [str(e) for e in aborted]
        if aborted or state.cancel.cancelled or any(isinstance(e, _Cancelled) for e in errors):
            report.cancelled = True
            return
        fatal = next((e for e in errors if not _transient(e)), None)
        if fatal is not None:
            if isinstance(fatal, RetrieveError):
                raise fatal
            raise RetrieveError(f"retrieve from {state.node.name} failed: {fatal}") from fatal
        last_error = errors[0] if errors else None
        if last_error is not None:
            logger.info("retrieve from %s, attempt %d: %s", state.node.name, attempt, last_error)
            report.warnings.append(f"attempt {attempt}: {last_error}")
        if plan.instances is None:
            break
        missing = [i.sop for i in plan.instances if i.sop not in skipped and i.sop not in state.done]
        if not missing:
            return
        failures = sum(o.suboperation_failures for o in outcomes)
        if last_error is None and not failures:
            break  # the PACS said all went well: asking again would bring the same
        if attempt <= retries and state.cancel.wait(backoff * 2 ** (attempt - 1)):
            report.cancelled = True
            return
    if last_error is not None and not report.done:
        hint = ""
        if "aborted the association" in str(last_error):
            hint = (
                f". A server aborts like this when it does not allow retrieves from our AE title "
                f"{state.calling_ae} (Orthanc: the AE title must be in its DicomModalities)"
            )
        raise RetrieveError(
            f"retrieve from {state.node.name} ({state.node.address}) failed after {report.attempts} attempt(s): "
            f"{last_error}{hint}"
        ) from last_error
    if last_error is not None:
        for i in plan.instances or []:
            if i.sop not in skipped and i.sop not in state.done:
                report.failed.setdefault(i.sop, f"not received: {last_error}")


def _run_units(state: RunState, units: list[Unit], how: RetrieveMethod, destination, parallel: int) -> list:
    """Run the units on ``parallel`` associations (threads), each holding a node slot."""
    jobs: list[tuple] = []
    if how is RetrieveMethod.C_GET:
        groups = storage_context_groups({c for u in units for c in u.sop_classes})
        for group in groups:
            mine = [
                u for u in units if not u.sop_classes or u.sop_classes & group.sop_classes or group.default
            ]
            if len(groups) > 1:
                mine = _split_by_classes(state, mine, group)
            for part in _distribute(mine, parallel):
                jobs.append((run_get, part, group))
    else:
        for part in _distribute(units, parallel):
            jobs.append((run_move, part, destination))
    if len(jobs) == 1:
        func, part, extra = jobs[0]
        return [func(state, part, extra, node_slot(state.node, state.cancel))]
    results: list = [None] * len(jobs)
    limit = threading.Semaphore(max(1, parallel))

    def work(k: int, func, part, extra) -> None:
        with limit:
            try:
                results[k] = func(state, part, extra, node_slot(state.node, state.cancel))
            finally:
                state.db.release_reader()

    threads = [threading.Thread(target=work, args=(k, *job), name=f"dicomplus-retrieve-{k}", daemon=True)
               for k, job in enumerate(jobs)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _split_by_classes(state: RunState, units: list[Unit], group) -> list[Unit]:
    """Image-level units holding only the instances of ``group``'s classes (when the classes of
    a retrieve need several associations; the plan knows every instance's class then)."""
    keep = {i.sop: i for i in state.plan.instances or [] if i.sop_class in group.sop_classes}
    out = []
    for u in units:
        by_series: dict[tuple[str, str], list[str]] = {}
        for sop in u.expected:
            if sop in keep:
                by_series.setdefault((keep[sop].study, keep[sop].series), []).append(sop)
        for (study, series), sops in by_series.items():
            for k in range(0, len(sops), IMAGE_CHUNK):
                chunk = tuple(sops[k : k + IMAGE_CHUNK])
                classes = frozenset(keep[s].sop_class for s in chunk)
                out.append(Unit("IMAGE", study, (series,), chunk, chunk, classes))
    return out


def retrieve_selection(node: RemoteNode, db: Database, selection: Selection, *,
                       progress: ProgressCallback | None = None, **kwargs) -> RetrieveReport:  # fmt: skip
    """Retrieve every part of a :class:`~DICOMPlusLib.network.query.Selection`; one report."""
    requests = selection.requests()
    if not requests:
        raise RetrieveError("nothing is selected")
    total = RetrieveReport(node=node.name)
    for request in requests:
        base_done = len(total.done) + len(total.skipped)
        base_expected = total.expected

        def shifted(done: int, expected: int, current: str, _d=base_done, _e=base_expected) -> None:
            if progress is not None:
                progress(_d + done, _e + expected, current)

        part = retrieve(node, db, progress=shifted, **request, **kwargs)
        total.method = part.method
        total.merge(part)
        if part.cancelled:
            break
    return total


def retrieve_job(node: RemoteNode, db: Database, *, name: str | None = None, **kwargs) -> Job:
    """The retrieve as a :class:`~DICOMPlusLib.jobs.Job` (not started): ``job.start()``, poll
    its progress, ``job.cancel()``, ``job.result`` is the :class:`RetrieveReport`."""
    what = kwargs.get("study_uid") or ", ".join(kwargs.get("series_uids") or ()) or "instances"

    def run(progress: ProgressCallback, cancel: CancelToken) -> RetrieveReport:
        return retrieve(node, db, progress=progress, cancel=cancel, **kwargs)

    return Job(name or f"retrieve {what} from {node.name}", run)
