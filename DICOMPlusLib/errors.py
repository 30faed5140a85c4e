"""One exception root for everything DICOMPlus raises.

Messages say what happened and what to do about it, so the CLI and the Slicer module can show
them as they are.
"""

from __future__ import annotations


class DICOMPlusError(Exception):
    """Root of every error raised on purpose by DICOMPlusLib."""


class DatabaseError(DICOMPlusError):
    """The local database cannot do what was asked (corrupt, locked, wrong schema, bad query)."""


class ImportFileError(DatabaseError):
    """One file could not be imported (not DICOM, truncated, no SOPInstanceUID...)."""


class NetworkError(DICOMPlusError):
    """Anything that goes wrong talking to another DICOM node."""


class AssociationError(NetworkError):
    """The association could not be established (refused, rejected, timed out)."""


class QueryError(NetworkError):
    """A C-FIND or QIDO-RS query failed."""


class RetrieveError(NetworkError):
    """A C-GET, C-MOVE or WADO-RS retrieve failed."""


class SendError(NetworkError):
    """A C-STORE or STOW-RS send failed."""


class LoadError(DICOMPlusError):
    """A series cannot be turned into a volume."""


class ExportError(DICOMPlusError):
    """A volume or segmentation cannot be written as DICOM."""


class BundleError(DICOMPlusError):
    """A Slicer Data Bundle cannot be written or read."""


class CancelledError(DICOMPlusError):
    """The user cancelled the operation. Work committed before the cancel is kept."""


class EngineError(DICOMPlusError):
    """The DICOMPlus engine process could not be started, stopped unexpectedly, or answered
    something this side does not understand."""
