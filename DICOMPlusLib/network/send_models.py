"""What a send takes and returns (:func:`~DICOMPlusLib.network.send.send_paths` and
:func:`~DICOMPlusLib.network.send.send_from_database`, over C-STORE or STOW-RS); below the
services and the transports, as :mod:`.models` says.
"""

from __future__ import annotations

from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE

#: The C-STORE SCU's default maximum PDU we receive (PS3.8 D.1); as dimse.scu.DEFAULT_MAX_PDU.
DEFAULT_MAX_PDU = 256 * 1024


@dataclass(frozen=True)
class SendItem:
    """One file to send and what its file meta says about it."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str


@dataclass(frozen=True)
class FileResult:
    """The outcome of sending one file."""

    path: str
    sop_instance_uid: str
    category: str  # success, warning, failure, cancelled
    status: int | None = None
    message: str = ""
    attempts: int = 0
    converted: bool = False  # the peer refused the original transfer syntax: re-encoded

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "SOPInstanceUID": self.sop_instance_uid,
            "result": self.category,
            "status": None if self.status is None else f"0x{self.status:04X}",
            "message": self.message,
            "attempts": self.attempts,
            "converted": self.converted,
        }


@dataclass
class SendReport:
    """One result per file, whichever transport sent them (C-STORE or STOW-RS)."""

    node: str
    results: list[FileResult] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0
    associations: int = 0  # DIMSE associations (STOW-RS: HTTP requests)
    transport: str = "DIMSE"

    @property
    def sent(self) -> int:
        return sum(r.category in ("success", "warning") for r in self.results)

    @property
    def warnings(self) -> int:
        return sum(r.category == "warning" for r in self.results)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.category == "failure"]

    @property
    def ok(self) -> bool:
        return not self.cancelled and not self.failed

    def to_dict(self) -> dict:
        return {
            "node": self.node,
            "transport": self.transport,
            "sent": self.sent,
            "warnings": self.warnings,
            "failed": len(self.failed),
            "cancelled": self.cancelled,
            "seconds": round(self.seconds, 3),
            "associations": self.associations,
            "files": [r.to_dict() for r in self.results],
        }


@dataclass(frozen=True)
class SendOptions:
    """How a send runs. ``parallel`` associations at once; failures that may be transient are
    tried again ``retries`` times, ``retry_delay`` seconds apart; ``timeout`` for connecting and
    negotiating, ``dimse_timeout`` for each C-STORE response. STOW-RS uses ``timeout`` only."""

    calling_ae_title: str = DEFAULT_AE_TITLE
    parallel: int = 1
    retries: int = 1
    retry_delay: float = 1.0
    timeout: float = 30.0
    dimse_timeout: float = 120.0
    max_pdu: int = DEFAULT_MAX_PDU
