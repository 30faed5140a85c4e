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
from DICOMPlusLib.models import PatientRecord, QueryLevel
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, RemoteNode

if TYPE_CHECKING:
    from DICOMPlusLib.database import Database


@runtime_checkable
class QuerySource(Protocol):
    name: str

    def search(self, level: QueryLevel | str, criteria: Mapping[str, str] | None = None, *,
               limit: int | None = None) -> Iterator:  # fmt: skip
        """Records at ``level`` matching ``criteria`` (PS3.4 C.2.2.2 matching values)."""
        ...


class DatabaseSource:
    """The local database."""

    def __init__(self, db: Database, name: str = "local") -> None:
        self.db = db
        self.name = name

    def search(self, level, criteria=None, *, limit=None) -> Iterator:
        yield from self.db.search(level, dict(criteria or {}), limit=limit)


class DimseSource:
    """A DIMSE node queried with C-FIND (:func:`DICOMPlusLib.network.query.query`)."""

    def __init__(self, node: RemoteNode, *, calling_ae_title: str = DEFAULT_AE_TITLE, timeout: float = 30.0,
                 model: str = "study") -> None:  # fmt: skip
        self.node = node
        self.name = node.name
        self.calling_ae_title = calling_ae_title
        self.timeout = timeout
        self.model = model

    def search(self, level, criteria=None, *, limit=None) -> Iterator:
        from DICOMPlusLib.network.query import query

        level = QueryLevel.parse(level)
        model = "patient" if level is QueryLevel.PATIENT else self.model
        yield from query(self.node, level, criteria, model=model, calling_ae_title=self.calling_ae_title,
                         limit=limit, timeout=self.timeout)  # fmt: skip


class DicomwebSource:
    """A DICOMweb node queried with QIDO-RS (PS3.18 10.6). QIDO-RS has no patient level: patients
    are the distinct patients of the matching studies."""

    def __init__(self, node: RemoteNode | str, *, timeout: float = 30.0) -> None:
        from DICOMPlusLib.network.web.client import DicomwebClient, DicomwebEndpoint, client_for

        if isinstance(node, str):
            self.name = node
            self.client = DicomwebClient(DicomwebEndpoint(node, timeout=timeout))
        else:
            self.name = node.name
            self.client = client_for(node, timeout=timeout)

    def search(self, level, criteria=None, *, limit=None) -> Iterator:
        from DICOMPlusLib.network.query import dicomweb_search

        level = QueryLevel.parse(level)
        criteria = dict(criteria or {})
        if level is not QueryLevel.PATIENT:
            yield from dicomweb_search(self.client, level, criteria, limit=limit)
            return
        seen: set[str] = set()
        for study in dicomweb_search(self.client, QueryLevel.STUDY, criteria):
            if study.PatientID in seen:
                continue
            seen.add(study.PatientID)
            yield PatientRecord(PatientID=study.PatientID, PatientName=study.PatientName,
                                PatientBirthDate=study.PatientBirthDate, PatientSex=study.PatientSex)  # fmt: skip
            if limit is not None and len(seen) >= limit:
                return


def source_for(where, *, calling_ae_title: str = DEFAULT_AE_TITLE, timeout: float = 30.0) -> QuerySource:
    """The query source for a node (DICOMweb when its preferred retrieve is DICOMweb), or for
    a database."""
    from DICOMPlusLib.network.query import uses_dicomweb

    if isinstance(where, RemoteNode):
        if uses_dicomweb(where):
            return DicomwebSource(where, timeout=timeout)
        return DimseSource(where, calling_ae_title=calling_ae_title, timeout=timeout)
    from DICOMPlusLib.database import Database

    if isinstance(where, Database):
        return DatabaseSource(where)
    raise QueryError(f"cannot query {where!r}: give a RemoteNode or a Database")
