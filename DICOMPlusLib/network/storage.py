"""Where received instances go: the managed store and the database, then notifications.

Every instance received by C-STORE (listener, sample PACS, a C-GET or C-MOVE retrieve) follows
one path, in this order, *before* the C-STORE response is sent (PS3.4 B.2.3: success means the
SCP has taken responsibility for the instance):

1. the Part 10 file (preamble, file meta built from the C-STORE request, PS3.10 7.1, and the
   data set bytes exactly as received) is streamed into a temporary file inside the store;
2. its header is parsed and the file is moved atomically into its final place, whose name is a
   hash of the SOP Instance UID (never the UID itself, never a name from the sender);
3. the index rows are committed (one transaction);
4. subscribers are told (on the notifier's own thread, never the network thread).

Out of disk space (or any write error) answers 0xA700 "Refused: Out of Resources" and leaves no
partial file; an unreadable data set answers 0xC000 "Error: Cannot understand".
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from DICOMPlusLib.errors import DatabaseError, DICOMPlusError
from DICOMPlusLib.network.dimse import ul
from DICOMPlusLib.network.dimse.status import Status

if TYPE_CHECKING:
    from DICOMPlusLib.database import Database

logger = logging.getLogger(__name__)

_SPACE_ERRORS = {getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name)}


@dataclass(frozen=True)
class ReceiveMeta:
    """What the C-STORE request and the association say about an incoming instance."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    calling_ae: str = ""
    called_ae: str = ""
    peer: str = ""  # "host:port"
    move_originator_aet: str = ""
    move_originator_message_id: int | None = None


@dataclass(frozen=True)
class ReceivedInstance:
    """An instance that is stored and indexed (the notification ``on_instance`` receives)."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    transfer_syntax: str
    path: str
    size: int
    status: str  # "added" or "replaced"
    calling_ae: str = ""
    peer: str = ""
    move_originator_aet: str = ""
    move_originator_message_id: int | None = None
    received_at: float = 0.0


@dataclass(frozen=True)
class SeriesComplete:
    """No instance of the series arrived for the listener's idle time (or the listener stopped):
    a good moment to load it. ``count`` is how many instances arrived in this burst."""

    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    count: int
    calling_ae: str
    first_at: float
    last_at: float
    reason: str = "idle"  # or "stopped"


@dataclass(frozen=True)
class StoreOutcome:
    status: int
    comment: str = ""
    instance: ReceivedInstance | None = None


def is_space_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _SPACE_ERRORS:
        return True
    return isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()


def _pad(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"UN"):
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def file_meta_bytes(meta: ReceiveMeta) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group (PS3.10 7.1) for a received data
    set, in Explicit VR Little Endian as PS3.10 requires."""
    elements = [
        _element(0x00020001, b"OB", b"\x00\x01"),
        _element(0x00020002, b"UI", _pad(meta.sop_class_uid.encode("ascii"), b"\0")),
        _element(0x00020003, b"UI", _pad(meta.sop_instance_uid.encode("ascii"), b"\0")),
        _element(0x00020010, b"UI", _pad(meta.transfer_syntax.encode("ascii"), b"\0")),
        _element(0x00020012, b"UI", _pad(ul.IMPLEMENTATION_CLASS_UID.encode("ascii"), b"\0")),
        _element(0x00020013, b"SH", _pad(ul.IMPLEMENTATION_VERSION_NAME.encode("ascii"), b" ")),
    ]
    if meta.calling_ae:
        elements.append(_element(0x00020016, b"AE", _pad(meta.calling_ae.encode("ascii", "replace"), b" ")))
    body = b"".join(elements)
    return bytes(128) + b"DICM" + _element(0x00020000, b"UL", struct.pack("<I", len(body))) + body


def valid_uid_text(value: str) -> bool:
    """A value we are willing to write into the file meta: at most 64 printable characters.
    (Not a conformance check: ``../../x`` passes, and is stored under a hashed name.)"""
    return 0 < len(value) <= 64 and all(32 < ord(c) < 127 for c in value)


class IncomingFile:
    """A temporary file inside the store being written by one association."""

    def __init__(self, sink: DatabaseSink, meta: ReceiveMeta) -> None:
        self.meta = meta
        self.sink = sink
        self.fd, self.path = sink.db.store.temporary_file()
        self.size = 0
        self.error: BaseException | None = None
        try:
            self.write(file_meta_bytes(meta))
        except BaseException:
            self.discard()
            raise

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.size += n

    def write_safely(self, data: bytes | memoryview) -> None:
        """Write, remembering (instead of raising) the first error: the rest of the message
        still has to be read off the connection before the failure can be answered."""
        if self.error is not None:
            return
        try:
            self.write(data)
        except OSError as exc:
            self.error = exc
            self._close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def _close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        self._close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def finish(self) -> StoreOutcome:
        return self.sink.finish(self)


