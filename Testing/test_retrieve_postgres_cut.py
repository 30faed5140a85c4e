"""A C-GET retrieve into a PostgreSQL index whose connections the server ends while instances
arrive (``pg_terminate_backend``, what a failover, a restart or a cut network look like to the
client): the command and the in-process ``retrieve()`` end, every instance is stored and indexed
or reported not stored (no file without its row, no row without its file, no temporary left), a
failure says so in one line with exit 1, and the same retrieve again completes the study without
fetching again what was stored.

The server's backends of the retrieve's database are ended from a connection of the test's own,
each time the index has grown by some instances (so the ends fall between and inside
transactions: a batch of a pumped C-GET, a listing, a check). The PACS is DICOMPlus's own
Query/Retrieve SCP on a real socket, over an SQLite database of its own.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import uuid
from pathlib import Path

import pydicom
import pytest
from test_disk_full_postgres import CutAfterCommit, assert_consistent

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database, open_database
from DICOMPlusLib.database.ingest import POLICY, IngestSource, StoreStatus
from DICOMPlusLib.database.store import TMP_PREFIX
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP

pytest.importorskip("psycopg")

SERIES = 4
PER_SERIES = 40
N = SERIES * PER_SERIES
#: The index's sizes at which the retrieve's backends are ended.
CUTS = (12, 50, 95)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("pg-cut")
    study_uid = pydicom.uid.generate_uid()
    patient = f"PGCUT{uuid.uuid4().hex[:6]}"
    files: list[Path] = []
    sops: list[str] = []
    for i in range(SERIES):
        series = make_series(root / f"s{i}", n=PER_SERIES, rows=32, cols=32, patient_id=patient,
                             study_uid=study_uid, seed=160 + i)  # fmt: skip
        files += series.files
        sops += series.sop_uids
    pacs = Database(root / "pacs")
    pacs.import_paths([str(f) for f in files])
    server = QueryRetrieveSCP(pacs, QRConfig(ae_title="PGCUTPACS", port=0, host=LOOPBACK)).start()
    yield server, study_uid, set(sops), files
    server.stop()
    pacs.close()


def indexed(url: str, store: Path, *, unsettled: bool = False) -> set[str]:
    """The SOP Instance UIDs of the index; asserts that the store holds exactly the rows' files
    (each whole) and nothing else: no temporary, no file without its row. Read before a
    database is opened again (an open sweeps the store). ``unsettled``: a command whose server
    stayed away may have left the files of the writes it could not settle (the server may have
    committed them), under in-flight names of their own for the next command's sweep, with the
    stored names they have (the same file)."""
    import psycopg

    files = {os.path.realpath(p) for p in store.rglob("*") if p.is_file() and "lock" not in p.name}
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT SOPInstanceUID, path, size FROM instances").fetchall()
    for sop, path, size in rows:
        assert os.path.getsize(path) == size, sop
        assert str(pydicom.dcmread(path).SOPInstanceUID) == sop
    left = files - {os.path.realpath(p) for _, p, _ in rows}
    held = {p for p in left if unsettled and Path(p).name.startswith(TMP_PREFIX) and p.endswith("-unsettled")}
    for path in left - held:
        assert any(os.path.samefile(path, tmp) for tmp in held), sorted(left)
    return {sop for sop, _, _ in rows}


# -- the session ended just after the server committed -------------------------------------------
#: What a backend ended by pg_terminate_backend sends before it closes (PostgreSQL 55.7, ErrorResponse).
ADMIN_SHUTDOWN = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0"


class TerminatedAfterCommit(CutAfterCommit):
    """A relay that, once armed, passes a COMMIT on and the server's answers up to the COMMIT's
    CommandComplete, then, in place of the rest (the pipeline's ReadyForQuery), the FATAL
    message of a terminated backend, and closes: what the client sees when
    ``pg_terminate_backend`` reaches the backend as it commits (it checks for the interrupt once
    the commit is done)."""

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        cutting = False
        answer = b""
        with client, server:
            while True:
                ready, _, _ = select.select([client, server], [], [])
                if client in ready:
                    data = client.recv(65536)
                    if not data:
                        return
                    server.sendall(data)
                    if self.armed.is_set() and b"COMMIT\0" in data:
                        self.armed.clear()
                        cutting = True
                if server in ready:
                    data = server.recv(65536)
                    if not data:
                        return
                    if not cutting:
                        client.sendall(data)
                        continue
                    answer += data
                    at = 0
                    while len(answer) - at >= 5:  # whole messages: a type byte, a length
                        kind, size = answer[at : at + 1], struct.unpack("!I", answer[at + 1 : at + 5])[0]
                        if len(answer) - at < 1 + size:
                            break
                        body, at = answer[at + 5 : at + 1 + size], at + 1 + size
                        if kind == b"C" and body == b"COMMIT\0":
                            fatal = b"E" + struct.pack("!I", 4 + len(ADMIN_SHUTDOWN)) + ADMIN_SHUTDOWN
                            client.sendall(answer[:at] + fatal)
                            self.cut.set()
                            return


def test_a_session_ended_as_it_committed(postgres_server, study, tmp_path):
    """The server committed, then ended the session: psycopg, in the commit's pipeline, says
    "cannot exit pipeline mode while busy" before it has read the end of the stream, and took
    the connection for a working one; the transaction was then taken for rolled back and its
    file removed, leaving its committed row without the file. The connection is now closed on
    such an error and the database asked what it committed: the file stays."""
    url = postgres_server.create_database()
    relay = TerminatedAfterCommit(postgres_server.port)
    try:
        through = url.replace(f":{postgres_server.port}/", f":{relay.port}/")
        store = tmp_path / "store"
        data = Path(study[3][0]).read_bytes()
        with open_database(through, store=store) as db:
            relay.armed.set()
            result = db.ingest.commit_bytes(data, POLICY[IngestSource.C_GET])
            assert relay.cut.is_set()
            assert result.status is StoreStatus.FAILED, result  # the client cannot know it committed
            assert indexed(url, store) == {result.sop_instance_uid}  # and its file is there
            # sent again (a retrieve asks again for what failed): on a new connection, it
            # replaces the row the server had committed
            again = db.ingest.commit_bytes(data, POLICY[IngestSource.C_GET])
            assert again.status is StoreStatus.REPLACED, again
        assert assert_consistent(url, store) == 1
    finally:
        relay.close()
