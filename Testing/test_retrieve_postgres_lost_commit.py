"""A C-GET retrieve into a PostgreSQL index whose session the server ends in the middle of the
commit of a transaction holding ONE instance (a retrieve on one association commits each
instance alone): the instance was answered success to the PACS before its commit (the PACS
keeps its copy), its commit is rolled back and its file removed. The retrieve asks for it again,
as after a lost association, within its retries and after their back-off; a database that stays
away longer than that leaves the instance reported failed, with a warning that says why.

The server's backend is really ended (``pg_terminate_backend``) by a relay between the retrieve
and the server, when the retrieve sends the COMMIT of the transaction that writes a chosen
instance: the relay holds the COMMIT back until the backend is gone, so that nothing of the
transaction is committed, then passes it on and the server's FATAL message and end of stream
back. The PACS is DICOMPlus's own Query/Retrieve SCP on a real socket, over an SQLite database.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import uuid

import pydicom
import pytest
from test_disk_full_postgres import CutAfterCommit
from test_retrieve_postgres_cut import indexed

from dicomplus_testing.full_disk import dicomplus
from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database, open_database
from DICOMPlusLib.network.models import RetrieveOptions
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP
from DICOMPlusLib.network.retrieve import retrieve

pytest.importorskip("psycopg")

N = 5


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("pg-lost-commit")
    study_uid = pydicom.uid.generate_uid()
    made = make_series(root / "s", n=N, rows=16, cols=16, patient_id=f"PGLOST{uuid.uuid4().hex[:6]}",
                       study_uid=study_uid, seed=1717)  # fmt: skip
    pacs = Database(root / "pacs")
    pacs.import_paths([str(f) for f in made.files])
    server = QueryRetrieveSCP(pacs, QRConfig(ae_title="PGLOSTPACS", port=0, host=LOOPBACK)).start()
    yield server, study_uid, list(made.sop_uids), list(made.files)
    server.stop()
    pacs.close()


class EndsSessionAtCommit(CutAfterCommit):
    """A TCP relay to the PostgreSQL server at ``port`` (:class:`CutAfterCommit`'s listener and
    accept loop; it is never armed) that, ``times`` times, when a client sends the COMMIT of a
    transaction that named ``sop`` (since its BEGIN), ends that client's backend with
    ``pg_terminate_backend`` from a connection of its own (``url``, direct), waits until it is
    gone, and only then passes the COMMIT on (and the server's answer, the FATAL message of a
    terminated backend and the end of the stream, back)."""

    def __init__(self, port: int, url: str, sop: str, times: int) -> None:
        self.url, self.sop, self.times = url, sop.encode("ascii"), times
        self.ended = 0
        self._lock = threading.Lock()
        super().__init__(port)

    def through(self, url: str) -> str:
        return url.replace(f":{self.target}/", f":{self.port}/")

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        since = b""  # what the client sent since its last BEGIN
        with client, server:
            while True:
                ready, _, _ = select.select([client, server], [], [])
                if client in ready:
                    data = client.recv(65536)
                    if not data:
                        return
                    since = (since + data)[-(1 << 20) :]
                    begin = since.rfind(b"BEGIN\0")
                    if begin >= 0:
                        since = since[begin:]
                    if b"COMMIT\0" in data:
                        if self.sop in since and self._take():
                            self._terminate(server.getsockname()[1])
                        since = b""
                    with contextlib.suppress(OSError):  # the backend is gone: so is its socket
                        server.sendall(data)
                if server in ready:
                    try:
                        data = server.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    client.sendall(data)

    def _take(self) -> bool:
        with self._lock:
            if self.ended >= self.times:
                return False
            self.ended += 1
            return True

    def _terminate(self, client_port: int) -> None:
        """End the backend of the client at ``client_port``; ``pg_terminate_backend`` with a
        timeout returns once the backend is gone (true), or false after 30 s."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            ended = conn.execute("SELECT pg_terminate_backend(pid, 30000) FROM pg_stat_activity "
                                 "WHERE client_port = %s", (client_port,)).fetchall()  # fmt: skip
        assert ended == [(True,)], ended


