"""The DIMSE side of retrieve: C-GET presentation contexts, C-GET and C-MOVE workers, the C-MOVE
destination (our own listener) and what to say when the PACS does not know it.

C-GET (PS3.4 C.4.3) brings the instances back on the association we opened, as C-STORE
sub-operations for which we act as Storage SCP: every storage SOP class involved is proposed
with an SCP/SCU Role Selection item (PS3.7 D.3.3.4) and, so that compressed instances travel as
they are stored, with one presentation context per transfer syntax (the SCP picks the context
whose transfer syntax is the instance's own). At most 128 contexts fit in one association
(PS3.8 9.3.2.2); the number of transfer syntaxes per class shrinks as the number of classes
grows, and past that the classes are split over several associations.

C-MOVE (PS3.4 C.4.2) asks the PACS to open its own association to a destination it knows by AE
title: our listener, started for the retrieve when none is given.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from DICOMPlusLib import uids
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.cancel import halted
from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.errors import (
    MoveDestinationUnknown,
    NetworkError,
    RetrieveError,
)
from DICOMPlusLib.network.dimse import qrscu, ul
from DICOMPlusLib.network.dimse.status import Status, describe
from DICOMPlusLib.network.nodes import DEFAULT_PORT, DimseEndpoint, RemoteNode
from DICOMPlusLib.network.retrieve_plan import Plan, Unit

if TYPE_CHECKING:
    from DICOMPlusLib.database import DatabaseProtocol
    from DICOMPlusLib.network.dimse.pump import ReceivePump
    from DICOMPlusLib.network.dimse.receive import DatabaseSink
    from DICOMPlusLib.network.listener import Listener, ListenerConfig

logger = get_logger(__name__)

MAX_CONTEXTS = 128
EXPLICIT_LE, IMPLICIT_LE = qrscu.EXPLICIT_LE, qrscu.IMPLICIT_LE
#: Transfer syntaxes proposed per storage class, richest first (PS3.5 Table A-1 / PS3.6 A-1).
RICH_SYNTAXES = (
    EXPLICIT_LE, IMPLICIT_LE,
    uids.JPEG2000Lossless, uids.JPEG2000,  # JPEG 2000 lossless, JPEG 2000
    uids.JPEGLSLossless, uids.JPEGLSNearLossless,  # JPEG-LS lossless, near-lossless
    uids.JPEGLosslessSV1, uids.JPEGLossless,  # JPEG lossless SV1, JPEG lossless
    uids.JPEGBaseline8Bit, uids.JPEGExtended12Bit,  # JPEG baseline, extended
    uids.RLELossless, uids.DeflatedExplicitVRLittleEndian,  # RLE lossless, deflated
    uids.HTJ2KLossless, uids.HTJ2KLosslessRPCL, uids.HTJ2K,  # HTJ2K
)  # fmt: skip
CORE_SYNTAXES = (*RICH_SYNTAXES[:4], uids.JPEGLSLossless, uids.JPEGLosslessSV1,
                 uids.JPEGBaseline8Bit, uids.RLELossless)  # fmt: skip
BASIC_SYNTAXES = (EXPLICIT_LE, IMPLICIT_LE, uids.JPEGLosslessSV1, uids.JPEG2000Lossless)
# When the PACS does not say which SOP classes are involved (dcmqrscp returns no SOPClassUID at
# the image level): the common image classes with the common syntaxes, the rest uncompressed.
_DEFAULT_IMAGE_CLASSES = (
    uids.CTImageStorage, uids.EnhancedCTImageStorage,  # CT, Enhanced CT
    uids.MRImageStorage, uids.EnhancedMRImageStorage,  # MR, Enhanced MR
    "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",  # CR, DX for presentation
    "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.6.1",  # MG for presentation, US
    "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.7",  # US multi-frame, SC
    "1.2.840.10008.5.1.4.1.1.7.3", "1.2.840.10008.5.1.4.1.1.12.1",  # MF grayscale word SC, XA
    "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.128",  # NM, PET
    "1.2.840.10008.5.1.4.1.1.481.1", uids.RTDoseStorage,  # RT image, RT dose
)  # fmt: skip
_DEFAULT_IMAGE_SYNTAXES = (EXPLICIT_LE, IMPLICIT_LE, uids.JPEGLosslessSV1, uids.JPEG2000Lossless,
                           uids.JPEGLSLossless, uids.JPEGBaseline8Bit)  # fmt: skip
_DEFAULT_OTHER_CLASSES = (
    uids.SegmentationStorage, "1.2.840.10008.5.1.4.1.1.481.3",  # SEG, RT structure set
    "1.2.840.10008.5.1.4.1.1.481.5", "1.2.840.10008.5.1.4.1.1.88.11",  # RT plan, basic text SR
    "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33",  # enhanced, comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.5.1.4.1.1.11.1",  # key objects, GSPS
    "1.2.840.10008.5.1.4.1.1.104.1", "1.2.840.10008.5.1.4.1.1.66",  # encapsulated PDF, raw data
    "1.2.840.10008.5.1.4.1.1.66.1",  # spatial registration
)  # fmt: skip


# eq=False (here and below): never compared; each generated method is compiled as the module is imported.
@dataclass(frozen=True, eq=False)
class ContextGroup:
    """Storage contexts for the classes of one C-GET association."""

    sop_classes: frozenset[str]
    contexts: tuple[tuple[str, tuple[str, ...]], ...]  # (abstract syntax, (one transfer syntax,))
    default: bool = False  # the classes were guessed (the PACS did not say)


def storage_context_groups(sop_classes: Iterable[str], reserved: int = 2) -> list[ContextGroup]:
    """Groups of storage classes whose contexts fit with ``reserved`` others (the C-GET model,
    Verification) in one association; one context per (class, transfer syntax)."""
    classes = sorted({c for c in sop_classes if c})
    room = MAX_CONTEXTS - reserved
    if not classes:
        contexts = [(c, (ts,)) for c in _DEFAULT_IMAGE_CLASSES for ts in _DEFAULT_IMAGE_SYNTAXES]
        contexts += [(c, (ts,)) for c in _DEFAULT_OTHER_CLASSES for ts in (EXPLICIT_LE, IMPLICIT_LE)]
        if len(contexts) > room:  # pragma: no cover - the lists above are sized to fit
            raise AssertionError("default storage contexts do not fit")
        return [
            ContextGroup(frozenset(_DEFAULT_IMAGE_CLASSES + _DEFAULT_OTHER_CLASSES), tuple(contexts), True)
        ]
    for syntaxes in (RICH_SYNTAXES, CORE_SYNTAXES, BASIC_SYNTAXES):
        if len(classes) * len(syntaxes) <= room:
            return [_group(classes, syntaxes)]
    per = room // len(BASIC_SYNTAXES)
    return [_group(classes[i : i + per], BASIC_SYNTAXES) for i in range(0, len(classes), per)]


def _group(classes: Sequence[str], syntaxes: Sequence[str]) -> ContextGroup:
    return ContextGroup(frozenset(classes), tuple((c, (ts,)) for c in classes for ts in syntaxes))


# --------------------------------------------------------------------------------------------
# Units of work
# --------------------------------------------------------------------------------------------


# Unit (one C-GET or C-MOVE request) lives with the plan that makes the units (retrieve_plan).


@dataclass(eq=False)
class WorkerOutcome:
    """What one association's worth of units did: ``error`` ends the worker early."""

    error: BaseException | None = None
    units_done: int = 0
    suboperation_failures: int = 0
    associations: int = 0
    warnings: list[str] = field(default_factory=list)
    #: Per unit of one series whose instances are not known (none listed), the instances it
    #: brought that were answered success and then not stored (a failed transaction of
    #: several): what asking again can bring, as an image-level unit of their own.
    unstored: list[Unit] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# C-MOVE destination
