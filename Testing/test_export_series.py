"""Scalar volume export: geometry, rescale, modules, round trips, validators.

The oracle that reads exported files back is written here with pydicom and numpy only (sort by
position along the normal, stack, apply the rescale, rebuild the matrix from the header), so it
does not share code with the exporter; the round trip through DICOMPlusLib.loading is a second,
separate reader, and highdicom a third for the multi-frame secondary capture.
"""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database
from DICOMPlusLib.errors import CancelledError, ExportError
from DICOMPlusLib.export.series import SeriesMetadata, export_volume, export_volume_to_study
from DICOMPlusLib.jobs import CancelToken

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
MF_SC_WORD = "1.2.840.10008.5.1.4.1.1.7.3"


# ----------------------------------------------------------------------------------------------
# The independent oracle
# ----------------------------------------------------------------------------------------------


def oracle_read(files) -> tuple[np.ndarray, np.ndarray, list[Dataset]]:
    """(values [k, j, i] float64, ijk_to_lps, datasets) read with pydicom alone."""
    dss = [pydicom.dcmread(f) for f in files]
    first = dss[0]
    slope = float(first.get("RescaleSlope", 1))
    intercept = float(first.get("RescaleIntercept", 0))
    if "PerFrameFunctionalGroupsSequence" in first:
        assert len(dss) == 1
        shared = first.SharedFunctionalGroupsSequence[0]
        iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
        spacing = np.array(shared.PixelMeasuresSequence[0].PixelSpacing, float)
        positions = np.array(
            [
                item.PlanePositionSequence[0].ImagePositionPatient
                for item in first.PerFrameFunctionalGroupsSequence
            ],
            float,
        )
        frames = first.pixel_array.reshape(-1, first.Rows, first.Columns)
        values = [frames[n].astype(np.float64) * slope + intercept for n in range(len(positions))]
    else:
        iop = np.array(first.ImageOrientationPatient, float)
        spacing = np.array(first.PixelSpacing, float)
        positions = np.array([d.ImagePositionPatient for d in dss], float)
        for d in dss:  # one rescale for the series
            assert (
                float(d.get("RescaleSlope", 1)) == slope and float(d.get("RescaleIntercept", 0)) == intercept
            )
            assert np.allclose(np.array(d.ImageOrientationPatient, float), iop)
        values = [d.pixel_array.astype(np.float64) * slope + intercept for d in dss]
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    order = np.argsort(positions @ normal, kind="stable")
    positions = positions[order]
    array = np.stack([values[n] for n in order])
    matrix = np.eye(4)
    matrix[:3, 0] = row * spacing[1]
    matrix[:3, 1] = col * spacing[0]
    matrix[:3, 3] = positions[0]
    if len(positions) > 1:
        step = (positions[-1] - positions[0]) / (len(positions) - 1)
        matrix[:3, 2] = step
        expected = positions[0] + np.arange(len(positions))[:, None] * step
        assert np.abs(positions - expected).max() < 1e-3, "slices are not evenly spaced"
    return array, matrix, dss


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (
        math.cos(ax),
        math.sin(ax),
        math.cos(ay),
        math.sin(ay),
        math.cos(az),
        math.sin(az),
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def affine(directions: np.ndarray, spacing, origin) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = directions @ np.diag(spacing)
    m[:3, 3] = origin
    return m


@pytest.fixture
def study(tmp_path):
    """A database holding one synthetic CT series (the destination study)."""
    series = make_series(tmp_path / "src", n=6, rows=24, cols=20)
    db = Database(tmp_path / "db")
    db.import_paths([series.folder])
    yield db, series
    db.close()


def random_volume(shape, kind: str, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "int":
        return rng.integers(-1024, 3000, size=shape).astype(np.int16)
    return (rng.random(shape) * 2345.678 - 1000.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Round trips through the oracle
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "modality, sop_class", [("CT", CT), ("MR", MR), ("OT", MF_SC_WORD), (None, MF_SC_WORD)]
)
@pytest.mark.parametrize("kind", ["int", "float"])
def test_round_trip_through_pydicom(study, tmp_path, modality, sop_class, kind):
    db, source = study
    volume = random_volume((5, 24, 20), kind)
    matrix = affine(rotation(0.3, -0.2, 0.7), (0.7, 0.9, 2.5), (-100.5, 20.25, 33.0))
    result = export_volume_to_study(
        db,
        source.study_uid,
        volume,
        matrix,
        SeriesMetadata(modality=modality),
        out_dir=tmp_path / "out",
        index=False,
    )
    values, read_matrix, dss = oracle_read(result.files)
    assert dss[0].SOPClassUID == sop_class
    assert np.abs(read_matrix - matrix).max() < 1e-5
    error = np.abs(values - volume.astype(np.float64)).max()
    if kind == "int":
        assert error == 0
        assert result.encoding.exact
    else:
        # within half a quantisation step of the 16-bit range the values span
        step = (float(volume.max()) - float(volume.min())) / 65535
        assert 0 < error <= step * 0.5 + 1e-9
        assert error <= result.encoding.max_error + 1e-12
        assert float(dss[0].RescaleSlope) != 1.0
    # same patient and study as the source, a new series
    header = pydicom.dcmread(source.files[0])
    for ds in dss:
        assert ds.StudyInstanceUID == source.study_uid
        assert ds.PatientID == header.PatientID and str(ds.PatientName) == str(header.PatientName)
        assert ds.StudyDate == header.StudyDate and ds.AccessionNumber == header.AccessionNumber
        assert ds.SeriesInstanceUID == result.series_uid != source.series_uid
        assert ds.FrameOfReferenceUID == header.FrameOfReferenceUID  # reused by default
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert len({ds.SOPInstanceUID for ds in dss}) == len(dss)
    assert dss[0].SeriesNumber == 2  # after the study's series 1


def test_float_volume_gets_rescale_and_integers_do_not(tmp_path):
    ints = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4) - 7
    result = export_volume(ints, np.eye(4), tmp_path / "a", metadata=SeriesMetadata(modality="CT"))
    ds = pydicom.dcmread(result.files[0])
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)
    assert ds.PixelRepresentation == 1

    floats = np.linspace(-0.5, 0.5, 24, dtype=np.float64).reshape(2, 3, 4)
    result = export_volume(floats, np.eye(4), tmp_path / "b", metadata=SeriesMetadata(modality="CT"))
    values, _, dss = oracle_read(result.files)
    assert float(dss[0].RescaleSlope) == pytest.approx(1.0 / 65535, rel=1e-6)
    assert float(dss[0].RescaleIntercept) == -0.5
    assert np.abs(values - floats).max() <= 0.5 / 65535 + 1e-12
    assert len(dss[0].RescaleSlope.original_string or str(dss[0].RescaleSlope)) <= 16


