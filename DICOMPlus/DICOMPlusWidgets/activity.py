"""DICOMPlusActivityWidget: background jobs with progress bars and Cancel buttons.

Jobs are DICOMPlusLib ``Job`` objects (a function running in a worker thread that reports
progress and checks a cancel token). The widget never waits for them: a QTimer on the main
thread polls ``job.poll()`` while any job runs, updates the rows, and calls the job's
``onDone`` and the ``jobFinished`` signal on the main thread when it ends.
"""

from __future__ import annotations

import qt
from slicer.i18n import tr as _

from . import text as T
from .signals import Signal
from .tasks import stopTimer


class _JobRow:
    """The widgets of one job (plain Python holder; the frame is the Qt parent)."""

    def __init__(self, parent, job, onDone):
        self.job = job
        self.onDone = onDone
        self.reported = False
        self.frame = qt.QFrame(parent)
        self.frame.frameShape = qt.QFrame.StyledPanel
        grid = qt.QGridLayout(self.frame)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setVerticalSpacing(2)
        grid.setColumnStretch(0, 1)
        self.label = qt.QLabel(job.name, self.frame)
        self.label.wordWrap = True
        grid.addWidget(self.label, 0, 0)
        self.cancelButton = qt.QPushButton(_("Cancel"), self.frame)
        self.cancelButton.toolTip = _("Stop this task; the work already done is kept")
        self.cancelButton.connect("clicked(bool)", lambda *args: job.cancel())
        grid.addWidget(self.cancelButton, 0, 1)
        self.progressBar = qt.QProgressBar(self.frame)
        self.progressBar.minimum = 0
        self.progressBar.maximum = 0  # busy until the job reports a total
        self.progressBar.value = 0
        grid.addWidget(self.progressBar, 1, 0, 1, 2)


