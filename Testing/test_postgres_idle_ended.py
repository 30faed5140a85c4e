"""PostgreSQL connections the server ended while they sat idle in DICOMPlus's pool: what a
restart, a failover, ``idle_session_timeout`` or a proxy that drops idle connections leave to a
running ``listen``, a retrieve or the Slicer-side engine. The server ends them from its side
(``pg_terminate_backend``, or its own idle timeout); the next instance stored must not be
refused for it (it was: its write went to the dead connection, 0xA700).

Real peers only: the test's PostgreSQL server, DCMTK's storescu, DICOMPlus's own Query/Retrieve
SCP on a real socket for the retrieve.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading

import pydicom
import pytest
from test_disk_full_postgres import assert_consistent

from dicomplus_testing.full_disk import dicomplus
from dicomplus_testing.peers import LOOPBACK, dicomplus_server
from dicomplus_testing.postgres import PostgresServer
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import free_port
from DICOMPlusLib.database import Database, open_database
from DICOMPlusLib.database.ingest import POLICY, IngestSource, StoreStatus
from DICOMPlusLib.database.pg_connection import PgConnection
from DICOMPlusLib.network.models import RetrieveOptions
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP
from DICOMPlusLib.network.retrieve import retrieve

psycopg = pytest.importorskip("psycopg")

#: How long a test waits at most for the server to end a session (it takes milliseconds).
WAIT_S = 10.0


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _admin(url: str):
    """A connection to the server's ``postgres`` database, outside the one under test (an idle
    timeout set on that one does not end it)."""
    return psycopg.connect(f"{url.rsplit('/', 1)[0]}/postgres", autocommit=True)


def sessions(url: str) -> set[int]:
    """The server processes of DICOMPlus's sessions on the database at ``url``."""
    with _admin(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'dicomplus'",
            (_name(url),),
        ).fetchall()
    return {pid for (pid,) in rows}


def terminate(url: str) -> int:
    """End every session on the database at ``url`` as a restart or a failover does (the server
    sends each a FATAL 57P01 and closes it), waiting until their processes are gone."""
    with _admin(url) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 30000) FROM pg_stat_activity WHERE datname = %s",
            (_name(url),),
        ).fetchall()
    assert all(ended for (ended,) in rows), rows
    return len(rows)


def wait_ended(url: str, pids: set[int]) -> None:
    """Wait until none of the sessions ``pids`` runs any more (the server's idle timeout)."""
    done = threading.Event()
    for _ in range(int(WAIT_S / 0.05)):
        if not sessions(url) & pids:
            return
        done.wait(0.05)
    with _admin(url) as conn:
        rows = conn.execute("SELECT pid, state, backend_start, query FROM pg_stat_activity WHERE datname = %s",
                            (_name(url),)).fetchall()  # fmt: skip
    pytest.fail(f"the server did not end the sessions {sorted(pids)} in {WAIT_S} s: {rows}")


@contextlib.contextmanager
def idle_timeout(url: str, value: str):
    """``idle_session_timeout`` on the database at ``url`` for the sessions opened inside (the
    server ends a session idle that long with FATAL 57P05)."""
    with _admin(url) as conn:
        conn.execute(f"ALTER DATABASE \"{_name(url)}\" SET idle_session_timeout = '{value}'")
    try:
        yield
    finally:
        with _admin(url) as conn:
            conn.execute(f'ALTER DATABASE "{_name(url)}" RESET idle_session_timeout')


def _store_one(dcmtk, port: int, path) -> str:
    """DCMTK's storescu of one file into the listener at ``port``: the status of its answer."""
    sent = dcmtk.run("storescu", "-v", "-nh", "-aec", "ANY", LOOPBACK, port, path, check=False)
    answers = re.findall(r"Received Store Response \((.+?)\)", sent.stdout + sent.stderr)
    assert len(answers) == 1, sent.stdout + sent.stderr
    return answers[0]


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return make_series(tmp_path_factory.mktemp("pgidle") / "ct", n=6, rows=8, cols=8,
                       patient_id="PGIDLE1", seed=17)  # fmt: skip


# -- the check itself ------------------------------------------------------------------------------
def _connection(url: str) -> tuple[PgConnection, int]:
    conn = PgConnection(psycopg.connect(url, autocommit=True, application_name="dicomplus"), "test")
    return conn, conn.execute("SELECT pg_backend_pid()").fetchone()[0]


@pytest.mark.parametrize("how", ["terminated", "timed-out"])
def test_the_check_sees_a_session_the_server_ended(postgres_url, how):
    """A session the server ended while its connection was idle is seen as ended before any
    statement is sent (psycopg does not know it yet: ``closed`` and ``broken`` are false), and
    the connection is closed; a working one is not."""
    conn, pid = _connection(postgres_url)
    try:
        assert not conn.ended_by_server()
        assert conn.execute("SELECT 1").fetchone()[0] == 1  # the check sent nothing, read nothing
        assert not conn.ended_by_server()
        if how == "terminated":
            terminate(postgres_url)
        else:
            conn.execute("SET idle_session_timeout = '100ms'")
            wait_ended(postgres_url, {pid})
        assert not conn.raw.closed and not conn.raw.broken  # what psycopg knows of it
        assert conn.ended_by_server()
        assert conn.broken  # closed: not to be used again
        assert conn.ended_by_server()
    finally:
        conn.close()