def test_whole_floats_and_wide_integers_stay_exact(tmp_path):
    whole = (np.arange(60, dtype=np.float32).reshape(3, 4, 5) * 3.0) - 20.0
    result = export_volume(whole, np.eye(4), tmp_path / "a", metadata=SeriesMetadata(modality="CT"))
    values, _, _ = oracle_read(result.files)
    assert np.array_equal(values, whole)
    wide = np.arange(60, dtype=np.int32).reshape(3, 4, 5) * 2000 + 100000  # spans 118000 values
    result = export_volume(wide, np.eye(4), tmp_path / "b", metadata=SeriesMetadata(modality="MR"))
    values, _, _ = oracle_read(result.files)
    assert not result.encoding.exact
    assert np.abs(values - wide).max() <= 118000 / 65535 / 2 + 1e-9
    narrow_shift = np.arange(60, dtype=np.int32).reshape(3, 4, 5) + 200000  # span < 65536: shifted
    result = export_volume(narrow_shift, np.eye(4), tmp_path / "c", metadata=SeriesMetadata(modality="CT"))
    values, _, _ = oracle_read(result.files)
    assert result.encoding.exact and np.array_equal(values, narrow_shift)


def test_constant_and_single_slice_volumes(tmp_path):
    constant = np.full((1, 4, 4), 0.25, np.float32)
    matrix = affine(np.eye(3), (0.5, 0.5, 3.0), (1, 2, 3))
    result = export_volume(constant, matrix, tmp_path / "a", metadata=SeriesMetadata(modality="CT"))
    values, read_matrix, dss = oracle_read(result.files)
    assert np.allclose(values, 0.25, atol=1e-9)
    assert np.allclose(read_matrix[:3, [0, 1, 3]], matrix[:3, [0, 1, 3]])
    assert float(dss[0].SliceThickness) == 3.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_is_refused(tmp_path, bad):
    volume = np.zeros((2, 3, 3), np.float32)
    volume[1, 1, 1] = bad
    with pytest.raises(ExportError, match="NaN"):
        export_volume(volume, np.eye(4), tmp_path / "out", metadata=SeriesMetadata(modality="CT"))
    assert not any((tmp_path / "out").glob("*"))


