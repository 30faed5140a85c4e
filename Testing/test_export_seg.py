"""DICOM SEG export: read back with highdicom (segments, labels, colours, voxels, references),
validated by dciodvfy, refused for labels without descriptions and reused series UIDs."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database
from DICOMPlusLib.errors import ExportError
from DICOMPlusLib.export.seg import (
    SegmentInfo,
    export_segmentation,
    export_segmentation_for_series,
    source_headers,
)

hd = pytest.importorskip("highdicom")

SEGMENTS = [
    SegmentInfo(
        3,
        "liver",
        (220, 40, 40),
        category=("123037004", "SCT", "Anatomical Structure"),
        property_type=("10200004", "SCT", "Liver"),
    ),
    SegmentInfo(
        7,
        "tumour",
        (40, 200, 60),
        category=("49755003", "SCT", "Morphologically Altered Structure"),
        property_type=("108369006", "SCT", "Neoplasm"),
    ),
    SegmentInfo(9, "unused", (10, 20, 250)),
]


@pytest.fixture
def source(tmp_path):
    series = make_series(tmp_path / "src", n=6, rows=20, cols=24)
    db = Database(tmp_path / "db")
    db.import_paths([series.folder])
    yield db, series
    db.close()


def _labelmap(shape) -> np.ndarray:
    labels = np.zeros(shape, np.int16)
    labels[1:4, 2:10, 3:12] = 3
    labels[2:6, 8:18, 10:20] = 7  # overlaps and overwrites part of 3
    return labels


def test_seg_reads_back_in_highdicom(source, tmp_path):
    db, series = source
    labels = _labelmap(series.pixels.shape)
    result = export_segmentation_for_series(
        db,
        series.series_uid,
        labels,
        series.ijk_to_lps,
        SEGMENTS,
        out_path=tmp_path / "seg" / "SEG.dcm",
        series_description="Liver and tumour",
    )
    assert result.indexed and result.segment_numbers == {3: 1, 7: 2, 9: 3}
    seg = hd.seg.segread(result.path)
    assert seg.StudyInstanceUID == series.study_uid
    assert seg.SeriesInstanceUID == result.series_uid != series.series_uid
    assert seg.SeriesDescription == "Liver and tumour"
    assert seg.SeriesNumber == 2
    assert seg.FrameOfReferenceUID == pydicom.dcmread(series.files[0]).FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_uid
    assert seg.get_segment_numbers() == [1, 2, 3]
    for number, segment in zip([1, 2, 3], SEGMENTS, strict=True):
        description = seg.get_segment_description(number)
        assert description.segment_label == segment.label
        assert description.SegmentedPropertyTypeCodeSequence[0].CodeValue == segment.property_type[0]
        assert description.SegmentedPropertyCategoryCodeSequence[0].CodeValue == segment.category[0]
        rgb = hd.color.CIELabColor.from_dicom_value(description.RecommendedDisplayCIELabValue).to_rgb()
        assert np.abs(np.array(rgb) - np.array(segment.color)).max() <= 1
    # voxels, per source instance in geometric order (series.sop_uids)
    read = seg.get_pixels_by_source_instance(source_sop_instance_uids=series.sop_uids, combine_segments=True)
    expected = np.select([labels == 3, labels == 7], [1, 2], 0)
    assert np.array_equal(read, expected)
    # the database knows it, under the source study
    assert db.search("series", {"SeriesInstanceUID": result.series_uid})[0].Modality == "SEG"


def test_seg_on_its_own_grid_keeps_its_geometry(source, tmp_path):
    """A labelmap on another grid (coarser, same frame of reference): highdicom stores plane
    positions, and the volume comes back at the same place."""
    _, series = source
    matrix = series.ijk_to_lps.copy()
    matrix[:3, :2] *= 2.0  # every other row and column
    labels = np.zeros((3, 10, 12), np.uint8)
    labels[1, 2:5, 3:9] = 5
    result = export_segmentation(
        labels,
        matrix,
        [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files],
        [SegmentInfo(5, "blob")],
        tmp_path / "seg.dcm",
    )
    volume = hd.seg.segread(result.path).get_volume(combine_segments=True)
    indices = np.argwhere(volume.array > 0)
    lps = (volume.affine[:3, :3] @ indices.T + volume.affine[:3, 3:4]).T
    ijk = np.linalg.solve(matrix[:3, :3], (lps - matrix[:3, 3]).T).T
    assert np.abs(ijk - np.rint(ijk)).max() < 1e-4
    found = {tuple(int(v) for v in np.rint(x)) for x in ijk}
    expected = {(i, j, k) for k, j, i in np.argwhere(labels > 0)}
    assert found == expected


@pytest.mark.peers
def test_seg_passes_dciodvfy(source, tmp_path, dciodvfy_tool):
    db, series = source
    result = export_segmentation_for_series(
        db,
        series.series_uid,
        _labelmap(series.pixels.shape),
        series.ijk_to_lps,
        SEGMENTS[:2],
        out_path=tmp_path / "SEG.dcm",
        index=False,
    )
    report = dciodvfy_tool(result.path)
    assert report.iod == "Segmentation", report.output
    assert report.errors == [], report.output


def test_label_without_description_is_refused(source, tmp_path):
    db, series = source
    labels = _labelmap(series.pixels.shape)
    with pytest.raises(ExportError, match=r"label values \[7\]"):
        export_segmentation(
            labels, series.ijk_to_lps, source_headers(db, series.series_uid), SEGMENTS[:1], tmp_path / "a.dcm"
        )
    assert not (tmp_path / "a.dcm").exists()


@pytest.mark.parametrize(
    "segment",
    [
        SegmentInfo(1, ""),
        SegmentInfo(1, "a\\b"),
        SegmentInfo(1, "x", color=(300, 0, 0)),
        SegmentInfo(1, "x", algorithm_type="GUESSED"),
        SegmentInfo(1, "x", algorithm_type="AUTOMATIC"),  # without an algorithm name
        SegmentInfo(0, "background"),
    ],
)
def test_bad_segment_descriptions_are_refused(source, tmp_path, segment):
    db, series = source
    labels = np.zeros(series.pixels.shape, np.uint8)
    labels[0, 0, 0] = max(segment.value, 1)
    with pytest.raises(ExportError):
        export_segmentation(
            labels, series.ijk_to_lps, source_headers(db, series.series_uid), [segment], tmp_path / "a.dcm"
        )


def test_automatic_segment_with_algorithm(source, tmp_path):
    db, series = source
    labels = np.zeros(series.pixels.shape, np.uint8)
    labels[2, 3:6, 3:6] = 1
    segment = SegmentInfo(1, "auto", algorithm_type="AUTOMATIC", algorithm_name="ThresholdSeg")
    result = export_segmentation(
        labels, series.ijk_to_lps, source_headers(db, series.series_uid), [segment], tmp_path / "a.dcm"
    )
    description = hd.seg.segread(result.path).get_segment_description(1)
    assert description.SegmentAlgorithmType == "AUTOMATIC"
    assert description.SegmentAlgorithmName == "ThresholdSeg"


def test_float_labelmap_and_existing_series_are_refused(source, tmp_path):
    db, series = source
    headers = source_headers(db, series.series_uid)
    with pytest.raises(ExportError, match="integers"):
        export_segmentation(
            np.zeros(series.pixels.shape, np.float32),
            series.ijk_to_lps,
            headers,
            SEGMENTS,
            tmp_path / "a.dcm",
        )
    labels = np.zeros(series.pixels.shape, np.uint8)
    labels[0, 0, 0] = 3
    with pytest.raises(ExportError, match="already exists"):
        export_segmentation(
            labels,
            series.ijk_to_lps,
            headers,
            SEGMENTS[:1],
            tmp_path / "b.dcm",
            series_uid=series.series_uid,
            db=db,
        )
    with pytest.raises(ExportError, match="not a valid DICOM UID"):
        export_segmentation(
            labels, series.ijk_to_lps, headers, SEGMENTS[:1], tmp_path / "c.dcm", series_uid="1.2.x"
        )


def test_tilted_source_is_written_frame_by_frame(tmp_path, dciodvfy_tool):
    """A gantry-tilted source (sheared grid): no highdicom Volume can hold it, so every frame
    gets its own position; our reader gives the same sheared grid and labelmap back."""
    from test_loading_support import tilt_series

    from DICOMPlusLib.loading import load, plan_folder

    series = make_series(tmp_path / "src", n=6, rows=20, cols=24)
    sheared = tilt_series(series, 15.0, tag=True)
    labels = _labelmap(series.pixels.shape)
    result = export_segmentation(
        labels,
        sheared,
        [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files],
        SEGMENTS[:2],
        tmp_path / "seg" / "SEG.dcm",
    )
    assert "sheared_grid" in {n.code for n in result.notes}
    (info,) = plan_folder(tmp_path / "seg")
    step = sheared[:3, 2]
    k0 = round(float((info.ijk_to_lps[:3, 3] - sheared[:3, 3]) @ step / (step @ step)))
    assert np.abs(info.ijk_to_lps[:3, :3] - sheared[:3, :3]).max() < 1e-3  # positions are DS text
    assert info.tilt_deg == pytest.approx(15.0, abs=0.01)
    assert np.abs(info.ijk_to_lps[:3, 3] - (sheared[:3, 3] + k0 * sheared[:3, 2])).max() < 1e-3
    back = np.zeros_like(labels, dtype=np.uint8)
    back[k0 : k0 + info.shape[0]] = load(info).array
    assert np.array_equal(back, np.select([labels == 3, labels == 7], [1, 2], 0))
    report = dciodvfy_tool(result.path)
    assert report.errors == [], report.output
    # --resample would interpolate labels: the SEG keeps its grid and says so
    kept = load(info, resample=True)
    assert np.array_equal(kept.ijk_to_lps, info.ijk_to_lps)
    assert "segmentation_not_resampled" in {w.code for w in kept.warnings}


def test_invalid_copied_values_are_cleaned_and_reported(source, tmp_path, dciodvfy_tool):
    db, series = source
    headers = source_headers(db, series.series_uid)
    for header in headers:
        header.StudyDate = "***"  # Type 2: written empty
        header.PatientAge = "0Y"  # Type 3: left out
    result = export_segmentation(
        _labelmap(series.pixels.shape), series.ijk_to_lps, headers, SEGMENTS[:2], tmp_path / "SEG.dcm"
    )
    notes = {n.message.split(" ")[0]: n for n in result.notes}
    assert {"StudyDate", "PatientAge"} <= set(notes)
    assert all(n.code == "invalid_value_cleaned" for n in result.notes if n.message.split(" ")[0] in notes)
    assert "written empty" in notes["StudyDate"].message and "left out" in notes["PatientAge"].message
    assert [n["code"] for n in result.to_dict()["notes"]].count("invalid_value_cleaned") == 2
    written = pydicom.dcmread(result.path, stop_before_pixels=True)
    assert written.StudyDate == "" and "PatientAge" not in written
    assert written.StudyInstanceUID == series.study_uid
    assert headers[0].StudyDate == "***"  # the caller's datasets are not changed
    report = dciodvfy_tool(result.path)
    assert report.errors == [], report.output
