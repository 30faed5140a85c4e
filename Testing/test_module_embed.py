"""Another module's panel embeds the DICOMPlus widgets (DICOMPlusWidgets) and reacts to their
signals, using only their public API: no findChildren, no private attributes."""

from __future__ import annotations

import threading

import pytest

from dicomplus_testing.synthetic import make_series


@pytest.fixture
def widgets(dicomplus_module):
    import DICOMPlusWidgets

    return DICOMPlusWidgets


@pytest.fixture
def database(dicomplus_module, tmp_path):
    """A DICOMPlusLib Database (not the Logic: the widgets take either) with two patients."""
    from DICOMPlusLib.database import Database

    db = Database(tmp_path / "db" / "dicomplus.sqlite")
    alpha = make_series(tmp_path / "a", n=6, rows=24, cols=20, patient_id="ALPHA", patient_name="Embed^Alpha",
                        series_description="Axial CT", study_description="Chest")  # fmt: skip
    beta = make_series(tmp_path / "b", n=4, rows=16, cols=16, patient_id="BETA", patient_name="Embed^Beta",
                       modality="MR", series_description="T1 brain", study_description="Head")  # fmt: skip
    db.import_paths([alpha.folder, beta.folder])
    yield db, alpha, beta
    db.close()


class Host:
    """What a host module's widget does: its own layout, the DICOMPlus widgets in it, slots."""

    def __init__(self, widgets, source):
        import qt

        self.panel = qt.QWidget()
        layout = qt.QVBoxLayout(self.panel)
        layout.addWidget(qt.QLabel("My module"))
        self.browser = widgets.DICOMPlusBrowserWidget(source)
        self.preview = widgets.DICOMPlusPreviewWidget(source)
        self.activity = widgets.DICOMPlusActivityWidget()
        for widget in (self.browser, self.preview, self.activity):
            layout.addWidget(widget)
        self.selected, self.studies, self.loads, self.finished = [], [], [], []
        self.browser.seriesSelected.connect(self.onSeriesSelected)
        self.browser.studySelected.connect(self.studies.append)
        self.browser.loadRequested.connect(self.loads.append)
        self.preview.loadRequested.connect(self.loads.append)
        self.activity.jobFinished.connect(self.finished.append)
        self.browser.refresh()

    def onSeriesSelected(self, uid):
        self.selected.append(uid)
        self.preview.setSeries(uid)

    def cleanup(self):
        for widget in (self.browser, self.preview, self.activity):
            widget.cleanup()


@pytest.fixture
def host(widgets, database, qtbot):
    db, _, _ = database
    host = Host(widgets, db)
    qtbot.addWidget(host.panel)
    host.panel.resize(440, 900)
    host.panel.show()
    yield host
    host.cleanup()


def item_of(browser, level, key):
    """The tree item of an entry, found by walking the public tree of the compact mode (as a host
    could; the grid mode has its own accessors, see test_module_browser.py)."""
    import qt

    browser.setViewMode("tree")
    tree = browser.treeWidget()
    tree.expandAll()
    pending = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount)]
    while pending:
        item = pending.pop()
        if item.data(0, qt.Qt.UserRole) == f"{level}:{key}":
            return item
        pending += [item.child(i) for i in range(item.childCount())]
    raise AssertionError(f"{level} {key} is not in the tree")


def test_selecting_a_series_shows_it_in_the_hosts_preview(host, database, qtbot, screenshot):
    import qt

    _, alpha, beta = database
    tree = host.browser.treeWidget()
    item = item_of(host.browser, "series", alpha.series_uid)
    qtbot.mouseClick(tree.viewport(), qt.Qt.LeftButton, pos=tree.visualItemRect(item).center())
    assert host.selected == [alpha.series_uid]
    qtbot.waitUntil(lambda: host.preview.seriesUID() == alpha.series_uid and host.preview.isSliceReady())
    assert host.preview.sliceCount() == 6
    assert (host.preview.currentSliceArray() == alpha.pixels[0] - 1024).all()
    qtbot.waitUntil(lambda: host.browser.hasThumbnail(alpha.series_uid))
    db, _, _ = database
    assert list((db.path.parent / "thumbnails").rglob("*.png"))  # cached beside the database
    assert not item_of(host.browser, "series", alpha.series_uid).icon(0).isNull()
    screenshot(host.panel, "embed_host_panel")

    study = item_of(host.browser, "study", beta.study_uid)
    qtbot.mouseClick(tree.viewport(), qt.Qt.LeftButton, pos=tree.visualItemRect(study).center())
    assert host.studies == [beta.study_uid] and host.selected == [alpha.series_uid]
    assert host.browser.selectedEntries() == [("study", beta.study_uid)]


