"""The engine as the module runs it: one qt.QProcess per session, read on the main thread."""

from __future__ import annotations

import os
import signal
import time

import pytest

from DICOMPlusLib.errors import EngineError


@pytest.fixture
def engine_module(dicomplus_module):
    import DICOMPlusWidgets

    return DICOMPlusWidgets.engine


def wait_for(qtbot, condition, timeout=15_000):
    qtbot.waitUntil(lambda: bool(condition()), timeout=timeout)


def test_one_engine_per_session(dicomplus_module, engine_module, tmp_path):
    first = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "a.sqlite")
    second = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "b.sqlite")
    assert first.engine is second.engine is engine_module.engine()
    assert first.engine.call("ping")["pid"] == second.engine.call("ping")["pid"] == first.engine.pid()


def test_a_crashed_engine_is_reported_and_restarts(dicomplus_module, engine_module, qtbot, tmp_path):
    logic = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db.sqlite")
    client = logic.engine
    pid = client.call("ping")["pid"]
    reasons = []
    client.exited.connect(reasons.append)
    job = client.submit("import", {"db": str(tmp_path / "db.sqlite"), "paths": [str(tmp_path / "nothing")]})
    os.kill(pid, signal.SIGKILL)
    wait_for(qtbot, lambda: reasons)
    assert "stopped unexpectedly" in reasons[0] and "starts again" in reasons[0]
    assert job.finished and (job.error is None or isinstance(job.error, EngineError))
    restarted = client.call("ping")["pid"]
    assert restarted != pid and client.starts >= 2


def test_the_gui_never_waits_for_the_engine(dicomplus_module, qtbot, tmp_path):
    """Submitting returns at once; the result arrives through QProcess signals."""
    logic = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db.sqlite")
    logic.engine.call("ping")
    started = time.monotonic()
    job = logic.importFolder([str(tmp_path)])
    assert time.monotonic() - started < 0.1 and not job.finished
    ended = []
    job.on_finished(ended.append)
    wait_for(qtbot, lambda: ended)
    assert ended == [job] and job.result.added == 0


def test_the_panel_says_when_the_engine_crashed_and_its_listener_stopped(dicomplus_module, qtbot, tmp_path):
    from dicomplus_testing.util import free_port

    widget = dicomplus_module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    widget.setLogic(dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db" / "dicomplus.sqlite"))
    try:
        widget.network.listenerPortSpinBox.value = free_port()
        widget.network.setListenerRunning(True)
        wait_for(qtbot, widget.logic.listenerRunning)  # the start is a job
        wait_for(qtbot, lambda: widget.network.listenerButton.text == "Stop listener")
        assert widget.network.listenerButton.checked
        os.kill(widget.logic.engine.pid(), signal.SIGKILL)
        wait_for(qtbot, lambda: "stopped unexpectedly" in widget.activity.status())
        assert not widget.logic.listenerRunning() and not widget.network.listenerButton.checked
        assert widget.logic.engine.call("ping")["pid"]  # and the next task starts a new engine
    finally:
        widget.cleanup()


def test_closing_a_logic_cancels_its_own_jobs_only(dicomplus_module, qtbot, tmp_path):
    """Panels and embedded widgets share the session's engine: closing one Logic leaves the
    others' work running."""
    from dicomplus_testing.synthetic import make_series

    folders = [make_series(tmp_path / f"s{i}", n=60, rows=64, cols=64, seed=i).folder for i in range(4)]
    mine = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "a" / "dicomplus.sqlite")
    other = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "b" / "dicomplus.sqlite")
    theirs = other.importFolder(folders)
    ours = mine.importFolder(folders)
    mine.close()
    wait_for(qtbot, lambda: theirs.finished and ours.finished, timeout=60_000)
    assert theirs.error is None and theirs.result.added == 240 and not theirs.result.cancelled
    assert mine._jobs == [] and other._jobs == []
