"""One entry point from a loaded DICOMPlusLib volume to the right kind of node."""

from DICOMPlusMRML.colour import addColourVolumeNode
from DICOMPlusMRML.segmentations import addSegmentationNode


def addNodeForVolume(volume, name, addScalarVolumeNode):
    """A segmentation node for a SEG (referencing its loaded source volume), a vector volume
    node for colour, else ``addScalarVolumeNode(volume, name)`` (DICOMPlusMRML.addVolumeNode)."""
    from DICOMPlusLib.loading.seg import layout_of

    if layout_of(volume.info) is not None:
        return addSegmentationNode(volume, name)
    if volume.info.components == 3 and volume.array.ndim == 4:
        return addColourVolumeNode(volume, name)
    return addScalarVolumeNode(volume, name)
