"""One entry point from a loaded DICOMPlusLib volume to the right kind of node."""

from DICOMPlusMRML.colour import addColourVolumeNode
from DICOMPlusMRML.segmentations import addSegmentationNode


def addNodeForVolume(volume, name, addScalarVolumeNode, asDWI=True):
    """A segmentation node for a SEG (referencing its loaded source volume), a diffusion-weighted
    volume node for a DWI series (unless ``asDWI`` is False), a vector volume node for colour,
    else ``addScalarVolumeNode(volume, name)`` (DICOMPlusMRML.addVolumeNode)."""
    from DICOMPlusLib.loading.seg import layout_of
    from DICOMPlusMRML.diffusion import addDiffusionWeightedVolumeNode, isDiffusion

    if asDWI and isDiffusion(volume):
        return addDiffusionWeightedVolumeNode(volume, name)
    if layout_of(volume.info) is not None:
        return addSegmentationNode(volume, name)
    if volume.info.components == 3 and volume.array.ndim == 4:
        return addColourVolumeNode(volume, name)
    return addScalarVolumeNode(volume, name)
