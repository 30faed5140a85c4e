"""The value types of the network services: what a retrieve takes and returns. They sit below
the services and the transports, so that both can import them without importing each other.

Echo's are in :mod:`.echo_models` and send's in :mod:`.send_models`: one module per operation,
so that a command defines only its own classes (each ``@dataclass`` compiles its methods with
``exec`` as its module is imported: 0.2-0.7 ms a class of every process's start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.models import TransferReport
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE

if TYPE_CHECKING:
    from collections.abc import Mapping

    from DICOMPlusLib.network.listener import Listener, ListenerConfig


#: The reason a retrieve gives for each instance of its selection that a cancel kept from coming.
NOT_FETCHED_CANCELLED = "cancelled before it arrived"


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
