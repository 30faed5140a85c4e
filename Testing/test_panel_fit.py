"""The panel fits Slicer's module panel: about 340 px wide on a 1080p screen (the dock beside the
views), in a scroll area that scrolls sideways when the panel's minimum is wider. Opening the
module must not widen Slicer's panel (a 400 px minimum did), and nothing in it may be cut off:
every shown widget gets at least its minimum size inside its parent, every button its label (or
an elided label, whole in its tooltip), every combo box the text of its current item. Asserted on
the layout's own minimums and the style's text rectangles, not on pixels."""

from __future__ import annotations

import pytest

from dicomplus_testing.harness import fit_panel

#: Width of Slicer's module panel as it opens on a 1080p screen.
SLICER_PANEL_WIDTH = 340


@pytest.fixture
def panel(dicomplus_module, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("DICOMPLUS_NODES", str(tmp_path / "nodes.json"))  # never the user's
    widget = dicomplus_module.DICOMPlusWidget()
    qtbot.addWidget(widget.parent)
    widget.setLogic(dicomplus_module.DICOMPlusLogic(databasePath=tmp_path / "db" / "dicomplus.sqlite"))
    yield widget
    widget.cleanup()


def minimum_of(widget):
    """The minimum a layout gives ``widget`` (qSmartMinSize): its minimum size where set, else
    its minimum size hint (a size policy that cannot shrink: its size hint); a widget whose height
    depends on its width (wrapped text) gets the height for the width it has; none more than
    its maximum."""
    import qt

    hint, hintMin, kept = widget.sizeHint, widget.minimumSizeHint, widget.minimumSize
    policy = widget.sizePolicy
    sizes = []
    for kept_, hint_, min_, direction in (
        (kept.width(), hint.width(), hintMin.width(), policy.horizontalPolicy()),
        (kept.height(), hint.height(), hintMin.height(), policy.verticalPolicy()),
    ):
        if kept_ > 0:
            sizes.append(kept_)
        elif direction == qt.QSizePolicy.Ignored:
            sizes.append(0)
        elif direction in (qt.QSizePolicy.Minimum, qt.QSizePolicy.Fixed):
            sizes.append(max(hint_, 0))
        else:
            sizes.append(max(min_, 0))
    if widget.hasHeightForWidth() and widget.heightForWidth(widget.width) > 0:
        sizes[1] = min(sizes[1], widget.heightForWidth(widget.width))
    return [min(sizes[0], widget.maximumWidth), min(sizes[1], widget.maximumHeight)]


def laid_out(layout):
    """The widgets a layout places, with those of its nested layouts."""
    widgets = []
    for index in range(layout.count() if layout is not None else 0):
        item = layout.itemAt(index)
        if item.widget() is not None:
            widgets.append(item.widget())
        elif item.layout() is not None:
            widgets += laid_out(item.layout())
    return widgets


def clipped(top):
    """Descriptions of the shown widgets under ``top`` that are cut off: smaller than their
    minimum, reaching out of their parent, or a button narrower than its label."""
    import qt
    from DICOMPlusWidgets.fitting import ElidedButton, textWidth

    found = []
    for widget in top.findChildren(qt.QWidget):
        if not widget.isVisibleTo(top) or widget.isWindow():
            continue
        parent = widget.parentWidget()
        name = f"{type(widget).__name__} {widget.objectName or ''} {getattr(widget, 'text', '')!r}"
        if widget not in laid_out(parent.layout()):
            continue  # a spin box's line edit, a scroll area's viewport: placed by their owner
        width, height = minimum_of(widget)
        if widget.width < width or widget.height < height:
            found.append(f"{name}: {widget.width}x{widget.height} < minimum {width}x{height}")
        if not parent.rect.contains(widget.geometry):
            found.append(f"{name}: {widget.geometry} outside its parent's {parent.rect}")
        if isinstance(widget, qt.QTreeView) and not widget.isHeaderHidden():
            found += [f"{name}: {cut}" for cut in cut_headings(widget)]
        if isinstance(widget, qt.QComboBox) and not widget.editable and widget.currentText:
            room, needed = comboTextRoom(widget), textAdvance(widget, widget.currentText)
            if needed > room:
                found.append(f"{name}: shows {widget.currentText!r} in {room} px, it needs {needed}")
        if isinstance(widget, qt.QPushButton) and widget.text:
            if textWidth(widget, widget.text) > widget.width + 2:  # one space of slack in textWidth
                found.append(f"{name}: {widget.width} px, its label needs {textWidth(widget)}")
            if isinstance(widget, ElidedButton) and widget.text != widget.fullText():
                if not widget.toolTip.startswith(widget.fullText()):
                    found.append(f"{name}: cut, and its tooltip does not say {widget.fullText()!r}")
    return found


def comboTextRoom(combo):
    """The width a combo box's style gives the current item's text (Fusion clips it there, with
    no ellipsis)."""
    import qt

    option = qt.QStyleOptionComboBox()
    combo.initStyleOption(option)
    field = combo.style().subControlRect(qt.QStyle.CC_ComboBox, option, qt.QStyle.SC_ComboBoxEditField, combo)
    return field.width()


def cut_headings(tree):
    """The column headings of ``tree`` narrower than their text (Fusion cuts them, with no
    ellipsis: "Patient / study / se")."""
    import qt

    header = tree.header()
    margin = 2 * header.style().pixelMetric(qt.QStyle.PM_HeaderMargin)
    cut = []
    for column in range(header.count()):
        if header.isSectionHidden(column):
            continue
        text = str(tree.model().headerData(column, qt.Qt.Horizontal, qt.Qt.DisplayRole) or "")
        needed = textAdvance(header, text) + margin
        if text and needed > header.sectionSize(column):
            cut.append(f"heading {text!r} in {header.sectionSize(column)} px, it needs {needed}")
    return cut


def textAdvance(widget, text):
    import qt

    return qt.QFontMetrics(widget.font).horizontalAdvance(text)


def open_everything(panel):
    """Every section open, a server with a long name, its form shown, a load's warnings and
    Load resampled: the widest the panel gets."""
    ui = panel.ui
    for name in ("localDatabase", "preview", "network", "export", "activity"):
        getattr(ui, name + "CollapsibleButton").collapsed = False
    panel.network.addNode("Hospital PACS of the university clinic", "PACS", "127.0.0.1", 104)
    panel.network.showNodeForm()
    panel.showMessages(
        ["CT tilted: the slices are sheared (gantry tilt); Load resampled gives a regular grid"]
    )
    ui.loadResampledButton.visible = True
    panel.updateButtonStates()


def test_panel_fits_slicer_module_panel_width(panel):
    """At 340 px the panel takes the width it is given (no sideways scroll bar), in each section,
    and nothing in it is cut off; the Send button names its server, cut to fit."""
    open_everything(panel)
    assert panel.parent.minimumSizeHint.width() <= SLICER_PANEL_WIDTH, panel.parent.minimumSizeHint
    width, _height = fit_panel(panel, SLICER_PANEL_WIDTH)
    assert width == SLICER_PANEL_WIDTH
    assert clipped(panel.parent) == []
    send = panel.network.sendButton
    assert send.fullText() == "Send to Hospital PACS of the university clinic"
    assert send.text != send.fullText() and send.text.endswith("…"), send.text  # elided at 340 px
    assert send.toolTip.startswith(send.fullText())
    narrow = send.text
    fit_panel(panel, 600)  # wider: more of the name, and still nothing cut off
    assert len(send.text) > len(narrow) and send.fullText().startswith(send.text.rstrip("…"))
    assert clipped(panel.parent) == []
    panel.network.addNode("PACS", "PACS", "127.0.0.1", 105)
    panel.network.nodeCombo.currentIndex = panel.network.nodeCombo.findText("PACS")
    panel.updateButtonStates()
    assert send.text == send.fullText() == "Send to PACS"  # a short name whole


def test_panel_has_single_margins(panel):
    """Slicer's module panel already has a margin: the .ui's own layout adds none, so the
    sections line up with the panel's edge as in Slicer's other modules."""
    margins = panel.ui.localDatabaseCollapsibleButton.parentWidget().layout().contentsMargins
    assert (margins.left(), margins.top(), margins.right(), margins.bottom()) == (0, 0, 0, 0)
    fit_panel(panel, SLICER_PANEL_WIDTH)
    outer = panel.layout.contentsMargins
    section = panel.ui.localDatabaseCollapsibleButton
    left = section.mapTo(panel.parent, section.rect.topLeft()).x()
    assert left == outer.left(), (left, outer.left())


#: Height of Slicer's module panel on a 1080p screen (Testing/test_module_browser.py: assert_fits).
SLICER_PANEL_HEIGHT = 860


def test_panel_after_a_load_fits_slicer_module_panel_height(panel, qtbot):
    """After a load (a finished job in Activity, its warning, Load resampled) the panel as it
    opens (Network and Export folded) still fits 340 x 860 without scrolling (it needed ~900
    px): the ended job is one line, the messages box scrolls its own lines past three, the
    sections' margins are 4 px above and below."""
    from DICOMPlusLib.jobs import Job

    job = panel.activity.addJob(Job("Load 1 series", lambda progress, cancel: None).start())
    qtbot.waitUntil(lambda: job.finished and not panel.activity.runningJobs(), timeout=10_000)
    panel.showMessages(
        ["201: STEREOTAXIS: The slices were acquired with a tilted gantry, so the volume is slanted. "
         "It is shown in the right place; for tools that need a regular grid, use Load resampled."]
    )  # fmt: skip
    panel.ui.loadResampledButton.visible = True
    assert panel.ui.networkCollapsibleButton.collapsed and panel.ui.exportCollapsibleButton.collapsed
    width, height = fit_panel(panel, SLICER_PANEL_WIDTH, SLICER_PANEL_HEIGHT)
    assert (width, height) == (SLICER_PANEL_WIDTH, SLICER_PANEL_HEIGHT), panel.parent.minimumSizeHint
    assert clipped(panel.parent) == []


def test_panel_after_loading_a_tilted_series_cuts_nothing_off(panel, qtbot, shared_series):
    """Loading a tilted CT as a user does (import, select, Load) leaves its warning twice: in the
    Preview (a wrapped label, five lines at 300 px) and under Activity. A wrapped label's height
    depends on its width, which a layout's minimum leaves out: the panel's minimum was 40 px short
    and the layout took them from the browser, below its own minimum, so the series tile was drawn
    over the "1 patient · 1 study · 1 series" line. The panel may scroll; nothing may overlap. The
    study's header ("2015-02-06 · 1A TRAUMA/PLAIN HEAD DM · 1 series · 54 images", 442 px in 244)
    lost its counts without a sign: it ends in "…" and its tooltip starts with the whole line."""
    panel.importPaths([str(shared_series / "dev_ct_gantry_tilt")])
    qtbot.waitUntil(lambda: panel.activeJob is None, timeout=60_000)
    (series,) = panel.browser.entries("series")
    panel.browser.selectSeries(series[1])
    panel.ui.loadButton.click()
    qtbot.waitUntil(lambda: panel.activeJob is None, timeout=60_000)
    qtbot.waitUntil(lambda: "tilted gantry" in panel.preview.warningsText(), timeout=10_000)
    assert "tilted gantry" in panel.ui.messagesText.toPlainText()
    fit_panel(panel, SLICER_PANEL_WIDTH, SLICER_PANEL_HEIGHT)
    assert clipped(panel.parent) == []


def test_first_run_says_how_to_fill_the_database(panel):
    """A new user opens the panel on an empty database: the browser was a blank box over
    "0 patients · 0 studies · 0 series", nothing saying where data comes from. The count line
    says it, whole at Slicer's panel width."""
    fit_panel(panel, SLICER_PANEL_WIDTH, SLICER_PANEL_HEIGHT)
    status = panel.browser.statusText()
    assert status == "No DICOM data yet: Import... adds a folder, Network retrieves from a server."
    assert clipped(panel.parent) == []


@pytest.mark.parametrize("name", ["dev_mr_4d_fmri", "dev_ct_gantry_tilt", "dev_mr_classic_pair_of_enhanced"])
def test_preview_controls_show_their_text_at_340(panel, qtbot, shared_series, name):
    """A series previewed at Slicer's width: the window preset box showed "From the DIC" (the
    speed box, the preset box, Fit and Load series shared ~300 px). Every preset the series
    offers (from its tags, automatic, Slicer's CT presets) shows its whole name in the box, and
    the 4D series' time row and the speed box beside Play are cut nowhere either. The classic
    pair's warning names ImageType ORIGINAL\\PRIMARY\\PERFUSION_FFE\\PERFUSION\\FFE, one word
    for word wrap: it made the panel 374 px wide; it wraps at the backslashes now."""
    folders = [shared_series / name]
    if name == "dev_mr_classic_pair_of_enhanced":  # with its enhanced twin: one series, two ImageTypes
        folders.append(shared_series / "dev_mr_enhanced_multiframe")
    panel.importPaths([str(folder) for folder in folders])
    qtbot.waitUntil(lambda: panel.activeJob is None, timeout=60_000)
    (series,) = panel.browser.entries("series")
    panel.browser.selectSeries(series[1])
    preview = panel.preview
    qtbot.waitUntil(preview.isSliceReady, timeout=60_000)
    if name == "dev_mr_classic_pair_of_enhanced":  # the text as the loader gave it
        words = "ImageType ORIGINAL\\PRIMARY\\PERFUSION_FFE\\PERFUSION\\FFE)"
        qtbot.waitUntil(lambda: words in preview.warningsText(), timeout=10_000)
    assert fit_panel(panel, SLICER_PANEL_WIDTH, SLICER_PANEL_HEIGHT)[0] == SLICER_PANEL_WIDTH
    presets = [preset[0] for preset in preview.windowPresets()]
    for preset in presets:
        preview.applyWindowPreset(preset)
        assert clipped(panel.parent) == [], preset
    assert len(presets) == (6 if name.startswith("dev_ct") else 2), presets  # tags, automatic, CT


def test_list_mode_headings_are_whole_at_340(panel, qtbot, tmp_path):
    """The browser's compact list at Slicer's width: its first heading read "Patient / study / se"
    (145 px of text in a 130 px column). Every heading is whole, and nothing else is cut."""
    from dicomplus_testing.synthetic import make_series

    source = make_series(tmp_path / "s", n=2, rows=8, cols=8, patient_id="LIST1")
    panel.importPaths([str(source.folder)])
    qtbot.waitUntil(lambda: panel.activeJob is None, timeout=60_000)
    panel.browser.setViewMode("tree")
    panel.browser.treeWidget().expandAll()
    fit_panel(panel, SLICER_PANEL_WIDTH, SLICER_PANEL_HEIGHT)
    assert panel.browser.treeWidget().isVisible()
    assert clipped(panel.parent) == []
