"""The engine's Cancel (the panel's Cancel button) ends a query, retrieve or send whose TCP
connection waits for a host that drops packets, at once: on a DICOMweb node, ``requests`` held
it in a blocking ``connect()`` for the whole timeout (30 s) before the cancel was seen; on a
DIMSE node it is cut as it is in the CLI."""

from __future__ import annotations

import socket
import time

import pytest

from dicomplus_testing.peers import LOOPBACK, connecting_to, port_that_drops
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.engine.client import SubprocessEngine
from DICOMPlusLib.errors import CancelledError
from DICOMPlusLib.jobs import JobState
from DICOMPlusLib.network.endpoints import DicomwebEndpoint
from DICOMPlusLib.network.nodes import RemoteNode


@pytest.fixture
def drops():
    with port_that_drops() as port:
        yield port


def _submit(engine, op: str, kind: str, title: str, port: int, tmp_path):
    """Import a small study into a fresh database, then start ``op`` (query, retrieve, send)
    against the node ``title`` at ``port`` over ``kind`` (dicomweb, dimse): the started job."""
    if kind == "dicomweb":
        node = RemoteNode(title, web=DicomwebEndpoint(f"http://{LOOPBACK}:{port}/dicom-web"))
    else:
        node = RemoteNode.parse(f"{title}@{LOOPBACK}:{port}")
    series = make_series(tmp_path / "s", n=2, rows=4, cols=4, seed=93)
    db = str(tmp_path / "db")
    args = {
        "query": {"node": node, "level": "study", "criteria": {}},
        "retrieve": {"db": db, "node": node, "study": series.study_uid},
        "send": {"db": db, "node": node, "studies": [series.study_uid]},
    }[op]
    engine.call("import", {"db": db, "paths": [str(series.folder)]}, timeout=60)
    return engine.submit(op, args)


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
@pytest.mark.parametrize("op", ["query", "retrieve", "send"])
def test_cancel_while_connecting_to_a_host_that_drops_packets(op, kind, drops, tmp_path):
    with SubprocessEngine() as engine:
        job = _submit(engine, op, kind, "DROPS", drops, tmp_path)
        deadline = time.monotonic() + 30
        while not connecting_to(drops) and not job.finished and time.monotonic() < deadline:
            time.sleep(0.02)
        assert connecting_to(drops), job.error
        time.sleep(0.3)  # well inside connect()
        job.cancel()
        assert job.wait(5), "the cancel was not seen while connecting"
    assert job.state is JobState.CANCELLED, job.error
    assert isinstance(job.error, CancelledError)
    if job.result is not None:  # a send's report: every file "cancelled", none failed
        assert job.result.cancelled and not job.result.sent


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
@pytest.mark.parametrize("op", ["query", "retrieve", "send"])
def test_cancel_while_a_peer_does_not_answer(op, kind, tmp_path):
    """The peer takes the request (an HTTP request, an A-ASSOCIATE-RQ) and never answers: the
    Cancel ends the work at once, not after the timeout."""
    with socket.socket() as silent:
        silent.bind((LOOPBACK, 0))
        silent.listen()
        silent.settimeout(30)
        port = silent.getsockname()[1]
        with SubprocessEngine() as engine:
            job = _submit(engine, op, kind, "SILENT", port, tmp_path)
            conn, _ = silent.accept()
            with conn:
                conn.settimeout(30)
                assert conn.recv(1)  # the request arrived: the work now waits for the answer
                time.sleep(0.3)
                job.cancel()
                assert job.wait(5), "the cancel was not seen while waiting for the answer"
    assert job.state is JobState.CANCELLED, job.error
    if job.result is not None:
        assert job.result.cancelled and not job.result.sent
