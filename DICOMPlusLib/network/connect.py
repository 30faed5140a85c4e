"""A TCP connect, and the waits on the connected socket, that a cancel ends: the DIMSE stack's
association requests and the DICOMweb client's HTTP connections both start with one (both stacks
import it; neither imports the other); :func:`in_slices` cuts a TLS handshake's and a read's wait.

A host that drops packets (a firewall's DROP, an address nothing answers) holds a blocking
``connect()`` for the whole timeout, and neither the CLI's Ctrl-C handler (which only cancels:
the system call goes on) nor the engine's Cancel can cut it short: a cancelled send, query or
retrieve then waited up to its --timeout before it ended.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from DICOMPlusLib.cancel import halted
from DICOMPlusLib.errors import CancelledError


class Cancel(Protocol):
    """What the connect looks at (a :class:`~DICOMPlusLib.jobs.CancelToken`)."""

    @property
    def cancelled(self) -> bool: ...


T = TypeVar("T")

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
    for family, kind, proto, _name, address in resolve(host, port, timeout, cancel):
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


def resolve(host: str, port: int, timeout: float, cancel: Cancel) -> list:
    """``socket.getaddrinfo`` for a TCP connection to ``host``, which a cancel and ``timeout``
    end: a name server that never answers holds getaddrinfo inside the C library (glibc: 5 s
    per try and server, tries repeated; a VPN's or a dead server's configuration, much longer),
    where neither Ctrl-C (a KeyboardInterrupt waits for the call to return) nor the cancel
    token reaches it. An address is converted at once; a name is looked up in a daemon thread,
    waited for in slices (:func:`wait_in_slices`), and left to finish on its own when the wait
    ends. socket.gaierror as getaddrinfo raises it (EAI_AGAIN "no answer" after ``timeout``),
    CancelledError."""
    name = lookup_name(host)
    try:
        return socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass  # a name, not an address
    done = threading.Event()
    box: list = []

    def look_up() -> None:
        try:
            box.append(socket.getaddrinfo(name, port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the waiting thread
            box.append(exc)
        finally:
            done.set()

    threading.Thread(target=look_up, name=f"dicomplus-resolve-{host}", daemon=True).start()

    def attempt(seconds: float) -> list:
        if not done.wait(seconds):
            raise TimeoutError
        return box[0]

    try:
        found = wait_in_slices(attempt, timeout, cancel, f"the address of {host}")
    except TimeoutError:
        raise socket.gaierror(
            socket.EAI_AGAIN, f"the name server did not answer within {timeout:g} s"
        ) from None
    if isinstance(found, BaseException):
        raise found
    return found


def wait_in_slices(
    attempt: Callable[[float], T],
    timeout: float | None,
    cancel: Cancel,
    what: str,
    *,
    final: tuple[type[BaseException], ...] = (),
    step: float = CANCEL_POLL_S,
    on_cancel: Callable[[], float] | None = None,
    progress: Callable[[], int] | None = None,
) -> T:
    """``attempt(seconds)``, a wait that raises TimeoutError when nothing came within
    ``seconds``, repeated in slices of ``step`` until it returns, looking at ``cancel``
    after each slice: the one loop of every cancellable wait (a connection's TLS handshake and
    reads, :func:`in_slices`; the next PDU, ``scu.read_in_slices`` and the Q/R SCU's event loop;
    what we send to a peer that stopped reading; a name lookup). A slice that times out is tried
    again where it stopped, so ``attempt`` must keep what it got. CancelledError on a cancel,
    TimeoutError once ``timeout`` (None: no limit) has passed with nothing; the TimeoutErrors
    listed in ``final`` (a deadline of the attempt's own) end the wait as they are.

    Two hooks make it the wait of an operation that a cancel asks the peer to end (a C-FIND,
    C-GET or C-MOVE: PS3.7 9.3.2.3): ``on_cancel()`` is called whenever the token is seen
    cancelled, before each slice too (so it must do its work once, a C-CANCEL, and then only
    answer), and returns the ``time.monotonic()`` until which the wait goes on (the grace for
    the final response); CancelledError once that has passed. ``progress()`` counts what has
    arrived (a PDU's bytes): when it changed in a slice that timed out, ``timeout`` starts
    again, an idle timeout rather than a deadline for the whole."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = progress() if progress is not None else 0
    while True:
        if on_cancel is not None and cancel.cancelled and time.monotonic() >= on_cancel():
            raise CancelledError(f"cancelled while waiting for {what}")
        left = step if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{what}: nothing within {timeout:g} s")
        try:
            return attempt(min(left, step))
        except final:
            raise
        except TimeoutError:  # socket.timeout, and ssl's "The read operation timed out"
            if on_cancel is None and cancel.cancelled:
                raise CancelledError(f"cancelled while waiting for {what}") from None
            if progress is not None and deadline is not None and progress() != seen:
                seen = progress()
                deadline = time.monotonic() + timeout  # type: ignore[operator]  # not None with a deadline


def in_slices(sock: socket.socket, call: Callable[[], T], cancel: Cancel, what: str) -> T:
    """``call()`` (a TLS handshake, a read) on ``sock`` with the socket's timeout cut into
    slices (:func:`wait_in_slices`): a peer that never sends its ServerHello, or stops halfway
    through a body, held a blocking call for the whole timeout. OpenSSL keeps a handshake's
    state and a record's bytes across slices; a recv has taken nothing. A non-blocking socket
    is not waited on.

    A halted token (a second Ctrl-C or SIGTERM, :meth:`~DICOMPlusLib.cancel.CancelToken.halt`)
    ends it before the call: a cancel is only seen in a slice that brought nothing, and a body
    that trickles in (a byte now and then) held a halted DICOMweb retrieve until its instance
    was whole, past the CLI's wait for its thread (which left the part's file in the store)."""
    if halted(cancel):
        raise CancelledError(f"stopped while waiting for {what}")
    timeout = sock.gettimeout()
    if timeout == 0:
        return call()

    def attempt(seconds: float) -> T:
        sock.settimeout(seconds)
        return call()

    try:
        return wait_in_slices(attempt, timeout, cancel, what)
    finally:
        with contextlib.suppress(OSError):  # closed by the call
            sock.settimeout(timeout)


def _writable(sock: socket.socket, seconds: float) -> bool:
    """Whether ``sock``'s connection attempt ended (connected or failed) within ``seconds``:
    poll where there is one (select's descriptors stop at 1024 on Linux), select on Windows."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        return bool(poller.poll(seconds * 1000))
    _, written, failed = select.select([], [sock], [sock], seconds)
    return bool(written or failed)
