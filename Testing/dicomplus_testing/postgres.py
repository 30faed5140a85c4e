"""A throwaway PostgreSQL server for the tests: Debian's ``postgresql`` package, a cluster made by
``initdb`` in a temporary folder, started with ``pg_ctl``'s server (``postgres``) on a free port of
127.0.0.1 and stopped by PID, like every other peer (:class:`~dicomplus_testing.peers.PeerProcess`).

PostgreSQL refuses to run as root; when the tests run as root (CI), the cluster belongs to an
unprivileged user (Debian's ``postgres``, else ``nobody``) and lives in a folder that user owns.
Authentication is ``trust`` on loopback only: the server accepts no other address.

Fixtures:

* ``postgres_server`` (session): the running server; ``postgres_server.url(dbname)``. Stopped with
  PostgreSQL's fast shutdown (SIGINT), which does not wait for clients.
* ``postgres_url`` (function): a new, empty database on it, as a ``postgresql://`` URL.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from dicomplus_testing.peers import LOOPBACK, PeerProcess, PeerStartError, port_accepts
from dicomplus_testing.util import free_port, missing

SUPERUSER = "dicomplus"


def postgres_bin(name: str) -> str:
    """The path of a PostgreSQL server program (``initdb``, ``postgres``): Debian keeps them in
    /usr/lib/postgresql/VERSION/bin, off PATH; the newest version wins."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    return shutil.which(name) or f"/usr/lib/postgresql/VERSION/bin/{name}"


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: ourselves unless we are root (``postgres`` refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PeerStartError("running as root and neither 'postgres' nor 'nobody' exists to run PostgreSQL")


class PostgresServer(PeerProcess):
    """One PostgreSQL cluster in its own folder (``initdb`` at the first start)."""

    name = "postgres"
    start_timeout = 60.0
    #: Fast shutdown: the server ends its sessions and stops cleanly at once. SIGTERM (smart
    #: shutdown) waits for every client to disconnect: with one connection a test left open, the
    #: stop waited out its 10 s before SIGKILL.
    stop_signal = signal.SIGINT

    def __init__(self, workdir: str | os.PathLike, port: int | None = None) -> None:
        super().__init__(workdir)
        self.executable = postgres_bin("postgres")
        self.port = port or free_port()
        self._fixed_ports = port is not None
        self.user = _server_user()
        # The data folder must belong to the server's user and nothing above it may hide it:
        # pytest's tmp folders are 0700 root, so a root run keeps the cluster under /tmp.
        if self.user is not None:
            self.cluster = Path(tempfile.mkdtemp(prefix="dicomplus-pg-"))
            os.chown(self.cluster, self.user.pw_uid, self.user.pw_gid)
        else:
            self.cluster = self.workdir / "cluster"
            self.cluster.mkdir(exist_ok=True)
        self.data = self.cluster / "data"

    def _as_user(self) -> dict:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def _prepare(self) -> None:
        if not self._fixed_ports:
            self.port = free_port()
        if (self.data / "PG_VERSION").exists():
            return
        initdb = postgres_bin("initdb")
        if not os.access(initdb, os.X_OK):
            missing(f"PostgreSQL's initdb ({initdb}; Debian package postgresql)")
        proc = subprocess.run(
            [initdb, "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
             "--no-sync"],
            capture_output=True, text=True, cwd=self.cluster, **self._as_user(),
        )  # fmt: skip
        if proc.returncode != 0:
            raise PeerStartError(f"initdb failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    def _argv(self) -> list[str]:
        # fsync off and a unix socket in the cluster folder: a test server, fast and private.
        return [
            self.executable, "-D", str(self.data), "-p", str(self.port), "-h", LOOPBACK,
            "-k", str(self.cluster), "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200",
        ]  # fmt: skip

    def _ready(self) -> bool:
        if not port_accepts(self.port):
            return False
        try:
            import psycopg
        except ImportError:  # the server is up; the tests that need psycopg will say so
            return True
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:  # "the database system is starting up"
            return False

    def _popen_kwargs(self) -> dict:
        return self._as_user()

    def ports(self) -> list[int]:
        return [self.port]

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)

    def remove(self) -> None:
        """Stop and delete the cluster folder."""
        self.stop()
        shutil.rmtree(self.cluster, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    return postgres_server.create_database()
