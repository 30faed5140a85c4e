"""C-STORE SCU (PS3.4 Annex B): send files to a node's DIMSE endpoint.

One association carries many files. Its presentation contexts come from the files' own SOP
classes and transfer syntaxes (PS3.8 9.3.2.2): each (SOP class, transfer syntax) pair gets a
context of its own, so the peer can accept the file as it is and its bytes go on the wire
unchanged; a second context per SOP class offers the uncompressed syntaxes, used only when the
peer refuses the original (the file is then decoded and re-encoded). At most 128 contexts fit
in one association: more SOP classes are split over several associations. ``parallel`` opens
that many associations at once. Each file gets its own status in the
:class:`~DICOMPlusLib.network.send_models.SendReport`; failures that may be transient (no response,
lost association, 0xA7xx out of resources) are retried ``retries`` times; a
:class:`~DICOMPlusLib.jobs.CancelToken` stops between files.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from functools import partial
from typing import BinaryIO

from DICOMPlusLib import uids
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.cancel import run_threads
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import AssociationFailure, CancelledError, NetworkError, SendError
from DICOMPlusLib.jobs import CancelToken, ProgressCallback
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import scu, ul
from DICOMPlusLib.network.dimse.status import Status, describe
from DICOMPlusLib.network.dimse.status import category as status_category
from DICOMPlusLib.network.nodes import RemoteNode, check_ae_title
from DICOMPlusLib.network.send_models import FileResult, SendItem, SendOptions, SendReport

logger = get_logger(__name__)

EXPLICIT_LE = uids.ExplicitVRLittleEndian
IMPLICIT_LE = uids.ImplicitVRLittleEndian
UNCOMPRESSED = (EXPLICIT_LE, IMPLICIT_LE)
MAX_CONTEXTS = 128


def data_set_offset(head: bytes) -> int:
    """Where the data set starts in a file beginning with ``head`` (0 for a file without file
    meta): :func:`DICOMPlusLib.database.headerscan.data_set_offset`, which serve's
    ``qrscp_wire`` uses too; SendError when the meta cannot be walked within ``head``."""
    from DICOMPlusLib.database.headerscan import data_set_offset as walk_meta

    offset = walk_meta(head)
    if offset is None:
        raise SendError("the file meta information is longer than expected or of undefined length")
    return offset


# --------------------------------------------------------------------------------------------
# Planning associations
# --------------------------------------------------------------------------------------------


def contexts_for(items: Sequence[SendItem]) -> list[tuple[str, list[str]]]:
    """Presentation contexts for ``items``: one per (SOP class, transfer syntax), plus one per
    SOP class with the uncompressed syntaxes not proposed on their own (conversion fallback)."""
    by_class: dict[str, list[str]] = {}
    for item in items:
        syntaxes = by_class.setdefault(item.sop_class_uid, [])
        if item.transfer_syntax not in syntaxes:
            syntaxes.append(item.transfer_syntax)
    contexts: list[tuple[str, list[str]]] = []
    for sop_class, syntaxes in by_class.items():
        contexts.extend((sop_class, [ts]) for ts in syntaxes)
        fallback = [ts for ts in UNCOMPRESSED if ts not in syntaxes]
        if fallback:
            contexts.append((sop_class, fallback))
    return contexts


def split_by_contexts(items: Sequence[SendItem], limit: int = MAX_CONTEXTS) -> list[list[SendItem]]:
    """Groups of items whose contexts fit in one association each (PS3.8: at most 128)."""
    by_class: dict[str, list[SendItem]] = {}
    for item in items:
        by_class.setdefault(item.sop_class_uid, []).append(item)
    groups: list[list[SendItem]] = []
    current: list[SendItem] = []
    used = 0
    for members in by_class.values():
        need = len(contexts_for(members))
        if need > limit:
            raise SendError(
                f"SOP class {members[0].sop_class_uid} needs {need} presentation contexts (> {limit})"
            )
        if used + need > limit and current:
            groups.append(current)
            current, used = [], 0
        current.extend(members)
        used += need
    if current:
        groups.append(current)
    return groups


# --------------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------------


def _convert(path: str, transfer_syntax: str) -> bytes:
    """Decode a file and encode its data set in an uncompressed transfer syntax."""
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(path)
    if (
        ds.file_meta.get("TransferSyntaxUID")
        and pydicom.uid.UID(ds.file_meta.TransferSyntaxUID).is_compressed
    ):
        ds.decompress()
    buf = DicomBytesIO()
    buf.is_little_endian = True
    buf.is_implicit_VR = transfer_syntax == IMPLICIT_LE
    write_dataset(buf, ds)
    return buf.getvalue()


#: The read buffer each sender reuses for its files (a file's first block is read into it).
_BUFFER = 1 << 20


@dataclass
class _Ready:
    """A file's C-STORE-RQ read and framed, not yet sent; ``file`` still open when the file is
    larger than the first block."""

    item: SendItem
    attempt: int
    message: scu.PreparedStore
    file: BinaryIO | None
    converted: bool = False

    def result(self, category: str, status: int | None, message: str) -> FileResult:
        item = self.item
        return FileResult(
            item.path, item.sop_instance_uid, category, status, message, self.attempt, self.converted
        )

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class _Worker:
    """Sends a list of items over one association (reconnecting if it breaks)."""

    def __init__(self, node: RemoteNode, options: dict, cancel: CancelToken, record) -> None:
        self.node = node
        self.options = options
        self.cancel = cancel
        self._record = record  # callback(FileResult)
        self._recorded: set[tuple[str, str]] = set()
        self.associations = 0
        self._buffer: bytearray | None = None

    def record(self, result: FileResult) -> None:
        self._recorded.add((result.path, result.sop_instance_uid))
        self._record(result)

    def run_safely(self, items: Sequence[SendItem], attempt: int) -> None:
        """:meth:`run`, turning an unexpected error into failures of the files not done."""
        try:
            self.run(items, attempt)
        except Exception as exc:
            logger.exception("send worker failed")
            for item in items:
                if (item.path, item.sop_instance_uid) not in self._recorded:
                    self.record(
                        FileResult(
                            item.path, item.sop_instance_uid, "failure", None, f"error: {exc}", attempt
                        )
                    )

    def _associate(self, items: Sequence[SendItem]) -> scu.ClientAssociation:
        endpoint, o = self.node.require_dimse(), self.options
        self.associations += 1
        return scu.associate(
            endpoint.host,
            endpoint.port,
            called_ae=endpoint.ae_title,
            calling_ae=o["calling_ae_title"],
            contexts=contexts_for(items),
            tls=endpoint.tls_context(),
            connect_timeout=o["timeout"],
            acse_timeout=o["timeout"],
            dimse_timeout=o["dimse_timeout"],
            max_pdu=o["max_pdu"],
            cancel=self.cancel,
        )

    def run(self, items: Sequence[SendItem], attempt: int) -> None:
        pending = list(items)
        fruitless = 0  # associations in a row that broke before storing anything
        while pending:
            if self.cancel.cancelled:
                return
            try:
                assoc = self._associate(pending)
            except CancelledError:  # Ctrl-C while connecting: the files not sent are "cancelled"
                return
            except scu.AssociationFailed as exc:
                # A permanent rejection (our AE title unknown there, say) would only be rejected
                # again: "not sent" is never retried (_retryable).
                permanent = exc.kind is AssociationFailure.REJECTED and exc.result == ul.RJ_PERMANENT
                message = f"not sent: {exc}" if permanent else str(exc)
                for item in pending:
                    self.record(
                        FileResult(item.path, item.sop_instance_uid, "failure", None, message, attempt)
                    )
                return
            broken, stored = False, 0
            try:
                broken, stored = self._send_all(assoc, pending, attempt)
            except KeyboardInterrupt:  # a second Ctrl-C in the main thread: the peer gets an A-ABORT
                assoc.abort()
                raise
            finally:
                if assoc.established:
                    assoc.release(self.options["timeout"])
            if not broken:
                return
            fruitless = 0 if stored else fruitless + 1
            if fruitless > self.options["reconnects"]:
                for item in pending:
                    message = "not sent: the peer ended every association without storing anything"
                    self.record(
                        FileResult(item.path, item.sop_instance_uid, "failure", None, message, attempt)
                    )
                return

    def _send_all(
        self, assoc: scu.ClientAssociation, pending: list[SendItem], attempt: int
    ) -> tuple[bool, int]:
        """Send ``pending`` (taking off it the items done) until it is empty, cancelled or the
        association breaks; (broken, files stored). While the peer stores one file the next one
        is read and framed (:meth:`_prepare`), so that its first bytes go out as soon as the
        response comes: still one C-STORE outstanding at a time (PS3.7 10.1: storescp negotiates
        no asynchronous operations), and the same bytes on the wire. A file read ahead but not
        sent (the association broke, or a cancel came) goes back to the front of ``pending``."""
        stored = 0
        ahead: _Ready | FileResult | None = None
        while True:
            if ahead is None:
                if not pending or self.cancel.cancelled:
                    return False, stored
                ahead = self._prepare(assoc, pending[0], attempt)
            pending.pop(0)
            if isinstance(ahead, FileResult):
                self.record(ahead)
                ahead = None
                continue
            current, ahead = ahead, None
            result, alive = self._transmit(assoc, current)
            if alive and pending and not self.cancel.cancelled:
                ahead = self._prepare(assoc, pending[0], attempt)  # while the peer stores ``current``
            if result is None and alive:
                result, alive = self._response(assoc, current)
            if result is not None:  # None: cancelled before the peer had it all (not sent)
                self.record(result)
                stored += result.category in ("success", "warning")
            if ahead is not None and (not alive or self.cancel.cancelled):
                if isinstance(ahead, _Ready):
                    ahead.close()
                ahead = None  # its item is still pending[0]
            if not alive:
                return True, stored

    def _prepare(self, assoc: scu.ClientAssociation, item: SendItem, attempt: int) -> _Ready | FileResult:
        """The item's C-STORE-RQ read and framed, or its result when it cannot be sent (that
        leaves the association as it was)."""

        def failure(message: str) -> FileResult:
            return FileResult(item.path, item.sop_instance_uid, "failure", None, message, attempt)

        if not uids.valid_uid_text(item.sop_instance_uid) or not uids.valid_uid_text(item.sop_class_uid):
            return failure("not sent: invalid SOP Class or Instance UID (more than 64 characters?)")
        cx = assoc.find_context(item.sop_class_uid, [item.transfer_syntax])
        if cx is not None:
            try:
                f = open(item.path, "rb", buffering=0)
            except OSError as exc:
                return failure(f"cannot read: {exc.strerror or exc}")
            try:
                offset = data_set_offset(f.read(4096))
                size = os.fstat(f.fileno()).st_size
                f.seek(offset)
                if self._buffer is None:
                    self._buffer = bytearray(_BUFFER)
                message = assoc.prepare_store(
                    cx, item.sop_instance_uid, f, size - offset, buffer=self._buffer
                )
            except (OSError, SendError) as exc:
                f.close()
                return failure(f"cannot read: {getattr(exc, 'strerror', None) or exc}")
            return _Ready(item, attempt, message, f)
        cx = assoc.find_context(item.sop_class_uid, UNCOMPRESSED)
        if cx is None:
            return failure(f"the peer accepted no presentation context for SOP class {item.sop_class_uid}")
        try:
            data = _convert(item.path, cx.transfer_syntax)
        except Exception as exc:
            return failure(
                f"the peer refused transfer syntax {item.transfer_syntax} and the file cannot be converted: {exc}"
            )
        return _Ready(
            item, attempt, assoc.prepare_store(cx, item.sop_instance_uid, data), None, converted=True
        )

    def _transmit(self, assoc: scu.ClientAssociation, ready: _Ready) -> tuple[FileResult | None, bool]:
        """Send a prepared message: (None, True) once on the wire, else its failure and False;
        (None, False) when cancelled while the peer was not reading it (the association is
        aborted; the peer cannot have stored part of a message, so the file stays "not sent")."""
        try:
            assoc.send_prepared(ready.message)
        except CancelledError:
            return None, False
        except NetworkError as exc:
            return ready.result("failure", None, f"association lost: {exc}"), False
        except OSError as exc:  # the file changed while being sent: the message is broken
            assoc.abort()
            return ready.result("failure", None, f"cannot read: {exc.strerror or exc}"), False
        finally:
            ready.close()
        return None, True

    def _response(self, assoc: scu.ClientAssociation, ready: _Ready) -> tuple[FileResult, bool]:
        """The sent file's result from the peer's response (False: the association is lost)."""
        try:
            response = assoc.response_to(ready.message)
        except NetworkError as exc:
            return ready.result("failure", None, f"association lost: {exc}"), False
        except CancelledError:  # the peer took the file and has not answered: aborted, not waited for
            message = "cancelled before the peer answered (it may have stored it)"
            return ready.result("cancelled", None, message), False
        status = int(response.get(dimse.STATUS, -1))
        category = status_category(status).value
        if category not in ("success", "warning"):
            category = "failure"
        message = describe(status)
        comment = response.get(dimse.ERROR_COMMENT)
        if comment:
            message += f" ({comment})"
        return ready.result(category, status, message), True


def _retryable(r: FileResult) -> bool:
    if r.category != "failure" or r.message.startswith(
        ("not sent", "cannot read", "the peer refused", "the peer accepted no")
    ):
        return False
    return r.status is None or (r.status & 0xFF00) == Status.OUT_OF_RESOURCES


def send_dimse(
    node: RemoteNode,
    items: Sequence[SendItem],
    opts: SendOptions,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken,
    failures: Sequence[FileResult] = (),
) -> SendReport:
    """C-STORE ``items`` to the node's DIMSE endpoint; one result per item (and ``failures``
    found before sending, e.g. unreadable files). Never raises for a per-file problem."""
    parallel, retries = opts.parallel, opts.retries
    options = {
        "calling_ae_title": check_ae_title(opts.calling_ae_title, "calling AE title"),
        "timeout": opts.timeout,
        "dimse_timeout": opts.dimse_timeout,
        "max_pdu": opts.max_pdu,
        "reconnects": 2,
    }
    start = time.monotonic()
    report = SendReport(node=node.name)
    final: dict[int, FileResult] = {}
    by_key = {(item.path, item.sop_instance_uid): i for i, item in enumerate(items)}
    lock = threading.Lock()
    total = len(items) + len(failures)
    done = [len(failures)]

    def record(result: FileResult) -> None:
        with lock:
            i = by_key[(result.path, result.sop_instance_uid)]
            first = i not in final
            final[i] = result
            if first:
                done[0] += 1
                count = done[0]
            else:
                count = None
        if progress is not None and count is not None:
            progress(count, total, result.path)

    todo = list(items)
    attempt = 1
    while todo:
        groups = split_by_contexts(todo)
        chunks: list[list[SendItem]] = []
        for group in groups:
            n = max(1, min(parallel, len(group)))
            chunks.extend(group[i::n] for i in range(n))
        workers = [_Worker(node, options, cancel, record) for _ in chunks]
        if len(chunks) == 1 or parallel <= 1:
            for worker, chunk in zip(workers, chunks, strict=True):
                worker.run_safely(chunk, attempt)
        else:  # a second Ctrl-C waits for each to abort its association (run_threads)
            calls = [partial(w.run_safely, c, attempt) for w, c in zip(workers, chunks, strict=True)]
            run_threads(calls, cancel, "dicomplus-send")
        report.associations += sum(w.associations for w in workers)
        if cancel.cancelled or attempt > retries:
            break
        todo = [items[i] for i, r in sorted(final.items()) if _retryable(r)]
        if todo:
            attempt += 1
            logger.info("retrying %d file(s) (attempt %d)", len(todo), attempt)
            if cancel.wait(opts.retry_delay):
                break
    report.cancelled = cancel.cancelled
    results = list(failures)
    for i, item in enumerate(items):
        results.append(
            final.get(i) or FileResult(item.path, item.sop_instance_uid, "cancelled", None, "not sent")
        )
    report.results = results
    report.seconds = time.monotonic() - start
    return report
