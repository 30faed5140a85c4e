"""The engine process (``python -m DICOMPlusLib.engine``) driven by a plain-Python host.

The Slicer module drives the same process over qt.QProcess (Testing/test_module_engine.py);
here the host is :class:`DICOMPlusLib.engine.client.SubprocessEngine`, so every operation, the
error path, cancel, the listener's notifications and the engine's lifetime rules are checked
without Qt.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib.database import Database
from DICOMPlusLib.engine import operations, protocol, tasks
from DICOMPlusLib.engine.client import SubprocessEngine, engine_environment
from DICOMPlusLib.engine.server import Engine
from DICOMPlusLib.errors import CancelledError, DICOMPlusError, EngineError, LoadError
from DICOMPlusLib.jobs import JobState
from DICOMPlusLib.network.listener import ListenerConfig


@pytest.fixture
def engine():
    with SubprocessEngine() as running:
        yield running


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_ping_says_who_answers(engine):
    answer = engine.call("ping")
    assert answer["pid"] == engine.pid != os.getpid()
    assert answer["version"] and engine.ready["pid"] == engine.pid


def test_import_then_load_hands_voxels_over_by_file(engine, tmp_path):
    series = make_series(tmp_path / "src", n=5, rows=12, cols=10)
    db_path = tmp_path / "db" / "dicomplus.sqlite"
    job = engine.submit("import", {"db": str(db_path), "paths": [series.folder]}, "Import")
    report = job.get(60)
    assert report.added == 5 and job.state is JobState.DONE
    assert job.poll().done == job.poll().total == 5  # progress arrived as events

    [(uid, [volume_file])] = engine.call("load", {"db": str(db_path), "series": [series.series_uid], "folder": str(tmp_path / "vox")}, timeout=60)  # fmt: skip
    assert uid == series.series_uid
    assert Path(volume_file.path).parent == tmp_path / "vox"
    volume = volume_file.open()
    assert isinstance(volume.array, np.memmap) and volume.array.shape == (5, 12, 10)
    with Database(db_path) as db:  # the same voxels as loading in this process
        from DICOMPlusLib.loading import load_series

        [here] = load_series(db, series.series_uid)
    np.testing.assert_array_equal(volume.array, here.array)
    np.testing.assert_allclose(volume.ijk_to_lps, here.ijk_to_lps)


def test_a_series_that_cannot_load_is_reported_and_the_others_load(engine, tmp_path):
    good = make_series(tmp_path / "good", n=3)
    db_path = str(tmp_path / "db.sqlite")
    engine.call("import", {"db": db_path, "paths": [good.folder]}, timeout=60)
    series = ["1.2.3.4.5.6.7", good.series_uid]
    loaded = engine.call(
        "load", {"db": db_path, "series": series, "folder": str(tmp_path / "vox")}, timeout=60
    )
    assert isinstance(loaded[0][1], LoadError) and "1.2.3.4.5.6.7" in str(loaded[0][1])
    assert len(loaded[1][1]) == 1


def test_errors_keep_their_type_and_message(engine):
    with pytest.raises(DICOMPlusError, match="on purpose"):
        engine.call("fail", {"message": "on purpose"})
    with pytest.raises(DICOMPlusError, match="no operation 'nonsense'"):
        engine.call("nonsense")
    error = protocol.decode_error({"type": "ZeroDivisionError", "message": "division by zero"})
    assert isinstance(error, EngineError) and "ZeroDivisionError" in str(error)


def test_cancel_stops_an_import_and_keeps_what_was_committed(engine, tmp_path):
    # Enough work that the import is still running when the cancel arrives (a copying import
    # copies on worker threads now: 400 files of 64x64 could be done before the cancel's round trip).
    folders = [make_series(tmp_path / f"s{i}", n=60, rows=128, cols=128).folder for i in range(20)]
    db_path = tmp_path / "db.sqlite"
    job = engine.submit("import", {"db": str(db_path), "paths": folders})
    deadline = time.monotonic() + 30
    while job.poll().done == 0 and not job.finished and time.monotonic() < deadline:
        time.sleep(0.005)
    job.cancel()
    assert job.wait(30)
    assert job.state is JobState.CANCELLED and isinstance(job.error, CancelledError)
    report = job.result
    assert report is not None and report.cancelled and report.added < 1200
    with Database(db_path) as db:
        assert db.info()["instances"] == report.added


@pytest.mark.parametrize("given", [True, False], ids=["host's folder", "engine's folder"])
def test_a_load_cancelled_once_its_pixels_are_read_ends_cancelled(given, tmp_path, monkeypatch):
    """A cancel that comes once the series is read, while the engine writes the volume for the
    host (seconds for a large one): the load ends cancelled and hands nothing over (before, done:
    the host added to the scene the volume the user had cancelled). The engine's own task code
    in this process; the cancel arrives with the last progress report (the series read), as a
    host's Cancel clicked then does. Without a folder from the host, the one the engine made is
    removed (before, left in the temporary folder)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    series = make_series(tmp_path / "src", n=3, rows=16, cols=16)
    db = tmp_path / "db" / "dicomplus.sqlite"
    with Database(db) as opened:
        assert opened.import_paths([series.folder]).added == 3
    out = io.BytesIO()
    engine = Engine(io.BytesIO(), out)
    args = {"db": str(db), "series": [series.series_uid]}
    if given:
        args["folder"] = str(tmp_path / "volumes")  # the host removes it (DICOMPlusLogic.loadEntries)
    task = tasks.Task(engine, 1, "load", args)
    reported = task.progress

    def progress(done: int, total: int, current: str = "") -> None:
        reported(done, total, current)
        if total and done >= total:
            task.cancel.cancel()  # the user's Cancel, once the series is read

    task.progress = progress  # type: ignore[method-assign]
    try:
        task.run()
    finally:
        engine.shutdown()
    assert operations.load is tasks.OPERATIONS["load"]  # the engine's own operation ran
    [event] = [e for e in map(protocol.loads, out.getvalue().splitlines()) if e.get("event") != "progress"]
    assert event["event"] == "cancelled", event
    assert "result" not in event or event["result"] is None
    assert not list((tmp_path / "tmp").iterdir()), "the engine left a folder in the temporary folder"


