"""The DIMSE transport: C-ECHO, C-FIND, C-STORE and C-GET/C-MOVE retrieves on a node's DIMSE
endpoint (our own Upper Layer and DIMSE stack, :mod:`DICOMPlusLib.network.dimse`).

Each method imports its operation when called: ``dicomplus send`` is a process of its own and
should pay for the C-STORE SCU only, not for C-FIND (pydicom identifiers) or the retrieve
machinery (ingest, storage); ``Testing/test_cli_startup.py`` checks it.
"""

from __future__ import annotations

from DICOMPlusLib.network.endpoints import EndpointKind
from DICOMPlusLib.network.nodes import RetrieveMethod


class DimseTransport:
    kind = EndpointKind.DIMSE
    retrieve_methods = frozenset({RetrieveMethod.C_GET, RetrieveMethod.C_MOVE})

    def echo(self, node, *, calling_ae_title, timeout, cancel=None):
        from DICOMPlusLib.network.echo_dimse import echo_dimse

        return echo_dimse(node, calling_ae_title=calling_ae_title, timeout=timeout, cancel=cancel)

    def query(self, node, level, criteria, **kwargs):
        from DICOMPlusLib.network.find import find_dimse

        return find_dimse(node, level, criteria, **kwargs)

    def send(self, node, items, options, *, progress, cancel, failures):
        from DICOMPlusLib.network.send_dimse import send_dimse

        return send_dimse(node, items, options, progress=progress, cancel=cancel, failures=failures)

    def retrieve(self, node, db, request, method, options, *, progress, cancel):
        from DICOMPlusLib.network.retrieve_qr import retrieve_qr

        return retrieve_qr(node, db, request, method, options, progress=progress, cancel=cancel)
