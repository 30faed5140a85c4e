"""DICOMPlus engine: database, network, loading, export and Data Bundle, in plain Python.

This package never imports slicer, qt, ctk or vtk: it runs in plain Python, inside Slicer and
behind the ``dicomplus`` command line.
"""

from DICOMPlusLib.errors import (
    AssociationError,
    BundleError,
    CancelledError,
    DatabaseError,
    DICOMPlusError,
    EngineError,
    ExportError,
    LoadError,
    NetworkError,
    QueryError,
    RetrieveError,
    SendError,
)

__version__ = "0.1.0"

__all__ = [
    "AssociationError",
    "BundleError",
    "CancelledError",
    "DICOMPlusError",
    "DatabaseError",
    "EngineError",
    "ExportError",
    "LoadError",
    "NetworkError",
    "QueryError",
    "RetrieveError",
    "SendError",
    "__version__",
]