def test_the_check_leaves_a_transaction_alone(postgres_url):
    """Inside a transaction the connection is its owner's: it is not checked (nor closed)."""
    conn, _ = _connection(postgres_url)
    try:
        conn.raw.execute("BEGIN")
        assert not conn.ended_by_server()
        terminate(postgres_url)
        assert not conn.ended_by_server()
        assert not conn.raw.closed
    finally:
        conn.close()


# -- the pool ------------------------------------------------------------------------------------
def _commit(db, path) -> StoreStatus:
    return db.ingest.commit_bytes(path.read_bytes(), POLICY[IngestSource.LISTENER]).status


def test_a_working_connection_is_kept(postgres_url, series, tmp_path):
    """The check opens no connection while the server keeps the sessions: the same server
    processes serve every write and read."""
    with open_database(postgres_url, store=tmp_path / "store") as db:
        assert _commit(db, series.files[0]) is StoreStatus.STORED
        assert db.info()["instances"] == 1
        before, opened = sessions(postgres_url), len(db._connections)
        for path in series.files[1:4]:
            assert _commit(db, path) is StoreStatus.STORED
            assert db.info()["instances"] >= 2
        assert sessions(postgres_url) == before and len(db._connections) == opened


def test_a_write_after_the_sessions_ended(postgres_url, series, tmp_path):
    """Every session ended while idle: the next write and read open new ones and succeed, and
    the connections replaced are not kept."""
    with open_database(postgres_url, store=tmp_path / "store") as db:
        assert _commit(db, series.files[0]) is StoreStatus.STORED
        assert db.info()["instances"] == 1
        opened = len(db._connections)
        for i, path in enumerate(series.files[1:4], start=2):
            old = sessions(postgres_url)
            assert terminate(postgres_url) >= 1
            assert _commit(db, path) is StoreStatus.STORED
            assert db.info()["instances"] == i
            assert not sessions(postgres_url) & old
            assert len(db._connections) == opened
    assert assert_consistent(postgres_url, tmp_path / "store") == 4


# -- a running listener ----------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["terminated", "timed-out"])
def test_a_listener_after_the_server_ended_its_idle_sessions(postgres_url, series, dcmtk, tmp_path, how):
    """``listen`` on PostgreSQL: its sessions ended while it waits for the next instance (every
    backend terminated, as a restart or a failover does, three times; or the server's
    ``idle_session_timeout``, the sessions it opened at its start); the next C-STORE from
    storescu is stored (it was refused: 0xA700, "the PostgreSQL server failed or went away"),
    and nothing is said on stderr.

    The idle timeout ends only the sessions whose last statement was not in a pipeline: after
    one, psycopg's Flush message comes after the Sync, and the server, reading it, stops the
    idle timer without starting it again. The listener's writes are pipelines, so the timeout
    case is the first instance after its start."""
    store = tmp_path / "store"
    open_database(postgres_url, store=store).close()
    port = free_port()
    argv = ["--db", postgres_url, "--store", store, "listen", "--port", port, "--host", LOOPBACK]
    timeout = idle_timeout(postgres_url, "300ms") if how == "timed-out" else contextlib.nullcontext()
    files = series.files[:3] if how == "terminated" else series.files[:1]
    with timeout, dicomplus_server(*argv, port=port) as proc:
        for i, path in enumerate(files):
            pids = sessions(postgres_url)
            assert pids  # the listener's, from its start or its last instance
            if how == "terminated":
                terminate(postgres_url)
            else:
                wait_ended(postgres_url, pids)
            assert _store_one(dcmtk, port, path) == "Success", i
            assert not sessions(postgres_url) & pids  # stored through new sessions
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and not err, err
    assert assert_consistent(postgres_url, store) == len(files)


def test_a_listener_across_a_restart_of_the_server(series, dcmtk, tmp_path):
    """PostgreSQL stopped (fast shutdown: every session ended) and started again, on its own
    data and port, while ``listen`` waits: the next instance sent is stored."""
    server = PostgresServer(tmp_path / "pg", port=free_port())
    try:
        server.start()
        url = server.create_database()
        store = tmp_path / "store"
        open_database(url, store=store).close()
        port = free_port()
        argv = ["--db", url, "--store", store, "listen", "--port", port, "--host", LOOPBACK]
        with dicomplus_server(*argv, port=port) as proc:
            assert _store_one(dcmtk, port, series.files[0]) == "Success"
            assert server._proc is not None
            server._proc.send_signal(signal.SIGINT)  # fast shutdown
            server._proc.wait(60)
            server.start()
            assert _store_one(dcmtk, port, series.files[1]) == "Success"
            proc.terminate()
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and not err, err
        assert assert_consistent(url, store) == 2
    finally:
        server.remove()


