"""The echo of a DICOMweb endpoint: DICOMweb has no C-ECHO, so a cheap QIDO-RS query for one
study (PS3.18 10.6) with the node's credentials stands for it, and its outcome is diagnosed like
the DIMSE echo's: nothing listens, the host is unknown or does not answer, TLS fails, the
credentials are refused, the URL is not a DICOMweb service root, the server fails.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from DICOMPlusLib.network.echo_models import EchoProblem, EchoResult
from DICOMPlusLib.network.nodes import RemoteNode

if TYPE_CHECKING:
    from DICOMPlusLib.jobs import CancelToken


def echo_dicomweb(
    node: RemoteNode, *, timeout: float = 10.0, cancel: CancelToken | None = None
) -> EchoResult:
    """A QIDO-RS probe (``GET {url}/studies?limit=1``) with the node's credentials, diagnosed.
    ``cancel`` ends its waits (the client's sockets carry it): CancelledError."""
    import requests

    from DICOMPlusLib.network.web.client import client_for
    from DICOMPlusLib.network.web.connection import cancelled_by

    web = node.require_web()
    url = web.url.rstrip("/")
    start = time.monotonic()

    def result(ok: bool, **kw) -> EchoResult:
        return EchoResult(node=node, ok=ok, seconds=time.monotonic() - start, **kw)

    client = client_for(node, timeout=timeout)  # the session with the node's credentials
    try:
        with cancelled_by(cancel):  # the connection and the answer's reads look at the token
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
        if any(
            k in text for k in ("NameResolutionError", "Name or service not known", "getaddrinfo", "nodename")
        ):
            host = web.host_port[0]
            return result(
                False,
                problem=EchoProblem.UNREACHABLE,
                message=f"cannot resolve the host {host} of {url}: check the URL",
            )
        return result(False, problem=EchoProblem.UNREACHABLE, message=f"cannot reach {url}: {text}")
    finally:
        client.session.close()
    code = response.status_code
    if code in (401, 403):
        how = "no credentials given" if not (web.token or web.username) else "check them"
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
