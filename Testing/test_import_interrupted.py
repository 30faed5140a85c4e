"""A second Ctrl-C (or SIGTERM) stops an import at once without hanging it.

The CLI's handler raises the "stop at once" KeyboardInterrupt in the main thread wherever that
thread is. Once it was raised inside the thread pool's own code, right after ``Condition.__enter__``
had taken a lock of the pool's (a handler runs after a C call returns): the lock stayed held, the
workers waited for it forever and the import never ended (1 run in ~400 of
test_cli_signals' second-SIGTERM test). The pool's calls now run ``uninterrupted``
(DICOMPlusLib.uninterrupted): a signal's exception waits for the end of the section.

The scripts here put the second signal's exception exactly there, deterministically: a trace
function of the main thread (dicomplus_testing.interrupt_in_lock) raises it, through the handler's own ``raise_from_signal``, at the
return of the Nth ``Condition.__enter__`` after the first chunk is in (the pool's semaphore in
``submit``, a future's condition in ``result``, ``cancel`` and the queue in ``shutdown``).
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import pytest
from test_cli_terminal import cli, leftovers, many_instances

from dicomplus_testing.util import run_script
from DICOMPlusLib.database import Database
from DICOMPlusLib.uninterrupted import raise_from_signal, uninterrupted

COUNT = 400  # files: above the parallel threshold, a few chunks
#: How each script ends: an import of ``folder`` into ``db_path`` with ``jobs`` workers whose
#: progress arms the script's ``trap`` once ``arm`` holds; the trap's second Ctrl-C stops it.
RUN = r"""

def progress(done, total, current):
    if {arm}:
        trap.arm()


outcome = "returned"
with Database(db_path) as db, trap:
    try:
        db.import_paths([folder], jobs={jobs}, progress=progress, cancel=token)
    except KeyboardInterrupt:
        outcome = "stopped"
print(json.dumps({{"outcome": outcome, "fired": trap.fired}}))
"""
SCRIPT = r"""
import json, sys

from dicomplus_testing.interrupt_in_lock import InterruptInLock, second_ctrl_c
from DICOMPlusLib.database import Database
from DICOMPlusLib.jobs import CancelToken

folder, db_path, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
token = CancelToken()
trap = InterruptInLock(nth, second_ctrl_c(token))

""" + RUN.format(jobs=2, arm="done > 0")


def stopped_import(db: Path, folder: Path, script: str, *args: str) -> None:
    """Run ``script`` (an import of ``folder`` into ``db`` that its trap stops) and check: it
    ended stopped, no temporary is left (looked at before a Database opens the store: opening
    sweeps a dead writer's temporaries), what was committed is there, and importing again adds
    the rest."""
    run = run_script(script, str(folder), str(db), *args)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"outcome": "stopped", "fired": True}, run.stdout
    left = leftovers(db / "store")
    with Database(db) as database:
        kept = database.info()["instances"]
    assert kept < COUNT and left == []
    again = cli("--db", str(db), "import", str(folder), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["added"] == COUNT - kept


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return many_instances(tmp_path_factory.mktemp("interrupted"), COUNT)[0]


@pytest.mark.parametrize("nth", [1, 2, 3, 4, 6, 9])
def test_second_signal_inside_the_pools_lock(folder, tmp_path, nth):
    """Stopped inside the pool's lock: the import ends within seconds (it hung forever), no
    temporary file is left, and importing again adds the rest."""
    stopped_import(tmp_path / "db", folder, SCRIPT, str(nth))


#: The serial import (``--jobs 1``, or fewer files than the parallel threshold) copies in the
#: main thread: stopped as the Nth copy begins, or as the Nth file's read returns with its copy.
SERIAL = r"""
import json, sys

from dicomplus_testing.interrupt_in_lock import InterruptInLock, second_ctrl_c
from DICOMPlusLib.database import Database, indexer
from DICOMPlusLib.database.store import copy_into
from DICOMPlusLib.jobs import CancelToken

folder, db_path, nth, where = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
token = CancelToken()
if where == "copy":
    trap = InterruptInLock(nth, second_ctrl_c(token), codes=[copy_into.__code__], at_call=True)
else:
    trap = InterruptInLock(nth, second_ctrl_c(token), codes=[indexer._import_one.__code__])

""" + RUN.format(jobs=1, arm="done > 0")


@pytest.mark.parametrize(("where", "nth"), [("copy", 5), ("copy", 30), ("read", 1), ("read", 20)])
def test_second_signal_in_the_serial_import(folder, tmp_path, where, nth):
    """No temporary is left: those of the chunk under way were the loop's local list's (its
    copies so far left in the store's incoming folder), and one whose read had returned with its
    copy was nobody's."""
    stopped_import(tmp_path / "db", folder, SERIAL, str(nth), where)


#: The first Ctrl-C cancels once a chunk is in; the second comes as the import's clean-up enters
#: its section (the first ``uninterrupted.__enter__`` of the main thread after the cancel), where
#: Python looks for signals before ``__enter__`` has counted the section.
AT_THE_DRAIN = r"""
import json, sys

from dicomplus_testing.interrupt_in_lock import InterruptInLock, second_ctrl_c
from DICOMPlusLib.database import Database
from DICOMPlusLib.jobs import CancelToken
from DICOMPlusLib.uninterrupted import uninterrupted

folder, db_path = sys.argv[1], sys.argv[2]
token = CancelToken()
enter = type(uninterrupted).__enter__.__code__
trap = InterruptInLock(1, second_ctrl_c(token), codes=[enter], at_call=True)


def first_ctrl_c():
    token.cancel_from_signal()
    return True

""" + RUN.format(jobs=2, arm="done > 0 and first_ctrl_c()")


def test_second_signal_as_the_clean_up_begins(folder, tmp_path):
    """The clean-up runs: the workers are drained and their copies removed. Before, the
    exception skipped the section, the workers ran on (the exit waited for them) and their
    copies stayed in the store's incoming folder."""
    stopped_import(tmp_path / "db", folder, AT_THE_DRAIN)


def test_uninterrupted_holds_a_signal_back_to_its_end():
    """A real signal whose handler raises through ``raise_from_signal``: inside (nested)
    sections the code goes on, the exception comes as the outermost one ends; outside, at once."""
    reached = []

    def handler(signum, frame):
        raise_from_signal(KeyboardInterrupt())

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with uninterrupted:
                with uninterrupted:
                    signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)  # handled on return
                    reached.append("inner")
                reached.append("outer")
            reached.append("after the sections: not reached")
        with pytest.raises(KeyboardInterrupt):
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            reached.append("outside a section: not reached")
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert reached == ["inner", "outer"]


def test_uninterrupted_in_another_thread_holds_nothing_back():
    """Handlers run in the main thread only: another thread's section neither holds back the
    main thread's exception nor raises it at its own end."""
    inside, leave, errors = threading.Event(), threading.Event(), []

    def worker():
        try:
            with uninterrupted:
                inside.set()
                leave.wait(10)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert inside.wait(10)
        with pytest.raises(KeyboardInterrupt):
            raise_from_signal(KeyboardInterrupt())
    finally:
        leave.set()
        thread.join(10)
    assert errors == []
