"""A loaded DICOM SEG as a segmentation node: one segment per SEG segment, with its label, its
colour and its coded category and type, referencing the volume it segments.

DICOMPlusLib reads the SEG (``DICOMPlusLib.loading.seg``) in LPS; the masks are handed to MRML
here with the volume's IJK->RAS matrix. Every segment is added whole from its own mask, so
segments that overlap in the SEG overlap in the node too (a labelmap could not keep that).
Main thread only (MRML).
"""

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

#: Colours for segments whose SEG gives none (Slicer's first generic anatomy colours).
DEFAULT_COLORS = (
    (128, 174, 128),
    (241, 214, 145),
    (177, 122, 101),
    (111, 184, 210),
    (216, 101, 79),
    (221, 130, 101),
    (144, 238, 144),
    (192, 104, 88),
)

#: Slicer's terminology context for DICOM codes (Modules/Loadable/Terminologies).
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


def findSeriesNode(seriesInstanceUID, scene=None):
    """The node DICOMPlus loaded from ``seriesInstanceUID`` (its ``DICOMPlus.SeriesInstanceUID``
    attribute), else one Slicer's own DICOM module loaded (subject hierarchy DICOM UID), else None."""
    scene = scene or slicer.mrmlScene
    if not seriesInstanceUID:
        return None
    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if node.GetAttribute("DICOMPlus.SeriesInstanceUID") == seriesInstanceUID:
            return node
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.GetItemByUID(slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName(), seriesInstanceUID)
    node = sh.GetItemDataNode(item) if item else None
    return node if node is not None and node.IsA("vtkMRMLScalarVolumeNode") else None


def _terminology(segment):
    """Slicer's terminology entry string for a segment's DICOM codes ("" without codes)."""
    if not segment.category or not segment.property_type:
        return ""

    def code(c):
        value, scheme, meaning = c
        return f"{scheme}^{value}^{meaning}"

    return "~".join(
        [
            TERMINOLOGY_CONTEXT,
            code(segment.category),
            code(segment.property_type),
            "^^",
            ANATOMIC_CONTEXT,
            "^^",
            "^^",
        ]
    )


def _orientedImage(mask, ijkToRAS):
    """A vtkOrientedImageData holding ``mask`` ([k, j, i], bool) on the grid ``ijkToRAS``,
    cropped to the mask's bounding box (its extent, same grid): a small segment of a large SEG
    costs what it covers."""
    image = slicer.vtkOrientedImageData()
    image.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(ijkToRAS))
    filled = np.argwhere(mask)
    if filled.size:
        (k0, j0, i0), (k1, j1, i1) = filled.min(axis=0), filled.max(axis=0)
    else:
        k0 = j0 = i0 = k1 = j1 = i1 = 0
    image.SetExtent(int(i0), int(i1), int(j0), int(j1), int(k0), int(k1))
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    shape = (k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
    voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)
    voxels[:] = mask[k0 : k1 + 1, j0 : j1 + 1, i0 : i1 + 1]
    image.Modified()
    return image


def _segmentMasks(volume, layout, readFromFiles):
    """Each segment's mask: from the loaded labelmap when no voxel belongs to two segments (no
    file is read in Slicer's process), else read whole from the SEG (overlaps kept)."""
    if layout.overlap_voxels:
        yield from readFromFiles(volume.info)
        return
    labels = np.asarray(volume.array)
    for segment in layout.segments:
        yield segment, labels == segment.number


def addSegmentationNode(volume, name, sourceVolumeNode=None):
    """A vtkMRMLSegmentationNode for a loaded SEG ``volume`` (``DICOMPlusLib.loading.load`` of a
    SEG): segments numbered, named and coloured as in the SEG, DICOM codes as terminology tags,
    geometry referencing ``sourceVolumeNode`` (by default the loaded node of the SEG's referenced
    series, when there is one). Segments are taken one at a time from the labelmap (from the SEG
    file when they overlap) and kept cropped; those that do not overlap then share labelmap
    layers, as Slicer's own segmentations do."""
    from DICOMPlusLib.loading.seg import iter_segment_masks, layout_of

    layout = layout_of(volume.info)
    if layout is None:
        raise ValueError(f"{name}: not a segmentation")
    if sourceVolumeNode is None:
        sourceVolumeNode = findSeriesNode(layout.referenced_series_uid)
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    if sourceVolumeNode is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(sourceVolumeNode)
    ijkToRAS = volume.ijk_to_ras
    segmentation = node.GetSegmentation()
    for index, (segment, mask) in enumerate(_segmentMasks(volume, layout, iter_segment_masks)):
        rgb = segment.color or DEFAULT_COLORS[index % len(DEFAULT_COLORS)]
        color = [c / 255.0 for c in rgb]
        segmentID = f"segment_{segment.number}"
        node.AddSegmentFromBinaryLabelmapRepresentation(
            _orientedImage(mask, ijkToRAS), segment.label or segmentID, color, segmentID
        )
        added = segmentation.GetSegment(segmentID)
        added.SetTag("DICOMPlus.SegmentNumber", str(segment.number))
        terminology = _terminology(segment)
        if terminology:
            added.SetTag(added.GetTerminologyEntryTagName(), terminology)
    segmentation.CollapseBinaryLabelmaps(False)
    node.SetAttribute("DICOMPlus.SeriesInstanceUID", volume.series_uid)
    node.SetAttribute("DICOMPlus.ReferencedSeriesInstanceUID", layout.referenced_series_uid)
    node.SetAttribute("DICOM.instanceUIDs", " ".join(dict.fromkeys(volume.sop_uids)))
    node.SetAttribute("DICOMPlus.Warnings", "\n".join(f"{w.code}: {w.message}" for w in volume.warnings))
    return node
