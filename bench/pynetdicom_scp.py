"""A plain pynetdicom storage SCP for the store benchmark: ``python -m bench.pynetdicom_scp PORT
FOLDER``. It writes each received data set to FOLDER as it came (raw bytes behind a File Meta
Information header), with pynetdicom's documented settings for speed: TCP_NODELAY and 256 KiB
PDUs. No database: this is the floor of a listener built on pynetdicom, measured beside ours."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from pydicom.filewriter import write_file_meta_info
    from pynetdicom import AE, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import Verification

    port, folder = int(argv[0]), Path(argv[1])
    folder.mkdir(parents=True, exist_ok=True)

    def nodelay(event) -> None:
        sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def store(event) -> int:
        path = folder / f"{event.request.AffectedSOPInstanceUID}.dcm"
        with open(path, "wb") as f:
            f.write(b"\x00" * 128 + b"DICM")
            write_file_meta_info(f, event.file_meta, enforce_standard=False)
            f.write(event.request.DataSet.getbuffer())
        return 0x0000

    ae = AE(ae_title="PYNETDICOM")
    ae.maximum_pdu_size = 256 * 1024
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    ae.start_server(
        ("127.0.0.1", port), block=True, evt_handlers=[(evt.EVT_CONN_OPEN, nodelay), (evt.EVT_C_STORE, store)]
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
