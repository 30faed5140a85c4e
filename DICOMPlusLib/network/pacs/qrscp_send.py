"""How the sample PACS sends a stored instance in a C-GET or C-MOVE sub-operation.

- When the association has a presentation context for the instance's SOP class in its stored
  transfer syntax, the stored bytes are sent as they are (pynetdicom streams the file after its
  File Meta Information): nothing is decoded or re-encoded, so group lengths, odd padding and
  private elements arrive byte for byte (PS3.4 C.4.2.3.1 and C.4.3.3.1 ask the SCP to send the
  stored SOP Instances).
- When the requester accepted only uncompressed transfer syntaxes for that class (DCMTK getscu
  by default, CTK), a losslessly compressed instance is decoded and sent in Explicit or
  Implicit VR Little Endian, with the same pixel values; the C-GET/C-MOVE responses then say so
  in their Error Comment. Lossy instances are never decompressed (the receiver could not tell
  the pixels had been through lossy compression from the transfer syntax); that sub-operation
  fails with the reason in the log.
- Otherwise pynetdicom picks the context (Explicit <-> Implicit VR conversion).

pynetdicom's C-GET/C-MOVE service yields each dataset to ``Association.send_c_store``; the
sender is installed on the association that carries the sub-operations (the C-GET association
itself, or the one pynetdicom opens to a C-MOVE destination) as an instance attribute, the way
pynetdicom itself swaps ``Association.abort`` while a handler runs.
"""

from __future__ import annotations

import threading
from pathlib import Path

from DICOMPlusLib import uids
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.errors import DecodeRefused

logger = get_logger(__name__)

EXPLICIT_LE = uids.ExplicitVRLittleEndian
IMPLICIT_LE = uids.ImplicitVRLittleEndian
#: Transfer syntaxes whose decoding gives back exactly the pixels that were encoded.
LOSSLESS = frozenset({
    uids.DeflatedExplicitVRLittleEndian,  # Deflated Explicit VR Little Endian
    uids.JPEGLossless,  # JPEG Lossless, Non-Hierarchical (Process 14)
    uids.JPEGLosslessSV1,  # JPEG Lossless, First-Order Prediction (Process 14 SV1)
    uids.JPEGLSLossless,  # JPEG-LS Lossless
    uids.JPEG2000Lossless,  # JPEG 2000 (Lossless Only)
    uids.HTJ2KLossless,  # HTJ2K (Lossless Only)
    uids.HTJ2KLosslessRPCL,  # HTJ2K with RPCL Options (Lossless Only)
    uids.RLELossless,  # RLE Lossless
})  # fmt: skip
DECOMPRESSED_COMMENT = "compressed instances sent decompressed (lossless)"

_chunked_lock = threading.Lock()
_chunked_users = 0
_chunked_before: bool | None = None


def use_stored_bytes(on: bool) -> None:
    """Let ``send_c_store(path)`` stream the file instead of decoding it (pynetdicom's
    ``_config.STORE_SEND_CHUNKED_DATASET``), while at least one sample PACS runs. Only
    path arguments are affected, and the sender below passes a path only when the
    association has the file's own transfer syntax."""
    global _chunked_users, _chunked_before
    from pynetdicom import _config

    with _chunked_lock:
        if on:
            if _chunked_users == 0:
                _chunked_before = _config.STORE_SEND_CHUNKED_DATASET
                _config.STORE_SEND_CHUNKED_DATASET = True
            _chunked_users += 1
        elif _chunked_users > 0:
            _chunked_users -= 1
            if _chunked_users == 0 and _chunked_before is not None:
                _config.STORE_SEND_CHUNKED_DATASET = _chunked_before


