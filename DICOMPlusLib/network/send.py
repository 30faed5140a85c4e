"""Send files or database instances to a node: C-STORE (PS3.4 Annex B) to a DIMSE endpoint,
STOW-RS (PS3.18 10.5) to a DICOMweb one, whichever transport the node prefers
(:mod:`DICOMPlusLib.network.transports`; the C-STORE SCU is :mod:`.send_dimse`).

Both give one :class:`FileResult` per file in a :class:`SendReport`, never raise for a per-file
problem, report progress per file and stop on a :class:`~DICOMPlusLib.jobs.CancelToken`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from DICOMPlusLib.errors import DICOMPlusError, SendError
from DICOMPlusLib.jobs import CancelToken, ProgressCallback
from DICOMPlusLib.network.nodes import EndpointKind, RemoteNode
from DICOMPlusLib.network.send_dimse import IMPLICIT_LE, data_set_offset
from DICOMPlusLib.network.send_models import FileResult, SendItem, SendOptions, SendReport
from DICOMPlusLib.network.transports import transport_for

if TYPE_CHECKING:
    from DICOMPlusLib.database import DatabaseProtocol

__all__ = [
    "FileResult",
    "SendItem",
    "SendOptions",
    "SendReport",
    "data_set_offset",
    "inspect_file",
    "items_from_database",
    "items_from_paths",
    "send",
    "send_from_database",
    "send_paths",
    "send_selection",
]


# --------------------------------------------------------------------------------------------
# Reading what to send
# --------------------------------------------------------------------------------------------


def inspect_file(path: str | os.PathLike) -> SendItem:
    """SOP class/instance and transfer syntax of a file, from a fast header scan."""
    from DICOMPlusLib.database.parsing import parse_path

    try:
        parsed = parse_path(str(path), keep_data=False, index=False)
    except DICOMPlusError as exc:
        raise SendError(f"{path}: {exc}") from exc
    return SendItem(
        path=str(path),
        sop_class_uid=str(parsed.values.get("SOPClassUID") or ""),
        sop_instance_uid=str(parsed.values["SOPInstanceUID"]),
        transfer_syntax=parsed.transfer_syntax or IMPLICIT_LE,
    )


def items_from_paths(paths: Iterable[str | os.PathLike]) -> tuple[list[SendItem], list[FileResult]]:
    """Send items for files and folders (walked); files that cannot be sent become failures."""
    from DICOMPlusLib.database.walk import iter_files

    items, bad = [], []
    for path in iter_files([str(p) for p in paths]):
        try:
            item = inspect_file(path)
            if not item.sop_class_uid:
                raise SendError(f"{path}: no SOP Class UID")
            items.append(item)
        except SendError as exc:
            bad.append(FileResult(str(path), "", "failure", None, f"not sent: {exc}"))
    return items, bad


def items_from_database(
    db: DatabaseProtocol,
    *,
    study: str | None = None,
    series: str | None = None,
    sop_instances: Sequence[str] | None = None,
) -> list[SendItem]:
    """Send items for the stored instances of a study, a series, or a list of instances."""
    from DICOMPlusLib.models import QueryLevel

    if sum(x is not None for x in (study, series, sop_instances)) != 1:
        raise SendError("give exactly one of study, series, sop_instances")
    if study is not None:
        records = db.search(QueryLevel.INSTANCE, {"StudyInstanceUID": study})
    elif series is not None:
        records = db.search(QueryLevel.INSTANCE, {"SeriesInstanceUID": series})
    else:
        records = [db.instance(uid) for uid in sop_instances or ()]  # not None: the check above
    if not records:
        what = f"study {study}" if study else f"series {series}" if series else "instances"
        raise SendError(f"no {what} in the database {db.path}")
    return [
        SendItem(r.path, r.SOPClassUID, r.SOPInstanceUID, r.TransferSyntaxUID or IMPLICIT_LE) for r in records
    ]


def send(
    node: RemoteNode,
    items: Sequence[SendItem],
    options: SendOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    failures: Sequence[FileResult] = (),
    endpoint: EndpointKind | None = None,
) -> SendReport:
    """Send ``items`` to the node's preferred endpoint (or ``endpoint``); a report with one
    result per item (and ``failures`` found before sending, e.g. unreadable files)."""
    return transport_for(node, endpoint).send(node, items, options or SendOptions(), progress=progress,
                                              cancel=cancel or CancelToken(), failures=failures)  # fmt: skip


def send_paths(node: RemoteNode, paths: Iterable[str | os.PathLike], options: SendOptions | None = None,
               **kwargs) -> SendReport:  # fmt: skip
    """Send files and folders (walked recursively); ``kwargs`` as :func:`send`."""
    items, bad = items_from_paths(paths)
    if not items and not bad:
        raise SendError("nothing to send: no files found")
    return send(node, items, options, failures=bad, **kwargs)


def send_from_database(
    db: DatabaseProtocol,
    node: RemoteNode,
    *,
    study: str | None = None,
    series: str | None = None,
    sop_instances: Sequence[str] | None = None,
    **kwargs,
) -> SendReport:
    """Send stored instances of a study, a series or a list of SOP instances."""
    items = items_from_database(db, study=study, series=series, sop_instances=sop_instances)
    return send(node, items, **kwargs)


def send_selection(
    db: DatabaseProtocol,
    node: RemoteNode,
    *,
    studies: Sequence[str] = (),
    series: Sequence[str] = (),
    **kwargs,
) -> SendReport:
    """Send whole studies and single series of ``db`` to ``node`` as one send (one report)."""
    items: list[SendItem] = []
    seen: set[str] = set()
    for what, uids in (("study", studies), ("series", series)):
        for uid in uids:
            for item in items_from_database(db, **{what: uid}):
                if item.sop_instance_uid not in seen:
                    seen.add(item.sop_instance_uid)
                    items.append(item)
    if not items:
        raise SendError("nothing to send: choose a study or a series")
    return send(node, items, **kwargs)
