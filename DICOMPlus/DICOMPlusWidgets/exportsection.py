"""The Export section of the DICOMPlus panel: a volume into the selected study, a segmentation as
DICOM SEG beside the series it was drawn on, the scene as a Data Bundle. The widgets are the .ui's (``exportVolumeSelector``, ``exportModalityCombo``,
``exportDescriptionEdit``, ``exportSeriesNumberSpinBox``, ``exportButton``, ``saveBundleButton``);
this class reads them, calls the panel's Logic and says what happened in the panel."""

import slicer
from slicer.i18n import tr as _

import DICOMPlusLib


class ExportSection:
    """``panel`` is the DICOMPlusWidget (its ``ui``, ``logic``, ``activity``, ``showMessages``,
    ``selectedStudyUID`` and ``refreshBrowser``)."""

    def __init__(self, panel):
        self.panel = panel
        ui = panel.ui
        ui.exportVolumeSelector.setMRMLScene(slicer.mrmlScene)
        ui.exportVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onVolumeChanged)

    def export(self):
        """Export the chosen volume as a new series of the selected study (the ExportResult), or
        the chosen segmentation as DICOM SEG (:meth:`exportSegmentation`)."""
        panel, ui = self.panel, self.panel.ui
        node, studyUID = ui.exportVolumeSelector.currentNode(), panel.selectedStudyUID()
        if node is not None and node.IsA("vtkMRMLSegmentationNode"):
            return self.exportSegmentation(node)
        if node is None or studyUID is None:
            panel.showMessages(
                [_("Choose a volume, and select a study (or one of its series) in the browser.")]
            )
            return None
        modality = ui.exportModalityCombo.currentText
        description = ui.exportDescriptionEdit.text.strip() or self.defaultDescription(node)
        number = ui.exportSeriesNumberSpinBox.value or None  # 0 shows "Next"
        result = self._try(
            lambda: panel.logic.exportVolume(
                node, studyUID, modality=modality, seriesDescription=description, seriesNumber=number
            )
        )
        if result is not None:
            panel.activity.setStatus(
                (
                    _("Exported {name} as {count} file into the study")
                    if len(result.files) == 1
                    else _("Exported {name} as {count} files into the study")
                ).format(name=node.GetName(), count=len(result.files))
            )
            panel.refreshBrowser()
        return result

    def exportSegmentation(self, node):
        """Write ``node`` as DICOM SEG referencing the series of the volume it was drawn on (its
        reference geometry, as the Segment Editor sets it), into that series' study: the
        SegExportResult. The Python console had this (logic.exportSegmentation); the panel did
        not list segmentations at all."""
        panel = self.panel
        role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
        reference = node.GetNodeReference(role)
        if reference is None or not reference.IsA("vtkMRMLScalarVolumeNode"):
            panel.showMessages(
                [
                    _(
                        "{name} has no volume it was drawn on: choose its source volume in the "
                        "Segment Editor, then export again."
                    ).format(name=node.GetName())
                ]
            )
            return None
        description = panel.ui.exportDescriptionEdit.text.strip() or self.defaultDescription(node)
        result = self._try(lambda: panel.logic.exportSegmentation(node, reference, description))
        if result is not None:
            panel.activity.setStatus(
                _("Exported {name} as DICOM SEG beside {volume}").format(
                    name=node.GetName(), volume=reference.GetName()
                )
            )
            panel.refreshBrowser()
        return result

    def saveBundle(self):
        """Save the scene as a Data Bundle into the selected study; the BundleInfo."""
        panel = self.panel
        studyUID = panel.selectedStudyUID()
        if studyUID is None:
            panel.showMessages([_("Select a study (or one of its series) in the browser first.")])
            return None
        info = self._try(lambda: panel.logic.saveDataBundle(studyUID))
        if info is not None:
            panel.activity.setStatus(_("Saved the scene as a Data Bundle into the study"))
            panel.refreshBrowser()
        return info

    def onVolumeChanged(self, node):
        ui = self.panel.ui
        ui.exportDescriptionEdit.text = self.defaultDescription(node) if node else ""
        volume = node is None or not node.IsA("vtkMRMLSegmentationNode")  # a SEG: its own modality
        ui.exportModalityCombo.enabled = ui.exportSeriesNumberSpinBox.enabled = volume

    def defaultDescription(self, node):
        """The description of the series the volume or segmentation was loaded from (not its
        node name, which starts with the old series number: "900: SEG"), else the node name."""
        uid = node.GetAttribute("DICOMPlus.SeriesInstanceUID")
        records = self.panel.logic.search("series", {"SeriesInstanceUID": uid}) if uid else []
        if records and records[0].SeriesDescription:
            return records[0].SeriesDescription
        if node.IsA("vtkMRMLSegmentationNode"):
            return node.GetName() or _("Segmentation")
        return node.GetName() or _("Exported volume")

    def _try(self, func):
        """``func()``, or None with the library's message shown in the panel."""
        try:
            return func()
        except DICOMPlusLib.DICOMPlusError as error:
            self.panel.showMessages([str(error)])
            return None
