"""The panel's listener Stop while a sender is mid-transfer: the main thread is never held.

The listener's stop gives the associations under way up to ``STOP_GRACE`` (10 s) to finish.
Before, the panel's Stop (and a switch of database, and the module's cleanup) waited for it in
``engine.call("unlisten")``, a blocking wait on the engine's pipe: Slicer froze up to 10 s and
nothing could cut it short. Now the stop is an engine job in the Activity list: the Stop returns
while the engine's task still runs, the GUI timer keeps firing, the line says the listener is
stopping, the job's Cancel aborts the association at once, and the line says stopped at the end.

Everything is real: the module's panel on the harness (PySide6, MRML) in the PythonQt GIL mode,
the engine process, and a sender on a loopback socket that sends a C-STORE-RQ and half of its
data set, then nothing (``test_listen_stop``), so its association can never finish on its own.
No timed assertion: "at once" is the A-ABORT read within PROMPT (5 s, half the grace), and
"never held" is the panel back from the call with the engine's task still running and the GUI
timer having fired meanwhile.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_listen_stop import _aborted, _partial_files, _stall_mid_store

from dicomplus_testing.harness import fit_panel, screenshot, single_shot
from dicomplus_testing.peers import port_accepts
from dicomplus_testing.stalls import PROMPT, SETTLE
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import free_port
from DICOMPlusLib.errors import CancelledError, NetworkError
from DICOMPlusLib.network.send import data_set_offset


@pytest.fixture(scope="module")
def half_a_data_set(tmp_path_factory) -> bytes:
    """What the stalled sender sends of its one instance's data set (as test_listen_stop's)."""
    series = make_series(tmp_path_factory.mktemp("panel-stop") / "s", n=1, rows=256, cols=256, seed=31)
    data = Path(series.files[0]).read_bytes()
    return data[data_set_offset(data[:4096]) :][:10000]


def start_and_stall(listener_panel, pythonqt_gil, half, tmp_path, states):
    """Start the listener from the panel and leave a sender halfway through a C-STORE."""
    network = listener_panel.network
    port = free_port()
    network.listenerPortSpinBox.value = port
    network.listenerAETitleEdit.text = "DICOMPLUS"
    network.listenerChanged.connect(states.append)
    network.listenerButton.click()  # the start is a job
    pythonqt_gil.wait_until(lambda: states == [True], 30)
    assert listener_panel.logic.listenerRunning(), network.listenerStatusLabel.text
    assoc = _stall_mid_store(port, half)
    pythonqt_gil.wait_until(lambda: bool(_partial_files(tmp_path)), 30)
    return port, assoc


def test_stop_returns_while_the_engine_lets_a_transfer_finish_and_cancel_aborts_it(
    listener_panel, pythonqt_gil, latency_probe, half_a_data_set, tmp_path, capsys
):
    network, activity, states = listener_panel.network, listener_panel.activity, []
    port, assoc = start_and_stall(listener_panel, pythonqt_gil, half_a_data_set, tmp_path, states)
    try:
        latency_probe.start()
        network.listenerButton.click()  # Stop
        # back from the Stop with the engine's stop still running (the grace), the panel says so
        [job] = activity.runningJobs()
        assert not job.finished and listener_panel.logic.listenerStopping()
        assert not listener_panel.logic.listenerRunning()
        assert network.listenerStatusLabel.text.startswith(
            "Listener stopping: transfers under way get up to 10 s"
        )
        assert network.listenerButton.text == "Stopping listener..." and not network.listenerButton.enabled
        assert not network.listenerButton.checked and not network.listenerPortSpinBox.enabled
        assert states == [True]
        ticks = latency_probe.ticks
        pythonqt_gil.wait_until(lambda: not port_accepts(port, timeout=2), 30)  # it no longer accepts
        pythonqt_gil.idle(SETTLE * 1000)
        assert not job.finished, "the stop did not wait for the association under way"
        assert latency_probe.ticks > ticks, "the GUI timer did not fire while the stop ran"
        worst = latency_probe.stop()  # from the click through the grace so far (reported, not asserted)
        assert activity.status() == "1 task running"
        assert activity.rowText(job) == f"Stop the listener on port {port}..."
        listener_panel.ui.previewCollapsibleButton.collapsed = True
        fit_panel(listener_panel, 440)
        assert screenshot(network, "network-listener-stopping").is_file()
        assert screenshot(listener_panel, "panel-listener-stopping").is_file()  # with the Activity row

        # a start meanwhile is refused, and says why
        network.listenerButton.enabled = True  # as a host could; the logic refuses too
        network.setListenerRunning(True)
        assert "still stopping" in network.listenerStatusLabel.text, network.listenerStatusLabel.text
        assert states == [True]
        assert not listener_panel.logic.listenerRunning() and listener_panel.logic.listenerStopping()
        assert network.listenerButton.text == "Stopping listener..." and not network.listenerButton.enabled
        with pytest.raises(NetworkError, match="still stopping"):
            listener_panel.logic.startListener(port=free_port())

        activity.cancelButtonFor(job).click()  # Cancel: abort now
        pythonqt_gil.wait_until(lambda: states == [True, False], PROMPT)  # the event loop sends it
        assert _aborted(assoc), "the stalled association got no A-ABORT"
    finally:
        assoc.stream.close()
    with capsys.disabled():
        print(
            f"\n[pythonqt] listener Stop, a sender stalled: worst GUI timer gap {worst:.0f} ms in the grace"
        )
    # the stop was cut short: the Activity row says cancelled, the line that it stopped all the same
    assert job.finished and isinstance(job.error, CancelledError), job.error
    assert activity.rowText(job) == f"Stop the listener on port {port}: cancelled"
    assert network.listenerStatusLabel.text == (
        "Listener stopped (its stop was cancelled: transfers under way were aborted)"
    )
    assert network.listenerButton.text == "Start listener" and network.listenerButton.enabled
    assert network.listenerPortSpinBox.enabled and not listener_panel.logic.listenerStopping()
    assert not _partial_files(tmp_path)
    assert listener_panel.logic.database.info()["instances"] == 0
    assert listener_panel.logic.engine.call("listener") == {"running": False, "port": 0}
    # and it starts again
    network.listenerButton.click()
    pythonqt_gil.wait_until(lambda: states == [True, False, True], 30)
    assert listener_panel.logic.listenerRunning()


def test_a_database_switch_waits_for_the_stop_with_the_gui_running(
    listener_panel, pythonqt_gil, latency_probe, half_a_data_set, tmp_path
):
    """``setDatabasePath`` must not switch while the listener still stores into the old
    database: it waits for the stop in a nested event loop, where the panel shows the stop (the
    line, the Activity row) and its Cancel works."""

    network, activity, states = listener_panel.network, listener_panel.activity, []
    _port, assoc = start_and_stall(listener_panel, pythonqt_gil, half_a_data_set, tmp_path, states)
    seen = []

    def cancel_the_stop():  # a user clicking Cancel in the Activity list during the switch
        [job] = activity.runningJobs()
        seen.append((job, network.listenerStatusLabel.text, latency_probe.ticks))
        activity.cancelButtonFor(job).click()

    latency_probe.start()
    timer = single_shot(SETTLE, cancel_the_stop)
    try:
        listener_panel.logic.setDatabasePath(tmp_path / "other" / "dicomplus.sqlite")
        latency_probe.stop()
        aborted = _aborted(assoc)
    finally:
        timer.stop()
        assoc.stream.close()
    assert seen, "the Cancel timer never fired during the switch: the main thread was held"
    job, text, ticks = seen[0]
    assert job.finished and ticks > 0, "the GUI timer did not fire while the switch waited"
    assert text.startswith("Listener stopping:"), text
    assert not listener_panel.logic.listenerStopping() and not listener_panel.logic.listenerRunning()
    assert listener_panel.logic.engine.call("listener") == {"running": False, "port": 0}
    assert aborted and not _partial_files(tmp_path)
    assert listener_panel.logic.databasePath() == str(tmp_path / "other" / "dicomplus.sqlite")
    pythonqt_gil.wait_until(lambda: states == [True, False], PROMPT)
    assert network.listenerStatusLabel.text.startswith("Listener stopped (its stop was cancelled"), (
        network.listenerStatusLabel.text
    )
    assert isinstance(job.error, CancelledError) and activity.rowText(job).endswith(": cancelled")


def test_cleanup_stops_at_once(listener_panel, pythonqt_gil, half_a_data_set, tmp_path):
    """The module going away (Slicer quitting, a reload) gives no grace: the panel is back at
    once with the stop sent, and the engine aborts the association."""
    states = []
    _port, assoc = start_and_stall(listener_panel, pythonqt_gil, half_a_data_set, tmp_path, states)
    logic = listener_panel.logic
    try:
        listener_panel.cleanup()
        assert logic.listenerStopping(), "cleanup returned after the stop had ended: it waited"
        # the event loop sends the stop (in Slicer: it goes on, or the engine's stdin closes)
        pythonqt_gil.wait_until(lambda: not logic.listenerStopping(), PROMPT)
        assert _aborted(assoc), "the stalled association got no A-ABORT"
    finally:
        assoc.stream.close()
    deadline = time.monotonic() + PROMPT
    while _partial_files(tmp_path) and time.monotonic() < deadline:
        pythonqt_gil.idle(50)
    assert not _partial_files(tmp_path)
