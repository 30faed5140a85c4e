"""The engine opens a database with the store each request names, as ``dicomplus --db X --store Y``
would: a host that changed its store folder (the module's ``DICOMPlus/StorePath``) after the
engine first opened the database gets its files in the new folder, not silently in the first one;
a request naming no store gets the database's own (SQLite: ``store/`` beside the file; PostgreSQL:
the folder it records). Driven through the engine protocol, on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib.database import open_database
from DICOMPlusLib.database.postgres import recorded_store
from DICOMPlusLib.engine.client import SubprocessEngine
from DICOMPlusLib.network.listener import ListenerConfig


def _import(engine: SubprocessEngine, db: str, folder: Path, store: Path | None = None) -> None:
    args = {"db": db, "paths": [str(folder)]}
    if store is not None:
        args["store"] = str(store)
    assert engine.call("import", args, timeout=60).added > 0


def _stored_in(engine: SubprocessEngine, db: str, series_uid: str) -> set[Path]:
    """The folders the instances of ``series_uid`` are stored under (their store's root)."""
    found = engine.call(
        "search", {"db": db, "level": "instance", "criteria": {"SeriesInstanceUID": series_uid}}
    )
    assert found
    return {Path(record.path).parent.parent for record in found}  # <store>/hh/<sha256>.dcm


def _three_series(tmp_path: Path):
    return [make_series(tmp_path / f"s{i}", n=2, rows=4, cols=4) for i in range(3)]


def test_sqlite_each_request_gets_the_store_it_names(tmp_path):
    db = str(tmp_path / "db" / "dicomplus.sqlite")
    first, second, third = _three_series(tmp_path)
    with SubprocessEngine() as engine:
        _import(engine, db, first.folder, store=tmp_path / "store-a")
        _import(engine, db, second.folder, store=tmp_path / "store-b")  # the user changed it
        _import(engine, db, third.folder)  # none named: store/ beside the file
        assert _stored_in(engine, db, first.series_uid) == {tmp_path / "store-a"}
        assert _stored_in(engine, db, second.series_uid) == {tmp_path / "store-b"}
        assert _stored_in(engine, db, third.series_uid) == {tmp_path / "db" / "store"}
        # The folder form of the same database, its own store named: the same opening's files.
        found = engine.call("search", {"db": str(tmp_path / "db"), "store": str(tmp_path / "db" / "store")})
        assert len(found) == 3


def test_postgresql_each_request_gets_the_store_it_names(postgres_url, tmp_path):
    first, second, third = _three_series(tmp_path)
    with SubprocessEngine() as engine:
        _import(engine, postgres_url, first.folder, store=tmp_path / "store-a")  # recorded: the first
        _import(engine, postgres_url, second.folder, store=tmp_path / "store-b")
        _import(engine, postgres_url, third.folder)  # none named: the one the database records
        assert _stored_in(engine, postgres_url, first.series_uid) == {tmp_path / "store-a"}
        assert _stored_in(engine, postgres_url, second.series_uid) == {tmp_path / "store-b"}
        assert _stored_in(engine, postgres_url, third.series_uid) == {tmp_path / "store-a"}
    assert recorded_store(postgres_url) == str(tmp_path / "store-a")
    with open_database(postgres_url) as db:  # another workstation: every file where its row says
        assert all(Path(r.path).is_file() for r in db.search("instance", {}))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_cli_and_the_engine_agree_on_the_store_when_none_is_given(backend, request, tmp_path):
    """``dicomplus`` and the engine (the module's work) name the same database without a store:
    both put its files in the same folder (docs/cli.md --store: ``store/`` beside an SQLite file;
    for PostgreSQL the folder the database records, given once)."""
    if backend == "sqlite":
        db, once, expected = str(tmp_path / "db"), [], tmp_path / "db" / "store"
    else:
        db, once, expected = (
            request.getfixturevalue("postgres_url"),
            ["--store", str(tmp_path / "shared")],
            tmp_path / "shared",
        )
    first, second, third = _three_series(tmp_path)
    _cli("--db", db, *once, "import", str(first.folder))
    with SubprocessEngine() as engine:
        _import(engine, db, second.folder)
        _cli("--db", db, "import", str(third.folder))  # while the engine has it open
        for series in (first, second, third):
            assert _stored_in(engine, db, series.series_uid) == {expected}


def _cli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "DICOMPlusLib.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_engine_answers_while_a_database_opens(tmp_path):
    """A PostgreSQL server that drops packets holds the opening of its database for the connect
    timeout (10 s): meanwhile the engine still answers other requests and Cancels (they wait for
    the engine's lock, which the opening held)."""
    with socket.socket() as full, socket.socket() as filler:
        full.bind((LOOPBACK, 0))
        full.listen(0)
        filler.connect(full.getsockname())  # fills the backlog: every further SYN is dropped
        url = f"postgresql://dicomplus@{LOOPBACK}:{full.getsockname()[1]}/nowhere"
        with SubprocessEngine() as engine:
            engine.call("ping", timeout=30)  # started and ready
            opening = engine.submit("search", {"db": url, "store": str(tmp_path / "store")})
            time.sleep(0.5)  # inside the connect
            started = time.monotonic()
            assert engine.call("ping", timeout=30)["pid"] == engine.pid
            assert time.monotonic() - started < 2
            assert opening.wait(30) and opening.error is not None  # the connect timed out


# -- openings no longer used are closed ---------------------------------------------------------
def _open_under(pid: int, folder: Path) -> set[str]:
    """The files under ``folder`` that process ``pid`` holds open (its /proc fd links)."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(fd)
            if target.startswith(f"{folder}{os.sep}"):
                held.add(target)
    return held


def test_switching_databases_closes_the_one_left(tmp_path):
    """A user switching the panel's database (or its store) leaves no file or SQLite connection
    open behind in the engine; an opening still in use (the listener's) stays until its work ends."""
    first, second, _ = _three_series(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    with SubprocessEngine() as engine:
        _import(engine, str(a / "dicomplus.sqlite"), first.folder)
        assert any(p.endswith("dicomplus.sqlite") for p in _open_under(engine.pid, a))
        _import(engine, str(b / "dicomplus.sqlite"), second.folder)  # the user picked another
        assert _open_under(engine.pid, a) == set()
        assert _open_under(engine.pid, b) != set()

        config = ListenerConfig(ae_title="SWITCH", port=0, host=LOOPBACK)
        engine.call("listen", {"db": str(a / "dicomplus.sqlite"), "config": config})
        engine.call("search", {"db": str(b / "dicomplus.sqlite")})  # the panel browses b meanwhile
        assert _open_under(engine.pid, a) != set()  # the listener stores into a
        engine.call("unlisten")
        assert _open_under(engine.pid, a) == set()
        # the same database with another store folder: one opening, the latest
        engine.call("search", {"db": str(b / "dicomplus.sqlite"), "store": str(tmp_path / "elsewhere")})
        engine.call("search", {"db": str(a / "dicomplus.sqlite")})
        assert _open_under(engine.pid, b) == set()


def test_switching_from_postgresql_closes_its_connections(postgres_server, postgres_url, tmp_path):
    import psycopg

    def connections() -> int:
        with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as conn:
            name = postgres_url.rsplit("/", 1)[1]
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()
            return row[0] if row else 0

    first, _, _ = _three_series(tmp_path)
    with SubprocessEngine() as engine:
        _import(engine, postgres_url, first.folder, store=tmp_path / "store")
        assert connections() > 0
        engine.call("search", {"db": str(tmp_path / "local" / "dicomplus.sqlite")})
        deadline = time.monotonic() + 30  # a server process ends a moment after its client closed
        while connections() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert connections() == 0
