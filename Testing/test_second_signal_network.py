"""A second Ctrl-C or SIGTERM stops ``dicomplus retrieve`` and ``dicomplus send`` at once, and
cleanly: exit 128 + the signal with one account and no traceback, what was committed kept, no
``.incoming-*`` temporary left in the store, and every association still open aborted (the peer
gets an A-ABORT, not a dropped connection).

The first signal cancels: a C-GET sends C-CANCEL and gives the SCP a second for its final
response, a send finishes the file under way and releases its association, giving the peer a
second for its A-RELEASE-RP. The second comes inside that second. Before, the main thread left
at once while the threads doing the work (the retrieve's, the associations of ``send --parallel``)
ran on, and the process ended under them: the file being received stayed in the store (for the
next command's sweep) and the peer saw its connection dropped; a single-association send left
the release's wait on the KeyboardInterrupt without aborting.

Real processes: ``dicomplus serve`` (C-GET, C-MOVE) and DCMTK's storescp (send), each behind a
:class:`~dicomplus_testing.relay.StallingRelay` that records what the client sends and holds back
what the test needs held (the rest of a C-STORE sub-operation's data set, on the C-GET's
association or on the PACS's to our C-MOVE listener; the A-RELEASE-RP). The
second signal is sent once the relay shows the command waiting there and the first signal's
"cancelling" line is on stderr, never after a fixed sleep."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
from test_cli_terminal import leftovers
from test_disk_full import assert_consistent, dicomplus

from dicomplus_testing.peers import LOOPBACK, dicomplus_server
from dicomplus_testing.relay import StallingRelay, TcpRelay
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import ul

N = 4  # instances per series
SIGNALS = {
    "sigterm": (signal.SIGTERM, 143, "cancelling on SIGTERM"),
    "ctrl-c": (signal.SIGINT, 130, "cancelling (Ctrl-C"),
}


class Command:
    """``dicomplus ARGS`` as a process, its stderr read as it comes."""

    def __init__(self, *args) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "DICOMPlusLib.cli", *map(str, args)], cwd=REPO_ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.err = ""
        self.out = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read(1):
            self.err += chunk

    def wait_for(self, ready: Callable[[], bool], what: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not ready():
            assert self.proc.poll() is None, f"ended before {what}: {self.err}"
            assert time.monotonic() < deadline, f"no {what} within {seconds} s: {self.err}"
            time.sleep(0.005)

    def twice(self, signum: int, cancelling: str, ready: Callable[[], bool]) -> int:
        """The first signal, its "cancelling" line, ``ready()``, the second signal; the exit code."""
        self.proc.send_signal(signum)
        self.wait_for(lambda: cancelling in self.err, "cancelling line")
        self.wait_for(ready, "the wait of the cancel")
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.out = self.proc.stdout.read()
        return code


def assert_one_account(err: str, signum: int) -> None:
    assert "Traceback" not in err and "Exception" not in err, err
    name = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
    assert err.count("dicomplus: interrupted") == 1 and f"dicomplus: interrupted{name}\n" in err, err


def assert_aborted(connections: list[list[int]], count: int, before_abort: int) -> None:
    """``count`` connections whose clients each ended with an A-ABORT after ``before_abort`` (a
    PDU type): what a relay saw them send."""
    assert len(connections) == count, connections
    for seen in connections:
        assert before_abort in seen and seen[-1] == ul.A_ABORT, seen


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two series of one study (two associations with ``--parallel 2``) in a ``serve`` database."""
    base = tmp_path_factory.mktemp("second")
    first = make_series(base / "in" / "a", n=N, rows=256, cols=256, seed=3)
    make_series(base / "in" / "b", n=N, rows=256, cols=256, seed=4, study_uid=first.study_uid)
    code, _, err = dicomplus("--db", base / "pacs", "import", base / "in")
    assert code == 0, err
    return base / "pacs", first.study_uid


