"""Widths that fit Slicer's module panel: about 340 px wide, 300 px inside a section.

The style gives every push button with text at least 80 px (Fusion, and Slicer's style on top of
it), so four buttons in a row need 338 px whatever their labels: a row of short labels gets
minimum widths from its text instead. A label that can be long (a server's name) is elided to
the button's width, whole in the tooltip, so the row never widens the panel.
"""

import qt


def textWidth(button, text=None):
    """The width ``button`` needs to show ``text`` (default: its own) whole: the text, the
    style's button margin and frame, and a space of slack for styles that pad more."""
    style = button.style()
    metrics = qt.QFontMetrics(button.font)
    text = button.text if text is None else text
    return (
        metrics.horizontalAdvance(text + " ")
        + style.pixelMetric(qt.QStyle.PM_ButtonMargin)
        + 2 * style.pixelMetric(qt.QStyle.PM_DefaultFrameWidth)
    )


def fitToText(*buttons):
    """Let each button shrink to its text (below the style's 80 px floor), never below it."""
    for button in buttons:
        button.minimumWidth = textWidth(button)


class ElidedButton(qt.QPushButton):
    """A push button whose label is cut to its width with an ellipsis ("Send to Hospital P...")
    and whose tooltip starts with the whole label. It is at least as wide as ``shortText`` and
    takes the room its row gives it (size policy Ignored: the label's length never widens the
    row); :meth:`fullText` is the label as set."""

    def __init__(self, text, shortText, parent=None):
        qt.QPushButton.__init__(self, parent)
        self._fullText = ""
        self._detail = ""
        self.setSizePolicy(qt.QSizePolicy.Ignored, qt.QSizePolicy.Fixed)
        self.minimumWidth = textWidth(self, shortText)
        self.setFullText(text)

    def fullText(self):
        return self._fullText

    def setFullText(self, text, detail=None):
        """Show ``text`` (elided if need be); the tooltip is ``detail`` (default: the one kept),
        preceded by ``text`` when the label is cut."""
        self._fullText = text
        if detail is not None:
            self._detail = detail
        self._elide()

    def resizeEvent(self, event):
        try:
            qt.QPushButton.resizeEvent(self, event)
        except (AttributeError, TypeError):  # a binding that does not expose the protected base
            pass
        self._elide()

    def _elide(self):
        room = max(self.width - textWidth(self, ""), 0)
        shown = qt.QFontMetrics(self.font).elidedText(self._fullText, qt.Qt.ElideRight, room)
        if shown != self.text:
            self.text = shown
        cut = shown != self._fullText
        tip = f"{self._fullText}: {self._detail}" if cut and self._detail else self._detail or self._fullText
        if tip != self.toolTip:
            self.toolTip = tip


#: A zero-width space: where a line may break inside a word.
BREAK = "\u200b"


def breakable(text):
    """``text`` with a line break allowed after each backslash and slash. Word wrap breaks only
    between words, so a value such as ImageType ORIGINAL\\PRIMARY\\PERFUSION_FFE\\PERFUSION\\FFE
    (45 characters, 340 px) made a wrapped label's minimum width, and the panel, 374 px wide at
    Slicer's 340. :func:`unbreakable` gives the text back as it was."""
    return text.replace("\\", "\\" + BREAK).replace("/", "/" + BREAK)


def unbreakable(text):
    return text.replace(BREAK, "")


class WrappedLabel(qt.QLabel):
    """A word-wrapped label whose minimum height is the height of its text at its width. A
    layout's minimum leaves out a height that depends on the width (Qt asks it only when it
    places the widgets), so a panel holding a five-line label came out 40 px short of what it
    needed and its layout took them from a neighbour, below that one's minimum (a browser tile
    drawn over the line under it). Call :meth:`fitHeight` after setting the text."""

    def __init__(self, parent=None):
        qt.QLabel.__init__(self, parent)
        self.wordWrap = True

    def resizeEvent(self, event):
        try:
            qt.QLabel.resizeEvent(self, event)
        except (AttributeError, TypeError):  # a binding that does not expose the protected base
            pass
        self.fitHeight()

    def fitHeight(self):
        """Keep the minimum height at the text's height for the current width (none while the
        label has no width yet: its first resize sets it)."""
        needed = self.heightForWidth(self.width) if self.width > 0 and self.text else 0
        if needed != self.minimumHeight:
            self.minimumHeight = max(needed, 0)
