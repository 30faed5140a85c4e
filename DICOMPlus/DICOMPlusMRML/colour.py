"""Colour volumes (RGB, YBR and palette images already converted by DICOMPlusLib) as vector
volume nodes, which Slicer displays in colour; a scalar volume node would show one channel.
Main thread only (MRML)."""

import slicer


def addColourVolumeNode(volume, name):
    """A vtkMRMLVectorVolumeNode holding ``volume`` (array ``[k, j, i, 3]``), placed by its
    IJK->RAS matrix, with DICOMPlus's attributes like a scalar volume node."""
    if volume.info.components != 3 or volume.array.ndim != 4:
        raise ValueError(f"{name}: not an RGB volume (components {volume.info.components})")
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, volume.array)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(volume.ijk_to_ras))
    node.CreateDefaultDisplayNodes()
    node.SetAttribute("DICOMPlus.Warnings", "\n".join(f"{w.code}: {w.message}" for w in volume.warnings))
    node.SetAttribute("DICOM.instanceUIDs", " ".join(dict.fromkeys(volume.sop_uids)))
    node.SetAttribute("DICOMPlus.SeriesInstanceUID", volume.series_uid)
    return node
