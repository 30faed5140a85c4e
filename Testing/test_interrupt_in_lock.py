"""A Ctrl-C (or SIGTERM) raised inside the standard library's locks, command by command.

The CLI's handlers raise the "stop at once" KeyboardInterrupt in the main thread wherever it is.
Raised just after ``Condition.__enter__`` took a lock (every Event, Queue, Semaphore and thread
pool goes through it) the lock stays held and whoever needs it next waits forever; raised inside
``Thread.join`` it leaves the join while the thread runs on (Python 3.11 and 3.12 mark it
stopped). The scripts here put it exactly there (dicomplus_testing.interrupt_in_lock), in a
process of their own with a timeout; the real-signal tests send the signal from the thread being waited for.
"""

from __future__ import annotations

import json
import logging
import signal
import threading

import pytest

from dicomplus_testing.util import run_script
from DICOMPlusLib.network.storage import Notifier, ReceivedInstance
from DICOMPlusLib.uninterrupted import forget_held_back, raise_from_signal

INSTANCE = r"""
from DICOMPlusLib.network.storage import ReceivedInstance

def instance(series):
    return ReceivedInstance(sop_instance_uid="1.2.3." + series, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                            series_instance_uid=series, study_instance_uid="1.2", patient_id="P",
                            transfer_syntax="1.2.840.10008.1.2.1", path="x", size=1, status="added")
"""


def _instance(series: str) -> ReceivedInstance:
    return ReceivedInstance(sop_instance_uid="1.2.3." + series, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                            series_instance_uid=series, study_instance_uid="1.2", patient_id="P",
                            transfer_syntax="1.2.840.10008.1.2.1", path="x", size=1, status="added")  # fmt: skip


NOTIFIER_SCRIPT = (
    INSTANCE
    + r"""
import json

from dicomplus_testing.interrupt_in_lock import InterruptInLock
from DICOMPlusLib.network.storage import Notifier
from DICOMPlusLib.uninterrupted import raise_from_signal

reported = []
notifier = Notifier(series_idle=60)
notifier.subscribe(None, lambda s: reported.append(s.series_instance_uid))
notifier.start()
notifier.publish(instance("1.2.4"))


def fire():
    raise_from_signal(KeyboardInterrupt())


outcome = "returned"
with InterruptInLock(1, fire, arm_on=Notifier.stop.__code__) as trap:
    try:
        notifier.stop()
    except KeyboardInterrupt:
        outcome = "stopped"
print(json.dumps({"outcome": outcome, "fired": trap.fired, "reported": reported}))
"""
)


def test_notifier_stop_interrupted_inside_the_queues_lock():
    """A Ctrl-C inside the queue's lock as the listener's notifier stops: the open series is
    still reported, then the KeyboardInterrupt goes on up (the lock was left held and the
    notifier blocked on it: the last "series complete" line was lost)."""
    run = run_script(NOTIFIER_SCRIPT)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"outcome": "stopped", "fired": True, "reported": ["1.2.4"]}


def test_notifier_stop_interrupted_in_its_join():
    """A real signal while the stop waits for the notifier delivering the last series (sent by
    that very callback): the stop waits for the delivery, then raises. Inside ``Thread.join``
    it left the stop at once, the callback still running (the process then ended under it)."""
    main = threading.get_ident()
    seen_by_the_caller: list[list[str]] = []
    checked = threading.Event()
    reported: list[str] = []

    def on_series(s) -> None:
        signal.pthread_kill(main, signal.SIGUSR1)
        checked.wait(1.0)  # the caller, left early, looks meanwhile (with the fix it cannot: 1 s)
        reported.append(s.series_instance_uid)

    def handler(signum, frame):
        raise_from_signal(KeyboardInterrupt())

    notifier = Notifier(series_idle=60)
    notifier.subscribe(None, on_series)
    notifier.start()
    notifier.publish(_instance("1.2.5"))
    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            notifier.stop()
        seen_by_the_caller.append(list(reported))
    finally:
        checked.set()
        signal.signal(signal.SIGUSR1, previous)
        forget_held_back()
    assert seen_by_the_caller == [["1.2.5"]]


