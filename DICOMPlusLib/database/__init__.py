"""The local DICOM database: import, search, delete, stored headers and files.

Names are imported lazily (PEP 562, :mod:`DICOMPlusLib._lazy`): the command line imports
``database.commands`` to build its parser, and that must not cost the database, the indexer and
the scanner for a command that uses none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from DICOMPlusLib._lazy import lazy_getattr

if TYPE_CHECKING:  # the names as mypy sees them; at run time __getattr__ imports them on first use
    from DICOMPlusLib.database.backends import open_database
    from DICOMPlusLib.database.database import Database, TemporaryDatabase, default_database_path
    from DICOMPlusLib.database.indexer import import_paths
    from DICOMPlusLib.database.ingest import DuplicatePolicy
    from DICOMPlusLib.database.matching import Criterion, MatchKind
    from DICOMPlusLib.database.protocol import DatabaseProtocol
    from DICOMPlusLib.database.walk import iter_files


_EXPORTS = {
    "Database": "database",
    "DuplicatePolicy": "ingest",
    "DatabaseProtocol": "protocol",
    "TemporaryDatabase": "database",
    "default_database_path": "database",
    "open_database": "backends",
    "import_paths": "indexer",
    "iter_files": "walk",
    "Criterion": "matching",
    "MatchKind": "matching",
}

__all__ = [
    "Criterion",
    "Database",
    "DatabaseProtocol",
    "DuplicatePolicy",
    "MatchKind",
    "TemporaryDatabase",
    "default_database_path",
    "import_paths",
    "iter_files",
    "open_database",
]
__getattr__ = lazy_getattr(__name__, _EXPORTS)

if TYPE_CHECKING:
    from DICOMPlusLib.database.backends import open_database
    from DICOMPlusLib.database.database import (
        Database,
        TemporaryDatabase,
        default_database_path,
    )
    from DICOMPlusLib.database.indexer import import_paths
    from DICOMPlusLib.database.ingest import DuplicatePolicy
    from DICOMPlusLib.database.matching import Criterion, MatchKind
    from DICOMPlusLib.database.protocol import DatabaseProtocol
    from DICOMPlusLib.database.walk import iter_files
