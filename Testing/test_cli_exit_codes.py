"""Exit codes of every command (DICOMPlusLib.cli.Exit): 0 ok, 1 failed or partial, 2 usage, 130
interrupted (130 is exercised under a pseudo-terminal in test_cli_terminal.py; 143 and 129, a
kill and a closed terminal, in test_cli_signals.py).

Each command is run for real: against a database built from synthetic files, DCMTK's storescp
and the sample PACS on loopback ports, and refused ports for the failures.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.cli import Exit, main
from DICOMPlusLib.database import Database
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP


def code_of(capsys, *args) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return int(code), out, err


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("exit-codes")
    ct = make_series(root / "ct", n=4, rows=16, cols=16, patient_id="EXIT1", seed=81)
    db_path = root / "db"
    with Database(db_path) as db:
        db.import_paths([ct.folder], jobs=1)
    junk = root / "junk"
    junk.mkdir()
    (junk / "README.txt").write_text("not DICOM")
    truncated = root / "truncated"
    truncated.mkdir()
    data = ct.files[0].read_bytes()
    (truncated / "cut.dcm").write_bytes(data[: len(data) // 2])
    volume = root / "vol.nrrd"
    sitk.WriteImage(
        sitk.GetImageFromArray(np.arange(3 * 8 * 8, dtype=np.int16).reshape(3, 8, 8)), str(volume)
    )
    scene = root / "scene.mrb"
    with zipfile.ZipFile(scene, "w") as z:
        z.writestr("scene/scene.mrml", "<MRML></MRML>")
    return {"root": root, "ct": ct, "db": str(db_path), "junk": junk, "truncated": truncated,
            "volume": volume, "scene": scene, "nodes": root / "nodes.json"}  # fmt: skip


@pytest.fixture(scope="module")
def pacs(world):
    """The sample PACS (our own Q/R SCP) over a copy of the world's series, on a free port."""
    db = Database(world["root"] / "pacs-db")
    db.import_paths([world["ct"].folder], jobs=1)
    server = QueryRetrieveSCP(db, QRConfig(port=0, host=LOOPBACK)).start()
    yield f"{server.config.ae_title}@{LOOPBACK}:{server.port}"
    server.stop()
    db.close()


def refused() -> str:
    return f"NOBODY@{LOOPBACK}:{free_port()}"


def test_database_commands(world, capsys, tmp_path):
    w, missing_db = world, str(tmp_path / "no" / "such")
    new_db = str(tmp_path / "new")
    assert code_of(capsys, "--db", new_db, "import", w["ct"].folder)[0] == Exit.OK
    assert code_of(capsys, "--db", new_db, "import", tmp_path / "nothere")[0] == Exit.USAGE
    code, out, err = code_of(capsys, "--db", new_db, "import", w["junk"])
    assert code == Exit.FAILED and "no DICOM instance found" in err and "not DICOM 1" in out
    code, out, _ = code_of(capsys, "--db", new_db, "import", w["truncated"], w["ct"].folder)
    assert code == Exit.FAILED and "failed 1" in out and "cut.dcm" in out  # partial
    assert code_of(capsys, "--db", new_db, "import")[0] == Exit.USAGE

    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    code, _, err = code_of(capsys, "--db", not_a_folder / "db", "import", w["ct"].folder)  # was a traceback
    assert code == Exit.FAILED and f"cannot create the database {not_a_folder}/db/" in err, err

    assert code_of(capsys, "--db", w["db"], "info")[0] == Exit.OK
    assert code_of(capsys, "--db", missing_db, "info")[0] == Exit.USAGE

    assert code_of(capsys, "--db", w["db"], "search", "PatientID=EXIT1")[0] == Exit.OK
    assert (
        code_of(capsys, "--db", w["db"], "search", "PatientID=NOBODY")[0] == Exit.OK
    )  # no match is no error
    assert code_of(capsys, "--db", w["db"], "search", "StudyDate=soon")[0] == Exit.USAGE
    assert code_of(capsys, "--db", w["db"], "search", "--level", "nothing")[0] == Exit.USAGE
    assert code_of(capsys, "--db", missing_db, "search")[0] == Exit.USAGE

    code, out, _ = code_of(capsys, "--db", w["db"], "delete", "--study", w["ct"].study_uid, "--dry-run")
    assert code == Exit.OK and "would delete: 1 patient, 1 study, 1 series, 4 instances" in out
    for scope in (("--study", "1.2.3.4"), ("--series", "1.2.3.4"), ("--patient", "NOBODY")):
        code, out, err = code_of(capsys, "--db", w["db"], "delete", *scope, "--dry-run")
        assert code == Exit.FAILED and "nothing to delete" in err and "would delete" not in out
        code, out, err = code_of(capsys, "--db", w["db"], "delete", *scope)
        assert code == Exit.FAILED and "nothing to delete" in err and "deleted" not in out
    assert code_of(capsys, "--db", w["db"], "delete")[0] == Exit.USAGE
    assert code_of(capsys, "--db", missing_db, "delete", "--study", "1.2")[0] == Exit.USAGE
    assert not (tmp_path / "no").exists()


