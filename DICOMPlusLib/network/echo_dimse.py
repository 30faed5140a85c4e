"""C-ECHO (PS3.4 Annex A, Verification) of a node's DIMSE endpoint, with a diagnosis a user can
act on: nothing listens, the peer rejected us and why, no answer. Never raises for a network
problem: the :class:`~DICOMPlusLib.network.echo_models.EchoResult` says what went wrong.
"""

from __future__ import annotations

import time

from DICOMPlusLib import uids
from DICOMPlusLib.errors import NetworkError, NetworkTimeout
from DICOMPlusLib.network.connect import Cancel
from DICOMPlusLib.network.dimse import scu, ul
from DICOMPlusLib.network.echo_models import EchoProblem, EchoResult
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, RemoteNode, check_ae_title

_KIND = {
    "refused": EchoProblem.REFUSED,
    "unreachable": EchoProblem.UNREACHABLE,
    "timeout": EchoProblem.TIMEOUT,
    "closed": EchoProblem.CLOSED,
    "tls": EchoProblem.TLS,
    "aborted": EchoProblem.ABORTED,
    "protocol": EchoProblem.PROTOCOL,
}


def echo_dimse(
    node: RemoteNode,
    *,
    calling_ae_title: str = DEFAULT_AE_TITLE,
    timeout: float = 10.0,
    cancel: Cancel | None = None,
) -> EchoResult:
    """Associate with the node's DIMSE endpoint proposing Verification, send C-ECHO, release.
    ``cancel`` ends the waits (the connection, the association, the C-ECHO response: a peer
    that associates and never answers): CancelledError, the association aborted."""
    calling = check_ae_title(calling_ae_title, "calling AE title")
    endpoint = node.require_dimse()
    tls = endpoint.tls_context()
    start = time.monotonic()

    def result(ok: bool, **kw) -> EchoResult:
        return EchoResult(node=node, ok=ok, seconds=time.monotonic() - start, **kw)

    try:
        assoc = scu.associate(
            endpoint.host,
            endpoint.port,
            called_ae=endpoint.ae_title,
            calling_ae=calling,
            contexts=[(ul.VERIFICATION, [uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian])],
            tls=tls,
            connect_timeout=timeout,
            acse_timeout=timeout,
            dimse_timeout=timeout,
            cancel=cancel,
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
                message += f" (we called {endpoint.ae_title})"
            return result(False, problem=problem, message=message)
        return result(False, problem=_KIND.get(exc.kind, EchoProblem.FAILED), message=str(exc))
    try:
        if not assoc.contexts:
            assoc.abort()
            return result(
                False,
                problem=EchoProblem.NO_VERIFICATION,
                message=f"{endpoint.address} accepted the association but not the Verification SOP Class",
            )
        status = assoc.echo()
    except (NetworkError, OSError) as exc:
        assoc.abort()
        problem = EchoProblem.TIMEOUT if isinstance(exc, NetworkTimeout) else EchoProblem.FAILED
        return result(False, problem=problem, message=f"{endpoint.address}: {exc}")
    assoc.release(timeout)
    if status != 0:
        return result(
            False, status=status, problem=EchoProblem.FAILED, message=f"C-ECHO status 0x{status:04X}"
        )
    return result(True, status=0, message=f"{endpoint.address} answered C-ECHO")
