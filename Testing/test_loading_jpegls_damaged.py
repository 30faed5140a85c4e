"""Damaged JPEG-LS frames fail before any decoder runs, with a LoadError naming the file and frame;
valid ones (the shared real series, and real series DCMTK's dcmcjpls compresses here: near-lossless,
colour in three scans, fragments without an offset table, multi-frame) decode as before.

Why: CharLS takes 5-15 s to give up on a scan that stops without a marker (a truncated file);
DICOMPlusLib.loading.jpegls walks the codestream's markers first. Truth for the valid files: the
series' own uncompressed pixels (lossless) or pydicom decoding the same file (near-lossless).
Decoder calls are counted by wrapping pydicom's ``DecodeRunner._decode_frame`` (every plugin goes
through it) with a counter that calls the real one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.decoders.base import DecodeRunner

from dicomplus_testing.series2 import series2_dir
from DICOMPlusLib import dataclasses_lite
from DICOMPlusLib.errors import LoadError
from DICOMPlusLib.loading import load, load_folder, plan_folder
from DICOMPlusLib.loading.jpegls import SYNTAXES, check_frames

SERIES2 = series2_dir()


@pytest.fixture
def decodes(monkeypatch) -> list[bytes]:
    """A list that gets each frame handed to a decoder plugin."""
    calls: list[bytes] = []
    real = DecodeRunner._decode_frame

    def counted(self, src):
        calls.append(bytes(src))
        return real(self, src)

    monkeypatch.setattr(DecodeRunner, "_decode_frame", counted)
    return calls


def _copy(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def _dcmcjpls(source: Path, target: Path, *options: str) -> Path:
    """Every DICOM file of ``source`` compressed by DCMTK into ``target``."""
    if shutil.which("dcmcjpls") is None:
        pytest.fail("DCMTK's dcmcjpls is needed (apt-get install dcmtk)")
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.name == "DIRFILE" or not path.is_file():
            continue
        subprocess.run(["dcmcjpls", *options, str(path), str(target / path.name)], check=True)
    return target


def _frames(path: Path) -> tuple[pydicom.Dataset, list[bytes]]:
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID in SYNTAXES
    return ds, list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))))


def _rewrite(path: Path, index: int, change, *, offsets: bool = True) -> bytes:
    """Frame ``index`` of ``path`` replaced by ``change(frame bytes)``, one fragment a frame
    (``offsets``: with a Basic Offset Table); returns that frame as a decoder would get it."""
    ds, frames = _frames(path)
    frames[index] = change(frames[index])
    ds.PixelData = encapsulate(frames, has_bot=offsets)
    ds.save_as(path)
    return _frames(path)[1][index]


def _native(volume_array: np.ndarray, folder: Path) -> None:
    """The volume equals the same series loaded from its uncompressed files."""
    [original] = load_folder(folder)
    assert volume_array.dtype == original.array.dtype
    assert np.array_equal(volume_array, original.array)


# -- valid codestreams decode as before -------------------------------------------------------------


def test_the_shared_jpegls_series_loads_as_its_pydicom_decoding(manifest, tmp_path, decodes):
    folder = manifest["dev_mr_jpegls"]["folder"]
    [info] = plan_folder(folder)
    volume = load(info)
    assert len(decodes) == volume.array.shape[0] == len(info.frames)
    # pydicom alone (no check in the way), in the volume's frame order
    stack = np.stack([pydicom.dcmread(f.path).pixel_array for f in info.frames])
    assert np.array_equal(stack.astype(volume.array.dtype), volume.array)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(("+el", "+pz"), id="lossless-zero-padding"),
        pytest.param(("+el", "+fs", "4", "-ot"), id="fragments-without-offset-table"),
    ],
)
def test_dcmcjpls_lossless_ct_decodes_identically(manifest, tmp_path, options, decodes):
    source = manifest["dev_ct_axial_plain"]["folder"]
    [volume] = load_folder(_dcmcjpls(source, tmp_path / "jls", *options))
    assert len(decodes) == volume.array.shape[0]
    _native(volume.array, source)


@pytest.mark.parametrize("table", ["+ot", "-ot"], ids=["offset-table", "no-offset-table"])
def test_dcmcjpls_multiframe_decodes_identically(manifest, tmp_path, table):
    source = manifest["dev_mr_enhanced_small"]["folder"]
    [volume] = load_folder(_dcmcjpls(source, tmp_path / "jls", table))
    _native(volume.array, source)


def test_dcmcjpls_near_lossless_and_three_colour_scans(manifest, tmp_path):
    near = _dcmcjpls(manifest["dev_ct_axial_plain"]["folder"], tmp_path / "near", "+en", "+md", "3")
    [volume] = load_folder(near)
    [original] = load_folder(manifest["dev_ct_axial_plain"]["folder"])
    difference = np.abs(volume.array.astype(np.int32) - original.array.astype(np.int32))
    assert 0 < difference.max() <= 3  # lossy within NEAR, and decoded (not zeros)
    colour = _dcmcjpls(SERIES2 / "dev_color_rgb_planar", tmp_path / "rgb", "+in")
    _, [frame] = _frames(next(colour.iterdir()))
    assert frame.count(b"\xff\xda") == 3  # one scan a component (interleave mode 0)
    [rgb] = load_folder(colour)
    [rgb_native] = load_folder(SERIES2 / "dev_color_rgb_planar")
    assert np.array_equal(rgb.array, rgb_native.array)


# -- damaged codestreams fail before the decoder ------------------------------------------------------


def _header(frame: bytes, offset: int, value: bytes) -> bytes:
    """``frame`` with ``value`` written at ``offset`` bytes into its SOF55 segment."""
    at = frame.index(b"\xff\xf7") + offset
    return frame[:at] + value + frame[at + len(value) :]


def _scan_start(frame: bytes) -> int:
    sos = frame.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(frame[sos + 2 : sos + 4], "big")


DAMAGE = {
    "truncated-half": (lambda b: b[: len(b) // 2], "truncated"),
    "truncated-99%": (lambda b: b[: len(b) * 99 // 100], "truncated"),
    "no-end-marker": (lambda b: b.rstrip(b"\0")[:-2], "truncated"),
    "header-only": (lambda b: b[: _scan_start(b)], "truncated"),
    "sof-rows": (lambda b: _header(b, 5, (512).to_bytes(2, "big")), "512 rows, the data set has 256"),
    "sof-columns": (lambda b: _header(b, 7, (255).to_bytes(2, "big")), "255 columns, the data set has 256"),
    "sof-precision": (lambda b: _header(b, 4, bytes([17])), "17-bit samples"),
    "sof-components": (lambda b: _header(b, 9, bytes([3])), "declares 3 components"),
    "marker-in-scan": (lambda b: b[:1000] + b"\xff\xd8" + b[1002:], "unexpected marker 0xFFD8"),
    "not-jpeg-ls": (lambda b: b"\x00" * 64 + b[64:], "does not start with the SOI marker"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_frame_is_a_load_error_before_any_decoding(manifest, tmp_path, decodes, damage):
    change, expected = DAMAGE[damage]
    folder = _copy(manifest["dev_mr_jpegls"]["folder"], tmp_path / "jls")
    victim = sorted(folder.iterdir())[2]
    damaged = _rewrite(victim, 0, change)
    with pytest.raises(LoadError) as caught:
        load_folder(folder)
    message = str(caught.value)
    assert str(victim) in message and "JPEG-LS" in message and expected in message, message
    # the files before it in the volume may have been decoded; the damaged one never was
    assert len(decodes) < 4 and damaged not in decodes


@pytest.mark.parametrize("offsets", [True, False], ids=["offset-table", "no-offset-table"])
def test_a_damaged_frame_of_a_multiframe_file_is_named(manifest, tmp_path, decodes, offsets):
    folder = _dcmcjpls(manifest["dev_mr_enhanced_small"]["folder"], tmp_path / "jls")
    [victim] = [p for p in folder.iterdir() if int(pydicom.dcmread(p).get("NumberOfFrames", 1)) > 3]
    _rewrite(victim, 3, lambda b: b[: len(b) * 3 // 4], offsets=offsets)
    with pytest.raises(LoadError, match="truncated") as caught:
        load_folder(folder)
    assert f"{victim}#4" in str(caught.value) and "frame 4 of" in str(caught.value)
    assert decodes == []  # the frames of one file are checked together, before any is decoded


def _scramble(frame: bytes) -> bytes:
    data = bytearray(frame)
    start = _scan_start(frame)
    noise = np.random.default_rng(7).integers(0, 0x7F, 400, dtype=np.uint8)  # below 0x80: no marker
    data[start + 5000 : start + 5400] = noise.tobytes()
    return bytes(data)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_scramble, id="random-bytes"),
        pytest.param(lambda b: b[:1000] + b"\xff\xd9" + b[1002:], id="end-marker-early"),
    ],
)
def test_a_well_formed_but_wrong_scan_is_the_decoders_to_find(manifest, tmp_path, decodes, change):
    """The markers are in order, so the check passes the frame (bytes after the end marker are
    ignored by the decoders too); CharLS fails it at once (its slow path is only a scan without an
    end), and the load still ends in a LoadError naming the file."""
    folder = _copy(manifest["dev_mr_jpegls"]["folder"], tmp_path / "jls")
    victim = sorted(folder.iterdir())[0]
    damaged = _rewrite(victim, 0, change)
    with pytest.raises(LoadError, match="cannot decode") as caught:
        load_folder(folder)
    assert str(victim) in str(caught.value)
    assert damaged in decodes


@pytest.mark.parametrize("offset", [-1, 0, 17], ids=["not-noted", "file-start", "stale"])
def test_frames_are_found_when_the_noted_pixel_offset_is_missing_or_stale(manifest, tmp_path, offset):
    """A frame planned from a database whose file changed since, or from a source that noted no
    offset: the check finds the pixel data as pydicom does, and still tells good from damaged."""
    folder = _copy(manifest["dev_mr_jpegls"]["folder"], tmp_path / "jls")
    [info] = plan_folder(folder)
    frames = [dataclasses_lite.replace(f, pixel_offset=offset) for f in info.frames]
    for f in frames:
        check_frames(f.path, [f])
    _rewrite(Path(frames[0].path), 0, lambda b: b[: len(b) // 2])
    with pytest.raises(LoadError, match="truncated"):
        check_frames(frames[0].path, [frames[0]])
