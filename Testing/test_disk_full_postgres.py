"""A shared PostgreSQL index whose server's disk fills: ``import``, ``listen`` and ``retrieve``
into a ``postgresql://`` database whose tables sit in a tablespace on a real, small tmpfs
(mounted by the test as root, as test_disk_full.py does for the store and SQLite).

PostgreSQL says "could not extend file ...: No space left on device" (SQLSTATE 53100, disk_full)
and rolls the transaction back; the command says so in one line naming the database's server,
exits 1 (the listener answers 0xA700), keeps what was committed before, leaves no file in the
store without its row, and completes once there is room again.

A full WAL disk is not an error PostgreSQL returns: it PANICs, and its recovery, finding no room
either, shuts the server down (docs/reliability.md "A full disk"). That case runs on a server of
its own (``import`` and ``listen``); and a connection lost just after the server committed (what
such a crash can look like to the client) is made by a relay that drops the COMMIT's answer. A
server of its own is also stopped and started again under a running ``listen``: the write it
cut short is settled by the listener's next commit, not left until the listener ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import pydicom
import pytest
from pynetdicom import evt

from dicomplus_testing.full_disk import assert_one_line_full, dicomplus, fill, grow
from dicomplus_testing.peers import LOOPBACK, dicomplus_server
from dicomplus_testing.postgres import SUPERUSER, PostgresServer, _server_user, postgres_bin
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import free_port
from DICOMPlusLib.database import Database, open_database
from DICOMPlusLib.database.ingest import POLICY, IngestSource, StoreStatus
from DICOMPlusLib.network.pacs.qrscp import Destination, QRConfig, QueryRetrieveSCP

N = 960  # two of the import's transactions (480 each); a row and its index entries take ~3.6 KiB


@contextlib.contextmanager
def small_tablespace(server, size: str = "4m"):
    """A database on ``server`` whose tables go to a tablespace on a tmpfs of ``size`` (its
    catalog and the server's WAL stay on the server's own disk); yields (url, mount point)."""
    with tmpfs(size, server.user) as mount:
        yield from _in_tablespace(server, mount)


def _in_tablespace(server, mount: Path):
    import psycopg

    space = "t_" + uuid.uuid4().hex[:12]
    url = server.create_database()
    name = url.rsplit("/", 1)[1]
    try:
        (mount / "ts").mkdir()
        if server.user is not None:
            os.chown(mount / "ts", server.user.pw_uid, server.user.pw_gid)
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE {space} LOCATION '{mount / 'ts'}'")
            conn.execute(f'ALTER DATABASE "{name}" SET default_tablespace = {space}')
        yield url, mount
    finally:
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f"DROP TABLESPACE IF EXISTS {space}")


@contextlib.contextmanager
def tmpfs(size: str, user):
    """A tmpfs of ``size`` under /tmp (the server's user reaches it; pytest's folders are root's
    only), owned by ``user`` (a ``pwd`` entry; None: ourselves); unmounted on the way out."""
    mount = Path(tempfile.mkdtemp(prefix="dicomplus-pgfull-"))
    os.chmod(mount, 0o755)
    owner = [f"uid={user.pw_uid},gid={user.pw_gid}"] if user is not None else []
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", "mode=0700", *owner]),
                           "tmpfs", str(mount)], capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        mount.rmdir()
        pytest.fail(f"this test needs a real small file system, and mounting a tmpfs failed "
                    f"({proc.stderr.strip()}): run it as root (the CI does)")  # fmt: skip
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        with contextlib.suppress(OSError):
            mount.rmdir()


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return make_series(tmp_path_factory.mktemp("pgfull") / "ct", n=N, rows=16, cols=16,
                       patient_id="PGFULL1", seed=53)  # fmt: skip


def assert_consistent(url: str, store: Path) -> int:
    """Every row's file whole and readable, no file in the store without its row, no temporary
    left. Returns the number of instances."""
    with open_database(url, store=store) as db:
        rows = db._reader().execute("SELECT SOPInstanceUID, path, size FROM instances").fetchall()
    for sop, path, size in rows:
        assert os.path.getsize(path) == size, sop
        assert str(pydicom.dcmread(path).SOPInstanceUID) == sop
    stored = {os.path.realpath(p) for p in store.rglob("*.dcm")}
    inside = {os.path.realpath(p) for _, p, _ in rows}
    assert stored == inside, sorted(stored ^ inside)
    assert not [p for p in store.rglob("*") if p.is_file() and p.suffix != ".dcm" and "lock" not in p.name]
    return len(rows)


def test_import_into_a_full_database_server(postgres_server, series, tmp_path):
    store = tmp_path / "store"
    with small_tablespace(postgres_server) as (url, disk):
        open_database(url, store=store).close()  # the tables, on the small disk
        fill(disk, 2600 << 10)  # room for the first transaction, not the second
        code, _, err = dicomplus("--db", url, "--store", store, "import", series.folder)
        stored = assert_one_line_full(code, err, url, "files")
        assert stored is not None and 0 < stored < N, stored
        assert assert_consistent(url, store) == stored
        grow(disk)  # the rolled-back rows' pages stay in the tables until a vacuum: more room than before
        code, out, err = dicomplus("--db", url, "--store", store, "import", series.folder)
        assert code == 0, err
        assert f"added {N - stored}, unchanged {stored}" in out, out
        assert assert_consistent(url, store) == N


# -- receiving and retrieving: one instance per transaction ---------------------------------------
@pytest.fixture(scope="module")
def pacs(series, tmp_path_factory):
    """The Q/R SCP of ``dicomplus serve`` over the series (an SQLite database of its own)."""
    root = tmp_path_factory.mktemp("pgpacs")
    db = Database(root / "db")
    db.import_paths([series.folder], jobs=1)
    server = QueryRetrieveSCP(db, QRConfig(ae_title="FULLPACS", port=0, host=LOOPBACK,
                                           destinations=(Destination("DICOMPLUS", LOOPBACK, free_port()),)))  # fmt: skip
    server.start()
    requests: list[str] = []
    assert server._server is not None
    server._server.bind(evt.EVT_DIMSE_RECV, lambda event: requests.append(type(event.message).__name__))
    yield f"FULLPACS@{LOOPBACK}:{server.port}", requests
    server.stop()
    db.close()


def test_retrieve_into_a_full_database_server(postgres_server, series, pacs, tmp_path):
    """A C-GET whose instances the server cannot index: "stored N of M", the PACS asked once."""
    node, requests = pacs
    store = tmp_path / "store"
    with small_tablespace(postgres_server) as (url, disk):
        open_database(url, store=store).close()
        filler = fill(disk, 320 << 10)
        argv = [
            "--db",
            url,
            "--store",
            store,
            "retrieve",
            node,
            "--study",
            series.study_uid,
            "--method",
            "get",
        ]
        requests.clear()
        code, _, err = dicomplus(*argv, timeout=300)
        stored = assert_one_line_full(code, err, url, "instances")
        assert stored is not None and 0 < stored < N, stored
        assert [r for r in requests if r == "C_GET_RQ"] == ["C_GET_RQ"], requests
        assert assert_consistent(url, store) == stored
        filler.unlink()
        code, out, err = dicomplus(*argv, timeout=300)
        assert code == 0, err
        assert f"({stored} already here), complete" in out, out
        assert assert_consistent(url, store) == N


def test_listen_into_a_full_database_server(postgres_server, series, dcmtk, tmp_path):
    """storescu into ``listen``: 0xA700 for each instance the server cannot index, one line on
    stderr naming the server's disk, every instance answered Success in the index and the store."""
    port = free_port()
    store = tmp_path / "store"
    files = series.files[:200]
    with small_tablespace(postgres_server) as (url, disk):
        open_database(url, store=store).close()
        filler = fill(disk, 320 << 10)
        argv = ["--db", url, "--store", store, "listen", "--port", port, "--host", LOOPBACK]
        with dicomplus_server(*argv, port=port) as proc:
            answers = _store(dcmtk, port, *files)
            stored = answers.count("Success")
            assert 0 < stored < len(files), answers
            assert answers[stored:] == ["Refused: OutOfResources"] * (len(files) - stored), answers
            assert assert_consistent(url, store) == stored
            filler.unlink()
            dcmtk.run("storescu", "-aec", "ANY", LOOPBACK, port, *files)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, 130), err
        shown = url.split("://", 1)[1]
        assert err.splitlines() == [
            f"dicomplus: the disk of the PostgreSQL server holding postgresql://{shown} is full: instances sent "
            "to us are refused (0xA700, out of resources) until there is room; free space there"
        ], err
        assert assert_consistent(url, store) == len(files)


