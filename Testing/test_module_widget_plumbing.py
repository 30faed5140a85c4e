"""The plumbing under the DICOMPlus widgets: plain-Python signals, the worker queue, pixels to
screen. Most of it needs no Qt; the widgets' behaviour is tested in test_module_preview.py and
test_module_embed.py."""

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest


@pytest.fixture
def widgets(dicomplus_module):
    import DICOMPlusWidgets

    return DICOMPlusWidgets


# -- Signal ---------------------------------------------------------------------------------------


def test_signal_calls_slots_in_order_and_disconnects(widgets):
    signal = widgets.Signal(str, name="seriesSelected")
    calls = []
    first = lambda uid: calls.append(("first", uid))  # noqa: E731
    signal.connect(first)
    signal.connect(calls.append)
    signal.emit("1.2.3")
    assert calls == [("first", "1.2.3"), "1.2.3"]
    assert signal.disconnect(first) is True and signal.disconnect(first) is False
    signal.emit("4")
    assert calls[-1] == "4" and len(calls) == 3
    with pytest.raises(TypeError):
        signal.connect("not callable")


def test_signal_does_not_keep_the_receiver_alive(widgets):
    class Receiver:
        def __init__(self):
            self.got = []

        def slot(self, value):
            self.got.append(value)

    signal = widgets.Signal(int)
    receiver = Receiver()
    signal.connect(receiver.slot)
    signal.emit(1)
    assert receiver.got == [1] and signal.receivers() == 1
    del receiver
    gc.collect()
    signal.emit(2)  # no error: the dead slot is dropped
    assert signal.receivers() == 0


def test_a_failing_slot_goes_to_excepthook_and_the_others_run(widgets, monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: seen.append(kind))
    signal = widgets.Signal()
    calls = []
    signal.connect(lambda: 1 / 0)
    signal.connect(lambda: calls.append("ran"))
    signal.emit()
    assert seen == [ZeroDivisionError] and calls == ["ran"]


# -- EngineQueue ----------------------------------------------------------------------------------


def drain(qtbot, queue, timeout=30_000):
    """Let the engine's answers arrive (QProcess signals) until the queue has none to wait for."""
    qtbot.waitUntil(lambda: not queue._running and not queue._pending, timeout=timeout)
    return queue.take()


def test_engine_queue_runs_requests_in_the_engine(widgets, qtbot):
    from DICOMPlusWidgets.tasks import EngineQueue

    from DICOMPlusLib.errors import DICOMPlusError

    queue = EngineQueue()
    queue.put("a", ("ping", {}))
    queue.put("b", ("fail", {"message": "on purpose"}))
    results = {key: (value, error) for key, value, error in drain(qtbot, queue)}
    assert results["a"][0]["pid"] != os.getpid() and results["a"][1] is None
    assert isinstance(results["b"][1], DICOMPlusError) and "on purpose" in str(results["b"][1])
    assert queue.idle and queue.take() == []


def test_engine_queue_order_depth_and_discard(widgets, qtbot):
    from DICOMPlusWidgets.tasks import EngineQueue

    queue = EngineQueue(depth=1)
    queue.put("first", ("ping", {}))  # sent at once; its answer is read only when events run
    queue.setOrder(lambda key: abs(key - 5) if isinstance(key, int) else -1)
    for k in (0, 9, 4, 6, 5):
        queue.put(k, ("ping", {}))
    assert queue.isPending(5) and queue.isPending("first") and len(queue._running) == 1
    queue.discard()  # drops 0..9 and the coming answer to "first"
    assert not queue.isPending(5)
    for k in (0, 9, 4, 6, 5):
        queue.put(k, ("ping", {}))
    taken = [key for key, _value, _error in drain(qtbot, queue)]
    assert "first" not in taken
    assert taken == [5, 4, 6, 9, 0]  # nearest to 5 first (ties in insertion order), one at a time


def test_engine_queue_quiesce_and_close(widgets, qtbot):
    from DICOMPlusWidgets.tasks import EngineQueue

    queue = EngineQueue(depth=1)
    queue.put("running", ("ping", {}))
    queue.put("never", ("fail", {"message": "discarded work ran"}))
    queue.quiesce()
    assert drain(qtbot, queue) == [] and queue.idle
    queue.close()
    queue.put("late", ("fail", {"message": "work after close ran"}))
    assert queue.idle


