"""C-ECHO (PS3.4 Annex A, Verification) with a diagnosis a user can act on.

``echo(node)`` never raises for network problems: it returns an :class:`EchoResult` whose
``problem`` says what went wrong (nothing listens, the peer rejected us and why, no answer) and
whose ``message`` says what to check.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from DICOMPlusLib.errors import NetworkError
from DICOMPlusLib.network import scu, ul
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
    """Associate with ``node`` proposing Verification, send C-ECHO, release."""
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
            contexts=[(ul.VERIFICATION, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])],
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