class DICOMPlusActivityWidget(qt.QWidget):
    """A list of background jobs: name and state, a progress bar, a Cancel button each.

    Signals (:class:`~DICOMPlusWidgets.signals.Signal`): ``jobStarted(str name)``,
    ``jobFinished(str name)`` (the job ended: done, failed or cancelled; its ``onDone`` has run),
    ``jobEnded(object job)`` (the same, with the Job, for hosts that want its result or error).

    Public methods: addJob, jobs, runningJobs, cancelAll, clearFinished, progressOf, rowText,
    cancelButtonFor, rowsInView, status, setStatus, cleanup.
    """

    POLL_MS = 100
    KEEP_FINISHED = 8  # rows of finished jobs kept (the newest)
    ROWS_SHOWN = 2  # rows in view; the others scroll (the status line names the running ones)

    def __init__(self, parent=None):
        qt.QWidget.__init__(self, parent)
        self.jobStarted = Signal(str, name="jobStarted")
        self.jobFinished = Signal(str, name="jobFinished")
        self.jobEnded = Signal(object, name="jobEnded")
        self._rows = []
        self._status = ""
        self._statusSets = 0  # setStatus calls: did the host say something about an ended task?
        layout = qt.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        header = qt.QHBoxLayout()
        self._statusLabel = qt.QLabel(_("Idle"), self)
        self._statusLabel.wordWrap = True
        header.addWidget(self._statusLabel, 1)
        self._clearButton = qt.QPushButton(_("Clear finished"), self)
        self._clearButton.toolTip = _("Remove the rows of the tasks that have ended")
        self._clearButton.connect("clicked(bool)", self.clearFinished)
        header.addWidget(self._clearButton)
        layout.addLayout(header)
        # the rows scroll past ROWS_SHOWN: eight finished tasks in a column took 400 px from
        # the browser and the preview of a panel that must fit a 1080p screen
        self._rowsArea = qt.QScrollArea(self)
        self._rowsArea.widgetResizable = True
        self._rowsArea.frameShape = qt.QFrame.NoFrame
        self._rowsArea.horizontalScrollBarPolicy = qt.Qt.ScrollBarAlwaysOff
        self._rowsArea.setSizePolicy(qt.QSizePolicy.Preferred, qt.QSizePolicy.Fixed)
        rowsWidget = qt.QWidget()
        self._rowsLayout = qt.QVBoxLayout(rowsWidget)
        self._rowsLayout.setContentsMargins(0, 0, 0, 0)
        self._rowsLayout.setSpacing(4)
        self._rowsLayout.addStretch(1)  # rows stay at the top when the area is taller
        self._rowsArea.setWidget(rowsWidget)
        self._rowsArea.hide()  # no rows yet
        layout.addWidget(self._rowsArea)
        self._timer = qt.QTimer(self)
        self._timer.setInterval(self.POLL_MS)
        self._timer.connect("timeout()", self._poll)
        self._updateClearButton()

    # -- jobs -------------------------------------------------------------------------------------
    def addJob(self, job, onDone=None):
        """Show ``job`` (a started DICOMPlusLib Job); ``onDone(job)`` runs on the main thread when
        it ends, whatever the outcome (check ``job.error``). Returns the job."""
        row = _JobRow(self._rowsArea.widget(), job, onDone)
        self._rowsLayout.insertWidget(0, row.frame)
        self._rows.insert(0, row)
        self._updateRow(row)
        self._fitRows()
        self._updateClearButton()
        self._updateStatus()
        self.jobStarted.emit(job.name)
        if not self._timer.isActive():
            self._timer.start()
        return job

    def jobs(self):
        """Jobs shown, newest first."""
        return [row.job for row in self._rows]

    def runningJobs(self):
        return [row.job for row in self._rows if not row.reported]

    def cancelAll(self):
        for job in self.runningJobs():
            job.cancel()

    def clearFinished(self, *args):
        for row in [r for r in self._rows if r.reported]:
            self._removeRow(row)
        self._updateClearButton()

    def _row(self, job):
        for row in self._rows:
            if row.job is job:
                return row
        raise KeyError(f"job {job.name!r} is not shown in the activity list")

    def progressOf(self, job):
        """(value, maximum) of the job's progress bar."""
        bar = self._row(job).progressBar
        return bar.value, bar.maximum

    def rowText(self, job):
        return self._row(job).label.text

    def cancelButtonFor(self, job):
        """The Cancel QPushButton of the job's row (to click it from a test or a host)."""
        return self._row(job).cancelButton

    def status(self):
        return self._statusLabel.text

    def setStatus(self, text):
        """The host's message for the line above the jobs ("" gives back "Idle"). While a task
        runs the line says how many run (and how far those scrolled out of view are): a message
        set before (the panel's "Idle (DICOMPlusLib 0.1.0)") said Idle through a whole retrieve.
        The message shows again when nothing runs; a task that ends without a new message leaves
        Idle (its row says its outcome; an older message would be stale)."""
        self._status = text or ""
        self._statusSets += 1
        self._updateStatus()

    def _progressText(self, job):
        snap = job.poll()
        if snap.total:
            return _("{name}: {done} of {total} ({percent}%)").format(
                name=job.name, done=snap.done, total=snap.total, percent=100 * snap.done // snap.total
            )
        return f"{job.name}..."

    def _updateStatus(self):
        """The line says what the rows below do not: how many tasks run, and the progress of
        those whose rows have scrolled out of view (newest first, as the rows); with every row
        in view, "Running: Import 10 items: 240 of 1000 (24%)" above "Import 10 items: 240 of
        1000" and its bar said the same thing twice. Nothing running: the host's message, or Idle."""
        running = self.runningJobs()
        if not running:
            self._statusLabel.text = self._status or _("Idle")
            return
        inView = [row.job for row in self._rows[: self.ROWS_SHOWN]]
        below = [job for job in running if not any(job is shown for shown in inView)]
        text = _("{tasks} running").format(tasks=T.count(len(running), _("task"), _("tasks")))
        if below:
            text = _("{running}; below: {progress}").format(
                running=text, progress="; ".join(self._progressText(job) for job in below)
            )
        self._statusLabel.text = text

    # -- polling ----------------------------------------------------------------------------------
    def _poll(self):
        ended = []
        for row in list(self._rows):
            if row.reported:
                continue
            self._updateRow(row)
            if row.job.finished:
                row.reported = True
                ended.append(row)
        if not self.runningJobs():
            self._timer.stop()
        else:
            self._updateStatus()  # the progress of what runs
        for row in ended:
            sets = self._statusSets
            onDone, row.onDone = row.onDone, None  # a host's callback is not kept past its use
            if onDone is not None:
                onDone(row.job)
            self.jobFinished.emit(row.job.name)
            self.jobEnded.emit(row.job)
            if self._statusSets == sets:  # no host message about it: its row says its outcome
                self._status = ""
        if ended:
            for row in [r for r in self._rows if r.reported][self.KEEP_FINISHED :]:
                self._removeRow(row)
            self._updateClearButton()
            self._updateStatus()
        self._fitRows()  # a row's text changed: it may wrap to another line

    def _updateRow(self, row):
        job = row.job
        snap = job.poll()
        bar = row.progressBar
        if snap.total:
            bar.maximum = snap.total
            bar.value = min(snap.done, snap.total)
        if not job.finished:
            if snap.total:
                row.label.text = _("{name}: {done} of {total}").format(
                    name=job.name, done=snap.done, total=snap.total
                )
            else:
                row.label.text = f"{job.name}..."
            return
        row.cancelButton.enabled = False
        # an ended job is one line (its outcome): the bar and Cancel say nothing more, and the
        # panel after a load fits Slicer's module panel (340 x 860) without scrolling
        row.cancelButton.visible = row.progressBar.visible = False
        state = snap.state.value
        if state == "done":
            row.label.text = _("{name}: done in {seconds} s").format(
                name=job.name, seconds=f"{snap.elapsed:.1f}"
            )
            if not snap.total:
                bar.maximum = 1
                bar.value = 1
        elif state == "cancelled":
            row.label.text = _("{name}: cancelled").format(name=job.name)
            if not snap.total:
                bar.maximum = 1
        else:
            row.label.text = _("{name}: failed: {error}").format(name=job.name, error=snap.error)
            if not snap.total:
                bar.maximum = 1

    def _removeRow(self, row):
        self._rows.remove(row)
        self._rowsLayout.removeWidget(row.frame)
        row.frame.hide()
        row.frame.deleteLater()
        self._fitRows()

    def _fitRows(self):
        """The rows' area as tall as its first ROWS_SHOWN rows (hidden without rows)."""
        shown = self._rows[: self.ROWS_SHOWN]
        self._rowsArea.visible = bool(shown)
        if shown:
            width = self._rowsArea.viewport().width

            def height(frame):  # a long name wraps its label: the row's height at this width
                wrapped = frame.heightForWidth(width) if width > 0 else -1
                return max(wrapped, frame.sizeHint.height())

            spacing = self._rowsLayout.spacing * (len(shown) - 1)
            self._rowsArea.setFixedHeight(sum(height(row.frame) for row in shown) + spacing)

    def rowsInView(self):
        """How many job rows the list shows without scrolling (the rest scroll)."""
        return min(len(self._rows), self.ROWS_SHOWN)

    def _updateClearButton(self):
        self._clearButton.enabled = any(row.reported for row in self._rows)

    def cleanup(self):
        """Stop polling (running jobs go on; cancel them first with cancelAll if they must stop)."""
        stopTimer(self._timer)
