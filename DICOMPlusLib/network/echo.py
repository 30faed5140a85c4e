"""Echo a node: C-ECHO (PS3.4 Annex A, Verification) to a DIMSE endpoint, a QIDO-RS probe to a
DICOMweb one, whichever transport the node prefers (:mod:`DICOMPlusLib.network.transports`).

``echo(node)`` never raises for network problems: it returns an :class:`EchoResult` whose
``problem`` says what went wrong and whose ``message`` says what to check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from DICOMPlusLib.network.echo_models import EchoProblem, EchoResult
from DICOMPlusLib.network.echo_web import echo_dicomweb
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, EndpointKind, RemoteNode
from DICOMPlusLib.network.transports import transport_for

if TYPE_CHECKING:
    from DICOMPlusLib.jobs import CancelToken

__all__ = ["EchoProblem", "EchoResult", "echo", "echo_dicomweb"]


def echo(
    node: RemoteNode,
    *,
    calling_ae_title: str = DEFAULT_AE_TITLE,
    timeout: float = 10.0,
    endpoint: EndpointKind | None = None,
    cancel: CancelToken | None = None,
) -> EchoResult:
    """Echo the node's preferred endpoint (or ``endpoint``). ``cancel`` (a
    :class:`~DICOMPlusLib.jobs.CancelToken`) ends every wait (the connection, the association,
    the C-ECHO response, the QIDO-RS answer): CancelledError."""
    return transport_for(node, endpoint).echo(
        node, calling_ae_title=calling_ae_title, timeout=timeout, cancel=cancel
    )
