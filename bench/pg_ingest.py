"""Ingest into one shared index: listeners on PostgreSQL vs one listener on SQLite (issue 20).

8 DCMTK ``storescu`` senders at once push the same 500 CT instances (526 kB each) to:

* ``sqlite-1`` (reference): one ``dicomplus listen`` process on an SQLite database, all 8 senders
  to it (SQLite has one writer at a time: more listener processes would only queue);
* ``postgresql-4``: four ``dicomplus listen`` processes on one PostgreSQL database and one shared
  store, two senders each, committing as SQLite's WAL mode with ``synchronous=NORMAL`` does (no
  flush per commit: ``synchronous_commit=off``; a crash loses at most the last moments, never
  consistency);
* ``postgresql-4-durable``: the same with a flush per commit (``synchronous_commit=on``, set for
  these listeners' sessions through ``PGOPTIONS``).

Every instance is stored, indexed and committed before its C-STORE response. Untimed before
each run: the previous run is checked (every instance found once, in the database and on disk:
"lost" must stay 0) and the databases are emptied. The PostgreSQL server is a throwaway cluster
started here (Debian's ``postgresql``; ``initdb`` in the work folder, stopped by PID), as the tests
do; ``fsync`` stays on here, unlike in the tests, so the figures are a real server's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.runner import BenchError, Benchmark, Candidate
from bench.store import FILES, LOOPBACK, REPO, STORESCU, _free_port, _wait_port, make_source

SENDERS = 8
LISTENERS = 4


def _postgres(work_dir: Path):
    sys.path.insert(0, str(REPO / "Testing"))
    from dicomplus_testing.postgres import PostgresServer

    class DurablePostgres(PostgresServer):
        def _argv(self) -> list[str]:  # the tests' server minus fsync=off and friends
            return [self.executable, "-D", str(self.data), "-p", str(self.port), "-h", LOOPBACK,
                    "-k", str(self.cluster), "-c", "max_connections=200", "-c", "synchronous_commit=off"]  # fmt: skip

    server = DurablePostgres(work_dir / "postgres")
    server.start()
    return server


def benchmark(work_dir: Path) -> Benchmark:
    from DICOMPlusLib.database import Database

    files = make_source(work_dir / "ct500")
    names = [str(f) for f in files]
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    server = _postgres(work_dir)
    url = server.create_database()
    store = work_dir / "pg-store"
    sqlite_db = work_dir / "db-sqlite"
    for path in (store, sqlite_db):
        shutil.rmtree(path, ignore_errors=True)
    env = {**os.environ, "TCP_NODELAY": "1"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}

    def listen(db: str, port: int, *extra: str, pgoptions: str = "") -> subprocess.Popen:
        argv = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", db, *extra, "listen", "--port", str(port),
                "--host", LOOPBACK, "--idle", "3600"]  # fmt: skip
        child_env = {**os.environ, "PGOPTIONS": pgoptions} if pgoptions else None
        return subprocess.Popen(argv, cwd=REPO, env=child_env, **quiet)

    sqlite_port = _free_port()
    pg_ports = [_free_port() for _ in range(LISTENERS)]
    durable_ports = [_free_port() for _ in range(LISTENERS)]
    servers = [listen(str(sqlite_db), sqlite_port)]
    servers += [listen(url, port, "--store", str(store)) for port in pg_ports]
    servers += [
        listen(url, port, "--store", str(store), pgoptions="-c synchronous_commit=on")
        for port in durable_ports
    ]
    try:
        for port, proc in zip([sqlite_port, *pg_ports, *durable_ports], servers, strict=True):
            _wait_port(port, proc)
    except BaseException:
        for proc in servers:
            proc.kill()
        server.remove()
        raise

    def senders(ports: list[int]) -> str:
        parts = []
        for k in range(SENDERS):
            chunk = " ".join(f"'{n}'" for n in names[k::SENDERS])
            parts.append(f"{STORESCU} -aec DICOMPLUS {LOOPBACK} {ports[k % len(ports)]} {chunk} & p{k}=$!")
        # Every sender's exit status is checked: a failed sender fails the run (a C-STORE not
        # acknowledged), rather than showing up later as "lost" instances.
        return "; ".join(parts) + "; " + "; ".join(f"wait $p{k} || exit 1" for k in range(SENDERS))

    def check_and_empty(target: str, **kwargs):
        state = {"runs": 0}

        def before() -> None:
            db = Database.open(target, **kwargs)
            try:
                if state["runs"]:
                    found = db.instance_paths()
                    lost = FILES - len(found)
                    missing = [p for p in found.values() if not os.path.exists(p)]
                    if lost or missing:
                        raise BenchError(f"{target}: {lost} instances lost, {len(missing)} files missing")
                for study in {r.StudyInstanceUID for r in db.search("study")}:
                    db.delete(study=study)
            finally:
                db.close()
            os.sync()
            state["runs"] += 1

        return before

    checks = [
        check_and_empty(str(sqlite_db)),
        check_and_empty(url, store_dir=str(store)),
        check_and_empty(url, store_dir=str(store)),
    ]

    def cleanup() -> None:
        try:
            checks[0]()  # the last run on each database, checked like the others
            checks[2]()  # (postgresql-4-durable ran last on the PostgreSQL one)
        finally:
            stop()

    def stop() -> None:
        for proc in servers:
            proc.terminate()
        for proc in servers:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.remove()

    return Benchmark(
        name="pg_ingest",
        description=f"{FILES} CT instances ({megabytes:.0f} MB) from {SENDERS} storescu senders at once, "
        "stored + indexed + committed before each response",
        candidates=[
            Candidate(
                "sqlite-1",
                command=senders([sqlite_port]),
                shell=True,
                env=env,
                before=checks[0],
                label=f"{SENDERS} storescu -> 1 dicomplus listen on SQLite",
            ),
            Candidate(
                "postgresql-4",
                command=senders(pg_ports),
                shell=True,
                env=env,
                before=checks[1],
                label=f"{SENDERS} storescu -> {LISTENERS} dicomplus listen on one PostgreSQL index",
            ),
            Candidate(
                "postgresql-4-durable",
                command=senders(durable_ports),
                shell=True,
                env=env,
                before=checks[2],
                label="the same, a flush per commit (synchronous_commit=on)",
            ),
        ],
        reference="sqlite-1",
        work={"files": FILES, "MB": megabytes},
        cleanup=cleanup,
    )