# --------------------------------------------------------------------------------------------


def move_setup_hint(node: RemoteNode, ae_title: str, host: str, port: int) -> str:
    """What to configure on the PACS so that it can send to our listener, in words a user can
    paste: the README's line for each PACS it names (Orthanc ``DicomModalities``, dcm4chee-arc's
    AE list, DCMTK ``HostTable`` and ``AETable``), one line each."""
    return (
        f"Configure {node.label} with a DICOM node (modality) for us: AE title {ae_title}, "
        f"host {host}, port {port}, allowed to receive C-STORE:\n"
        f'  Orthanc: add "dicomplus": ["{ae_title}", "{host}", {port}] to DicomModalities and restart it\n'
        f"  dcm4chee-arc: Configuration > AE list > New AE: AE title {ae_title}, hostname {host}, port {port} "
        "(an external, non-archive AE)\n"
        f"  DCMTK dcmqrscp: add 'dicomplus = ({ae_title}, {host}, {port})' to its HostTable and dicomplus to "
        "the peers of its AETable line\n"
        "Or retrieve with C-GET (--method get), which needs nothing configured on the PACS."
    )


_LISTENERS: dict[tuple, list] = {}  # key -> [Listener, users]
_LISTENERS_LOCK = threading.Lock()


@contextlib.contextmanager
def move_listener(
    db: DatabaseProtocol, listener: Listener | None, config: ListenerConfig | None, ae_title: str
):
    """The listener a C-MOVE sends to: the one given (started if needed), else one started for
    the retrieve on ``config`` (default: our AE title on port 11112) and shared by the retrieves
    of this process that need the same one; stopped when the last of them ends."""
    from DICOMPlusLib.network.listener import Listener, ListenerConfig

    if listener is not None:
        mine = Path(listener.db.path).resolve()
        if mine != Path(db.path).resolve():
            raise RetrieveError(
                f"the listener given stores into {listener.db.path}, not into {db.path}: give a listener of "
                "the same database"
            )
        started = not listener.running
        if started:
            listener.start()
        try:
            yield listener
        finally:
            if started:
                listener.stop(timeout=1.0)
        return
    cfg = config or ListenerConfig(ae_title=ae_title, port=DEFAULT_PORT)
    key = (str(Path(db.path).resolve()), cfg.host, cfg.port, cfg.ae_title)
    with _LISTENERS_LOCK:
        entry = _LISTENERS.get(key)
        if entry is None:
            try:
                entry = [Listener(db, cfg).start(), 0]
            except NetworkError as exc:
                raise RetrieveError(
                    f"cannot start our C-MOVE destination (listener {cfg.ae_title} on port {cfg.port}): {exc}"
                ) from None
            if not cfg.port:
                key = (*key[:2], entry[0].port, key[3])
            _LISTENERS[key] = entry
        entry[1] += 1
    try:
        yield entry[0]
    finally:
        with _LISTENERS_LOCK:
            entry[1] -= 1
            if entry[1] == 0:
                _LISTENERS.pop(key, None)
                entry[0].stop(timeout=1.0)


