"""Images that used to be dropped: images without placement beside placed ones load as their own
volumes, and an image without SeriesInstanceUID (here JPEG-LS) loads from a folder under a
generated series key. Truth: the pixels and geometry the tests write."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.uid import JPEGLSLossless, SecondaryCaptureImageStorage
from test_loading_support import make

from DICOMPlusLib.database import Database
from DICOMPlusLib.loading import load, load_folder, plan_paths


def test_secondary_capture_in_a_ct_series_is_its_own_volume(tmp_path):
    series = make(tmp_path / "s", n=5, rows=16, cols=16)
    ds = pydicom.dcmread(series.files[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        delattr(ds, keyword)
    capture = np.arange(24 * 20, dtype=np.int16).reshape(24, 20)
    ds.Rows, ds.Columns, ds.InstanceNumber = 24, 20, 99
    ds.PixelData = capture.tobytes()
    ds.save_as(tmp_path / "s" / "capture.dcm", enforce_file_format=True)
    ct, apart = load_folder(tmp_path / "s")
    assert ct.dims == (16, 16, 5) and np.allclose(ct.ijk_to_lps, series.ijk_to_lps)
    [note] = [w for w in ct.warnings if w.code == "missing_geometry"]
    assert "loaded apart" in note.message and note.files == (str(tmp_path / "s" / "capture.dcm"),)
    assert apart.dims == (20, 24, 1) and "no_geometry" in {w.code for w in apart.warnings}
    assert np.array_equal(apart.array[0], capture - 1024)  # the CT rescale of the copied header


def _without_series_uid(folder, **kwargs):
    series = make(folder, n=3, rows=12, cols=10, **kwargs)
    for path in series.files:
        ds = pydicom.dcmread(path)
        ds.compress(JPEGLSLossless)
        del ds.SeriesInstanceUID
        ds.save_as(path)
    return series


def test_jpegls_without_series_uid_loads_from_a_folder(tmp_path):
    series = _without_series_uid(tmp_path / "a")
    (info,), skipped = plan_paths(tmp_path / "a")
    assert skipped == []
    assert info.series_uid.startswith("2.25.")
    [warning] = [w for w in info.warnings if w.code == "generated_series_uid"]
    assert len(warning.files) == 3
    volume = load(info)
    assert np.array_equal(volume.array, series.pixels - 1024)
    assert np.allclose(volume.ijk_to_lps, series.ijk_to_lps)
    # the same key on every run; another folder gets another key
    assert plan_paths(tmp_path / "a")[0][0].series_uid == info.series_uid
    _without_series_uid(tmp_path / "b", study_uid=pydicom.uid.generate_uid())
    keys = {i.series_uid for i in plan_paths(tmp_path)[0]}
    assert len(keys) == 2 and info.series_uid in keys


def test_the_database_still_refuses_them(tmp_path):
    _without_series_uid(tmp_path / "a")
    db = Database(tmp_path / "db")
    try:
        report = db.import_paths([tmp_path / "a"])
    finally:
        db.close()
    assert report.added == 0
    assert all("SeriesInstanceUID" in s.reason for s in report.skipped) and len(report.skipped) == 3


def test_other_refused_files_stay_skipped(tmp_path):
    _without_series_uid(tmp_path / "a")
    (tmp_path / "a" / "notes.txt").write_text("not DICOM")
    (tmp_path / "a" / "volume.nii").write_bytes(b"\0" * 4096)
    (info,), skipped = plan_paths(tmp_path / "a")
    assert sorted(s.path.rsplit("/", 1)[-1] for s in skipped) == ["notes.txt", "volume.nii"]
    assert len(info.frames) == 3