# ----------------------------------------------------------------------------------------------
# Geometry the exporter must handle or refuse
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["CT", "MR", "OT"])
def test_sheared_stack_is_written_slice_by_slice(tmp_path, modality):
    """A gantry-tilted stack (k not along the normal): positions are exact, the matrix comes back."""
    matrix = affine(np.eye(3), (0.5, 0.6, 2.0), (-10.0, -20.0, 30.0))
    tilt = math.radians(15)
    matrix[:3, 2] = np.array([0.0, -math.tan(tilt), 1.0]) * 2.0  # step leans along y
    volume = random_volume((6, 8, 10), "int")
    result = export_volume(volume, matrix, tmp_path / "out", metadata=SeriesMetadata(modality=modality))
    assert result.tilt_deg == pytest.approx(15.0, abs=1e-6)
    values, read_matrix, dss = oracle_read(result.files)
    assert np.array_equal(values, volume)
    assert np.abs(read_matrix - matrix).max() < 1e-5
    thickness = (
        dss[0].SliceThickness
        if modality != "OT"
        else (dss[0].SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness)
    )
    assert float(thickness) == pytest.approx(2.0)  # the spacing along the normal


def test_non_perpendicular_in_plane_axes_are_refused(tmp_path):
    matrix = np.eye(4)
    matrix[:3, 1] = [0.2, 1.0, 0.0]  # j leans towards i
    for modality in ("CT", "MR", "OT"):
        with pytest.raises(ExportError, match="not perpendicular"):
            export_volume(
                np.zeros((2, 3, 3), np.int16),
                matrix,
                tmp_path / "out",
                metadata=SeriesMetadata(modality=modality),
            )
    assert not any((tmp_path / "out").glob("*"))


def test_slices_in_the_image_plane_are_refused(tmp_path):
    matrix = np.eye(4)
    matrix[:3, 2] = [1.0, 0.0, 0.0]
    with pytest.raises(ExportError, match="do not advance"):
        export_volume(
            np.zeros((2, 3, 3), np.int16), matrix, tmp_path / "out", metadata=SeriesMetadata(modality="CT")
        )


def test_left_handed_volume_is_written_along_the_normal(tmp_path):
    volume = random_volume((4, 5, 6), "int")
    matrix = affine(np.eye(3), (1.0, 1.0, -2.0), (0.0, 0.0, 10.0))  # k runs towards the feet
    result = export_volume(volume, matrix, tmp_path / "out", metadata=SeriesMetadata(modality="CT"))
    assert result.flipped
    values, read_matrix, dss = oracle_read(result.files)
    # the same voxels at the same places, indexed along +normal
    expected_matrix = matrix.copy()
    expected_matrix[:3, 2] = -matrix[:3, 2]
    expected_matrix[:3, 3] = matrix[:3, 3] + 3 * matrix[:3, 2]
    assert np.allclose(read_matrix, expected_matrix)
    assert np.array_equal(values, volume[::-1])
    numbers = [int(d.InstanceNumber) for d in sorted(dss, key=lambda d: float(d.ImagePositionPatient[2]))]
    assert numbers == [1, 2, 3, 4]


@pytest.mark.parametrize("bad", [np.eye(3), np.full((4, 4), np.nan), np.zeros((4, 4))])
def test_bad_matrices_are_refused(tmp_path, bad):
    with pytest.raises(ExportError):
        export_volume(np.zeros((2, 3, 3), np.int16), bad, tmp_path / "out")


# ----------------------------------------------------------------------------------------------
# Writing: folders, cancel, metadata, character sets, indexing
# ----------------------------------------------------------------------------------------------


def test_existing_files_are_not_overwritten(tmp_path):
    volume = np.zeros((2, 3, 3), np.int16)
    first = export_volume(volume, np.eye(4), tmp_path / "out", metadata=SeriesMetadata(modality="CT"))
    before = {p: p.read_bytes() for p in first.files}
    with pytest.raises(ExportError, match="already exists"):
        export_volume(volume + 1, np.eye(4), tmp_path / "out", metadata=SeriesMetadata(modality="CT"))
    assert {p: p.read_bytes() for p in first.files} == before
    assert sorted((tmp_path / "out").iterdir()) == sorted(first.files)


def test_cancel_leaves_no_partial_series(tmp_path):
    token = CancelToken()

    def progress(done, total, current):
        if done == 2:
            token.cancel()

    with pytest.raises(CancelledError):
        export_volume(
            np.zeros((5, 3, 3), np.int16),
            np.eye(4),
            tmp_path / "out",
            metadata=SeriesMetadata(modality="CT"),
            progress=progress,
            cancel=token,
        )
    assert not any((tmp_path / "out").glob("*"))