# -- the connection lost at the commit -----------------------------------------------------------
class CutAfterCommit:
    """A TCP relay to the server that, once armed, passes a COMMIT on, waits for the server's
    answer that it committed, and closes the connection instead of passing the answer back:
    what a client sees when the server crashes (a full WAL disk's PANIC) just after a commit.
    The close waits for ``release`` (set from the start unless ``hold``); a connection made
    while the server is down is closed at once, as a refused one."""

    def __init__(self, port: int, *, hold: bool = False) -> None:
        self.target = port
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cut = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection((LOOPBACK, self.target))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        cutting = False  # a COMMIT went to the server: its answers are held back
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
                    if self._answered(client, answer):
                        return

    def _answered(self, client: socket.socket, answer: bytes) -> bool:
        """What the relay does with the server's answers to the armed COMMIT, held back so far
        (``answer``); True when it is done and closes. Here: once the COMMIT's CommandComplete
        is among them (it committed), nothing is passed on, and the close waits for ``release``."""
        if b"COMMIT\0" not in answer:
            return False
        self.cut.set()
        self.release.wait(60)
        return True

    def close(self) -> None:
        self.listener.close()


def test_connection_lost_after_the_server_committed(postgres_server, series, tmp_path):
    """The commit's answer never comes: the instance's row is committed, so its file stays in
    the store (it was removed as a rolled-back transaction's, leaving a row without its file)."""
    url = postgres_server.create_database()
    relay = CutAfterCommit(postgres_server.port)
    try:
        through = url.replace(f":{postgres_server.port}/", f":{relay.port}/")
        store = tmp_path / "store"
        with open_database(through, store=store) as db:
            relay.armed.set()
            result = db.ingest.commit_bytes(series.files[0].read_bytes(), POLICY[IngestSource.LISTENER])
            assert relay.cut.is_set()
            assert result.status is StoreStatus.FAILED, result
        assert assert_consistent(url, store) == 1
    finally:
        relay.close()


