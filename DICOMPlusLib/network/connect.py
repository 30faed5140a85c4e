"""A TCP connect that a cancel ends: the DIMSE stack's association requests and the DICOMweb
client's HTTP connections both start with one (both stacks import it; neither imports the other).

A host that drops packets (a firewall's DROP, an address nothing answers) holds a blocking
``connect()`` for the whole timeout, and neither the CLI's Ctrl-C handler (which only cancels:
the system call goes on) nor the engine's Cancel can cut it short: a cancelled send, query or
retrieve then waited up to its --timeout before it ended.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from typing import Protocol

from DICOMPlusLib.errors import CancelledError


class Cancel(Protocol):
    """What the connect looks at (a :class:`~DICOMPlusLib.jobs.CancelToken`)."""

    @property
    def cancelled(self) -> bool: ...


#: How often a wait (a connection, an association's answer) looks at its cancel token (Ctrl-C).
CANCEL_POLL_S = 0.2


def lookup_name(host: str) -> str | bytes:
    """``host`` as getaddrinfo gets it. A str host is encoded there with the "idna" codec, whose
    first use imports encodings.idna, stringprep and unicodedata (~1 ms of a ``dicomplus send``
    process); an ASCII name or address is the same bytes (a malformed one then fails as "cannot
    resolve")."""
    return host.encode("ascii") if host.isascii() else host


#: connect_ex's answers while a non-blocking connection is on its way (Windows: WSAEWOULDBLOCK).
_CONNECTING = {0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, 10035}


def connect_cancellable(host: str, port: int, timeout: float, cancel: Cancel) -> socket.socket:
    """:func:`socket.create_connection` that looks at ``cancel`` while it waits (CancelledError).
    The connection is started non-blocking and waited for in slices of CANCEL_POLL_S, so the SYN
    is sent once and retried by the kernel, as a blocking connect's would be. Failures are
    create_connection's: socket.gaierror, TimeoutError, ConnectionRefusedError and other OSErrors."""
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    for family, kind, proto, _name, address in socket.getaddrinfo(
        lookup_name(host), port, type=socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(address)
            while code:
                if code not in _CONNECTING:
                    raise OSError(code, os.strerror(code))
                if cancel.cancelled:
                    raise CancelledError(f"cancelled while connecting to {host}:{port}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                if _writable(sock, min(left, CANCEL_POLL_S)):
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        raise OSError(code, os.strerror(code))  # ConnectionRefusedError, ...
            sock.settimeout(timeout)  # blocking with a timeout, as create_connection leaves it
            return sock
        except (CancelledError, TimeoutError):
            sock.close()
            raise
        except OSError as exc:  # the next address (IPv4 after IPv6), as create_connection does
            sock.close()
            last = exc
    raise last or OSError(f"no address for {host}")


def wait_readable(sock: socket.socket, timeout: float | None, cancel: Cancel, what: str) -> None:
    """Wait until ``sock`` has something to read (or its peer closed it), looking at ``cancel``
    every CANCEL_POLL_S: a peer that took the request and never answers held a cancelled query
    for its whole timeout. CancelledError on a cancel, TimeoutError after ``timeout`` (None: no
    limit); ``what`` says what was awaited."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted are not on the socket
    while not (pending is not None and pending()) and not _ready(sock, False, CANCEL_POLL_S):
        if cancel.cancelled:
            raise CancelledError(f"cancelled while waiting for {what}")
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"no answer within {timeout:g} s")


def _writable(sock: socket.socket, seconds: float) -> bool:
    """Whether ``sock``'s connection attempt ended (connected or failed) within ``seconds``."""
    return _ready(sock, True, seconds)


def _ready(sock: socket.socket, writing: bool, seconds: float) -> bool:
    """Whether ``sock`` can be read (or written), or failed, within ``seconds``: poll where there
    is one (select's descriptors stop at 1024 on Linux), select on Windows."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLOUT if writing else select.POLLIN)
        return bool(poller.poll(seconds * 1000))
    readers, writers = ([], [sock]) if writing else ([sock], [])
    read, written, failed = select.select(readers, writers, [sock], seconds)
    return bool(read or written or failed)
