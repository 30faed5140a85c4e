"""Bad and unusual series: clear warnings or LoadError, and whatever can load still loads."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_loading_support import database_with, edit, geometric_files, make

from DICOMPlusLib.errors import LoadError
from DICOMPlusLib.loading import load_folder, load_series, plan_folder, plan_paths


def codes(volume) -> set[str]:
    return {w.code for w in volume.warnings}


def warning(volume, code):
    return next(w for w in volume.warnings if w.code == code)


def write_object(path, series, sop_class: str, modality: str) -> str:
    """A non-image object (SR, PR) filed in the same series."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, uid, modality
    ds.PatientID, ds.PatientName = series.patient_id, "Synthetic^Patient"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = series.study_uid, series.series_uid
    ds.InstanceNumber = 99
    ds.ContentDate, ds.ContentTime = "20240102", "100000"
    ds.save_as(path, enforce_file_format=True)
    return str(path)


@pytest.mark.parametrize("attribute", ["ImagePositionPatient", "ImageOrientationPatient"])
def test_missing_position_or_orientation_loads_the_file_apart(tmp_path, attribute):
    series = make(tmp_path / "s", n=6)
    files = geometric_files(series)
    edit([files[2]], lambda ds, k: delattr(ds, attribute))
    v, apart = load_folder(series.folder)
    assert v.dims == (32, 32, 5)
    w = warning(v, "missing_geometry")
    assert attribute in w.message and w.files == (str(files[2]),) and "loaded apart" in w.message
    assert "missing_slices" in codes(v)  # and the hole it leaves is reported where it is
    kept = [k for k in range(6) if k != 2]
    assert np.array_equal(v.array, series.pixels[kept] - 1024)
    # the image that cannot be placed is not dropped: its own volume, without geometry
    assert apart.dims == (32, 32, 1) and "no_geometry" in codes(apart)
    assert np.array_equal(apart.array[0], series.pixels[2] - 1024)


def test_no_geometry_at_all_loads_as_a_plain_stack(tmp_path):
    series = make(tmp_path / "s", n=4, modality="MR")
    edit(
        series.files,
        lambda ds, k: (delattr(ds, "ImagePositionPatient"), delattr(ds, "ImageOrientationPatient")),
    )
    (v,) = load_folder(series.folder)
    assert "no_geometry" in codes(v) and v.dims == (32, 32, 4)
    by_instance = [series.pixels[k] for k in range(4)]  # make_series numbers instances by k
    assert np.array_equal(v.array, np.stack(by_instance))


def test_zero_length_pixel_data_is_left_out(tmp_path):
    series = make(tmp_path / "s", n=5)
    files = geometric_files(series)
    edit([files[4]], lambda ds, k: setattr(ds, "PixelData", b""))
    (v,) = load_folder(series.folder)
    assert v.dims == (32, 32, 4)
    assert warning(v, "empty_pixel_data").files == (str(files[4]),)
    assert np.array_equal(v.array, series.pixels[:4] - 1024)


def test_rows_and_columns_changing_inside_a_series(tmp_path):
    big = make(tmp_path / "s", n=5, rows=32, cols=32)
    make(
        tmp_path / "s",
        n=3,
        rows=16,
        cols=24,
        series_uid=big.series_uid,
        study_uid=big.study_uid,
        origin=(0.0, 0.0, 100.0),
        file_names=[f"small{i}.dcm" for i in range(3)],
    )
    volumes = load_folder(big.folder)
    assert sorted(v.dims for v in volumes) == [(24, 16, 3), (32, 32, 5)]
    for v in volumes:
        assert "mixed_sizes" in codes(v)
    main = next(v for v in volumes if v.dims == (32, 32, 5))
    assert np.array_equal(main.array, big.pixels - 1024)