def advertised_host(listener: Listener, assoc: qrscu.QRAssociation | None) -> str:
    """The host the PACS must use for our listener: its bound address, else the address we
    reach the PACS from."""
    host = listener.config.host
    if host and host not in ("0.0.0.0", "::"):
        return host
    local = assoc.local_address if assoc is not None else ""
    return local or "127.0.0.1"


def check_listener(listener: Listener, calling_ae: str, timeout: float = 5.0) -> None:
    """Pre-flight: our listener answers C-ECHO (the direction the PACS will use)."""
    from DICOMPlusLib.network.echo_dimse import echo_dimse as echo
    from DICOMPlusLib.network.echo_models import EchoProblem

    host = listener.config.host if listener.config.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    me = RemoteNode("listener", DimseEndpoint(listener.config.ae_title, host, listener.port))
    result = echo(me, calling_ae_title=calling_ae, timeout=timeout)
    if not result.ok and result.problem is not EchoProblem.REJECTED_CALLING_AE:  # that one answers: alive
        raise RetrieveError(f"our C-MOVE destination {me.address} does not answer C-ECHO: {result.message}")


def echo_on(assoc: qrscu.QRAssociation) -> str:
    """Pre-flight: C-ECHO on the retrieve association when the PACS accepted Verification; an
    empty string when it answered (or offers no Verification), else the problem."""
    if assoc.context_for(ul.VERIFICATION) is None:
        return ""
    try:
        status = assoc.assoc.echo()
    except (NetworkError, OSError) as exc:
        return f"C-ECHO failed: {exc}"
    return "" if status == 0 else f"C-ECHO answered 0x{status:04X}"


