"""Search at scale: 10M instances (study, instance level) and 1M real headers (any tag), SQLite vs PostgreSQL.

Two bench databases, each on SQLite and on PostgreSQL (DICOMPlusLib/database/synthetic_scale.py,
direct inserts, built once under bench/_work/search_scale and rebuilt only when the builder's
version changes):

- **A**: 200,000 studies / 400,000 series / 10,000,000 instances with stub headers;
- **B**: 1,000,000 instances with real headers (one real file's header a series, from every folder
  of ../shared/data/series*/manifest.json beside the repository, or $DICOMPLUS_REAL_DATA; UIDs,
  names, IDs and dates rewritten).

Every candidate of a kind runs the same queries, drawn at random once, through the library's own
search (``Database.search``, what the CLI and Slicer call), in this process:

- ``*-study``: 100 study-level queries on A: PatientName wildcard + StudyDate range +
  ModalitiesInStudy, limit 100 (target p95 < 50 ms on both back ends);
- ``*-instance``: 100 instance-level queries on A, by SeriesInstanceUID (target p95 < 5 ms);
- ``*-anytag``: 100 study-level queries on B by a text tag that is no column (Manufacturer,
  ProtocolName, StationName...), limit 100 (target PostgreSQL p95 < 200 ms). A timed round of
  ``pg-anytag`` runs the first ``ANYTAG_ROUND`` of them; each is one exact key, which
  PostgreSQL answers from the terms of each series (``series_terms``, schema version 4: a B
  built by an older schema gets them on open, timed and printed, outside the rounds). SQLite
  scans the stored headers in Python (seconds a query): its latency is taken on the first
  ``SQLITE_ANYTAG_SAMPLE`` queries, once each without a warm-up, and printed beside
  PostgreSQL's; it is not in the rounds;
- ``cli-*``: one study query as a whole ``dicomplus --db ... search`` process on A.

Before the rounds, each query is run once as a warm-up, then once timed: p50/p95 per back end and
kind are printed. The PostgreSQL server is a cluster in the work folder (Debian's ``postgresql``,
started as the tests start theirs, stopped by PID at the end).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

from bench.runner import BenchError, Benchmark, Candidate

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DICOMPLUS_REAL_DATA") or REPO.parent / "shared" / "data")
QUERIES = 100
ANYTAG_ROUND = 20
#: SQLite's any-tag search reads the stored headers in Python (seconds a query on B): it is
#: timed on this many of the queries, once each, and stays out of the timed rounds.
SQLITE_ANYTAG_SAMPLE = 5
#: Tags that are no column, with values taken from the real headers.
ANYTAG_KEYS = (
    "Manufacturer",
    "ManufacturerModelName",
    "ProtocolName",
    "StationName",
    "InstitutionName",
    "ScanningSequence",
    "SoftwareVersions",
)


def _postgres(work_dir: Path):
    sys.path.insert(0, str(REPO / "Testing"))
    from dicomplus_testing.postgres import PostgresServer

    class BenchPostgres(PostgresServer):
        """The tests' server with its cluster kept in the work folder (the built databases are
        reused by the next run) and room for bulk loads and index builds."""

        def __init__(self, folder: Path) -> None:
            super().__init__(folder)
            if self.user is not None:
                os.rmdir(self.cluster)  # the temporary folder the tests' server made
                self.cluster = folder / "cluster"
                self.cluster.mkdir(exist_ok=True)
                os.chown(self.cluster, self.user.pw_uid, self.user.pw_gid)
                self.data = self.cluster / "data"

        def _argv(self) -> list[str]:
            return [*super()._argv(), "-c", "shared_buffers=1GB", "-c", "max_wal_size=8GB",
                    "-c", "maintenance_work_mem=1GB", "-c", "checkpoint_timeout=30min"]  # fmt: skip

    server = BenchPostgres((work_dir / "postgres").resolve())
    server.start()
    return server


def _database_url(server, name: str) -> str:
    from DICOMPlusLib.database.synthetic_scale import create_database

    create_database(server.url("postgres"), name)
    return server.url(name)


def _folders() -> list[Path]:
    out = []
    for manifest in sorted(DATA.glob("series*/manifest.json")):
        for entry in json.loads(manifest.read_text())["series"]:
            out.append(manifest.parent / entry.get("folder", entry["id"]))
    return [f for f in out if f.is_dir()]


def study_queries(spec, seed: int = 3) -> list[dict[str, str]]:
    """The same study-level queries as ``bench search`` (name wildcard, date range, modality)."""
    from bench.search import make_queries

    return make_queries(seed)


def instance_queries(spec, seed: int = 4) -> list[dict[str, str]]:
    from DICOMPlusLib.database.synthetic_scale import series_uid

    rng = random.Random(seed)
    return [
        {"SeriesInstanceUID": series_uid(rng.randrange(spec.studies), rng.randrange(spec.series_per_study))}
        for _ in range(QUERIES)
    ]


def anytag_queries(templates, seed: int = 5) -> list[dict[str, str]]:
    """Keys on tags that are no column, with values some templates have (so some studies match)."""
    pool = set()
    for t in templates:
        elements = json.loads(t.elements)
        for keyword in ANYTAG_KEYS:
            values = elements.get(keyword) or []
            if len(values) == 1 and values[0] and "\\" not in values[0]:
                pool.add((keyword, values[0]))
    pool_list = sorted(pool)
    rng = random.Random(seed)
    return [dict([rng.choice(pool_list)]) for _ in range(QUERIES)]


def timed(db, level: str, queries, limit: int | None) -> list[float]:
    out = []
    for q in queries:
        t = time.perf_counter()
        db.search(level, q, limit=limit)
        out.append(time.perf_counter() - t)
    return out


def latencies(db, level: str, queries, limit: int | None) -> list[float]:
    """Each query once as a warm-up, then once timed; seconds, sorted."""
    timed(db, level, queries, limit)
    return sorted(timed(db, level, queries, limit))


def summary(name: str, samples: list[float], target_ms: float | None) -> str:
    p50 = statistics.median(samples) * 1e3
    p95 = samples[max(0, round(len(samples) * 0.95) - 1)] * 1e3
    goal = (
        ""
        if target_ms is None
        else f" (target p95 < {target_ms:g} ms: {'met' if p95 < target_ms else 'NOT met'})"
    )
    return f"  {name:<18} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms  max {samples[-1] * 1e3:8.2f} ms{goal}"


def _size(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def benchmark(work_dir: Path) -> Benchmark:
    from DICOMPlusLib.database import Database
    from DICOMPlusLib.database.postgres import PostgresDatabase
    from DICOMPlusLib.database.synthetic_scale import (
        SPEC_A,
        SPEC_B,
        build_postgres,
        build_sqlite,
        postgres_size,
        sqlite_size,
        templates_from,
    )

    spec_a, spec_b = SPEC_A, SPEC_B
    server = _postgres(work_dir)
    try:
        templates = templates_from(_folders())
        if not templates:
            raise BenchError(
                f"no real DICOM series under {DATA} (series*/manifest.json): set DICOMPLUS_REAL_DATA"
            )
        built = {}
        for label, spec, tmpl in (("A", spec_a, None), ("B", spec_b, templates)):
            folder = work_dir / f"{label.lower()}-sqlite"
            info = build_sqlite(folder, spec, tmpl)
            built[f"{label} sqlite"] = (info, sqlite_size(folder))
            url = _database_url(server, f"scale_{label.lower()}")
            info = build_postgres(url, spec, tmpl, store=work_dir / f"{label.lower()}-store")
            built[f"{label} postgresql"] = (info, postgres_size(url))
        print(f"search_scale: databases ({len(templates)} real header templates for B):")
        for name, (info, size) in built.items():
            print(
                f"  {name:<13} {info['instances']:>11,} instances {info['series']:>8,} series"
                f" {info['studies']:>8,} studies  {_size(size)} on disk, built in {info['seconds']:.0f} s"
            )
        dbs = {}
        for name, open_db, target in (
            ("sqlite-a", Database, work_dir / "a-sqlite"),
            ("pg-a", PostgresDatabase, server.url("scale_a")),
            ("sqlite-b", Database, work_dir / "b-sqlite"),
            ("pg-b", PostgresDatabase, server.url("scale_b")),
        ):
            started = time.monotonic()
            dbs[name] = open_db(target)  # type: ignore[operator]
            if time.monotonic() - started > 1:  # a database built by an older schema
                print(f"  {name}: schema migrated on open in {time.monotonic() - started:.0f} s")
    except BaseException:
        server.stop()
        raise
    study = study_queries(spec_a)
    instance = instance_queries(spec_a)
    anytag = anytag_queries(templates)
    print("search_scale: single-query latency, each query once after a warm-up pass:")
    for kind, queries, level, limit, target, pg_target in (
        ("study", study, "study", 100, 50, 50),
        ("instance", instance, "instance", None, 5, 5),
        ("anytag", anytag, "study", 100, None, 200),
    ):
        shape = "b" if kind == "anytag" else "a"
        for backend in ("sqlite", "pg"):
            if kind == "anytag" and backend == "sqlite":
                samples = sorted(timed(dbs["sqlite-b"], level, queries[:SQLITE_ANYTAG_SAMPLE], limit))
                print(
                    summary(f"sqlite-{kind}", samples, None)
                    + f"  over {len(samples)} queries (header scan in Python)"
                )
                continue
            samples = latencies(dbs[f"{backend}-{shape}"], level, queries, limit)
            hits = statistics.median(
                len(dbs[f"{backend}-{shape}"].search(level, q, limit=limit)) for q in queries[:20]
            )
            print(summary(f"{backend}-{kind}", samples, target if backend == "sqlite" else pg_target)
                  + f"  hits median {hits:g}")  # fmt: skip

    def run(db, level, queries, limit):
        def go() -> None:
            for q in queries:
                db.search(level, q, limit=limit)

        return go

    cli = [sys.executable, "-m", "DICOMPlusLib.cli"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    one = study[0]
    keys = [f"{k}={v}" for k, v in one.items()]
    candidates = [
        Candidate("sqlite-study", function=run(dbs["sqlite-a"], "study", study, 100),
                  label=f"{QUERIES} study queries, SQLite, A"),
        Candidate("pg-study", function=run(dbs["pg-a"], "study", study, 100),
                  label=f"{QUERIES} study queries, PostgreSQL, A"),
        Candidate("sqlite-instance", function=run(dbs["sqlite-a"], "instance", instance, None),
                  label=f"{QUERIES} instance queries by series, SQLite, A"),
        Candidate("pg-instance", function=run(dbs["pg-a"], "instance", instance, None),
                  label=f"{QUERIES} instance queries by series, PostgreSQL, A"),
        Candidate("pg-anytag", function=run(dbs["pg-b"], "study", anytag[:ANYTAG_ROUND], 100),
                  label=f"{ANYTAG_ROUND} any-tag study queries, PostgreSQL (series terms), B"),
        Candidate("cli-sqlite", command=[*cli, "--db", str(work_dir / "a-sqlite"), "search", "--limit", "100",
                                         *keys], cwd=REPO, env=env,
                  label=f"dicomplus --db A.sqlite search --limit 100 {' '.join(keys)}"),
        Candidate("cli-pg", command=[*cli, "--db", server.url("scale_a"), "search", "--limit", "100", *keys],
                  cwd=REPO, env=env, label="dicomplus --db postgresql://.../scale_a search (same keys)"),
    ]  # fmt: skip

    def cleanup() -> None:
        for db in dbs.values():
            db.close()
        server.stop()

    return Benchmark(
        name="search_scale",
        description="search on 10M instances (A) and 1M real headers (B), SQLite vs PostgreSQL",
        candidates=candidates,
        reference="sqlite-study",
        pairs=[("pg-instance", "sqlite-instance"), ("cli-pg", "cli-sqlite")],
        cleanup=cleanup,
    )
