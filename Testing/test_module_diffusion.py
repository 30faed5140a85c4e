"""A DWI series becomes a diffusion-weighted volume node under the harness (real MRML): voxels,
IJK->RAS, b-values, gradients and measurement frame, checked against the series2 manifest
(dcm2niix's values)."""

from __future__ import annotations

import numpy as np
import pytest
from test_loading_series2 import ENTRIES, SERIES2


def _volume(sid):
    from DICOMPlusLib.loading import load, plan_folder

    if sid not in ENTRIES:
        pytest.skip(f"shared data {SERIES2} missing")
    (info,) = plan_folder(SERIES2 / ENTRIES[sid]["folder"])
    return load(info), ENTRIES[sid]["expected"]


@pytest.mark.parametrize("sid", ["dev_mr_dwi_siemens_classic", "dev_mr_dwi_philips_classic"])
def test_dwi_series_becomes_a_diffusion_weighted_volume_node(dicomplus_module, sid):
    import slicer
    import vtk
    from DICOMPlusMRML.diffusion import addDiffusionWeightedVolumeNode, gradientsRAS

    volume, expected = _volume(sid)
    node = addDiffusionWeightedVolumeNode(volume, "dwi")
    assert node.IsA("vtkMRMLDiffusionWeightedVolumeNode")
    i, j, k, t = expected["dims"]
    image = node.GetImageData()
    assert image.GetDimensions() == (i, j, k) and image.GetNumberOfScalarComponents() == t
    voxels = slicer.util.arrayFromVolume(node)  # [k, j, i, t]
    assert np.array_equal(voxels[..., t - 1], volume.array[t - 1])
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    assert np.allclose(slicer.util.arrayFromVTKMatrix(matrix), expected["ijk_to_ras"], atol=1e-3)

    bvals, ras = gradientsRAS(node)
    assert np.allclose(bvals, expected["bvals"], rtol=1e-4, atol=1e-3)
    for b, got, want in zip(bvals, ras, expected["gradients_lps"], strict=True):
        want_ras = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(want)
        if b <= 5:
            assert np.allclose(got, 0.0)
        else:
            assert min(np.abs(got - want_ras).max(), np.abs(got + want_ras).max()) < 2e-3

    frame = vtk.vtkMatrix4x4()
    node.GetMeasurementFrameMatrix(frame)
    assert np.allclose(slicer.util.arrayFromVTKMatrix(frame)[:3, :3], np.diag([-1.0, -1.0, 1.0]))
    assert node.GetDisplayNode() is not None


def test_non_diffusion_volume_is_refused(dicomplus_module):
    from DICOMPlusMRML.diffusion import addDiffusionWeightedVolumeNode, isDiffusion

    import DICOMPlusLib

    volume, _ = _volume("dev_mr_mosaic_siemens")
    assert not isDiffusion(volume)
    with pytest.raises(DICOMPlusLib.LoadError, match="not a diffusion series"):
        addDiffusionWeightedVolumeNode(volume, "bold")


def test_convert_nrrd_reads_as_a_dwi_in_slicer(dicomplus_module, tmp_path):
    """``convert --out x.nrrd`` of a DWI series writes the DWMRI NRRD that Slicer's own NRRD
    storage node reads as a diffusion-weighted volume with the same b-values and gradients."""
    import slicer
    import vtk
    from DICOMPlusMRML.diffusion import gradientsRAS

    from DICOMPlusLib.cli import main

    sid = "dev_mr_dwi_philips_classic"
    volume, expected = _volume(sid)
    out = tmp_path / "dwi.nrrd"
    assert main(["convert", str(SERIES2 / ENTRIES[sid]["folder"]), "--out", str(out), "--no-sidecar"]) == 0
    node = slicer.vtkMRMLDiffusionWeightedVolumeNode()
    slicer.mrmlScene.AddNode(node)
    storage = slicer.vtkMRMLNRRDStorageNode()
    storage.SetFileName(str(out))
    assert storage.ReadData(node)
    assert node.GetNumberOfGradients() == expected["dims"][3]
    bvals, ras = gradientsRAS(node)
    assert np.allclose(bvals, expected["bvals"], rtol=1e-4, atol=1e-2)
    for b, got, want in zip(bvals, ras, expected["gradients_lps"], strict=True):
        want_ras = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(want)
        if b > 5:
            assert min(np.abs(got - want_ras).max(), np.abs(got + want_ras).max()) < 2e-3
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    assert np.allclose(slicer.util.arrayFromVTKMatrix(matrix), expected["ijk_to_ras"], atol=1e-3)
    voxels = slicer.util.arrayFromVolume(node)  # [k, j, i, t]
    assert np.allclose(voxels[..., 5], volume.array[5], rtol=1e-5, atol=1e-3)


def test_the_panel_loads_a_dwi_series_as_a_dwi_node_unless_told_otherwise(dicomplus_module, tmp_path):
    """Through the Logic and the engine, as a user loads it; the setting
    DICOMPlus/LoadDiffusionAsDWI=false gives the plain 4D sequence instead."""
    import qt

    entry = ENTRIES["dev_mr_dwi_siemens_classic"]
    logic = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db" / "dicomplus.sqlite")
    assert logic.importFolder([str(SERIES2 / entry["folder"])]).get(120).added > 0
    [series] = logic.search("series")
    [node] = logic.loadSeries(series.SeriesInstanceUID)
    assert node.IsA("vtkMRMLDiffusionWeightedVolumeNode")
    assert node.GetNumberOfGradients() == entry["expected"]["dims"][3]
    qt.QSettings().setValue("DICOMPlus/LoadDiffusionAsDWI", False)
    [plain] = logic.loadSeries(series.SeriesInstanceUID)
    assert plain.IsA("vtkMRMLSequenceNode")