def test_the_listener_announces_completed_series(engine, tmp_path, dcmtk):
    series = make_series(tmp_path / "incoming", n=4)
    seen = []
    engine.subscribe("series_complete", seen.append)
    config = ListenerConfig(ae_title="ENGINETEST", port=0, host="127.0.0.1", series_idle=0.5)
    port = engine.call("listen", {"db": str(tmp_path / "db.sqlite"), "config": config})
    assert engine.call("listener") == {"running": True, "port": port}
    dcmtk.run("storescu", "-aec", "ENGINETEST", "127.0.0.1", port, *series.files)
    deadline = time.monotonic() + 15
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    engine.call("unlisten")
    assert [(e.series_instance_uid, e.count) for e in seen] == [(series.series_uid, 4)]
    assert engine.call("listener") == {"running": False, "port": 0}


def test_the_engine_stops_when_its_stdin_closes(tmp_path):
    engine = SubprocessEngine()
    engine.call("ping")
    started = time.monotonic()
    assert engine.close(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert not alive(engine.pid)


def test_stdout_carries_only_the_protocol(tmp_path):
    """A print in engine code (ours or a library's) goes to stderr, never into the protocol."""
    code = textwrap.dedent(
        """
        import sys
        from DICOMPlusLib.engine import server, tasks

        @tasks.operation("shout")
        def shout(task):
            print("hello from a library")
            return "ok"

        sys.exit(server.main())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=b'{"id": 1, "op": "shout", "args": {}}\n',
        capture_output=True,
        env=engine_environment(),
        timeout=60,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [m.get("event") for m in lines] == ["ready", "done"]
    assert lines[1]["result"] == "ok"
    assert b"hello from a library" in proc.stderr


HOST = """
import sys, time
sys.path.insert(0, {stubs!r}); sys.path.insert(0, {module!r})
import slicer  # the stubs: slicer.app is the Qt application, as in Slicer
app = slicer.app
from DICOMPlusWidgets import engine
client = engine.engine()
print(client.call("ping")["pid"], flush=True)
while True:
    app.processEvents()
    time.sleep(0.05)
"""


def test_killing_the_slicer_side_leaves_no_engine(tmp_path):
    """The acceptance: SIGKILL of the process that started the engine over QProcess (as Slicer
    does) leaves no engine process within 2 s."""
    host = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOST.format(
                stubs=str(REPO_ROOT / "Testing" / "slicer_stubs"), module=str(REPO_ROOT / "DICOMPlus")
            ),
        ],
        stdout=subprocess.PIPE,
        # the stubs' application folder (slicer-testing-*) goes in tmp_path: the host is killed,
        # so its atexit never removes it
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "TMPDIR": str(tmp_path)},
    )
    try:
        line = host.stdout.readline()
        engine_pid = int(line)
        assert alive(engine_pid)
        host.send_signal(signal.SIGKILL)
        host.wait(10)
        deadline = time.monotonic() + 2.0
        while alive(engine_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(engine_pid), "the engine outlived the process that started it"
        # killed, the host never ran its atexit: its application folder is left where the test
        # put it (removed with tmp_path), not in the machine's temporary folder
        assert list(tmp_path.glob("slicer-testing-*")), "the killed host's folder is not in tmp_path"
    finally:
        if host.poll() is None:
            host.kill()
