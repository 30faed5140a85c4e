"""Run the sample PACS and say exactly how to reach it.

``dicomplus serve`` is the seed's "sample server that works so a typical user can test": it
serves a DICOMPlus database as a Query/Retrieve SCP (``--sample``: sample patients in a database
of their own, never the user's; only this computer can reach it unless ``--host`` says otherwise),
and prints the AE title, host and port a client must configure, the C-MOVE destinations it
knows, and ready-to-paste commands for DCMTK and an Orthanc ``DicomModalities`` entry.
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, DEFAULT_PORT
from DICOMPlusLib.network.pacs.qrscp import Destination, QRConfig, QueryRetrieveSCP

if TYPE_CHECKING:
    from DICOMPlusLib.database import DatabaseProtocol

#: A C-MOVE destination every DICOMPlus installation has: its own listener with default settings.
LOCAL_LISTENER = Destination(DEFAULT_AE_TITLE, "127.0.0.1", DEFAULT_PORT)


def destinations_with_default(destinations: list[Destination]) -> tuple[Destination, ...]:
    """The given destinations, plus the local DICOMPlus listener unless its AE title is taken."""
    if any(d.ae_title == LOCAL_LISTENER.ae_title for d in destinations):
        return tuple(destinations)
    return (*destinations, LOCAL_LISTENER)


def instructions(server: QueryRetrieveSCP, *, sample: bool = False) -> str:
    """What a client must configure, in plain text. ``sample``: the database holds the sample
    patients (only then is it called the sample PACS)."""
    info = server.describe()
    cfg = server.config
    everywhere = cfg.host in ("", "0.0.0.0", "::")
    host = "127.0.0.1" if everywhere else cfg.host
    if everywhere:
        others = f" (from other computers: {socket.gethostname()})"
    elif cfg.host.startswith("127.") or cfg.host == "::1":
        others = " (this computer only; --host 0.0.0.0 lets other computers in)"
    else:
        others = ""
    contents = info["contents"]
    calling = "any" if not cfg.allowed_calling_aets else ", ".join(cfg.allowed_calling_aets)
    called = f"{cfg.ae_title} only" if cfg.require_called_ae else "any (use --require-called-ae to check it)"
    lines = [
        f"DICOMPlus {'sample PACS' if sample else 'PACS'} is running. Configure your DICOM client with:",
        f"  AE title (called AE): {cfg.ae_title}",
        f"  Host:                 {host}{others}",
        f"  Port:                 {server.port}",
        f"  TLS:                  {'yes' if cfg.tls else 'no'}",
        f"  Calling AE titles:    {calling}",
        f"  Called AE titles:     {called}",
        "  Services:             C-ECHO, C-STORE, C-FIND/C-MOVE/C-GET (Patient Root and Study Root)",
        f"{'Sample database (not yours)' if sample else 'Database'}: {info['database']} ({contents['patients']} patients, {contents['studies']} studies, "
        f"{contents['series']} series, {contents['instances']} instances)",
        "C-MOVE destinations it knows (AE title -> host:port); any other destination is refused with 0xA801:",
    ]
    lines += [f"  {d.ae_title} -> {d.host}:{d.port}" for d in server.destinations] or ["  (none)"]
    lines += [
        "  Add one with --destination AE@HOST:PORT, e.g. the listener of the client that will receive.",
        "Try it (DCMTK):",
        f"  echoscu -aec {cfg.ae_title} {host} {server.port}",
        f"  findscu -S -k QueryRetrieveLevel=STUDY -k PatientName -k StudyInstanceUID -k StudyDescription "
        f"-aec {cfg.ae_title} -v {host} {server.port}",
        'Orthanc (add to "DicomModalities" in its configuration):',
        f'  "dicomplus-pacs": {json.dumps([cfg.ae_title, host, server.port])}',
    ]
    return "\n".join(lines)


def make_server(
    db: DatabaseProtocol,
    *,
    ae_title: str,
    port: int,
    host: str = "",
    destinations: list[Destination] | None = None,
    allowed_calling_aets: tuple[str, ...] = (),
    require_called_ae: bool = False,
) -> QueryRetrieveSCP:
    config = QRConfig(
        ae_title=ae_title,
        port=port,
        host=host,
        destinations=destinations_with_default(list(destinations or [])),
        allowed_calling_aets=allowed_calling_aets,
        require_called_ae=require_called_ae,
    )
    return QueryRetrieveSCP(db, config)
