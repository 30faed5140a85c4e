"""The value types of the network services: what echo, send, query and retrieve return and the
options they take. They sit below the services and the transports, so that both can import them
without importing each other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from DICOMPlusLib.models import TransferReport
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, RemoteNode

if TYPE_CHECKING:
    from collections.abc import Mapping

    from DICOMPlusLib.network.listener import Listener, ListenerConfig

#: The C-STORE SCU's default maximum PDU we receive (PS3.8 D.1); as dimse.scu.DEFAULT_MAX_PDU.
DEFAULT_MAX_PDU = 256 * 1024

# --------------------------------------------------------------------------------------------
# Echo
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Send
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendItem:
    """One file to send and what its file meta says about it."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str


@dataclass(frozen=True)
class FileResult:
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


# --------------------------------------------------------------------------------------------
# Retrieve
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """What the user chose to retrieve: whole studies, series of a study, instances of a series."""

    studies: frozenset[str] = frozenset()
    series: Mapping[str, frozenset[str]] = field(default_factory=dict)  # study -> series
    instances: Mapping[tuple[str, str], frozenset[str]] = field(
        default_factory=dict
    )  # (study, series) -> SOPs

    @property
    def empty(self) -> bool:
        return not (self.studies or self.series or self.instances)

    def requests(self) -> list[dict]:
        """Keyword arguments of :func:`~DICOMPlusLib.network.retrieve.retrieve` for each part of
        the selection; a study selected whole absorbs the series and instances chosen inside it."""
        out: list[dict] = [{"study_uid": s} for s in sorted(self.studies)]
        for study, series in sorted(self.series.items()):
            if study not in self.studies and series:
                out.append({"study_uid": study, "series_uids": sorted(series)})
        for (study, series_uid), sops in sorted(self.instances.items()):
            if study in self.studies or series_uid in self.series.get(study, ()):
                continue
            out.append({"study_uid": study, "series_uids": [series_uid], "sop_instance_uids": sorted(sops)})
        return out


@dataclass(frozen=True)
class RetrieveRequest:
    """What one retrieve fetches: a study, series (of a study when known) or instances."""

    study_uid: str | None = None
    series_uids: tuple[str, ...] = ()
    sop_uids: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetrieveOptions:
    """How a retrieve runs (the method is an argument of its own: ``get``, ``move``,
    ``dicomweb`` or the node's).

    C-MOVE sends to ``listener`` (it must store into the same database); without one a listener
    is started on ``listener_config`` (default: AE ``calling_ae_title``, port 11112) for the time
    of the retrieve. ``resume`` skips instances already in the database. ``timeout`` is per step;
    transient failures are retried ``retries`` times with ``backoff`` seconds doubling;
    ``parallel`` associations share the work; a cancel aborts after ``grace`` seconds.
    """

    calling_ae_title: str = DEFAULT_AE_TITLE
    listener: Listener | None = None
    listener_config: ListenerConfig | None = None
    resume: bool = True
    timeout: float = 30.0
    retries: int = 2
    backoff: float = 0.5
    parallel: int = 1
    grace: float = 1.0


@dataclass
class RetrieveReport(TransferReport):
    """What a retrieve did: ``done`` (SOP Instance UIDs received), ``skipped`` (already in the
    database), ``failed`` (SOP Instance UID -> reason), ``expected`` (from the plan),
    ``cancelled``; ``complete`` when everything expected is here. The same shape as the DICOMweb
    :class:`~DICOMPlusLib.models.TransferReport`, plus how it went."""

    node: str = ""
    method: str = ""
    seconds: float = 0.0
    associations: int = 0
    attempts: int = 0
    warnings: list[str] = field(default_factory=list)

    def merge(self, other: TransferReport) -> RetrieveReport:
        self.done += [s for s in other.done if s not in set(self.done)]
        self.skipped += other.skipped
        self.failed.update(other.failed)
        self.expected += other.expected
        self.cancelled = self.cancelled or other.cancelled
        if isinstance(other, RetrieveReport):
            self.seconds += other.seconds
            self.associations += other.associations
            self.attempts = max(self.attempts, other.attempts)
            self.warnings += other.warnings
        return self

    def to_dict(self) -> dict:
        return {
            **super().to_dict(),
            "node": self.node,
            "method": self.method,
            "seconds": round(self.seconds, 3),
            "associations": self.associations,
            "attempts": self.attempts,
            "warnings": list(self.warnings),
        }
