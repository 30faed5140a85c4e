"""The local DICOM database: import, search, delete, stored headers and files.

Names are imported lazily (:mod:`DICOMPlusLib._lazy`): a search does not pay for the importer's
worker pool (multiprocessing, concurrent.futures).
"""

from __future__ import annotations

from DICOMPlusLib._lazy import lazy_getattr

_EXPORTS = {
    "Database": "database",
    "DuplicatePolicy": "database",
    "TemporaryDatabase": "database",
    "default_database_path": "database",
    "import_paths": "indexer",
    "iter_files": "indexer",
    "Criterion": "matching",
    "MatchKind": "matching",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
