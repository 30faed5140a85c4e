"""The local DICOM database: import, search, delete, stored headers and files."""

from DICOMPlusLib.database.database import (
    Database,
    DuplicatePolicy,
    TemporaryDatabase,
    default_database_path,
)
from DICOMPlusLib.database.indexer import import_paths, iter_files
from DICOMPlusLib.database.matching import Criterion, MatchKind

__all__ = [
    "Criterion",
    "Database",
    "DuplicatePolicy",
    "MatchKind",
    "TemporaryDatabase",
    "default_database_path",
    "import_paths",
    "iter_files",
]