@pytest.mark.parametrize("origin", ["folder", "database"])
def test_sr_and_pr_in_an_image_series(tmp_path, origin):
    series = make(tmp_path / "s", n=4)
    sr = write_object(series.folder / "sr.dcm", series, "1.2.840.10008.5.1.4.1.1.88.11", "SR")
    pr = write_object(series.folder / "pr.dcm", series, "1.2.840.10008.5.1.4.1.1.11.1", "PR")
    if origin == "folder":
        (v,) = load_folder(series.folder)
        assert set(warning(v, "non_image").files) == {sr, pr}
    else:
        db = database_with(tmp_path, series.folder)
        (v,) = load_series(db, series.series_uid)
        assert len(warning(v, "non_image").files) == 2
        db.close()
    assert "1.2.840.10008.5.1.4.1.1.88.11" in warning(v, "non_image").message
    assert np.array_equal(v.array, series.pixels - 1024)


def test_a_series_with_nothing_to_load_is_a_load_error(tmp_path):
    series = make(tmp_path / "s", n=1)
    series.files[0].unlink()
    write_object(series.folder / "sr.dcm", series, "1.2.840.10008.5.1.4.1.1.88.11", "SR")
    with pytest.raises(LoadError, match="nothing to load"):
        load_folder(series.folder)


def test_not_dicom_and_dicomdir_files_are_skipped(tmp_path, manifest):
    series = make(tmp_path / "s", n=3)
    (series.folder / "notes.txt").write_text("not DICOM")
    shutil.copy(manifest["dev_ct_axial_plain"]["folder"] / "DIRFILE", series.folder / "DIRFILE")
    volumes, skipped = plan_paths(series.folder)
    assert len(volumes) == 1 and volumes[0].dims == (32, 32, 3)
    assert {s.path.rsplit("/", 1)[-1] for s in skipped} == {"notes.txt", "DIRFILE"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadError, match="no DICOM"):
        plan_folder(tmp_path / "empty")


def test_duplicate_positions_keep_one_slice_each(tmp_path):
    series = make(tmp_path / "s", n=4)
    extra = make(
        tmp_path / "s",
        n=1,
        series_uid=series.series_uid,
        study_uid=series.study_uid,
        file_names=["dup.dcm"],
        seed=5,
    )
    edit(extra.files, lambda ds, k: setattr(ds, "InstanceNumber", 50))  # same position, numbered later
    (v,) = load_folder(series.folder)
    assert v.dims == (32, 32, 4)
    assert warning(v, "duplicate_positions").files == (str(extra.files[0]),)
    assert np.array_equal(v.array, series.pixels - 1024)


def _four_d(tmp_path, n=5, t=3, **kw):
    """t acquisitions of the same n positions in one series, with trigger times."""
    first = make(tmp_path / "s", n=n, modality="MR", file_names=[f"t0_{i}.dcm" for i in range(n)], **kw)
    parts = [first]
    for time in range(1, t):
        parts.append(
            make(
                tmp_path / "s",
                n=n,
                modality="MR",
                series_uid=first.series_uid,
                study_uid=first.study_uid,
                file_names=[f"t{time}_{i}.dcm" for i in range(n)],
                seed=time,
                **kw,
            )
        )
    for time, part in enumerate(parts):
        edit(
            geometric_files(part),
            lambda ds, k, time=time: (
                setattr(ds, "TriggerTime", str(100 * time)),
                setattr(ds, "TemporalPositionIdentifier", time + 1),
                setattr(ds, "InstanceNumber", time * n + k + 1),
            ),
        )
    return parts


def test_4d_from_repeated_positions(tmp_path):
    parts = _four_d(tmp_path)
    (v,) = load_folder(parts[0].folder)
    assert v.dims == (32, 32, 5, 3) and v.array.shape == (3, 5, 32, 32)
    assert v.time_axis == (0.0, 100.0, 200.0) and v.info.time_unit == "ms"
    for time, part in enumerate(parts):
        assert np.array_equal(v.array[time], part.pixels)
    assert [p.array.shape for p in v.time_points()] == [(5, 32, 32)] * 3


