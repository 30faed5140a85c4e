"""Many writers into one PostgreSQL index: four ``dicomplus listen`` processes sharing a database
and a store, each receiving 500 instances from its own DCMTK storescu at the same time, 50 of
the instances sent to two listeners at once (issue #20's acceptance test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from dicomplus_testing.peers import LOOPBACK, tool_env
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.database import open_database

LISTENERS = 4
PER_LISTENER = 500
SHARED = 50  # instances sent to two listeners each


def _listen(url: str, store, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", url, "--store", str(store), "listen",
           "--port", str(port), "--host", LOOPBACK, "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    assert json.loads(line)["event"] == "listening", line
    return proc


def test_four_listeners_one_index_no_lost_or_doubled_instance(postgres_url, dcmtk, tmp_path):
    unique = LISTENERS * PER_LISTENER - SHARED  # 1,950
    files: list[str] = []
    for i in range(5):
        files += [
            str(p) for p in make_series(tmp_path / f"s{i}", n=unique // 5, rows=4, cols=4, seed=i).files
        ]
    assert len(files) == unique
    shared, own = files[:SHARED], files[SHARED:]
    per = (PER_LISTENER * LISTENERS - 2 * SHARED) // LISTENERS  # 475 of its own per listener
    batches = []
    for k in range(LISTENERS):
        pair = k // 2  # listeners 0 and 1 share the first 25, 2 and 3 the other 25
        both = shared[pair * SHARED // 2 : (pair + 1) * SHARED // 2]
        batches.append(both + own[k * per : (k + 1) * per])  # the shared ones first: at the same time
    assert [len(b) for b in batches] == [PER_LISTENER] * LISTENERS
    store = tmp_path / "store"
    with open_database(postgres_url, store=store):
        pass  # schema and store once, as an administrator would
    ports = [free_port() for _ in range(LISTENERS)]
    listeners = [_listen(postgres_url, store, port) for port in ports]
    senders = []
    try:
        for port, batch in zip(ports, batches, strict=True):
            senders.append(
                subprocess.Popen(
                    [dcmtk.path("storescu"), "-aec", "DICOMPLUS", LOOPBACK, str(port), *batch],
                    env=tool_env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        for sender in senders:
            out, _ = sender.communicate(timeout=600)
            assert sender.returncode == 0, out[-2000:]  # every C-STORE acknowledged with success
    finally:
        for proc in [*senders, *listeners]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in listeners:
            proc.wait(30)
            proc.stdout.close()
    assert [p.returncode for p in listeners] == [0] * LISTENERS
    with open_database(postgres_url) as db:
        rows = db._reader().execute("SELECT SOPInstanceUID, path FROM instances").fetchall()
        assert len(rows) == unique  # 1,950: no duplicate row, none lost
        import pydicom

        sent = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
        assert {r[0] for r in rows} == sent  # every acknowledged instance is found
        stored = sorted(str(p) for p in db.store.root.rglob("*.dcm"))
        assert sorted(r[1] for r in rows) == stored  # every file present once, no stray copy
        assert all(os.path.getsize(p) > 0 for p in stored)
        assert not list(db.store.root.glob(".incoming-*"))
        assert sum(s.NumberOfSeriesRelatedInstances for s in db.search("series")) == unique
