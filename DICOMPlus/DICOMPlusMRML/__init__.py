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

from . import diffusion  # DWI series as diffusion-weighted volume nodes

__all__ = [
    "addVolumeNode",
    "diffusion",
    "exportSegmentation",
    "exportVolume",
    "fileValue",
    "isDataBundleSeries",
    "loadDataBundle",
    "placeInSubjectHierarchy",
    "saveDataBundle",
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


# Series attributes stock Slicer's DICOMPlugin.addSeriesInSubjectHierarchy writes ("DICOM." +
# keyword), read from the first file of the series (Slicer 5.12 DICOMLib/DICOMPlugin.py).
SERIES_ATTRIBUTE_KEYWORDS = (
    "Modality",
    "SeriesNumber",
    "FrameOfReferenceUID",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "ContentDate",
    "ContentTime",
    "Manufacturer",
    "Model",
)
# Slicer's keyword for ManufacturerModelName (0008,1090)
_KEYWORD_OF_ATTRIBUTE = {"Model": "ManufacturerModelName"}
# qSlicerSubjectHierarchyPluginHandler's defaults for what goes into patient and study item names
# (patient ID, patient birth date, study ID, study date), used where that class is absent.
_DEFAULT_NAME_FLAGS = (True, False, False, True)


def fileValue(dataset, keyword):
    """The value of ``keyword`` in a header as Slicer's ``dicomDatabase.fileValue`` gives it: the
    stored text (backslash-joined when multi-valued), "" when absent or empty."""
    element = dataset.data_element(keyword) if dataset is not None and keyword in dataset else None
    if element is None or element.value is None or element.value == "":
        return ""
    if element.VM > 1:
        return "\\".join(str(v) for v in element.value)
    return str(element.value)


def _firstHeader(volume):
    """The header of the volume's first file (Slicer reads ``loadable.files[0]``), or None."""
    import pydicom

    try:
        return pydicom.dcmread(volume.info.frames[0].path, stop_before_pixels=True)
    except (OSError, IndexError, pydicom.errors.InvalidDicomError):
        return None


def _recordsAsHeader(study, series):
    """A stand-in header from the database records, when no file can be read."""
    import pydicom

    dataset = pydicom.Dataset()
    for record in (study, series):
        if record is None:
            continue
        for keyword, value in record.to_dict().items():
            if keyword in pydicom.datadict.keyword_dict and value not in (None, ""):
                setattr(dataset, keyword, value)
    return dataset


def _itemNameFlags():
    handlerClass = getattr(slicer, "qSlicerSubjectHierarchyPluginHandler", None)
    if handlerClass is None:
        return _DEFAULT_NAME_FLAGS
    handler = handlerClass.instance()
    return tuple(
        bool(getattr(handler, f"display{what}InSubjectHierarchyItemName"))
        for what in ("PatientID", "PatientBirthDate", "StudyID", "StudyDate")
    )


def placeInSubjectHierarchy(node, volume, study=None, series=None, header=None):
    """Patient -> study -> series items exactly as stock Slicer's DICOM plugins make them
    (``DICOMPlugin.addSeriesInSubjectHierarchy``): the same UIDs, attributes and item names, so
    Slicer's "Export to DICOM" keeps the series description, the study and the Frame of Reference.

    ``header`` is the stored header (a pydicom Dataset) of the volume's first instance, e.g.
    ``database.header(volume.sop_uids[0])``; without it the first file is read, and if that
    fails the ``study`` and ``series`` records stand in (no Frame of Reference then). As in
    Slicer, patient and study attributes are written only when this call creates those items.
    """
    if header is None:
        header = _firstHeader(volume)
    if header is None:
        header = _recordsAsHeader(study, series)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    C = slicer.vtkMRMLSubjectHierarchyConstants
    uidName = C.GetDICOMUIDName()
    prefix = C.GetDICOMAttributePrefix()

    seriesItem = sh.GetItemByDataNode(node) or sh.CreateItem(sh.GetSceneItemID(), node)
    seriesUID = fileValue(header, "SeriesInstanceUID") or volume.series_uid
    sh.SetItemUID(seriesItem, uidName, seriesUID)
    for attribute in SERIES_ATTRIBUTE_KEYWORDS:
        value = fileValue(header, _KEYWORD_OF_ATTRIBUTE.get(attribute, attribute))
        sh.SetItemAttribute(seriesItem, prefix + attribute, value)
    # one UID per file, in the order of the volume's slices (multi-frame: one file, one UID)
    instanceUIDs = dict.fromkeys(uid or "Unknown" for uid in volume.sop_uids)
    sh.SetItemUID(seriesItem, C.GetDICOMInstanceUIDName(), " ".join(instanceUIDs))
    sh.SetItemAttribute(seriesItem, C.GetDICOMReferencedInstanceUIDsAttributeName(), "")

    studyUID = fileValue(header, "StudyInstanceUID")
    patientID = fileValue(header, "PatientID") or "Patient-" + studyUID
    newPatient = not sh.GetItemByUID(uidName, patientID)
    newStudy = not sh.GetItemByUID(uidName, studyUID)
    slicer.vtkSlicerSubjectHierarchyModuleLogic.InsertDicomSeriesInHierarchy(
        sh, patientID, studyUID, seriesUID
    )
    showPatientID, showBirthDate, showStudyID, showStudyDate = _itemNameFlags()

    patientItem = sh.GetItemByUID(uidName, patientID)
    if newPatient and patientItem:
        name = fileValue(header, "PatientName") or "No name"
        birthDate = fileValue(header, "PatientBirthDate")
        for attribute, value in (
            (C.GetDICOMPatientNameAttributeName(), name),
            (C.GetDICOMPatientIDAttributeName(), patientID),
            (C.GetDICOMPatientSexAttributeName(), fileValue(header, "PatientSex")),
            (C.GetDICOMPatientBirthDateAttributeName(), birthDate),
            (C.GetDICOMPatientCommentsAttributeName(), fileValue(header, "PatientComments")),
        ):
            sh.SetItemAttribute(patientItem, attribute, value)
        if showPatientID:
            name += f" ({patientID})"
        if showBirthDate and birthDate:
            name += f" ({birthDate})"
        sh.SetItemName(patientItem, name)

    studyItem = sh.GetItemByUID(uidName, studyUID)
    if newStudy and studyItem:
        description = fileValue(header, "StudyDescription") or "No study description"
        studyID = fileValue(header, "StudyID")
        studyDate = fileValue(header, "StudyDate")
        for attribute, value in (
            (C.GetDICOMStudyDescriptionAttributeName(), description),
            (C.GetDICOMStudyInstanceUIDAttributeName(), studyUID),
            (C.GetDICOMStudyIDAttributeName(), studyID),
            (C.GetDICOMStudyDateAttributeName(), studyDate),
            (C.GetDICOMStudyTimeAttributeName(), fileValue(header, "StudyTime")),
        ):
            sh.SetItemAttribute(studyItem, attribute, value)
        name = description
        if showStudyID:
            name += f" ({studyID})"
        if showStudyDate and studyDate:
            name += f" ({studyDate})"
        sh.SetItemName(studyItem, name)
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


# After the names they use are defined: scene <-> database exchange (export, Data Bundle), and
# the nodes for SEG, colour and objects left to Slicer's plugins.
from .colour import addColourVolumeNode  # noqa: E402
from .dispatch import addNodeForVolume  # noqa: E402
from .exchange import (  # noqa: E402
    exportSegmentation,
    exportVolume,
    isDataBundleSeries,
    loadDataBundle,
    saveDataBundle,
)
from .plugins import examineWithSlicerPlugins, loadWithSlicerPlugins  # noqa: E402
from .scene import addLoadedSeries  # noqa: E402
from .segmentations import addSegmentationNode, findSeriesNode  # noqa: E402

__all__ += [
    "addColourVolumeNode",
    "addLoadedSeries",
    "addNodeForVolume",
    "addSegmentationNode",
    "examineWithSlicerPlugins",
    "findSeriesNode",
    "loadWithSlicerPlugins",
]