def test_incomplete_time_point_is_left_out(tmp_path):
    parts = _four_d(tmp_path)
    geometric_files(parts[2])[3].unlink()
    (v,) = load_folder(parts[0].folder)
    assert v.dims == (32, 32, 5, 2)
    assert "incomplete_time_points" in codes(v)


def test_image_type_at_the_same_positions_splits(tmp_path):
    magnitude = make(tmp_path / "s", n=4, modality="MR")
    phase = make(
        tmp_path / "s",
        n=4,
        modality="MR",
        series_uid=magnitude.series_uid,
        study_uid=magnitude.study_uid,
        file_names=[f"p{i}.dcm" for i in range(4)],
        seed=9,
    )
    edit(phase.files, lambda ds, k: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "P"]))
    volumes = load_folder(magnitude.folder)
    assert len(volumes) == 2 and all(v.dims == (32, 32, 4) for v in volumes)
    assert all("split_imagetype" in codes(v) for v in volumes)
    arrays = sorted((v.array for v in volumes), key=lambda a: int(a[0, 0, 0]))
    expected = sorted((magnitude.pixels, phase.pixels), key=lambda a: int(a[0, 0, 0]))
    assert all(np.array_equal(a, b) for a, b in zip(arrays, expected, strict=True))


def test_acquisitions_covering_different_positions_split(tmp_path):
    a = make(tmp_path / "s", n=4, slice_step=2.0, origin=(0.0, 0.0, 0.0))
    b = make(
        tmp_path / "s",
        n=4,
        slice_step=2.0,
        origin=(0.0, 0.0, 4.0),
        series_uid=a.series_uid,
        study_uid=a.study_uid,
        file_names=[f"b{i}.dcm" for i in range(4)],
        seed=2,
    )
    edit(b.files, lambda ds, k: setattr(ds, "AcquisitionNumber", 2))
    volumes = load_folder(a.folder)
    assert len(volumes) == 2 and all("split_acquisitions" in codes(v) for v in volumes)
    origins = sorted(float(v.ijk_to_lps[2, 3]) for v in volumes)
    assert origins == [0.0, 4.0]


def test_localizer_is_flagged_and_apart(tmp_path):
    main = make(tmp_path / "s", n=12)
    scout = make(
        tmp_path / "s",
        n=1,
        row_cosine=(1, 0, 0),
        col_cosine=(0, 0, -1),
        series_uid=main.series_uid,
        study_uid=main.study_uid,
        file_names=["scout.dcm"],
    )
    edit(scout.files, lambda ds, k: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]))
    volumes = load_folder(main.folder)
    assert [v.localizer for v in volumes] == [False, True]
    assert volumes[0].dims == (32, 32, 12) and "localizer" in codes(volumes[1])
    assert "mixed_orientation" not in codes(volumes[0])  # the localizer is not counted as an orientation


def test_unflagged_small_other_orientation_is_a_probable_localizer(tmp_path):
    main = make(tmp_path / "s", n=12)
    make(
        tmp_path / "s",
        n=2,
        row_cosine=(0, 1, 0),
        col_cosine=(0, 0, -1),
        series_uid=main.series_uid,
        study_uid=main.study_uid,
        file_names=["a.dcm", "b.dcm"],
    )
    volumes = load_folder(main.folder)
    assert [v.localizer for v in volumes] == [False, True]


def test_unreadable_file_among_good_ones(tmp_path):
    series = make(tmp_path / "s", n=4)
    data = series.files[0].read_bytes()
    series.files[0].write_bytes(data[:400])  # header cut short
    volumes, skipped = plan_paths(series.folder)
    assert volumes[0].dims == (32, 32, 3)
    assert skipped and "truncated" in skipped[0].reason


