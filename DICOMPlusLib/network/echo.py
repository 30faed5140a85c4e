"""C-ECHO (PS3.4 Annex A, Verification) with a diagnosis a user can act on.

``echo(node)`` never raises for network problems: it returns an :class:`EchoResult` whose
``problem`` says what went wrong (nothing listens, the peer rejected us and why, no answer) and
whose ``message`` says what to check.

A DICOMweb node (its retrieve method is DICOMweb) has no C-ECHO: :func:`echo_dicomweb` asks
its QIDO-RS service for one study (PS3.18 10.6) and diagnoses the answer (nothing listens, TLS,
credentials refused, the URL is not a DICOMweb service root, the server fails).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from DICOMPlusLib import uids
from DICOMPlusLib.errors import NetworkError
from DICOMPlusLib.network.dimse import scu, ul
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, RemoteNode, check_ae_title


class EchoProblem(enum.Enum):
    REFUSED = "connection refused"
    UNREACHABLE = "host unreachable"
    TIMEOUT = "timeout"
    CLOSED = "connection closed"
    TLS = "TLS handshake failed"
    REJECTED_CALLED_AE = "called AE title not recognized"
    REJECTED_CALLING_AE = "calling AE title not recognized"
    REJECTED = "association rejected"
    ABORTED = "association aborted"
    NO_VERIFICATION = "verification not supported"
    FAILED = "C-ECHO failed"
    PROTOCOL = "not a DICOM peer"
    UNAUTHORIZED = "credentials refused"
    NOT_DICOMWEB = "not a DICOMweb service"
    SERVER_ERROR = "server error"


@dataclass(frozen=True)
class EchoResult:
    node: RemoteNode
    ok: bool
    seconds: float
    status: int | None = None
    problem: EchoProblem | None = None
    message: str = ""

    def to_dict(self) -> dict:
        return {
            "node": self.node.name,
            "address": self.node.address,
            "ok": self.ok,
            "seconds": round(self.seconds, 4),
            "status": self.status,
            "problem": self.problem.value if self.problem else None,
            "message": self.message,
        }


_KIND = {
    "refused": EchoProblem.REFUSED,
    "unreachable": EchoProblem.UNREACHABLE,
    "timeout": EchoProblem.TIMEOUT,
    "closed": EchoProblem.CLOSED,
    "tls": EchoProblem.TLS,
    "aborted": EchoProblem.ABORTED,
    "protocol": EchoProblem.PROTOCOL,
}


def echo(
    node: RemoteNode,
    *,
    calling_ae_title: str = DEFAULT_AE_TITLE,
    timeout: float = 10.0,
) -> EchoResult:
    """Associate with ``node`` proposing Verification, send C-ECHO, release; for a DICOMweb node,
    :func:`echo_dicomweb`."""
    from DICOMPlusLib.network.query import uses_dicomweb

    if uses_dicomweb(node):
        return echo_dicomweb(node, timeout=timeout)
    calling = check_ae_title(calling_ae_title, "calling AE title")
    tls = node.tls_settings.client_context(node.host) if node.tls else None
    start = time.monotonic()

    def result(ok: bool, **kw) -> EchoResult:
        return EchoResult(node=node, ok=ok, seconds=time.monotonic() - start, **kw)

    try:
        assoc = scu.associate(
            node.host,
            node.port,
            called_ae=node.ae_title,
            calling_ae=calling,
            contexts=[(ul.VERIFICATION, [uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian])],
            tls=tls,
            connect_timeout=timeout,
            acse_timeout=timeout,
            dimse_timeout=timeout,
        )
    except scu.AssociationFailed as exc:
        if exc.kind == "rejected":
            problem = EchoProblem.REJECTED
            if exc.source == ul.RJ_SOURCE_USER and exc.reason == ul.RJ_CALLED_AE_NOT_RECOGNIZED:
                problem = EchoProblem.REJECTED_CALLED_AE
            elif exc.source == ul.RJ_SOURCE_USER and exc.reason == ul.RJ_CALLING_AE_NOT_RECOGNIZED:
                problem = EchoProblem.REJECTED_CALLING_AE
            message = str(exc)
            if problem is EchoProblem.REJECTED_CALLING_AE:
                message += f" (our AE title is {calling})"
            elif problem is EchoProblem.REJECTED_CALLED_AE:
                message += f" (we called {node.ae_title})"
            return result(False, problem=problem, message=message)
        return result(False, problem=_KIND.get(exc.kind, EchoProblem.FAILED), message=str(exc))
    try:
        if not assoc.contexts:
            assoc.abort()
            return result(
                False,
                problem=EchoProblem.NO_VERIFICATION,
                message=f"{node.address} accepted the association but not the Verification SOP Class",
            )
        status = assoc.echo()
    except (NetworkError, OSError) as exc:
        assoc.abort()
        problem = EchoProblem.TIMEOUT if "no response" in str(exc) else EchoProblem.FAILED
        return result(False, problem=problem, message=f"{node.address}: {exc}")
    assoc.release(timeout)
    if status != 0:
        return result(
            False, status=status, problem=EchoProblem.FAILED, message=f"C-ECHO status 0x{status:04X}"
        )
    return result(True, status=0, message=f"{node.address} answered C-ECHO")


def echo_dicomweb(node: RemoteNode, *, timeout: float = 10.0) -> EchoResult:
    """A QIDO-RS probe (``GET {url}/studies?limit=1``) with the node's credentials, diagnosed."""
    import requests

    from DICOMPlusLib.network.web.client import client_for

    url = node.dicomweb_url.rstrip("/")
    start = time.monotonic()

    def result(ok: bool, **kw) -> EchoResult:
        return EchoResult(node=node, ok=ok, seconds=time.monotonic() - start, **kw)

    client = client_for(node, timeout=timeout)
    try:
        response = client.session.get(
            client.base + "/studies",
            params={"limit": 1},
            headers={"Accept": "application/dicom+json"},
            timeout=timeout,
        )
    except requests.exceptions.SSLError as exc:
        return result(False, problem=EchoProblem.TLS, message=f"TLS with {url} failed: {exc}")
    except requests.exceptions.Timeout:
        return result(
            False, problem=EchoProblem.TIMEOUT, message=f"{url} did not answer within {timeout:g} s"
        )
    except requests.exceptions.ConnectionError as exc:
        text = str(exc)
        if "refused" in text.lower():
            return result(
                False, problem=EchoProblem.REFUSED, message=f"nothing listens at {url} (connection refused)"
            )
        return result(False, problem=EchoProblem.UNREACHABLE, message=f"cannot reach {url}: {text}")
    finally:
        client.session.close()
    code = response.status_code
    if code in (401, 403):
        how = "no credentials given" if not (node.dicomweb_token or node.dicomweb_user) else "check them"
        return result(False, problem=EchoProblem.UNAUTHORIZED, message=f"{url} answered HTTP {code}: {how}")
    if code == 404:
        return result(
            False,
            problem=EchoProblem.NOT_DICOMWEB,
            message=f"{url}/studies is not found (HTTP 404): give the DICOMweb root (Orthanc: .../dicom-web)",
        )
    if code >= 500:
        return result(False, problem=EchoProblem.SERVER_ERROR, message=f"{url} answered HTTP {code}")
    if code >= 400:
        return result(
            False, problem=EchoProblem.FAILED, message=f"{url} answered HTTP {code} to a QIDO-RS query"
        )
    kind = response.headers.get("Content-Type", "")
    try:
        answer = response.json() if response.content.strip() else []
    except ValueError:
        answer = None
    if not isinstance(answer, list) or ("json" not in kind and response.content.strip()):
        return result(
            False,
            problem=EchoProblem.NOT_DICOMWEB,
            message=f"{url} answered HTTP {code} with {kind or 'no content type'}, not DICOM JSON: "
            "is it the DICOMweb root?",
        )
    return result(True, message=f"{url} answered a QIDO-RS query (HTTP {code})")
