"""HTTP connections whose waits a cancel ends (Ctrl-C in the CLI, Cancel in the engine).

``requests`` connects through urllib3 with a blocking ``connect()`` and reads the answer with a
blocking read: to a host that drops packets, or a server that takes the request and never
answers, a cancelled DICOMweb query, retrieve or send waited for its whole timeout (a DIMSE
association request did not: :func:`~DICOMPlusLib.network.connect.connect_cancellable`). A
session of :class:`~.client.DicomwebClient` mounts :class:`CancellableAdapter`, whose
connections, while :func:`cancelled_by` names a token, open their socket with that connect and
do every wait on it in slices (:func:`~DICOMPlusLib.network.connect.in_slices`): the TLS
handshake, the answer's first bytes and each block of its body (a server that stops halfway
through a multipart retrieve or a QIDO-RS JSON answer), and every write of the request (a
STOW-RS body that a server stops reading: its receive window and our send buffer full). The
socket carries the token, so the body read after ``requests`` returns is cut as well. The failures are urllib3's own
(NewConnectionError, ConnectTimeoutError, a read timeout), so ``requests`` maps them as before,
and a cancel comes out as CancelledError.
:func:`never_connected` and :func:`os_reason` read a failed connection's cause back out of the
layers ``requests`` and urllib3 wrap it in.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import socket
import ssl
from collections.abc import Callable, Iterator

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.ssl_ import create_urllib3_context, resolve_cert_reqs, resolve_ssl_version

from DICOMPlusLib.network.connect import Cancel, connect_cancellable, in_slices

#: The cancel token of the request this thread (or task) is making; None: connect as urllib3 does.
_CANCEL: contextvars.ContextVar[Cancel | None] = contextvars.ContextVar("dicomplus_web_cancel", default=None)


@contextlib.contextmanager
def cancelled_by(cancel: Cancel | None) -> Iterator[None]:
    """While inside, the connections this thread opens give up when ``cancel`` is cancelled."""
    token = _CANCEL.set(cancel)
    try:
        yield
    finally:
        _CANCEL.reset(token)


def _new_conn(conn: HTTPConnection) -> socket.socket | None:
    """urllib3's ``_new_conn`` (its one place that opens the socket) with a cancellable connect
    while :func:`cancelled_by` names a token; None: connect as urllib3 does."""
    cancel = _CANCEL.get()
    timeout = conn.timeout
    if cancel is None or not isinstance(timeout, int | float):  # no cancel, or no timeout
        return None
    try:
        sock = connect_cancellable(conn._dns_host, conn.port, float(timeout), cancel)
    except socket.gaierror as exc:
        raise NewConnectionError(conn, f"Failed to resolve {conn.host!r} ({exc})") from exc
    except TimeoutError as exc:
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={timeout})"
        ) from exc
    except OSError as exc:
        raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc
    for option in conn.socket_options or ():  # TCP_NODELAY, as urllib3 sets it
        sock.setsockopt(*option)
    sliced = _SlicedSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    sliced.settimeout(float(timeout))
    sliced.cancel = cancel
    return sliced


#: The most one write of a request's body hands to an HTTPS socket: OpenSSL writes the whole of
#: what it is given before it returns (no partial writes), so the timeout of a write whose server
#: reads slowly counts from the last block it took rather than from the start of the body.
_TLS_WRITE = 256 * 1024


def _send_all(
    sock: socket.socket, send: Callable[[memoryview], int], data, cancel: Cancel, block: int
) -> None:
    """``sock.sendall(data)`` whose waits for a server that stopped reading are cut into slices
    that look at ``cancel`` (:func:`in_slices`): a STOW-RS body to a server that takes the
    request and never reads held a cancelled send until the timeout. Each slice's ``send``
    either sends what fits or times out having sent nothing (OpenSSL keeps a record it began
    and finishes it on the next call with the same bytes); the socket's timeout counts from
    the last byte the server took. CancelledError, TimeoutError as a blocking sendall's."""
    with memoryview(data) as view, view.cast("B") as left:
        where = f"{_peer(sock)} to read what we send"
        while len(left):
            left = left[in_slices(sock, functools.partial(send, left[:block]), cancel, where) :]


