"""The DIMSE transport: C-ECHO, C-FIND, C-STORE and C-GET/C-MOVE retrieves on a node's DIMSE
endpoint (our own Upper Layer and DIMSE stack, :mod:`DICOMPlusLib.network.dimse`)."""

from __future__ import annotations

from DICOMPlusLib.network.echo_dimse import echo_dimse
from DICOMPlusLib.network.endpoints import EndpointKind
from DICOMPlusLib.network.find import find_dimse
from DICOMPlusLib.network.nodes import RetrieveMethod
from DICOMPlusLib.network.retrieve_qr import retrieve_qr
from DICOMPlusLib.network.send_dimse import send_dimse


class DimseTransport:
    kind = EndpointKind.DIMSE
    retrieve_methods = frozenset({RetrieveMethod.C_GET, RetrieveMethod.C_MOVE})

    def echo(self, node, *, calling_ae_title, timeout):
        return echo_dimse(node, calling_ae_title=calling_ae_title, timeout=timeout)

    def query(self, node, level, criteria, **kwargs):
        return find_dimse(node, level, criteria, **kwargs)

    def send(self, node, items, options, *, progress, cancel, failures):
        return send_dimse(node, items, options, progress=progress, cancel=cancel, failures=failures)

    def retrieve(self, node, db, request, method, options, *, progress, cancel):
        return retrieve_qr(node, db, request, method, options, progress=progress, cancel=cancel)