# --------------------------------------------------------------------------------------------
# Shared state of one retrieve, and the workers
# --------------------------------------------------------------------------------------------


def present_in_db(db: DatabaseProtocol, sops: Iterable[str]) -> set[str]:
    """The SOP instances of ``sops`` the database holds."""
    return db.present(sops)


class RunState:
    """What the workers of one retrieve share: the report (under a lock), progress, cancel."""

    def __init__(self, node: RemoteNode, db: DatabaseProtocol, report, *, calling_ae: str, progress, cancel,
                 timeout: float, grace: float, present_before: set[str], expected: set[str]) -> None:  # fmt: skip
        self.node = node
        self.db = db
        self.report = report
        self.calling_ae = calling_ae
        self.progress = progress
        self.cancel = cancel
        self.timeout = timeout
        self.grace = grace
        self.present_before = present_before
        self.expected = expected
        self.lock = threading.Lock()
        self.done: set[str] = set()
        self.message_ids: set[int] = set()
        self.total_hint = 0  # from sub-operation counts when the plan is unknown
        self.preflight_done = False
        self.move_host = ""
        self.plan: Plan | None = None
        #: A deferred plan's C-GETs: (final response, the instances it brought) per unit done.
        self.counted: list[tuple[qrscu.Response, list, int | None]] = []
        self.unit_totals: dict[int, int] = {}  # a deferred plan's C-GETs: their sub-operation totals
        self._space_failures = db.ingest.space_failures
        #: What a C-GET or C-MOVE looks at to send C-CANCEL: the caller's cancel, or a full disk.
        self.stop = _StopWhenFull(self)
        #: Receives the C-GETs of several associations from one thread (set while they run).
        self.pump: ReceivePump | None = None
        self._sink: DatabaseSink | None = None
        #: The instances answered success whose commit failed because the database server was
        #: away (a lost session, a refused connection), since :meth:`take_lost`: asked for again.
        self._lost: set[str] = set()

    @property
    def sink(self) -> DatabaseSink:
        """What stores the instances of the C-GETs: one for the whole retrieve, whose
        associations and attempts share what it learns (a transaction of several instances that
        failed: it then commits each alone, and what is asked for again fails alone)."""
        with self.lock:
            if self._sink is None:
                from DICOMPlusLib.database.ingest import IngestSource
                from DICOMPlusLib.network.dimse.receive import DatabaseSink  # not storage's: no Notifier

                # Arrivals are announced to the subscribers of a listener over this database (Notifier.attach).
                self._sink = DatabaseSink(self.db, source=IngestSource.C_GET)
            return self._sink

    @property
    def commits_alone(self) -> bool:
        """Whether a transaction of several received instances failed: the sink commits each
        alone since, so that asking again for those instances fails only the one at fault."""
        return self._sink is not None and self._sink.one_at_a_time

    @property
    def disk_full(self) -> bool:
        """Whether a write into the database's store or index found no room since the retrieve
        began: not a transient failure, so no request goes out after it and none is retried."""
        return self.db.ingest.space_failures > self._space_failures

    # -- accounting ----------------------------------------------------------------------------
    def stored(self, sop: str, ok: bool = True, reason: str = "") -> None:
        with self.lock:
            if ok:
                if sop in self.done:
                    return
                self.done.add(sop)
                self.report.done.append(sop)
                self.report.failed.pop(sop, None)
            elif sop not in self.done:
                self.report.failed[sop] = reason
            count = len(self.report.done) + len(self.report.skipped)
            total = self._total(count)
        if self.progress is not None:
            self.progress(count, total, sop)

    def _total(self, count: int) -> int:
        """The total to report beside ``count``: 0 (unknown) until the plan or a pending
        response gave one. Orthanc sends a C-GET's first C-STORE before its first pending
        response: a total of ``count`` then would say "1 of 1 (100%)"."""
        known = max(self.report.expected, self.total_hint)
        return max(known, count) if known else 0

    def on_stored(self, sop: str, outcome) -> None:
        if outcome.status == 0 and outcome.instance is not None:
            self.stored(outcome.instance.sop_instance_uid)
        elif outcome.answered:  # a C-GET's sub-operation: answered success, then its commit failed
            if outcome.transient:
                with self.lock:
                    self._lost.add(sop)
            self.stored(sop, False, f"received, then not stored here: {outcome.comment}")
        else:
            self.stored(sop, False, f"refused here: 0x{outcome.status:04X} {outcome.comment}".strip())

    def take_lost(self) -> set[str]:
        """The instances whose commit failed because the database was away since the last call
        (not those stored since, by another association)."""
        with self.lock:
            lost, self._lost = self._lost - self.done, set()
        return lost

    def on_pending(self, response: qrscu.Response, base: int | None = None) -> None:
        """A pending C-GET/C-MOVE response: its counts set the total when the plan is unknown,
        and (C-MOVE, ``base`` = instances done before the request) move the progress on before
        our listener's notifications do."""
        subs = response.suboperations
        with self.lock:
            if subs.total and not self.report.expected:
                self.total_hint = max(self.total_hint, len(self.report.done) + subs.total)
            if base is None:
                return
            count = max(len(self.report.done), base + subs.completed + subs.warning) + len(
                self.report.skipped
            )
            total = self._total(count)
        if self.progress is not None:
            self.progress(count, total, "")

    def on_get_pending(self, key: int, response: qrscu.Response) -> None:
        """A pending response of a deferred plan's C-GET: the total is the sum of every
        request's sub-operations (the instances they match)."""
        total = response.suboperations.total
        if total:
            with self.lock:
                self.unit_totals[key] = total
                self.total_hint = sum(self.unit_totals.values())

    def matches_arrival(self, instance) -> bool:
        if instance.sop_instance_uid in self.expected:
            return True
        return (
            instance.move_originator_aet == self.calling_ae
            and instance.move_originator_message_id in self.message_ids
        )

    def on_arrival(self, instance) -> None:
        self.stored(instance.sop_instance_uid)

    def collect_from_db(self, unit: Unit) -> int:
        """After a C-MOVE's final response: every instance of the unit that is now in the
        database (our listener stores before it answers) and was not there before."""
        candidates = [s for s in unit.expected if s not in self.present_before and s not in self.done]
        found = present_in_db(self.db, candidates) if candidates else set()
        for sop in unit.expected:
            if sop in found:
                self.stored(sop)
        with self.lock:
            return sum(1 for s in unit.expected if s in self.done)

    def record_final(self, what: str, unit: Unit, response: qrscu.Response, out: WorkerOutcome) -> None:
        """Sub-operation failures and warnings of a final response into the report."""
        status = response.status
        subs = response.suboperations
        if status == Status.CANCEL or status == 0:
            return
        reason = f"{what} sub-operation failed (final status 0x{status:04X}: {describe(status, 'qr')})"
        failed = response.failed_sop_instances
        out.suboperation_failures += subs.failed + subs.warning or len(failed) or 1
        for sop in failed:
            self.stored(sop, False, reason)
        if response.comment:
            out.warnings.append(f"{what} of {unit.describe()}: {response.comment}")


