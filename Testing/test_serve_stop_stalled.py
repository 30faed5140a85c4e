"""The sample PACS ends at once when it is stopped while a peer has stopped reading one of its
C-STOREs: a C-GET requester that takes the C-GET-RQ's answer no further (the sub-operation's
C-STORE fills its receive window and ours), or a C-MOVE destination that accepts the association
and never reads. Before, pynetdicom's server shutdown left those associations running, each DUL
thread inside ``send`` for the network timeout (60 s) and then again for the A-ABORT: ``dicomplus
serve`` did not exit after SIGTERM or Ctrl-C (over 2 minutes), and the engine's PACS went on
sending after the panel stopped it.

The peers are real sockets on loopback (:func:`~test_cancel_waits.accept_then_stop_reading`, and
our Q/R SCU's association that sends the C-GET-RQ and never reads again); ``serve`` is a real
process, and the library's ``QueryRetrieveSCP.stop()`` (what the engine calls) is driven as the
engine drives it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pydicom
import pytest
from test_cancel_stalls import PROMPT, SETTLE, stall
from test_cancel_waits import UNREAD, _unread, accept_then_stop_reading

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.database import Database
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import qrscu
from DICOMPlusLib.network.pacs.qrscp import Destination, QRConfig, QueryRetrieveSCP

#: Instances large enough (8 MiB each) that one C-STORE fills both sides' buffers.
SIDE = 2048


@pytest.fixture(scope="module")
def pacs_db(tmp_path_factory):
    root = tmp_path_factory.mktemp("stalled-pacs")
    series = make_series(root / "s", n=2, rows=SIDE, cols=SIDE, seed=99)
    db = Database(root / "pacs")
    db.import_paths([str(f) for f in series.files])
    db.close()
    sop_class = str(pydicom.dcmread(series.files[0], stop_before_pixels=True).SOPClassUID)
    return root / "pacs", series.study_uid, sop_class


def _start_retrieve(port: int, method: str, study_uid: str, sop_class: str) -> qrscu.QRAssociation:
    """Associate with the PACS and send a C-GET-RQ or a C-MOVE-RQ to DEST; nothing is read."""
    model = qrscu.STUDY_ROOT_GET if method == "get" else qrscu.STUDY_ROOT_MOVE
    contexts = [(model, qrscu.UNCOMPRESSED)]
    roles = None
    if method == "get":
        contexts.append((sop_class, qrscu.UNCOMPRESSED))
        roles = {sop_class: (False, True)}
    qa = qrscu.open_association(
        LOOPBACK, port, called_ae="PACS", calling_ae="ASKER", contexts=contexts, roles=roles, timeout=600
    )
    field = dimse.C_GET_RQ if method == "get" else dimse.C_MOVE_RQ
    identifier = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}
    qa._request(field, model, identifier, "DEST" if method == "move" else "")
    return qa


def _wait_stalled(method: str, qa: qrscu.QRAssociation, dest) -> None:
    """Until the PACS's C-STORE waits on a peer that does not read."""
    if method == "get":
        deadline = time.monotonic() + 30
        while _unread(qa.stream.sock) < UNREAD and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _unread(qa.stream.sock) >= UNREAD, "the C-STORE sub-operation never came"
    else:
        assert dest.stalled.wait(30), "the C-MOVE's association to its destination never came"
    time.sleep(SETTLE)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("method", ["get", "move"])
def test_serve_ends_at_once_when_a_peer_stopped_reading(method, signum, pacs_db):
    db, study_uid, sop_class = pacs_db
    port = free_port()
    with stall(accept_then_stop_reading(UNREAD)) as dest:
        cmd = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(db), "serve", "--port", str(port),
               "--host", LOOPBACK, "--ae-title", "PACS", "--destination", f"DEST@{LOOPBACK}:{dest.port}"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("Try it"):
                    break
            qa = _start_retrieve(port, method, study_uid, sop_class)
            _wait_stalled(method, qa, dest)
            sent = time.monotonic()
            proc.send_signal(signum)
            try:
                code = proc.wait(60)
            except subprocess.TimeoutExpired:
                code = None
            waited = time.monotonic() - sent
        finally:
            proc.kill()
            _out, err = proc.communicate()
            qa.stream.close()
    assert code == 0, f"serve did not end within 60 s of {signum.name}: {err}"
    assert waited < PROMPT, f"serve ended {waited:.1f} s after {signum.name}"
    assert "Traceback" not in err, err


@pytest.mark.parametrize("method", ["get", "move"])
def test_stop_ends_the_associations_a_peer_stopped_reading(method, pacs_db, tmp_path):
    """What the engine calls when the panel stops the sample PACS: stop() returns and the peer's
    connection is ended (reset), where the association went on sending for the network timeout."""
    db_path, study_uid, sop_class = pacs_db
    db = Database(db_path)
    with stall(accept_then_stop_reading(UNREAD)) as dest:
        config = QRConfig(ae_title="PACS", port=0, host=LOOPBACK,
                          destinations=(Destination("DEST", LOOPBACK, dest.port),))  # fmt: skip
        server = QueryRetrieveSCP(db, config).start()
        qa = _start_retrieve(server.port, method, study_uid, sop_class)
        try:
            _wait_stalled(method, qa, dest)
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < PROMPT
            # the peer that was not reading finds its connection ended once it reads again
            conn = qa.stream.sock if method == "get" else dest.held[0]
            conn.settimeout(PROMPT)
            ended = False
            try:
                while conn.recv(1 << 20):
                    pass
                ended = True  # closed
            except ConnectionResetError:
                ended = True
            except TimeoutError:
                ended = False
            assert ended, "the association went on after stop()"
        finally:
            qa.stream.close()
            db.close()
