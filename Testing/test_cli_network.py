"""The network commands as a user meets them (issue 21, items 1, 9 and 10): the sample PACS in a
database of its own on 127.0.0.1, listener output per series with rejections explained on our
side, one vocabulary for retrieve methods, DICOMweb nodes shown by URL without their secrets,
secrets from the environment or a prompt, the same words for non-DICOM files in import and send.

The peers are real: DCMTK storescu/echoscu/storescp and our own listener and Q/R SCP, on free
loopback ports.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port
from dicomplus_testing.util import run_cli as run
from DICOMPlusLib.database import Database
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP


class Running:
    """A long-running ``dicomplus`` command whose output lines are read as they come."""

    def __init__(self, args: list[str], env: dict | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "DICOMPlusLib.cli", *args], cwd=REPO_ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in:\n" + "\n".join(self.seen))

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(30) == 0
        finally:
            if self.proc.poll() is None:  # it did not stop: do not leave it running
                self.proc.kill()
                self.proc.wait()
        self.reader.join(10)  # it has read every line up to the end of the output
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "\n".join(self.seen)


def listening_address(port: int) -> str:
    """The local address a TCP port listens on, from /proc/net/tcp (``127.0.0.1`` or ``0.0.0.0``)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:
            return socket.inet_ntoa(bytes.fromhex(address)[::-1])
    raise AssertionError(f"nothing listens on port {port}")


def test_serve_sample_has_a_database_of_its_own_on_loopback(tmp_path):
    home = tmp_path / "home"
    user_db = tmp_path / "my-db"
    env = dict(
        os.environ, HOME=str(home), XDG_DATA_HOME="", DICOMPLUS_DB=str(user_db), PYTHONPATH=str(REPO_ROOT)
    )
    port = free_port()
    serving = Running(["serve", "--sample", "--port", str(port)], env)
    try:
        serving.wait_for("dicomplus-pacs")
        assert listening_address(port) == "127.0.0.1"
    finally:
        banner = serving.stop()
    sample_db = home / ".local" / "share" / "dicomplus" / "sample-pacs" / "dicomplus.sqlite"
    assert "DICOMPlus sample PACS is running" in banner
    assert f"Sample database (not yours): {sample_db}" in banner and "2 patients" in banner
    assert "this computer only; --host 0.0.0.0" in banner
    assert not user_db.exists()  # the user's own database was not touched

    # serving the user's database: not called a sample; --host opens it to other computers
    with Database(user_db) as db:
        db.import_paths([make_series(tmp_path / "s", n=2, rows=4, cols=4).folder], jobs=1)
    port = free_port()
    serving = Running(["serve", "--port", str(port), "--host", "0.0.0.0"], env)
    try:
        serving.wait_for("dicomplus-pacs")
        assert listening_address(port) == "0.0.0.0"
    finally:
        banner = serving.stop()
    assert "DICOMPlus PACS is running" in banner and "sample PACS" not in banner and "Sample" not in banner
    assert f"Database: {user_db / 'dicomplus.sqlite'} (1 patients" in banner


@pytest.mark.peers
def test_listener_says_one_line_per_series_and_how_to_accept_a_rejected_peer(dcmtk, tmp_path):
    series = make_series(tmp_path / "s", n=3, rows=8, cols=8, patient_id="LST1", seed=61)
    port = free_port()
    db = str(tmp_path / "db")
    base = [
        "--db",
        db,
        "listen",
        "--port",
        str(port),
        "--host",
        LOOPBACK,
        "--allow",
        "MODALITY",
        "--idle",
        "0.5",
    ]
    listening = Running(base)
    try:
        listening.wait_for("listening as DICOMPLUS")
        dcmtk.run("storescu", "-aet", "MODALITY", "-aec", "DICOMPLUS", LOOPBACK, port, *series.files)
        line = listening.wait_for("received series")
        assert series.series_uid in line and "3 instances" in line and "LST1" in line and "MODALITY" in line
        refused = dcmtk.run("echoscu", "-aet", "STRANGER", "-aec", "DICOMPLUS", LOOPBACK, port, check=False)
        assert refused.returncode != 0
        line = listening.wait_for("rejected")
        assert "'STRANGER'" in line and "--allow MODALITY,STRANGER" in line
    finally:
        text = listening.stop()
    assert "stored " not in text  # no line per instance without -v

    port = free_port()
    listening = Running([*base[:3], "-v", *base[3:4], str(port), *base[5:]])
    try:
        listening.wait_for("listening as DICOMPLUS")
        other = make_series(tmp_path / "o", n=2, rows=8, cols=8, patient_id="LST2", seed=62)
        dcmtk.run("storescu", "-aet", "MODALITY", "-aec", "DICOMPLUS", LOOPBACK, port, *other.files)
        listening.wait_for("received series")
    finally:
        text = listening.stop()
    assert sum(line.startswith("stored ") for line in text.splitlines()) == 2  # -v: each instance


