"""Series to correctly oriented volumes: grouping, geometry (LPS), pixels, previews, writers."""

from DICOMPlusLib.loading.api import (
    inspect,
    load,
    load_folder,
    load_series,
    plan_folder,
    plan_paths,
    plan_series,
)
from DICOMPlusLib.loading.models import Frame, LoadWarning, SpacingReport, Volume, VolumeInfo

__all__ = [
    "Frame",
    "LoadWarning",
    "SpacingReport",
    "Volume",
    "VolumeInfo",
    "inspect",
    "load",
    "load_folder",
    "load_series",
    "plan_folder",
    "plan_paths",
    "plan_series",
]
