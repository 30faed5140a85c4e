"""Series to correctly oriented volumes: grouping, geometry (LPS), pixels, previews, writers.

Names are imported on first use, so that the command line (which imports every command module
to build its parser) does not pay for numpy when it only reads the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from DICOMPlusLib._lazy import lazy_getattr

if TYPE_CHECKING:  # the names as mypy sees them; at run time __getattr__ imports them on first use
    from DICOMPlusLib.loading.api import (
        inspect,
        load,
        load_many,
        load_series,
        plan_folder,
        plan_paths,
        plan_series,
    )
    from DICOMPlusLib.loading.folder import load_folder
    from DICOMPlusLib.loading.models import Frame, LoadWarning, SpacingReport, Volume, VolumeInfo


_EXPORTS = {
    "inspect": "api",
    "load": "api",
    "load_folder": "folder",  # lists and prefetches the files before importing numpy
    "load_many": "api",
    "load_series": "api",
    "plan_folder": "api",
    "plan_paths": "api",
    "plan_series": "api",
    "Frame": "models",
    "LoadWarning": "models",
    "SpacingReport": "models",
    "Volume": "models",
    "VolumeGeometry": "models",
    "VolumeInfo": "models",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