class _StopWhenFull:
    """Cancelled when the retrieve is, or once an instance found no room in our store (a C-GET's
    own sub-operation or one our listener took for a C-MOVE): the PACS would send the rest of
    the request only to have each refused 0xA700, so the operation is asked to stop (C-CANCEL,
    PS3.4 C.4.2.3.1 and C.4.3.3.1) and what was stored is kept."""

    __slots__ = ("state",)

    def __init__(self, state: RunState) -> None:
        self.state = state

    @property
    def cancelled(self) -> bool:
        return self.state.cancel.cancelled or self.state.disk_full

    @property
    def halted(self) -> bool:
        """A second Ctrl-C: no grace for the final response (``cancel.halted``)."""
        return halted(self.state.cancel)


def _open(state: RunState, contexts, roles=None) -> qrscu.QRAssociation:
    node = state.node
    tls = node.tls_settings.client_context(node.host) if node.tls else None
    return qrscu.open_association(node.host, node.port, called_ae=node.ae_title, calling_ae=state.calling_ae,
                                  contexts=contexts, roles=roles, tls=tls, timeout=state.timeout,
                                  cancel=state.cancel)  # fmt: skip


def _failed_without_data(state: RunState, what: str, unit: Unit, response: qrscu.Response) -> str:
    comment = f" ({response.comment})" if response.comment else ""
    return (
        f"{state.node.name} ({state.node.address}) answered the {what} of {unit.describe()} with "
        f"0x{response.status:04X}: {describe(response.status, 'qr')}{comment}"
    )


