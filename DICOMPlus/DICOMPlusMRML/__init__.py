"""The MRML side of DICOMPlus: volumes from DICOMPlusLib into scene nodes and back.

Geometry stays in LPS inside DICOMPlusLib; the conversion to RAS (and back for export) happens
here, once. Loaded data gets subject hierarchy items with Slicer's own DICOM UID names and
attributes, so Slicer's DICOM export and other extensions recognise it. Main thread only (MRML).

A package, not a top-level .py file, so that Slicer does not take it for a module.
"""

import numpy as np
import slicer
import vtk
from slicer.i18n import tr as _

import DICOMPlusLib

__all__ = [
    "addVolumeNode",
    "placeInSubjectHierarchy",
    "segmentationLabelmap",
    "setDisplay",
    "volumeGeometry",
    "volumeName",
]


def volumeGeometry(volumeNode):
    """(array [k, j, i], IJK->LPS 4x4) of a scalar volume node: RAS to LPS, here, once."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    ijkToLPS = np.diag([-1.0, -1.0, 1.0, 1.0]) @ slicer.util.arrayFromVTKMatrix(matrix)
    parent = volumeNode.GetParentTransformNode()
    if parent is not None and not parent.IsTransformToWorldLinear():
        raise DICOMPlusLib.ExportError(
            _("{name} is under a non-linear transform: harden it before exporting").format(
                name=volumeNode.GetName()
            )
        )
    if parent is not None:
        toWorld = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(toWorld)
        ras = slicer.util.arrayFromVTKMatrix(toWorld) @ slicer.util.arrayFromVTKMatrix(matrix)
        ijkToLPS = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
    return slicer.util.arrayFromVolume(volumeNode), ijkToLPS


def volumeName(series, volume, index, count):
    """The node name of volume ``index`` of ``count`` of a series ("3: T1 axial [2]")."""
    if series is None:
        base = volume.info.label or volume.series_uid
    else:
        number = "" if series.SeriesNumber is None else f"{series.SeriesNumber}: "
        base = number + (series.SeriesDescription or series.Modality or _("Series"))
    if volume.info.localizer:
        base += " " + _("(localizer)")
    return base if count == 1 else f"{base} [{index + 1}]"


def addVolumeNode(volume, name):
    """A scalar volume node (or a sequence of them for 4D) holding ``volume``."""
    ijkToRAS = slicer.util.vtkMatrixFromArray(volume.ijk_to_ras)
    warningsText = "\n".join(f"{w.code}: {w.message}" for w in volume.warnings)
    if not volume.info.is_4d:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        slicer.util.updateVolumeFromArray(node, volume.array)
        node.SetIJKToRASMatrix(ijkToRAS)
        setDisplay(node, volume)
    else:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
        node.SetIndexName(volume.info.time_source or "time")
        node.SetIndexUnit(volume.info.time_unit or "")
        times = volume.time_axis or tuple(range(volume.array.shape[0]))
        for t, timePoint in enumerate(volume.time_points()):
            item = slicer.vtkMRMLScalarVolumeNode()
            item.SetName(f"{name} t={times[t]:g}")
            slicer.util.updateVolumeFromArray(item, timePoint.array)
            item.SetIJKToRASMatrix(ijkToRAS)
            node.SetDataNodeAtValue(item, f"{times[t]:g}")
        # created directly: a bare MRML scene has no factory for it until the Sequences module
        # registers one (Slicer does at start-up)
        browser = slicer.vtkMRMLSequenceBrowserNode()
        browser.SetName(name + " browser")
        slicer.mrmlScene.AddNode(browser)
        browser.SetAndObserveMasterSequenceNodeID(node.GetID())
    node.SetAttribute("DICOMPlus.Warnings", warningsText)
    node.SetAttribute("DICOM.instanceUIDs", " ".join(volume.sop_uids))
    node.SetAttribute("DICOMPlus.SeriesInstanceUID", volume.series_uid)
    return node


def setDisplay(node, volume):
    """Display nodes, with the window of the tags when there is one."""
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is None or volume.info.window is None:
        return
    center, width = volume.info.window
    display.AutoWindowLevelOff()
    display.SetWindowLevel(width, center)


def placeInSubjectHierarchy(node, volume, study, series):
    """Patient -> study -> series items with Slicer's own DICOM UID names and attributes, so
    Slicer's DICOM export and other extensions recognise the loaded data."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    C = slicer.vtkMRMLSubjectHierarchyConstants
    uidName = C.GetDICOMUIDName()
    parent = sh.GetSceneItemID()
    if study is not None:
        patientItem = sh.GetItemByUID(uidName, study.PatientID)
        if not patientItem:
            patientItem = sh.CreateSubjectItem(sh.GetSceneItemID(), study.PatientName or study.PatientID)
            sh.SetItemUID(patientItem, uidName, study.PatientID)
            for attribute, value in (
                (C.GetDICOMPatientIDAttributeName(), study.PatientID),
                (C.GetDICOMPatientNameAttributeName(), study.PatientName),
                (C.GetDICOMPatientBirthDateAttributeName(), study.PatientBirthDate),
                (C.GetDICOMPatientSexAttributeName(), study.PatientSex),
            ):
                sh.SetItemAttribute(patientItem, attribute, value or "")
        studyItem = sh.GetItemByUID(uidName, study.StudyInstanceUID)
        if not studyItem:
            studyItem = sh.CreateStudyItem(patientItem, study.StudyDescription or _("Study"))
            sh.SetItemUID(studyItem, uidName, study.StudyInstanceUID)
            for attribute, value in (
                (C.GetDICOMStudyInstanceUIDAttributeName(), study.StudyInstanceUID),
                (C.GetDICOMStudyIDAttributeName(), study.StudyID),
                (C.GetDICOMStudyDateAttributeName(), study.StudyDate),
                (C.GetDICOMStudyTimeAttributeName(), study.StudyTime),
                (C.GetDICOMStudyDescriptionAttributeName(), study.StudyDescription),
            ):
                sh.SetItemAttribute(studyItem, attribute, value or "")
        parent = studyItem
    seriesItem = sh.GetItemByDataNode(node) or sh.CreateItem(parent, node)
    sh.SetItemParent(seriesItem, parent)
    sh.SetItemUID(seriesItem, uidName, volume.series_uid)
    sh.SetItemUID(seriesItem, C.GetDICOMInstanceUIDName(), " ".join(volume.sop_uids))
    if series is not None:
        sh.SetItemAttribute(seriesItem, C.GetDICOMSeriesModalityAttributeName(), series.Modality or "")
        sh.SetItemAttribute(
            seriesItem,
            C.GetDICOMSeriesNumberAttributeName(),
            "" if series.SeriesNumber is None else str(series.SeriesNumber),
        )
    return seriesItem