def test_loading_commands(world, capsys, tmp_path):
    w = world
    assert code_of(capsys, "inspect", w["ct"].folder)[0] == Exit.OK
    assert code_of(capsys, "inspect", tmp_path / "nothere")[0] == Exit.USAGE
    assert code_of(capsys, "inspect", w["junk"])[0] == Exit.FAILED  # no DICOM series in it
    assert code_of(capsys, "--db", w["db"], "inspect", "--series", "1.2.3")[0] == Exit.FAILED
    out = tmp_path / "ct.nrrd"
    assert code_of(capsys, "--db", w["db"], "convert", "--series", w["ct"].series_uid, "--out", out)[0] == 0
    assert out.is_file()
    assert code_of(capsys, "convert", w["ct"].folder)[0] == Exit.USAGE  # --out is required
    assert code_of(capsys, "--db", tmp_path / "none", "convert", "--series", "1.2", "--out", out)[0] == 2


def test_export_and_bundle_commands(world, capsys, tmp_path):
    w = world
    study = w["ct"].study_uid
    args = ("--db", w["db"], "export", w["volume"], "--study", study, "--modality", "CT")
    assert code_of(capsys, *args, "--out", tmp_path / "exported")[0] == Exit.OK
    assert code_of(capsys, "--db", w["db"], "export", tmp_path / "no.nrrd", "--study", study, "--out",
                   tmp_path / "e2")[0] == Exit.USAGE  # fmt: skip
    assert code_of(capsys, "--db", w["db"], "export", w["volume"], "--study", "1.2.3", "--out",
                   tmp_path / "e3")[0] == Exit.FAILED  # fmt: skip
    assert code_of(capsys, *args)[0] == Exit.USAGE  # neither --out nor --send

    bundle = tmp_path / "bundle.dcm"
    assert (
        code_of(capsys, "--db", w["db"], "bundle", "save", w["scene"], "--study", study, "--out", bundle)[0]
        == 0
    )
    code, _, err = code_of(
        capsys, "--db", w["db"], "bundle", "save", w["scene"], "--study", study, "--out", bundle
    )
    assert code == Exit.FAILED and "--out" in err
    assert code_of(capsys, "--db", w["db"], "bundle", "save", tmp_path / "no.mrb", "--study", study, "--out",
                   tmp_path / "b2.dcm")[0] == Exit.USAGE  # fmt: skip
    assert code_of(capsys, "bundle", "info", bundle)[0] == Exit.OK
    assert code_of(capsys, "bundle", "info", w["ct"].files[0])[0] == Exit.FAILED  # not a bundle
    assert code_of(capsys, "bundle", "info", tmp_path / "none.dcm")[0] == Exit.USAGE
    zipped = tmp_path / "out.mrb"
    assert code_of(capsys, "bundle", "extract", bundle, "--out", zipped)[0] == Exit.OK
    code, _, err = code_of(capsys, "bundle", "extract", bundle, "--out", zipped)
    assert code == Exit.FAILED and "--force" in err
    assert code_of(capsys, "bundle", "extract", bundle, "--out", zipped, "--force")[0] == Exit.OK
    assert code_of(capsys, "bundle", "extract", tmp_path / "none.dcm", "--out", tmp_path / "x.mrb")[0] == 2


