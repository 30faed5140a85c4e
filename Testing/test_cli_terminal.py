"""The CLI in a real terminal: a pseudo-terminal (``spawn_in_terminal``) whose line discipline turns a
typed Ctrl-C (``\\x03``) into SIGINT for the command's whole process group, as a shell's terminal
does. Checks the progress bar, and that Ctrl-C during ``import`` and ``send`` ends
with one account ("cancelled after A/B ...; K kept; run the same command again ..."), exit code
130, no traceback, no temporary file left, and that running the command again finishes the work.

The series are many small instances made by copying one synthetic file with a new
SOPInstanceUID of the same length (writing thousands with pydicom would take longer than the
test), so that each command runs long enough to be interrupted in the middle.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from dicomplus_testing.peers import LOOPBACK, connecting_to, port_that_drops
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.terminal import cli, run_in_terminal
from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib.database import Database

COUNT = 2000
CANCELLED = re.compile(r"cancelled after (\d+)/(\d+) (\w+); (\d+) kept; run the same command again")


def many_instances(folder: Path, count: int) -> tuple[Path, str]:
    """``count`` instances of one series (copies of one file, each with its own SOPInstanceUID)."""
    template = make_series(folder / "template", n=1, rows=16, cols=16, patient_id="TTY1", seed=90)
    data = template.files[0].read_bytes()
    uid = template.sop_uids[0].encode()
    prefix = uid[: len(uid) - 7]
    out = folder / "many"
    out.mkdir()
    for i in range(count):
        (out / f"IM{i:05d}.dcm").write_bytes(data.replace(uid, prefix + b".1%05d" % i))
    return out, template.study_uid


def on_screen(text: str, columns: int = 160) -> list[str]:
    """The lines a terminal ``columns`` wide shows after ``text`` (escape sequences applied, as
    a user sees them), without the empty ones at the end."""
    import pyte

    screen = pyte.Screen(columns, 400)
    stream = pyte.Stream(screen)
    stream.feed(text.replace("\r\n", "\n").replace("\n", "\r\n"))  # the pty's output: \n is \r\n
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def assert_cancelled(code: int, text: str, unit: str) -> tuple[int, int, int]:
    assert code == 130, text
    assert "Traceback" not in text and "KeyError" not in text, text
    found = CANCELLED.search(text)
    assert found, text
    done, total, kept = int(found[1]), int(found[2]), int(found[4])
    assert found[3] == unit and 0 < done < total and kept <= done, text
    return done, total, kept


def leftovers(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if p.is_file() and p.name.startswith(".incoming")]


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    return many_instances(tmp_path_factory.mktemp("tty"), COUNT)


def test_search_table_in_a_terminal(tmp_path):
    db = tmp_path / "db"
    for i in range(23):  # 23 studies: more than a terminal page of 20
        make_series(tmp_path / f"s{i}", n=1, rows=4, cols=4, patient_id=f"P{i:02d}", seed=200 + i,
                    study_description=f"Study number {i}")  # fmt: skip
    assert cli("--db", str(db), "import", *[str(tmp_path / f"s{i}") for i in range(23)]).returncode == 0
    code, text = run_in_terminal(["search", "--db", str(db)], interrupt_at=None)
    assert code == 0, text
    lines = [line for line in text.splitlines() if "Study number" in line]
    assert len(lines) == 20, text
    # aligned columns: every row has its description at the same column
    assert len({line.index("Study number") for line in lines}) == 1
    assert "showing 20 of 23" in text
    assert "Instances" in text and "Series" in text  # the counts have columns
    # a key on a tag that is not a column: counting every match would read every header
    code, text = run_in_terminal(
        ["search", "--db", str(db), "--limit", "5", "BitsStored=16"], interrupt_at=None
    )
    assert code == 0 and "showing the first 5; more may match" in text, text
    # a narrow terminal hides columns, never cuts a UID, and says so
    series = json.loads(cli("--db", str(db), "search", "--level", "series", "--json").stdout)
    code, text = run_in_terminal(
        ["--db", str(db), "search", "--level", "series"], interrupt_at=None, columns=90
    )
    assert code == 0 and all(s["SeriesInstanceUID"] in text for s in series[:20]), text
    assert "too narrow for StudyDescription" in text
    piped = cli("--db", str(db), "search", "--columns", "patientid,StudyDescription").stdout.splitlines()
    assert piped[0] == "PatientID\tStudyDescription" and len(piped) == 24  # header + every match


def test_search_table_cuts_no_heading_and_no_count(tmp_path):
    """Series without a description, their 64-character UIDs, in a 120-column terminal: the empty
    SeriesDescription column took 19 columns and rich made room for its heading by cutting the
    others ("Modal…", "SeriesNum…", "Instan…", "dicom2ni…"). A shown column is whole (a long
    name or description may end in "…"), and an empty column is left out without a note. At 80
    columns the study table cut its counts ("Seri…  Instan…"): they give way too. At 120 columns
    the study table left out PatientName and StudyDate and kept the counts: who and when are
    what a user looks for, they give way last (and a narrow column the room left takes is put
    back)."""
    db = tmp_path / "db"
    uid = "1.2.826.0.1.3680043.8.498.1326472753970704619609599968845885622"  # 64 characters
    for i in range(3):
        make_series(tmp_path / f"s{i}", n=1, rows=4, cols=4, patient_id="dicom2nifti", seed=300 + i,
                    series_description="", series_number=300 + i, series_uid=f"{uid[:-1]}{i}",
                    study_uid=f"{uid[:-1]}{i + 5}")  # fmt: skip
    assert cli("--db", str(db), "import", *[str(tmp_path / f"s{i}") for i in range(3)]).returncode == 0

    def table(level: str, columns: int) -> list[str]:
        code, text = run_in_terminal(["--db", str(db), "search", "--level", level], columns=columns)
        assert code == 0, text
        lines = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line) for line in text.splitlines()]
        rows = lines[: next(i for i, line in enumerate(lines) if not line.strip() or line.startswith("("))]
        assert len(rows) == 4 and "…" not in "".join(rows), (level, columns, text)
        assert all(f"{uid[:-1]}{i + (5 if level == 'study' else 0)}" in text for i in range(3)), text
        assert "SeriesDescription" not in text, text
        return rows[0].split()

    for columns in (80, 100, 120, 160):
        heading = table("series", columns)
        if columns == 120:  # who, when and which series beside the UID; the counts give way
            assert heading == ["PatientName", "StudyDate", "Modality", "SeriesNumber", "SeriesInstanceUID"]
    assert table("study", 80) == ["StudyDate", "StudyInstanceUID"]
    assert table("study", 100) == ["PatientName", "StudyDate", "StudyInstanceUID"]
    assert table("study", 120) == ["PatientID", "PatientName", "StudyDate", "Modalities", "StudyInstanceUID"]


def test_import_progress_and_ctrl_c(instances, tmp_path):
    folder, _ = instances
    db = tmp_path / "db"
    # two worker processes: the terminal's SIGINT reaches them too; only the command answers it
    code, text = run_in_terminal(["--db", str(db), "import", str(folder), "--jobs", "2"], interrupt_at=100)
    assert "import" in text and "━" in text  # the progress bar was drawn
    assert text.count("cancelling (Ctrl-C again to stop at once)") == 1, text
    # as the terminal shows it: the message on a line of its own, then the bar, once (the
    # message's newline left the bar where it was, and the next refresh drew a second one)
    lines = on_screen(text)
    bars = [i for i, line in enumerate(lines) if "━" in line]
    assert len(bars) == 1, "\n".join(lines)
    assert lines[bars[0] - 1] == "cancelling (Ctrl-C again to stop at once)...", "\n".join(lines)
    _, total, kept = assert_cancelled(code, text, "files")
    assert total == COUNT
    assert_account_above_summary(text, "added ")
    # looked at before a Database opens it: opening sweeps a dead writer's temporaries
    left = leftovers(db / "store")
    with Database(db) as database:
        assert database.info()["instances"] == kept
    assert left == []
    again = cli("--db", str(db), "import", str(folder), "--json")  # resumes: only the rest is read
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["added"] == COUNT - kept and report["unchanged"] == kept


@pytest.mark.peers
def test_send_ctrl_c(instances, storescp):
    folder, _ = instances
    node = f"{storescp.aet}@{LOOPBACK}:{storescp.port}"
    code, text = run_in_terminal(["send", node, str(folder)], interrupt_at=100)
    assert "send" in text and "━" in text
    _, total, kept = assert_cancelled(code, text, "files")
    assert total == COUNT and kept == len(list(Path(storescp.out_dir).rglob("*.*")))
    assert_account_above_summary(text, "sent ")


def test_migrate_ctrl_c(instances, postgres_url, tmp_path):
    folder, _ = instances
    source = tmp_path / "source"
    assert cli("--db", str(source), "import", str(folder)).returncode == 0
    args = ["db", "migrate", "--from", str(source), "--to", postgres_url]
    code, text = run_in_terminal(args, interrupt_at=100)
    assert_cancelled(code, text, "instances")
    assert_account_above_summary(text, "copied ")


def shown_lines(text: str) -> list[str]:
    """The lines a terminal showed, without escape sequences; ``splitlines()`` splits at the
    progress bar's carriage returns too, so each drawing of the bar is a line."""
    return [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line) for line in text.splitlines()]


