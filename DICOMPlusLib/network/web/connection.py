"""HTTP connections whose TCP connect a cancel ends (Ctrl-C in the CLI, Cancel in the engine).

``requests`` connects through urllib3 with a blocking ``connect()``: to a host that drops
packets, a cancelled DICOMweb query, retrieve or send waited for its whole timeout (a DIMSE
association request did not: :func:`~DICOMPlusLib.network.connect.connect_cancellable`). A
session of :class:`~.client.DicomwebClient` mounts :class:`CancellableAdapter`, whose
connections open their socket with that connect while :func:`cancelled_by` names a token;
the failures are urllib3's own (NewConnectionError, ConnectTimeoutError), so ``requests`` maps
them as it maps a blocking connect's, and a cancel comes out as CancelledError.
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

from DICOMPlusLib.network.connect import Cancel, connect_cancellable

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


class _HTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _new_conn(self) or super()._new_conn()


class _HTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _new_conn(self) or super()._new_conn()


class _HTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class CancellableAdapter(HTTPAdapter):
    """requests' adapter with connection pools of :class:`_HTTPConnection` (http and https)."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}
