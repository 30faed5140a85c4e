"""Where query results come from: one protocol, three back ends.

A :class:`QuerySource` answers ``search(level, criteria, limit=)`` with the frozen records of
:mod:`DICOMPlusLib.models`, whether it is the local database, a DIMSE node (C-FIND) or a
DICOMweb node (QIDO-RS), so a browser does not care where results come from (the
dicomweb-client ``DICOMClient`` idea).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from DICOMPlusLib.errors import QueryError
from DICOMPlusLib.models import QueryLevel
from DICOMPlusLib.network.answers import QueryReport
from DICOMPlusLib.network.endpoints import EndpointKind
from DICOMPlusLib.network.find import dicomweb_search, find_dimse, normalize_criteria
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, DicomwebEndpoint, RemoteNode
from DICOMPlusLib.network.transports.web import patients_of_studies
from DICOMPlusLib.network.web.client import DicomwebClient, client_for

if TYPE_CHECKING:
    from DICOMPlusLib.database import DatabaseProtocol


@runtime_checkable
class QuerySource(Protocol):
    name: str

    def search(self, level: QueryLevel | str, criteria: Mapping[str, object] | None = None, *,
               limit: int | None = None) -> Iterator:  # fmt: skip
        """Records at ``level`` matching ``criteria`` (PS3.4 C.2.2.2 matching values)."""
        ...


class DatabaseSource:
    """The local database."""

    def __init__(self, db: DatabaseProtocol, name: str = "local") -> None:
        self.db = db
        self.name = name

    def search(self, level, criteria=None, *, limit=None) -> Iterator:
        yield from self.db.search(level, dict(criteria or {}), limit=limit)


class DimseSource:
    """A node's DIMSE endpoint queried with C-FIND."""

    def __init__(self, node: RemoteNode, *, calling_ae_title: str = DEFAULT_AE_TITLE, timeout: float = 30.0,
                 model: str = "study") -> None:  # fmt: skip
        self.node = node
        self.name = node.name
        self.calling_ae_title = calling_ae_title
        self.timeout = timeout
        self.model = model

    def search(self, level, criteria=None, *, limit=None) -> Iterator:
        level = QueryLevel.parse(level)
        model = "patient" if level is QueryLevel.PATIENT else self.model
        yield from find_dimse(self.node, level, normalize_criteria(level, criteria), model=model,
                              calling_ae_title=self.calling_ae_title, limit=limit, timeout=self.timeout,
                              report=QueryReport())  # fmt: skip


class DicomwebSource:
    """A DICOMweb node queried with QIDO-RS (PS3.18 10.6). QIDO-RS has no patient level: patients
    are the distinct patients of the matching studies."""

    def __init__(self, node: RemoteNode | str, *, timeout: float = 30.0) -> None:
        if isinstance(node, str):
            self.name = node
            self.client = DicomwebClient(DicomwebEndpoint(node, timeout=timeout))
        else:
            self.name = node.name
            self.client = client_for(node, timeout=timeout)

    def search(self, level, criteria=None, *, limit=None) -> Iterator:
        level = QueryLevel.parse(level)
        criteria = normalize_criteria(level, criteria)
        if level is QueryLevel.PATIENT:
            yield from patients_of_studies(self.client, criteria, limit)
        else:
            yield from dicomweb_search(self.client, level, criteria, limit=limit)


def source_for(where, *, calling_ae_title: str = DEFAULT_AE_TITLE, timeout: float = 30.0) -> QuerySource:
    """The query source for a node (its preferred endpoint's), or for a database."""
    if isinstance(where, RemoteNode):
        if where.preferred is EndpointKind.DICOMWEB:
            return DicomwebSource(where, timeout=timeout)
        return DimseSource(where, calling_ae_title=calling_ae_title, timeout=timeout)
    from DICOMPlusLib.database.protocol import DatabaseProtocol

    if isinstance(where, DatabaseProtocol):  # any back end (SQLite, PostgreSQL)
        return DatabaseSource(where)
    raise QueryError(f"cannot query {where!r}: give a RemoteNode or a database")
