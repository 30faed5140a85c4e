"""DICOMweb client: QIDO-RS query, WADO-RS retrieve into the database, STOW-RS send (PS3.18).

Plain ``requests`` (bundled with Slicer), no parsing of whole responses in memory: WADO-RS
multipart responses are split as they stream in, each part (one whole Part 10 instance) spooled
to a temporary file in the store, then stored and indexed before the next one is read, so a
cancel, a broken connection or a part that is not DICOM leaves only complete instances. JSON
answers are read up to a size cap and checked for shape (:mod:`web_response`): whatever the
server sends, the outcome is a QueryError/RetrieveError naming it. Query results are the same
frozen records as local search and C-FIND.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from DICOMPlusLib import dataclasses_lite
from DICOMPlusLib._log import get_logger
from DICOMPlusLib.database.parsing import TAG_OF
from DICOMPlusLib.errors import CancelledError, QueryError, RetrieveError, SendError
from DICOMPlusLib.jobs import CancelToken, ProgressCallback
from DICOMPlusLib.models import (
    InstanceRecord,
    PatientRecord,
    QueryLevel,
    SeriesRecord,
    StudyRecord,
    TransferReport,
)
from DICOMPlusLib.network.endpoints import DicomwebEndpoint
from DICOMPlusLib.network.web import response as web_response
from DICOMPlusLib.network.web.qido import query_string as _query_string

if TYPE_CHECKING:
    import requests

    from DICOMPlusLib.database import DatabaseProtocol

logger = get_logger(__name__)

# DICOM JSON model (PS3.18 F.2) keys are the tags as 8 hex digits: the indexed attributes plus the
# query-only ones a QIDO-RS answer carries.
_TAGS = {keyword: f"{tag:08X}" for keyword, tag in TAG_OF.items()} | {
    "ModalitiesInStudy": "00080061",
    "NumberOfStudyRelatedSeries": "00201206",
    "NumberOfStudyRelatedInstances": "00201208",
    "NumberOfSeriesRelatedInstances": "00201209",
}

_INT_KEYWORDS = {
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "NumberOfSeriesRelatedInstances",
    "SeriesNumber",
    "InstanceNumber",
    "NumberOfFrames",
    "Rows",
    "Columns",
}
_FIELDS = {
    QueryLevel.STUDY: [
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyDescription",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ],
    QueryLevel.SERIES: [
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "BodyPartExamined",
        "NumberOfSeriesRelatedInstances",
        "PatientID",
        "PatientName",
    ],
    QueryLevel.INSTANCE: [
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
        "NumberOfFrames",
        "Rows",
        "Columns",
    ],
}
RETRYABLE = frozenset({408, 429, 502, 503, 504})
DICOM_MULTIPART = 'multipart/related; type="application/dicom"'


def _value(item: dict, keyword: str):
    element = item.get(_TAGS[keyword])
    if not element or "Value" not in element or not element["Value"]:
        return None
    values = element["Value"]
    if element.get("vr") == "PN":  # all component groups, as local search and C-FIND keep them
        values = [_person_name(v) for v in values]
    if keyword in _INT_KEYWORDS:
        try:
            return int(float(values[0]))
        except (TypeError, ValueError):
            return None
    return "\\".join(str(v) for v in values)


def _person_name(value) -> str:
    if not isinstance(value, dict):
        return str(value)
    groups = [str(value.get(k, "")) for k in ("Alphabetic", "Ideographic", "Phonetic")]
    return "=".join(groups).rstrip("=")


def record_from_json(level: QueryLevel, item: dict):
    """A DICOM JSON object (one QIDO-RS result) as the record of ``level``."""

    def get(keyword: str, default=""):
        value = _value(item, keyword)
        return default if value is None else value

    if level is QueryLevel.PATIENT:
        return PatientRecord(
            PatientID=get("PatientID"),
            PatientName=get("PatientName"),
            PatientBirthDate=get("PatientBirthDate"),
            PatientSex=get("PatientSex"),
        )
    if level is QueryLevel.STUDY:
        return StudyRecord(
            StudyInstanceUID=get("StudyInstanceUID"),
            **{
                k: get(k)
                for k in (
                    "PatientID",
                    "PatientName",
                    "PatientBirthDate",
                    "PatientSex",
                    "StudyDate",
                    "StudyTime",
                    "StudyDescription",
                    "AccessionNumber",
                    "StudyID",
                    "ReferringPhysicianName",
                    "ModalitiesInStudy",
                )
            },
            NumberOfStudyRelatedSeries=get("NumberOfStudyRelatedSeries", None),
            NumberOfStudyRelatedInstances=get("NumberOfStudyRelatedInstances", None),
        )
    if level is QueryLevel.SERIES:
        return SeriesRecord(
            SeriesInstanceUID=get("SeriesInstanceUID"),
            StudyInstanceUID=get("StudyInstanceUID"),
            PatientID=get("PatientID"),
            PatientName=get("PatientName"),
            Modality=get("Modality"),
            SeriesNumber=get("SeriesNumber", None),
            SeriesDescription=get("SeriesDescription"),
            SeriesDate=get("SeriesDate"),
            SeriesTime=get("SeriesTime"),
            BodyPartExamined=get("BodyPartExamined"),
            NumberOfSeriesRelatedInstances=get("NumberOfSeriesRelatedInstances", None),
        )
    return InstanceRecord(
        SOPInstanceUID=get("SOPInstanceUID"),
        SeriesInstanceUID=get("SeriesInstanceUID"),
        StudyInstanceUID=get("StudyInstanceUID"),
        PatientID=get("PatientID"),
        SOPClassUID=get("SOPClassUID"),
        InstanceNumber=get("InstanceNumber", None),
        NumberOfFrames=get("NumberOfFrames", None),
        Rows=get("Rows", None),
        Columns=get("Columns", None),
    )


class DicomwebClient:
    """QIDO-RS, WADO-RS and STOW-RS against one endpoint, with retry on 408/429/5xx. ``cancel``
    (a CancelToken) ends a wait for a TCP connection with CancelledError (see :mod:`.connection`)."""

    def __init__(
        self,
        endpoint: DicomwebEndpoint | str,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        session: requests.Session | None = None,
        cancel: CancelToken | None = None,
    ) -> None:
        import requests

        from DICOMPlusLib.network.web.connection import CancellableAdapter

        self.endpoint = DicomwebEndpoint(endpoint) if isinstance(endpoint, str) else endpoint
        self.base = self.endpoint.url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_json_bytes = web_response.MAX_JSON_BYTES
        self.cancel = cancel
        self.session = session or requests.Session()
        if session is None:
            for prefix in ("http://", "https://"):
                self.session.mount(prefix, CancellableAdapter())
        self.session.trust_env = False  # loopback and hospital networks: no proxy surprises
        if self.endpoint.token:
            self.session.headers["Authorization"] = f"Bearer {self.endpoint.token}"
        elif self.endpoint.username:
            self.session.auth = (self.endpoint.username, self.endpoint.password)
        self.session.verify = self.endpoint.verify

    # -- HTTP --------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, error: type[Exception], **kwargs) -> requests.Response:
        import requests

        from DICOMPlusLib.network.web.connection import cancelled_by, never_connected, os_reason

        url = self.base + path
        kwargs.setdefault("timeout", self.endpoint.timeout)
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                with cancelled_by(self.cancel):
                    response = self.session.request(method, url, **kwargs)
            except requests.exceptions.SSLError as exc:
                raise error(f"TLS verification failed for {self.base}: {exc}") from exc
            except requests.exceptions.ConnectionError as exc:
                if never_connected(exc):
                    raise error(
                        f"cannot connect to {self.base}: {os_reason(exc)} (is the server running and the URL "
                        "right?)"
                    ) from exc
                raise error(
                    f"{self.base} closed the connection or answered something that is not HTTP ({exc})"
                ) from exc
            except requests.exceptions.Timeout as exc:
                raise error(f"{self.base} did not answer within {self.endpoint.timeout} s") from exc
            except requests.exceptions.TooManyRedirects as exc:
                raise error(f"{self.base} redirects in a loop ({exc})") from exc
            except requests.exceptions.RequestException as exc:
                raise error(f"{self.base}: cannot follow its answer ({exc})") from exc
            if response.status_code in RETRYABLE and attempt < self.retries:
                wait = _retry_after(response) or delay
                logger.info("%s %s: HTTP %s, retrying in %.1f s", method, url, response.status_code, wait)
                response.close()
                if self.cancel is None:
                    time.sleep(wait)
                elif self.cancel.wait(wait):  # a busy server's Retry-After (up to 30 s, 4 times)
                    raise CancelledError(f"cancelled while waiting to ask {self.base} again")
                delay *= 2
                continue
            if response.status_code >= 400:
                raise error(_http_error_message(response, self.base))
            return response
        raise AssertionError("unreachable")

    # -- QIDO-RS -----------------------------------------------------------------------------
    def search(
        self,
        level: QueryLevel | str = QueryLevel.STUDY,
        criteria: dict[str, str] | None = None,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        limit: int | None = None,
        page_size: int = 200,
    ) -> Iterator:
        """Yield records matching ``criteria`` (DICOM matching values, as in local search).

        Pages with ``limit``/``offset``; a server that ignores ``offset`` (returns the same page
        again) is detected and paging stops instead of looping.
        """
        level = QueryLevel.parse(level)
        if level is QueryLevel.PATIENT:
            raise QueryError("QIDO-RS has no patient level: search studies and group them by PatientID")
        path = {
            QueryLevel.STUDY: "/studies",
            QueryLevel.SERIES: "/series",
            QueryLevel.INSTANCE: "/instances",
        }[level]
        criteria = dict(criteria or {})
        study_uid = study_uid or criteria.pop("StudyInstanceUID", None)
        if level is not QueryLevel.STUDY and study_uid and "\\" not in study_uid:
            prefix = f"/studies/{quote(study_uid)}"
            if level is QueryLevel.INSTANCE:
                series_uid = series_uid or criteria.pop("SeriesInstanceUID", None)
                if series_uid and "\\" not in series_uid:
                    prefix += f"/series/{quote(series_uid)}"
            path = prefix + path
        elif study_uid:
            criteria["StudyInstanceUID"] = study_uid
        params: dict[str, object] = {k: v for k, v in criteria.items() if v not in (None, "")}
        params["includefield"] = ",".join(_FIELDS[level])
        offset = 0
        yielded = 0
        previous_first = None
        while True:
            size = page_size if limit is None else min(page_size, limit - yielded)
            if size <= 0:
                return
            response = self._request(
                "GET",
                path + "?" + _query_string({**params, "limit": size, "offset": offset}),
                error=QueryError,
                stream=True,
                headers={"Accept": "application/dicom+json"},
            )
            server = web_response.who(response, self.base)
            answer = web_response.read_json(response, self.base, QueryError, limit=self.max_json_bytes)
            items = web_response.dicom_json_list(answer, server, QueryError)
            if not items:
                return
            first = json.dumps(items[0], sort_keys=True)
            if first == previous_first:
                logger.warning("%s ignores 'offset': stopping after %d results", self.base, yielded)
                return
            previous_first = first
            for item in items:
                yield record_from_json(level, item)
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
            if len(items) < size:
                return
            offset += len(items)

    # -- WADO-RS -----------------------------------------------------------------------------
    def retrieve(
        self,
        db: DatabaseProtocol,
        study_uid: str,
        series_uid: str | None = None,
        *,
        resume: bool = True,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> TransferReport:
        """Retrieve a study or one series into ``db``, instance by instance.

        With ``resume``, instances already in the database are not fetched again. Raises
        RetrieveError when the server fails; what arrived complete before that is kept.
        """
        cancel = cancel or CancelToken()
        report = TransferReport()
        series_list = (
            [series_uid]
            if series_uid
            else [s.SeriesInstanceUID for s in self.search(QueryLevel.SERIES, study_uid=study_uid)]
        )
        plan: list[tuple[str, list[str] | None]] = []
        for uid in series_list:
            remote = [
                r.SOPInstanceUID
                for r in self.search(QueryLevel.INSTANCE, study_uid=study_uid, series_uid=uid)
            ]
            report.expected += len(remote)
            local = {r.SOPInstanceUID for r in db.instances(uid)} if resume else set()
            present = [sop for sop in remote if sop in local]
            report.skipped.extend(present)
            missing = [sop for sop in remote if sop not in local]
            if not missing:
                continue
            plan.append((uid, None if not present else missing))
        if progress:
            progress(len(report.skipped), report.expected, "")
        for uid, only in plan:
            if only is None:
                paths = [f"/studies/{quote(study_uid)}/series/{quote(uid)}"]
            else:
                paths = [
                    f"/studies/{quote(study_uid)}/series/{quote(uid)}/instances/{quote(sop)}" for sop in only
                ]
            for path in paths:
                try:
                    self._fetch(db, path, report, progress, cancel)
                except CancelledError:  # while connecting: what arrived before is stored and counted
                    report.cancelled = True
                if report.cancelled:
                    return report
        return report

    def _fetch(self, db, path, report, progress, cancel) -> None:
        import requests

        response = None
        for accept in (f"{DICOM_MULTIPART}; transfer-syntax=*", DICOM_MULTIPART):
            try:
                response = self._request(
                    "GET", path, error=RetrieveError, stream=True, headers={"Accept": accept}
                )
                break
            except RetrieveError as exc:
                if "HTTP 406" not in str(exc) and "HTTP 400" not in str(exc):
                    raise
        if response is None:
            raise RetrieveError(
                f"{self.base}{path}: the server accepts none of the DICOM media types offered"
            )
        server = web_response.who(response, self.base)
        parts = web_response.spool_multipart(response, db, self.base, RetrieveError)
        with contextlib.closing(response), contextlib.closing(parts):
            try:
                for n, spooled in enumerate(parts, 1):
                    sop = web_response.store_spooled(db, spooled, n, server, RetrieveError)
                    report.done.append(sop)
                    if progress:
                        progress(len(report.done) + len(report.skipped), report.expected, sop)
                    if cancel.cancelled:
                        report.cancelled = True
                        return
            except (
                requests.exceptions.RequestException,
                web_response.StreamCut,
            ) as exc:
                raise RetrieveError(
                    f"{self.base} closed the connection after {len(report.done)} of {report.expected} instances; "
                    "those are stored: retrieve again to fetch the rest"
                ) from exc

    # -- STOW-RS -----------------------------------------------------------------------------
    def store(
        self,
        files: Iterable[str | Path],
        *,
        study_uid: str | None = None,
        batch_bytes: int = 32 << 20,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> TransferReport:
        """Send Part 10 files with STOW-RS, in batches, and report the outcome of each instance."""
        cancel = cancel or CancelToken()
        paths = [Path(f) for f in files]
        report = TransferReport(expected=len(paths))
        path = "/studies" + (f"/{quote(study_uid)}" if study_uid else "")
        batch: list[tuple[Path, bytes]] = []
        size = 0

        def flush() -> None:
            nonlocal size
            if not batch:
                return
            try:
                self._stow(path, batch, report)
            except CancelledError:  # while connecting: the batch was not sent
                report.cancelled = True
                return
            batch.clear()
            size = 0
            if progress:
                progress(len(report.done) + len(report.failed), report.expected, "")

        for f in paths:
            if cancel.cancelled or report.cancelled:
                report.cancelled = True
                break
            try:
                data = f.read_bytes()
            except OSError as exc:
                report.failed[str(f)] = f"cannot read: {exc.strerror or exc}"
                continue
            batch.append((f, data))
            size += len(data)
            if size >= batch_bytes:
                flush()
        if not report.cancelled:
            flush()
        return report

    def _stow(self, path: str, batch: list[tuple[Path, bytes]], report: TransferReport) -> None:
        from DICOMPlusLib.database.parsing import parse_bytes

        boundary = uuid.uuid4().hex
        sops = {}
        body = bytearray()
        for f, data in batch:
            try:
                sops[str(parse_bytes(data, source=str(f)).values["SOPInstanceUID"])] = f
            except Exception as exc:  # not DICOM: report, do not send
                report.failed[str(f)] = f"not sent: {exc}"
                continue
            body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            body += data
            body += b"\r\n"
        if not sops:
            return
        body += f"--{boundary}--\r\n".encode()
        try:
            response = self._request(
                "POST",
                path,
                error=SendError,
                data=bytes(body),
                stream=True,
                headers={
                    "Content-Type": f'{DICOM_MULTIPART}; boundary="{boundary}"',
                    "Accept": "application/dicom+json",
                },
            )
        except SendError as exc:
            for sop in sops:
                report.failed[sop] = str(exc)
            return
        try:
            answer = web_response.read_json(response, self.base, SendError, limit=self.max_json_bytes)
            failed = web_response.stow_failures(answer, web_response.who(response, self.base), SendError)
        except SendError as exc:  # an HTML page or garbage: nothing says the instances were stored
            for sop in sops:
                report.failed[sop] = str(exc)
            return
        for sop in sops:
            if sop in failed:
                report.failed[sop] = failed[sop]
            else:
                report.done.append(sop)


def client_for(node, *, timeout: float = 30.0, cancel: CancelToken | None = None) -> DicomwebClient:
    """The DicomwebClient of a RemoteNode's DICOMweb endpoint (its URL and credentials); ``cancel``
    ends a wait for its connection."""

    web = getattr(node, "web", None)
    if web is None:
        raise QueryError(f"node {getattr(node, 'name', node)!r} has no DICOMweb URL")
    return DicomwebClient(dataclasses_lite.replace(web, timeout=timeout), cancel=cancel)


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return min(float(value), 30.0) if value else None
    except ValueError:
        return None


def _http_error_message(response, base: str) -> str:
    code = response.status_code
    hint = {
        401: "authentication required: give the node a token or a user name and password",
        403: "forbidden: the credentials are not allowed to do this",
        404: f"not found: check the URL (the DICOMweb root, e.g. {base.split('/dicom-web')[0]}/dicom-web) and the UIDs",
        406: "the server cannot return the requested media type",
    }.get(code, "")
    try:  # at most a few KiB of the body (it may be endless)
        head = next(response.iter_content(2048), b"")
    except Exception:  # the body is only a detail of the message
        head = b""
    finally:
        response.close()
    detail = head.decode(response.encoding or "utf-8", "replace")[:200].strip().replace("\n", " ")
    return (
        f"HTTP {code} from {response.url.split('?')[0]}"  # the query (includefield=...) is noise here
        + (f": {hint}" if hint else "")
        + (f" ({detail})" if detail else "")
    )


__all__ = [
    "CancelledError",
    "DicomwebClient",
    "DicomwebEndpoint",
    "TransferReport",
    "client_for",
    "record_from_json",
]
