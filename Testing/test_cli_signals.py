"""``kill`` (SIGTERM) and a closed terminal (SIGHUP) end a running command as Ctrl-C does
(DICOMPlusLib.cli.signals): the work stops at a safe point, what is complete is kept, one account
is printed, no temporary or half-written file is left, the exit code is 128 + the signal (143,
129) and the same command run again finishes the work.

Each command runs for real, as its own process, and gets the signal once its progress bar (on a
pseudo-terminal, as in test_cli_terminal.py) or its first files show it is in the middle of the
work, never after a fixed sleep. ``kill PID`` reaches the command only, not its process group.
The retrieve runs once per way to stop it, Ctrl-C typed in its terminal and SIGTERM, in one test.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from test_cli_terminal import (
    CANCELLED,
    COUNT,
    assert_account_above_summary,
    cli,
    leftovers,
    many_instances,
    shown_lines,
)

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.terminal import spawn_in_terminal
from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib.cli import Exit, main
from DICOMPlusLib.database import Database
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP

RETRIEVED = 600  # instances the retrieve tests fetch by C-GET (slower than an import)
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))


def signalled_in_terminal(args: list[str], at: int, *, signals=(signal.SIGTERM,), hang_up=False,
                          kill=os.kill, timeout: float = 180) -> tuple[int, str]:  # fmt: skip
    """Run ``dicomplus ARGS`` on a pseudo-terminal; once its progress bar shows ``at`` or more
    done, send it ``signals`` (each after the previous one's "cancelling" line) by ``kill``, or with
    ``hang_up`` close the terminal (the kernel sends SIGHUP to the command, the session leader).
    SIGINT is typed, as Ctrl-C (``\\x03``): the terminal's line discipline sends it to the
    command's whole process group, as a user's Ctrl-C does (test_cli_terminal.py).
    Returns (exit code, what the terminal showed until then)."""
    proc, fd = spawn_in_terminal([sys.executable, "-m", "DICOMPlusLib.cli", *args], env=ENV)
    shown, pending, open_fd = b"", [] if hang_up else list(signals), True
    deadline = time.monotonic() + timeout
    try:
        while open_fd and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the command ended and closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            done = [int(a) for a, b in re.findall(rb"(\d+)/(\d+)", shown) if 0 < int(a) < int(b)]
            if not done or max(done) < at:
                continue
            if hang_up:
                os.close(fd)
                open_fd = False
            elif pending and shown.count(b"cancelling") == len(signals) - len(pending):
                sent = pending.pop(0)
                if sent == signal.SIGINT:
                    os.write(fd, b"\x03")  # Ctrl-C, as typed
                else:
                    kill(proc.pid, sent)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        else:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{args} did not end in {timeout} s:\n{shown.decode(errors='replace')}")
    finally:
        if open_fd:
            os.close(fd)
    text = shown.decode(errors="replace")
    assert not pending, f"the command ended before it was signalled:\n{text}"
    return proc.returncode, text


def account(text: str, unit: str) -> tuple[int, int]:
    """(total, kept) of the one account Ctrl-C prints, printed here too, without a traceback."""
    assert "Traceback" not in text, text
    found = CANCELLED.findall(text)
    assert len(found) == 1, text
    done, total, found_unit, kept = int(found[0][0]), int(found[0][1]), found[0][2], int(found[0][3])
    assert found_unit == unit and 0 < done < total and kept <= done, text
    return total, kept


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    return many_instances(tmp_path_factory.mktemp("signals"), COUNT)


def assert_resumes(db: Path, folder: Path, kept: int) -> None:
    """What was committed is in the database, no temporary is left, and importing again adds
    only the rest."""
    # looked at before a Database opens it: opening sweeps a dead writer's temporaries
    left = leftovers(db / "store")
    with Database(db) as database:
        assert database.info()["instances"] == kept
    assert left == []
    again = cli("--db", str(db), "import", str(folder), "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["added"] == COUNT - kept and report["unchanged"] == kept


def test_import_sigterm(instances, tmp_path):
    folder, _ = instances
    db = tmp_path / "db"
    code, text = signalled_in_terminal(["--db", str(db), "import", str(folder), "--jobs", "2"], at=100)
    assert text.count("cancelling on SIGTERM (a second signal stops at once)") == 1, text
    assert code == Exit.TERMINATED == 143, text
    total, kept = account(text, "files")
    assert total == COUNT
    assert_resumes(db, folder, kept)


def test_import_sigterm_to_its_process_group(instances, tmp_path):
    """systemd (KillMode=control-group) and ``kill -- -PGID`` reach the worker processes too
    (--link --jobs 2): they die as a pool's workers should, the command cancels as before."""
    folder, _ = instances
    db = tmp_path / "db"
    args = ["--db", str(db), "import", str(folder), "--link", "--jobs", "2"]
    code, text = signalled_in_terminal(args, at=100, kill=os.killpg)  # the command leads its group
    assert code == 143, text
    _, kept = account(text, "files")
    with Database(db) as database:
        assert database.info()["instances"] == kept
    again = cli(*args, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["added"] == COUNT - kept


def test_import_second_sigterm_stops_at_once(instances, tmp_path):
    folder, _ = instances
    db = tmp_path / "db"
    args = ["--db", str(db), "import", str(folder), "--jobs", "2"]
    code, text = signalled_in_terminal(args, at=100, signals=(signal.SIGTERM, signal.SIGTERM))
    assert code == 143 and "Traceback" not in text, text
    # looked at before a Database opens it: opening sweeps a dead writer's temporaries
    left = leftovers(db / "store")
    with Database(db) as database:
        kept = database.info()["instances"]
    assert kept < COUNT and left == []  # what was committed before it: maybe nothing yet
    again = cli(*args, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["added"] == COUNT - kept


def test_import_terminal_closed(instances, tmp_path):
    """SIGHUP from a closed terminal, with worker processes (--link --jobs 2): the account has
    nowhere to go, but the command ends cleanly (129, not a traceback's 1 on EIO) and keeps
    what it committed."""
    folder, _ = instances
    db = tmp_path / "db"
    args = ["--db", str(db), "import", str(folder), "--link", "--jobs", "2"]
    code, text = signalled_in_terminal(args, at=100, hang_up=True)
    assert code == Exit.HANGUP == 129, text
    with Database(db) as database:
        kept = database.info()["instances"]
    assert 0 < kept < COUNT
    again = cli(*args, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["added"] == COUNT - kept and report["unchanged"] == kept


@pytest.mark.parametrize(
    ("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_retrieve_stopped(instances, tmp_path, stop, code):
    """A C-GET retrieve stopped by Ctrl-C typed in its terminal or by SIGTERM: exit 128 + the
    signal, one account, what arrived complete is in the database, no temporary file, and the
    same command run again fetches only the rest."""
    folder, study = instances
    pacs_db = Database(tmp_path / "pacs")
    pacs_db.import_paths([str(p) for p in sorted(folder.iterdir())[:RETRIEVED]])  # C-GET is slower
    server = QueryRetrieveSCP(pacs_db, QRConfig(port=0, host=LOOPBACK)).start()
    try:
        node = f"{server.config.ae_title}@{LOOPBACK}:{server.port}"
        db = tmp_path / "db"
        args = ["--db", str(db), "retrieve", node, "--study", study, "--method", "get"]
        exit_code, text = signalled_in_terminal(args, at=50, signals=(stop,))
        assert exit_code == code, text
        assert stop != signal.SIGTERM or "cancelling on SIGTERM" in text, text
        assert "finding the instances" in text  # drawn before the first instance: not a blank wait
        total, kept = account(text, "instances")
        assert total == RETRIEVED
        assert_account_above_summary(text, "retrieved ")
        lines = shown_lines(text)
        # what did not come is one line, not 20 "missing" ones; the bar shows no UID's tail. When
        # the stop came before the listing of the selection's instances (it runs beside the C-GET:
        # seen on a loaded machine), which of them did not come is not known: the summary then
        # says how many were retrieved, and why it cannot say more.
        if (
            "  warning: the instances of the selection are not known: cancelled while listing the instances"
            in lines
        ):
            assert f"retrieved {kept} instances from {node} by get" in text, text
            assert not [line for line in lines if "not fetched" in line], text
        else:
            assert f"  {total - kept} instances not fetched: cancelled before it arrived" in lines, text
        assert not [line for line in lines if line.startswith("  missing ")], text
        assert not [line for line in lines if line.startswith("retrieve ") and re.search(r"\d{12}", line)], (
            text
        )
        # looked at before a Database opens it: opening sweeps a dead writer's temporaries
        left = leftovers(db / "store")
        with Database(db) as database:
            assert database.info()["instances"] == kept
        assert left == []
        again = cli(*args, "--json")
        assert again.returncode == 0, again.stderr
        report = json.loads(again.stdout)
        assert report["complete"] and report["skipped"] == kept and report["done"] == RETRIEVED - kept
    finally:
        server.stop()
        pacs_db.close()


def _terminated_once(args: list[str], ready) -> None:
    """Run ``dicomplus ARGS``, send one SIGTERM as soon as ``ready()`` (polled) says the command
    is mid-write, and check that it ended as Ctrl-C would have ended it (143, the
    interruption line, no traceback)."""
    proc = subprocess.Popen([sys.executable, "-m", "DICOMPlusLib.cli", *args], cwd=REPO_ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.002)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "dicomplus: interrupted (SIGTERM)" in err and "Traceback" not in err, err


def test_export_sigterm_leaves_no_partial_series(tmp_path):
    """Export writes a new series file by file: killed in the middle, it removes what it wrote
    (a partial series in --out would look complete to whoever reads the folder)."""
    ct = make_series(tmp_path / "ct", n=2, rows=16, cols=16, patient_id="SIG1", seed=91)
    db = tmp_path / "db"
    assert cli("--db", str(db), "import", str(ct.folder)).returncode == 0
    slices = 1500
    volume = tmp_path / "vol.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((slices, 32, 32), np.int16)), str(volume))
    out = tmp_path / "out"
    args = [
        "--db",
        str(db),
        "export",
        str(volume),
        "--study",
        ct.study_uid,
        "--modality",
        "CT",
        "--out",
        str(out),
    ]
    _terminated_once(args, lambda: out.is_dir() and len(list(out.iterdir())) >= 20)
    assert list(out.iterdir()) == []
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert len(list(out.glob("*.dcm"))) == slices


def test_handlers_only_while_a_command_runs(tmp_path, capsys):
    """main puts back the handlers it found: the library (in Slicer, in the engine) never runs
    under the CLI's."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    ct = make_series(tmp_path / "ct", n=1, rows=4, cols=4, patient_id="SIG2", seed=92)
    assert main(["--db", str(tmp_path / "db"), "import", str(ct.folder)]) == Exit.OK
    assert main(["--db", str(tmp_path / "db"), "info"]) == Exit.OK
    assert {s: signal.getsignal(s) for s in before} == before
    capsys.readouterr()


@pytest.mark.peers
def test_send_sigterm(instances, storescp):
    folder, _ = instances
    node = f"{storescp.aet}@{LOOPBACK}:{storescp.port}"
    code, text = signalled_in_terminal(["send", node, str(folder)], at=100)
    assert code == 143 and "cancelling on SIGTERM" in text, text
    total, kept = account(text, "files")
    assert total == COUNT and kept == len(list(Path(storescp.out_dir).rglob("*.*")))


def test_convert_sigterm_leaves_no_partial_volume(tmp_path):
    """Killed while it writes the NIfTI (under NAME.tmp until complete): neither the volume nor
    its temporary is left; the same command then writes it."""
    series = make_series(tmp_path / "ct", n=500, rows=256, cols=256, patient_id="SIG3", seed=93)
    out = tmp_path / "out.nii.gz"
    args = ["convert", str(series.folder), "--out", str(out), "--gz-level", "9", "--no-sidecar"]
    partial = out.with_name(out.name + ".tmp")
    _terminated_once(args, partial.exists)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct"]
    again = cli(*args)
    assert again.returncode == 0 and out.exists() and not partial.exists(), again.stderr
