"""Enhanced multi-frame objects built here (shared and per-frame functional groups, frames stored
out of order, 4D by TemporalPositionIndex) load like the same images as classic files."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_loading_support import ds_str, edit, geometric_files, make

from DICOMPlusLib.loading import load_folder

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def _item(**values) -> Dataset:
    ds = Dataset()
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def write_enhanced(path, series_uid, study_uid, frames, positions, times, *, iop, spacing, slope, intercept):
    """An Enhanced MR object whose frames are stored in the given (arbitrary) order."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_MR
    meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = ENHANCED_MR, uid, "MR"
    ds.PatientID, ds.PatientName = "SYN001", "Synthetic^Patient"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, generate_uid()
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.NumberOfFrames = len(frames)
    shared = _item(
        PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=[ds_str(x) for x in iop])]),
        PixelMeasuresSequence=Sequence(
            [_item(PixelSpacing=[ds_str(x) for x in spacing], SliceThickness="2")]
        ),
        PixelValueTransformationSequence=Sequence(
            [_item(RescaleSlope=ds_str(slope), RescaleIntercept=ds_str(intercept), RescaleType="US")]
        ),
    )
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for position, time in zip(positions, (int(t) for t in times), strict=True):
        per_frame.append(
            _item(
                PlanePositionSequence=Sequence([_item(ImagePositionPatient=[ds_str(x) for x in position])]),
                FrameContentSequence=Sequence([_item(TemporalPositionIndex=time + 1, StackID="1")]),
            )
        )
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = frames.astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("times", [1, 3])
def test_enhanced_object_equals_the_classic_files(tmp_path, times):
    classic = []
    for t in range(times):
        part = make(
            tmp_path / "classic",
            n=4,
            modality="MR",
            slice_step=2.0,
            seed=t,
            row_cosine=(0.0, 1.0, 0.0),
            col_cosine=(0.0, 0.0, -1.0),
            series_uid=classic[0].series_uid if classic else None,
            study_uid=classic[0].study_uid if classic else None,
            file_names=[f"t{t}_{i}.dcm" for i in range(4)],
        )
        edit(
            geometric_files(part),
            lambda ds, k, t=t: (
                setattr(ds, "TemporalPositionIdentifier", t + 1),
                setattr(ds, "RescaleSlope", "0.5"),
                setattr(ds, "RescaleIntercept", "3"),
            ),
        )
        classic.append(part)
    (from_classic,) = load_folder(tmp_path / "classic")
    # the same frames in one enhanced object, stored in a scrambled order
    m = classic[0].ijk_to_lps
    positions = [m[:3, 3] + m[:3, 2] * k for k in range(4)]
    order = np.random.default_rng(7).permutation(4 * times)
    frames = np.stack([classic[i // 4].pixels[i % 4] for i in order])
    (tmp_path / "enhanced").mkdir()
    write_enhanced(
        tmp_path / "enhanced" / "mf.dcm",
        generate_uid(),
        generate_uid(),
        frames,
        [positions[i % 4] for i in order],
        [i // 4 for i in order],
        iop=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
        spacing=(0.7, 0.8),
        slope=0.5,
        intercept=3,
    )
    (from_enhanced,) = load_folder(tmp_path / "enhanced")
    assert from_enhanced.dims == from_classic.dims == ((32, 32, 4, times) if times > 1 else (32, 32, 4))
    assert from_enhanced.array.dtype == from_classic.array.dtype == np.float32
    assert np.array_equal(from_enhanced.array, from_classic.array)
    assert np.allclose(from_enhanced.ijk_to_lps, from_classic.ijk_to_lps, atol=1e-6)
    assert np.allclose(from_classic.ijk_to_lps, m, atol=1e-4)
    expected = np.stack([p.pixels * 0.5 + 3 for p in classic]).astype(np.float32)
    assert np.array_equal(from_enhanced.array, expected if times > 1 else expected[0])
    if times > 1:
        assert from_enhanced.time_axis == from_classic.time_axis == (1.0, 2.0, 3.0)