@pytest.mark.peers
def test_network_client_commands(world, pacs, storescp, capsys, tmp_path):
    w = world
    store = f"{storescp.aet}@{LOOPBACK}:{storescp.port}"
    assert code_of(capsys, "echo", store)[0] == Exit.OK
    assert code_of(capsys, "echo", refused(), "--timeout", "3")[0] == Exit.FAILED
    assert code_of(capsys, "echo", "SEVENTEEN_CHARS_X@127.0.0.1:104")[0] == Exit.USAGE

    assert code_of(capsys, "send", store, w["ct"].folder)[0] == Exit.OK
    # an option between the node and the folders (argparse alone said "unrecognized arguments")
    code, out, err = code_of(capsys, "send", store, "--parallel", "2", w["ct"].folder, "--json")
    assert code == Exit.OK and json.loads(out)["sent"] == 4, err
    assert code_of(capsys, "send", refused(), w["ct"].folder, "--retries", "0")[0] == 1
    assert code_of(capsys, "send", store)[0] == Exit.USAGE  # nothing to send
    assert code_of(capsys, "send", store, tmp_path / "nothere")[0] == Exit.USAGE
    code, out, _ = code_of(capsys, "send", store, w["junk"])
    assert code == Exit.FAILED and "not DICOM 1" in out  # nothing sent

    assert code_of(capsys, "query", pacs, "PatientID=EXIT1")[0] == Exit.OK
    nobody = refused()
    code, _, err = code_of(capsys, "query", nobody, "--timeout", "3")
    assert code == Exit.FAILED and err.count(nobody) == 1, err  # not "cannot query A@h:p (A@h:p)"
    assert code_of(capsys, "query", pacs, "StudyDate=soon")[0] == Exit.USAGE

    db = str(tmp_path / "retrieved")
    code, out, _ = code_of(
        capsys, "--db", db, "retrieve", pacs, "--study", w["ct"].study_uid, "--method", "GET"
    )
    assert code == Exit.OK and "by get" in out
    assert code_of(capsys, "--db", db, "retrieve", refused(), "--study", "1.2.3", "--retries", "0")[0] == 1
    assert code_of(capsys, "--db", db, "retrieve", pacs)[0] == Exit.USAGE
    with socket.socket() as busy:  # our C-MOVE listener's port is taken: its own option, only it
        busy.bind((LOOPBACK, 0))
        busy.listen()
        code, _, err = code_of(capsys, "--db", db, "retrieve", pacs, "--study", w["ct"].study_uid, "--method",
                               "move", "--listener-port", busy.getsockname()[1], "--listener-host", LOOPBACK,
                               "--no-resume")  # fmt: skip
    assert code == Exit.FAILED and "(--listener-port N)" in err and "--port" not in err, err
    assert code_of(capsys, "--db", db, "retrieve", pacs, "--study", "1.2", "--method", "ftp")[0] == 2


def test_nodes_commands(world, capsys):
    nodes = ("--nodes", world["nodes"])
    assert code_of(capsys, "nodes", "add", "pacs", "PACS@10.1.2.3:104", *nodes)[0] == Exit.OK
    code, _, err = code_of(capsys, "nodes", "add", "pacs", "PACS@10.1.2.3:104", *nodes)
    assert code == Exit.USAGE and "--replace" in err
    assert code_of(capsys, "nodes", "add", "pacs", "PACS@10.1.2.3:105", "--replace", *nodes)[0] == Exit.OK
    assert code_of(capsys, "nodes", "list", *nodes)[0] == Exit.OK
    assert code_of(capsys, "nodes", "remove", "pacs", *nodes)[0] == Exit.OK
    assert code_of(capsys, "nodes", "remove", "pacs", *nodes)[0] == Exit.USAGE  # none of that name: usage
    assert code_of(capsys, "nodes", "frobnicate", *nodes)[0] == Exit.USAGE
    assert code_of(capsys, "demo", "--no-such-option")[0] == Exit.USAGE


