"""One exception root for everything DICOMPlus raises.

Messages say what happened and what to do about it, so the CLI and the Slicer module can show
them as they are.
"""

from __future__ import annotations

import enum
import errno


class DICOMPlusError(Exception):
    """Root of every error raised on purpose by DICOMPlusLib."""


class DatabaseError(DICOMPlusError):
    """The local database cannot do what was asked (corrupt, locked, wrong schema, bad query)."""


class DatabaseUnavailableError(DatabaseError):
    """The database server went away or could not be reached: a session it ended (a restart, a
    failover, ``pg_terminate_backend``, a cut network) or a connection it did not take. What
    failed can succeed a moment later on a new connection (a retrieve asks again for what it
    could not commit); a refused row or a full disk is not this."""


class ImportFileError(DatabaseError):
    """One file could not be imported (not DICOM, truncated, no SOPInstanceUID...)."""


class SearchKeyError(DatabaseError):
    """A search key the user typed is neither in DICOM form nor in a form that can be read."""


class ScanError(DICOMPlusError, ValueError):
    """The bytes cannot be walked by the fast header scanner (not necessarily invalid DICOM)."""


class NetworkError(DICOMPlusError):
    """Anything that goes wrong talking to another DICOM node."""


class AssociationError(NetworkError):
    """The association could not be established (refused, rejected, timed out)."""


class AssociationFailure(str, enum.Enum):
    """Which step of establishing an association failed (:attr:`AssociationFailed.kind`)."""

    REFUSED = "refused"  # nothing listens on the port
    UNREACHABLE = "unreachable"  # no route, no such host
    TIMEOUT = "timeout"  # no answer
    CLOSED = "closed"  # the connection dropped without an answer
    TLS = "tls"  # the TLS handshake failed
    REJECTED = "rejected"  # A-ASSOCIATE-RJ
    ABORTED = "aborted"  # A-ABORT
    PROTOCOL = "protocol"  # the peer does not speak DICOM


class AssociationFailed(AssociationError):
    """No association; ``kind`` (:class:`AssociationFailure`) says which step failed. For
    ``REJECTED``: ``result``, ``source``, ``reason`` as in PS3.8 Table 9-21."""

    def __init__(
        self,
        kind: AssociationFailure | str,
        message: str,
        *,
        result: int = 0,
        source: int = 0,
        reason: int = 0,
    ) -> None:
        super().__init__(message)
        self.kind = AssociationFailure(kind)
        self.result, self.source, self.reason = result, source, reason


class NodeAddressProblem(str, enum.Enum):
    """What an ``AE@HOST:PORT`` that cannot be read lacks (:attr:`NodeAddressError.problem`)."""

    NO_AE_TITLE = "no-ae-title"  # no ``AE@`` before the host
    NO_PORT = "no-port"  # no ``:PORT`` (digits) after the host
    UNREADABLE = "unreadable"  # something else (no host, a character not allowed)


class NodeAddressError(NetworkError):
    """A node address that is not ``AE@HOST:PORT``; ``problem`` (:class:`NodeAddressProblem`)
    says what it lacks, for a caller that words its own hint (the command line)."""

    def __init__(
        self, message: str, problem: NodeAddressProblem | str = NodeAddressProblem.UNREADABLE
    ) -> None:
        super().__init__(message)
        self.problem = NodeAddressProblem(problem)

    def __reduce__(self):  # the engine sends it to the host pickled: rebuilt with its problem
        return (type(self), (str(self), self.problem))


class ProtocolError(NetworkError):
    """The peer sent something the DICOM Upper Layer protocol does not allow."""


class CommandError(ProtocolError, ValueError):
    """A received DIMSE command set cannot be decoded."""


class ConnectionClosed(NetworkError):
    """The TCP connection closed (or failed) while a PDU was expected."""


class NetworkTimeout(NetworkError, TimeoutError):
    """A peer did not answer, or sent too slowly, within the time allowed."""


