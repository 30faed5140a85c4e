"""A C-GET's C-STORE sub-operation is answered once its file is whole and its header read; its
commit comes after the answer (``network/dimse/qrscu.py`` says why: the SCP sends its next
instance only after our answer, and the commit before it was a third of a retrieve's time).

The SCP is ``dicomplus serve`` (a process) over a series of four instances; between it and the
retrieve (in this process) sits :class:`WatchingProxy`, a loopback relay that reads the commands
we send it. What is checked:

- the answer goes out while the commit cannot happen (the database's write lock held by another
  connection): the SCP hears success, and the instance is indexed once the lock is free;
- a commit that fails after the answer (a trigger refuses one instance's row): that instance is
  reported failed ("received, then not stored here"), the others are stored, and neither its
  file nor its temporary name stays in the store; the SCP heard success for every instance.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time

import pytest
from test_disk_full import assert_consistent, dicomplus

from dicomplus_testing.peers import LOOPBACK, dicomplus_server
from dicomplus_testing.relay import PduRelay, commands
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import free_port
from DICOMPlusLib.database import Database
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.models import RetrieveOptions
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
from DICOMPlusLib.network.retrieve import retrieve

N = 4
AET = "ANSWERPACS"


class WatchingProxy(PduRelay):
    """Relays connections to ``target`` whole; records the status of every C-STORE-RSP the
    retrieve sends the SCP (``answers``, under ``changed``)."""

    def __init__(self, target: int) -> None:
        self.answers: list[int] = []
        self.changed = threading.Condition()
        self._partial: dict[int, bytearray] = {}
        super().__init__(target)

    def to_scp(self, pdu_type: int, pdu: bytes, src: socket.socket, dst: socket.socket) -> bool:
        dst.sendall(pdu)
        for command in commands(pdu_type, pdu, self._partial.setdefault(id(src), bytearray())):
            if command.field == dimse.C_STORE_RSP:
                with self.changed:
                    self.answers.append(int(command.get(dimse.STATUS, -1)))
                    self.changed.notify_all()
        return True

    def wait_for_answers(self, count: int, timeout: float) -> list[int]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.answers) >= count, timeout)
            return list(self.answers)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """``dicomplus serve`` over a series of N instances, behind a WatchingProxy per test."""
    folder = tmp_path_factory.mktemp("answer-first")
    series = make_series(folder / "ct", n=N, rows=64, cols=64, seed=123, patient_id="ANSWER1")
    code, _, err = dicomplus("--db", folder / "pacs", "import", series.folder)
    assert code == 0, err
    port = free_port()
    with dicomplus_server("--db", folder / "pacs", "serve", "--port", port, "--ae-title", AET, port=port):
        yield series, port


@pytest.fixture
def proxy(pacs):
    watching = WatchingProxy(pacs[1])
    yield watching
    watching.close()


def c_get(db: Database, proxy: WatchingProxy, study: str):
    node = RemoteNode("pacs", DimseEndpoint(AET, LOOPBACK, proxy.port))
    return retrieve(node, db, study_uid=study, method="get", options=RetrieveOptions(retries=0))


def test_the_answer_goes_out_while_the_commit_waits(pacs, proxy, tmp_path):
    series, _ = pacs
    db = Database(tmp_path / "db")
    holder = sqlite3.connect(tmp_path / "db" / "dicomplus.sqlite", isolation_level=None)
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.update(report=c_get(db, proxy, series.study_uid)))
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock: no commit of the retrieve can happen
        worker.start()
        answers = proxy.wait_for_answers(1, timeout=20)
        # the first instance is answered success while its commit waits for the lock
        assert answers[:1] == [0x0000], answers
        time.sleep(0.3)
        assert holder.execute("SELECT count(*) FROM instances").fetchone()[0] == 0
        assert worker.is_alive()
        holder.execute("ROLLBACK")
        worker.join(60)
        assert not worker.is_alive()
    finally:  # also when an assertion failed: the lock freed, the retrieve ended, then the close
        with contextlib.suppress(sqlite3.Error):
            holder.execute("ROLLBACK")
        holder.close()
        worker.join(60)
        db.close()
    report = outcome["report"]
    assert report.complete and len(report.done) == N and not report.failed, report.to_dict()
    assert proxy.answers == [0x0000] * N
    assert assert_consistent(tmp_path / "db" / "dicomplus.sqlite", tmp_path / "db" / "store") == N


def test_a_commit_that_fails_after_the_answer(pacs, proxy, tmp_path):
    series, _ = pacs
    refused = series.sop_uids[1]
    db = Database(tmp_path / "db")
    conn = sqlite3.connect(tmp_path / "db" / "dicomplus.sqlite")
    with conn:  # a row this database cannot take: that instance's commit fails, after its answer
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON instances WHEN NEW.SOPInstanceUID = ? "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END".replace("?", f"'{refused}'")
        )
    conn.close()
    try:
        report = c_get(db, proxy, series.study_uid)
    finally:
        db.close()
    # the SCP heard success for every instance (the refused one twice: the retrieve asks again
    # for what is missing after its C-GET)
    assert len(proxy.answers) >= N and set(proxy.answers) == {0x0000}, proxy.answers
    assert not report.complete
    assert sorted(report.done) == sorted(s for s in series.sop_uids if s != refused), report.to_dict()
    assert list(report.failed) == [refused], report.to_dict()
    assert report.failed[refused].startswith("received, then not stored here: "), report.failed
    assert "refused by the test" in report.failed[refused]
    # neither the instance's file nor its temporary name stays; the others are whole and indexed
    assert assert_consistent(tmp_path / "db" / "dicomplus.sqlite", tmp_path / "db" / "store") == N - 1