@pytest.mark.parametrize(
    ("parallel", "stop"),
    [(1, "sigterm"), (2, "sigterm"), (2, "ctrl-c")],
    ids=["one", "parallel", "parallel-ctrl-c"],
)
def test_retrieve_second_signal(study, tmp_path, parallel, stop):
    """A C-GET halfway through a sub-operation's data set (the SCP's next PDU held back): the
    first signal sends C-CANCEL, the second comes in the grace for its final response."""
    signum, code, cancelling = SIGNALS[stop]
    pacs_db, study_uid = study
    port = free_port()
    with dicomplus_server("--db", pacs_db, "serve", "--port", port, "--ae-title", "HALFPACS", port=port):
        relay = StallingRelay(port, stall_at_store=2)
        try:
            db, store = tmp_path / "db", tmp_path / "db" / "store"
            cmd = Command("--db", db, "retrieve", f"HALFPACS@{LOOPBACK}:{relay.port}", "--study", study_uid,
                          "--method", "get", "--parallel", parallel, "--retries", 0)  # fmt: skip
            cmd.wait_for(lambda: len(relay.stalled) == parallel and leftovers(store), "C-STORE held halfway")
            exit_code = cmd.twice(signum, cancelling, lambda: True)
            assert exit_code == code, (cmd.out, cmd.err)
            assert_one_account(cmd.err, signum)
            # looked at before a Database opens the store: opening sweeps a dead writer's temporaries
            assert leftovers(store) == []
            assert_aborted(relay.stalled, parallel, ul.P_DATA_TF)
            # the first instance of each association was answered and committed before the hold
            assert assert_consistent(db / "dicomplus.sqlite", store) >= parallel
        finally:
            relay.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_series(tmp_path_factory.mktemp("send") / "in", n=80, rows=32, cols=32, seed=5).folder


@pytest.mark.parametrize(("parallel", "stop"), [(1, "sigterm"), (2, "sigterm"), (2, "ctrl-c")],
                         ids=["one", "parallel", "parallel-ctrl-c"])  # fmt: skip
def test_send_second_signal(files, storescp_factory, parallel, stop):
    """A send between two files (each C-STORE response held back 20 ms, less than the 0.2 s
    after which a cancelled wait for it ends): the first signal ends it after the file under way
    and releases each association; the second comes while the peer's A-RELEASE-RP is held back."""
    signum, code, cancelling = SIGNALS[stop]
    storescp = storescp_factory(extra_args=["--fork"])  # an association each at once
    relay = StallingRelay(storescp.port, delay=0.02, hold_release_rp=True)
    try:
        cmd = Command("send", f"{storescp.aet}@{LOOPBACK}:{relay.port}", files, "--parallel", parallel)

        def under_way() -> bool:
            with relay.lock:
                return len(relay.from_client) == parallel and all(
                    seen.count(ul.P_DATA_TF) >= 3 for seen in relay.from_client
                )

        cmd.wait_for(under_way, "files under way")
        exit_code = cmd.twice(signum, cancelling, lambda: relay.sent(ul.A_RELEASE_RQ) == parallel)
        assert exit_code == code, (cmd.out, cmd.err)
        assert_one_account(cmd.err, signum)
        assert_aborted(relay.from_client, parallel, ul.A_RELEASE_RQ)
    finally:
        relay.close()


@pytest.mark.parametrize(("parallel", "stop"), [(1, "sigterm"), (2, "sigterm"), (2, "ctrl-c")],
                         ids=["one", "parallel", "parallel-ctrl-c"])  # fmt: skip