class PDUTooSlow(NetworkTimeout):
    """A PDU started but did not arrive whole within the deadline for one PDU (a trickling peer)."""


class OperationAborted(NetworkError):
    """The association ended before the final response (cancel grace expired, peer abort,
    timeout, lost connection). ``cancelled`` tells a cancel apart from a failure."""

    def __init__(self, message: str, *, cancelled: bool = False) -> None:
        super().__init__(message)
        self.cancelled = cancelled


class QueryError(NetworkError):
    """A C-FIND or QIDO-RS query failed."""


class RetrieveError(NetworkError):
    """A C-GET, C-MOVE or WADO-RS retrieve failed."""


class MoveDestinationUnknown(RetrieveError):
    """The PACS does not know (or cannot reach) our listener as a C-MOVE destination."""


class StreamCut(NetworkError):
    """A multipart (WADO-RS) body ended inside a part (a connection closed mid-instance)."""


class DecodeRefused(NetworkError):
    """An instance is compressed, the requester accepted no syntax it could be sent in as it is,
    and decoding it is not allowed (lossy) or not possible (no decoder)."""


class SendError(NetworkError):
    """A C-STORE or STOW-RS send failed."""


class LoadError(DICOMPlusError):
    """A series cannot be turned into a volume."""


class ExportError(DICOMPlusError):
    """A volume or segmentation cannot be written as DICOM."""


class BundleError(DICOMPlusError):
    """A Slicer Data Bundle cannot be written or read."""


class DiskFullError(DICOMPlusError):
    """A disk (or a quota) filled while a command wrote: ``path`` is what it was writing into,
    ``done`` of ``total`` says how far it came (None: not counted). Everything reported done
    before is kept and readable; nothing half-written is left, so the same command run again
    after freeing space completes the job."""

    def __init__(
        self, path: str, done: int | None = None, total: int | None = None, what: str = "instances"
    ) -> None:
        self.path, self.done, self.total, self.what = str(path), done, total, what
        head = f"stored {done} of {total} {what}; " if done is not None and total is not None else ""
        super().__init__(
            f"{head}{disk_holding(path)} is full: free space there and run the same command again"
        )

    def __reduce__(self):  # the engine sends it to the host pickled: rebuilt from its fields
        return (type(self), (self.path, self.done, self.total, self.what))


class DatabaseFullError(DiskFullError, DatabaseError):
    """The disk of a database server filled (PostgreSQL's SQLSTATE 53100, disk_full): ``path``
    is the database's URL, without its password. The server rolled the transaction back."""


def disk_holding(path: str) -> str:
    """How a message names the disk that filled: the one holding a file or folder, or, for a
    ``postgresql://`` URL, the database server's (the user frees space on that machine)."""
    if path.startswith("postgresql://"):
        return f"the disk of the PostgreSQL server holding {path}"
    return f"the disk holding {path}"


#: The errnos of "no room": ENOSPC, EDQUOT (a quota), EFBIG (a size limit).
SPACE_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, n))


def space_error_in(exc: BaseException | None) -> OSError | None:
    """The OSError of a full disk or quota in ``exc`` or its chain, or None. Libraries wrap it
    (pydicom re-raises it without its errno, the traceback in the message): the message of a
    wrapper is no message for a user. "No room": :data:`SPACE_ERRNOS`."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, OSError) and exc.errno in SPACE_ERRNOS:
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


class UsageError(DICOMPlusError):
    """The command line asks for something that cannot be (exit code 2)."""


class UnknownNodeError(NetworkError, UsageError):
    """A node name that is not in the node list (nor an ``AE@HOST:PORT``): a mistake in the
    command line, like a database path that does not exist (exit code 2); still a
    :class:`NetworkError` for the callers that catch those."""


class CancelledError(DICOMPlusError):
    """The user cancelled the operation. Work committed before the cancel is kept."""


class EngineError(DICOMPlusError):
    """The DICOMPlus engine process could not be started, stopped unexpectedly, or answered
    something this side does not understand."""