def assert_account_above_summary(text: str, summary: str) -> None:
    """The one account of a cancel comes first, then the summary line starting with ``summary``
    (which does not say "cancelled" again): read top down, why it stopped, then what it did."""
    lines = shown_lines(text)
    account = [i for i, line in enumerate(lines) if CANCELLED.search(line)]
    summaries = [i for i, line in enumerate(lines) if line.startswith(summary)]
    assert len(account) == 1 and len(summaries) == 1 and account[0] < summaries[0], text
    assert "cancelled" not in lines[summaries[0]], text


def test_the_bar_ends_on_the_last_count():
    """The bar's last drawing shows the last count it was given, even one the 0.1 s throttle
    skipped: a cancelled import drew 2448/2800 above "cancelled after 2544/2800 files"."""
    code = (
        "from DICOMPlusLib.cli.app import ProgressBar\n"
        "bar = ProgressBar('import', True)\n"
        "bar(1, 10, 'a')\n"
        "bar(7, 10, 'b')\n"  # within 0.1 s of the first: not drawn then
        "bar.close()\n"
    )
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("NO_COLOR", None)
    proc = subprocess.run([sys.executable, "-c", code], stdin=terminal, stdout=terminal, stderr=terminal,
                          cwd=REPO_ROOT, env=env, timeout=60)  # fmt: skip
    os.close(terminal)
    shown = b""
    while select.select([controller], [], [], 0.5)[0]:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: nothing more
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    text = shown.decode(errors="replace")
    assert proc.returncode == 0, text
    assert re.findall(r"(\d+)/10", text)[-1] == "7", text