@pytest.mark.peers
def test_listener_counts_distinct_instances_of_a_series(dcmtk, tmp_path):
    """A sender that sends the same instances again (a retry, a study pushed twice) within the
    idle time: the series line counts each instance once and says how many copies came again."""
    series = make_series(tmp_path / "s", n=3, rows=8, cols=8, patient_id="LST3", seed=63)
    port = free_port()
    listening = Running(["--db", str(tmp_path / "db"), "listen", "--port", str(port), "--host", LOOPBACK,
                         "--idle", "2", "--json"])  # fmt: skip
    try:
        listening.wait_for('"event"')
        files = [*series.files, *series.files[:2]]  # two of them twice, in one association
        dcmtk.run("storescu", "-aec", "DICOMPLUS", LOOPBACK, port, *files)
        dcmtk.run("storescu", "-aec", "DICOMPLUS", LOOPBACK, port, series.files[0])  # and once more
        event = json.loads(listening.wait_for("series_complete"))
    finally:
        listening.stop()
    assert event["SeriesInstanceUID"] == series.series_uid
    assert (event["count"], event["resent"]) == (3, 3), event

    port = free_port()
    listening = Running(["--db", str(tmp_path / "db"), "listen", "--port", str(port), "--host", LOOPBACK,
                         "--idle", "2"])  # fmt: skip
    try:
        listening.wait_for("listening as DICOMPLUS")
        dcmtk.run("storescu", "-aec", "DICOMPLUS", LOOPBACK, port, *series.files, series.files[1])
        line = listening.wait_for("received series")
    finally:
        listening.stop()
    assert "3 instances (and 1 re-sent copy) of patient LST3" in line, line


def test_a_malformed_address_says_what_it_lacks(tmp_path, capsys):
    """``nodes add pacs PACS@10.0.0.1`` (no port) said "give a configured node name or
    AE@HOST:PORT": nodes add takes no node name, and the user had typed an address. The message
    names what is missing; a port out of range keeps its own message."""
    nodes = ("--nodes", tmp_path / "nodes.json")
    cases = {
        ("nodes", "add", "pacs", "PACS@10.0.0.1"): "'PACS@10.0.0.1' has no port number: give AE@HOST:PORT",
        ("nodes", "add", "pacs", "PACS@10.0.0.1:x"): "'PACS@10.0.0.1:x' has no port number",
        ("nodes", "add", "pacs", "10.0.0.1:104"): "'10.0.0.1:104' has no AE title: give AE@HOST:PORT",
        ("nodes", "add", "pacs", "PACS@:104"): "cannot read 'PACS@:104': give AE@HOST:PORT",
        ("echo", "PACS@10.0.0.1"): "'PACS@10.0.0.1' has no port number",
        ("echo", "PACS@10.0.0.1:70000"): "invalid port 70000: use a number from 1 to 65535",
    }
    for args, says in cases.items():
        code, _, err = run(capsys, *args, *nodes)
        assert code == 2 and says in err and "configured node name" not in err, (args, err)
    assert not (tmp_path / "nodes.json").exists()


