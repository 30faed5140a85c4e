"""Retrieve by Query/Retrieve (C-GET, C-MOVE) from a node's DIMSE endpoint into the database.

1. **Plan** (PS3.4 C.4.1): an image-level C-FIND of the selection says which instances (and
   SOP classes) to expect; instances already in the database are skipped (**resume**). When
   the database holds nothing of the selection (a local lookup) and it is fetched by C-GET,
   the image level waits: the C-GETs go out after the series-level C-FIND (whose modalities
   say which storage classes to propose), and their counts, or an image-level C-FIND after
   them when the counts do not account for every instance, give the expected list.
2. **Transfer** by C-GET (instances come back on our association and are stored by the
   listener's path) or C-MOVE (to our own listener, started when needed, after a pre-flight
   check): whole series when nothing of them is here yet, else exactly the missing instances (a
   list of UIDs at the image level). ``parallel`` associations share the work.
3. **Check** the result against the plan: what did not arrive is reported as failed; transient
   failures (a lost association, a timeout, a C-GET's instance whose commit found the database
   server away) are retried with back-off, fetching only what is still missing. A full store or
   database is not transient: no request goes out after it, and
   :func:`~DICOMPlusLib.network.retrieve.retrieve` says so (``DiskFullError``).

Progress comes from the instances stored (and from the sub-operation counts when the plan is
unknown); cancel sends C-CANCEL and aborts after a short grace period, so a retrieve stops within
about a second and leaves only complete instances. Each association to a node takes a slot of a
per-node cap (:func:`set_node_limit`), so parallel retrieves do not swamp a PACS.
"""

from __future__ import annotations

import contextlib
import threading
import time
from functools import partial
from typing import TYPE_CHECKING

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.cancel import GraceToken, run_threads
from DICOMPlusLib.errors import CancelledError, NetworkError, RetrieveError
from DICOMPlusLib.jobs import CancelToken, ProgressCallback
from DICOMPlusLib.network.dimse import qrscu, scu
from DICOMPlusLib.network.models import (
    NOT_FETCHED_CANCELLED,
    RetrieveOptions,
    RetrieveReport,
    RetrieveRequest,
)
from DICOMPlusLib.network.nodes import RemoteNode, RetrieveMethod, check_ae_title
from DICOMPlusLib.network.retrieve_dimse import (
    RunState,
    move_listener,
    present_in_db,
    run_get,
    run_move,
    storage_context_groups,
)
from DICOMPlusLib.network.retrieve_plan import (
    IMAGE_CHUNK,
    Plan,
    Unit,
    _Cancelled,
    _distribute,
    from_arrivals,
    list_instances,
    make_plan,
    make_units,
)

if TYPE_CHECKING:
    from DICOMPlusLib.database import DatabaseProtocol

logger = get_logger(__name__)

DEFAULT_NODE_LIMIT = 4


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


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, RetrieveError | _Cancelled):
        return False
    if isinstance(exc, scu.AssociationFailed):
        return exc.kind != "rejected"
    return isinstance(exc, NetworkError | OSError)


def retrieve_qr(node: RemoteNode, db: DatabaseProtocol, request: RetrieveRequest, how: RetrieveMethod,
                options: RetrieveOptions, *, progress: ProgressCallback | None,
                cancel: CancelToken) -> RetrieveReport:  # fmt: skip
    """Plan, transfer and check a C-GET or C-MOVE retrieve of ``request``; see the module
    documentation."""
    started = time.monotonic()
    calling = check_ae_title(options.calling_ae_title, "calling AE title")
    study_uid, series_uids, sop_uids = request.study_uid, list(request.series_uids), list(request.sop_uids)
    timeout, resume, parallel = options.timeout, options.resume, options.parallel
    report = RetrieveReport(node=node.name, method=how.value)
    try:
        if cancel.cancelled:
            raise _Cancelled("cancelled before it started")
        defer = how is RetrieveMethod.C_GET and not sop_uids and not _held(db, study_uid, series_uids)
        plan = make_plan(node, study_uid=study_uid, series_uids=series_uids, sop_uids=sop_uids,
                         calling_ae=calling, timeout=timeout, cancel=cancel, parallel=parallel,
                         defer=defer)  # fmt: skip
    except _Cancelled:
        report.cancelled = True
        report.seconds = time.monotonic() - started
        return report
    state = RunState(node, db, report, calling_ae=calling, progress=progress, cancel=cancel, timeout=timeout,
                     grace=options.grace, present_before=set(), expected=set())  # fmt: skip
    state.plan = plan
    _account(state, plan, resume)
    if progress is not None:
        progress(len(report.skipped), report.expected, "")
    with contextlib.ExitStack() as stack:
        destination = None
        if how is RetrieveMethod.C_MOVE:
            destination = stack.enter_context(
                move_listener(db, options.listener, options.listener_config, calling)
            )
            stack.enter_context(destination.subscribe(state.on_arrival, match=state.matches_arrival))
        _transfer(
            state, plan, set(report.skipped), how, destination, options.retries, options.backoff, parallel
        )
    report.cancelled = report.cancelled or cancel.cancelled
    if plan.deferred:  # cancelled or failed before the C-GETs' counts were in
        _resolve(state, plan, parallel)
    expected = [i.sop for i in plan.instances] if plan.instances is not None else []
    if plan.instances is not None:
        have = set(report.done) | set(report.skipped)
        for sop in expected:
            if sop not in have and sop not in report.failed:
                report.failed[sop] = NOT_FETCHED_CANCELLED if report.cancelled else "did not arrive"
    report.seconds = time.monotonic() - started
    return report


