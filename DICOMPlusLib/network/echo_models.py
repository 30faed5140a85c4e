"""What an echo returns (:func:`~DICOMPlusLib.network.echo.echo`, whichever transport answers).

The value types of the network services sit below the services and the transports, so that
both can import them without importing each other: this module for echo, :mod:`.send_models`
for send, :mod:`.models` for retrieve. One module per operation, so that a command defines only
its own classes (each ``@dataclass`` compiles its methods with ``exec`` as its module is
imported: 0.2-0.7 ms a class of every process's start).
"""

from __future__ import annotations

import enum

from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.network.nodes import RemoteNode


class EchoProblem(enum.Enum):
    REFUSED = "connection refused"
    UNREACHABLE = "host unreachable"
    TIMEOUT = "timeout"
    CLOSED = "connection closed"
    TLS = "TLS handshake failed"
    REJECTED_CALLED_AE = "called AE title not recognized"
    REJECTED_CALLING_AE = "calling AE title not recognized"
    REJECTED = "association rejected"
    ABORTED = "association aborted"
    NO_VERIFICATION = "verification not supported"
    FAILED = "C-ECHO failed"
    PROTOCOL = "not a DICOM peer"
    UNAUTHORIZED = "credentials refused"
    NOT_DICOMWEB = "not a DICOMweb service"
    SERVER_ERROR = "server error"


@dataclass(frozen=True)
class EchoResult:
    """What an echo found: whether the node answered, how long it took, and what went wrong."""

    node: RemoteNode
    ok: bool
    seconds: float
    status: int | None = None
    problem: EchoProblem | None = None
    message: str = ""

    def to_dict(self) -> dict:
        return {
            "node": self.node.name,
            "address": self.node.address,
            "ok": self.ok,
            "seconds": round(self.seconds, 4),
            "status": self.status,
            "problem": self.problem.value if self.problem else None,
            "message": self.message,
        }