def test_nodes_one_vocabulary_urls_and_no_secrets(tmp_path, capsys, monkeypatch):
    nodes = ("--nodes", tmp_path / "nodes.json")
    assert run(capsys, "nodes", "add", "a", "A@10.0.0.1:104", "--retrieve", "MOVE", *nodes)[0] == 0
    assert run(capsys, "nodes", "add", "b", "B@10.0.0.2:104", "--retrieve", "C-GET", *nodes)[0] == 0
    code, _, err = run(capsys, "nodes", "add", "c", "C@10.0.0.3:104", "--retrieve", "ftp", *nodes)
    assert code == 2 and "use get, move or dicomweb" in err
    code, _, err = run(capsys, "nodes", "add", "d", "SEVENTEEN_CHARS_X@10.0.0.4:104", *nodes)
    assert code == 2 and "has 17 characters; an AE title has at most 16" in err
    monkeypatch.setenv("WEB_PASSWORD", "pa55-from-env")
    args = ("nodes", "add", "web", "--dicomweb", "https://pacs.example.org/dicom-web", "--user", "ann")
    assert run(capsys, *args, "--password-env", "WEB_PASSWORD", *nodes)[0] == 0
    assert run(capsys, "nodes", "add", "tok", "--dicomweb", "https://x.example.org/web", "--token",
               "t0ken-on-the-line", *nodes)[0] == 0  # fmt: skip
    code, _, err = run(capsys, *args, "--password-env", "NOT_SET_ANYWHERE", "--replace", *nodes)
    assert code == 2 and "no environment variable NOT_SET_ANYWHERE" in err

    code, text, _ = run(capsys, "nodes", "list", *nodes)
    rows = {line.split()[0]: line for line in text.splitlines()}
    assert rows["a"].split()[1:3] == ["A@10.0.0.1:104", "move"] and rows["b"].split()[2] == "get"
    assert rows["web"].split()[1:3] == ["https://pacs.example.org/dicom-web", "dicomweb"]
    code, listed, _ = run(capsys, "nodes", "list", "--json", *nodes)
    for shown in (text, listed):
        assert "pa55-from-env" not in shown and "t0ken-on-the-line" not in shown
    by_name = {n["name"]: n for n in json.loads(listed)}
    assert by_name["web"]["dicomweb"]["password"] == "(set)" and by_name["a"]["retrieve_method"] == "move"
    stored = json.loads((tmp_path / "nodes.json").read_text())  # what is used to connect is kept
    assert "pa55-from-env" in json.dumps(stored) and "t0ken-on-the-line" in json.dumps(stored)
    # a URL where a node goes: how to name it (it said "add it with 'nodes add URL AE@HOST:PORT'")
    code, _, err = run(capsys, "query", "https://pacs.example.org/dicom-web", *nodes)
    assert "dicomplus nodes add NAME --dicomweb https://pacs.example.org/dicom-web" in err, err
    assert "AE@HOST:PORT" not in err


