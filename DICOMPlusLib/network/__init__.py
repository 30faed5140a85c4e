"""DICOM networking, in layers (each imports only from the layers below it):

- transports: :mod:`dimse` (our Upper Layer and DIMSE stack: PDUs, messages, status table, SCU,
  acceptor, Q/R SCU) and :mod:`web` (the DICOMweb client: QIDO-RS, WADO-RS, STOW-RS);
- :mod:`pacs`: the sample PACS (``dicomplus serve``; its Q/R SCP uses pynetdicom);
- services on top: :mod:`nodes` (server nodes), :mod:`echo`, :mod:`send`, :mod:`query`,
  :mod:`retrieve` (with :mod:`retrieve_plan`, :mod:`retrieve_dimse`, :mod:`retrieve_web`),
  :mod:`listener` and :mod:`storage` (received instances into the database), :mod:`sources`
  (one query interface over a database, a DIMSE node and a DICOMweb node).

The command line for all of it lives in :mod:`DICOMPlusLib.cli`. Names are exported lazily, so
that importing the package (or the CLI) pays for neither pydicom nor pynetdicom.
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
    "QueryRetrieveSCP": "pacs.qrscp",
    "QRConfig": "pacs.qrscp",
    "make_sample_data": "pacs.sample",
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
