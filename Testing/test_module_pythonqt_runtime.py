"""The module as it runs in real Slicer: the main thread keeps the GIL while Qt idles.

Under the harness's PythonQt GIL mode (Testing/slicer_stubs/pythonqt_gil.py) a Python thread in
this process barely runs, as in Slicer; Testing/test_harness_pythonqt.py proves the mode starves
threads. Here the module's real work runs under it: an import of 1,000 files through the panel,
a retrieve from Orthanc, and a listener receiving 500 instances from DCMTK storescu, each with a
20 ms GUI timer that must never be more than 100 ms late (the main thread stays free because the
work is in the engine process). These are the figures docs/performance.md reports under
"Inside Slicer".
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest

from dicomplus_testing.harness import engine_panel, screenshot
from dicomplus_testing.peers import DCMTK, tool_env
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import free_port

WORST_GUI_MS = 100.0


@pytest.fixture(autouse=True)
def quiet_heap():
    """Collect, then freeze what the session allocated so far (gc.freeze): a full collection over
    every earlier test's objects pauses the main thread 100-200 ms here, a pause of the test
    process rather than of the design being measured."""
    import gc

    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def panel(dicomplus_module, pythonqt_gil, tmp_path, qtbot):
    # the engine starts with the panel; not part of the figures
    widget = engine_panel(
        dicomplus_module, qtbot, tmp_path / "db" / "dicomplus.sqlite", tmp_path / "nodes.json"
    )
    yield widget
    widget.cleanup()


def thousand_files(folder):
    return [
        make_series(folder / f"s{i}", n=100, rows=128, cols=128, patient_id=f"GIL{i}").folder
        for i in range(10)
    ]


def cli_import_seconds(database, folders):
    """The same import as a user runs it: a whole ``dicomplus import`` process."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(database), "import", *map(str, folders)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return time.perf_counter() - started


#: CLI and panel imports into fresh databases, each round in the other order; medians compared.
#: Five, not three: both create 1,000 files, and on ext4 without a journal (the project's machine)
#: a create's cost follows what was deleted in the minute before (the timing tests run right
#: after the parallel ones); with three rounds, one slow panel round of the three could take the
#: median below 0.8x (about one full run in five in session 16).
ROUNDS = 5


def test_panel_import_keeps_pace_with_the_cli_and_the_gui_stays_responsive(
    panel, pythonqt_gil, latency_probe, tmp_path, capsys
):
    folders = thousand_files(tmp_path / "src")
    cli, ours, worst, shot, report = [], [], 0.0, None, ""
    latency_probe.sample_ms = 5  # the worst gap says what the main thread ran in it (a 105 ms one did)

    def measured(gap):
        nonlocal worst, report
        if gap > worst:
            worst, report = gap, latency_probe.worst_report()

    for round in range(ROUNDS):
        if round % 2 == 0:
            cli.append(cli_import_seconds(tmp_path / f"cli{round}", folders))
        panel.logic.setDatabasePath(tmp_path / f"panel{round}" / "dicomplus.sqlite")
        latency_probe.start()
        job = panel.importPaths(folders)
        pythonqt_gil.wait_until(lambda job=job: job.finished or 0 < job.poll().done < job.poll().total, 60)
        measured(latency_probe.stop())
        if shot is None and not job.finished:  # what a user sees meanwhile (grabbing is not timed)
            assert panel.activity.status() == "1 task running", panel.activity.status()
            shot = screenshot(panel, "panel-import-running")
        latency_probe.start()
        pythonqt_gil.wait_until(lambda: panel.activeJob is None, 300)
        measured(latency_probe.stop())
        assert job.result.added == 1000, job.error
        ours.append(job.poll().elapsed)  # from the click to the result handled on the main thread
        if round % 2 == 1:
            cli.append(cli_import_seconds(tmp_path / f"cli{round}", folders))
    ratio = statistics.median(cli) / statistics.median(ours)
    with capsys.disabled():
        print(f"\n[pythonqt] import 1000 files (median of {ROUNDS}): panel {statistics.median(ours):.2f} s, "
              f"CLI process {statistics.median(cli):.2f} s, throughput {ratio:.2f}x the CLI, "
              f"worst GUI timer gap {worst:.0f} ms")  # fmt: skip
    assert worst < WORST_GUI_MS, report
    assert ratio >= 0.8
    assert shot is None or shot.is_file()


def test_retrieve_from_orthanc_keeps_the_gui_responsive(
    panel, pythonqt_gil, latency_probe, orthanc_session, tmp_path, capsys
):
    series = make_series(tmp_path / "orthanc", n=200, rows=64, cols=64, modality="MR", patient_id="GIL-ORTH")
    orthanc_session.upload(series.folder)
    panel.logic.addNode("Orthanc", orthanc_session.aet, "127.0.0.1", orthanc_session.dicom_port)
    # as a user does before a retrieve: the first network use checks the packages (once a session)
    assert panel.logic.echo("Orthanc").get(30).ok
    latency_probe.start()
    job = panel.logic.retrieve("Orthanc", studyUID=series.study_uid, seriesUIDs=[series.series_uid])
    panel.activity.addJob(job)
    pythonqt_gil.wait_until(lambda: job.finished or job.poll().done > 0, 60)
    worst = latency_probe.stop()
    if not job.finished:  # grabbing the panel is not timed
        # the Network section's jobs too: the line said "Idle (DICOMPlusLib ...)" through them
        assert " running" in panel.activity.status(), panel.activity.status()
        screenshot(panel, "panel-retrieve-running")
    latency_probe.start()
    pythonqt_gil.wait_until(lambda: job.finished, 120)
    worst = max(worst, latency_probe.stop())
    assert job.error is None, job.error
    assert len(panel.logic.database.instances(series.series_uid)) == 200
    with capsys.disabled():
        print(
            f"\n[pythonqt] C-GET 200 from Orthanc: {job.poll().elapsed:.2f} s, worst GUI timer gap {worst:.0f} ms"
        )
    assert worst < WORST_GUI_MS


def test_listener_receives_500_from_storescu_while_the_gui_stays_responsive(
    panel, pythonqt_gil, latency_probe, tmp_path, capsys
):
    series = make_series(tmp_path / "incoming", n=500, rows=32, cols=32, patient_id="GIL-LISTEN")
    port = panel.logic.startListener(port=free_port(), aeTitle="GILTEST").get(60)  # a job: the port
    try:
        started = time.perf_counter()
        with latency_probe:
            sender = subprocess.Popen(
                [
                    DCMTK.path("storescu"),
                    "-aec",
                    "GILTEST",
                    "127.0.0.1",
                    str(port),
                    "+sd",
                    str(series.folder),
                ],
                env=tool_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            pythonqt_gil.wait_until(lambda: sender.poll() is not None, 120)
        assert sender.returncode == 0, sender.stderr.read()
        assert len(panel.logic.database.instances(series.series_uid)) == 500
        with capsys.disabled():
            print(f"\n[pythonqt] storescu 500 -> panel listener: {time.perf_counter() - started:.2f} s, "
                  f"worst GUI timer gap {latency_probe.worst_ms:.0f} ms")  # fmt: skip
        assert latency_probe.worst_ms < WORST_GUI_MS
    finally:
        panel.logic.stopListener().get(60)  # the stop is a job; the last notifications come before its end
    assert [e.series_instance_uid for e in panel.logic.completedSeries] == [series.series_uid]