def test_every_commands_ctrl_c_is_held_back_inside_a_section():
    """Commands without ``cancel_on_interrupt`` (listen, serve, export, convert...) get Ctrl-C
    through the CLI's handler too, so their ``uninterrupted`` sections hold it back (Python's
    own handler raised it inside them)."""
    from DICOMPlusLib.cli.signals import ending_signals
    from DICOMPlusLib.uninterrupted import uninterrupted

    reached = []
    with ending_signals():
        with pytest.raises(KeyboardInterrupt):
            with uninterrupted:
                signal.pthread_kill(threading.get_ident(), signal.SIGINT)
                reached.append("inside")
            reached.append("after the section: not reached")
    assert reached == ["inside"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


PIXELS_SCRIPT = r"""
import json, sys, threading

from dicomplus_testing.interrupt_in_lock import InterruptInLock
from DICOMPlusLib.loading import pixels
from DICOMPlusLib.loading.folder import load_folder
from DICOMPlusLib.uninterrupted import raise_from_signal


def fire():
    raise_from_signal(KeyboardInterrupt())


outcome = "returned"
with InterruptInLock(int(sys.argv[2]), fire, arm_on=pixels._read_on_threads.__code__) as trap:
    try:
        load_folder(sys.argv[1])
    except KeyboardInterrupt:
        outcome = "stopped"
readers = [t.name for t in threading.enumerate() if t.name.startswith("dicomplus-pixels-")]
print(json.dumps({"outcome": outcome, "fired": trap.fired, "readers": readers}))
"""


@pytest.fixture(scope="module")
def large_series(tmp_path_factory):
    """Large enough (12 MiB, four blocks of frames) to be read on two threads."""
    from dicomplus_testing.synthetic import make_series

    return make_series(tmp_path_factory.mktemp("pixels") / "s", n=96, rows=256, cols=256, seed=7).folder


@pytest.mark.parametrize("nth", [1, 2, 3, 4])
def test_ctrl_c_inside_the_pixel_readers_lock(large_series, nth):
    """Ctrl-C (``convert`` and ``load`` cancel on the first) inside a lock of the volume's
    pixel readers (the readers' two starts, then the calling thread's first wait, then its next
    wait or its end: how many waits there are depends on the readers' pace): the load ends (it hung, the readers blocked on the lock left held and the
    load waiting for them) and no reader is left running."""
    run = run_script(PIXELS_SCRIPT, str(large_series), str(nth))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"outcome": "stopped", "fired": True, "readers": []}


TOKEN_SCRIPT = r"""
import json

from dicomplus_testing.interrupt_in_lock import InterruptInLock
from DICOMPlusLib.jobs import CancelToken
from DICOMPlusLib.uninterrupted import raise_from_signal


def fire():
    raise_from_signal(KeyboardInterrupt())


token = CancelToken()
outcome = "returned"
with InterruptInLock(1, fire, arm_on=CancelToken.wait.__code__) as trap:
    try:
        token.wait(30)  # a retry's delay, a busy server's Retry-After
    except KeyboardInterrupt:
        outcome = "stopped"
token.cancel()  # what an ``except KeyboardInterrupt`` that passes the cancel on does
print(json.dumps({"outcome": outcome, "fired": trap.fired, "cancelled": token.cancelled}))
"""


def test_a_token_interrupted_in_its_wait_can_still_be_cancelled():
    """Ctrl-C inside the lock of a cancel token's event, as the token waits: the wait stops and
    the token can still be cancelled (cancel() waited for the lock left held, forever)."""
    run = run_script(TOKEN_SCRIPT, timeout=30)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"outcome": "stopped", "fired": True, "cancelled": True}


LOG_SCRIPT = r"""
import json, logging, threading

from dicomplus_testing.interrupt_in_lock import InterruptInLock
from DICOMPlusLib.cli.network import _log_warnings_to_stderr
from DICOMPlusLib.uninterrupted import raise_from_signal

_log_warnings_to_stderr()  # listen's and serve's handler (--verbose's is the same)
log = logging.getLogger("DICOMPlusLib.network.probe")


def fire():
    raise_from_signal(KeyboardInterrupt())


outcome = "returned"
with InterruptInLock(1, fire, codes=[logging.Handler.acquire.__code__], armed=True) as trap:
    try:
        log.warning("from the main thread")
    except KeyboardInterrupt:
        outcome = "stopped"
logged = threading.Event()


def worker():
    log.warning("from a worker")
    logged.set()


threading.Thread(target=worker, daemon=True).start()
print(json.dumps({"outcome": outcome, "fired": trap.fired, "worker logged": logged.wait(10)}))
"""


@pytest.mark.skipif(
    "acquire" not in logging.Handler.handle.__code__.co_names,
    reason="Handler.handle takes its lock by `with` (Python 3.13), not in Handler.acquire",
)
def test_a_ctrl_c_inside_the_log_handlers_lock_leaves_it_free():
    """Ctrl-C inside the lock of the CLI's log handler (Python 3.11 and 3.12 take it in a Python
    function): the main thread's record is written, the KeyboardInterrupt comes after it, and
    another thread can still log (it waited for the lock left held, forever)."""
    run = run_script(LOG_SCRIPT, timeout=30)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"outcome": "stopped", "fired": True, "worker logged": True}
    assert "from the main thread" in run.stderr and "from a worker" in run.stderr
