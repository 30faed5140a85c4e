"""Two Slicer-side readers (engine processes, as two workstations' DICOMPlus modules run them) on
one PostgreSQL index see a series the moment a listener in another process commits it: every
instance is found by both as soon as storescu returns, with no refresh and no wait (issue #20)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.database import open_database
from DICOMPlusLib.engine.client import SubprocessEngine


def _listen(url: str, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", url, "listen", "--port", str(port),
           "--host", LOOPBACK, "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    assert json.loads(line)["event"] == "listening", line
    return proc


def test_two_engines_see_a_series_as_soon_as_another_process_stored_it(postgres_url, dcmtk, tmp_path):
    with open_database(postgres_url, store=tmp_path / "store"):
        pass  # schema and store, once, as an administrator would
    series = make_series(tmp_path / "s", n=12, rows=8, cols=8, modality="MR")
    port = free_port()
    listener = _listen(postgres_url, port)
    try:
        with SubprocessEngine() as first, SubprocessEngine() as second:
            engines = (first, second)
            for engine in engines:  # open the database and search before anything arrives
                assert engine.call("search", {"db": postgres_url}, timeout=60) == []
            dcmtk.run("storescu", "-aec", "DICOMPLUS", LOOPBACK, port, *series.files)
            for engine in engines:  # right after the last C-STORE was acknowledged
                found = engine.call(
                    "search", {"db": postgres_url, "level": "instance",
                               "criteria": {"SeriesInstanceUID": series.series_uid}},
                )  # fmt: skip
                assert sorted(r.SOPInstanceUID for r in found) == sorted(series.sop_uids)
                [record] = engine.call("search", {"db": postgres_url, "level": "series"})
                assert record.NumberOfSeriesRelatedInstances == 12 and record.Modality == "MR"
                # Any tag, matched by the server in the JSONB elements.
                hits = engine.call("search", {"db": postgres_url, "criteria": {"RepetitionTime": "500"}})
                assert [s.StudyInstanceUID for s in hits] == [series.study_uid]
    finally:
        listener.send_signal(signal.SIGTERM)
        listener.wait(30)
        listener.stdout.close()
    assert listener.returncode == 0


def test_the_engine_opens_sqlite_paths_as_before(tmp_path):
    series = make_series(tmp_path / "s", n=2, rows=4, cols=4)
    with SubprocessEngine() as engine:
        engine.call("import", {"db": str(tmp_path / "db"), "paths": [str(series.folder)]}, timeout=60)
        [record] = engine.call("search", {"db": str(tmp_path / "db"), "level": "series"})
        assert record.SeriesInstanceUID == series.series_uid
