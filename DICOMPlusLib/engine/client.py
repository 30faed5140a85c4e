"""A host for the engine in plain Python: a subprocess and one reader thread.

The Slicer module does not use this (it reads the engine from ``qt.QProcess`` signals on the main
thread, with no Python thread); tests and Python hosts without Qt do::

    with SubprocessEngine() as engine:
        report = engine.submit("import", {"db": path, "paths": [folder]}).get()
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

from DICOMPlusLib.engine.protocol import EngineConnection


def engine_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for an engine: this DICOMPlusLib's folder first on PYTHONPATH (so the
    engine runs the same code as its host), and the host's pid for parent-death checks."""
    env = dict(os.environ if base is None else base)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(
        [root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    env["DICOMPLUS_ENGINE_PARENT"] = str(os.getpid())
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def engine_command(python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "DICOMPlusLib.engine"]


class SubprocessEngine(EngineConnection):
    """Start ``python -m DICOMPlusLib.engine`` and talk to it. Callbacks and job state change on
    the reader thread; :meth:`RemoteJob.wait` simply waits."""

    def __init__(self, python: str | None = None, env: dict[str, str] | None = None) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self.process = subprocess.Popen(
            engine_command(python),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=engine_environment(env),
        )
        self.exit_code: int | None = None
        self._reader = threading.Thread(target=self._read, name="dicomplus-engine-reader", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def _read(self) -> None:
        stream = self.process.stdout
        # A pipe with the default buffering is a BufferedReader: read1 returns what has arrived.
        assert isinstance(stream, io.BufferedReader)
        while True:
            data = stream.read1(65536)
            if not data:
                break
            with self._lock:
                self.feed(data)
        self.exit_code = self.process.wait()
        with self._lock:
            self.engine_exited(f"the DICOMPlus engine stopped (exit code {self.exit_code})")

    def pump(self, timeout: float) -> None:
        # The reader thread handles output as it comes; waiting is all there is to do.
        self._reader.join(min(timeout, 0.02))

    def close(self, timeout: float = 10.0) -> int | None:
        """Close the engine's stdin (it stops) and wait for it; killed after ``timeout``."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout)
        return self.process.returncode

    def __enter__(self) -> SubprocessEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