# -- the server stopped under a running listener ---------------------------------------------------
def _stop_fast(server: PostgresServer) -> None:
    """PostgreSQL's fast shutdown (SIGINT): every session ends, its transaction rolled back."""
    assert server._proc is not None
    server._proc.send_signal(signal.SIGINT)
    server._proc.wait(60)


def _unsettled(store: Path) -> list[Path]:
    return [p for p in store.glob(".incoming-*") if p.name.endswith("-unsettled")]


def _store(dcmtk, port: int, *files: Path) -> list[str]:
    """DCMTK's storescu of ``files`` into the listener at ``port``: the status of each answer."""
    sent = dcmtk.run("storescu", "-v", "-nh", "-aec", "ANY", LOOPBACK, port, *files, check=False)
    answers = re.findall(r"Received Store Response \((.+?)\)", sent.stdout + sent.stderr)
    assert len(answers) == len(files), sent.stdout + sent.stderr
    return answers


def _store_one(dcmtk, port: int, path: Path) -> str:
    return _store(dcmtk, port, path)[0]


def _stop_listener(proc) -> None:
    """Ctrl-C: the listener ends without a traceback."""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130) and "Traceback" not in err, err


def test_a_listener_settles_a_lost_write_once_the_server_is_back(series, dcmtk, tmp_path):
    """A running ``listen`` whose PostgreSQL server stops in the middle of a write keeps that
    write's file under an in-flight name while the server is away; the next instance it stores
    once the server is back settles it, while it still runs: a file whose row the server never
    committed is removed (and stored again when it is sent again), one it committed stays."""
    server = PostgresServer(tmp_path / "pg", port=free_port())
    relay = CutAfterCommit(server.port, hold=True)
    try:
        server.start()
        url = server.create_database()
        through = url.replace(f":{server.port}/", f":{relay.port}/")
        store = tmp_path / "store"
        open_database(url, store=store).close()
        port = free_port()
        files = series.files
        with dicomplus_server("--db", through, "--store", store, "listen", "--port", port, "--host", LOOPBACK,
                              port=port) as proc:  # fmt: skip
            assert _store_one(dcmtk, port, files[0]) == "Success"
            # 1. The server stops while the listener's INSERT waits for a lock: never committed.
            import psycopg

            blocker, watch = psycopg.connect(url), psycopg.connect(url, autocommit=True)
            try:  # closed, not left by ``with``: the server ends them
                blocker.execute("LOCK TABLE instances IN EXCLUSIVE MODE")
                answers: list[str] = []
                sending = threading.Thread(target=lambda: answers.append(_store_one(dcmtk, port, files[1])))
                sending.start()
                waiting = (
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'instances'::regclass"
                )
                while not watch.execute(waiting).fetchone()[0]:
                    assert sending.is_alive(), answers
                    threading.Event().wait(0.05)
                _stop_fast(server)
                sending.join(60)
            finally:
                blocker.close()
                watch.close()
            assert answers and answers[0] != "Success", answers
            assert len(_unsettled(store)) == 1  # kept (the server may have committed it) until it can tell
            server.start()
            assert _store_one(dcmtk, port, files[2]) == "Success"
            assert not _unsettled(store)
            assert assert_consistent(url, store) == 2  # the first write's file is gone with its row
            assert _store_one(dcmtk, port, files[1]) == "Success"  # sent again: stored
            assert assert_consistent(url, store) == 3
            # 2. The server commits, and stops before its answer comes: the row and its file stay.
            relay.armed.set()
            answers.clear()
            sending = threading.Thread(target=lambda: answers.append(_store_one(dcmtk, port, files[3])))
            sending.start()
            assert relay.cut.wait(60)
            _stop_fast(server)
            relay.release.set()
            sending.join(60)
            assert answers and answers[0] != "Success", answers
            assert len(_unsettled(store)) == 1
            server.start()
            assert _store_one(dcmtk, port, files[4]) == "Success"
            assert not _unsettled(store)
            assert assert_consistent(url, store) == 5  # the one whose answer was lost is indexed
            _stop_listener(proc)
    finally:
        relay.close()
        server.remove()