class _SlicedSocket(socket.socket):
    """A plain HTTP connection's socket whose reads (the status line, the headers, every block
    of the body) and writes (the request, its body) wait in slices that look at ``cancel``
    (:func:`in_slices`)."""

    cancel: Cancel

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        read = functools.partial(super().recv_into, buffer, nbytes, flags)
        return in_slices(self, read, self.cancel, f"the answer of {_peer(self)}")

    def sendall(self, data, flags: int = 0) -> None:
        send = super().send
        _send_all(self, lambda chunk: send(chunk, flags), data, self.cancel, 1 << 30)


class _SlicedTLSSocket(ssl.SSLSocket):
    """An HTTPS connection's socket: the handshake, the reads and the writes in slices that look
    at the cancel token its context carries (:func:`_tls_context`); a server that accepts the
    connection and never sends its ServerHello held the handshake for the whole timeout."""

    def do_handshake(self, block: bool = False) -> None:
        shake = functools.partial(super().do_handshake, block)
        in_slices(self, shake, getattr(self.context, _TOKEN), f"the TLS handshake with {_peer(self)}")

    def recv_into(self, buffer, nbytes: int | None = None, flags: int = 0) -> int:
        read = functools.partial(super().recv_into, buffer, nbytes, flags)
        return in_slices(self, read, getattr(self.context, _TOKEN), f"the answer of {_peer(self)}")

    def sendall(self, data, flags: int = 0) -> None:
        if flags:  # as SSLSocket refuses them
            raise ValueError(f"non-zero flags not allowed in calls to sendall() on {self.__class__}")
        _send_all(self, super().send, data, getattr(self.context, _TOKEN), _TLS_WRITE)


#: The attribute of an SSLContext made by :func:`_tls_context` that holds the cancel token.
_TOKEN = "dicomplus_cancel"


def _peer(sock: socket.socket) -> str:
    with contextlib.suppress(OSError):
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    return "the server"


def _tls_context(conn: HTTPSConnection, cancel: Cancel) -> ssl.SSLContext:
    """The SSLContext urllib3 would make for ``conn`` (its own create_urllib3_context with the
    connection's settings, the system's CAs when no bundle is named), whose sockets are
    :class:`_SlicedTLSSocket` and carry ``cancel``: urllib3 wraps and shakes hands inside
    ``connect()``, with no place to look at a cancel token in between."""
    context = create_urllib3_context(
        ssl_version=resolve_ssl_version(conn.ssl_version),
        ssl_minimum_version=conn.ssl_minimum_version,
        ssl_maximum_version=conn.ssl_maximum_version,
        cert_reqs=resolve_cert_reqs(conn.cert_reqs),
    )
    if not (conn.ca_certs or conn.ca_cert_dir or conn.ca_cert_data):
        context.load_default_certs()
    context.sslsocket_class = _SlicedTLSSocket
    setattr(context, _TOKEN, cancel)
    return context


class _HTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _new_conn(self) or super()._new_conn()


class _HTTPSConnection(HTTPSConnection):
    _made_context = False

    def _new_conn(self) -> socket.socket:
        return _new_conn(self) or super()._new_conn()

    def connect(self) -> None:
        cancel = _CANCEL.get()
        if self._made_context or self.ssl_context is None:  # not a context a caller chose
            self.ssl_context = None if cancel is None else _tls_context(self, cancel)
            self._made_context = self.ssl_context is not None
        super().connect()


class _HTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class CancellableAdapter(HTTPAdapter):
    """requests' adapter with connection pools of :class:`_HTTPConnection` (http and https)."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}


def _causes(exc: BaseException):
    """``exc`` and every exception under it, nearest first: the causes and contexts, urllib3's
    ``reason``, exceptions passed as arguments (requests and urllib3 wrap a socket's error in
    several layers of each); each once."""
    seen = set()
    queue: list[BaseException | None] = [exc]
    while queue:
        e = queue.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        queue += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        queue += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]


def os_reason(exc: BaseException) -> str:
    """The operating system's words for why a connection failed ("Connection refused", "Name or
    service not known"), found under the layers requests and urllib3 wrap it in; their own text
    repeats the whole URL with its query ("HTTPConnectionPool(host=..., port=...): Max retries
    exceeded with url: /dicom-web/studies?includefield=...")."""
    for e in _causes(exc):
        if isinstance(e, OSError) and e.strerror and type(e).__module__ in ("builtins", "socket"):
            return e.strerror
    return "no connection"


def never_connected(exc: BaseException) -> bool:
    """True when no TCP connection was made (refused, unknown host): as opposed to a server
    that connected and then closed or answered garbage."""
    return any(isinstance(e, NewConnectionError | ConnectTimeoutError) for e in _causes(exc))
