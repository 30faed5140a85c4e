"""Pixels: dtype policy, bit masking, byte order, one preallocated array, errors, cancel."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest
from test_loading_support import database_with, edit, geometric_files, make, to_big_endian

from DICOMPlusLib.errors import CancelledError, LoadError
from DICOMPlusLib.jobs import CancelToken
from DICOMPlusLib.loading import load, load_folder, load_series, plan_folder, plan_series
from DICOMPlusLib.loading.pixels import read_pixels


def _stored(series):
    """{sop_uid: stored pixel array} in the order of series.sop_uids (what was written)."""
    return series.pixels


def test_ct_rescale_stays_int16_when_exact(tmp_path):
    series = make(tmp_path / "s", n=5)
    (v,) = load_folder(series.folder)
    assert v.array.dtype == np.int16
    assert np.array_equal(v.array, series.pixels - 1024)


def test_fractional_slope_or_intercept_gives_float32(tmp_path):
    series = make(tmp_path / "s", n=4)
    files = geometric_files(series)
    edit(files, lambda ds, k: (setattr(ds, "RescaleSlope", "0.5"), setattr(ds, "RescaleIntercept", "-0.25")))
    (v,) = load_folder(series.folder)
    assert v.array.dtype == np.float32
    assert np.array_equal(v.array, (series.pixels * 0.5 - 0.25).astype(np.float32))


def test_per_slice_rescale_is_applied_per_slice(tmp_path):
    series = make(tmp_path / "s", n=4, modality="MR")
    files = geometric_files(series)
    edit(files, lambda ds, k: (setattr(ds, "RescaleSlope", str(k + 1)), setattr(ds, "RescaleIntercept", "0")))
    (v,) = load_folder(series.folder)
    assert v.array.dtype == np.int16  # integer slopes, small values: still exact
    for k in range(4):
        assert np.array_equal(v.array[k], series.pixels[k] * (k + 1))


def test_values_that_overflow_int16_fall_back_to_float32(tmp_path):
    series = make(tmp_path / "s", n=3)
    files = geometric_files(series)

    def low(ds, k):
        values = series.pixels[k].copy()
        if k == 2:
            values[0, 0] = -32000  # -32000 - 1024 does not fit int16
        ds.PixelData = values.tobytes()

    edit(files, low)
    (v,) = load_folder(series.folder)
    assert v.array.dtype == np.float32
    assert v.array[2, 0, 0] == -33024.0
    assert np.array_equal(v.array[0], (series.pixels[0] - 1024).astype(np.float32))


def test_unsigned_16_bit_above_int16_gives_float32(tmp_path):
    series = make(tmp_path / "s", n=2, modality="MR")
    files = geometric_files(series)

    def unsigned(ds, k):
        ds.PixelRepresentation = 0
        values = series.pixels[k].astype(np.uint16) + (40000 if k == 1 else 0)
        ds.PixelData = values.tobytes()

    edit(files, unsigned)
    (v,) = load_folder(series.folder)
    assert v.array.dtype == np.float32
    assert np.array_equal(v.array[1], series.pixels[1].astype(np.float32) + 40000)


@pytest.mark.parametrize("signed", [False, True])
def test_bits_above_bits_stored_are_masked_or_sign_extended(tmp_path, signed):
    series = make(tmp_path / "s", n=2, modality="MR")
    files = geometric_files(series)
    rng = np.random.default_rng(3)
    truth = {}

    def twelve_bits(ds, k):
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, int(signed)
        low, high = (-2048, 2048) if signed else (0, 4096)
        values = rng.integers(low, high, size=(32, 32)).astype(np.int16)
        truth[k] = values
        raw = values.view(np.uint16) & 0x0FFF
        raw = raw | np.uint16(0xA000)  # garbage in the unused high bits (old overlay planes)
        ds.PixelData = raw.astype(np.uint16).tobytes()

    edit(files, twelve_bits)
    (v,) = load_folder(series.folder)
    assert v.array.dtype == np.int16
    for k in range(2):
        assert np.array_equal(v.array[k], truth[k])


def test_big_endian_reads_like_little_endian(tmp_path):
    series = make(tmp_path / "s", n=3, modality="MR")
    to_big_endian(series.files)
    (v,) = load_folder(series.folder)
    assert v.info.frames[0].transfer_syntax == "1.2.840.10008.1.2.2"
    assert np.array_equal(v.array, series.pixels)


def test_eight_bit_data(tmp_path):
    series = make(tmp_path / "s", n=2, modality="MR")
    files = geometric_files(series)

    def eight(ds, k):
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = (series.pixels[k] % 256).astype(np.uint8).tobytes()

    edit(files, eight)
    (v,) = load_folder(series.folder)
    assert v.array.dtype == np.int16
    assert np.array_equal(v.array, series.pixels % 256)


def test_one_array_no_per_slice_copies(tmp_path):
    series = make(tmp_path / "s", n=48, rows=128, cols=128)
    (info,) = plan_folder(series.folder)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        array = read_pixels(info, workers=2)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < array.nbytes + 256 * 1024, (peak, array.nbytes)  # the volume, and no second copy
    assert np.array_equal(array, series.pixels - 1024)


def test_one_and_two_workers_agree(tmp_path):
    series = make(tmp_path / "s", n=60, rows=64, cols=64)
    (info,) = plan_folder(series.folder)
    assert np.array_equal(read_pixels(info, workers=1), read_pixels(info, workers=2))


def test_progress_and_cancel(tmp_path):
    series = make(tmp_path / "s", n=60, rows=16, cols=16)
    (info,) = plan_folder(series.folder)
    seen = []
    load(info, progress=lambda done, total, current: seen.append((done, total)))
    assert seen[-1] == (60, 60) and seen == sorted(seen)
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        load(info, cancel=token)


def test_two_reader_threads_report_progress_cancel_and_errors_on_the_calling_thread(tmp_path):
    """With two reader threads (what a large volume gets), progress is reported in order on the
    calling thread (a UI's callback), a cancel stops the reads, an error in a thread is raised to
    the caller, and no reader thread outlives the call."""
    series = make(tmp_path / "s", n=60, rows=16, cols=16)
    (info,) = plan_folder(series.folder)
    before = threading.active_count()
    caller = threading.get_ident()
    seen = []

    def progress(done, total, current):
        assert threading.get_ident() == caller
        seen.append((done, total))

    array = read_pixels(info, workers=2, progress=progress)
    assert np.array_equal(array, series.pixels - 1024)
    assert seen[-1] == (60, 60) and seen == sorted(seen) and len(seen) == 3  # 24-frame blocks
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        read_pixels(info, workers=2, cancel=token)
    victim = info.frames[40].path
    with open(victim, "r+b") as f:
        f.truncate(info.frames[40].pixel_offset + 100)
    with pytest.raises(LoadError, match="truncated pixel data"):
        read_pixels(info, workers=2)
    assert threading.active_count() == before


def test_truncated_stored_file_is_a_clear_error(tmp_path):
    series = make(tmp_path / "s", n=3)
    db = database_with(tmp_path, series.folder)
    (info,) = plan_series(db, series.series_uid)
    victim = info.frames[1].path
    with open(victim, "r+b") as f:
        f.truncate(info.frames[1].pixel_offset + 100)
    with pytest.raises(LoadError, match="truncated pixel data"):
        load_series(db, series.series_uid)
    db.close()


@pytest.mark.parametrize("planar", [0, 1])
def test_rgb_slices_get_a_last_axis(tmp_path, planar):
    series = make(tmp_path / "s", n=3, modality="MR")
    files = geometric_files(series)
    rgb = np.random.default_rng(4).integers(0, 256, size=(3, 32, 32, 3)).astype(np.uint8)

    def color(ds, k):
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", planar
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = (np.moveaxis(rgb[k], -1, 0) if planar else rgb[k]).tobytes()

    edit(files, color)
    (v,) = load_folder(series.folder)
    assert v.dims == (32, 32, 3) and v.array.shape == (3, 32, 32, 3) and v.array.dtype == np.uint8
    assert np.array_equal(v.array, rgb)