@pytest.mark.parametrize(
    "field, value",
    [
        ("series_description", "a\\b"),
        ("series_description", "x" * 65),
        ("modality", "C T!"),
        ("patient_position", "UPSIDEDOWN"),
        ("body_part_examined", "chest; drop table"),
        ("series_number", -1),
    ],
)
def test_bad_metadata_is_refused(tmp_path, field, value):
    with pytest.raises(ExportError):
        export_volume(
            np.zeros((2, 3, 3), np.int16),
            np.eye(4),
            tmp_path / "out",
            metadata=SeriesMetadata(**{"modality": "CT", field: value}),
        )


def test_patient_names_in_other_character_sets_survive(tmp_path):
    series = make_series(tmp_path / "src", n=2, rows=4, cols=4, patient_name="Müller^Jürgen")
    reference = pydicom.dcmread(series.files[0])
    assert reference.SpecificCharacterSet == "ISO_IR 100"
    result = export_volume(series.pixels, series.ijk_to_lps, tmp_path / "out", reference=reference)
    exported = pydicom.dcmread(result.files[0])
    assert exported.SpecificCharacterSet == "ISO_IR 192"
    assert str(exported.PatientName) == "Müller^Jürgen"
    raw = result.files[0].read_bytes()
    assert "Müller^Jürgen".encode() in raw


def test_frame_of_reference_new_or_given(study, tmp_path):
    db, source = study
    volume = np.zeros((2, 24, 20), np.int16)
    new = export_volume_to_study(
        db,
        source.study_uid,
        volume,
        np.eye(4),
        SeriesMetadata(modality="CT", frame_of_reference="new"),
        out_dir=tmp_path / "a",
        index=False,
    )
    reference_for = pydicom.dcmread(source.files[0]).FrameOfReferenceUID
    assert new.frame_of_reference_uid != reference_for
    given = "1.2.3.4.5.6"
    result = export_volume_to_study(
        db,
        source.study_uid,
        volume,
        np.eye(4),
        SeriesMetadata(modality="CT", frame_of_reference=given),
        out_dir=tmp_path / "b",
        index=False,
    )
    assert pydicom.dcmread(result.files[0]).FrameOfReferenceUID == given


def test_export_into_database_only(study):
    db, source = study
    volume = random_volume((3, 24, 20), "int")
    result = export_volume_to_study(
        db, source.study_uid, volume, source.ijk_to_lps, SeriesMetadata(modality="CT")
    )
    assert result.indexed
    records = db.search("series", {"StudyInstanceUID": source.study_uid})
    assert {r.SeriesInstanceUID for r in records} == {source.series_uid, result.series_uid}
    for path in result.files:  # the stored copies, in the managed store
        assert db.store.contains(path) and path.is_file()
    values, _, _ = oracle_read(result.files)
    assert np.array_equal(values, volume)
    # exporting again numbers the next series after this one
    again = export_volume_to_study(
        db, source.study_uid, volume, source.ijk_to_lps, SeriesMetadata(modality="CT")
    )
    assert (result.series_number, again.series_number) == (2, 3)


def test_unknown_study_is_refused(study):
    db, _ = study
    with pytest.raises(ExportError, match="not in the database"):
        export_volume_to_study(db, "1.2.3.999", np.zeros((1, 2, 2), np.int16), np.eye(4))


def test_invalid_reference_values_are_cleaned_and_reported(tmp_path):
    """StudyDate ``***`` (Type 2) is written empty and PatientAge ``0Y`` (Type 3) left out, each
    reported, instead of being copied into a new, invalid series."""
    series = make_series(tmp_path / "src", n=2, rows=6, cols=6)
    reference = pydicom.dcmread(series.files[0], stop_before_pixels=True)
    reference.StudyDate, reference.StudyTime, reference.PatientAge = "***", "ab", "0Y"
    result = export_volume(series.pixels, series.ijk_to_lps, tmp_path / "out", reference=reference)
    changed = {
        n["message"].split(" ")[0] for n in result.to_dict()["notes"] if n["code"] == "invalid_value_cleaned"
    }
    assert changed == {"StudyDate", "StudyTime", "PatientAge"}
    written = pydicom.dcmread(result.files[0], stop_before_pixels=True)
    assert (written.StudyDate, written.StudyTime, "PatientAge" in written) == ("", "", False)
    assert written.StudyInstanceUID == series.study_uid and written.PatientID == reference.PatientID
