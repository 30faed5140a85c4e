"""Retrieve exactly a selection (a study, series, or instances) from a node into the database.

``retrieve(node, db, study_uid=..., series_uids=[...], sop_instance_uids=[...])`` fetches by the
node's retrieve method or the ``method`` given: C-GET or C-MOVE from its DIMSE endpoint
(:mod:`.retrieve_qr`: plan, transfer, check, resume), WADO-RS from its DICOMweb endpoint
(:mod:`.retrieve_web`); the transport is chosen by :mod:`DICOMPlusLib.network.transports`. How
it runs (listener, resume, timeouts, retries, parallel associations) is a
:class:`~DICOMPlusLib.network.models.RetrieveOptions`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from DICOMPlusLib.errors import DiskFullError, NetworkError, RetrieveError
from DICOMPlusLib.jobs import CancelToken, Job, ProgressCallback
from DICOMPlusLib.network.models import RetrieveOptions, RetrieveReport, RetrieveRequest, Selection
from DICOMPlusLib.network.nodes import RemoteNode, RetrieveMethod
from DICOMPlusLib.network.retrieve_plan import Plan, PlannedInstance, make_plan, make_units
from DICOMPlusLib.network.retrieve_qr import node_limit, node_slot, set_node_limit
from DICOMPlusLib.network.transports import retrieve_transport

if TYPE_CHECKING:
    from DICOMPlusLib.database import DatabaseProtocol

__all__ = [
    "Plan",
    "PlannedInstance",
    "RetrieveOptions",
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


def resolve_method(method: str | RetrieveMethod | None, node: RemoteNode) -> RetrieveMethod:
    """``get``, ``move``, ``dicomweb`` (or the RetrieveMethod names); None: the node's own."""
    if method is None:
        return node.method
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


def retrieve(
    node: RemoteNode,
    db: DatabaseProtocol,
    *,
    study_uid: str | None = None,
    series_uids: Iterable[str] | str = (),
    sop_instance_uids: Iterable[str] | str = (),
    method: str | RetrieveMethod | None = None,
    options: RetrieveOptions | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> RetrieveReport:
    """Retrieve exactly the selection into ``db``; see the module documentation.

    ``method``: ``"get"``, ``"move"``, ``"dicomweb"`` or None (the node's own). Raises
    :class:`RetrieveError` when nothing can be done (the selection is not on the node, the node
    rejects us, does not know our listener as a move destination: the message says what to
    configure); :class:`DiskFullError` when the store or the database filled (what arrived
    before stays, and the same retrieve again resumes); otherwise the report says what arrived
    and what did not.
    """
    series_uids = [series_uids] if isinstance(series_uids, str) else list(series_uids)
    sop_uids = [sop_instance_uids] if isinstance(sop_instance_uids, str) else list(sop_instance_uids)
    if not (study_uid or series_uids or sop_uids):
        raise RetrieveError("nothing to retrieve: give a study, series or instances")
    how = resolve_method(method, node)
    db.check_writable()  # a read-only database or store: one DatabaseError, before any transfer
    request = RetrieveRequest(study_uid, tuple(series_uids), tuple(sop_uids))
    ingest = db.ingest
    failures_before = ingest.space_failures
    seen = [0, 0]  # (done, expected) as last reported: how far a retrieve that fails came

    def counted(done: int, expected: int, current: str) -> None:
        seen[:] = [done, expected]
        if progress is not None:
            progress(done, expected, current)

    try:
        report = retrieve_transport(node, how).retrieve(node, db, request, how, options or RetrieveOptions(),
                                                        progress=counted, cancel=cancel or CancelToken())  # fmt: skip
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None and not ingest.note_space(cause):  # a write of ours, wrapped or not
            cause = cause.__cause__ or cause.__context__
        if ingest.space_failures > failures_before:
            raise DiskFullError(ingest.full, done=seen[0], total=seen[1]) from exc
        raise
    if ingest.space_failures > failures_before:
        # Our refusals (0xA700) reach the report as the sender's failures: say what they were.
        done = len(report.done) + len(report.skipped)
        raise DiskFullError(ingest.full, done=done, total=max(report.expected, done))
    return report


def retrieve_selection(node: RemoteNode, db: DatabaseProtocol, selection: Selection, *,
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


def retrieve_job(node: RemoteNode, db: DatabaseProtocol, *, name: str | None = None, **kwargs) -> Job:
    """The retrieve as a :class:`~DICOMPlusLib.jobs.Job` (not started): ``job.start()``, poll
    its progress, ``job.cancel()``, ``job.result`` is the :class:`RetrieveReport`."""
    what = kwargs.get("study_uid") or ", ".join(kwargs.get("series_uids") or ()) or "instances"

    def run(progress: ProgressCallback, cancel: CancelToken) -> RetrieveReport:
        return retrieve(node, db, progress=progress, cancel=cancel, **kwargs)

    return Job(name or f"retrieve {what} from {node.name}", run)