def stored_instance(path: str | Path, sop_class: str, sop_instance: str, transfer_syntax: str):
    """What a retrieve handler yields for one stored instance: the identifying attributes and
    the file, resolved by the sender installed with :func:`install_sender`."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax or IMPLICIT_LE)
    ds.set_original_encoding(
        ds.file_meta.TransferSyntaxUID.is_implicit_VR, ds.file_meta.TransferSyntaxUID.is_little_endian
    )
    ds._dicomplus_path = str(path)
    return ds


def _accepted(assoc, sop_class: str) -> set[str]:
    """The transfer syntaxes ``assoc`` accepted for sending ``sop_class``, worked out once per
    association and SOP Class (pynetdicom rebuilds ``accepted_contexts`` on every look: 0.2 ms a
    sub-operation in py-spy of ``serve`` during a getscu); negotiation is over by then."""
    cache = assoc.__dict__.setdefault("_dicomplus_accepted", {})
    found = cache.get(sop_class)
    if found is None:
        found = cache[sop_class] = {
            str(cx.transfer_syntax[0])
            for cx in assoc.accepted_contexts
            if cx.abstract_syntax == sop_class and cx.as_scu
        }
    return found


def _read(path: str, stored: str):
    """The stored instance as pydicom reads it; a bare data set (no File Meta Information, as
    some archives write) gets the transfer syntax the database recorded for it."""
    import pydicom
    from pydicom.uid import UID

    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = UID(stored)
    return ds


def _decoded(path: str, stored: str, accepted: set[str]):
    """The instance decoded into an accepted uncompressed syntax."""
    import pydicom

    target = EXPLICIT_LE if EXPLICIT_LE in accepted else IMPLICIT_LE if IMPLICIT_LE in accepted else None
    if target is None:
        raise DecodeRefused(
            f"no uncompressed transfer syntax accepted (accepted: {', '.join(sorted(accepted))})"
        )
    if stored not in LOSSLESS:
        raise DecodeRefused(f"stored in lossy {pydicom.uid.UID(stored).name}: not decompressed")
    ds = _read(path, stored)
    if ds.file_meta.TransferSyntaxUID.is_compressed and "PixelData" in ds:
        try:
            ds.decompress(as_rgb=False, generate_instance_uid=False)
        except Exception as exc:  # a missing or failing decoder plugin
            raise DecodeRefused(f"cannot decode {ds.file_meta.TransferSyntaxUID.name}: {exc}") from exc
    ds.file_meta.TransferSyntaxUID = target
    uid = pydicom.uid.UID(target)
    ds.set_original_encoding(uid.is_implicit_VR, uid.is_little_endian, ds.original_character_set)
    return ds


def needs_decoding(assoc, sop_class: str, transfer_syntax: str) -> bool:
    """Whether the sender will decode an instance of ``sop_class`` stored in
    ``transfer_syntax`` to send it on ``assoc``."""
    accepted = _accepted(assoc, sop_class)
    stored = transfer_syntax or IMPLICIT_LE
    return stored not in accepted and stored in LOSSLESS and bool(accepted & {EXPLICIT_LE, IMPLICIT_LE})


def _send_stored(assoc, wire, path: str, sop_class: str, sop_instance: str, stored: str, kwargs):
    """The stored file sent by :class:`~DICOMPlusLib.network.pacs.qrscp_wire.Wire`: the status
    Dataset pynetdicom's ``send_c_store`` returns, or None when the file is not one the wire
    can send (no ``DICM``, or no context with the stored transfer syntax)."""
    from pydicom import Dataset

    from DICOMPlusLib.network.pacs import qrscp_wire

    try:
        context = assoc._get_valid_context(sop_class, stored, "scu", allow_conversion=False)
    except ValueError:
        return None
    with open(path, "rb") as f:
        offset = qrscp_wire.data_set_offset(f)
        if offset is None:
            return None
        command = qrscp_wire.store_command(
            kwargs["msg_id"], sop_class, sop_instance, kwargs["priority"],
            kwargs["originator_aet"], kwargs["originator_id"],
        )  # fmt: skip
        rsp = wire.store(f, offset, context.context_id, command, kwargs["msg_id"])
    if rsp is qrscp_wire.SUCCESS:  # what _check_received_status makes of a plain success
        status = Dataset()
        status.Status = 0x0000
        return status
    if rsp is None:  # the DIMSE timeout passed: pynetdicom aborts
        assoc._handle_no_response()
        return Dataset()
    return assoc._check_received_status(rsp)


def install_sender(assoc) -> None:
    """Make ``assoc.send_c_store`` resolve the datasets of :func:`stored_instance`; stored
    bytes and the association's C-GET and C-FIND responses go on the wire directly
    (:mod:`~DICOMPlusLib.network.pacs.qrscp_wire`)."""
    if getattr(assoc, "_dicomplus_sender", False):
        return
    from pynetdicom.dimse_primitives import C_FIND, C_GET

    from DICOMPlusLib.network.pacs.qrscp_wire import Wire

    original = assoc.send_c_store
    # Only where the handler runs on the association's own reactor thread (a C-GET: we are the
    # acceptor): on the association pynetdicom opens to a C-MOVE destination its reactor runs
    # on another thread, and pausing it between two sends as quick as these is racy (it took a
    # C-STORE response off the queue in test_network_serve).
    wire = Wire(assoc) if assoc.is_acceptor else None
    if wire is not None:
        send_msg = assoc.dimse.send_msg

        def send_response(primitive, context_id):
            if isinstance(primitive, (C_GET, C_FIND)) and primitive.MessageIDBeingRespondedTo is not None:
                return wire.send_msg(primitive, context_id)
            return send_msg(primitive, context_id)

        assoc.dimse.send_msg = send_response

    def send_c_store(dataset, msg_id=1, priority=2, originator_aet=None, originator_id=None):
        path = getattr(dataset, "_dicomplus_path", None)
        kwargs = dict(
            msg_id=msg_id, priority=priority, originator_aet=originator_aet, originator_id=originator_id
        )
        if path is None:
            return original(dataset, **kwargs)
        import pydicom

        stored = str(dataset.file_meta.TransferSyntaxUID)
        accepted = _accepted(assoc, str(dataset.SOPClassUID))
        if stored in accepted:
            if wire is not None:
                sop_class, sop_instance = str(dataset.SOPClassUID), str(dataset.SOPInstanceUID)
                sent = _send_stored(assoc, wire, path, sop_class, sop_instance, stored, kwargs)
                if sent is not None:
                    return sent
            try:
                return original(Path(path), **kwargs)
            except (AttributeError, pydicom.errors.InvalidDicomError):
                # no File Meta Information to stream after (a bare data set): pynetdicom encodes it
                return original(_read(path, stored), **kwargs)
        if pydicom.uid.UID(stored).is_compressed or stored not in (
            EXPLICIT_LE,
            IMPLICIT_LE,
            uids.ExplicitVRBigEndian,
        ):
            try:
                decoded = _decoded(path, stored, accepted)
            except DecodeRefused as exc:
                logger.warning("cannot send %s: %s", dataset.SOPInstanceUID, exc)
                raise
            return original(decoded, **kwargs)
        return original(_read(path, stored), **kwargs)

    assoc.send_c_store = send_c_store
    assoc._dicomplus_sender = True
