"""HTTP connections whose waits a cancel ends (Ctrl-C in the CLI, Cancel in the engine).

``requests`` connects through urllib3 with a blocking ``connect()`` and reads the answer with a
blocking read: to a host that drops packets, or a server that takes the request and never
answers, a cancelled DICOMweb query, retrieve or send waited for its whole timeout (a DIMSE
association request did not: :func:`~DICOMPlusLib.network.connect.connect_cancellable`). A
session of :class:`~.client.DicomwebClient` mounts :class:`CancellableAdapter`, whose
connections, while :func:`cancelled_by` names a token, open their socket with that connect and
wait for the answer's first bytes in slices; the failures are urllib3's own
(NewConnectionError, ConnectTimeoutError, a read timeout), so ``requests`` maps them as before,
and a cancel comes out as CancelledError. A body that stalls halfway is still read blockingly.
:func:`never_connected` and :func:`os_reason` read a failed connection's cause back out of the
layers ``requests`` and urllib3 wrap it in.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
from collections.abc import Iterator

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from DICOMPlusLib.network.connect import Cancel, connect_cancellable, wait_readable

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
    return sock


def _await_answer(conn: HTTPConnection) -> None:
    """Before urllib3 reads the answer's status line (a blocking read for the whole read
    timeout): wait for it in slices while :func:`cancelled_by` names a token, so that a server
    that took the request and never answers does not hold a cancelled query, retrieve or send."""
    cancel = _CANCEL.get()
    timeout = conn.timeout
    if cancel is None or conn.sock is None or not (timeout is None or isinstance(timeout, int | float)):
        return
    wait_readable(conn.sock, timeout, cancel, f"the answer of {conn.host}:{conn.port}")


class _HTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _new_conn(self) or super()._new_conn()

    def getresponse(self):  # urllib3's own return type
        _await_answer(self)
        return super().getresponse()


class _HTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _new_conn(self) or super()._new_conn()

    def getresponse(self):
        _await_answer(self)
        return super().getresponse()


class _HTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class CancellableAdapter(HTTPAdapter):
    """requests' adapter with connection pools of :class:`_HTTPConnection` (http and https)."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}


def os_reason(exc: BaseException) -> str:
    """The operating system's words for why a connection failed ("Connection refused", "Name or
    service not known"), found under the layers requests and urllib3 wrap it in; their own text
    repeats the whole URL with its query ("HTTPConnectionPool(host=..., port=...): Max retries
    exceeded with url: /dicom-web/studies?includefield=...")."""
    seen = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror and type(e).__module__ in ("builtins", "socket"):
            return e.strerror
        stack += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        stack += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return "no connection"


def never_connected(exc: BaseException) -> bool:
    """True when no TCP connection was made (refused, unknown host): as opposed to a server
    that connected and then closed or answered garbage."""
    seen = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, NewConnectionError | ConnectTimeoutError):
            return True
        stack += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        stack += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return False