def test_a_store_that_cannot_be_written(world, pacs, capsys, tmp_path):
    """A --store that cannot be written (here a file; a read-only mount alike) fails (1) with one
    line naming it before any work: import was a traceback, a DICOMweb retrieve too, and a C-GET
    blamed the PACS ("answered 0xA702: out of resources") for our own refusals."""
    store = tmp_path / "store-is-a-file"
    store.write_text("not a folder")
    commands = [
        ("import", world["ct"].folder),
        ("retrieve", pacs, "--study", world["ct"].study_uid, "--method", "get"),
        ("listen", "--port", "0", "--host", LOOPBACK),
    ]
    for command in commands:
        code, out, err = code_of(capsys, "--db", tmp_path / "db", "--store", store, *command)
        assert code == Exit.FAILED and "Traceback" not in err, (command, err)
        assert f"cannot write into the store {store}: it is a file, not a folder" in err, (command, err)
        assert "listening" not in out and "retrieved" not in out
    assert store.read_text() == "not a folder"
    code, out, _ = code_of(capsys, "--db", tmp_path / "db", "--store", store, "import", "--link",
                           world["ct"].folder)  # fmt: skip
    assert code == Exit.OK and "added 4" in out  # in place: the store is not written


def test_send_to_a_peer_that_never_answers_takes_a_timeout(world, capsys):
    """send --timeout, as echo, query and retrieve have it: a peer that accepts the connection and
    never answers held a send for 30 s per attempt with no way to shorten it."""
    with socket.socket() as silent:  # the kernel completes the connection; nobody reads
        silent.bind((LOOPBACK, 0))
        silent.listen()
        node = f"SILENT@{LOOPBACK}:{silent.getsockname()[1]}"
        code, out, err = code_of(capsys, "send", node, world["ct"].folder, "--timeout", "1", "--retries", "0")
    assert code == Exit.FAILED, err
    assert "sent 0 of 4" in out and "did not answer the association request within 1 s" in out, out


def test_malformed_values_are_usage_errors(world, capsys, tmp_path):
    """A malformed address, port, time or count is a usage error (2) named in one line, before
    anything runs: --timeout 0 was a traceback from the socket layer (1), AE@HOST:99999 and an
    AE@HOST without port were 1, a DICOMweb URL without http:// was 1."""
    nodes = ("--nodes", tmp_path / "nodes.json")
    cases = [
        ("echo", "PACS@127.0.0.1:99999", *nodes),
        ("echo", "PACS@127.0.0.1", *nodes),
        ("echo", refused(), "--timeout", "0", *nodes),
        ("echo", refused(), "--timeout", "-1", *nodes),
        ("query", refused(), "--timeout", "nan", *nodes),
        ("query", refused(), "--limit", "-1", *nodes),
        ("--db", tmp_path / "r", "retrieve", refused(), "--study", "1.2", "--parallel", "0", *nodes),
        ("--db", tmp_path / "r", "retrieve", refused(), "--study", "1.2", "--listener-port", "70000", *nodes),
        ("send", refused(), world["ct"].folder, "--retries", "-1", *nodes),
        ("--db", tmp_path / "l", "listen", "--port", "70000"),
        ("--db", tmp_path / "l", "listen", "--idle", "0"),
        ("--db", tmp_path / "i", "import", world["ct"].folder, "--jobs", "0"),
        ("--db", world["db"], "search", "--limit", "-1"),
        ("nodes", "add", "pacs", "127.0.0.1:104", *nodes),
        ("nodes", "add", "pacs", "PACS@10.1.2.3:0", *nodes),
        ("nodes", "add", "web", "--dicomweb", "pacs.example.org/dicom-web", *nodes),
    ]
    for args in cases:
        code, _, err = code_of(capsys, *args)
        assert code == Exit.USAGE and "Traceback" not in err and "error:" in err, (args, err)
    assert not (tmp_path / "nodes.json").exists()  # no malformed node was written
    assert not any((tmp_path / name).exists() for name in ("r", "l", "i"))  # nor a database made
    assert code_of(capsys, "echo", refused(), "--timeout", "0.5")[0] == Exit.FAILED  # a fraction is fine


