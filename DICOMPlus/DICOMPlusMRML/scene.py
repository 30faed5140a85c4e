"""Loaded series into the scene: what the engine decoded becomes nodes, in the right order.

The engine (DICOMPlusLib.engine, operation "load") hands each decoded volume over as a
:class:`~DICOMPlusLib.engine.protocol.VolumeFile` (voxels in a .npy file, geometry and warnings
beside it). This builds the node for each (scalar, 4D sequence, DWI, colour, segmentation),
places it in the subject hierarchy from the stored header, offers series DICOMPlus cannot load to
Slicer's own DICOM plugins, and removes the voxel files. Main thread only (MRML).
"""

import os
import shutil

from DICOMPlusLib.loading.seg import layout_of

from . import addVolumeNode, placeInSubjectHierarchy, volumeName
from .dispatch import addNodeForVolume
from .plugins import loadWithSlicerPlugins


def _isSegmentation(item):
    _uid, volumes = item
    return not isinstance(volumes, Exception) and any(layout_of(v.info) for v in volumes)


def addLoadedSeries(database, loaded, asDWI=True):
    """[(series UID, [VolumeFile] or LoadError)] -> (nodes, [(name, LoadWarning or problem)]).

    A segmentation comes after the series it segments, so that it references that node. A series
    that failed to load is offered to Slicer's DICOM plugins; if none takes it, its LoadError is
    reported and the others still load."""
    nodes, warnings, folders = [], [], set()
    for seriesUID, volumes in sorted(loaded, key=_isSegmentation):
        [series] = database.search("series", {"SeriesInstanceUID": seriesUID}) or [None]
        [study] = (
            database.search("study", {"StudyInstanceUID": series.StudyInstanceUID}) if series else [None]
        )
        if isinstance(volumes, Exception):  # maybe an object Slicer's own DICOM plugins load
            files = [[r.path for r in database.instances(seriesUID)]]
            handed, problems = loadWithSlicerPlugins(files) if files[0] else ([], [])
            if not handed:
                warnings.append((series.SeriesDescription if series else seriesUID, volumes))
            warnings += [(what or seriesUID, message) for what, message in problems if handed]
            continue
        for index, volumeFile in enumerate(volumes):
            folders.add(os.path.dirname(volumeFile.path))
            volume = volumeFile.open()
            name = volumeName(series, volume, index, len(volumes))
            node = addNodeForVolume(volume, name, addVolumeNode, asDWI)
            header = database.header(volume.sop_uids[0])  # the stored bytes: no file read
            placeInSubjectHierarchy(node, volume, study, series, header=header)
            warnings += [(name, warning) for warning in volume.warnings]
            nodes.append(node)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return nodes, warnings
