"""The Database protocol: what the rest of DICOMPlus may ask of a database.

network/, loading/, export/, the engine, the command line, the Slicer widgets and bench/ use a
database through these methods only: no SQL, no sqlite3 connection, no file-store internals
leave ``database/`` (``Testing/test_layering_sql.py`` greps for them). SQLite
(:class:`~DICOMPlusLib.database.database.Database`) is the embedded default; a PostgreSQL back
end (issue #20) implements the same protocol and is chosen by URL in :func:`parse_url` /
``Database.open``. One protocol, several back ends, as dicomweb-client's ``DICOMClient``.

Reads are served per thread (a thread that ends calls :meth:`release_reader`); every write is one
transaction inside the back end (an import batch, one received instance, one delete).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, overload, runtime_checkable

from DICOMPlusLib.errors import DatabaseError

if TYPE_CHECKING:
    import pydicom

    from DICOMPlusLib.database.ingest import Sink
    from DICOMPlusLib.database.search import Criteria
    from DICOMPlusLib.jobs import CancelToken, ProgressCallback
    from DICOMPlusLib.models import (
        DeleteReport,
        ImportReport,
        InstanceLevel,
        InstanceRecord,
        PatientLevel,
        PatientRecord,
        QueryLevel,
        Record,
        SeriesLevel,
        SeriesRecord,
        StudyLevel,
        StudyRecord,
    )

#: URL schemes of the back ends (``Database.open`` dispatches on them).
SQLITE_SCHEMES = ("", "file", "sqlite")


@runtime_checkable
class DatabaseProtocol(Protocol):
    """A DICOM database: records, headers, files, search, ingest, delete."""

    #: Where the database lives (a file for SQLite; shown to users).
    path: Path
    #: Whether imports index files in place instead of copying them, when not told otherwise.
    default_link: bool

    @property
    def ingest(self) -> Sink:
        """The one way in for instances (network/ needs only this Sink)."""
        ...

    @property
    def store_root(self) -> Path:
        """The folder of the managed file store."""
        ...

    def check_writable(self) -> None:
        """Raise DatabaseError (what cannot be written, and why) unless instances can be stored:
        said before a retrieve or a listener starts, not as an OSError from deep inside it."""
        ...

    def backup(
        self,
        dest: str | os.PathLike,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Path:
        """A complete, consistent copy of the index in one new file (SQLite; PostgreSQL says
        to use ``pg_dump``): the stored files are not copied."""
        ...

    # -- facts and records ---------------------------------------------------------------------
    def info(self) -> dict[str, int]:
        """Counts of patients, studies, series and instances."""
        ...

    def instance(self, sop_instance_uid: str) -> InstanceRecord: ...

    def instances(self, series_instance_uid: str) -> list[InstanceRecord]: ...

    def present(self, sop_instance_uids: Iterable[str]) -> set[str]:
        """Which of these instances are stored."""
        ...

    def sop_classes(self) -> set[str]: ...

    def instance_paths(self) -> dict[str, str]: ...

    def header(self, sop_instance_uid: str) -> pydicom.Dataset: ...

    def header_bytes(self, series_instance_uid: str) -> dict[str, bytes]: ...

    # -- search --------------------------------------------------------------------------------
    @overload
    def search(
        self,
        level: PatientLevel,
        criteria: Criteria | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[PatientRecord]: ...
    @overload
    def search(
        self,
        level: StudyLevel = ...,
        criteria: Criteria | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[StudyRecord]: ...
    @overload
    def search(
        self,
        level: SeriesLevel,
        criteria: Criteria | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SeriesRecord]: ...
    @overload
    def search(
        self,
        level: InstanceLevel,
        criteria: Criteria | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[InstanceRecord]: ...
    @overload
    def search(
        self,
        level: QueryLevel | str,
        criteria: Criteria | None = None,
        *,
        text: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Record]: ...

    def count(
        self, level: QueryLevel | str = ..., criteria: Criteria | None = None, *, text: str | None = None
    ) -> int | None:
        """How many records a search finds in all; None when counting would scan every header."""
        ...

    # -- in and out ----------------------------------------------------------------------------
    def import_paths(
        self, paths: Sequence[str | os.PathLike] | Iterable[str | os.PathLike], **kwargs: Any
    ) -> ImportReport: ...

    def delete(
        self,
        *,
        patient: str | None = None,
        study: str | None = None,
        series: str | None = None,
        instance: str | None = None,
        files: bool = True,
        linked_files: bool = False,
        dry_run: bool = False,
    ) -> DeleteReport: ...

    # -- resources -----------------------------------------------------------------------------
    def release_reader(self) -> None:
        """Free this thread's read resources (threads that end call it)."""
        ...

    def close(self) -> None: ...


def parse_url(url: str | os.PathLike) -> tuple[str, str]:
    """(scheme, location) of a database given as a path or a URL: a plain path,
    ``sqlite:///abs/file.sqlite``, ``sqlite:relative.sqlite`` and ``file://`` URLs are SQLite
    (scheme ``"sqlite"``); any other scheme is returned as it is, for ``Database.open`` to
    refuse or (issue #20) to serve."""
    text = os.fspath(url)
    if "://" not in text and not text.lower().startswith("sqlite:"):
        return "sqlite", text  # a path (also a Windows one, "C:\\...")
    from urllib.parse import unquote, urlsplit  # only for a URL: a path costs no import

    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in SQLITE_SCHEMES:
        location = unquote(parts.netloc + parts.path) if scheme == "sqlite" else unquote(parts.path)
        if location.startswith("//"):  # sqlite:////abs/path (SQLAlchemy's spelling of an absolute path)
            location = "/" + location.lstrip("/")
        if not location:
            raise DatabaseError(f"no database file in {text!r}: e.g. sqlite:///home/me/dicomplus.sqlite")
        return "sqlite", location
    return scheme, text
