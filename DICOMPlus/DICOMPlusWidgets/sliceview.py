"""DICOMPlusSliceView: a canvas that shows one 2D image, with pan, zoom and overlays.

The view knows nothing about DICOM: the preview gives it an image (``setImage``), the pixel
spacing, corner texts and orientation letters, and reacts to its signals. Mouse, as in Slicer's
slice views:

* left drag: window/level (``windowLevelDragged(dx, dy)`` in screen pixels; the preview turns
  horizontal motion into width and vertical motion into level);
* middle drag, or Shift + left drag: pan;
* right drag, or Ctrl + left drag: zoom (up zooms in); Ctrl + wheel: zoom;
* wheel: ``sliceScrolled(steps)``; double-click: fit the image again (``resetView``).
"""

from __future__ import annotations

import math

import qt

from .signals import Signal


def _eventPoint(event):
    """(x, y) of a mouse event in widget coordinates (Qt 6: position(), Qt 5: pos())."""
    point = event.position() if hasattr(event, "position") else event.pos()
    return float(point.x()), float(point.y())


class DICOMPlusSliceView(qt.QWidget):
    """Draws an image with its physical aspect ratio, fitted, then panned and zoomed.

    Signals (:class:`~DICOMPlusWidgets.signals.Signal`):

    * ``windowLevelDragged(float dx, float dy)``: a left drag moved by (dx, dy) screen pixels;
    * ``sliceScrolled(int steps)``: the wheel turned (positive: away from the user);
    * ``viewChanged()``: pan or zoom changed.
    """

    MARGIN = 4  # pixels kept free around the fitted image

    def __init__(self, parent=None):
        qt.QWidget.__init__(self, parent)
        self.windowLevelDragged = Signal(float, float, name="windowLevelDragged")
        self.sliceScrolled = Signal(int, name="sliceScrolled")
        self.viewChanged = Signal(name="viewChanged")
        self._image = None
        self._imageSize = (0, 0)  # columns, rows
        self._spacing = (1.0, 1.0)  # between columns (x), between rows (y), mm
        self._zoom = 1.0
        self._pan = (0.0, 0.0)
        self._drag = None  # (mode, last x, last y)
        self._corners = {"topLeft": [], "topRight": [], "bottomLeft": [], "bottomRight": []}
        self._letters = ("", "", "", "")  # left, right, top, bottom
        self._message = ""
        self.setMinimumSize(200, 160)  # the panel must fit a 1080p screen with the browser above
        self.setMouseTracking(True)
        self.setFocusPolicy(qt.Qt.StrongFocus)
        self.setSizePolicy(qt.QSizePolicy.Expanding, qt.QSizePolicy.Expanding)
        self.setToolTip(
            "Left drag: window/level. Middle or Shift+left drag: pan. Right or Ctrl+left drag, "
            "Ctrl+wheel: zoom. Wheel: slices. Double-click: fit."
        )

    # -- content -------------------------------------------------------------------------------
    def setImage(self, image, spacing=None):
        """Show ``image`` (a QImage, or None for none); ``spacing`` = (x, y) mm per pixel."""
        self._image = image
        self._imageSize = (image.width(), image.height()) if image is not None else (0, 0)
        if spacing is not None:
            self._spacing = (float(spacing[0]) or 1.0, float(spacing[1]) or 1.0)
        self.update()

    def image(self):
        return self._image

    def setMessage(self, text):
        """A line shown in the middle of the view (e.g. "Decoding..."); "" for none."""
        self._message = text or ""
        self.update()

    def message(self):
        return self._message

    def setCornerText(self, corner, lines):
        """``corner`` in topLeft, topRight, bottomLeft, bottomRight; ``lines`` a list of str."""
        self._corners[corner] = [str(line) for line in lines if line]
        self.update()

    def cornerText(self, corner):
        return list(self._corners[corner])

    def setOrientationLetters(self, left, right, top, bottom):
        self._letters = (left, right, top, bottom)
        self.update()

    def orientationLetters(self):
        return self._letters

    # -- pan and zoom ----------------------------------------------------------------------------
    def zoomFactor(self):
        """1.0 = the image fits the view."""
        return self._zoom

    def setZoomFactor(self, factor):
        factor = min(max(float(factor), 0.05), 50.0)
        if factor != self._zoom:
            self._zoom = factor
            self.update()
            self.viewChanged.emit()

    def panOffset(self):
        """(x, y) screen pixels the image centre is moved from the view centre."""
        return self._pan

    def setPanOffset(self, x, y):
        if (float(x), float(y)) != self._pan:
            self._pan = (float(x), float(y))
            self.update()
            self.viewChanged.emit()

    def resetView(self):
        """Fit the image to the view again (no pan, zoom 1)."""
        changed = self._zoom != 1.0 or self._pan != (0.0, 0.0)
        self._zoom, self._pan = 1.0, (0.0, 0.0)
        self.update()
        if changed:
            self.viewChanged.emit()

    def viewTransform(self):
        """The QTransform from image pixel coordinates (x = column, y = row) to the view."""
        columns, rows = self._imageSize
        width, height = self.width, self.height
        if not columns or not rows:
            return qt.QTransform()
        dx, dy = self._spacing
        fit = min(
            max(width - 2 * self.MARGIN, 1) / (columns * dx),
            max(height - 2 * self.MARGIN, 1) / (rows * dy),
        )
        sx, sy = fit * self._zoom * dx, fit * self._zoom * dy
        tx = width / 2.0 + self._pan[0] - columns / 2.0 * sx
        ty = height / 2.0 + self._pan[1] - rows / 2.0 * sy
        return qt.QTransform(sx, 0.0, 0.0, sy, tx, ty)

    # -- painting --------------------------------------------------------------------------------
    def paintEvent(self, event):
        painter = qt.QPainter(self)
        try:
            painter.fillRect(0, 0, self.width, self.height, qt.QColor(0, 0, 0))
            if self._image is not None:
                painter.save()
                painter.setRenderHint(qt.QPainter.SmoothPixmapTransform, True)  # interpolated, as in Slicer
                painter.setTransform(self.viewTransform())
                painter.drawImage(qt.QPointF(0.0, 0.0), self._image)
                painter.restore()
            self._paintOverlays(painter)
        finally:
            painter.end()

    def _overlayFonts(self):
        font = qt.QFont(self.font)
        font.setPointSizeF(max(font.pointSizeF(), 9.0))
        bold = qt.QFont(font)
        bold.setBold(True)
        return font, bold

    def overlayTexts(self):
        """What the view writes over the image: [(text, QRectF, bold)], the rectangle the text
        takes (its advance by the font's height), corner texts first, then the orientation
        letters and the message. A letter at the top or bottom centre moves in a line when a
        corner text reaches it: at Slicer's panel width the bottom letter was drawn into the
        patient position ("PFPS -123.5, ..." for P, F and LPS)."""
        font, bold = self._overlayFonts()
        metrics, boldMetrics = qt.QFontMetrics(font), qt.QFontMetrics(bold)
        lineHeight = metrics.height()
        width, height = self.width, self.height
        pad = 6
        texts = []
        for corner, lines in self._corners.items():
            for index, line in enumerate(lines):
                textWidth = metrics.horizontalAdvance(line)
                x = pad if corner.endswith("Left") else width - pad - textWidth
                if corner.startswith("top"):
                    top = pad + index * lineHeight
                else:
                    top = height - pad - (len(lines) - index) * lineHeight
                texts.append((line, qt.QRectF(x, top, textWidth, lineHeight), False))
        corners = [rect for _text, rect, _bold in texts]
        left, right, top, bottom = self._letters
        letterHeight = boldMetrics.height()

        def letter(text, x, y):
            return text, qt.QRectF(x, y, boldMetrics.horizontalAdvance(text), letterHeight), True

        def clear(text, y, step):
            """The letter centred at ``y``, moved by ``step`` until no corner text is under it."""
            for _line in range(8):
                candidate = letter(text, width / 2.0 - boldMetrics.horizontalAdvance(text) / 2.0, y)
                if not any(candidate[1].intersects(rect) for rect in corners):
                    break
                y += step
            return candidate

        middleY = height / 2.0 - boldMetrics.ascent() / 2.0  # the baseline half an ascent below the middle
        for entry in (
            letter(left, pad, middleY),
            letter(right, width - pad - boldMetrics.horizontalAdvance(right), middleY),
            clear(top, pad, lineHeight),
            clear(bottom, height - pad - letterHeight, -lineHeight),
        ):
            if entry[0]:
                texts.append(entry)
        if self._message:
            textWidth = metrics.horizontalAdvance(self._message)
            rect = qt.QRectF(
                (width - textWidth) / 2.0, height / 2.0 - metrics.ascent(), textWidth, lineHeight
            )
            texts.append((self._message, rect, False))
        return texts

    def _paintOverlays(self, painter):
        font, bold = self._overlayFonts()
        letters = set(self._letters)
        for text, rect, isBold in self.overlayTexts():
            painter.setFont(bold if isBold else font)
            ascent = qt.QFontMetrics(bold if isBold else font).ascent()
            colour = qt.QColor(255, 220, 120) if isBold and text in letters else None
            self._shadowText(painter, rect.x(), rect.y() + ascent, text, colour)

    @staticmethod
    def _shadowText(painter, x, y, text, color=None):
        if not text:
            return
        painter.setPen(qt.QColor(0, 0, 0))
        painter.drawText(qt.QPointF(x + 1.0, y + 1.0), text)
        painter.setPen(color if color is not None else qt.QColor(235, 235, 235))
        painter.drawText(qt.QPointF(x, y), text)

    # -- mouse -----------------------------------------------------------------------------------
    def mousePressEvent(self, event):
        button = event.button()
        modifiers = event.modifiers()
        shift = bool(modifiers & qt.Qt.ShiftModifier)
        control = bool(modifiers & qt.Qt.ControlModifier)
        if button == qt.Qt.MiddleButton or (button == qt.Qt.LeftButton and shift):
            mode = "pan"
        elif button == qt.Qt.RightButton or (button == qt.Qt.LeftButton and control):
            mode = "zoom"
        elif button == qt.Qt.LeftButton:
            mode = "windowLevel"
        else:
            return
        x, y = _eventPoint(event)
        self._drag = (mode, x, y)
        event.accept()

    def mouseMoveEvent(self, event):
        if self._drag is None:
            return
        mode, lastX, lastY = self._drag
        x, y = _eventPoint(event)
        dx, dy = x - lastX, y - lastY
        self._drag = (mode, x, y)
        if mode == "windowLevel":
            self.windowLevelDragged.emit(dx, dy)
        elif mode == "pan":
            self.setPanOffset(self._pan[0] + dx, self._pan[1] + dy)
        elif mode == "zoom":
            self.setZoomFactor(self._zoom * math.exp(-dy / 150.0))
        event.accept()

    def mouseReleaseEvent(self, event):
        self._drag = None
        event.accept()

    def mouseDoubleClickEvent(self, event):
        self.resetView()
        event.accept()

    def wheelEvent(self, event):
        steps = event.angleDelta().y() / 120.0
        if not steps:
            return
        if event.modifiers() & qt.Qt.ControlModifier:
            self.setZoomFactor(self._zoom * (1.15**steps))
        else:
            self.sliceScrolled.emit(int(math.copysign(max(1, round(abs(steps))), steps)))
        event.accept()
