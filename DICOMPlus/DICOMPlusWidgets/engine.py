"""The DICOMPlus engine as Slicer runs it: a ``qt.QProcess`` read on the main thread.

PythonQt keeps the GIL while Slicer's main thread idles, so a Python thread in Slicer's process
barely runs. Long work therefore runs in a child process, ``PythonSlicer -m DICOMPlusLib.engine``
(:mod:`DICOMPlusLib.engine`), which this module starts and talks to in JSON lines. Nothing here
waits: the engine's output arrives through QProcess signals, on the main thread, and becomes the
state of :class:`~DICOMPlusLib.engine.protocol.RemoteJob` objects (the same interface as the
library's Jobs, so the activity list shows them) and notifications (the listener's completed
series). Only :meth:`RemoteJob.wait` blocks, for console users and tests that ask for it.

There is one engine per Slicer session (:func:`engine`). It exits when Slicer does (its stdin
closes; on Linux also on parent death), and is started again by the next task if it crashed.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys

import qt

from DICOMPlusLib.engine.client import engine_environment
from DICOMPlusLib.engine.protocol import EngineConnection
from DICOMPlusLib.errors import EngineError

from .signals import Signal

logger = logging.getLogger("DICOMPlus.engine")

_engine = None


def engine():
    """The session's engine client (created on first use; the process starts with the first
    request, or with :meth:`EngineClient.start`)."""
    global _engine
    if _engine is None:
        _engine = EngineClient()
        app = qt.QCoreApplication.instance()
        if app is not None:  # stop it while Qt is still whole (it would also die with Slicer)
            app.connect("aboutToQuit()", shutdownEngine)
        atexit.register(shutdownEngine)
    return _engine


def shutdownEngine(timeout=5.0):
    """Stop the session's engine (it is started again on the next request)."""
    global _engine
    client, _engine = _engine, None
    if client is not None:
        client.stop(timeout)


def pythonSlicerExecutable():
    """Slicer's own Python launcher (``PythonSlicer``: Slicer's Python with Slicer's paths), or
    this interpreter where there is none (outside Slicer: the test harness, PythonSlicer itself)."""
    found = shutil.which("PythonSlicer")
    if found:
        return found
    candidate = os.path.join(os.path.dirname(sys.executable), "PythonSlicer")
    for path in (candidate, candidate + ".exe"):
        if os.path.isfile(path):
            return path
    if os.path.basename(sys.executable).lower().startswith("python"):
        return sys.executable
    raise EngineError(
        "cannot find PythonSlicer (Slicer's Python) to start the DICOMPlus engine: "
        "is this a complete Slicer installation?"
    )


class EngineClient(EngineConnection):
    """One engine process and the jobs it runs. Signals: ``started(int pid)``,
    ``exited(str reason)`` (an unexpected end: the listener is gone, running jobs failed)."""

    def __init__(self, program=None):
        EngineConnection.__init__(self)
        self.program = program
        self.process = None
        self.starts = 0
        self._stopping = False
        self.started = Signal(int, name="started")
        self.exited = Signal(str, name="exited")

    # -- process ---------------------------------------------------------------------------
    def running(self):
        return self.process is not None and self.process.state() != qt.QProcess.NotRunning

    def pid(self):
        return int(self.process.processId()) if self.running() else 0

    def start(self):
        """Start the engine process if it is not running (returns at once)."""
        if self.running():
            return
        program = self.program or pythonSlicerExecutable()
        process = qt.QProcess()
        environment = qt.QProcessEnvironment.systemEnvironment()
        for key, value in engine_environment({}).items():
            if key == "PYTHONPATH":
                existing = environment.value("PYTHONPATH", "")
                value = value + (os.pathsep + existing if existing else "")
            environment.insert(key, value)
        process.setProcessEnvironment(environment)
        process.connect("readyReadStandardOutput()", self._onStdout)
        process.connect("readyReadStandardError()", self._onStderr)
        process.connect("finished(int,QProcess::ExitStatus)", self._onFinished)
        process.connect("errorOccurred(QProcess::ProcessError)", self._onError)
        self.process = process
        self._stopping = False
        self.starts += 1
        process.start(program, ["-m", "DICOMPlusLib.engine"])
        logger.info("DICOMPlus engine: %s -m DICOMPlusLib.engine", program)

    def stop(self, timeout=5.0):
        """Close the engine's stdin (it cancels its tasks and exits); kill it after ``timeout``."""
        process = self.process
        if process is None:
            return
        self._stopping = True
        try:
            if self.running():
                process.closeWriteChannel()
                if not process.waitForFinished(int(timeout * 1000)):
                    process.kill()
                    process.waitForFinished(2000)
            self._drain(process)
        except RuntimeError:  # Qt deleted the process already (application exit): it is gone
            pass
        self.engine_exited("the DICOMPlus engine was stopped")
        self.process = None

    # -- EngineConnection --------------------------------------------------------------------
    def _write(self, data):
        self.start()
        self.process.write(data)

    def pump(self, timeout):
        if self.running():
            self.process.waitForReadyRead(max(1, int(timeout * 1000)))  # emits readyRead: _onStdout
        else:
            qt.QThread.msleep(max(1, int(timeout * 1000)))

    # -- QProcess signals (main thread) ----------------------------------------------------------
    def _read(self, channel):
        """Bytes available on ``channel`` ("Output" or "Error"); b"" once Qt has deleted the
        process (at application exit)."""
        try:
            return bytes(getattr(self.process, f"readAllStandard{channel}")().data())
        except (RuntimeError, AttributeError):
            return b""

    def _onStdout(self):
        if self.process is not None:
            self.feed(self._read("Output"))

    def _onStderr(self):
        if self.process is None:
            return
        text = self._read("Error").decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                logger.warning("%s", line)

    def _drain(self, process):
        if process is self.process:
            self._onStdout()
            self._onStderr()

    def _onFinished(self, exitCode, exitStatus=None):
        process = self.process
        self._drain(process)
        if self._stopping:
            return
        reason = (
            f"The DICOMPlus engine stopped unexpectedly (exit code {exitCode}); running tasks failed and "
            "the listener is stopped. It starts again with the next task."
        )
        logger.error(reason)
        self.engine_exited(reason)
        self.process = None
        self.exited.emit(reason)

    def _onError(self, error):
        if error == qt.QProcess.FailedToStart and not self._stopping:
            reason = f"The DICOMPlus engine could not start ({self.program or pythonSlicerExecutable()})."
            logger.error(reason)
            self.engine_exited(reason)
            self.process = None
            self.exited.emit(reason)
