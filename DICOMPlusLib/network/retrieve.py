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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from DICOMPlusLib.errors import NetworkError, RetrieveError
from DICOMPlusLib.jobs import CancelToken, Job, ProgressCallback
from DICOMPlusLib.network.dimse import qrscu, scu
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
from DICOMPlusLib.network.retrieve_plan import (
    IMAGE_CHUNK,
    Plan,
    PlannedInstance,
    _Cancelled,
    _distribute,
    make_plan,
    make_units,
)
from DICOMPlusLib.network.web.client import TransferReport

if TYPE_CHECKING:
    from DICOMPlusLib.database import Database
    from DICOMPlusLib.network.listener import Listener, ListenerConfig
    from DICOMPlusLib.network.query import Selection

logger = logging.getLogger(__name__)

__all__ = [
    "Plan",
    "PlannedInstance",
    "RetrieveReport",
    "make_plan",
    "make_units",
    "node_limit",
    "node_slot",
    "resolve_method",
    "retrieve",
    "retrieve_job",
    "retrieve_selection",
    "set_node_limit",
]

DEFAULT_NODE_LIMIT = 4


@dataclass
class RetrieveReport(TransferReport):
    """What a retrieve did: ``done`` (SOP Instance UIDs received), ``skipped`` (already in the
    database), ``failed`` (SOP Instance UID -> reason), ``expected`` (from the plan),
    ``cancelled``; ``complete`` when everything expected is here. The same shape as the DICOMweb
    :class:`~DICOMPlusLib.network.web.client.TransferReport`, plus how it went."""

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
                         calling_ae=calling, timeout=timeout, cancel=cancel, parallel=parallel)  # fmt: skip
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