def test_move_second_signal(study, tmp_path, parallel, stop):
    """A C-MOVE whose PACS is halfway through storing a sub-operation's data set to our listener
    (a relay between the PACS and the listener holds back the rest): the first signal sends
    C-CANCEL (the PACS, waiting on its sub-operation, sends no final response), the second comes
    in the grace for it. Our C-MOVE associations are aborted, the listener ends the PACS's
    storing association and removes the file it was receiving."""
    signum, code, cancelling = SIGNALS[stop]
    pacs_db, study_uid = study
    port, move_port = free_port(), free_port()
    storing = StallingRelay(move_port, stall_requester_at_store=2)
    serve = ["--db", pacs_db, "serve", "--port", port, "--ae-title", "MOVEPACS",
             "--destination", f"DICOMPLUS@{LOOPBACK}:{storing.port}"]  # fmt: skip
    try:
        with dicomplus_server(*serve, port=port):
            relay = StallingRelay(port)
            try:
                db, store = tmp_path / "db", tmp_path / "db" / "store"
                cmd = Command("--db", db, "retrieve", f"MOVEPACS@{LOOPBACK}:{relay.port}", "--study", study_uid,
                              "--method", "move", "--parallel", parallel, "--retries", 0,
                              "--calling-ae", "DICOMPLUS", "--listener-port", move_port,
                              "--listener-host", LOOPBACK)  # fmt: skip
                cmd.wait_for(
                    lambda: len(storing.stalled) == parallel and leftovers(store), "C-STORE held halfway"
                )
                exit_code = cmd.twice(signum, cancelling, lambda: True)
                assert exit_code == code, (cmd.out, cmd.err)
                assert_one_account(cmd.err, signum)
                # looked at before a Database opens the store: opening sweeps a dead writer's temporaries
                assert leftovers(store) == []
                with relay.lock:  # the C-MOVEs' associations, not the plan's C-FINDs'
                    moves = [seen for seen, asked in zip(relay.from_client, relay.commands_from_client, strict=True)
                             if dimse.C_MOVE_RQ in asked]  # fmt: skip
                assert_aborted(moves, parallel, ul.P_DATA_TF)
                # the first instance of each storing association was answered and committed before the hold
                assert assert_consistent(db / "dicomplus.sqlite", store) >= parallel
            finally:
                relay.close()
    finally:
        storing.close()


def send_buffer_can_grow() -> bool:
    """Whether a loopback connection's send buffer, as the kernel sizes it, can still be grown
    by a process (``net.core.wmem_max``): what a cut send's A-ABORT needs (ul.PDUStream.abort).
    Linux's default (208 KiB) lets it grow by half of that only, less than loopback starts with."""
    with socket.create_server((LOOPBACK, 0)) as server:
        with socket.create_connection(server.getsockname()) as client:
            size = client.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size + 65536)
            return client.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) > size


@pytest.fixture(scope="module")
def large_files(tmp_path_factory):
    """Two instances of 8 MiB: more than the sender's socket holds (Linux's tcp_wmem: 4 MiB at most)."""
    return make_series(tmp_path_factory.mktemp("large") / "in", n=2, rows=2048, cols=2048, seed=6).folder


@pytest.mark.parametrize(("parallel", "stop"), [(1, "sigterm"), (1, "ctrl-c"), (2, "sigterm")],
                         ids=["one", "ctrl-c", "parallel"])  # fmt: skip
def test_send_cut_in_a_message_aborts(large_files, storescp_factory, parallel, stop):
    """A send stopped in the middle of a C-STORE's data set, the peer not reading (a relay that
    stops reading each connection in its first file, its receive buffer small): the command ends
    at once, and once the peer reads again it gets the rest of the PDU under way and an A-ABORT
    (PS3.8 9.3.8). Before, the connection was only closed: the peer read half a PDU, then the end."""
    if not send_buffer_can_grow():
        pytest.skip("the kernel lets no socket's send buffer grow here (net.core.wmem_max)")
    signum, code, _ = SIGNALS[stop]
    storescp = storescp_factory(extra_args=["--fork"])
    relay = StallingRelay(storescp.port, hold_requester_at_store=1, rcvbuf=65536)
    try:
        cmd = Command("send", f"{storescp.aet}@{LOOPBACK}:{relay.port}", large_files, "--parallel", parallel)
        cmd.wait_for(lambda: relay.held == parallel, "files held")
        cmd.proc.send_signal(signum)  # the send waiting for the peer to read ends at the first
        try:
            exit_code = cmd.proc.wait(30)
        finally:
            if cmd.proc.poll() is None:
                cmd.proc.kill()
                cmd.proc.wait()
        assert exit_code == code, cmd.err
        relay.resume()  # the peer reads again: what our process left in its sockets arrives
        deadline = time.monotonic() + 30
        while relay.requesters_ended < parallel and time.monotonic() < deadline:
            time.sleep(0.01)
        with relay.lock:
            assert len(relay.from_client) == parallel, relay.from_client
            # each message cut (its data set never whole), then the A-ABORT as the last PDU
            assert relay.data_sets_from_client == [0] * parallel, relay.data_sets_from_client
            for seen in relay.from_client:
                assert seen[-1] == ul.A_ABORT, seen
    finally:
        relay.close()