def test_load_requests_reach_the_host(host, database, qtbot):
    import qt

    _, alpha, beta = database
    tree = host.browser.treeWidget()
    item = item_of(host.browser, "series", beta.series_uid)
    where = tree.visualItemRect(item).center()
    qtbot.mouseClick(tree.viewport(), qt.Qt.LeftButton, pos=where)  # a double-click starts with a click
    qtbot.mouseDClick(tree.viewport(), qt.Qt.LeftButton, pos=where)
    assert host.loads == [[("series", beta.series_uid)]]
    host.browser.selectEntry("patient", "ALPHA")
    host.browser.requestLoad()
    assert host.loads[-1] == [("patient", "ALPHA")]
    host.browser.selectSeries(alpha.series_uid)
    qtbot.waitUntil(lambda: host.preview.seriesUID() == alpha.series_uid)
    qtbot.mouseClick(host.preview.loadButton(), qt.Qt.LeftButton)
    assert host.loads[-1] == [("series", alpha.series_uid)]
    # a host that does not load hides the button
    host.preview.loadButton().visible = False
    assert host.preview.loadButton().isHidden()


def test_search_is_a_database_search_after_typing_stops(host, database, qtbot):
    _, alpha, beta = database
    browser = host.browser
    refreshed = []
    browser.refreshed.connect(lambda: refreshed.append(browser.searchText()))
    qtbot.keyClicks(browser.searchBox(), "t1 bra")
    qtbot.waitUntil(lambda: bool(refreshed) and refreshed[-1] == "t1 bra")
    assert refreshed == ["t1 bra"]  # debounced: one search for the whole word
    assert browser.entries("series") == [("series", beta.series_uid)]
    assert browser.entries("patient") == [("patient", "BETA")]
    assert "1 series" in browser.statusText()
    browser.setSearchText("ACCALPHA")  # the accession number, not shown in the tree
    assert browser.entries("series") == [("series", alpha.series_uid)]
    browser.setSearchText("")
    assert len(browser.entries("series")) == 2


def test_activity_widget_runs_and_cancels_jobs(host, qtbot, screenshot):
    import qt

    from DICOMPlusLib.jobs import Job

    def work(progress, cancel):
        for step in range(100):
            progress(step, 100, f"step {step}")
            if step == 10:
                cancel.wait(60)  # holds here until it is cancelled
            cancel.raise_if_cancelled()
        return "done"

    ended = []
    quick = host.activity.addJob(Job("Quick job", lambda progress, cancel: 42).start(), onDone=ended.append)
    slow = host.activity.addJob(Job("Slow job", work).start())
    qtbot.waitUntil(lambda: host.finished == ["Quick job"])
    assert ended == [quick] and quick.result == 42
    assert "done" in host.activity.rowText(quick)
    qtbot.waitUntil(lambda: host.activity.progressOf(slow)[0] >= 10)
    assert host.activity.progressOf(slow)[1] == 100 and "of 100" in host.activity.rowText(slow)
    assert host.activity.runningJobs() == [slow]
    # the status line says what the rows do not: not "Idle", and not "Running: Slow job: 10 of
    # 100 (10%)" above the row that says "Slow job: 10 of 100" with its bar
    assert host.activity.status() == "1 task running", host.activity.status()
    assert host.activity.rowsInView() == 2
    screenshot(host.activity, "embed_activity_running")
    # two newer tasks push the slow one's row out of view: the line names it, with its progress
    gates = [threading.Event(), threading.Event()]
    newer = [host.activity.addJob(Job(f"Newer job {i}", lambda p, c, g=g: g.wait(60)).start())
             for i, g in enumerate(gates)]  # fmt: skip
    assert host.activity.status() == f"3 tasks running; below: {host.activity.rowText(slow)} (10%)", (
        host.activity.status()
    )
    for gate in gates:
        gate.set()
    qtbot.waitUntil(lambda: all(job.finished for job in newer))
    qtbot.waitUntil(
        lambda: host.activity.status() == f"1 task running; below: {host.activity.rowText(slow)} (10%)"
    )
    qtbot.mouseClick(host.activity.cancelButtonFor(slow), qt.Qt.LeftButton)
    qtbot.waitUntil(lambda: "Slow job" in host.finished)
    assert "cancelled" in host.activity.rowText(slow)
    assert not host.activity.cancelButtonFor(slow).enabled
    assert host.activity.status() == "Idle"  # its row says its outcome, as no host said more
    host.activity.setStatus("Imported 3 instances")
    assert host.activity.status() == "Imported 3 instances"
    host.activity.setStatus("")
    assert host.activity.status() == "Idle"
    host.activity.clearFinished()
    assert host.activity.jobs() == []


def test_activity_rows_past_two_scroll(host, qtbot):
    """Finished tasks (eight are kept) do not grow the Activity section: past two rows the list
    scrolls, so the panel still fits a 1080p screen with the browser and the preview."""
    import slicer

    from DICOMPlusLib.jobs import Job

    activity = host.activity
    heights = []
    for n in range(1, 6):
        activity.addJob(Job(f"Job {n}", lambda progress, cancel: None).start())
        qtbot.waitUntil(lambda n=n: len(host.finished) == n)
        slicer.app.processEvents()
        heights.append(activity.minimumSizeHint.height())
    assert activity.rowsInView() == 2 and len(activity.jobs()) == 5
    assert heights[0] < heights[1] == heights[2] == heights[4], heights
