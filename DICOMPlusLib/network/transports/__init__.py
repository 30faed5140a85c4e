"""One protocol, one transport per kind of endpoint: the services (echo, query, send, retrieve)
ask the registry for the transport of a node's endpoint and call it; nobody else decides how a
node is reached.

- :class:`Transport` is what a transport does: ``echo``, ``query``, ``send`` and ``retrieve``
  (by the retrieve methods it lists in ``retrieve_methods``).
- :data:`TRANSPORTS` registers them, one line each, by import path, so that choosing one
  imports only that one (the DICOMweb client pulls in ``requests``, the DIMSE stack pydicom).

A new transport is one module with a class implementing :class:`Transport` and a line in
:data:`TRANSPORTS` (and an :class:`~DICOMPlusLib.network.endpoints.EndpointKind` for its
endpoint); a new retrieve method is a :class:`~DICOMPlusLib.network.nodes.RetrieveMethod`
member, the module that runs it, and its name in the transport's ``retrieve_methods``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from DICOMPlusLib.errors import NetworkError, RetrieveError
from DICOMPlusLib.network.endpoints import EndpointKind

if TYPE_CHECKING:
    from DICOMPlusLib.database import DatabaseProtocol
    from DICOMPlusLib.jobs import CancelToken, ProgressCallback
    from DICOMPlusLib.models import QueryLevel
    from DICOMPlusLib.network.answers import QueryReport
    from DICOMPlusLib.network.echo_models import EchoResult
    from DICOMPlusLib.network.models import RetrieveOptions, RetrieveReport, RetrieveRequest
    from DICOMPlusLib.network.nodes import RemoteNode, RetrieveMethod
    from DICOMPlusLib.network.send_models import FileResult, SendItem, SendOptions, SendReport

__all__ = ["TRANSPORTS", "Transport", "retrieve_transport", "transport", "transport_for"]


class Transport(Protocol):
    """What every transport does with a node's endpoint of its ``kind``."""

    kind: EndpointKind
    retrieve_methods: frozenset[RetrieveMethod]

    def echo(
        self, node: RemoteNode, *, calling_ae_title: str, timeout: float, cancel: CancelToken | None = None
    ) -> EchoResult:
        """Is the endpoint there and willing? Never raises for a network problem: the result's
        ``problem`` and ``message`` say what failed and what to check. CancelledError when
        ``cancel`` is cancelled while it waits."""
        ...

    def query(self, node: RemoteNode, level: QueryLevel, criteria: dict[str, str], *, model: str,
              calling_ae_title: str, limit: int | None, cancel: CancelToken | None, timeout: float,
              return_keys: Iterable[str], report: QueryReport) -> Iterator:  # fmt: skip
        """Records matching the (normalized) ``criteria`` as they arrive; QueryError."""
        ...

    def send(self, node: RemoteNode, items: Sequence[SendItem], options: SendOptions, *,
             progress: ProgressCallback | None, cancel: CancelToken,
             failures: Sequence[FileResult]) -> SendReport:  # fmt: skip
        """One result per item (plus ``failures`` found before sending); no raise per file."""
        ...

    def retrieve(self, node: RemoteNode, db: DatabaseProtocol, request: RetrieveRequest, method: RetrieveMethod,
                 options: RetrieveOptions, *, progress: ProgressCallback | None,
                 cancel: CancelToken) -> RetrieveReport:  # fmt: skip
        """Exactly ``request`` into ``db`` by ``method`` (one of ``retrieve_methods``)."""
        ...


#: The transports, by the kind of endpoint they reach: "module:class".
TRANSPORTS: dict[EndpointKind, str] = {
    EndpointKind.DIMSE: "DICOMPlusLib.network.transports.dimse:DimseTransport",
    EndpointKind.DICOMWEB: "DICOMPlusLib.network.transports.web:DicomwebTransport",
}

_LOADED: dict[EndpointKind, Transport] = {}


def transport(kind: EndpointKind) -> Transport:
    """The transport of endpoints of ``kind``."""
    found = _LOADED.get(kind)
    if found is None:
        if kind not in TRANSPORTS:
            raise NetworkError(f"no transport for {kind.value} endpoints")
        module, _, name = TRANSPORTS[kind].partition(":")
        found = _LOADED[kind] = getattr(importlib.import_module(module), name)()
    return found


def transport_for(node: RemoteNode, kind: EndpointKind | None = None) -> Transport:
    """The transport of the node's preferred endpoint (or of ``kind``, which it must have)."""
    kind = node.preferred if kind is None else kind
    if node.endpoint(kind) is None:
        raise NetworkError(f"node {node.name!r} has no {kind.value} endpoint")
    return transport(kind)


def retrieve_transport(node: RemoteNode, method: RetrieveMethod) -> Transport:
    """The transport that retrieves by ``method`` from ``node``."""
    for kind in node.kinds:
        candidate = transport(kind)
        if method in candidate.retrieve_methods:
            return candidate
    raise RetrieveError(
        f"node {node.name!r} has no endpoint that retrieves by {method.value}: "
        + (
            "add a DICOMweb URL"
            if method.endpoint is EndpointKind.DICOMWEB
            else "add an AE@HOST:PORT address"
        )
    )
