"""The job layer shared by import, send, query and retrieve."""

from __future__ import annotations

import threading

import pytest

from DICOMPlusLib.errors import CancelledError
from DICOMPlusLib.jobs import CancelToken, Job, JobState, Pacer


def test_job_reports_progress_and_result():
    release = threading.Event()

    def work(progress, token):
        progress(1, 3, "a")
        release.wait(5)
        progress(3, 3, "c")
        return "result"

    job = Job("demo", work).start()
    for _ in range(100):
        if job.poll().done == 1:
            break
        threading.Event().wait(0.01)
    snap = job.poll()
    assert snap.state is JobState.RUNNING and (snap.done, snap.total, snap.current) == (1, 3, "a")
    release.set()
    assert job.wait(5)
    assert job.state is JobState.DONE and job.result == "result" and job.poll().done == 3


def test_cancel_and_failure_states():
    def cancellable(progress, token):
        while not token.wait(0.01):
            pass
        token.raise_if_cancelled()

    job = Job("c", cancellable).start()
    job.cancel()
    assert job.wait(5) and job.state is JobState.CANCELLED
    assert isinstance(job.error, CancelledError)

    def broken(progress, token):
        raise ValueError("boom")

    job = Job("b", broken).start()
    assert job.wait(5) and job.state is JobState.FAILED and job.poll().error == "boom"


def test_cancel_token():
    token = CancelToken()
    token.raise_if_cancelled()
    token.cancel()
    assert token.cancelled
    with pytest.raises(CancelledError, match="completed work was kept"):
        token.raise_if_cancelled()


def test_pacer_steps_end_when_the_budget_is_spent_not_after_a_count():
    """Each step does units until the budget has passed (a clock the test turns: each unit
    "takes" its cost), at least one however slow; all of them, in order, as if done at once."""
    now = [0.0]
    pacer = Pacer(budget=0.025, clock=lambda: now[0])
    for cost, per_step in ((0.010, 3), (0.002, 13), (0.100, 1)):
        todo, done = list(range(60)), []

        def unit(cost=cost, todo=todo, done=done):
            now[0] += cost
            done.append(todo.pop(0))
            return bool(todo)

        pacer.steps.clear()
        while pacer.step(unit):
            pass
        assert done == list(range(60))
        units = [step.units for step in pacer.steps]
        assert units[:-1] == [per_step] * (len(units) - 1) and 1 <= units[-1] <= per_step, units
        assert all(step.seconds >= 0.025 or step is pacer.steps[-1] for step in pacer.steps)
    assert not pacer.step(lambda: False) and pacer.steps[-1].units == 1  # the last unit ends it