@pytest.fixture
def index(postgres_server, series, tmp_path):
    """A new database (its URL, direct) and store holding the series' first instance (the
    same retrieve run again: its plan is known before the transfer, which asks for the other
    instances), and the relays that end the session of the commit of its third instance."""
    url = postgres_server.create_database()
    store = tmp_path / "store"
    with open_database(url, store=store) as db:
        db.import_paths([str(series[3][0])])
    relays: list[EndsSessionAtCommit] = []

    def relay(times: int) -> EndsSessionAtCommit:
        relays.append(EndsSessionAtCommit(postgres_server.port, url, series[2][2], times))
        return relays[-1]

    yield url, store, relay
    for r in relays:
        r.close()


def test_the_api_asks_again_for_an_instance_whose_commit_was_lost(index, series):
    """It was reported failed ("done 3 of 4, attempts 1"), though the server was back at once."""
    server, study_uid, sops, _ = series
    url, store, relay = index
    cut = relay(times=1)
    node = RemoteNode("pglost", DimseEndpoint("PGLOSTPACS", LOOPBACK, server.port))
    with open_database(cut.through(url), store=store) as db:
        report = retrieve(node, db, study_uid=study_uid, method="get",
                          options=RetrieveOptions(parallel=1, backoff=0.05))  # fmt: skip
    print(report.to_dict())
    assert cut.ended == 1
    assert report.complete and report.skipped == [sops[0]], report.to_dict()
    assert sorted(report.done) == sorted(sops[1:]) and not report.failed, report.to_dict()
    assert report.attempts == 2, report.to_dict()
    assert indexed(url, store) == set(sops)


def test_the_command_asks_again_for_an_instance_whose_commit_was_lost(index, series):
    server, study_uid, sops, _ = series
    url, store, relay = index
    cut = relay(times=1)
    code, out, err = dicomplus("--db", cut.through(url), "--store", store, "retrieve",
                               f"PGLOSTPACS@{LOOPBACK}:{server.port}", "--study", study_uid,
                               "--method", "get", "--parallel", 1, timeout=120)  # fmt: skip
    print(code, out, err, sep="\n")
    assert cut.ended == 1
    assert code == 0 and not err, (code, err)
    assert "(1 already here), complete" in out, out
    assert indexed(url, store) == set(sops)


def test_a_database_away_longer_than_the_retries(index, series):
    """Each commit of the instance loses its session: asked for once more (``retries=1``), it
    is then reported failed, saying why; the others are stored, and the retrieve ends."""
    server, study_uid, sops, _ = series
    url, store, relay = index
    cut = relay(times=1000)
    node = RemoteNode("pglost", DimseEndpoint("PGLOSTPACS", LOOPBACK, server.port))
    with open_database(cut.through(url), store=store) as db:
        report = retrieve(node, db, study_uid=study_uid, method="get",
                          options=RetrieveOptions(parallel=1, retries=1, backoff=0.05))  # fmt: skip
    print(report.to_dict())
    assert cut.ended >= 2  # each attempt's commit of the instance (and the checks of its file after)
    assert report.attempts == 2 and not report.complete, report.to_dict()
    assert sorted(report.done) == sorted(sops[1:2] + sops[3:]), report.to_dict()
    assert list(report.failed) == [sops[2]], report.to_dict()
    reason = report.failed[sops[2]]
    assert "not stored here" in reason and "went away" in reason, reason
    assert any("database was unavailable at each of 2 attempt(s)" in w for w in report.warnings), (
        report.warnings
    )
    open_database(url, store=store).close()  # its sweep: what the cut commits left to settle
    assert indexed(url, store) == set(sops) - {sops[2]}


def test_a_row_the_server_refuses_is_not_asked_for_again(index, series):
    """A commit that fails for another reason than a lost session (here a trigger of the server
    refusing the instance's row, SQLSTATE P0001) is not transient: reported failed after the one
    attempt, the instance is not asked for again."""
    import psycopg

    server, study_uid, sops, _ = series
    url, store, _ = index
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.sopinstanceuid = '{sops[2]}' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; "
            "RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON instances FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    node = RemoteNode("pglost", DimseEndpoint("PGLOSTPACS", LOOPBACK, server.port))
    with open_database(url, store=store) as db:
        report = retrieve(node, db, study_uid=study_uid, method="get",
                          options=RetrieveOptions(parallel=1, backoff=0.05))  # fmt: skip
    print(report.to_dict())
    assert report.attempts == 1 and not report.complete, report.to_dict()
    assert list(report.failed) == [sops[2]] and "refused by a trigger" in report.failed[sops[2]], (
        report.to_dict()
    )
    assert not report.warnings, report.warnings
    assert indexed(url, store) == set(sops) - {sops[2]}
