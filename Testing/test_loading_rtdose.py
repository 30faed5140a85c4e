"""RT Dose grids: frames placed by GridFrameOffsetVector (relative or absolute z, PS3.3
C.8.8.3.2), values scaled by DoseGridScaling. Expected positions are computed here from the
attributes the test writes."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_loading_support import assert_matrix

from DICOMPlusLib.cli import main
from DICOMPlusLib.loading import load, plan_folder
from DICOMPlusLib.loading.rtdose import RT_DOSE_STORAGE


def write_dose(
    path,
    offsets,
    *,
    position=(-40.0, -25.0, 12.5),
    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    rows=6,
    cols=5,
    scaling="0.001",
    frames=None,
):
    frames = len(offsets) if frames is None else frames
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_DOSE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = RT_DOSE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTDOSE"
    ds.PatientID = "DOSE"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = list(position)
    ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = [2.5, 4.0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, 32, 31, 0
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", "PLAN"
    if frames > 1 or offsets:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x3004000C
    if offsets:
        ds.GridFrameOffsetVector = list(offsets)
    ds.DoseGridScaling = scaling
    values = np.arange(frames * rows * cols, dtype=np.uint32).reshape(frames, rows, cols) * 7
    ds.PixelData = values.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return values * float(scaling)


def _one(folder):
    (info,) = plan_folder(folder)
    return info


def test_relative_offsets_place_every_frame(tmp_path):
    dose = write_dose(tmp_path / "d" / "dose.dcm", [0.0, 2.0, 4.0, 6.0])
    info = _one(tmp_path / "d")
    expected = np.array([[4.0, 0, 0, -40.0], [0, 2.5, 0, -25.0], [0, 0, 2.0, 12.5], [0, 0, 0, 1]])
    assert_matrix(info.ijk_to_lps, expected)
    assert "no_geometry" not in {w.code for w in info.warnings}
    volume = load(info)
    assert volume.array.dtype == np.float32
    assert np.allclose(volume.array, dose, rtol=1e-6)


def test_uneven_offsets_are_reported(tmp_path):
    write_dose(tmp_path / "d" / "dose.dcm", [0.0, 2.0, 4.0, 10.0])
    info = _one(tmp_path / "d")
    positions = np.array([f.position for f in info.frames])
    assert np.allclose(positions[:, 2], [12.5, 14.5, 16.5, 22.5])
    assert {"irregular_spacing", "missing_slices"} & {w.code for w in info.warnings}


@pytest.mark.parametrize(
    ("orientation", "z_step"),
    [
        ((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), 3.0),
        ((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0), -3.0),
    ],  # head first, feet first
)
def test_absolute_z_offsets_on_a_transverse_grid(tmp_path, orientation, z_step):
    # first offset = the first frame's z: the values are patient z coordinates
    offsets = [12.5 + z_step * k for k in range(4)]
    write_dose(tmp_path / "d" / "dose.dcm", offsets, orientation=orientation)
    info = _one(tmp_path / "d")
    positions = np.array([f.position for f in info.frames])
    assert sorted(positions[:, 2]) == sorted(offsets)
    assert np.allclose(positions[:, :2], [-40.0, -25.0])
    assert abs(info.ijk_to_lps[2, 2]) == pytest.approx(3.0)
    assert not {"dose_grid_offsets", "no_geometry"} & {w.code for w in info.warnings}


def test_unexplained_first_offset_is_relative_with_a_warning(tmp_path):
    oblique = (1.0, 0.0, 0.0, 0.0, 0.8, 0.6)
    write_dose(tmp_path / "d" / "dose.dcm", [5.0, 7.0, 9.0], orientation=oblique)
    info = _one(tmp_path / "d")
    normal = np.cross(oblique[:3], oblique[3:])
    assert np.allclose(info.ijk_to_lps[:3, 2], 2.0 * normal)
    assert np.allclose(info.ijk_to_lps[:3, 3], [-40.0, -25.0, 12.5])
    assert "dose_grid_offsets" in {w.code for w in info.warnings}


def test_offset_count_mismatch_is_not_placed(tmp_path):
    write_dose(tmp_path / "d" / "dose.dcm", [0.0, 2.0], frames=3)
    codes = {w.code for w in _one(tmp_path / "d").warnings}
    assert {"dose_grid_unplaced", "no_geometry"} <= codes


def test_single_frame_dose_is_scaled(tmp_path):
    dose = write_dose(tmp_path / "d" / "dose.dcm", [], frames=1, scaling="0.5")
    info = _one(tmp_path / "d")
    assert info.dims == (5, 6, 1)
    assert "no_geometry" not in {w.code for w in info.warnings}
    assert np.allclose(load(info).array, dose)


def test_convert_writes_dose_in_gray(tmp_path, capsys):
    dose = write_dose(tmp_path / "d" / "dose.dcm", [0.0, 3.0, 6.0])
    out = tmp_path / "dose.nii.gz"
    assert main(["convert", str(tmp_path / "d"), "--out", str(out)]) == 0
    capsys.readouterr()
    import SimpleITK as sitk

    image = sitk.ReadImage(str(out))
    assert np.allclose(sitk.GetArrayFromImage(image), dose, rtol=1e-6)
    assert image.GetSpacing() == pytest.approx((4.0, 2.5, 3.0))
    assert pydicom.dcmread(tmp_path / "d" / "dose.dcm").Modality == "RTDOSE"
