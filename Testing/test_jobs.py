"""The job layer shared by import, send, query and retrieve."""

from __future__ import annotations

import threading

import pytest

from DICOMPlusLib.errors import CancelledError
from DICOMPlusLib.jobs import CancelToken, Job, JobState


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