def _held(db: DatabaseProtocol, study_uid: str | None, series_uids: list[str]) -> bool:
    """Whether the database holds anything of the selection's series (or study): a local
    lookup that decides whether the image-level plan must come before the transfer (to skip
    what is held) or can wait."""
    if series_uids:
        return any(db.search("series", {"SeriesInstanceUID": uid}, limit=1) for uid in series_uids)
    return bool(study_uid) and bool(db.search("study", {"StudyInstanceUID": study_uid or ""}, limit=1))


def _account(state: RunState, plan: Plan, resume: bool) -> None:
    """The report's and the run's view of a known plan: expected, not found, held (skipped)."""
    report = state.report
    report.warnings += [w for w in plan.warnings if w not in report.warnings]
    if plan.instances is None:
        return
    expected = [i.sop for i in plan.instances]
    report.expected = len(expected)
    found = set(expected)
    for sop in plan.requested_sops:
        if sop not in found:
            report.failed[sop] = f"not found on {state.node.name}"
    present = present_in_db(state.db, expected) if expected else set()
    state.present_before = present
    report.skipped = [s for s in expected if s in present and s not in state.done] if resume else []
    with state.lock:
        state.expected = set(expected)


def _resolve(state: RunState, plan: Plan, parallel: int) -> None:
    """After a deferred plan's C-GETs: when each final response says it completed every
    sub-operation it matched (as many as its pending responses announced) and exactly that
    many instances arrived, the instances are known (the PACS's own count is the expected
    one); otherwise the image-level C-FIND lists them (after the transfer, in a node slot), so
    that the report names what is missing. After a cancel it is given ``grace`` seconds, and none
    after a halt (the second Ctrl-C: :class:`~DICOMPlusLib.cancel.GraceToken`)."""
    counted = list(state.counted)
    units = len(make_units(plan, set(), parallel=parallel))
    proven = (
        not state.cancel.cancelled
        and len(counted) == units
        and all(
            r.status == 0 and not r.suboperations.failed and not r.suboperations.warning
            and r.suboperations.completed == len(arrived) > 0 and total in (None, len(arrived))
            for r, arrived, total in counted
        )
    )  # fmt: skip
    if proven:
        from_arrivals(plan, [i for _, arrived, _ in counted for i in arrived])
    else:
        token = GraceToken(state.cancel, state.grace) if state.cancel.cancelled else state.cancel
        try:
            with node_slot(state.node, token):
                list_instances(plan, state.node, state.calling_ae, state.timeout, token, parallel)
        except (_Cancelled, CancelledError, RetrieveError) as exc:  # CancelledError: its grace ended a wait
            if not state.cancel.cancelled and isinstance(exc, RetrieveError):
                raise
            plan.deferred = False
            state.report.warnings.append(f"the instances of the selection are not known: {exc}")
    _account(state, plan, True)


