"""Notifications of received instances: a :class:`Notifier` attached to a database's ingest (a
listener's, a Q/R SCP's) turns each stored instance into a :class:`ReceivedInstance` on its own
thread, never the network thread, and reports series that went idle (:class:`SeriesComplete`).

The receiving path itself (C-STORE data set -> ingest) is :mod:`DICOMPlusLib.network.dimse.receive`;
its names are re-exported here for the services that use both.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.network.dimse.receive import (  # noqa: F401  (re-exported)
    DatabaseSink,
    IncomingFile,
    ReceivedInstance,
    ReceiveMeta,
    StoreOutcome,
    file_meta_bytes,
    received_instance,
    valid_uid_text,
)
from DICOMPlusLib.uninterrupted import uninterrupted

if TYPE_CHECKING:
    from DICOMPlusLib.database.ingest import Sink, StoredInstance

logger = get_logger(__name__)


# --------------------------------------------------------------------------------------------
# Notifications
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesComplete:
    """No instance of the series arrived for the listener's idle time (or the listener stopped):
    a good moment to load it. ``count`` is how many distinct instances arrived in this burst;
    ``resent``, how many copies of those arrived again (the same SOP Instance UID)."""

    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    count: int
    calling_ae: str
    first_at: float
    last_at: float
    reason: str = "idle"  # or "stopped"
    resent: int = 0


@dataclass
class Subscription:
    """Callbacks registered with a :class:`Notifier`; ``close()`` unsubscribes."""

    on_instance: Callable[[ReceivedInstance], object] | None = None
    on_series_complete: Callable[[SeriesComplete], object] | None = None
    match: Callable[[ReceivedInstance], bool] | None = None
    notifier: Notifier | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class _Burst:
    """The instances of one series received close together, until the series is announced."""

    study: str
    patient: str
    calling_ae: str
    first: float
    last: float
    #: The distinct instances of the burst: a sender that sends one again (a retry after a
    #: timeout, a study pushed twice) must not make the series look bigger than it is.
    sops: set[str] = field(default_factory=set)
    received: int = 0


class Notifier:
    """Delivers notifications on one thread of its own, in arrival order.

    Callbacks never run on a network thread, so a slow callback (a GUI hand-off, a loader)
    cannot delay C-STORE responses; an exception in a callback is logged and ignored. A series
    is reported complete when no instance of it arrived for ``series_idle`` seconds, and for
    every series still open when the notifier stops.
    """

    def __init__(self, series_idle: float = 5.0) -> None:
        self.series_idle = series_idle
        self._queue: queue.Queue = queue.Queue()
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()
        self._bursts: dict[str, _Burst] = {}
        self._thread: threading.Thread | None = None

    def subscribe(
        self,
        on_instance: Callable[[ReceivedInstance], object] | None = None,
        on_series_complete: Callable[[SeriesComplete], object] | None = None,
        *,
        match: Callable[[ReceivedInstance], bool] | None = None,
    ) -> Subscription:
        """Register callbacks; ``match`` limits ``on_instance`` to the instances it accepts
        (e.g. those whose ``move_originator_message_id`` is our C-MOVE's)."""
        sub = Subscription(on_instance, on_series_complete, match, self)
        with self._lock:
            self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)

    def publish(self, instance: ReceivedInstance) -> None:
        self._queue.put(instance)

    def attach(self, sink: Sink) -> Callable[[], None]:
        """Announce the instances that arrive over DICOM (C-STORE: listener, C-MOVE, C-GET) into
        ``sink``'s database, whichever association brought them; returns the detach."""

        def on_ingested(result: StoredInstance, context: object) -> None:
            if isinstance(context, ReceiveMeta):
                self.publish(received_instance(result, context))

        return sink.subscribe(on_ingested)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dicomplus-notifier", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, report open series as complete (reason "stopped"), end.

        ``uninterrupted``: a Ctrl-C meanwhile (the last of a ``listen`` stopped at once) waits
        for the last notifications (milliseconds), then goes on up. Raised inside the queue's
        lock it left the lock held, the notifier blocked on it; inside ``Thread.join`` it left
        the stop while the notifier was still delivering: the last series were never reported."""
        if self._thread is not None:
            with uninterrupted:
                self._queue.put(None)
                self._thread.join(timeout)
                self._thread = None

    def _run(self) -> None:
        while True:
            timeout = None
            if self._bursts:
                oldest = min(b.last for b in self._bursts.values())
                timeout = max(0.0, oldest + self.series_idle - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = ...
            if item is None:
                self._flush(time.monotonic(), everything=True)
                return
            if isinstance(item, ReceivedInstance):
                self._deliver(item)
            self._flush(time.monotonic(), everything=False)

    def _deliver(self, instance: ReceivedInstance) -> None:
        now = time.monotonic()
        burst = self._bursts.get(instance.series_instance_uid)
        if burst is None:
            burst = _Burst(instance.study_instance_uid, instance.patient_id, instance.calling_ae, now, now)
            self._bursts[instance.series_instance_uid] = burst
        burst.last = now
        burst.sops.add(instance.sop_instance_uid)
        burst.received += 1
        with self._lock:
            subs = list(self._subscriptions)
        for sub in subs:
            if sub.on_instance is None:
                continue
            try:
                if sub.match is None or sub.match(instance):
                    sub.on_instance(instance)
            except Exception:
                logger.exception("instance notification callback failed")

    def _flush(self, now: float, everything: bool) -> None:
        done = [uid for uid, b in self._bursts.items() if everything or now - b.last >= self.series_idle]
        if not done:
            return
        with self._lock:
            subs = list(self._subscriptions)
        wall = time.time()
        for uid in done:
            b = self._bursts.pop(uid)
            event = SeriesComplete(
                series_instance_uid=uid,
                study_instance_uid=b.study,
                patient_id=b.patient,
                count=len(b.sops),
                calling_ae=b.calling_ae,
                first_at=wall - (now - b.first),
                last_at=wall - (now - b.last),
                reason="stopped" if everything and now - b.last < self.series_idle else "idle",
                resent=b.received - len(b.sops),
            )
            for sub in subs:
                if sub.on_series_complete is None:
                    continue
                try:
                    sub.on_series_complete(event)
                except Exception:
                    logger.exception("series notification callback failed")