def run_get(state: RunState, units: Sequence[Unit], group: ContextGroup, slot) -> WorkerOutcome:
    """C-GET ``units`` over one association whose storage contexts are ``group``'s."""
    out = WorkerOutcome()
    contexts = [(qrscu.STUDY_ROOT_GET, qrscu.UNCOMPRESSED), (ul.VERIFICATION, qrscu.UNCOMPRESSED)]
    contexts += [(c, list(ts)) for c, ts in group.contexts]
    roles = {c: (False, True) for c in group.sop_classes}
    sink = state.sink
    try:
        with slot:
            qa = _open(state, contexts, roles)
            out.associations += 1
            try:
                if qa.context_for(qrscu.STUDY_ROOT_GET) is None:
                    raise RetrieveError(
                        f"{state.node.address} does not offer C-GET (Study Root) to us: retrieve with C-MOVE"
                    )
                if not any(qa.scp_role_accepted(c) and qa.context_for(c) for c in group.sop_classes):
                    if not state.done:
                        raise RetrieveError(
                            f"{state.node.address} refused to let us act as Storage SCP (SCP/SCU role "
                            "selection), which C-GET needs: retrieve with C-MOVE instead"
                        )
                    # it sends other classes: these ones it cannot (or will not) send by C-GET
                    reason = f"{state.node.name} accepts none of its SOP classes for C-GET (role or context refused)"
                    for unit in units:
                        for sop in unit.expected:
                            state.stored(sop, False, reason)
                    out.warnings.append(
                        reason.replace("its SOP classes", ", ".join(sorted(group.sop_classes)))
                    )
                    return out
                for unit in units:
                    if state.cancel.cancelled or state.disk_full:
                        break
                    arrived: list = []

                    def on_stored(sop: str, outcome, arrived=arrived) -> None:
                        if outcome.status == 0 and outcome.instance is not None:
                            arrived.append(outcome.instance)
                        state.on_stored(sop, outcome)

                    deferred = state.plan is not None and state.plan.deferred
                    unstored: list[str] = []
                    hear = on_stored if deferred else state.on_stored
                    if not unit.expected and len(unit.series) == 1:  # its instances not known

                        def hear(sop: str, outcome, unstored=unstored, heard=hear) -> None:
                            if outcome.answered and outcome.status != 0:
                                unstored.append(sop)
                            heard(sop, outcome)

                    response = qa.get(qrscu.STUDY_ROOT_GET, unit.identifier(), sink=sink,
                                      on_pending=(lambda r, k=id(arrived): state.on_get_pending(k, r))
                                      if deferred else state.on_pending,
                                      on_stored=hear,
                                      cancel=state.stop, grace=state.grace, pump=state.pump)  # fmt: skip
                    if unstored:  # asked for with the classes this request proposed
                        plan = state.plan
                        classes = unit.sop_classes or (
                            plan.guessed_classes if plan and deferred else frozenset()
                        )
                        sops = tuple(unstored)
                        out.unstored.append(Unit("IMAGE", unit.study, unit.series, sops, sops, classes))
                    if deferred:
                        with state.lock:
                            state.counted.append((response, arrived, state.unit_totals.get(id(arrived))))
                    if (
                        response.category == "failure"
                        and not deferred  # guessed classes: the C-FIND after it says which ones
                        and not response.suboperations.completed
                        and not any(s in state.done for s in unit.expected)
                    ):
                        raise RetrieveError(_failed_without_data(state, "C-GET", unit, response))
                    state.record_final("C-GET", unit, response, out)
                    out.units_done += 1
            finally:
                if qa.assoc.established:
                    qa.release(state.timeout)
    except (NetworkError, OSError) as exc:
        out.error = exc
    return out