def test_multiframe_without_functional_groups(tmp_path):
    series = make(tmp_path / "s", n=1, modality="MR")
    frames = np.random.default_rng(0).integers(0, 1000, size=(5, 32, 32)).astype(np.int16)

    def multi(ds, k):
        ds.NumberOfFrames = 5
        ds.SpacingBetweenSlices = "3"
        ds.PixelData = frames.tobytes()

    edit(series.files, multi)
    (v,) = load_folder(series.folder)
    assert v.dims == (32, 32, 5) and v.spacing[2] == pytest.approx(3.0)
    assert "multiframe_geometry_assumed" in codes(v)
    assert np.array_equal(v.array, frames)
    assert pydicom.dcmread(series.files[0]).NumberOfFrames == 5


def test_a_load_parses_files_as_an_import_does_without_the_index_values(tmp_path):
    """``parse_path(..., index=False)`` (a folder load) refuses the same files with the same
    reason as an import's parse, and gives the same identity, pixel place and loader values; only
    the patient/study/series names and dates it does not decode differ."""
    from DICOMPlusLib.database.parsing import LOAD_TAGS, parse_path
    from DICOMPlusLib.errors import ImportFileError
    from DICOMPlusLib.loading.sources import _WANTED

    series = make(tmp_path / "s", n=6)
    files = geometric_files(series)
    edit(files[1:2], lambda ds, k: delattr(ds, "SeriesInstanceUID"))  # refused: no series
    edit(files[2:3], lambda ds, k: setattr(ds, "SOPClassUID", "1.2.840.10008.1.3.10"))  # a DICOMDIR's class
    edit(files[3:4], lambda ds, k: delattr(ds, "PixelData"))  # an image cut before its pixels
    files[4].write_bytes(files[4].read_bytes()[:600])  # ends inside its header
    (tmp_path / "s" / "notes.txt").write_text("not DICOM\n")
    outcomes = []
    for path in [*files, tmp_path / "s" / "notes.txt"]:
        results = []
        for index in (True, False):
            try:
                results.append(parse_path(str(path), keep_data=False, also=_WANTED, index=index))
            except ImportFileError as exc:
                results.append(str(exc))
        full, lean = results
        if isinstance(full, str):
            assert lean == full, path
            outcomes.append("refused")
            continue
        assert not isinstance(lean, str), (path, lean)
        assert {k: lean.values[k] for k in LOAD_TAGS.values()} == {
            k: full.values[k] for k in LOAD_TAGS.values()
        }
        assert full.values["PatientName"] and "PatientName" not in lean.values
        assert (lean.header, lean.pixel_offset, lean.pixel_length, lean.transfer_syntax) == (
            full.header, full.pixel_offset, full.pixel_length, full.transfer_syntax
        )  # fmt: skip
        loader = {t: v for t, v in (lean.scanned or {}).items() if t in _WANTED}
        assert loader == {t: v for t, v in (full.scanned or {}).items() if t in _WANTED} and loader
        outcomes.append("parsed")
    assert outcomes == ["parsed", "refused", "refused", "refused", "refused", "parsed", "refused"]


def test_echo_given_by_some_images_at_the_same_positions_splits(tmp_path):
    """Images with an EchoTime beside images without one, at the same positions (found by
    fuzzing the Philips enhanced DWI): planning the series failed with a TypeError (formatting
    the missing echo for the volume's label)."""
    first = make(tmp_path / "s", n=3, modality="MR")
    second = make(tmp_path / "s", n=3, modality="MR", series_uid=first.series_uid, study_uid=first.study_uid,
                  file_names=[f"e{i}.dcm" for i in range(3)], seed=9)  # fmt: skip
    edit(first.files, lambda ds, k: setattr(ds, "EchoTime", 30))
    edit(
        second.files,
        lambda ds, k: [ds.pop(t, None) for t in ("EchoTime", "EchoNumbers", "EffectiveEchoTime")],
    )
    volumes = plan_folder(first.folder)
    assert sorted(v.label for v in volumes) == ["echo 30", "echo none"]
    assert all(v.dims == (32, 32, 3) for v in volumes)
