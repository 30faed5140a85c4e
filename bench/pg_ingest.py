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
"lost" must stay 0) and the databases are emptied; after the last round, the last run on each
database is checked the same way. A failed sender fails the run once every sender has ended
(never with senders still storing), and a run that stopped early is not checked again: its
last round is partial, and the instances its senders never sent are not lost. A failed sender
shows what the listeners logged that is not routine, and a failed check names the missing SOP
Instance UIDs, whether their files are in the store, the listeners' state and the end of their
logs (``logs/`` in the work folder; the listeners run with ``-v`` for that, their per-instance
lines on standard output dropped). The PostgreSQL server is a throwaway cluster started here
(Debian's ``postgresql``; ``initdb`` in the work folder, stopped by PID), as the tests do;
``fsync`` stays on here, unlike in the tests, so the figures are a real server's.
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
    expected = _sop_instance_uids(files)
    logs = work_dir / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)

    def listen(db: str, port: int, *extra: str, pgoptions: str = "") -> subprocess.Popen:
        argv = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", db, *extra, "listen", "--port", str(port),
                "--host", LOOPBACK, "--idle", "3600"]  # fmt: skip
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"PGOPTIONS": pgoptions} if pgoptions else {})}
        # Its log (-v: associations accepted, released, aborted and why; warnings), for a failed
        # sender or check; its standard output (-v: a line per instance) is dropped.
        with open(logs / f"listen-{port}.log", "wb") as log:
            return subprocess.Popen(
                [*argv, "-v"], cwd=REPO, env=child_env, stdout=subprocess.DEVNULL, stderr=log
            )

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
        # acknowledged), rather than showing up later as "lost" instances. The shell waits for
        # all of them first: exiting at the first failure would leave the others storing while
        # the bench goes on (and counts, and deletes).
        waits = "; ".join(
            f'wait $p{k} || {{ echo "sender {k} exited with $?" >&2; failed=1; }}' for k in range(SENDERS)
        )
        # On a failure, what the listeners said that is not routine (aborts and why, warnings).
        said = " ".join(f"'{logs / f'listen-{port}.log'}'" for port in ports)
        unusual = f"grep -h -v -e 'accepted (' -e 'released (' {said} | tail -n 25 >&2"
        return "failed=0; " + "; ".join(parts) + f"; {waits}; [ $failed = 0 ] || {unusual}; exit $failed"

    def check_and_empty(target: str, listeners: list[subprocess.Popen], **kwargs):
        state = {"runs": 0}

        def before() -> None:
            db = Database.open(target, **kwargs)
            try:
                if state["runs"]:
                    _check(db, target, expected, listeners, logs)
                for study in {r.StudyInstanceUID for r in db.search("study")}:
                    db.delete(study=study)
            finally:
                db.close()
            os.sync()
            state["runs"] += 1

        return before

    checks = [
        check_and_empty(str(sqlite_db), servers[:1]),
        check_and_empty(url, servers[1 : 1 + LISTENERS], store_dir=str(store)),
        check_and_empty(url, servers[1 + LISTENERS :], store_dir=str(store)),
    ]

    def verify() -> None:  # the last run on each database, checked like the others
        checks[0]()
        checks[2]()  # (postgresql-4-durable ran last on the PostgreSQL one)

    def cleanup() -> None:
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
        verify=verify,
        cleanup=cleanup,
    )


def _sop_instance_uids(files: list[Path]) -> dict[str, str]:
    """{SOP Instance UID: file name} of the files the senders send."""
    from DICOMPlusLib.database.parsing import parse_path

    return {str(parse_path(str(f), keep_data=False).values["SOPInstanceUID"]): f.name for f in files}


def _check(db, target: str, expected: dict[str, str], listeners: list[subprocess.Popen], logs: Path) -> None:
    """Every sent instance is in ``db`` once, with its file; else a BenchError that says which
    are missing, whether their files are in the store anyway, whether the listeners still run,
    and the end of their logs, so that a failure explains itself."""
    found = db.instance_paths()
    lost = [uid for uid in expected if uid not in found]
    extra = [uid for uid in found if uid not in expected]
    missing = [path for path in found.values() if not os.path.exists(path)]
    if not (lost or extra or missing):
        return
    lines = [f"{target}: {len(found)} of {len(expected)} instances found: {len(lost)} lost, {len(extra)} "
             f"not sent, {len(missing)} files missing"]  # fmt: skip
    for uid in lost[:10]:
        on_disk = "its file is in the store" if db.store.path_for(uid).exists() else "no file in the store"
        lines.append(f"  lost {uid} ({expected[uid]}): {on_disk}")
    lines += [f"  file missing: {path}" for path in missing[:10]]
    root = db.store.root
    stored = sum(1 for p in root.glob("*/*.dcm")) if root.exists() else 0
    temporary = [p.name for p in root.glob(".incoming-*")] if root.exists() else []
    lines.append(f"  store {root}: {stored} .dcm files, {len(temporary)} temporary {temporary[:5]}")
    for proc in listeners:
        port = proc.args[proc.args.index("--port") + 1]
        state = "running" if proc.poll() is None else f"exited with {proc.returncode}"
        log = logs / f"listen-{port}.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        lines.append(
            f"  listener on port {port}: {state}; log:\n    " + "\n    ".join(tail.splitlines()[-15:])
        )
    raise BenchError("\n".join(lines))
