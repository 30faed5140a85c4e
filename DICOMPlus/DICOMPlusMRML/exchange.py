"""Scene to database: export a volume or a segmentation into a study, save and load Data Bundles.

These take MRML nodes or the scene, turn them into what DICOMPlusLib works on (arrays and LPS
matrices, an MRB file) and hand over; the library writes and indexes the DICOM files.
Main thread only (MRML).
"""

import os
import shutil
import tempfile

import slicer
from slicer.i18n import tr as _

import DICOMPlusLib

from . import segmentationLabelmap, volumeGeometry


def exportVolume(
    database,
    volumeNode,
    studyUID,
    modality=None,
    seriesDescription=None,
    outputFolder=None,
    seriesNumber=None,
):
    """Write a scalar volume node as a new DICOM series in the local study ``studyUID`` (its
    stored header supplies the patient and study), index it; returns the ExportResult.
    ``seriesNumber`` None: one more than the study's largest."""
    from DICOMPlusLib.export import SeriesMetadata, export_volume_to_study

    array, ijkToLPS = volumeGeometry(volumeNode)
    metadata = SeriesMetadata(
        modality=modality,
        series_description=seriesDescription or volumeNode.GetName() or "DICOMPlus export",
        series_number=seriesNumber,
    )
    return export_volume_to_study(database, studyUID, array, ijkToLPS, metadata, out_dir=outputFolder)


def exportSegmentation(database, segmentationNode, referenceVolumeNode, seriesDescription=None):
    """Write a segmentation as DICOM SEG referencing the series ``referenceVolumeNode`` was
    loaded from (labels, colours), index it; returns the SegExportResult."""
    from DICOMPlusLib.export import export_segmentation_for_series

    sourceUID = referenceVolumeNode.GetAttribute("DICOMPlus.SeriesInstanceUID")
    if not sourceUID:
        raise DICOMPlusLib.ExportError(
            _("{name} was not loaded from the DICOMPlus database: a SEG needs its source series").format(
                name=referenceVolumeNode.GetName()
            )
        )
    labelmap, ijkToLPS, segments = segmentationLabelmap(segmentationNode, referenceVolumeNode)
    return export_segmentation_for_series(
        database,
        sourceUID,
        labelmap,
        ijkToLPS,
        segments,
        series_description=seriesDescription or segmentationNode.GetName() or "Segmentation",
    )


def _scratchFolder():
    return tempfile.mkdtemp(prefix="DICOMPlusBundle-", dir=slicer.app.temporaryPath)


def saveDataBundle(database, studyUID, description="Slicer Data Bundle"):
    """Save the whole scene (as an MRB, by the scene's own writer) into a Data Bundle in the
    local study ``studyUID``; returns the BundleInfo of the indexed bundle."""
    from DICOMPlusLib.bundle import save_bundle_to_study

    folder = _scratchFolder()
    mrb = os.path.join(folder, "scene.mrb")
    try:
        if not slicer.mrmlScene.WriteToMRB(mrb):
            raise DICOMPlusLib.BundleError(
                _("the scene could not be written as an MRB ({path})").format(path=mrb)
            )
        return save_bundle_to_study(database, studyUID, mrb, series_description=description)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def isDataBundleSeries(database, seriesUID):
    """True when the series holds a Slicer Data Bundle (ours or stock Slicer's)."""
    from DICOMPlusLib.bundle import is_bundle

    instances = database.instances(seriesUID)
    return len(instances) == 1 and is_bundle(instances[0].path)


def loadDataBundle(database, bundle, replace=False):
    """Load a Data Bundle (a file path, or the SOPInstanceUID of a stored one) into the scene:
    added to it, or replacing it with ``replace``. Returns True."""
    from DICOMPlusLib.bundle import extract_bundle

    path = str(bundle)
    if not os.path.exists(path):
        path = database.instance(path).path
    folder = _scratchFolder()
    mrb = os.path.join(folder, "scene.mrb")
    try:
        extract_bundle(path, mrb)
        if not slicer.mrmlScene.ReadFromMRB(mrb, replace):
            raise DICOMPlusLib.BundleError(_("the scene in {path} could not be read").format(path=path))
        return True
    finally:
        shutil.rmtree(folder, ignore_errors=True)
