"""Colour images load as RGB equal to pydicom's converted pixels: RGB (both planar
configurations), YBR_FULL and YBR_FULL_422 (native and JPEG baseline), PALETTE COLOR, and 8-bit
data of big-endian files; ``convert`` writes an RGB NIfTI.

Truth is the array each test encodes (or pydicom's own ``pixel_array``/``apply_color_lut``),
never our reader.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import apply_color_lut, convert_color_space
from pydicom.uid import ExplicitVRBigEndian
from test_loading_support import edit, geometric_files, make

from dicomplus_testing.series2 import series2_entry
from DICOMPlusLib.cli import main
from DICOMPlusLib.loading import load, load_folder, plan_folder
from DICOMPlusLib.loading.preview import thumbnail_image


def _rgb(n: int, rows: int, cols: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, rows, cols, 3), dtype=np.uint8)


def _colour_series(tmp_path, rgb, change):
    """A synthetic placed series whose slices get ``change(ds, k)`` (colour attributes)."""
    series = make(tmp_path / "s", n=rgb.shape[0], rows=rgb.shape[1], cols=rgb.shape[2], modality="MR")
    files = geometric_files(series)

    def colour(ds, k):
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        change(ds, k)

    edit(files, colour)
    return series, files


def test_rgb_both_planar_configurations(tmp_path):
    rgb = _rgb(3, 6, 10)

    def planar(ds, k):
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = k % 2
        ds.PixelData = (np.moveaxis(rgb[k], -1, 0) if k % 2 else rgb[k]).tobytes()

    series, _ = _colour_series(tmp_path, rgb, planar)
    (volume,) = load_folder(series.folder)
    assert volume.array.shape == (3, 6, 10, 3) and volume.array.dtype == np.uint8
    assert np.array_equal(volume.array, rgb)


def test_ybr_full_native_becomes_rgb(tmp_path):
    rgb = _rgb(2, 8, 12)
    ybr = convert_color_space(rgb.copy(), "RGB", "YBR_FULL")

    def full(ds, k):
        ds.PhotometricInterpretation = "YBR_FULL"
        ds.PixelData = ybr[k].tobytes()

    series, files = _colour_series(tmp_path, rgb, full)
    (volume,) = load_folder(series.folder)
    truth = np.stack([pydicom.dcmread(f).pixel_array for f in files])
    assert np.array_equal(volume.array, truth)
    assert int(np.abs(volume.array.astype(int) - rgb).max()) <= 2  # YBR rounding


def test_ybr_full_422_native_is_upsampled_and_converted(tmp_path):
    rgb = _rgb(2, 6, 10)
    ybr = convert_color_space(rgb.copy(), "RGB", "YBR_FULL").astype(np.int32)

    def subsampled(ds, k):
        # PS3.3 C.7.6.3.1.2: Y1 Y2 Cb Cr for each pair of pixels, chroma shared by the pair
        y = ybr[k, ..., 0].reshape(-1, 2)
        cb = ybr[k, ..., 1].reshape(-1, 2).mean(axis=1).round()
        cr = ybr[k, ..., 2].reshape(-1, 2).mean(axis=1).round()
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PixelData = np.column_stack([y, cb, cr]).astype(np.uint8).tobytes()

    series, files = _colour_series(tmp_path, rgb, subsampled)
    (volume,) = load_folder(series.folder)
    truth = np.stack([pydicom.dcmread(f).pixel_array for f in files])
    assert truth.shape == volume.array.shape == (2, 6, 10, 3)
    assert np.array_equal(volume.array, truth)


@pytest.mark.parametrize("bits", [8, 16])
def test_palette_colour_goes_through_the_tables(tmp_path, bits):
    series = make(tmp_path / "s", n=2, rows=7, cols=9, modality="MR")
    files = geometric_files(series)
    indices = np.random.default_rng(1).integers(0, 256, size=(2, 7, 9), dtype=np.uint8)
    scale = 257 if bits == 16 else 1
    tables = [(np.arange(256) * scale)[::step] for step in (1, -1)] + [np.full(256, 77 * scale)]

    def palette(ds, k):
        ds.PhotometricInterpretation = "PALETTE COLOR"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        dtype = "<u2" if bits == 16 else "<u1"
        for colour, table in zip(("Red", "Green", "Blue"), tables, strict=True):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, bits])
            ds[f"{colour}PaletteColorLookupTableDescriptor"].VR = "US"
            data = table.astype(dtype).tobytes()
            setattr(ds, f"{colour}PaletteColorLookupTableData", data + b"\0" * (len(data) % 2))
        ds.PixelData = indices[k].tobytes()

    edit(files, palette)
    (info,) = plan_folder(series.folder)
    assert info.components == 3
    volume = load(info)
    truth = np.stack([apply_color_lut(indices[k], pydicom.dcmread(f)) for k, f in enumerate(files)])
    assert volume.array.dtype == np.uint16
    assert np.array_equal(volume.array, truth)
    assert np.array_equal(volume.array[..., 0], indices.astype(np.uint16) * scale)
    assert thumbnail_image(info).ndim == 3  # previews show colours, not indices


def _big_endian_ow(values: np.ndarray) -> bytes:
    """8-bit values as big-endian OW: bytes swapped within each 16-bit word (PS3.5 A.3)."""
    data = values.tobytes() + b"\0" * (values.size % 2)
    return np.frombuffer(data, np.uint8).reshape(-1, 2)[:, ::-1].tobytes()


def _rewrite_big_endian(files, arrays) -> None:
    for path, values in zip(files, arrays, strict=True):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        ds.PixelData = _big_endian_ow(values)
        ds["PixelData"].VR = "OW"
        pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)


def test_eight_bit_big_endian_is_word_swapped(tmp_path):
    series = make(tmp_path / "s", n=2, rows=5, cols=7, modality="MR")  # odd pixel count: padded
    files = geometric_files(series)
    values = (series.pixels % 256).astype(np.uint8)

    def eight(ds, k):
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0

    edit(files, eight)
    _rewrite_big_endian(files, values)
    assert np.array_equal(pydicom.dcmread(files[1]).pixel_array, values[1])  # the file is right
    (volume,) = load_folder(series.folder)
    assert volume.info.frames[0].transfer_syntax == ExplicitVRBigEndian
    assert np.array_equal(volume.array, values)


def test_rgb_big_endian(tmp_path):
    rgb = _rgb(2, 4, 6)

    def plain(ds, k):
        ds.PhotometricInterpretation = "RGB"

    series, files = _colour_series(tmp_path, rgb, plain)
    _rewrite_big_endian(files, rgb)
    (volume,) = load_folder(series.folder)
    assert np.array_equal(volume.array, rgb)


def _nifti_header(path) -> tuple[int, tuple[int, ...]]:
    raw = gzip.decompress(path.read_bytes())
    dim = struct.unpack_from("<8h", raw, 40)
    datatype = struct.unpack_from("<h", raw, 70)[0]
    return datatype, dim


def test_convert_writes_an_rgb_nifti(tmp_path, capsys):
    entry = series2_entry("dev_color_ybr_jpeg")
    out = tmp_path / "us.nii.gz"
    assert main(["convert", str(entry["folder"]), "--out", str(out)]) == 0
    capsys.readouterr()
    datatype, dim = _nifti_header(out)
    # RGB24, or three samples on dimension 4 or 5 (intent vector)
    assert datatype == 128 or (dim[0] >= 4 and 3 in dim[4:6]), (datatype, dim)
    image = sitk.ReadImage(str(out))
    assert image.GetNumberOfComponentsPerPixel() == 3
    assert list(image.GetSize()) == entry["expected"]["dims"]
    written = sitk.GetArrayFromImage(image)
    truth = pydicom.dcmread(next(entry["folder"].glob("*"))).pixel_array
    assert written.shape == truth.shape
    assert int(np.abs(written.astype(int) - truth.astype(int)).max()) <= entry["expected"]["rgb_tolerance"]


def _jpeg_baseline(rgb: np.ndarray) -> bytes:
    """One RGB frame as a JFIF baseline JPEG (YCbCr 4:2:2 inside), written by Pillow."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, "JPEG", quality=95, subsampling=1)
    return out.getvalue()