# -- a full WAL disk: PostgreSQL stops --------------------------------------------------------------
class WalOnSmallDisk(PostgresServer):
    """A server of its own whose WAL (``pg_wal``, 1 MiB segments) is on ``wal`` and that syncs
    its commits (``synchronous_commit=on``, the server's default): a commit it answered is on
    the WAL's disk."""

    def __init__(self, workdir: Path, wal: Path) -> None:
        super().__init__(workdir, port=free_port())
        self.wal = wal

    def _prepare(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        proc = subprocess.run(
            [postgres_bin("initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync", f"--waldir={self.wal / 'pg_wal'}", "--wal-segsize=1"],
            capture_output=True, text=True, cwd=self.cluster, **self._as_user(),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr

    def _argv(self) -> list[str]:
        return [*super()._argv(), "-c", "synchronous_commit=on"]


def test_import_when_the_servers_wal_disk_fills(series, tmp_path):
    """PostgreSQL does not answer a full WAL disk with an error: the process writing the WAL
    PANICs, the server restarts, and its recovery, finding no room either, shuts it down. The
    import says the server went away (one line, exit 1); once there is room and the server is
    started again, every committed row has its file and no file is without its row (the
    batch's files were taken back, or are settled by the next command's sweep), and the same
    import completes."""
    with tmpfs("24m", _server_user()) as wal:
        _fill_the_wal(WalOnSmallDisk(tmp_path / "pg", wal), series, tmp_path / "store")


def _fill_the_wal(server: WalOnSmallDisk, series, store: Path) -> None:
    try:
        server.start()
        url = server.create_database()
        open_database(url, store=store).close()
        filler = fill(server.wal, 1 << 20)
        code, _, err = dicomplus("--db", url, "--store", store, "import", series.folder)
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"dicomplus: error: {url}: the PostgreSQL server failed or went away: "), err
        assert server._proc is not None
        server._proc.wait(60)  # recovery found no room: the server shut itself down
        assert "PANIC:" in server.log_text() and "No space left on device" in server.log_text()
        filler.unlink()
        server.start()
        kept = assert_consistent(url, store)
        code, out, err = dicomplus("--db", url, "--store", store, "import", series.folder)
        assert code == 0, err
        assert f"added {N - kept}, unchanged {kept}" in out, out
        assert assert_consistent(url, store) == N
    finally:
        server.remove()


def test_listen_when_the_servers_wal_disk_fills(series, dcmtk, tmp_path):
    """``listen`` into a server whose WAL disk fills: PostgreSQL stops itself (PANIC, then a
    recovery that finds no room); the instances sent meanwhile are refused, never answered
    Success, and the listener runs on. Once there is room and the server is started again, the
    same storescu stores every instance, and the write the server's stop cut short is settled by
    the running listener: every row has its file, no file is without its row, no in-flight name
    is left."""
    with tmpfs("24m", _server_user()) as wal:
        server = WalOnSmallDisk(tmp_path / "pg", wal)
        try:
            server.start()
            url = server.create_database()
            store = tmp_path / "store"
            open_database(url, store=store).close()
            filler = fill(server.wal, 1 << 20)
            port = free_port()
            files = series.files
            argv = ["--db", url, "--store", store, "listen", "--port", port, "--host", LOOPBACK]
            with dicomplus_server(*argv, port=port) as proc:
                answers = _store(dcmtk, port, *files)
                stored = answers.count("Success")
                assert 0 < stored < len(files) and "Success" not in answers[stored:], answers
                assert server._proc is not None
                server._proc.wait(60)  # recovery found no room: the server shut itself down
                assert "PANIC:" in server.log_text() and "No space left on device" in server.log_text()
                assert proc.poll() is None, proc.communicate()
                filler.unlink()
                server.start()
                answers = _store(dcmtk, port, *files)
                assert answers == ["Success"] * len(files), answers
                assert assert_consistent(url, store) == len(files)  # settled while it runs
                _stop_listener(proc)
        finally:
            server.remove()
