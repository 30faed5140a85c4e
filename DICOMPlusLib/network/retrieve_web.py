"""Retrieve through DICOMweb WADO-RS (PS3.18 10.4) for nodes whose preferred method is DICOMweb:
the same selection and report as the DIMSE retrieve, done by
:meth:`DICOMPlusLib.network.web.client.DicomwebClient.retrieve` series by series."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from DICOMPlusLib.errors import QueryError, RetrieveError
from DICOMPlusLib.models import QueryLevel
from DICOMPlusLib.network.models import RetrieveOptions, RetrieveReport, RetrieveRequest
from DICOMPlusLib.network.nodes import RetrieveMethod
from DICOMPlusLib.network.web.client import client_for

if TYPE_CHECKING:
    from DICOMPlusLib.database import DatabaseProtocol
    from DICOMPlusLib.jobs import CancelToken, ProgressCallback
    from DICOMPlusLib.network.nodes import RemoteNode


def retrieve_dicomweb(node: RemoteNode, db: DatabaseProtocol, request: RetrieveRequest, options: RetrieveOptions, *,
                      progress: ProgressCallback | None, cancel: CancelToken) -> RetrieveReport:  # fmt: skip
    """A WADO-RS retrieve of the study or of each series."""
    started = time.monotonic()
    report = RetrieveReport(node=node.name, method=RetrieveMethod.DICOMWEB.value)
    study_uid, series_uids, sop_uids = request.study_uid, request.series_uids, request.sop_uids
    resume, timeout = options.resume, options.timeout
    if node.web is None:
        raise RetrieveError(f"node {node.name!r} has no DICOMweb URL: add one, or retrieve with get or move")
    if sop_uids:
        raise RetrieveError(
            "DICOMweb retrieve of single instances is not supported here: retrieve their series"
        )
    client = client_for(node, timeout=timeout, cancel=cancel)
    targets: list[tuple[str, str | None]] = []
    try:
        for series_uid in series_uids:
            owner = study_uid
            if not owner:
                found = list(client.search(QueryLevel.SERIES, {"SeriesInstanceUID": series_uid}, limit=1))
                if not found or not found[0].StudyInstanceUID:
                    raise RetrieveError(f"{node.dicomweb_url} has no series {series_uid}")
                owner = found[0].StudyInstanceUID
            targets.append((owner, series_uid))
    except QueryError as exc:
        raise RetrieveError(f"cannot find the series on {node.name}: {exc}") from None
    if not targets:
        if not study_uid:  # retrieve() refuses an empty request before it comes here
            raise RetrieveError("nothing to retrieve: give a study or series")
        targets = [(study_uid, None)]
    report.attempts = 1
    for study, series in targets:
        base_done, base_expected = len(report.done) + len(report.skipped), report.expected

        def shifted(done: int, expected: int, current: str, _d=base_done, _e=base_expected) -> None:
            if progress is not None:
                progress(_d + done, _e + expected, current)

        part = client.retrieve(db, study, series, resume=resume, progress=shifted, cancel=cancel)
        if not part.expected and not part.cancelled:
            # as the DIMSE retrieve says it: "0 of 0 instances, complete" (exit 0) read as a success
            what = f"series {series} in study {study}" if series else f"study {study}"
            raise RetrieveError(f"{node.name} ({node.dicomweb_url}) has no {what}")
        report.merge(part)
        if part.cancelled:
            break
    report.cancelled = report.cancelled or cancel.cancelled
    report.seconds = time.monotonic() - started
    return report