def test_queue_pump_hands_results_over_in_steps_bounded_by_time(widgets, qtbot):
    """Results that piled up while the main thread was busy (thumbnails, slices: each made into
    a QImage by the handler) are handed over in steps of at most the pump's budget, not all in
    one turn; in order, and a discard between steps drops the rest (no stale result). The
    handler is slowed to at least ``slow`` each: a step hands over at most ceil(budget / slow)."""
    import math
    import time

    import slicer
    from DICOMPlusWidgets.tasks import EngineQueue, QueuePump, pacedWork

    slow = 0.006
    queue = EngineQueue(depth=40)
    for k in range(40):
        queue.put(k, ("ping", {}))
    qtbot.waitUntil(lambda: not queue._running and not queue._pending, timeout=30_000)
    finished = [key for key, _value, _error in queue._results]  # in the order they finished
    turn, handed = [0], []

    def handler(key, value, error):
        time.sleep(slow)
        handed.append((turn[0], key))

    pump = QueuePump(queue, handler, interval=0)
    pacedWork().pacer.steps.clear()
    try:
        pump.kick()
        while len(handed) < 20 and turn[0] < 200:
            turn[0] += 1
            slicer.app.processEvents()  # one turn of the event loop
        limit = math.ceil(pacedWork().pacer.budget / slow)
        perTurn = [sum(1 for t, _key in handed if t == n) for n in range(1, turn[0] + 1)]
        assert 0 < max(perTurn) <= limit, perTurn
        assert all(1 <= step.units <= limit for step in pacedWork().pacer.steps)
        assert [key for _turn, key in handed] == finished[: len(handed)]  # in order
        queue.discard()  # the widget changed its subject: what is left is stale
        count = len(handed)
        for _ in range(5):
            slicer.app.processEvents()
        assert len(handed) == count and queue.idle and not pump.timer.isActive()
    finally:
        pump.stop()


def test_paced_work_shares_one_budget_per_turn(widgets, monkeypatch):
    """Works of several widgets share one pacer step per turn of the event loop (a step each
    would add up to several budgets in one turn), take units in turn, start in the next turn,
    and a work that raises goes to sys.excepthook and ends alone."""
    import math
    import time

    import slicer
    from DICOMPlusWidgets.tasks import pacedWork

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: seen.append(kind))
    slow = 0.006
    turn, done = [0], []

    def work(name, count):
        left = [count]

        def unit():
            time.sleep(slow)
            done.append((turn[0], name))
            left[0] -= 1
            return left[0] > 0

        return unit

    def broken():
        raise RuntimeError("a deleted widget")

    paced = pacedWork()
    first, second = work("a", 12), work("b", 12)
    for each in (first, broken, second):
        paced.add(each)
    assert not done  # nothing in the caller's turn
    while paced.pending and turn[0] < 200:
        turn[0] += 1
        slicer.app.processEvents()  # one turn of the event loop
    limit = math.ceil(paced.pacer.budget / slow)
    perTurn = [sum(1 for t, _name in done if t == n) for n in range(turn[0] + 1)]
    assert len(done) == 24 and max(perTurn) <= limit, perTurn
    assert [name for _turn, name in done][:4] == ["a", "b", "a", "b"]  # in turn
    assert seen == [RuntimeError]


def test_logic_closing_its_database_quiesces_the_widgets(dicomplus_module, widgets, tmp_path, qtbot):
    logic = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db" / "dicomplus.sqlite")
    before = logic.databaseAboutToClose.receivers()
    browser = widgets.DICOMPlusBrowserWidget(logic)
    preview = widgets.DICOMPlusPreviewWidget(logic)
    qtbot.addWidget(browser)
    qtbot.addWidget(preview)
    assert logic.databaseAboutToClose.receivers() == before + 2
    assert logic.database is not None  # opens it
    logic.closeDatabase()  # emits; the widgets' queues quiesce (nothing running here)
    browser.refresh()  # and the database opens again on use
    assert browser.statusText() == "The database is empty."  # read, not "Cannot read the database"
    browser.cleanup()
    preview.cleanup()
    assert logic.databaseAboutToClose.receivers() == before
    logic.closeDatabase()


# -- pixels to screen -----------------------------------------------------------------------------


def voi_lut_linear(x, center, width):
    """PS3.3 C.11.2.1.2.1, written out from the Standard, to 0..255."""
    if x <= center - 0.5 - (width - 1) / 2:
        return 0.0
    if x > center - 0.5 + (width - 1) / 2:
        return 255.0
    return ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0


def test_window_to_uint8_follows_the_standard(widgets):
    from DICOMPlusWidgets.imaging import windowToUint8

    values = np.arange(-20, 101, dtype=np.int16).reshape(11, 11)
    out = windowToUint8(values, 40, 80)
    expected = np.rint([voi_lut_linear(float(x), 40, 80) for x in values.ravel()]).reshape(11, 11)
    assert np.array_equal(out, expected.astype(np.uint8))
    assert np.array_equal(windowToUint8(values, 40, 80, invert=True), 255 - out)


@pytest.mark.parametrize(
    ("direction", "letters"),
    [((1, 0, 0), "L"), ((-1, 0, 0), "R"), ((0, 1, 0), "P"), ((0, 0, 1), "H"), ((0, 0.94, -0.34), "PF")],
)
def test_orientation_letters(widgets, direction, letters):
    from DICOMPlusWidgets.imaging import orientationLetters

    assert orientationLetters(direction) == letters


def test_images_reach_qt_unchanged(widgets):
    import qt
    from DICOMPlusWidgets.imaging import toQImage

    gray = (np.arange(7 * 5) * 7 % 256).astype(np.uint8).reshape(5, 7)
    image = toQImage(gray)
    assert (image.width(), image.height()) == (7, 5)
    assert [qt.QColor(image.pixel(x, 3)).red() for x in range(7)] == list(gray[3])
    rgb = np.stack([gray, 255 - gray, np.full_like(gray, 9)], axis=2)
    color = qt.QColor(toQImage(rgb).pixel(2, 4))
    assert (color.red(), color.green(), color.blue()) == tuple(int(v) for v in rgb[4, 2])
