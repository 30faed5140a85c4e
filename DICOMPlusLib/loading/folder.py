"""``load_folder`` as a command runs it: list the files and queue their reads, then import.

This module imports only the standard library, and :func:`DICOMPlusLib.loading.load_folder`
resolves here, so that the reads of a cold folder are queued (:mod:`.prefetch`) before numpy
and the loader are imported: the disk works while the process imports.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from DICOMPlusLib.loading.prefetch import files_of, prefetch

if TYPE_CHECKING:  # numpy is imported after the reads are queued, not before
    from DICOMPlusLib.loading.models import Volume


def load_folder(
    path: str | os.PathLike, *, resample: bool = False, progress=None, cancel=None
) -> list[Volume]:
    """Every volume of every series in a folder, read directly (no database)."""
    files = files_of([path])
    # The advice is a system call per file (~0.03 ms warm, longer when the disk queue is full):
    # a thread gives it while this one imports (an import holds the GIL; a system call does not).
    queued = threading.Thread(target=prefetch, args=(files,), name="dicomplus-prefetch", daemon=True)
    queued.start()
    try:
        from DICOMPlusLib.loading.api import load, plan_files

        volumes, _skipped = plan_files(files)
    finally:
        queued.join()
    return [load(info, resample=resample, progress=progress, cancel=cancel) for info in volumes]
