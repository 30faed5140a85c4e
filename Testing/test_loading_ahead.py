"""A folder's volume mapped and faulted in ahead, while the process imports and scans headers
(``loading/ahead.py``).

The mapping is a guess made before the headers are read; whatever the guess, a folder load must
give what it gives without one: the same voxels, dtype, geometry, warnings and errors. Real
series are read where they are (the shared data set, through symbolic links for a mixed folder);
the thresholds that keep small folders on the plain path are lowered so that they take the mapping.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from test_loading_support import edit, geometric_files, make

from DICOMPlusLib.errors import LoadError
from DICOMPlusLib.loading import ahead, load, load_folder, pixels, plan_folder
from DICOMPlusLib.loading.prefetch import files_of

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the mapping is made on Linux only"
)


class Record:
    """What each :meth:`VolumeAhead.finish` had made and handed over."""

    def __init__(self):
        self.made: list[bool] = []
        self.given: list = []
        self.faulted: list[int] = []  # bytes faulted in when the thread stopped


@pytest.fixture
def forced(monkeypatch) -> Record:
    """Every folder load maps its volume ahead (no size threshold), and what it did is recorded."""
    monkeypatch.setattr(ahead, "MIN_BYTES", 1)
    monkeypatch.setattr(pixels, "_TRIM_BYTES", 1)
    record = Record()
    fault_in, finish = ahead.VolumeAhead._fault_in, ahead.VolumeAhead.finish

    def made(self):
        fault_in(self)
        record.made.append(self.memory is not None)

    def given(self, needed):
        memory = finish(self, needed)
        record.given.append(memory)
        record.faulted.append(self._faulted)
        return memory

    monkeypatch.setattr(ahead.VolumeAhead, "_fault_in", made)
    monkeypatch.setattr(ahead.VolumeAhead, "finish", given)
    return record


def _plain(folder) -> list:
    """The volumes as read without a mapping made ahead (plan, then read each)."""
    return [load(info) for info in plan_folder(folder)]


def _mapping_of(array: np.ndarray):
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return getattr(base, "obj", base)  # numpy holds an mmap through a memoryview


def _assert_same(volumes, expected) -> None:
    assert len(volumes) == len(expected)
    for got, want in zip(volumes, expected, strict=True):
        assert got.array.dtype == want.array.dtype
        assert np.array_equal(got.array, want.array)
        assert got.info.to_dict() == want.info.to_dict()  # geometry, spacing, warnings...
        assert got.info.frames == want.info.frames
        assert np.array_equal(got.ijk_to_lps, want.ijk_to_lps)


def _link(folder: Path, sources) -> Path:
    """``folder`` holding a symbolic link to each file of ``sources`` (real files, not copied)."""
    folder.mkdir()
    for prefix, source in sources:
        for path in sorted(Path(source).iterdir()):
            (folder / f"{prefix}{path.name}").symlink_to(path)
    return folder


@linux_only
def test_a_real_series_out_of_file_order_is_read_into_the_mapping(manifest, forced):
    """The slices of dev_ct_axial_plain are not in file-name order and a DIRFILE (no image) sits
    among them: the guess (the first image's pixel data times the 29 files) holds the 28 slices,
    and the volume is read into it, equal to a load without it."""
    folder = manifest["dev_ct_axial_plain"]["folder"]
    expected = _plain(folder)
    names = [os.path.basename(f.path) for f in expected[0].info.frames]
    assert names != sorted(names)  # the case: geometric order is not the files' order
    volumes = load_folder(folder)
    _assert_same(volumes, expected)
    assert forced.made == [True]
    assert _mapping_of(volumes[0].array) is forced.given[0]


@linux_only
def test_a_folder_of_several_series_gives_each_volume_as_without_the_mapping(manifest, forced, tmp_path):
    """Two CT series of the same slice size and an MR series in one folder: the guess counts all
    their files; the first volume that needs a mapping gets it (the pages beyond it given back),
    the others are read as before."""
    folder = _link(
        tmp_path / "mixed",
        [("a_", manifest["dev_ct_axial_plain"]["folder"]), ("b_", manifest["dev_ct_gantry_tilt"]["folder"]),
         ("c_", manifest["dev_mr_oblique"]["folder"])],
    )  # fmt: skip
    expected = _plain(folder)
    assert len(expected) == 3
    volumes = load_folder(folder)
    _assert_same(volumes, expected)
    assert forced.made == [True]
    in_mapping = [v for v in volumes if _mapping_of(v.array) is forced.given[0]]
    assert len(in_mapping) == 1 and in_mapping[0] is volumes[0]  # the first by series UID


@linux_only
@pytest.mark.parametrize("factor", [0.25, 1, 3], ids=["too-small", "exact", "too-large"])
def test_a_wrong_guess_gives_the_same_volume(manifest, forced, monkeypatch, factor):
    """A mapping (twice the guess) smaller than the volume is dropped (the volume gets its own);
    a larger one is used and its pages beyond the volume are given back. The voxels are the same
    either way."""
    folder = manifest["dev_ct_gantry_tilt"]["folder"]
    expected = _plain(folder)
    needed = expected[0].array.nbytes
    monkeypatch.setattr(ahead, "guess_bytes", lambda files: int(needed * factor))
    volumes = load_folder(folder)
    _assert_same(volumes, expected)
    assert forced.made == [True]
    if factor < 1:
        assert forced.given == [None]
        assert _mapping_of(volumes[0].array) is not None
    else:
        assert _mapping_of(volumes[0].array) is forced.given[0]
        assert len(forced.given[0]) == 2 * int(needed * factor)


@linux_only
def test_no_more_than_max_bytes_are_faulted_in_ahead(manifest, forced, monkeypatch):
    """A guess beyond MAX_BYTES (a folder of several series) is faulted in up to it only; the
    mapping is still the volume's, the readers fault in the rest."""
    folder = manifest["dev_ct_gantry_tilt"]["folder"]
    expected = _plain(folder)
    monkeypatch.setattr(ahead, "MAX_BYTES", ahead.CHUNK_BYTES)
    monkeypatch.setattr(ahead.VolumeAhead, "finish", _waiting(ahead.VolumeAhead.finish))
    volumes = load_folder(folder)
    _assert_same(volumes, expected)
    assert forced.faulted == [ahead.CHUNK_BYTES] < [expected[0].array.nbytes]
    assert _mapping_of(volumes[0].array) is forced.given[0]


def _waiting(finish):
    """``finish`` once the thread has faulted in all it would (not stopped by the plan's end)."""

    def wait(self, needed):
        if self._thread is not None:
            self._thread.join()
        return finish(self, needed)

    return wait


@linux_only
def test_float32_voxels_of_16_bit_data_fit_the_mapping(tmp_path, forced):
    """A fractional rescale makes float32 voxels, twice the stored bytes the guess counts: the
    mapping has room for them."""
    series = make(tmp_path / "s", n=4)
    files = geometric_files(series)
    edit(files, lambda ds, k: (setattr(ds, "RescaleSlope", "0.5"), setattr(ds, "RescaleIntercept", "-0.25")))
    (volume,) = load_folder(series.folder)
    assert volume.array.dtype == np.float32
    assert np.array_equal(volume.array, (series.pixels * 0.5 - 0.25).astype(np.float32))
    assert _mapping_of(volume.array) is forced.given[0]


@linux_only
def test_values_beyond_int16_are_read_again_as_float32(tmp_path, forced):
    """The int16 volume read into the mapping turns out too small for the values: they are read
    again into a float32 volume of its own, as without the mapping."""
    series = make(tmp_path / "s", n=3)
    files = geometric_files(series)

    def low(ds, k):
        values = series.pixels[k].copy()
        if k == 2:
            values[0, 0] = -32000  # -32000 - 1024 does not fit int16
        ds.PixelData = values.tobytes()

    edit(files, low)
    (volume,) = load_folder(series.folder)
    assert forced.made == [True] and forced.given[0] is not None
    assert volume.array.dtype == np.float32
    assert volume.array[2, 0, 0] == -33024.0
    assert np.array_equal(volume.array[0], (series.pixels[0] - 1024).astype(np.float32))


@linux_only
def test_a_truncated_slice_fails_the_same_way(tmp_path, forced, monkeypatch):
    """A slice whose pixel data is shorter than its rows and columns say: the same LoadError
    whether the volume is read into the mapping or not."""
    series = make(tmp_path / "s", n=4)
    edit(geometric_files(series)[1:2], lambda ds, k: setattr(ds, "PixelData", ds.PixelData[:-100]))
    with pytest.raises(LoadError) as with_mapping:
        load_folder(series.folder)
    assert forced.made == [True] and forced.given[0] is not None
    monkeypatch.setattr(ahead.VolumeAhead, "start", lambda self: None)
    with pytest.raises(LoadError) as without:
        load_folder(series.folder)
    assert str(with_mapping.value) == str(without.value)
    assert "file is inconsistent" in str(without.value)


def test_the_guess_is_the_first_images_pixel_data_times_the_files(manifest, monkeypatch):
    monkeypatch.setattr(ahead, "MIN_BYTES", 1)
    plain = files_of([manifest["dev_ct_axial_plain"]["folder"]])  # DIRFILE first: no image, skipped
    assert os.path.basename(plain[0]) == "DIRFILE"
    assert ahead.guess_bytes(plain) == 512 * 512 * 2 * len(plain)
    # compressed pixel data: no guess (the decoded size is not the stored one)
    assert ahead.guess_bytes(files_of([manifest["dev_mr_jpeg2000"]["folder"]])) == 0
    monkeypatch.setattr(ahead, "MIN_BYTES", 512 * 512 * 2 * len(plain) + 1)
    assert ahead.guess_bytes(plain) == 0  # a small folder: left to the plain path