def run_move(state: RunState, units: Sequence[Unit], listener: Listener, slot) -> WorkerOutcome:
    """C-MOVE ``units`` to ``listener`` over one association."""
    out = WorkerOutcome()
    destination = listener.config.ae_title
    contexts = [(qrscu.STUDY_ROOT_MOVE, qrscu.UNCOMPRESSED), (ul.VERIFICATION, qrscu.UNCOMPRESSED)]
    try:
        with slot:
            qa = _open(state, contexts)
            out.associations += 1
            try:
                if qa.context_for(qrscu.STUDY_ROOT_MOVE) is None:
                    raise RetrieveError(
                        f"{state.node.address} does not offer C-MOVE (Study Root) to us: retrieve with C-GET"
                    )
                with state.lock:
                    first = not state.preflight_done
                    state.preflight_done = True
                    if not state.move_host:
                        state.move_host = advertised_host(listener, qa)
                if first:
                    problem = echo_on(qa)
                    if problem:
                        raise RetrieveError(f"pre-flight check of {state.node.address} failed: {problem}")
                    check_listener(listener, state.calling_ae)
                hint = move_setup_hint(state.node, destination, state.move_host, listener.port)
                for unit in units:
                    if state.cancel.cancelled or state.disk_full:
                        break
                    mid = qa.next_message_id()
                    with state.lock:
                        state.message_ids.add(mid)
                        base = len(state.report.done)
                    response = qa.move(qrscu.STUDY_ROOT_MOVE, unit.identifier(), destination,
                                       on_pending=lambda r, b=base: state.on_pending(r, b),
                                       cancel=state.stop, grace=state.grace)  # fmt: skip
                    arrived = state.collect_from_db(unit)
                    if response.status == Status.MOVE_DESTINATION_UNKNOWN:
                        raise MoveDestinationUnknown(
                            f"{state.node.name} ({state.node.address}) does not know the move destination "
                            f"{destination} (status 0xA801).\n{hint}"
                        )
                    if (
                        response.category == "failure"
                        and not arrived
                        and not response.suboperations.completed
                    ):
                        raise MoveDestinationUnknown(
                            _failed_without_data(state, "C-MOVE", unit, response)
                            + f", and nothing arrived at our listener {destination} on port {listener.port}. "
                            "The most likely cause: the PACS does not know our AE title as a move destination "
                            "(Orthanc answers 0xC000 then), or cannot connect to us (firewall, wrong host or "
                            f"port in its configuration).\n{hint}"
                        )
                    state.record_final("C-MOVE", unit, response, out)
                    out.units_done += 1
            finally:
                if qa.assoc.established:
                    qa.release(state.timeout)
    except (NetworkError, OSError) as exc:
        out.error = exc
    return out
