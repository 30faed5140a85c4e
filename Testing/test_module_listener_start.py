"""The panel's listener Start: the engine opens the database and binds the port while Slicer's
main thread goes on.

Before, the Start waited for ``engine.call("listen")`` on the main thread: milliseconds on a local
SQLite file, but the engine opens the database first, and a PostgreSQL server that takes its time
(or a slow disk) held Slicer for as long (up to the call's 30 s). Now the start is an engine job in
the Activity list: the click returns at once, the line says "Listener starting", the button waits,
and the line says where it listens once the engine has answered; a failure (a port in use) is
said on the line as before; a Stop, a Cancel or a switch of database meanwhile leaves no listener
running.

Everything is real: the module's panel on the harness (PySide6, MRML) in the PythonQt GIL mode,
the engine process, a PostgreSQL server whose ``settings`` table the test holds locked (the
engine's opening of the database reads it, so the start waits there for as long as the test
wants), and a real socket holding the port. No timed assertion: "never held" is the panel back
from the click with the engine's task still running and the GUI timer having fired meanwhile.
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

from dicomplus_testing.harness import engine_panel, fit_panel, screenshot, single_shot
from dicomplus_testing.peers import port_accepts
from dicomplus_testing.stalls import PROMPT, SETTLE
from dicomplus_testing.util import free_port
from DICOMPlusLib.errors import CancelledError, NetworkError

START = 60  # seconds a start (the engine's first opening of a database) may take on a loaded machine


@pytest.fixture
def pg_panel(dicomplus_module, pythonqt_gil, postgres_url, tmp_path, qtbot):
    """The panel on a PostgreSQL database (opened by the panel, so its schema is there)."""
    import qt

    qt.QSettings().setValue("DICOMPlus/StorePath", str(tmp_path / "store"))
    widget = engine_panel(dicomplus_module, qtbot, postgres_url, tmp_path / "nodes.json", network_open=True)
    assert widget.logic.database.info()["instances"] == 0  # opened here, before the engine opens it
    yield widget
    widget.cleanup()


@contextlib.contextmanager
def settings_locked(url):
    """Hold the database's ``settings`` table locked (ACCESS EXCLUSIVE, in an open transaction):
    the engine's opening of the database (its schema check reads it) waits until ``release()``
    (or the end of the block)."""
    import psycopg

    conn = psycopg.connect(url)
    try:
        conn.execute("LOCK TABLE settings IN ACCESS EXCLUSIVE MODE")
        yield conn.rollback
    finally:
        conn.close()


def click_start(network, port, states):
    network.listenerPortSpinBox.value = port
    network.listenerAETitleEdit.text = "STARTTEST"
    network.listenerChanged.connect(states.append)
    network.listenerButton.click()


def assert_starting(listener_panel, port):
    """What the panel shows while the engine starts the listener: the Activity row with its
    Cancel, the line, the button waiting, the form locked."""
    network, logic = listener_panel.network, listener_panel.logic
    [job] = listener_panel.activity.runningJobs()
    assert not job.finished and logic.listenerStarting() and not logic.listenerRunning()
    assert job.name == f"Start the listener on port {port}"
    assert network.listenerStatusLabel.text == f"Listener starting on port {port}..."
    assert network.listenerButton.text == "Starting listener..." and not network.listenerButton.enabled
    assert network.listenerButton.checked and not network.listenerPortSpinBox.enabled
    assert not network.listenerAETitleEdit.enabled and not network.autoLoadCheckBox.enabled
    return job


def assert_not_listening(listener_panel, port):
    network, logic = listener_panel.network, listener_panel.logic
    assert not logic.listenerStarting() and not logic.listenerRunning() and not logic.listenerStopping()
    assert network.listenerButton.text == "Start listener" and network.listenerButton.enabled
    assert not network.listenerButton.checked and network.listenerPortSpinBox.enabled
    assert logic.engine.call("listener") == {"running": False, "port": 0}
    assert not port_accepts(port, timeout=2)


def test_start_returns_while_the_engine_opens_the_database(
    pg_panel, pythonqt_gil, latency_probe, postgres_url, capsys
):
    listener_panel = pg_panel
    network, states, port = listener_panel.network, [], free_port()
    with settings_locked(postgres_url) as release:
        latency_probe.start()
        click_start(network, port, states)
        # back from the click with the engine still opening the database: the panel says so
        job = assert_starting(listener_panel, port)
        assert listener_panel.activity.rowText(job) == f"Start the listener on port {port}..."
        ticks = latency_probe.ticks
        pythonqt_gil.idle(SETTLE * 1000)
        assert not job.finished, "the engine's opening of the database did not wait for the lock"
        assert latency_probe.ticks > ticks, "the GUI timer did not fire while the start ran"
        assert states == [] and not port_accepts(port, timeout=2)
        worst = latency_probe.stop()  # from the click through the wait so far (reported, not asserted)
        listener_panel.ui.previewCollapsibleButton.collapsed = True
        fit_panel(listener_panel, 440)
        assert screenshot(network, "network-listener-starting").is_file()
        assert screenshot(listener_panel, "panel-listener-starting").is_file()  # with the Activity row
        with pytest.raises(NetworkError, match="already starting"):  # a second start meanwhile
            listener_panel.logic.startListener(port=free_port())
        release()
        pythonqt_gil.wait_until(lambda: states == [True], START)
    with capsys.disabled():
        print(f"\n[pythonqt] listener Start, the database held: worst GUI timer gap {worst:.0f} ms")
    assert job.error is None and job.result == port
    assert listener_panel.activity.rowText(job).startswith(f"Start the listener on port {port}: done in ")
    assert network.listenerStatusLabel.text == f"Listening as STARTTEST on port {port}"
    assert network.listenerButton.text == "Stop listener" and network.listenerButton.enabled
    assert listener_panel.logic.listenerRunning() and listener_panel.logic.listenerPort() == port
    assert port_accepts(port, timeout=2)


def test_a_cancelled_start_leaves_no_listener(pg_panel, pythonqt_gil, postgres_url):
    """The start's Cancel in Activity while the engine opens the database: once the opening
    ends the engine does not listen, the row says cancelled, the line that it did not start."""
    listener_panel = pg_panel
    network, states, port = listener_panel.network, [], free_port()
    with settings_locked(postgres_url) as release:
        click_start(network, port, states)
        job = assert_starting(listener_panel, port)
        listener_panel.activity.cancelButtonFor(job).click()
        pythonqt_gil.idle(SETTLE * 1000)
        release()  # the opening goes on, then the engine sees the cancel
        pythonqt_gil.wait_until(lambda: states == [False], START)
    assert isinstance(job.error, CancelledError), job.error
    assert listener_panel.activity.rowText(job) == f"Start the listener on port {port}: cancelled"
    assert network.listenerStatusLabel.text == "Listener not started: its start was cancelled"
    assert_not_listening(listener_panel, port)


def test_a_database_switch_while_the_listener_starts_waits_and_leaves_none(
    pg_panel, pythonqt_gil, latency_probe, postgres_url, tmp_path
):
    """``setDatabasePath`` while the start runs: the start is cancelled and waited for in a
    nested event loop (the panel live), so no listener stores into the database being left."""

    listener_panel = pg_panel
    network, states, port, seen = listener_panel.network, [], free_port(), []
    with settings_locked(postgres_url) as release:
        click_start(network, port, states)
        job = assert_starting(listener_panel, port)

        def release_the_database():  # the engine's opening ends while the switch waits
            seen.append((network.listenerStatusLabel.text, latency_probe.ticks, job.finished))
            release()

        latency_probe.start()
        timer = single_shot(SETTLE, release_the_database)
        try:
            listener_panel.logic.setDatabasePath(tmp_path / "other" / "dicomplus.sqlite")
        finally:
            latency_probe.stop()
            timer.stop()
    assert seen, "the timer never fired during the switch: the main thread was held"
    text, ticks, finished = seen[0]
    assert text == f"Listener starting on port {port}..." and ticks > 0 and not finished
    assert job.finished and isinstance(job.error, CancelledError), job.error
    assert listener_panel.logic.databasePath() == str(tmp_path / "other" / "dicomplus.sqlite")
    pythonqt_gil.wait_until(lambda: states == [False], PROMPT)
    assert_not_listening(listener_panel, port)


def test_a_port_in_use_is_said_on_the_line(listener_panel, pythonqt_gil):
    network, states, port = listener_panel.network, [], free_port()
    taken = socket.create_server(("", port))  # another program holds the port
    try:
        click_start(network, port, states)
        job = assert_starting(listener_panel, port)
        pythonqt_gil.wait_until(lambda: states == [False], START)
    finally:
        taken.close()
    text = network.listenerStatusLabel.text
    assert text.startswith("Listener could not start: port ") and "already in use" in text, text
    assert isinstance(job.error, NetworkError) and "already in use" in str(job.error)
    assert listener_panel.activity.rowText(job).startswith(
        f"Start the listener on port {port}: failed: port "
    )
    assert not listener_panel.logic.listenerStarting() and not listener_panel.logic.listenerRunning()
    assert network.listenerButton.text == "Start listener" and network.listenerButton.enabled
    assert not network.listenerButton.checked and network.listenerPortSpinBox.enabled
    # once the port is free it starts
    network.listenerButton.click()
    pythonqt_gil.wait_until(lambda: states == [False, True], START)
    assert network.listenerStatusLabel.text == f"Listening as STARTTEST on port {port}"
    assert port_accepts(port, timeout=2)


def test_a_stop_that_reaches_the_engine_after_it_started_stops_it(listener_panel, pythonqt_gil):
    """The Stop's cancel can reach the engine after the listener came up (the engine's answer is
    still in the pipe): the start ends done, and the logic then stops what started."""
    network, states, port = listener_panel.network, [], free_port()
    click_start(network, port, states)
    start = assert_starting(listener_panel, port)
    # the request to the engine (QProcess writes in the event loop), then the engine binds the
    # port; its answer waits in the pipe (the event loop is not run meanwhile)
    listener_panel.logic.engine.process.waitForBytesWritten(5000)
    deadline = time.monotonic() + START
    while not port_accepts(port, timeout=2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert port_accepts(port, timeout=2), "the engine never bound the port"
    assert not start.finished  # the host has not read the engine's answer
    network.setListenerRunning(False)  # as the module does (the button waits while starting)
    assert listener_panel.logic.listenerStarting()
    pythonqt_gil.wait_until(lambda: states == [False], START)
    assert start.error is None and start.result == port  # it did start...
    [stop, _start] = listener_panel.activity.jobs()  # ...and was stopped at once, shown in Activity
    assert stop.name == f"Stop the listener on port {port}" and stop.finished
    assert network.listenerStatusLabel.text == "Listener stopped"
    assert_not_listening(listener_panel, port)
