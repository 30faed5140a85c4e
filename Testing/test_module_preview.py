"""The series preview (DICOMPlusWidgets.DICOMPlusPreviewWidget) under the harness.

The gantry-tilted CT and the 4D fMRI of ../shared/data/series are imported into a temporary
database through the Logic. The expected slice order is derived independently of DICOMPlusLib:
the manifest's IJK->LPS matrix gives the position of slice k (origin + k * third column), and
pydicom finds the file at that position (the lowest InstanceNumber there for the 4D series: its
first time point) and decodes its pixels.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from dicomplus_testing.harness import fit_panel
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.loading import load_series

SERIES = ("dev_ct_gantry_tilt", "dev_mr_4d_fmri")


def series_uid_of(entry):
    for path in sorted(entry["folder"].iterdir()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if "SeriesInstanceUID" in ds and "SOPInstanceUID" in ds:
            return ds.SeriesInstanceUID
    raise AssertionError(f"no series in {entry['folder']}")


def files_at_slices(entry):
    """For each k, the files at position origin + k * third column of the manifest's IJK->LPS,
    by InstanceNumber (for the 4D series: one per time point)."""
    lps = np.array(entry["expected"]["ijk_to_lps"])
    found = []
    for path in sorted(entry["folder"].iterdir()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if "ImagePositionPatient" in ds:
            found.append((np.array(ds.ImagePositionPatient, float), int(ds.InstanceNumber), path))
    out = []
    for k in range(entry["expected"]["dims"][2]):
        position = lps[:3, 3] + k * lps[:3, 2]
        here = sorted((number, path) for ipp, number, path in found if np.allclose(ipp, position, atol=0.01))
        assert here, f"no file at slice {k} ({position})"
        out.append([path for _, path in here])
    return out


def pydicom_values(path):
    ds = pydicom.dcmread(path)
    return ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))


def rendered(widget):
    """What ``widget`` shows, as an (h, w, 4) uint8 array."""
    import qt

    image = widget.grab().toImage().convertToFormat(qt.QImage.Format_RGB32)
    data = np.frombuffer(image.constBits(), np.uint8, count=image.sizeInBytes())
    rows = data.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 4]
    return rows.reshape(image.height(), image.width(), 4).copy()  # the QImage's memory goes with it


@pytest.fixture
def logic(dicomplus_module, tmp_path, manifest):
    logic = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db" / "dicomplus.sqlite")
    folders = [manifest[name]["folder"] for name in (*SERIES, "dev_mr_mixed_orientation")]
    assert logic.importFolder(folders).get().added > 0
    yield logic
    logic.closeDatabase()


@pytest.fixture
def preview(dicomplus_module, logic, qtbot):
    import DICOMPlusWidgets

    widget = DICOMPlusWidgets.DICOMPlusPreviewWidget(logic)
    qtbot.addWidget(widget)
    widget.resize(420, 560)
    widget.show()
    yield widget
    widget.cleanup()


def show(preview, qtbot, uid):
    shown = []
    preview.seriesShown.connect(shown.append)
    preview.setSeries(uid)
    qtbot.waitUntil(lambda: shown == [uid] and preview.isSliceReady(), timeout=30_000)
    preview.seriesShown.disconnect(shown.append)


@pytest.mark.parametrize("series_id", SERIES)
def test_preview_steps_through_slices_in_the_loaders_order(
    preview, qtbot, logic, manifest, series_id, screenshot
):
    entry = manifest[series_id]
    uid = series_uid_of(entry)
    dims = entry["expected"]["dims"]
    lps = np.array(entry["expected"]["ijk_to_lps"])
    files = files_at_slices(entry)
    show(preview, qtbot, uid)
    assert preview.sliceCount() == dims[2]
    assert preview.timePointCount() == (dims[3] if len(dims) == 4 else 1)
    assert preview.currentSlice() == 0 and preview.currentTimePoint() == 0
    [volume] = load_series(logic.database, uid)  # what loadSeries would put in the scene
    first_time_point = volume.array[0] if volume.info.is_4d else volume.array
    changes = []
    preview.sliceChanged.connect(changes.append)
    images = {}
    last = dims[2] - 1
    for k in range(dims[2]):
        preview.setCurrentSlice(k)
        qtbot.waitUntil(preview.isSliceReady, timeout=30_000)
        frame = preview.currentFrame()
        assert np.allclose(frame.position, lps[:3, 3] + k * lps[:3, 2], atol=0.01), k
        values = preview.currentSliceArray()
        assert np.allclose(values, pydicom_values(files[k][0])), k
        assert np.array_equal(values, first_time_point[k]), k
        if k in (0, dims[2] // 2, last):
            label = {0: "first", dims[2] // 2: "middle", last: "last"}[k]
            images[label] = rendered(preview.sliceView())
            path = screenshot(preview, f"preview_{series_id}_{label}_slice")
            assert path.stat().st_size > 10_000
            assert f"Slice {k + 1} of {dims[2]}" in preview.sliceView().cornerText("topLeft")[1]
    assert changes == list(range(1, dims[2]))
    assert not np.array_equal(images["first"], images["middle"])
    assert not np.array_equal(images["middle"], images["last"])
    if volume.info.is_4d:
        preview.setCurrentSlice(0)
        preview.setCurrentTimePoint(1)
        qtbot.waitUntil(preview.isSliceReady, timeout=30_000)
        assert np.allclose(preview.currentFrame().position, lps[:3, 3], atol=0.01)
        assert np.allclose(preview.currentSliceArray(), pydicom_values(files[0][1]))


def test_autoplay_advances_on_a_timer(preview, qtbot, manifest):
    import qt

    show(preview, qtbot, series_uid_of(manifest["dev_ct_gantry_tilt"]))
    count = preview.sliceCount()
    before = rendered(preview.sliceView())
    steps = []
    preview.sliceChanged.connect(steps.append)
    preview.setSpeed(30)
    qtbot.mouseClick(preview.playButton(), qt.Qt.LeftButton)
    assert preview.isPlaying() and preview.playButton().checked is True
    assert preview.playButton().text == "Pause"
    qtbot.waitUntil(lambda: len(steps) >= 5, timeout=30_000)
    qtbot.mouseClick(preview.playButton(), qt.Qt.LeftButton)
    assert not preview.isPlaying() and preview.playButton().text == "Play"
    assert steps[:5] == [1, 2, 3, 4, 5]
    assert not np.array_equal(before, rendered(preview.sliceView()))
    stopped = preview.currentSlice()
    # the play timer is stopped (isPlaying is its isActive): once the events already posted are
    # handled, nothing can advance the slice any more
    qt.QApplication.processEvents()
    assert preview.currentSlice() == stopped and steps[-1] == stopped
    # it wraps around at the end
    preview.setCurrentSlice(count - 2)
    steps.clear()
    preview.play()
    qtbot.waitUntil(lambda: len(steps) >= 3, timeout=30_000)
    preview.pause()
    assert steps[:3] == [count - 1, 0, 1]


def test_autoplay_through_time_for_4d(preview, qtbot, manifest):
    show(preview, qtbot, series_uid_of(manifest["dev_mr_4d_fmri"]))
    preview.setCurrentSlice(7)
    preview.setPlayAxis("time")
    times = []
    preview.timePointChanged.connect(times.append)
    preview.setSpeed(30)
    preview.play()
    qtbot.waitUntil(lambda: len(times) >= 3, timeout=30_000)
    preview.pause()
    assert times[:3] == [1, 2, 3] and preview.currentSlice() == 7


def test_the_slice_and_time_sliders_line_up(preview, qtbot, manifest):
    """The slice slider started after Play and its speed, the time slider after the word "Time",
    ~100 px to the left (docs/images/preview-4d.png): both start and end at the same x; a 3D
    series shows no time row."""
    import qt

    show(preview, qtbot, series_uid_of(manifest["dev_mr_4d_fmri"]))
    qt.QApplication.processEvents()
    sliceSlider, timeSlider = preview.findChildren(qt.QSlider)
    assert "Slice" in sliceSlider.toolTip and "Time" in timeSlider.toolTip
    assert sliceSlider.visible and timeSlider.visible

    def span(slider) -> tuple[int, int]:
        left = slider.mapTo(preview, qt.QPoint(0, 0)).x()
        return left, left + slider.width

    assert span(sliceSlider) == span(timeSlider), (span(sliceSlider), span(timeSlider))
    assert span(sliceSlider)[1] - span(sliceSlider)[0] > 100  # room to drag at 420 px
    show(preview, qtbot, series_uid_of(manifest["dev_ct_gantry_tilt"]))
    assert sliceSlider.visible and not timeSlider.visible


def window_from_tags(entry):
    """(width, center) of the first WindowWidth/WindowCenter pair of the middle slice, by pydicom."""
    middle = pydicom.dcmread(files_at_slices(entry)[entry["expected"]["dims"][2] // 2][0])
    first = lambda value: float(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)  # noqa: E731
    return first(middle.WindowWidth), first(middle.WindowCenter)


@pytest.mark.parametrize("series_id", SERIES)
def test_window_presets_come_from_the_tags(preview, qtbot, manifest, series_id):
    entry = manifest[series_id]
    show(preview, qtbot, series_uid_of(entry))
    from_tags = window_from_tags(entry)
    assert preview.windowLevel() == from_tags
    presets = preview.windowPresets()
    assert presets[0] == ("DICOM tags", from_tags[1], from_tags[0])
    assert ("CT bone" in [name for name, _c, _w in presets]) == (series_id == "dev_ct_gantry_tilt")
    preview.applyWindowPreset("Automatic")
    low, high = np.percentile(preview.currentSliceArray(), [1, 99])
    assert preview.windowLevel() == pytest.approx((high - low, (low + high) / 2))


def test_window_level_drag_changes_the_image(preview, qtbot, manifest):
    import qt

    entry = manifest["dev_mr_4d_fmri"]
    show(preview, qtbot, series_uid_of(entry))
    preview.setCurrentSlice(7)
    qtbot.waitUntil(preview.isSliceReady)
    from_tags = window_from_tags(entry)
    view = preview.sliceView()
    before = rendered(view)
    start = view.rect.center()
    end = start + qt.QPoint(60, 30)
    levels = []
    preview.windowLevelChanged.connect(lambda width, center: levels.append((width, center)))
    qtbot.mousePress(view, qt.Qt.LeftButton, pos=start)
    qtbot.mouseMove(view, end)
    qtbot.mouseRelease(view, qt.Qt.LeftButton, pos=end)
    width, center = preview.windowLevel()
    assert width > from_tags[0] and center < from_tags[1]  # right: wider; down: lower level
    assert levels and levels[-1] == (width, center)
    after = rendered(view)
    changed = np.any(before != after, axis=2).mean()
    assert changed > 0.2, f"only {changed:.1%} of the view changed"
    assert preview.windowPresets()[-1][0] == "Custom"
    assert view.cornerText("bottomLeft")[0].startswith(f"W {width:.6g}")
    preview.applyWindowPreset("DICOM tags")
    assert preview.windowLevel() == from_tags
    assert np.array_equal(rendered(view), before)


def test_pan_and_zoom_change_the_view_transform(preview, qtbot, manifest):
    import qt

    show(preview, qtbot, series_uid_of(manifest["dev_ct_gantry_tilt"]))
    view = preview.sliceView()
    fitted = view.viewTransform()
    before = rendered(view)
    start = view.rect.center()
    qtbot.mousePress(view, qt.Qt.MiddleButton, pos=start)
    qtbot.mouseMove(view, start + qt.QPoint(40, 25))
    qtbot.mouseRelease(view, qt.Qt.MiddleButton, pos=start + qt.QPoint(40, 25))
    assert preview.panOffset() == (40.0, 25.0)
    panned = view.viewTransform()
    assert (panned.dx() - fitted.dx(), panned.dy() - fitted.dy()) == pytest.approx((40.0, 25.0))
    assert panned.m11() == fitted.m11()
    assert not np.array_equal(before, rendered(view))
    qtbot.mousePress(view, qt.Qt.RightButton, pos=start)
    qtbot.mouseMove(view, start - qt.QPoint(0, 60))  # up: zoom in
    qtbot.mouseRelease(view, qt.Qt.RightButton, pos=start - qt.QPoint(0, 60))
    zoomed = view.viewTransform()
    assert preview.zoomFactor() > 1.3 and zoomed.m11() > panned.m11() * 1.3
    assert zoomed.m22() / zoomed.m11() == pytest.approx(fitted.m22() / fitted.m11())  # aspect kept
    assert view.cornerText("bottomRight")[0] == f"Zoom {preview.zoomFactor() * 100:.0f}%"
    wheel(view, 120, qt.Qt.ControlModifier)
    assert view.viewTransform().m11() > zoomed.m11()
    wheel(view, -120)  # no modifier: the next slice towards the user
    assert preview.currentSlice() == 0
    wheel(view, 120)
    assert preview.currentSlice() == 1
    qtbot.waitUntil(preview.isSliceReady, timeout=30_000)  # decoded in the engine
    qtbot.mouseDClick(view, qt.Qt.LeftButton, pos=start)
    reset = view.viewTransform()
    assert (reset.m11(), reset.dx(), reset.dy()) == pytest.approx((fitted.m11(), fitted.dx(), fitted.dy()))


def wheel(widget, delta, modifiers=None):
    import qt

    position = qt.QPointF(widget.rect.center())
    event = qt.QWheelEvent(
        position,
        qt.QPointF(widget.mapToGlobal(widget.rect.center())),
        qt.QPoint(0, 0),
        qt.QPoint(0, delta),
        qt.Qt.NoButton,
        modifiers if modifiers is not None else qt.Qt.NoModifier,
        qt.Qt.NoScrollPhase,
        False,
    )
    qt.QApplication.sendEvent(widget, event)


@pytest.mark.parametrize(
    ("series_id", "code"), [(SERIES[0], "gantry_tilt"), (SERIES[1], "time_axis_assumed")]
)
def test_load_warnings_are_shown_beside_the_preview(preview, qtbot, logic, manifest, series_id, code):
    uid = series_uid_of(manifest[series_id])
    show(preview, qtbot, uid)
    [volume] = load_series(logic.database, uid)
    assert [w.code for w in preview.loadWarnings()] == [w.code for w in volume.warnings]
    assert code in [w.code for w in preview.loadWarnings()]
    # in the user's words: no internal code, no CLI advice; a tilted stack offers Load resampled
    text = preview.warningsText()
    assert text and code not in text and "convert --resample" not in text, text
    assert preview.resampleButton().visible == (code == "gantry_tilt")
    if code == "gantry_tilt":
        assert "Load resampled" in text
        requests = []
        preview.resampledLoadRequested.connect(requests.append)
        qtbot.mouseClick(preview.resampleButton(), __import__("qt").Qt.LeftButton)
        assert requests == [[("series", uid)]]


def test_clean_series_shows_no_warnings_and_adds_no_nodes(preview, qtbot, logic, tmp_path, manifest):
    import slicer

    clean = make_series(tmp_path / "clean", n=5, rows=16, cols=16, patient_id="CLEAN")
    logic.importFolder([clean.folder]).get()
    nodes = slicer.mrmlScene.GetNumberOfNodes()
    show(preview, qtbot, clean.series_uid)
    assert preview.loadWarnings() == () and preview.warningsText() == ""
    for k in range(5):
        preview.setCurrentSlice(k)
        qtbot.waitUntil(preview.isSliceReady)
        assert np.array_equal(preview.currentSliceArray(), clean.pixels[k] - 1024)  # CT rescale
    for series_id in SERIES:
        show(preview, qtbot, series_uid_of(manifest[series_id]))
    assert slicer.mrmlScene.GetNumberOfNodes() == nodes


def test_series_with_several_volumes(preview, qtbot, manifest):
    show(preview, qtbot, series_uid_of(manifest["dev_mr_mixed_orientation"]))
    assert preview.volumeCount() == 2
    first = preview.currentFrame().orientation
    preview.setCurrentVolume(1)
    qtbot.waitUntil(preview.isSliceReady, timeout=30_000)
    assert preview.sliceCount() == 2 and preview.currentVolume() == 1
    assert not np.allclose(first, preview.currentFrame().orientation, atol=0.1)


def test_unknown_series_reports_a_failure(preview, qtbot):
    failures = []
    preview.failed.connect(failures.append)
    preview.setSeries("1.2.826.0.1.3680043.10.999.1")
    qtbot.waitUntil(lambda: bool(failures), timeout=30_000)
    assert "Cannot preview" in failures[0] and failures[0] in preview.warningsText()
    assert preview.sliceCount() == 0


def test_module_panel_previews_the_selected_series(dicomplus_module, logic, qtbot, manifest, screenshot):
    widget = dicomplus_module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    widget.setLogic(logic)
    fit_panel(widget, 440)
    gantry = series_uid_of(manifest["dev_ct_gantry_tilt"])
    assert widget.browser.selectSeries(gantry)
    qtbot.waitUntil(
        lambda: widget.preview.seriesUID() == gantry and widget.preview.isSliceReady(), timeout=30_000
    )
    widget.preview.setCurrentSlice(widget.preview.sliceCount() // 2)
    qtbot.waitUntil(widget.preview.isSliceReady, timeout=30_000)
    qtbot.waitUntil(lambda: widget.browser.hasThumbnail(gantry), timeout=30_000)
    job = widget.importPaths([manifest["dev_mr_oblique"]["folder"]])
    qtbot.waitUntil(lambda: widget.activeJob is None, timeout=60_000)
    assert widget.activity.jobs() == [job]
    fit_panel(widget, 440)
    screenshot(widget, "DICOMPlus_panel_with_preview")
    screenshot(widget.browser, "panel_browser")
    screenshot(widget.preview, "panel_preview")
    screenshot(widget.activity, "panel_activity")
    # a collapsed preview does no work; expanding it shows the selection
    fmri = series_uid_of(manifest["dev_mr_4d_fmri"])
    widget.ui.previewCollapsibleButton.collapsed = True
    widget.browser.selectSeries(fmri)
    assert widget.preview.seriesUID() == gantry
    widget.ui.previewCollapsibleButton.collapsed = False
    assert widget.preview.seriesUID() == fmri
    # the preview's Load button loads through the panel
    import slicer

    qtbot.waitUntil(lambda: widget.preview.volumeInfo() is not None, timeout=30_000)
    qtbot.mouseClick(widget.preview.loadButton(), __import__("qt").Qt.LeftButton)
    qtbot.waitUntil(lambda: widget.activeJob is None, timeout=60_000)
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSequenceNode") == 1


def test_decoding_stays_near_the_slice_shown(dicomplus_module, logic, qtbot, manifest):
    """A small cache: the decoder fetches the neighbours of the slice shown, not the whole series
    (the cache would evict the near slices to keep the far ones)."""
    import DICOMPlusWidgets

    preview = DICOMPlusWidgets.DICOMPlusPreviewWidget(logic, cacheBytes=16 * 1024 * 1024)
    qtbot.addWidget(preview)
    show(preview, qtbot, series_uid_of(manifest["dev_ct_gantry_tilt"]))
    near = range(5)  # 512 x 512: reach = 16 MiB / (4 x 1 MiB) = 4 slices on each side
    qtbot.waitUntil(lambda: all(preview.isSliceReady(k) for k in near), timeout=30_000)
    preview.setCurrentSlice(40)
    qtbot.waitUntil(lambda: all(preview.isSliceReady(k) for k in range(36, 45)), timeout=30_000)
    assert not any(preview.isSliceReady(k) for k in range(10, 30))  # never asked for
    preview.cleanup()


@pytest.mark.parametrize(
    "series_id",
    ["dev_mr_enhanced_multiframe", "dev_mr_jpeg2000", "dev_mr_jpegls", "dev_mr_rle", "dev_mr_oblique"],
)
def test_preview_shows_what_loading_gives(dicomplus_module, qtbot, tmp_path, manifest, series_id):
    """Multi-frame and compressed series: every slice of the preview is the loaded slice."""
    import DICOMPlusWidgets

    logic = dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db" / "dicomplus.sqlite")
    logic.importFolder([manifest[series_id]["folder"]]).get()
    uid = series_uid_of(manifest[series_id])
    preview = DICOMPlusWidgets.DICOMPlusPreviewWidget(logic)
    qtbot.addWidget(preview)
    show(preview, qtbot, uid)
    [volume] = load_series(logic.database, uid)
    assert preview.sliceCount() == manifest[series_id]["expected"]["dims"][2]
    for k in range(preview.sliceCount()):
        preview.setCurrentSlice(k)
        qtbot.waitUntil(preview.isSliceReady, timeout=30_000)
        assert np.array_equal(preview.currentSliceArray(), volume.array[k]), k
    preview.cleanup()
    logic.closeDatabase()


def test_orientation_letters_clear_the_corner_texts_at_panel_width(preview, qtbot, manifest):
    """At Slicer's panel width the preview is 300 px wide: the bottom orientation letter of the
    tilted CT ("PF") was drawn into the patient position on the same line ("PFPS -123.5, -15.6,
    742.3"). The letters move a line away from a corner text that reaches the centre; nothing
    drawn over the image overlaps."""

    preview.resize(300, 420)
    show(preview, qtbot, series_uid_of(manifest["dev_ct_gantry_tilt"]))
    view = preview._view
    texts = view.overlayTexts()
    letters = [t for t, _rect, bold in texts if bold]
    assert len(letters) == 4 and any(len(t) > 1 for t in letters), letters  # oblique: two letters
    assert any(t.startswith("LPS ") for t, _rect, _bold in texts)
    overlaps = [(a[0], b[0]) for i, a in enumerate(texts) for b in texts[i + 1 :] if a[1].intersects(b[1])]
    assert overlaps == [], overlaps
    assert all(view.rect.contains(rect.toRect()) for _t, rect, _bold in texts)