def segmentationLabelmap(segmentationNode, referenceVolumeNode):
    """(labelmap [k, j, i], IJK->LPS, [SegmentInfo]) of a segmentation on the geometry of
    ``referenceVolumeNode``: segment n has value n + 1, its name and its colour. A temporary
    labelmap node is used and removed."""
    from DICOMPlusLib.export import SegmentInfo

    segmentation = segmentationNode.GetSegmentation()
    segmentIDs = vtk.vtkStringArray()
    segments = []
    for index in range(segmentation.GetNumberOfSegments()):
        segmentID = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segmentID)
        segmentIDs.InsertNextValue(segmentID)
        color = tuple(round(255 * c) for c in segment.GetColor())
        segments.append(SegmentInfo(value=index + 1, label=segment.GetName(), color=color))
    labelmapNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "DICOMPlusSegExport")
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentationNode, segmentIDs, labelmapNode, referenceVolumeNode
        ):
            raise DICOMPlusLib.ExportError(_("the segments could not be turned into a labelmap"))
        labelmap, ijkToLPS = volumeGeometry(labelmapNode)
        return labelmap.copy(), ijkToLPS, segments
    finally:
        slicer.mrmlScene.RemoveNode(labelmapNode)


from DICOMPlusMRML.colour import addColourVolumeNode  # noqa: E402
from DICOMPlusMRML.dispatch import addNodeForVolume  # noqa: E402
from DICOMPlusMRML.plugins import examineWithSlicerPlugins, loadWithSlicerPlugins  # noqa: E402
from DICOMPlusMRML.segmentations import addSegmentationNode, findSeriesNode  # noqa: E402

__all__ += [
    "addColourVolumeNode",
    "addNodeForVolume",
    "addSegmentationNode",
    "examineWithSlicerPlugins",
    "findSeriesNode",
    "loadWithSlicerPlugins",
]