def _transfer(state: RunState, plan: Plan, skipped: set[str], how: RetrieveMethod, destination,
              retries: int, backoff: float, parallel: int) -> None:  # fmt: skip
    """The attempts: run the units, retry what is still missing after a transient failure."""
    report = state.report
    last_error: BaseException | None = None
    attempt, bonus = 0, 0
    again: list[Unit] = []  # what a failed transaction held, when the selection's instances are not known
    lost: set[str] = set()
    while attempt < retries + 1 + bonus:
        attempt += 1
        report.attempts = attempt
        blind, alone = plan.deferred, state.commits_alone
        units, again = again or make_units(plan, skipped | state.done, parallel=parallel), []
        if not units:
            return
        outcomes = _run_units(state, units, how, destination, parallel)
        report.associations += sum(o.associations for o in outcomes)
        for o in outcomes:
            report.warnings += o.warnings
        errors = [o.error for o in outcomes if o.error is not None]
        if plan.deferred and not state.cancel.cancelled and all(_transient(e) for e in errors):
            _resolve(state, plan, parallel)
        aborted = [e for e in errors if isinstance(e, qrscu.OperationAborted) and e.cancelled]
        report.warnings += [str(e) for e in aborted]
        if aborted or state.cancel.cancelled or any(isinstance(e, _Cancelled) for e in errors):
            report.cancelled = True
            return
        if state.disk_full:
            return  # our refusals (0xA700) made the PACS fail or give up: asking again brings the same
        fatal = next((e for e in errors if not _transient(e)), None)
        if fatal is not None:
            if isinstance(fatal, RetrieveError):
                raise fatal
            raise RetrieveError(f"retrieve from {state.node.name} failed: {fatal}") from fatal
        last_error = errors[0] if errors else None
        if last_error is not None:
            logger.info("retrieve from %s, attempt %d: %s", state.node.name, attempt, last_error)
            report.warnings.append(f"attempt {attempt}: {last_error}")
        # In this attempt a transaction of several instances failed them all, answered success
        # each: asked for again, they are committed one at a time and only the one at fault fails.
        batch_failed = last_error is None and state.commits_alone and not alone
        # Instances answered success whose commit failed because the database server was away
        # (a session it ended, a connection it did not take: a restart, a failover; not a full
        # disk, not a refused row): asked for again as after a lost association, within the
        # retries and after their back-off.
        lost = state.take_lost()
        if plan.instances is None:
            again = [u for o in outcomes for u in o.unstored]
            if again and batch_failed:
                # the PACS cannot list the selection's instances, but their sub-operations named
                # them: asked for by UID
                bonus += 1
                continue
            again = _only(again, lost)  # asked for by UID after the back-off
            if not again:
                break
            missing = [sop for u in again for sop in u.expected]
        else:
            missing = [i.sop for i in plan.instances if i.sop not in skipped and i.sop not in state.done]
        if not missing:
            return
        if blind and last_error is None and not bonus:
            bonus = 1  # the C-GETs proposed guessed SOP classes: ask at once with the listed ones
            continue
        if batch_failed:
            bonus += 1
            continue
        failures = sum(o.suboperation_failures for o in outcomes)
        if last_error is None and not failures and not lost:
            break  # the PACS said all went well: asking again would bring the same
        if attempt <= retries and state.cancel.wait(backoff * 2 ** (attempt - 1)):
            report.cancelled = True
            return
    if lost:
        report.warnings.append(
            f"{len(lost)} instance(s) received but not stored: the database was unavailable at each of "
            f"{report.attempts} attempt(s); the same retrieve once it is back fetches only what is missing"
        )
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


def _only(units: list[Unit], sops: set[str]) -> list[Unit]:
    """Image-level units asking for the instances of ``units`` that are in ``sops``."""
    out = []
    for u in units:
        keep = tuple(sop for sop in u.expected if sop in sops)
        if keep:
            out.append(Unit("IMAGE", u.study, u.series, keep, keep, u.sop_classes))
    return out


def _run_units(state: RunState, units: list[Unit], how: RetrieveMethod, destination, parallel: int) -> list:
    """Run the units on ``parallel`` associations (threads), each holding a node slot."""
    jobs: list[tuple] = []
    if how is RetrieveMethod.C_GET:
        plan = state.plan
        deferred = plan is not None and plan.deferred
        groups = storage_context_groups(plan.guessed_classes if plan is not None and deferred else
                                        {c for u in units for c in u.sop_classes})  # fmt: skip
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
    if how is RetrieveMethod.C_GET:  # the C-GETs' instances received by one thread (pump.py)
        from DICOMPlusLib.network.dimse.pump import ReceivePump

        state.pump = ReceivePump()

    def work(k: int, func, part, extra) -> None:
        with limit:
            try:
                results[k] = func(state, part, extra, node_slot(state.node, state.cancel))
            finally:
                state.db.release_reader()

    # a second Ctrl-C in a caller's main thread waits for each to abort its association and
    # remove the file it was receiving (run_threads)
    try:
        run_threads(
            [partial(work, k, *job) for k, job in enumerate(jobs)], state.cancel, "dicomplus-retrieve"
        )
    finally:
        if state.pump is not None:
            state.pump.close()
            state.pump = None
    return results


def _split_by_classes(state: RunState, units: list[Unit], group) -> list[Unit]:
    """Image-level units holding only the instances of ``group``'s classes (when the classes of
    a retrieve need several associations; the plan knows every instance's class then)."""
    planned = (state.plan.instances if state.plan is not None else None) or []
    keep = {i.sop: i for i in planned if i.sop_class in group.sop_classes}
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