def test_password_from_a_prompt(tmp_path):
    """``--ask-password`` reads it without echo (getpass); with no terminal, from stdin."""
    nodes = tmp_path / "nodes.json"
    proc = subprocess.run([sys.executable, "-m", "DICOMPlusLib.cli", "nodes", "add", "web", "--dicomweb",
                           "https://pacs.example.org/dicom-web", "--user", "ann", "--ask-password", "--nodes",
                           str(nodes)], input="typed-secret\n", capture_output=True, text=True, cwd=REPO_ROOT,
                          start_new_session=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "typed-secret" in nodes.read_text() and "typed-secret" not in proc.stdout + proc.stderr


@pytest.mark.peers
def test_import_and_send_use_the_same_words(storescp, tmp_path, capsys):
    series = make_series(tmp_path / "s", n=2, rows=4, cols=4, seed=63)
    (series.folder / "README.txt").write_text("not an image")
    copy = tmp_path / "copy"
    shutil.copytree(series.folder, copy)
    db = tmp_path / "db"
    code, out, _ = run(capsys, "--db", db, "import", series.folder)
    assert code == 0 and "added 2" in out and "not DICOM 1" in out and "failed 0" in out
    code, out, _ = run(capsys, "--db", db, "-v", "import", copy)  # the same instances from elsewhere
    assert code == 0 and "duplicates 2" in out
    assert f"skipped {copy / series.files[0].name}: duplicate SOPInstanceUID" in out  # by name with -v
    assert f"skipped {copy / 'README.txt'}: not a DICOM file" in out
    code, out, _ = run(capsys, "send", f"{storescp.aet}@{LOOPBACK}:{storescp.port}", series.folder)
    assert code == 0 and "sent 2 of 2" in out and "not DICOM 1" in out


@pytest.mark.peers
def test_a_dicomdir_is_counted_as_a_dicomdir_not_as_not_dicom(storescp, tmp_path, capsys):
    """A DICOMDIR is DICOM (a media storage directory, PS3.10): the summaries name it, and the
    "not DICOM" count is left to files that are not DICOM at all."""
    from pydicom.fileset import FileSet

    series = make_series(tmp_path / "s", n=2, rows=4, cols=4, seed=65)
    fs = FileSet()
    for path in series.files:
        fs.add(path)
    media = tmp_path / "media"
    fs.write(media)
    (media / "README.txt").write_text("the viewer's notes")
    code, out, _ = run(capsys, "--db", tmp_path / "db", "import", media)
    assert code == 0 and "added 2" in out and "DICOMDIR 1, not DICOM 1, failed 0" in out, out
    code, out, _ = run(capsys, "--db", tmp_path / "db2", "-v", "import", media / "DICOMDIR")
    assert code == 0 and "added 2" in out and "DICOMDIR 1, not DICOM 0" in out, out
    assert f"skipped {media / 'DICOMDIR'}: media storage directory" in out
    code, out, _ = run(capsys, "send", f"{storescp.aet}@{LOOPBACK}:{storescp.port}", media)
    assert code == 0 and "sent 2 of 2" in out and "DICOMDIR 1, not DICOM 1" in out, out


def test_messages_name_the_option(tmp_path, capsys):
    """A C-MOVE destination port that is taken: the message names --listener-port."""
    series = make_series(tmp_path / "s", n=1, rows=4, cols=4, seed=64)
    pacs_db = Database(tmp_path / "pacs")
    pacs_db.import_paths([series.folder], jobs=1)
    server = QueryRetrieveSCP(pacs_db, QRConfig(port=0, host=LOOPBACK)).start()
    try:
        with socket.socket() as busy:
            busy.bind(("", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            node = f"{server.config.ae_title}@{LOOPBACK}:{server.port}"
            code, _, err = run(capsys, "--db", tmp_path / "db", "retrieve", node, "--study", series.study_uid,
                               "--method", "Move", "--listener-port", taken)  # fmt: skip
        assert code == 1 and "--listener-port" in err and str(taken) in err
    finally:
        server.stop()
        pacs_db.close()


def test_the_retrieve_summary_after_a_cancel(capsys):
    """After a cancel: the total when the selection's instances were listed, else only what
    arrived (it said "retrieved 108 of 108 instances" when the listing was cut); what the cancel
    kept from coming in one line, what failed otherwise by name."""
    from DICOMPlusLib.cli.qr import print_retrieve_summary
    from DICOMPlusLib.network.models import NOT_FETCHED_CANCELLED, RetrieveReport

    listed = RetrieveReport(done=[f"1.2.{i}" for i in range(108)], expected=300, cancelled=True, method="C-GET",
                            seconds=0.5, failed={f"1.3.{i}": NOT_FETCHED_CANCELLED for i in range(191)})  # fmt: skip
    listed.failed["1.4.1"] = "refused here: 0xA700 out of disk space"
    print_retrieve_summary(listed, "PACS")
    assert capsys.readouterr().out.splitlines() == [
        "retrieved 108 of 300 instances from PACS by get in 0.50 s",
        "  missing 1.4.1: refused here: 0xA700 out of disk space",
        f"  191 instances not fetched: {NOT_FETCHED_CANCELLED}",
    ]
    unlisted = RetrieveReport(done=[f"1.2.{i}" for i in range(108)], cancelled=True, method="C-GET", seconds=0.5,
                              warnings=["the instances of the selection are not known: cancelled"])  # fmt: skip
    print_retrieve_summary(unlisted, "PACS")
    assert capsys.readouterr().out.splitlines() == [
        "retrieved 108 instances from PACS by get in 0.50 s",
        "  warning: the instances of the selection are not known: cancelled",
    ]