class TricklingRelay(TcpRelay):
    """A loopback TCP relay to an HTTP server whose answer to a WADO-RS request (one that
    accepts multipart/related) goes whole up to ``fast`` bytes, then a byte every 50 ms: a body
    that never ends within a test, yet never stops long enough (a fifth of a second) for a wait
    on it to look at a plain cancel."""

    def __init__(self, target: int, fast: int) -> None:
        self.fast = fast
        self.trickling = threading.Event()
        super().__init__(target)

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        wado = threading.Event()  # a WADO-RS request went on this connection
        threading.Thread(target=self._up, args=(client, server, wado), daemon=True).start()
        threading.Thread(target=self._down, args=(server, client, wado), daemon=True).start()

    @staticmethod
    def _up(src: socket.socket, dst: socket.socket, wado: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                if b"multipart/related" in chunk.lower():
                    wado.set()
                dst.sendall(chunk)

    def _down(self, src: socket.socket, dst: socket.socket, wado: threading.Event) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                if not wado.is_set():
                    dst.sendall(chunk)
                    continue
                now = chunk[: max(0, self.fast - sent)]
                dst.sendall(now)
                sent += len(now)
                for k in range(len(now), len(chunk)):
                    self.trickling.set()
                    dst.sendall(chunk[k : k + 1])
                    time.sleep(0.05)


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_dicomweb_retrieve_second_signal(orthanc_session, tmp_path, monkeypatch, stop):
    """A WADO-RS retrieve (Orthanc's DICOMweb plugin) whose body trickles in the middle of its
    second instance: the first signal lets the instance under way finish (it never does here),
    the second ends the retrieve at once: exit 130/143, one account, the first instance kept and
    no ``.incoming-*`` left. Before, the retrieve's thread read on while the main thread waited
    its 5 s for it, and the process ended with the part's temporary file in the store."""
    signum, code, cancelling = SIGNALS[stop]
    series = make_series(tmp_path / "in", n=3, rows=512, cols=512, seed=7 if stop == "sigterm" else 8)
    orthanc_session.upload(series.folder)
    relay = TricklingRelay(orthanc_session.http_port, fast=(3 << 20) // 2)  # 1.5 MiB: in part 2 of 3
    monkeypatch.setenv("DICOMPLUS_NODES", str(tmp_path / "nodes.json"))
    try:
        url = orthanc_session.dicomweb_url.replace(f":{orthanc_session.http_port}/", f":{relay.port}/")
        assert dicomplus("nodes", "add", "TRICKLE", "--dicomweb", url)[0] == 0
        db, store = tmp_path / "db", tmp_path / "db" / "store"
        cmd = Command("--db", db, "retrieve", "TRICKLE", "--study", series.study_uid, "--method", "dicomweb")

        def second_part() -> bool:
            """The first part committed and the second's temporary begun after it (the retrieve
            looked at the cancel in between): a stored file, and a temporary that is not the
            second link the first part's keeps until its commit ends (store.place)."""
            stored = [p for p in store.rglob("*") if p.is_file() and not p.name.startswith(".")]
            with contextlib.suppress(OSError):  # a temporary committed meanwhile
                return bool(stored) and any(p.stat().st_nlink == 1 for p in leftovers(store))
            return False

        cmd.wait_for(lambda: relay.trickling.is_set() and second_part(), "the second part trickling")
        exit_code = cmd.twice(signum, cancelling, lambda: True)
        assert exit_code == code, (cmd.out, cmd.err)
        assert_one_account(cmd.err, signum)
        # looked at before a Database opens the store: opening sweeps a dead writer's temporaries
        assert leftovers(store) == []
        assert assert_consistent(db / "dicomplus.sqlite", store) >= 1
    finally:
        relay.close()
