"""DICOM networking: server nodes, echo, the C-STORE listener, send, query and retrieve, and the
sample PACS (DIMSE); DICOMweb lives in :mod:`dicomweb`.

The functions ``echo.echo``, ``send.send``, ``query.query`` and ``retrieve.retrieve`` share their
modules' names and are imported from there. Names are imported lazily so that ``import DICOMPlusLib.network.dicomweb`` (or the CLI) does not
pay for pynetdicom. Bulk C-STORE traffic (listener, send, echo) uses a direct, blocking
implementation of the Upper Layer protocol (:mod:`ul`, :mod:`scu`, :mod:`acceptor`), and so do
query and retrieve (:mod:`qrscu`: C-FIND, C-GET, C-MOVE, C-CANCEL); the Query/Retrieve SCP of
the sample PACS uses pynetdicom (:mod:`qrscp`).
"""

from __future__ import annotations

from DICOMPlusLib._lazy import lazy_getattr

_EXPORTS = {
    "RemoteNode": "nodes",
    "NodeStore": "nodes",
    "RetrieveMethod": "nodes",
    "TLSSettings": "nodes",
    "default_nodes_path": "nodes",
    "EchoResult": "echo",
    "EchoProblem": "echo",
    "Listener": "listener",
    "ListenerConfig": "listener",
    "ReceivedInstance": "storage",
    "SeriesComplete": "storage",
    "Subscription": "storage",
    "send_paths": "send",
    "send_from_database": "send",
    "SendItem": "send",
    "SendReport": "send",
    "FileResult": "send",
    "QueryRetrieveSCP": "qrscp",
    "QRConfig": "qrscp",
    "make_sample_data": "sample",
    "QueryResults": "query",
    "Selection": "query",
    "QuerySource": "sources",
    "DatabaseSource": "sources",
    "DimseSource": "sources",
    "DicomwebSource": "sources",
    "source_for": "sources",
    "RetrieveReport": "retrieve",
    "retrieve_job": "retrieve",
    "retrieve_selection": "retrieve",
    "set_node_limit": "retrieve",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