class DatabaseSink:
    """Stores received instances in a :class:`Database` and tells a :class:`Notifier`."""

    def __init__(self, db: Database, notifier: Notifier | None = None, *, fsync: bool = False) -> None:
        self.db = db
        self.notifier = notifier
        self.fsync = fsync

    def begin(self, meta: ReceiveMeta) -> IncomingFile:
        """Open the temporary file (raises OSError when even that is impossible)."""
        return IncomingFile(self, meta)

    def refuse(self, exc: BaseException) -> StoreOutcome:
        if is_space_error(exc):
            return StoreOutcome(Status.OUT_OF_RESOURCES, "out of disk space")
        return StoreOutcome(Status.OUT_OF_RESOURCES, f"cannot write: {getattr(exc, 'strerror', None) or exc}")

    def store_bytes(self, meta: ReceiveMeta, data: bytes | memoryview) -> StoreOutcome:
        """The whole path for a data set received in memory (the pynetdicom engine)."""
        if not valid_uid_text(meta.sop_instance_uid) or not valid_uid_text(meta.sop_class_uid):
            return StoreOutcome(Status.CANNOT_UNDERSTAND, "invalid Affected SOP Class/Instance UID")
        try:
            incoming = self.begin(meta)
        except OSError as exc:
            return self.refuse(exc)
        incoming.write_safely(data)
        return self.finish(incoming)

    def finish(self, incoming: IncomingFile) -> StoreOutcome:
        """Parse, move into place, index, notify. Never raises; the outcome carries the status."""
        from DICOMPlusLib.database.database import DuplicatePolicy
        from DICOMPlusLib.database.parsing import parse_path

        if incoming.error is not None:
            return self.refuse(incoming.error)
        tmp = incoming.path
        try:
            if self.fsync:
                os.fsync(incoming.fd)
            incoming._close()
            parsed = parse_path(tmp, keep_data=False)
        except OSError as exc:
            incoming.discard()
            return self.refuse(exc)
        except DICOMPlusError as exc:
            incoming.discard()
            return StoreOutcome(Status.CANNOT_UNDERSTAND, f"cannot understand the data set: {exc}"[:64])
        except RecursionError:
            incoming.discard()
            logger.info("%s: data set of %s nested too deeply; answered 0xC000", incoming.meta.peer,
                        incoming.meta.sop_instance_uid)  # fmt: skip
            return StoreOutcome(Status.CANNOT_UNDERSTAND, "data set nested too deeply")
        except Exception as exc:  # a parser bug on one data set must not end the association
            incoming.discard()
            logger.exception("%s: cannot parse %s", incoming.meta.peer, incoming.meta.sop_instance_uid)
            return StoreOutcome(Status.CANNOT_UNDERSTAND, f"cannot understand the data set: {exc}"[:64])
        parsed.source = ""  # not an import: no source path to remember
        parsed.data = None
        parsed.stored_tmp = tmp
        sop = str(parsed.values["SOPInstanceUID"])
        try:
            statuses = self.db.commit_parsed([parsed], on_duplicate=DuplicatePolicy.REPLACE)
        except (OSError, sqlite3.Error, DatabaseError) as exc:
            self.cleanup_after_failed_commit(tmp, sop)
            logger.warning("cannot store received instance %s: %s", sop, exc)
            return self.refuse(exc)
        except BaseException:
            self.cleanup_after_failed_commit(tmp, sop)
            raise
        meta = incoming.meta
        values = parsed.values
        instance = ReceivedInstance(
            sop_instance_uid=sop,
            sop_class_uid=str(values.get("SOPClassUID") or meta.sop_class_uid),
            series_instance_uid=str(values["SeriesInstanceUID"]),
            study_instance_uid=str(values["StudyInstanceUID"]),
            patient_id=str(values.get("PatientID") or ""),
            transfer_syntax=parsed.transfer_syntax or meta.transfer_syntax,
            path=str(self.db.store.path_for(sop)),
            size=parsed.size,
            status=statuses[0] if statuses else "added",
            calling_ae=meta.calling_ae,
            peer=meta.peer,
            move_originator_aet=meta.move_originator_aet,
            move_originator_message_id=meta.move_originator_message_id,
            received_at=time.time(),
        )
        if self.notifier is not None:
            self.notifier.publish(instance)
        return StoreOutcome(Status.SUCCESS, "", instance)

    def cleanup_after_failed_commit(self, tmp: str, sop: str) -> None:
        """Remove the temporary file, or the file already moved into place when no committed
        row points to it: a failed commit leaves nothing behind."""
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        final = self.db.store.path_for(sop)
        try:
            row = self.db.reader().execute("SELECT 1 FROM instances WHERE path=?", (str(final),)).fetchone()
        except (sqlite3.Error, DatabaseError):
            row = True  # cannot tell: keep the file rather than lose a committed instance
        if row is None:
            with contextlib.suppress(OSError):
                final.unlink()


# --------------------------------------------------------------------------------------------
# Notifications
# --------------------------------------------------------------------------------------------


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
    study: str
    patient: str
    calling_ae: str
    first: float
    last: float
    count: int = 0


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

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dicomplus-notifier", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, report open series as complete (reason "stopped"), end."""
        if self._thread is not None:
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
        burst.count += 1
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
                count=b.count,
                calling_ae=b.calling_ae,
                first_at=wall - (now - b.first),
                last_at=wall - (now - b.last),
                reason="stopped" if everything and now - b.last < self.series_idle else "idle",
            )
            for sub in subs:
                if sub.on_series_complete is None:
                    continue
                try:
                    sub.on_series_complete(event)
                except Exception:
                    logger.exception("series notification callback failed")
