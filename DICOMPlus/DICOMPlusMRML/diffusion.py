"""A diffusion series as Slicer's diffusion-weighted volume node (vtkMRMLDiffusionWeightedVolumeNode).

The node holds one voxel component per diffusion volume, one b-value and one unit gradient per
component (zeros for b=0), and the measurement frame, the matrix that takes gradient
coordinates to RAS. DICOMPlusLib gives gradients in LPS (PS3.3 C.8.13.5.9, the patient
coordinate system), so they are stored as they are, with the LPS->RAS matrix as the measurement
frame: Slicer's NRRD storage and diffusion modules (SlicerDMRI) apply it.
"""

import numpy as np
import slicer

import DICOMPlusLib

#: Gradient coordinates (LPS) to RAS.
LPS_TO_RAS_3 = np.diag([-1.0, -1.0, 1.0])


def isDiffusion(volume):
    """Whether a loaded DICOMPlusLib volume carries diffusion encodings (one per time point)."""
    info = volume.info
    return info.bvals is not None and info.gradients_lps is not None and info.is_4d


def addDiffusionWeightedVolumeNode(volume, name):
    """A vtkMRMLDiffusionWeightedVolumeNode holding a 4D diffusion ``volume`` (array [t, k, j, i])."""
    if not isDiffusion(volume):
        raise DICOMPlusLib.LoadError(f"{name}: not a diffusion series (no b-values per volume)")
    info = volume.info
    count = len(info.bvals)
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLDiffusionWeightedVolumeNode", name)
    voxels = np.ascontiguousarray(np.moveaxis(volume.array, 0, -1))  # [k, j, i, t]
    slicer.util.updateVolumeFromArray(node, voxels)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(volume.ijk_to_ras))
    node.SetNumberOfGradients(count)
    for index, (b, gradient) in enumerate(zip(info.bvals, info.gradients_lps, strict=True)):
        node.SetBValue(index, float(b))
        node.SetDiffusionGradient(index, [float(x) for x in gradient])
    frame = np.eye(4)
    frame[:3, :3] = LPS_TO_RAS_3
    node.SetMeasurementFrameMatrix(slicer.util.vtkMatrixFromArray(frame))
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None and hasattr(display, "SetDiffusionComponent"):
        baseline = int(np.argmin(info.bvals))
        display.SetDiffusionComponent(baseline)
    node.SetAttribute("DICOMPlus.Warnings", "\n".join(f"{w.code}: {w.message}" for w in volume.warnings))
    node.SetAttribute("DICOM.instanceUIDs", " ".join(dict.fromkeys(volume.sop_uids)))
    node.SetAttribute("DICOMPlus.SeriesInstanceUID", volume.series_uid)
    return node


def gradientsRAS(node):
    """(b-values, unit gradients in RAS) of a diffusion-weighted volume node, through its
    measurement frame (for checks and for callers that want RAS)."""
    import vtk

    count = node.GetNumberOfGradients()
    frame = vtk.vtkMatrix4x4()
    node.GetMeasurementFrameMatrix(frame)
    m = slicer.util.arrayFromVTKMatrix(frame)[:3, :3]
    gradients = np.array([node.GetDiffusionGradient(i) for i in range(count)], float).reshape(count, 3)
    bvals = np.array([node.GetBValue(i) for i in range(count)], float)
    return bvals, gradients @ m.T
