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
import socket
import struct
import threading
import uuid
from pathlib import Path

import pydicom
import pytest
from test_disk_full_postgres import CutAfterCommit, assert_consistent

from dicomplus_testing.full_disk import dicomplus
from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database, open_database
from DICOMPlusLib.database.ingest import POLICY, IngestSource, StoreStatus
from DICOMPlusLib.database.store import TMP_PREFIX
from DICOMPlusLib.errors import DatabaseError
from DICOMPlusLib.network.models import RetrieveOptions
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP
from DICOMPlusLib.network.retrieve import retrieve

pytest.importorskip("psycopg")

SERIES = 4
PER_SERIES = 40
N = SERIES * PER_SERIES
#: The index's sizes at which the retrieve's backends are ended.
CUTS = (12, 45, 80)


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


class Terminator:
    """Ends every other backend of the database at ``url`` each time its ``instances`` table has
    reached one of ``at`` rows (polled from a connection of its own). With ``refuse``, the last
    time the database first stops taking connections (``ALLOW_CONNECTIONS false``, what a server
    that stays away looks like) until :meth:`allow`."""

    def __init__(self, url: str, at=CUTS, *, refuse: bool = False) -> None:
        self.url, self.at, self.refuse = url, list(at), refuse
        self.ended: list[tuple[int, int]] = []  # (rows seen, backends ended)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Terminator:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while self.at and not self._stop.wait(0.002):
                rows = conn.execute("SELECT count(*) FROM instances").fetchone()[0]
                if rows < self.at[0]:
                    continue
                self.at.pop(0)
                if self.refuse and not self.at:
                    self._allow(False)
                ended = conn.execute(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t"
                ).fetchone()[0]
                self.ended.append((rows, ended))

    def _allow(self, allow: bool) -> None:
        import psycopg

        where, name = self.url.rsplit("/", 1)
        with psycopg.connect(f"{where}/postgres", autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allow).lower()}')

    def allow(self) -> None:
        self._allow(True)


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


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dicomplus: error: "), err
    return lines[0]


@pytest.mark.parametrize("refuse", [False, True], ids=["back", "away"])
@pytest.mark.parametrize("parallel", [1, 4])
def test_a_command_whose_database_connections_are_ended(postgres_server, study, tmp_path, parallel, refuse):
    """``back``: the server takes connections again at once (a restart, a failover): the
    retrieve completes. ``away``: it does not (the last time): the command ends with one line
    and exit 1; the same command completes once the database is back."""
    server, study_uid, sops, _ = study
    url = postgres_server.create_database()
    store = tmp_path / "store"
    open_database(url, store=store).close()
    argv = ["--db", url, "--store", store, "retrieve", f"PGCUTPACS@{LOOPBACK}:{server.port}",
            "--study", study_uid, "--method", "get", "--parallel", parallel]  # fmt: skip
    with Terminator(url, refuse=refuse) as cut:
        code, out, err = dicomplus(*argv, timeout=300)
    print(cut.ended, code, out, err, sep="\n")
    assert len(cut.ended) == len(CUTS) and all(ended for _, ended in cut.ended), cut.ended
    cut.allow()  # for the check, which opens no database (no sweep)
    have = indexed(url, store, unsettled=refuse)
    assert have <= sops
    if refuse:
        assert code == 1 and have != sops, (code, err)
        assert f"{url.split('://')[1]}" in _one_error_line(err), err
    else:
        assert code == 0 and not err and have == sops, (code, err)
    code, out, err = dicomplus(*argv, timeout=300)
    assert code == 0, err
    assert indexed(url, store) == sops
    assert f"({len(have)} already here), complete" in out, out


@pytest.mark.parametrize("refuse", [False, True], ids=["back", "away"])
@pytest.mark.parametrize("parallel", [1, 4])
def test_the_api_whose_database_connections_are_ended(postgres_server, study, tmp_path, parallel, refuse):
    server, study_uid, sops, _ = study
    url = postgres_server.create_database()
    store = tmp_path / "store"
    node = RemoteNode("pgcut", DimseEndpoint("PGCUTPACS", LOOPBACK, server.port))
    options = RetrieveOptions(parallel=parallel)
    with open_database(url, store=store) as db:
        with Terminator(url, refuse=refuse) as cut:
            try:
                report = retrieve(node, db, study_uid=study_uid, method="get", options=options)
            except DatabaseError as exc:
                report = exc
        print(cut.ended, report, sep="\n")
        assert len(cut.ended) == len(CUTS) and all(ended for _, ended in cut.ended), cut.ended
        cut.allow()
        have = indexed(url, store, unsettled=refuse)
        assert have <= sops
        if isinstance(report, DatabaseError):
            assert refuse and url.split("://")[1] in str(report), report
        else:
            assert set(report.done) <= have, report.to_dict()
            assert have | set(report.failed) == sops, report.to_dict()
            assert report.complete == (have == sops) == (not refuse), report.to_dict()
        again = retrieve(node, db, study_uid=study_uid, method="get", options=options)
        assert again.complete, again.to_dict()
        assert set(again.done) == sops - have and set(again.skipped) == have, again.to_dict()
    open_database(url, store=store).close()  # its sweep: what the first left unsettled
    assert indexed(url, store) == sops


# -- the session ended just after the server committed -------------------------------------------
#: What a backend ended by pg_terminate_backend sends before it closes (PostgreSQL 55.7, ErrorResponse).
ADMIN_SHUTDOWN = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0"


class TerminatedAfterCommit(CutAfterCommit):
    """A relay that, once armed, passes a COMMIT on and the server's answers up to the COMMIT's
    CommandComplete, then, in place of the rest (the pipeline's ReadyForQuery), the FATAL
    message of a terminated backend, and closes: what the client sees when
    ``pg_terminate_backend`` reaches the backend as it commits (it checks for the interrupt once
    the commit is done)."""

    def _answered(self, client: socket.socket, answer: bytes) -> bool:
        at = 0
        while len(answer) - at >= 5:  # whole messages: a type byte, a length
            kind, size = answer[at : at + 1], struct.unpack("!I", answer[at + 1 : at + 5])[0]
            if len(answer) - at < 1 + size:
                return False
            body, at = answer[at + 5 : at + 1 + size], at + 1 + size
            if kind == b"C" and body == b"COMMIT\0":
                fatal = b"E" + struct.pack("!I", 4 + len(ADMIN_SHUTDOWN)) + ADMIN_SHUTDOWN
                client.sendall(answer[:at] + fatal)
                self.cut.set()
                return True
        return False


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
