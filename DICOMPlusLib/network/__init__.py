"""DICOM networking, in layers (each imports only from the layers below it):

- transports: :mod:`dimse` (our Upper Layer and DIMSE stack: PDUs, messages, status table, SCU,
  acceptor, Q/R SCU) and :mod:`web` (the DICOMweb client: QIDO-RS, WADO-RS, STOW-RS);
- :mod:`pacs`: the sample PACS (``dicomplus serve``; its Q/R SCP uses pynetdicom);
- :mod:`endpoints` and :mod:`nodes` (a node is a name and its DIMSE and/or DICOMweb endpoints),
  :mod:`models` (what the services return and the options they take);
- what each transport does: :mod:`echo_dimse`, :mod:`echo_web`, :mod:`find` (C-FIND, QIDO-RS),
  :mod:`send_dimse` (C-STORE SCU), :mod:`retrieve_qr` (C-GET/C-MOVE, with :mod:`retrieve_plan`
  and :mod:`retrieve_dimse`), :mod:`retrieve_web` (WADO-RS), gathered by :mod:`transports`
  (one protocol, one transport per kind of endpoint, a registry);
- services on top, which ask :mod:`transports` for the node's transport: :mod:`echo`,
  :mod:`send`, :mod:`query`, :mod:`retrieve`, :mod:`sources` (one query interface over a
  database, a DIMSE node and a DICOMweb node); :mod:`listener` and :mod:`storage` (received
  instances into the database).

The command line for all of it lives in :mod:`DICOMPlusLib.cli`. Names are exported lazily, so
that importing the package (or the CLI) pays for neither pydicom nor pynetdicom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from DICOMPlusLib._lazy import lazy_getattr

if TYPE_CHECKING:  # the names as mypy sees them; at run time __getattr__ imports them on first use
    from DICOMPlusLib.network.echo_models import EchoProblem, EchoResult
    from DICOMPlusLib.network.endpoints import DicomwebEndpoint, DimseEndpoint, EndpointKind
    from DICOMPlusLib.network.listener import Listener, ListenerConfig
    from DICOMPlusLib.network.models import RetrieveOptions, RetrieveReport, Selection
    from DICOMPlusLib.network.nodes import (
        NodeStore,
        RemoteNode,
        RetrieveMethod,
        TLSSettings,
        default_nodes_path,
    )
    from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP
    from DICOMPlusLib.network.pacs.sample import make_sample_data
    from DICOMPlusLib.network.query import QueryResults
    from DICOMPlusLib.network.retrieve import retrieve_job, retrieve_selection, set_node_limit
    from DICOMPlusLib.network.send import send_from_database, send_paths
    from DICOMPlusLib.network.send_models import FileResult, SendItem, SendOptions, SendReport
    from DICOMPlusLib.network.sources import (
        DatabaseSource,
        DicomwebSource,
        DimseSource,
        QuerySource,
        source_for,
    )
    from DICOMPlusLib.network.storage import ReceivedInstance, SeriesComplete, Subscription
    from DICOMPlusLib.network.transports import Transport


_EXPORTS = {
    "RemoteNode": "nodes",
    "NodeStore": "nodes",
    "RetrieveMethod": "nodes",
    "TLSSettings": "nodes",
    "DimseEndpoint": "endpoints",
    "DicomwebEndpoint": "endpoints",
    "EndpointKind": "endpoints",
    "Transport": "transports",
    "SendOptions": "send_models",
    "RetrieveOptions": "models",
    "default_nodes_path": "nodes",
    "EchoResult": "echo_models",
    "EchoProblem": "echo_models",
    "Listener": "listener",
    "ListenerConfig": "listener",
    "ReceivedInstance": "storage",
    "SeriesComplete": "storage",
    "Subscription": "storage",
    "send_paths": "send",
    "send_from_database": "send",
    "SendItem": "send_models",
    "SendReport": "send_models",
    "FileResult": "send_models",
    "QueryRetrieveSCP": "pacs.qrscp",
    "QRConfig": "pacs.qrscp",
    "make_sample_data": "pacs.sample",
    "QueryResults": "query",
    "Selection": "models",
    "QuerySource": "sources",
    "DatabaseSource": "sources",
    "DimseSource": "sources",
    "DicomwebSource": "sources",
    "source_for": "sources",
    "RetrieveReport": "models",
    "retrieve_job": "retrieve",
    "retrieve_selection": "retrieve",
    "set_node_limit": "retrieve",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