def test_an_unknown_node_name_is_a_usage_error_everywhere(world, capsys, tmp_path):
    """A node name that is not configured is a mistake in the command line, as a database path
    that does not exist is: exit 2 (was 1) from every command that takes a node, before any
    work (export --send wrote its series first), with the closest configured name. ``--nodes``
    is taken before the command too, as ``--db`` is."""
    nodes = tmp_path / "nodes.json"
    assert code_of(capsys, "--nodes", nodes, "nodes", "add", "pacs", "PACS@127.0.0.1:104")[0] == Exit.OK
    assert nodes.exists()
    cases = [
        ("echo", "pcas"),
        ("query", "pcas", "PatientID=X"),
        ("--db", tmp_path / "r", "retrieve", "pcas", "--study", "1.2"),
        ("send", "pcas", world["ct"].folder),
        ("--db", world["db"], "send", "pcas", "--study", world["ct"].study_uid),
        ("--db", world["db"], "export", world["volume"], "--study", world["ct"].study_uid, "--send", "pcas"),
        ("nodes", "remove", "pcas"),
    ]
    before = Database(world["db"]).info()
    for args in cases:
        for where in ("before", "after"):
            line = ("--nodes", nodes, *args) if where == "before" else (*args, "--nodes", nodes)
            code, out, err = code_of(capsys, *line)
            assert code == Exit.USAGE, (line, code, out, err)
            assert (
                "no node named 'pcas'" in err and "did you mean 'pacs'?" in err and "Traceback" not in err
            ), err
            assert not out, (line, out)
    assert not (tmp_path / "r").exists() and Database(world["db"]).info() == before  # nothing done
    code, out, err = code_of(capsys, "echo", "https://pacs.example.org/dicom-web", "--nodes", nodes)
    assert code == Exit.USAGE and "nodes add NAME --dicomweb" in err, err


def _serving(args: list[str]) -> tuple[subprocess.Popen, int, queue.Queue[str]]:
    """Start a long-running command on ``--port 0`` and wait for the line that announces its port.

    Its own announcement, not a probe of a port chosen beforehand: another process (a parallel
    test run on the shared machine) may hold that port, the probe then reaches that process and
    the signal arrives while the command is still starting (it died of SIGTERM, exit -15).
    """
    proc = subprocess.Popen([sys.executable, "-m", "DICOMPlusLib.cli", *args, "--port", "0"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            seen.append(lines.get(timeout=0.2))
        except queue.Empty:
            continue
        found = re.search(r"(?:listening as \S+ on .* port |^  Port: +)(\d+)", seen[-1])
        if found:
            port = int(found.group(1))
            with socket.socket() as s:
                assert s.connect_ex((LOOPBACK, port)) == 0, (
                    f"{args} announced port {port} but does not accept"
                )
            return proc, port, lines
    proc.kill()
    raise AssertionError(f"{args} did not listen: {seen}, {proc.stderr.read() if proc.stderr else ''}")


@pytest.mark.parametrize("command", ["listen", "serve"])
def test_long_running_commands(world, command, tmp_path, capsys):
    db = str(tmp_path / "db") if command == "listen" else world["db"]
    for stop in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # each is a server's normal end
        proc, _, lines = _serving(["--db", db, command, "--host", LOOPBACK])
        try:
            proc.send_signal(stop)
            assert proc.wait(30) == Exit.OK, proc.stderr.read() if proc.stderr else ""
            said = []
            # both say they stopped (serve said nothing), on a line of its own (a Ctrl-C between the
            # banner's text and its newline, two writes of print(), joined it to the banner's last line)
            while not said or "stopped" not in said[-1]:
                said.append(lines.get(timeout=30))
            assert said[-1] == "stopped\n", said
        finally:
            if proc.poll() is None:  # it did not stop: do not leave it running
                proc.kill()
                proc.wait()
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        code, _, err = code_of(capsys, "--db", db, command, "--port", taken, "--host", LOOPBACK)
        assert code == Exit.FAILED and str(taken) in err
        assert "(--port N; 0: any free port)" in err, err  # the option that chooses another
    assert code_of(capsys, "--db", db, command, "--allow", "A" * 17)[0] == Exit.USAGE
    if command == "serve":  # serving a database that does not exist
        assert code_of(capsys, "--db", tmp_path / "none", "serve", "--port", "0")[0] == Exit.USAGE
