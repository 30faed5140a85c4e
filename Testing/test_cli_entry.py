"""The ``dicomplus`` process's exit (DICOMPlusLib/cli/entry.py): after the command it ends without
the interpreter's teardown, but keeps what a user relies on from a normal exit: the exit code,
everything written to stdout and stderr (also through a pipe), the ``atexit`` functions, and a
thread that still works is waited for. Real processes; asserted on what they print and return.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib.cli import Exit

ENV = dict(os.environ, PYTHONPATH=str(REPO_ROOT))

#: Runs the entry as the console script does, with an object whose finaliser prints at the
#: interpreter's teardown (a teardown that ran prints "teardown"), an atexit function, and,
#: when asked, a thread that is not a daemon and still works when the command returns.
SCRIPT = """
import atexit, sys, threading, time
from DICOMPlusLib.cli.entry import run

class Witness:
    def __del__(self):
        sys.stderr.write("teardown\\n")

witness = Witness()
atexit.register(lambda: sys.stderr.write("atexit ran\\n"))
if sys.argv[1] == "thread":
    def late():
        time.sleep(1.0)
        sys.stderr.write("thread finished\\n")
    threading.Thread(target=late).start()
if sys.argv[1] == "stuck":  # a thread that never ends, which sends SIGTERM once listen waits for it
    import os, signal
    def stuck():
        while not getattr(signal.getsignal(signal.SIGTERM), "__qualname__", "").startswith("_until_stopped"):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait()
    threading.Thread(target=stuck).start()
sys.argv = ["dicomplus", *sys.argv[2:]]
run()
"""


def entry(*args: str, mode: str = "plain") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode, *args], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("entry")
    series = make_series(root / "s", n=40, rows=4, cols=4, patient_name="Doe^Entry")
    path = root / "db"
    proc = entry("--db", str(path), "import", str(series.folder))
    assert proc.returncode == Exit.OK, proc.stderr
    return str(path)


def test_a_command_ends_without_the_teardown_and_keeps_its_output(db):
    proc = entry("--db", db, "search", "--level", "instance", "--json")
    assert proc.returncode == Exit.OK, proc.stderr
    assert len(json.loads(proc.stdout)) == 40  # every row reached the pipe
    assert "atexit ran" in proc.stderr
    assert "teardown" not in proc.stderr  # the interpreter's teardown was skipped


def test_the_exit_code_of_a_failure_is_kept(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    proc = entry(
        "--db", str(tmp_path / "a-file" / "db"), "import", str(tmp_path)
    )  # a database that cannot be created
    assert proc.returncode == Exit.FAILED, proc.stderr
    assert "cannot create the database" in proc.stderr and "atexit ran" in proc.stderr
    assert "teardown" not in proc.stderr


def test_a_usage_error_leaves_through_the_normal_exit(tmp_path):
    proc = entry("--db", str(tmp_path / "db"), "search", "--limit", "-1")
    assert proc.returncode == Exit.USAGE, proc.stderr
    assert "teardown" in proc.stderr  # argparse's SystemExit: the interpreter's own exit


def test_a_working_thread_is_waited_for(db):
    proc = entry("--db", db, "info", mode="thread")
    assert proc.returncode == Exit.OK, proc.stderr
    assert "thread finished" in proc.stderr  # not cut off by the fast exit
    assert "teardown" in proc.stderr  # the normal exit, which joins it


def test_the_console_script_and_python_m_use_the_entry():
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'dicomplus = "DICOMPlusLib.cli.entry:run"' in pyproject
    main = (REPO_ROOT / "DICOMPlusLib" / "cli" / "__main__.py").read_text()
    assert "from DICOMPlusLib.cli.entry import run" in main and "run()" in main


#: A signal that arrives as the command's exit clean-ups run (a second Ctrl-C or SIGTERM sent just
#: as the command ended): the last atexit function registered runs first and sends it; the
#: weakref finalisers (the store's writer lock is released by one) run next, with it pending.
LATE_SIGNAL = """
import atexit, os, sys, weakref
from DICOMPlusLib.cli.entry import run

class Kept:
    pass

kept = Kept()
weakref.finalize(kept, lambda: None)  # weakref's atexit hook now runs after the kill below
atexit.register(os.kill, os.getpid(), int(sys.argv[1]))
sys.argv = ["dicomplus", *sys.argv[2:]]
run()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_the_exit_clean_ups(tmp_path, signum):
    """The command's code, no traceback, and the clean-ups done: the store's writer lock gone.
    Before, a Ctrl-C printed a KeyboardInterrupt from inside weakref's atexit hook and a SIGTERM
    killed the process (-15), each leaving the lock."""
    series = make_series(tmp_path / "s", n=3, rows=4, cols=4)
    db = tmp_path / "db"
    proc = subprocess.run([sys.executable, "-c", LATE_SIGNAL, str(int(signum)), "--db", str(db), "import",
                           str(series.folder)], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == Exit.OK, proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
    assert "added 3" in proc.stdout
    assert list((db / "store").glob(".writer-*.lock")) == []


def test_a_thread_left_running_after_a_signal_does_not_hold_the_exit(tmp_path):
    """A thread that is not a daemon and never ends, and a SIGTERM that ends ``listen``: the
    command ends as usual (its account, exit 0, the atexit functions) and the process with it.
    The normal exit waited for that thread: for ever."""
    proc = entry("--db", str(tmp_path / "db"), "listen", "--port", "0", "--host", "127.0.0.1", mode="stuck")
    assert proc.returncode == Exit.OK, proc.stderr
    assert proc.stdout.splitlines()[-1] == "stopped"
    assert "atexit ran" in proc.stderr and "teardown" not in proc.stderr