@pytest.mark.parametrize("codec", ["jpeg-baseline", "jpeg-labelled-rgb", "rle"])
def test_compressed_colour_equals_pydicom(tmp_path, codec):
    """Compressed colour: a baseline JPEG (YBR_FULL_422, YCbCr inside the JPEG), the same JPEG
    labelled RGB (a common mislabelling: decoders' raw output is then YCbCr) and RLE (RGB): the
    loaded voxels are pydicom's RGB pixels, JPEG within 3 levels."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, RLELossless

    rgb = _rgb(2, 16, 24)
    rgb[:, :8] = (200, 30, 30)  # flat areas survive JPEG within a few levels

    def plain(ds, k):
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = rgb[k].tobytes()

    series, files = _colour_series(tmp_path, rgb, plain)
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        if codec == "rle":
            ds.compress(RLELossless)
        else:
            ds.PhotometricInterpretation = "YBR_FULL_422" if codec == "jpeg-baseline" else "RGB"
            ds.PixelData = encapsulate([_jpeg_baseline(rgb[k])])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
            ds.LossyImageCompression = "01"
        ds.save_as(path)
    (volume,) = load_folder(series.folder)
    truth = np.stack([pydicom.dcmread(f).pixel_array for f in files])
    assert volume.array.shape == truth.shape == (2, 16, 24, 3)
    tolerance = 0 if codec == "rle" else 3
    assert int(np.abs(volume.array.astype(int) - truth.astype(int)).max()) <= tolerance
    if codec != "jpeg-labelled-rgb":  # pydicom trusts the label there
        assert int(np.abs(volume.array[:, 2:6, 1:6].astype(int) - [200, 30, 30]).max()) <= 12
