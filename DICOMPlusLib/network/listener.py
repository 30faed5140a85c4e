"""The C-STORE listener: receives instances pushed by other nodes into the local database.

``Listener(db, ListenerConfig(...)).start()`` binds the port (a clear error if it is taken) and
serves associations on background threads until :meth:`Listener.stop`. Each instance is stored
and indexed before its C-STORE response goes out (see :mod:`storage`); callbacks registered
with :meth:`Listener.subscribe` hear about each stored instance and about series that went idle,
on a notifier thread of their own. Retrieves reuse a running listener: a C-MOVE to our AE title
lands here, and a subscription with ``match=`` on the move originator picks out its instances.

Each association is served on its own thread by our DIMSE stack (:mod:`..dimse.acceptor`), which
streams data fragments to disk as they arrive, never holding a data set in memory. (An engine on
pynetdicom's ``start_server`` was removed: docs/performance.md, "Why our own DIMSE stack".)
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import NetworkError
from DICOMPlusLib.network.ae import DEFAULT_AE_TITLE, DEFAULT_PORT, check_ae_title
from DICOMPlusLib.network.dimse import ul
from DICOMPlusLib.network.storage import DatabaseSink, Notifier, Subscription
from DICOMPlusLib.uninterrupted import uninterrupted

if TYPE_CHECKING:
    from DICOMPlusLib.database import DatabaseProtocol
    from DICOMPlusLib.network.dimse.acceptor import StorageAssociation
    from DICOMPlusLib.network.endpoints import TLSSettings

logger = get_logger(__name__)

#: Seconds the running associations get to finish when the listener is stopped (the first Ctrl-C
#: or SIGTERM to ``dicomplus listen``, the panel's Stop); those still running then are aborted.
STOP_GRACE = 10.0


@dataclass(frozen=True)
class ListenerConfig:
    """How the listener presents itself and whom it accepts.

    ``host`` is the address to bind ("" or "0.0.0.0": every interface; "127.0.0.1": this machine
    only). ``port`` 0 lets the system choose (read :attr:`Listener.port`). An empty
    ``allowed_calling_aets`` accepts any calling AE title (promiscuous); otherwise others are
    rejected with "calling AE title not recognized" (PS3.8 Table 9-21). ``require_called_ae``
    rejects associations addressed to another AE title. ``series_idle`` is the quiet time after
    which a series is reported complete. ``tls`` (with a certificate) makes it a TLS listener
    (PS3.15 B.1). ``fsync`` answers each instance only once its file, its index row and its
    name in the store are on the disk (slower; protects against power loss, not needed against
    crashes).

    Limits that keep slow or hostile peers from shutting others out:
    ``acse_timeout`` bounds the time from the TCP connection to a complete A-ASSOCIATE-RQ (TLS
    handshake included); ``pdu_timeout`` the time from the first to the last byte of any PDU;
    ``network_timeout`` how long an association may stay idle. Connections that have not yet
    been accepted by association negotiation (calling/called AE title checks) have their own
    budget, ``max_pending``, apart from the ``max_associations`` established ones; when it is
    full, the one waiting longest is dropped to make room (a real peer negotiates in
    milliseconds). ``max_per_address`` applies to each remote address, separately for waiting
    connections (its oldest is dropped) and for established associations (the next is rejected
    as transient).
    """

    ae_title: str = DEFAULT_AE_TITLE
    port: int = DEFAULT_PORT
    host: str = ""
    allowed_calling_aets: tuple[str, ...] = ()
    require_called_ae: bool = False
    accept_unknown_sop_classes: bool = True
    series_idle: float = 5.0
    max_associations: int = 32
    max_pending: int = 32
    max_per_address: int = 16
    max_pdu: int = 256 * 1024
    acse_timeout: float = 10.0
    pdu_timeout: float = 10.0
    network_timeout: float = 60.0
    tls: TLSSettings | None = None
    require_client_certificate: bool = False
    fsync: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title, "listener AE title"))
        object.__setattr__(
            self,
            "allowed_calling_aets",
            tuple(check_ae_title(a, "allowed calling AE title") for a in self.allowed_calling_aets),
        )
        if not 0 <= int(self.port) < 65536:
            raise NetworkError(f"invalid port {self.port}")


@dataclass(eq=False)
class _Connection:
    """A TCP connection, before and after association negotiation."""

    sock: socket.socket
    host: str
    peer: str
    since: float
    association: StorageAssociation | None = None  # the one serving it
    dropped: bool = False


class Listener:
    """A C-STORE SCP over a database. Use as a context manager or call start()/stop()."""

    def __init__(
        self, db: DatabaseProtocol, config: ListenerConfig | None = None, *, notifier: Notifier | None = None
    ) -> None:
        self.db = db
        self.config = config or ListenerConfig()
        self.notifier = notifier or Notifier(self.config.series_idle)
        self.sink = DatabaseSink(db, fsync=self.config.fsync)
        self._detach: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopping = threading.Event()
        self._pending: set[_Connection] = set()  # not yet accepted by association negotiation
        self._established: set[_Connection] = set()
        self._threads: set[threading.Thread] = set()
        self._port = 0
        self.associations = 0

    # -- public ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return self._port

    @property
    def running(self) -> bool:
        return self._thread is not None

    def subscribe(self, on_instance=None, on_series_complete=None, *, match=None) -> Subscription:
        """See :meth:`Notifier.subscribe`; callbacks run on the notifier thread."""
        return self.notifier.subscribe(on_instance, on_series_complete, match=match)

    def start(self) -> Listener:
        if self.running:
            return self
        self._stopping.clear()
        self.notifier.start()
        # Every C-STORE into this database (ours, and a C-GET retrieve's) is announced here.
        self._detach = self.notifier.attach(self.sink.ingest)
        try:
            self._start_direct()
        except BaseException:
            self._detach()
            self.notifier.stop()
            raise
        logger.info("listening as %s on %s:%d", self.config.ae_title, self.config.host or "*", self._port)
        return self

    def stop(self, timeout: float = STOP_GRACE, *, at_once: Callable[[], bool] | None = None) -> None:
        """Stop accepting, let the running associations finish for up to ``timeout`` seconds,
        abort the rest (an A-ABORT; their partial files are removed, nothing partial is
        indexed), then deliver the last notifications.

        ``at_once()`` turning true (a second Ctrl-C or SIGTERM, a cancel; looked at every 0.1 s)
        cuts the wait short, as does a KeyboardInterrupt (a second Ctrl-C), which goes on up
        once the associations are aborted. The waits sleep in slices instead of joining the
        threads: a KeyboardInterrupt inside ``Thread.join`` marks the thread stopped while it
        runs on (Python 3.11's and 3.12's ``_wait_for_tstate_lock``), and it left the stop before any
        association was aborted (the process then ended under a thread writing its file).

        The abort and the last notifications run ``uninterrupted``: one more Ctrl-C or SIGTERM
        (a third) waits for them, milliseconds (5 s at most, for threads slow to remove their
        partial files), then goes on up; it ended the process with such a file still there."""
        try:
            if self._thread is not None:
                try:
                    self._stop_accepting(timeout, at_once)
                    self._wait_for_associations(time.monotonic() + timeout, at_once)
                finally:
                    with uninterrupted:
                        self._end_associations()
        finally:
            with uninterrupted:
                if self._detach is not None:
                    self._detach()
                    self._detach = None
                self.notifier.stop()

    def _stop_accepting(self, timeout: float, at_once: Callable[[], bool] | None) -> None:
        """End the accept loop, refuse the connections still queued and drop those negotiating."""
        thread = self._thread
        self._stopping.set()
        with contextlib.suppress(OSError):
            if self._wake_w is not None:
                self._wake_w.send(b"x")
        deadline = time.monotonic() + timeout
        while thread is not None and thread.is_alive() and time.monotonic() < deadline:
            if at_once is not None and at_once():
                break
            time.sleep(0.02)
        self._close_door()

    def _close_door(self) -> None:
        """Accept nothing more: the accept loop told to end, the listening socket closed
        (connections still queued are refused, not left hanging), the connections still
        negotiating dropped (nothing accepted on them yet)."""
        self._stopping.set()
        self._thread = None
        with contextlib.suppress(OSError):
            if self._sock is not None:
                self._sock.close()
        with self._lock:
            for connection in list(self._pending):
                self._drop(connection)

    def _wait_for_associations(self, deadline: float, at_once: Callable[[], bool] | None = None) -> bool:
        """Sleep until every association's thread has ended (each takes itself out of
        ``_threads`` as it ends), ``deadline`` passes or ``at_once()`` turns true; whether they
        all ended."""
        while True:
            with self._lock:
                if not self._threads:
                    return True
            left = deadline - time.monotonic()
            if left <= 0 or (at_once is not None and at_once()):
                return False
            time.sleep(min(left, 0.1))

    def _end_associations(self) -> None:
        """Abort the associations still running and wait (a few seconds) for their threads to
        remove their partial files; close the listener's sockets (the door first, again: the
        stop may have been cut short before it was closed)."""
        self._close_door()
        with self._lock:
            leftover = [c.association for c in self._established if c.association is not None]
        for association in leftover:
            association.kill()
        try:
            if not self._wait_for_associations(time.monotonic() + 5.0):
                logger.warning("%d associations did not end after their abort", len(self._threads))
        finally:
            for s in (self._sock, self._wake_r, self._wake_w):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()
            self._sock = self._wake_r = self._wake_w = None

    def __enter__(self) -> Listener:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def describe(self) -> dict:
        """What a peer must configure to send here."""
        return {
            "ae_title": self.config.ae_title,
            "host": self.config.host or socket.gethostname(),
            "port": self._port,
            "tls": self.config.tls is not None,
            "allowed_calling_aets": list(self.config.allowed_calling_aets),
        }

    # -- serving -----------------------------------------------------------------------------
    def _start_direct(self) -> None:
        from DICOMPlusLib.network.dimse.acceptor import AcceptorPolicy

        cfg = self.config
        try:
            sock = socket.create_server((cfg.host, cfg.port), backlog=64, reuse_port=False)
        except OSError as exc:
            raise bind_error(cfg.host, cfg.port, exc) from exc
        self._sock = sock
        self._port = sock.getsockname()[1]
        wake, self._wake_w = socket.socketpair()
        self._wake_r = wake
        self._ssl = cfg.tls.server_context(cfg.require_client_certificate) if cfg.tls else None
        self._policy = AcceptorPolicy(
            ae_title=cfg.ae_title,
            allowed_calling_aets=frozenset(cfg.allowed_calling_aets),
            require_called_ae=cfg.require_called_ae,
            accept_unknown_sop_classes=cfg.accept_unknown_sop_classes,
            max_pdu=cfg.max_pdu,
            acse_timeout=cfg.acse_timeout,
            network_timeout=cfg.network_timeout,
            pdu_timeout=cfg.pdu_timeout,
        )
        self._thread = threading.Thread(
            target=self._accept_loop, args=(sock, wake), name="dicomplus-listener", daemon=True
        )
        self._thread.start()

    def _accept_loop(self, sock: socket.socket, wake: socket.socket) -> None:
        """Accept on ``sock`` until :meth:`stop` writes to the other end of ``wake``."""
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                for key, _ in selector.select(timeout=1.0):
                    if key.fileobj is wake or self._stopping.is_set():
                        return
                    try:
                        conn, addr = sock.accept()
                    except OSError:
                        continue
                    self._spawn(conn, addr)
                self._drop_overdue()
        finally:
            selector.close()

    def _drop_overdue(self) -> None:
        """End connections still negotiating past ``acse_timeout`` (plus a second). A backstop:
        their threads already enforce the deadline on every read, and Python's TLS handshake
        keeps one deadline for the whole handshake."""
        limit = time.monotonic() - self.config.acse_timeout - 1.0
        with self._lock:
            overdue = [c for c in self._pending if c.since < limit]
            for connection in overdue:
                logger.warning("%s: no association after %.0f s; dropped", connection.peer,
                               self.config.acse_timeout)  # fmt: skip
                self._drop(connection)

    def _spawn(self, conn: socket.socket, addr) -> None:
        self.associations += 1
        connection = _Connection(conn, addr[0], f"{addr[0]}:{addr[1]}", time.monotonic())
        with self._lock:
            self._make_room(connection.host)
            self._pending.add(connection)
        thread = threading.Thread(
            target=self._run_association,
            args=(connection,),
            name=f"dicomplus-assoc-{self.associations}",
            daemon=True,
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _make_room(self, host: str) -> None:
        """Under the lock: drop the connection waiting longest for negotiation when the
        address's or the listener's budget of waiting connections is full."""
        cfg = self.config
        same = [c for c in self._pending if c.host == host]
        if len(same) >= cfg.max_per_address:
            victim, budget = min(same, key=lambda c: c.since), f"{cfg.max_per_address} from {host}"
        elif len(self._pending) >= cfg.max_pending:
            victim, budget = min(self._pending, key=lambda c: c.since), str(cfg.max_pending)
        else:
            return
        logger.warning("%s: dropped after %.1f s without a complete association request: a newer connection "
                       "needed its place (%s connections may wait)", victim.peer,
                       time.monotonic() - victim.since, budget)  # fmt: skip
        self._drop(victim)

    def _drop(self, connection: _Connection) -> None:
        """Under the lock: end a connection that is still negotiating (its thread wakes up)."""
        connection.dropped = True
        self._pending.discard(connection)
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_RDWR)

    def _admit(self, connection: _Connection) -> str | None:
        """Called by the association once negotiation succeeded: None when it may go on, else
        why it is rejected for now (and what would change that)."""
        cfg = self.config
        with self._lock:
            self._pending.discard(connection)
            if connection.dropped:
                return "dropped to make room for newer connections"
            if len(self._established) >= cfg.max_associations:
                return (
                    f"too many associations: {cfg.max_associations} are open (max_associations); retry later"
                )
            same = sum(1 for c in self._established if c.host == connection.host)
            if same >= cfg.max_per_address:
                return (
                    f"too many associations from {connection.host}: {same} are open (max_per_address); "
                    "retry later"
                )
            self._established.add(connection)
        return None

    def _run_association(self, connection: _Connection) -> None:
        from DICOMPlusLib.network.dimse.acceptor import StorageAssociation

        conn = connection.sock
        deadline = connection.since + self.config.acse_timeout
        try:
            ul.set_nodelay(conn)
            if self._ssl is not None:
                conn.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    conn = self._ssl.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                    with self._lock:  # from here on, _drop reaches the TLS socket
                        connection.sock = conn
                        if connection.dropped:
                            raise ConnectionAbortedError("dropped before the TLS handshake")
                    conn.do_handshake()
                except OSError as exc:
                    logger.info("%s: TLS handshake failed: %s", connection.peer, exc)
                    with contextlib.suppress(OSError):
                        conn.close()
                    return
            association = StorageAssociation(
                conn,
                connection.peer,
                self._policy,
                self.sink,
                admit=lambda _association: self._admit(connection),
                deadline=deadline,
            )
            with self._lock:
                connection.association = association
            association.run()
        finally:
            with self._lock:
                self._pending.discard(connection)
                self._established.discard(connection)
                self._threads.discard(threading.current_thread())


def bind_error(host: str, port: int, exc: OSError) -> NetworkError:
    """The error for a port that cannot be bound, saying what to do."""
    if exc.errno == errno.EADDRINUSE:
        return NetworkError(
            f"port {port} is already in use on {host or 'all interfaces'} (another DICOM listener, or a "
            f"previous one still running?); choose another port, or stop that program"
        )
    if exc.errno == errno.EACCES:
        return NetworkError(
            f"no permission to listen on port {port} (ports below 1024 need root); use e.g. 11112"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return NetworkError(f"cannot listen on {host}: not an address of this machine")
    return NetworkError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