@pytest.mark.parametrize(
    ("command", "account"),
    [
        (["query"], "cancelled after 0 results"),
        (["retrieve", "--study", "1.2.3"], "cancelled after 0 instances"),
    ],
)
def test_ctrl_c_while_a_peer_does_not_answer_the_association(command, account, tmp_path):
    """Ctrl-C while a peer holds the association request unanswered ends the command (130) then,
    not after --timeout: the query waited the whole timeout (30 s) and ended as a failure (1)."""
    with socket.socket() as silent:  # accepts the connection, reads the request, never answers
        silent.bind((LOOPBACK, 0))
        silent.listen()
        silent.settimeout(60)
        node = f"SILENT@{LOOPBACK}:{silent.getsockname()[1]}"
        args = ["--db", str(tmp_path / "db"), command[0], node, *command[1:], "--timeout", "600"]
        held = []

        def requested(_shown: bytes) -> bool:  # an A-ASSOCIATE-RQ: the command now waits for our answer
            conn, _ = silent.accept()
            conn.settimeout(60)
            held.append(conn)
            return conn.recv(1) == b"\x01"

        try:  # far below --timeout 600
            code, text = run_in_terminal(args, interrupt_when=requested, timeout=60)
        finally:
            for conn in held:
                conn.close()
    assert code == 130, text
    assert account in text and "Traceback" not in text and "no match" not in text, text


def interrupt_once_connecting(port: int, typed_at: list[float]):
    """For :func:`run_in_terminal`'s ``interrupt_when``: Ctrl-C once a connection to ``port``
    waits in SYN-SENT, 0.3 s later (well inside ``connect()``, past any Python-level check); the
    time it is typed goes to ``typed_at``."""

    def connecting(_shown: bytes) -> bool:
        if not connecting_to(port):
            return False
        time.sleep(0.3)
        typed_at.append(time.monotonic())
        return True

    return connecting


@pytest.mark.parametrize(
    ("command", "account"),
    [
        (["echo"], "dicomplus: interrupted"),
        (["query"], "cancelled after 0 results"),
        (["retrieve", "--study", "1.2.3"], "cancelled after 0 instances"),
        (["send", "FILES"], "cancelled after 0/2 files; 0 kept"),
    ],
)
def test_ctrl_c_while_connecting_to_a_host_that_drops_packets(command, account, tmp_path):
    """Ctrl-C while the TCP connection waits for a host that drops packets (a firewall's DROP,
    an address nothing answers; here a listening socket whose backlog is full, which drops every
    further SYN) ends the command at once (130) with its one account: send and retrieve held it
    in ``connect()`` for the whole --timeout."""
    series = make_series(tmp_path / "s", n=2, rows=4, cols=4, seed=91)
    with port_that_drops() as port:
        node = f"DROPS@{LOOPBACK}:{port}"
        rest = [str(series.folder) if a == "FILES" else a for a in command[1:]]
        args = ["--db", str(tmp_path / "db"), command[0], node, *rest, "--timeout", "600"]
        typed_at: list[float] = []
        connecting = interrupt_once_connecting(port, typed_at)
        code, text = run_in_terminal(args, interrupt_when=connecting, timeout=60)  # far below --timeout 600
    assert time.monotonic() - typed_at[0] < 5, text  # at once, not after --timeout
    assert code == 130, text
    assert account in text and "Traceback" not in text, text
    assert "failed" not in text and "error" not in text, text  # a cancel, not files that failed
