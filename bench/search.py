"""Search: study-level queries on a 1,000,000-instance database (name wildcard + date range + modality).

The database (20,000 studies, 40,000 series, 1,000,000 instances; synthetic rows written by SQL,
see DICOMPlusLib/database/synthetic.py) is built once under bench/_work/search. Each candidate runs the same 100
queries, drawn at random once: a PatientName wildcard, a StudyDate range (closed or open) and a
modality, at study level, with paging (limit 100). ``dicomplus`` is DICOMPlus's search;
``sql-floor`` runs a hand-written SQL query with the same conditions on the same connection (the
least any SQLite-based search can do). Before the timed rounds, the latency of each single query
is measured 5 times and p50/p95 printed. Target: p95 < 50 ms.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from bench.runner import Benchmark, Candidate
from bench.search_data import FAMILY, MODALITIES, build

INSTANCES = 1_000_000
QUERIES = 100


def make_queries(seed: int = 3) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(QUERIES):
        family = rng.choice(FAMILY)
        name = rng.choice(
            [family[:3] + "*", family + "*", "*" + family[-3:] + "*", family[0] + "?" + family[2:4] + "*"]
        )
        lo = rng.randint(2005, 2024)
        date = rng.choice([f"{lo}0101-{lo + rng.randint(0, 4)}1231", f"{lo}0101-", f"-{lo}1231"])
        out.append({"PatientName": name, "StudyDate": date, "ModalitiesInStudy": rng.choice(MODALITIES)})
    return out


def benchmark(work_dir: Path) -> Benchmark:
    from DICOMPlusLib.database import Database
    from DICOMPlusLib.database.synthetic import hand_written_study_search

    build(work_dir / "db", INSTANCES, per_series=25, series_per_study=2)
    db = Database(work_dir / "db")
    queries = make_queries()

    def dicomplus() -> None:
        for q in queries:
            db.search("study", q, limit=100)

    sql_floor = hand_written_study_search(db, queries)

    latencies = []
    for q in queries:
        samples = []
        for _ in range(5):
            t = time.perf_counter()
            db.search("study", q, limit=100)
            samples.append(time.perf_counter() - t)
        latencies.append(statistics.median(samples))
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1e3
    p95 = latencies[int(len(latencies) * 0.95) - 1] * 1e3
    hits = [len(db.search("study", q, limit=100)) for q in queries]
    print(
        f"search: single-query latency over {QUERIES} queries: p50 {p50:.2f} ms, p95 {p95:.2f} ms,"
        f" max {latencies[-1] * 1e3:.2f} ms (target p95 < 50 ms); hits per query median {statistics.median(hits)}"
    )
    return Benchmark(
        name="search",
        description=f"{QUERIES} study queries (name wildcard + date range + modality) on {INSTANCES:,} instances",
        candidates=[
            Candidate("sql-floor", function=sql_floor, label="hand-written SQL, same conditions"),
            Candidate("dicomplus", function=dicomplus, label="Database.search('study', ...)"),
        ],
        reference="sql-floor",
        work={"queries": QUERIES},
        cleanup=db.close,
    )