# -- a retrieve, and the engine --------------------------------------------------------------------
@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pgidle-pacs")
    study_uid = pydicom.uid.generate_uid()
    parts = [make_series(root / f"s{i}", n=5, rows=8, cols=8, patient_id="PGIDLE2", study_uid=study_uid,
                         seed=170 + i) for i in range(2)]  # fmt: skip
    db = Database(root / "pacs")
    db.import_paths([str(f) for s in parts for f in s.files])
    server = QueryRetrieveSCP(db, QRConfig(ae_title="PGIDLEPACS", port=0, host=LOOPBACK)).start()
    yield server, study_uid, parts
    server.stop()
    db.close()


@pytest.mark.parametrize("parallel", [1, 4])
def test_a_retrieve_after_the_server_ended_its_idle_sessions(postgres_url, pacs, tmp_path, parallel):
    """A retrieve into a database whose pooled sessions the server ended since its last use (by
    the same process: Slicer's engine, a script): its plan and its first commit find them
    ended, and it completes in one attempt. Its first commit failed, and an instance that a
    transaction of its own held was not asked for again: the retrieve ended incomplete."""
    server, _, parts = pacs
    node = RemoteNode("pgidle", DimseEndpoint("PGIDLEPACS", LOOPBACK, server.port))
    options = RetrieveOptions(parallel=parallel)
    with open_database(postgres_url, store=tmp_path / "store") as db:
        first = retrieve(node, db, series_uids=parts[0].series_uid, method="get", options=options)
        assert first.complete and len(first.done) == 5, first.to_dict()
        terminate(postgres_url)
        second = retrieve(node, db, series_uids=parts[1].series_uid, method="get", options=options)
        assert second.complete and sorted(second.done) == sorted(parts[1].sop_uids), second.to_dict()
        assert second.attempts == 1 and not second.failed, second.to_dict()
        assert db.info()["instances"] == 10
    assert assert_consistent(postgres_url, tmp_path / "store") == 10


def test_a_retrieve_command_whose_sessions_end_after_its_plan(postgres_server, pacs, tmp_path):
    """``dicomplus retrieve``: the server ends the command's sessions, idle since it opened the
    database and planned the retrieve (C-FIND), when its first C-GET reaches the PACS, before
    any instance arrives. The retrieve completes in one attempt (its first transaction failed,
    and its instances were asked for again in a second)."""
    from pynetdicom import evt

    server, study_uid, _ = pacs
    url = postgres_server.create_database()
    store = tmp_path / "store"
    open_database(url, store=store).close()
    ended: list[int] = []

    def on_message(event) -> None:
        if type(event.message).__name__ == "C_GET_RQ" and not ended:
            ended.append(terminate(url))

    server._server.bind(evt.EVT_DIMSE_RECV, on_message)
    try:
        code, out, err = dicomplus("--db", url, "--store", store, "retrieve", f"PGIDLEPACS@{LOOPBACK}:{server.port}",
                                   "--study", study_uid, "--method", "get", "--json", timeout=300)  # fmt: skip
    finally:
        server._server.unbind(evt.EVT_DIMSE_RECV, on_message)
    assert ended and ended[0] >= 1, ended  # the command's sessions, ended before its first commit
    assert code == 0 and not err, (code, out, err)
    report = json.loads(out)
    assert report["complete"] and report["done"] == 10 and report["attempts"] == 1, report
    assert assert_consistent(url, store) == 10


def test_the_engine_after_the_server_ended_its_idle_sessions(postgres_url, series, tmp_path):
    """The Slicer-side engine keeps its database open between tasks: after its sessions were
    ended, its next search, import and delete work (the import failed: "the PostgreSQL server
    failed or went away")."""
    from DICOMPlusLib.engine.client import SubprocessEngine

    db = {"db": postgres_url, "store": str(tmp_path / "store")}
    with SubprocessEngine() as engine:
        engine.call("import", {**db, "paths": [str(series.files[0])]}, timeout=60)
        terminate(postgres_url)
        [record] = engine.call("search", {**db, "level": "series"}, timeout=60)
        assert record.NumberOfSeriesRelatedInstances == 1
        terminate(postgres_url)
        report = engine.call("import", {**db, "paths": [str(p) for p in series.files[1:3]]}, timeout=60)
        assert report.added == 2 and not report.skipped, report
        terminate(postgres_url)
        [deleted] = engine.call("delete", {**db, "entries": [("series", series.series_uid)]}, timeout=60)
        assert deleted.instances == 3, deleted
        assert engine.call("search", {**db, "level": "series"}, timeout=60) == []
    assert assert_consistent(postgres_url, tmp_path / "store") == 0
