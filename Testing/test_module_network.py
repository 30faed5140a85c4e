"""The module's network panel under the harness, against a sample PACS started in this process
(DICOMPlusLib's QueryRetrieveSCP over its own database) and against Orthanc: add a node, echo,
query, expand a study, retrieve one series, load it, send, the listener on and off."""

from __future__ import annotations

import numpy as np
import pytest

from dicomplus_testing.harness import fit_panel
from dicomplus_testing.peers import port_accepts
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import free_port

TIMEOUT = 60_000


@pytest.fixture
def pacs(tmp_path):
    """The sample PACS (C-FIND, C-GET, C-STORE) on a free port, with its database."""
    from DICOMPlusLib.database import Database
    from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP
    from DICOMPlusLib.network.pacs.sample import make_sample_data

    db = Database(tmp_path / "pacs" / "pacs.sqlite")
    make_sample_data(db)
    scp = QueryRetrieveSCP(db, QRConfig(ae_title="SAMPLEPACS", port=0, host="127.0.0.1")).start()
    yield scp
    scp.stop()
    db.close()


@pytest.fixture
def panel(dicomplus_module, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("DICOMPLUS_NODES", str(tmp_path / "default-nodes.json"))  # never the user's
    w = dicomplus_module.DICOMPlusWidget()
    qtbot.addWidget(w.parent)
    logic = dicomplus_module.DICOMPlusLogic(
        databasePath=tmp_path / "db" / "dicomplus.sqlite", nodesPath=tmp_path / "nodes.json"
    )
    w.setLogic(logic)
    w.ui.networkCollapsibleButton.collapsed = False  # folded by default: the user opens it
    yield w
    w.cleanup()


def click(qtbot, button):
    """Click as a user would (a button of the node form just shown may not be laid out yet, so
    fall back to QAbstractButton.click when the mouse misses it)."""
    import qt

    seen = []
    button.connect("clicked(bool)", lambda *args: seen.append(1))
    qtbot.mouseClick(button, qt.Qt.LeftButton)
    if not seen:
        button.click()


def add_node_through_form(qtbot, network, name, ae, port, method="C-GET"):
    click(qtbot, network.addButton)
    assert network.nodeForm.visible
    network.nodeNameEdit.text = name
    network.nodeAETitleEdit.text = ae
    network.nodeHostEdit.text = "127.0.0.1"
    network.nodePortSpinBox.value = port
    network.nodeMethodCombo.currentIndex = network.nodeMethodCombo.findText(method)
    click(qtbot, network.saveNodeButton)
    assert not network.nodeForm.visible, network.echoText()
    assert network.currentNode() == name


def echo(qtbot, network):
    results = []
    network.echoFinished.connect(lambda ok, message: results.append((ok, message)))
    click(qtbot, network.echoButton)
    qtbot.waitUntil(lambda: bool(results), timeout=TIMEOUT)
    return results[0]


def query(qtbot, network):
    counts = []
    network.queryFinished.connect(counts.append)
    click(qtbot, network.queryButton)
    qtbot.waitUntil(lambda: bool(counts), timeout=TIMEOUT)
    return counts[0]


def expand(qtbot, network, studyUID, expected):
    assert network.expandStudy(studyUID)
    qtbot.waitUntil(lambda: {uid for _, uid in network.results("series")} >= set(expected), timeout=TIMEOUT)


def wait_for_jobs(qtbot, network):
    qtbot.waitUntil(lambda: not network.runningJobs(), timeout=TIMEOUT)


def test_query_retrieve_load_send_and_listen(panel, pacs, qtbot, tmp_path, screenshot, dicomplus_module):
    import slicer

    network = panel.network
    assert network.nodeNames() == [] and not network.echoButton.enabled
    add_node_through_form(qtbot, network, "Sample PACS", "SAMPLEPACS", pacs.port)
    assert [n.name for n in panel.logic.nodes()] == ["Sample PACS"]
    assert panel.logic.node("Sample PACS").address == f"SAMPLEPACS@127.0.0.1:{pacs.port}"

    ok, message = echo(qtbot, network)
    assert ok and "OK" in network.echoText() and "SAMPLEPACS" in message

    # every study of the PACS, as its own database lists them
    studies = {s.StudyInstanceUID: s for s in pacs.db.search("study", {})}
    assert query(qtbot, network) == len(studies) == 3
    assert {uid for _, uid in network.results("study")} == set(studies)

    # the query form narrows the search (a name typed without wildcard matches as a prefix)
    network.patientNameEdit.text = "Roe"
    assert query(qtbot, network) == 1
    [(_, roeStudy)] = network.results("study")
    assert studies[roeStudy].PatientName == "Roe^Richard"
    network.patientNameEdit.text = ""
    network.modalityEdit.text = "MR"
    assert query(qtbot, network) == 1
    network.modalityEdit.text = ""
    assert query(qtbot, network) == 3

    # expand the CT chest study (two studies of Doe^Jane: pick the CT by its description)
    [chest] = [s for s in studies.values() if s.StudyDescription == "CT Chest"]
    seriesOnPacs = pacs.db.search("series", {"StudyInstanceUID": chest.StudyInstanceUID})
    assert len(seriesOnPacs) == 1
    series = seriesOnPacs[0]
    expand(qtbot, network, chest.StudyInstanceUID, [series.SeriesInstanceUID])
    network.resize(420, network.sizeHint.height())
    assert network.selectResult("series", series.SeriesInstanceUID)
    assert network.selectedResults() == [("series", series.SeriesInstanceUID)]
    assert network.retrieveButton.enabled
    path = screenshot(network, "DICOMPlus_network_panel")
    assert path.exists()

    retrieved = []
    network.retrieveFinished.connect(retrieved.append)
    click(qtbot, network.retrieveButton)
    assert network.runningJobs() and panel.activity.runningJobs()
    wait_for_jobs(qtbot, network)
    assert retrieved == [chest.StudyInstanceUID], network.statusText()
    assert "Retrieved 24 instances" in network.statusText()
    assert panel.browser.entries("series") == [("series", series.SeriesInstanceUID)]
    assert len(panel.logic.database.instances(series.SeriesInstanceUID)) == len(
        pacs.db.instances(series.SeriesInstanceUID)
    )

    panel.loadEntries([("series", series.SeriesInstanceUID)])
    qtbot.waitUntil(lambda: panel.activeJob is None, timeout=TIMEOUT)
    [volume] = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
    assert volume.GetImageData().GetDimensions()[2] == len(pacs.db.instances(series.SeriesInstanceUID))

    # send a local series (imported here, not on the PACS) to the node
    local = make_series(tmp_path / "local", n=3, patient_id="SEND1", patient_name="Send^Me")
    panel.importPaths([local.folder])
    qtbot.waitUntil(lambda: panel.activeJob is None, timeout=TIMEOUT)
    assert panel.browser.selectSeries(local.series_uid)
    before = pacs.db.info()["instances"]
    sent = []
    network.sendFinished.connect(sent.append)
    click(qtbot, network.sendButton)
    wait_for_jobs(qtbot, network)
    assert sent == ["Sample PACS"], network.statusText()
    assert pacs.db.info()["instances"] == before + 3
    assert {i.SOPInstanceUID for i in pacs.db.instances(local.series_uid)} == set(local.sop_uids)


def test_listener_on_and_off(panel, qtbot, tmp_path, dicomplus_module, screenshot):
    import slicer

    network = panel.network
    port = free_port()
    network.listenerPortSpinBox.value = port
    network.listenerAETitleEdit.text = "PANELTEST"
    network.autoLoadCheckBox.checked = True
    states = []
    network.listenerChanged.connect(states.append)
    click(qtbot, network.listenerButton)  # the start is a job: the line says starting, then listening
    qtbot.waitUntil(lambda: states == [True], timeout=TIMEOUT)
    assert panel.logic.listenerRunning() and panel.logic.listenerPort() == port
    assert network.listenerButton.checked and not network.listenerPortSpinBox.enabled
    assert port_accepts(port, timeout=2)
    assert str(port) in network.listenerStatusLabel.text
    panel.ui.previewCollapsibleButton.collapsed = True
    fit_panel(panel, 440)
    screenshot(network, "network_listener")

    # something sent to it lands in the local database and is reported complete
    import qt

    from DICOMPlusLib.network.send import send_paths

    series = make_series(tmp_path / "incoming", n=2, patient_id="LISTEN1")
    report = send_paths(panel.logic.node(f"PANELTEST@127.0.0.1:{port}"), series.files)
    assert report.sent == 2
    assert {i.SOPInstanceUID for i in panel.logic.database.instances(series.series_uid)} == set(
        series.sop_uids
    )
    assert qt.QSettings().value("DICOMPlus/Network/ListenerPort") in (port, str(port))

    click(qtbot, network.listenerButton)  # the stop is a job: the line says stopping, then stopped
    assert not panel.logic.listenerRunning() and not network.listenerButton.checked
    qtbot.waitUntil(lambda: states == [True, False], timeout=TIMEOUT)
    assert network.listenerStatusLabel.text == "Listener stopped" and network.listenerButton.enabled
    assert not port_accepts(port, timeout=2)
    assert [e.series_instance_uid for e in panel.logic.completedSeries] == [series.series_uid]
    # auto-load: the completed series is loaded into the scene (main thread, from the queue)
    qtbot.waitUntil(lambda: panel.activeJob is None, timeout=TIMEOUT)
    [volume] = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
    assert volume.GetImageData().GetDimensions()[2] == 2
    assert qt.QSettings().value("DICOMPlus/Network/AutoLoad") == "true"


def test_retrieve_with_c_move_to_the_panel_listener(panel, qtbot, tmp_path):
    """A node set to C-MOVE sends to the listener started in the panel (its AE title is the move
    destination the sample PACS knows)."""
    from DICOMPlusLib.database import Database
    from DICOMPlusLib.network.pacs.qrscp import Destination, QRConfig, QueryRetrieveSCP
    from DICOMPlusLib.network.pacs.sample import make_sample_data

    port = free_port()
    db = Database(tmp_path / "pacs" / "pacs.sqlite")
    make_sample_data(db)
    config = QRConfig(ae_title="MOVEPACS", port=0, host="127.0.0.1",
                      destinations=(Destination.parse(f"PANELMOVE@127.0.0.1:{port}"),))  # fmt: skip
    scp = QueryRetrieveSCP(db, config).start()
    try:
        network = panel.network
        add_node_through_form(qtbot, network, "Move PACS", "MOVEPACS", scp.port, method="C-MOVE")
        assert panel.logic.node("Move PACS").retrieve_method.value == "C-MOVE"
        network.listenerPortSpinBox.value = port
        network.listenerAETitleEdit.text = "PANELMOVE"
        click(qtbot, network.listenerButton)
        qtbot.waitUntil(panel.logic.listenerRunning, timeout=TIMEOUT)
        network.patientIDEdit.text = "DPLUS-002"
        assert query(qtbot, network) == 1
        [(_, studyUID)] = network.results("study")
        assert network.selectResult("study", studyUID)
        click(qtbot, network.retrieveButton)
        wait_for_jobs(qtbot, network)
        expected = {i.SOPInstanceUID for s in db.search("series", {"StudyInstanceUID": studyUID})
                    for i in db.instances(s.SeriesInstanceUID)}  # fmt: skip
        got = {i.SOPInstanceUID for s in panel.logic.search("series", {"StudyInstanceUID": studyUID})
               for i in panel.logic.database.instances(s.SeriesInstanceUID)}  # fmt: skip
        assert got == expected and expected, network.statusText()
        assert panel.browser.entries("study") == [("study", studyUID)]
    finally:
        panel.network.setListenerRunning(False)
        scp.stop()
        db.close()


def test_failing_echo_says_why(panel, qtbot):
    network = panel.network
    port = free_port()  # nothing listens there
    network.addNode("Nowhere", "NOWHERE", "127.0.0.1", port)
    ok, message = echo(qtbot, network)
    text = network.echoText()
    assert not ok and text == message
    assert "failed" in text and f"127.0.0.1:{port}" in text
    assert "refused" in text.lower(), text
    # the node can be removed again
    click(qtbot, network.removeButton)
    assert network.nodeNames() == [] and panel.logic.nodes() == []


def test_an_echo_left_unanswered_is_cancelled_from_the_activity_list(panel, qtbot):
    """A server that associates and never answers the C-ECHO: the echo is a job in the activity
    list, and its Cancel ends it at once (the timeout is 10 s: the end must come well before)."""
    import qt
    from test_cancel_waits import accept_then_stop_reading

    from dicomplus_testing.stalls import stall

    network = panel.network
    results = []
    network.echoFinished.connect(lambda ok, message: results.append((ok, message)))
    with stall(accept_then_stop_reading(0)) as peer:
        network.addNode("Mute", "MUTE", "127.0.0.1", peer.port)
        click(qtbot, network.echoButton)
        qtbot.waitUntil(peer.stalled.is_set, timeout=TIMEOUT)
        (job,) = panel.activity.runningJobs()
        qtbot.mouseClick(panel.activity.cancelButtonFor(job), qt.Qt.LeftButton)
        qtbot.waitUntil(lambda: bool(results), timeout=5_000)
    assert results == [(False, "Echo Mute cancelled")], results
    assert network.echoText() == "Echo Mute cancelled"


def test_echo_rejected_for_its_called_ae_title_names_the_address_once(panel, qtbot, tmp_path):
    """The library's message starts with the node's address, which the panel's line names
    already: "Echo X (A@h:p) failed: A@h:p: association rejected ..." said it twice."""
    from DICOMPlusLib.database import Database
    from DICOMPlusLib.network.listener import Listener, ListenerConfig

    db = Database(tmp_path / "scp.sqlite")
    config = ListenerConfig(ae_title="RIGHTAE", port=0, host="127.0.0.1", require_called_ae=True)
    scp = Listener(db, config).start()
    try:
        network = panel.network
        network.addNode("Strict", "WRONGAE", "127.0.0.1", scp.port)
        ok, message = echo(qtbot, network)
    finally:
        scp.stop()
        db.close()
    assert not ok and "called AE title not recognized" in message, message
    assert message.count(f"127.0.0.1:{scp.port}") == 1, message


def test_logic_network_calls_from_the_console(dicomplus_module, pacs, tmp_path, monkeypatch):
    import slicer.packaging

    asked = []
    real = slicer.packaging.pip_ensure
    monkeypatch.setattr(
        slicer.packaging, "pip_ensure", lambda reqs, **kw: asked.append(reqs) or real(reqs, **kw)
    )
    logic = dicomplus_module.DICOMPlusLogic(
        databasePath=tmp_path / "db.sqlite", nodesPath=tmp_path / "n.json"
    )
    try:
        logic.addNode("pacs", "SAMPLEPACS", "127.0.0.1", pacs.port)
        assert logic.echo("pacs").get(30).ok
        assert len(asked) == 1 and any("pynetdicom" in str(r) for r in asked[0])
        studies = logic.query("pacs", "study", {"PatientID": "DPLUS-001"}).get(30)
        assert {s.StudyInstanceUID for s in studies} == {
            s.StudyInstanceUID for s in pacs.db.search("study", {"PatientID": "DPLUS-001"})
        }
        [mr] = [s for s in studies if s.StudyDescription == "MR Brain"]
        report = logic.retrieve("pacs", studyUID=mr.StudyInstanceUID).get(60)
        onPacs = [
            i.SOPInstanceUID
            for s in pacs.db.search("series", {"StudyInstanceUID": mr.StudyInstanceUID})
            for i in pacs.db.instances(s.SeriesInstanceUID)
        ]
        assert sorted(report.done) == sorted(onPacs) and not report.failed
        job = logic.retrieve("pacs", studyUID=mr.StudyInstanceUID)
        job.wait(60)
        assert job.result.skipped and not job.result.done  # already here: resumed, nothing again
        assert len(asked) == 1  # installed once
    finally:
        logic.closeDatabase()


def test_orthanc_query_retrieve_load(panel, orthanc_session, qtbot, tmp_path):
    """The acceptance: query Orthanc from the network panel, select one series, retrieve, load."""
    import slicer

    series = make_series(
        tmp_path / "orthanc", n=5, rows=12, cols=10, modality="MR", patient_id="ORTH-NET-1"
    )  # no rescale
    orthanc_session.upload(series.folder)
    network = panel.network
    add_node_through_form(qtbot, network, "Orthanc", orthanc_session.aet, orthanc_session.dicom_port)
    assert echo(qtbot, network)[0]
    network.patientIDEdit.text = "ORTH-NET-1"
    assert query(qtbot, network) == 1
    assert network.results("study") == [("study", series.study_uid)]
    expand(qtbot, network, series.study_uid, [series.series_uid])
    assert network.selectResult("series", series.series_uid)
    click(qtbot, network.retrieveButton)
    wait_for_jobs(qtbot, network)
    assert panel.browser.entries("series") == [("series", series.series_uid)], network.statusText()
    panel.loadEntries([("series", series.series_uid)])
    qtbot.waitUntil(lambda: panel.activeJob is None, timeout=TIMEOUT)
    [volume] = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
    voxels = slicer.util.arrayFromVolume(volume)
    np.testing.assert_array_equal(voxels, series.pixels)


def test_query_shows_at_most_the_limit_and_says_so(panel, pacs, qtbot):
    network = panel.network
    network.addNode("Sample PACS", "SAMPLEPACS", "127.0.0.1", pacs.port)
    network.QUERY_LIMIT = 2  # the sample PACS has 3 studies
    assert query(qtbot, network) == 2
    assert len(network.results("study")) == 2
    assert "the first 2" in network.statusText()
    # a query error (nothing listens on that port) is reported, not raised
    network.addNode("Nowhere", "NOWHERE", "127.0.0.1", free_port())
    assert query(qtbot, network) == -1
    assert network.results("study") == []
    # named: the line stays when the user picks another server (it said "Query failed: ...")
    assert network.statusText().startswith("Query of Nowhere failed: "), network.statusText()


def test_query_results_become_rows_in_steps_bounded_by_time(panel, pacs, qtbot):
    """A query's studies (up to QUERY_LIMIT, 500) become rows in steps of at most the pacer's
    budget, the event loop running between them; queryFinished and the count once all are
    there. A row slowed to at least ``slow``: a step adds at most ceil(budget / slow), counted
    per turn of the event loop (a 0 ms timer's ticks), not timed."""
    import math
    import time

    import qt
    from DICOMPlusWidgets.tasks import pacedWork

    slow = 0.02
    network = panel.network
    network.addNode("Sample PACS", "SAMPLEPACS", "127.0.0.1", pacs.port)
    turn, added = [0], []
    addStudy = network._addStudy

    def slowStudy(study):
        time.sleep(slow)
        added.append(turn[0])
        addStudy(study)

    network._addStudy = slowStudy
    probe = qt.QTimer()
    probe.setInterval(0)
    probe.connect("timeout()", lambda: turn.append(turn.pop() + 1))
    probe.start()
    try:
        assert query(qtbot, network) == 3  # the sample PACS has 3 studies
    finally:
        probe.stop()
    limit = math.ceil(pacedWork().pacer.budget / slow)
    assert len(added) == 3 and max(added.count(t) for t in added) <= limit, added
    assert len(network.results("study")) == 3 and network.statusText().startswith("3 studies on Sample PACS")


def test_missing_network_packages_are_reported_on_the_main_thread(panel, qtbot, monkeypatch):
    import threading

    import slicer.packaging

    calls = []

    def refuse(requirements, **kwargs):
        calls.append(threading.current_thread() is threading.main_thread())
        raise RuntimeError("pynetdicom>=3 is not installed")

    monkeypatch.setattr(slicer.packaging, "pip_ensure", refuse)
    network = panel.network
    network.addNode("Somewhere", "SOMEWHERE", "127.0.0.1", free_port())
    click(qtbot, network.echoButton)
    assert calls == [True]
    assert "not installed" in network.echoText()
    click(qtbot, network.queryButton)
    assert calls == [True, True] and "not installed" in network.statusText()


def test_a_dicomweb_only_node_from_the_form(panel, orthanc_session, qtbot, tmp_path, caplog, screenshot):
    """The Add-server form takes a DICOMweb URL: with no AE title the node is reached by
    DICOMweb only (echo is a QIDO-RS probe, query QIDO-RS, retrieve WADO-RS); choosing DICOMweb
    retrieval without a URL is refused and the form stays open with the reason."""
    import logging

    from DICOMPlusLib.errors import NetworkError

    series = make_series(tmp_path / "web", n=4, rows=10, cols=12, modality="MR", patient_id="WEB-FORM-1")
    orthanc_session.upload(series.folder)
    network = panel.network

    click(qtbot, network.addButton)
    network.nodeNameEdit.text = "No URL"
    network.nodeAETitleEdit.text = "PACS"
    network.nodeWebURLEdit.text = ""
    network.nodeMethodCombo.currentIndex = network.nodeMethodCombo.findText("DICOMweb")
    with caplog.at_level(logging.ERROR), pytest.raises(NetworkError, match="DICOMweb URL"):
        network.onSaveNode()
    assert network.nodeForm.visible and "Cannot save the node" in network.echoText()
    assert "No URL" not in network.nodeNames()

    network.nodeNameEdit.text = "Orthanc web"
    network.nodeAETitleEdit.text = ""
    network.nodeWebURLEdit.text = orthanc_session.dicomweb_url
    panel.ui.previewCollapsibleButton.collapsed = True
    fit_panel(panel, 440)  # Slicer's panel scrolls: all of it
    screenshot(network, "network_dicomweb_node")
    click(qtbot, network.saveNodeButton)
    assert not network.nodeForm.visible, network.echoText()
    node = panel.logic.node("Orthanc web")
    assert node.dimse is None and node.method.value == "DICOMweb"
    assert node.dicomweb_url == orthanc_session.dicomweb_url

    ok, message = echo(qtbot, network)
    assert ok and orthanc_session.dicomweb_url in message, message  # the URL, not an AE address
    network.patientIDEdit.text = "WEB-FORM-1"
    assert query(qtbot, network) == 1
    expand(qtbot, network, series.study_uid, [series.series_uid])
    assert network.selectResult("series", series.series_uid)
    click(qtbot, network.retrieveButton)
    wait_for_jobs(qtbot, network)
    assert panel.browser.entries("series") == [("series", series.series_uid)], network.statusText()

    network.showNodeForm()  # editing shows what was saved
    assert network.nodeWebURLEdit.text == orthanc_session.dicomweb_url
    assert network.nodeAETitleEdit.text == "" and network.nodeMethodCombo.currentText == "DICOMweb"


def test_query_form_takes_dates_and_names_as_the_panel_shows_them(panel, orthanc_session, qtbot, tmp_path):
    """The results and the browser show dates as 2024-01-02 and names as "WALK, ER"; typed back
    into the query form they went to the server as written and found nothing ("0 studies", with
    no hint why): only YYYYMMDD and DOE^JOHN matched. A value that is not a date is now said,
    and no query is sent."""
    series = make_series(tmp_path / "s", n=2, rows=8, cols=8, modality="MR", patient_id="WALK-FORM-1",
                         patient_name="WALK^ER", study_date="20240102")  # fmt: skip
    orthanc_session.upload(series.folder)
    network = panel.network
    add_node_through_form(qtbot, network, "Orthanc", orthanc_session.aet, orthanc_session.dicom_port)

    def found(name="", first="", last=""):
        network.patientIDEdit.text = "WALK-FORM-1"
        network.patientNameEdit.text, network.dateFromEdit.text, network.dateToEdit.text = name, first, last
        query(qtbot, network)
        return [uid for _level, uid in network.results("study")]

    study = [series.study_uid]
    assert found(first="2024-01-02", last="2024-01-02") == study
    assert found(first="2024", last="2024") == study  # a year: all its days
    assert found(first="2024-01") == study and found(last="2023-12-31") == []
    assert found(name="WALK, ER") == study
    assert found(name="WALK, ER", first="20240102") == study  # as before
    queried = []
    network.queryFinished.connect(queried.append)
    network.dateFromEdit.text = "last week"
    click(qtbot, network.queryButton)
    assert "not a date" in network.statusText() and "2024-01-31" in network.statusText()
    assert queried == []
