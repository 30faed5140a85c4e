"""DICOM SEG loading: segments, voxel counts and labelmaps, from our own export and from highdicom.

The labelmap's voxel value is the segment number (FRACTIONAL: fraction >= 0.5); its grid is the
SEG's own frames (orientation, pixel spacing, slices from the lowest to the highest frame).
Expected values come from the input arrays the test writes (highdicom and our exporter), never
from our reader.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pydicom
import pytest
from test_loading_support import assert_matrix

from dicomplus_testing.series2 import series2_entries, series2_entry
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.cli import main
from DICOMPlusLib.errors import LoadError
from DICOMPlusLib.export.seg import SegmentInfo, export_segmentation
from DICOMPlusLib.loading import load, plan_folder
from DICOMPlusLib.loading.seg import lab_to_rgb, layout_of, read_segment_masks

hd = pytest.importorskip("highdicom")


def _sources(series) -> list[pydicom.Dataset]:
    """The source images in slice order (highdicom maps array frames to them in list order)."""
    normal = series.ijk_to_lps[:3, 2]
    datasets = [pydicom.dcmread(f) for f in series.files]
    return sorted(datasets, key=lambda ds: float(np.asarray(ds.ImagePositionPatient, float) @ normal))


def _only(folder):
    (info,) = plan_folder(folder)
    return info


def _in_source_grid(volume, source_matrix, shape) -> np.ndarray:
    """The loaded labelmap placed on the source grid (its k offset read from the matrices)."""
    assert np.allclose(volume.ijk_to_lps[:3, :3], source_matrix[:3, :3], atol=1e-4)
    step = source_matrix[:3, 2]
    offset = (volume.ijk_to_lps[:3, 3] - source_matrix[:3, 3]) @ step / (step @ step)
    k0 = round(float(offset))
    assert abs(offset - k0) < 1e-4
    out = np.zeros(shape, volume.array.dtype)
    out[k0 : k0 + volume.array.shape[0]] = volume.array
    return out


def test_our_export_reads_back_to_the_same_labelmap(tmp_path):
    series = make_series(tmp_path / "ct", n=7, rows=20, cols=24)
    labels = np.zeros(series.pixels.shape, np.uint8)
    labels[2:5, 3:9, 4:12] = 4
    labels[3:6, 10:18, 12:20] = 9  # slices 0, 1 and 6 stay empty: the SEG has no frame there
    segments = [SegmentInfo(4, "liver", (220, 40, 40)), SegmentInfo(9, "tumour", (40, 200, 60))]
    result = export_segmentation(
        labels, series.ijk_to_lps, _sources(series), segments, tmp_path / "seg" / "S.dcm"
    )
    info = _only(tmp_path / "seg")
    layout = layout_of(info)
    assert layout.segmentation_type == "BINARY"
    assert [(s.number, s.label, s.voxels) for s in layout.segments] == [
        (1, "liver", int((labels == 4).sum())),
        (2, "tumour", int((labels == 9).sum())),
    ]
    # the colour goes through CIELab and back
    assert [s.color for s in layout.segments] == [(220, 40, 40), (40, 200, 60)]
    assert layout.referenced_series_uid == series.series_uid
    volume = load(info)
    expected = np.zeros_like(labels)
    for value, number in result.segment_numbers.items():
        expected[labels == value] = number
    assert np.array_equal(_in_source_grid(volume, series.ijk_to_lps, labels.shape), expected)


def _hd_seg(series, masks, kind, path, **kwargs):
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=f"region {n}",
            segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
            segmented_property_type=hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
            algorithm_type="MANUAL",
            display_color=hd.color.CIELabColor.from_rgb(10 * n, 100, 200),
        )
        for n in range(1, masks.shape[-1] + 1)
    ]
    seg = hd.seg.Segmentation(
        source_images=_sources(series),
        pixel_array=masks,
        segmentation_type=kind,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=5,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
        **kwargs,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


def test_highdicom_binary_seg_with_unaligned_frames_and_overlap(tmp_path):
    # 5 x 7 = 35 bits per frame: every frame after the first starts inside a byte
    series = make_series(tmp_path / "ct", n=6, rows=5, cols=7)
    rng = np.random.default_rng(7)
    masks = rng.random((6, 5, 7, 3)) > 0.6
    masks[0] = False  # first slice empty everywhere: omitted by highdicom
    _hd_seg(series, masks, hd.seg.SegmentationTypeValues.BINARY, tmp_path / "seg" / "S.dcm")
    info = _only(tmp_path / "seg")
    layout = layout_of(info)
    assert [s.voxels for s in layout.segments] == [int(masks[..., n].sum()) for n in range(3)]
    assert layout.segments[1].color == (20, 100, 200)
    overlap = int((masks.sum(axis=-1) > 1).sum())
    assert overlap > 0 and layout.overlap_voxels == int(
        sum(masks[..., n].sum() for n in range(3)) - masks.any(axis=-1).sum()
    )
    assert "segments_overlap" in {w.code for w in info.warnings}
    volume = load(info)
    expected = np.zeros(masks.shape[:3], np.uint8)
    for n in range(3):
        expected[masks[..., n]] = n + 1  # the highest number wins
    assert np.array_equal(_in_source_grid(volume, series.ijk_to_lps, expected.shape), expected)
    shown = read_segment_masks(info)
    for n in range(3):
        placed = np.zeros(masks.shape[:3], bool)
        placed[1:] = shown[n + 1]
        assert np.array_equal(placed, masks[..., n])


@pytest.mark.parametrize(
    "syntax",
    [
        "1.2.840.10008.1.2.1",  # explicit VR little endian
        "1.2.840.10008.1.2.5",  # RLE lossless
        "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    ],
)
def test_highdicom_fractional_seg_uses_half(tmp_path, syntax):
    series = make_series(tmp_path / "ct", n=4, rows=40, cols=36)
    fractions = np.linspace(0.0, 1.0, 4 * 40 * 36).reshape(4, 40, 36)
    _hd_seg(
        series,
        fractions[..., None],
        hd.seg.SegmentationTypeValues.FRACTIONAL,
        tmp_path / "seg" / "S.dcm",
        max_fractional_value=200,
        transfer_syntax_uid=syntax,
    )
    assert pydicom.dcmread(tmp_path / "seg" / "S.dcm").file_meta.TransferSyntaxUID == syntax
    info = _only(tmp_path / "seg")
    stored = np.rint(fractions * 200)
    expected = (stored >= 100).astype(np.uint8)
    assert layout_of(info).segments[0].voxels == int(expected.sum())
    assert np.array_equal(_in_source_grid(load(info), series.ijk_to_lps, expected.shape), expected)


def test_highdicom_labelmap_seg(tmp_path):
    series = make_series(tmp_path / "ct", n=5, rows=10, cols=9)
    labels = np.zeros((5, 10, 9), np.uint8)
    labels[1:4, 2:6, 1:5] = 1
    labels[2:5, 5:9, 4:8] = 2
    masks = np.stack([labels == 1, labels == 2], axis=-1)
    _hd_seg(series, masks, hd.seg.SegmentationTypeValues.LABELMAP, tmp_path / "seg" / "S.dcm")
    info = _only(tmp_path / "seg")
    assert layout_of(info).segmentation_type == "LABELMAP"
    assert [s.voxels for s in layout_of(info).segments] == [
        int((labels == 1).sum()),
        int((labels == 2).sum()),
    ]
    assert np.array_equal(_in_source_grid(load(info), series.ijk_to_lps, labels.shape), labels)


@pytest.mark.parametrize(
    ("number", "message"), [(7, r"segments \[7\]"), (None, "no ReferencedSegmentNumber")]
)
def test_seg_referencing_an_undescribed_segment_is_refused(tmp_path, capsys, number, message):
    """An undescribed segment number, or an empty one (found by fuzzing the binary SEG of
    series2: a TypeError), is a LoadError that names it."""
    series = make_series(tmp_path / "ct", n=3, rows=8, cols=8)
    masks = np.zeros((3, 8, 8, 1), bool)
    masks[1, 2:5, 2:5, 0] = True
    path = _hd_seg(series, masks, hd.seg.SegmentationTypeValues.BINARY, tmp_path / "seg" / "S.dcm")
    ds = pydicom.dcmread(path)
    for group in (*ds.SharedFunctionalGroupsSequence, *ds.PerFrameFunctionalGroupsSequence):
        if "SegmentIdentificationSequence" in group:
            group.SegmentIdentificationSequence[0].ReferencedSegmentNumber = number
    ds.save_as(path)
    with pytest.raises(LoadError, match=message):
        plan_folder(tmp_path / "seg")
    assert main(["inspect", str(tmp_path / "seg")]) != 0
    assert re.search(message, capsys.readouterr().err)


def test_lab_to_rgb_matches_highdicom():
    for rgb in [(0, 0, 0), (255, 255, 255), (128, 174, 128), (220, 40, 40), (3, 250, 17)]:
        value = hd.color.CIELabColor.from_rgb(*rgb).value
        assert lab_to_rgb(value) == hd.color.CIELabColor.from_dicom_value(value).to_rgb()
        assert max(abs(a - b) for a, b in zip(lab_to_rgb(value), rgb, strict=True)) <= 1


SEG_IDS = sorted(series2_entries("seg")) or ["series2-missing"]


@pytest.mark.parametrize("sid", SEG_IDS)
def test_series2_seg_inspect_and_convert(sid, tmp_path, capsys):
    entry = series2_entry(sid)
    expected = entry["expected"]
    assert main(["inspect", str(entry["folder"]), "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["volumes"]
    assert doc["dims"] == expected["dims"]
    assert_matrix(doc["ijk_to_ras"], expected["ijk_to_ras"], mm=0.05)
    assert doc["segmentation_type"] == expected["segmentation_type"]
    assert [{k: s[k] for k in ("number", "label", "voxels")} for s in doc["segments"]] == [
        {k: s[k] for k in ("number", "label", "voxels")} for s in expected["segments"]
    ]
    out = tmp_path / "labels.nii.gz"
    assert main(["convert", str(entry["folder"]), "--out", str(out)]) == 0
    import SimpleITK as sitk

    written = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert list(written.shape[::-1]) == expected["dims"]
    for segment in expected["segments"]:
        assert int((written == segment["number"]).sum()) == segment["voxels"]
    # the labelmap equals highdicom's own reading of the file
    seg = hd.seg.segread(next(entry["folder"].glob("*.dcm")))
    volume = seg.get_volume(combine_segments=False)
    array = volume.array
    if expected["segmentation_type"] == "FRACTIONAL":
        array = array >= 0.5
    reference = np.zeros(array.shape[:3], np.uint8)
    for index, number in enumerate(seg.get_segment_numbers()):
        reference[array[..., index] > 0] = number
    # highdicom's first axis is its slice axis; ours runs along row x column
    normal = np.cross(volume.affine[:3, 2], volume.affine[:3, 1])
    if float(volume.affine[:3, 0] @ normal) < 0:
        reference = reference[::-1]
    assert np.array_equal(written, reference)


def test_tiled_slide_seg_is_refused_clearly(tmp_path):
    series = make_series(tmp_path / "ct", n=2, rows=8, cols=8)
    masks = np.zeros((2, 8, 8, 1), bool)
    masks[1, 2:5, 2:5, 0] = True
    path = _hd_seg(series, masks, hd.seg.SegmentationTypeValues.BINARY, tmp_path / "seg" / "S.dcm")
    ds = pydicom.dcmread(path)
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.save_as(path)
    with pytest.raises(LoadError, match="tiled"):
        plan_folder(tmp_path / "seg")


def test_seg_thumbnail_shows_the_middle_slice_in_segment_colours(tmp_path):
    from DICOMPlusLib.loading.preview import thumbnail_image

    series = make_series(tmp_path / "ct", n=5, rows=32, cols=32)
    labels = np.zeros((5, 32, 32), np.uint8)
    labels[1:4, 4:20, 4:20] = 1
    labels[2, 22:30, 22:30] = 2
    segments = [SegmentInfo(1, "a", (250, 10, 10)), SegmentInfo(2, "b", (10, 250, 10))]
    export_segmentation(labels, series.ijk_to_lps, _sources(series), segments, tmp_path / "seg" / "S.dcm")
    info = _only(tmp_path / "seg")
    image = thumbnail_image(info, size=32)
    assert image.shape == (28, 32, 3) and image.dtype == np.uint8  # rows 0.7 mm, columns 0.8 mm apart
    colours = {tuple(int(c) for c in p) for p in image.reshape(-1, 3)}
    assert colours == {(0, 0, 0), (250, 10, 10), (10, 250, 10)}  # slice 2 holds both segments
    assert tuple(image[0, 0]) == (0, 0, 0) and tuple(image[10, 10]) == (250, 10, 10)


def test_preview_reads_a_binary_frame(tmp_path):
    """The browser's preview decodes frames one by one: a 1-bit SEG frame gives 0/1."""
    from DICOMPlusLib.loading.preview import read_frame

    series = make_series(tmp_path / "ct", n=3, rows=5, cols=7)  # 35 bits per frame: unaligned
    masks = np.zeros((3, 5, 7, 1), bool)
    masks[1, 1:4, 2:6, 0] = True
    masks[2, 0, 0, 0] = True
    _hd_seg(series, masks, hd.seg.SegmentationTypeValues.BINARY, tmp_path / "seg" / "S.dcm")
    info = _only(tmp_path / "seg")
    assert [int(read_frame(f).sum()) for f in info.frames] == [12, 1]
    assert np.array_equal(read_frame(info.frames[0]), masks[1, ..., 0].astype(np.int16))
