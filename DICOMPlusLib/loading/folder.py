"""``load_folder`` as a command runs it: list the files and queue their reads, then import.

This module imports only the standard library, and :func:`DICOMPlusLib.loading.load_folder`
resolves here, so that the reads of a cold folder are queued (:mod:`.prefetch`) and the volume's
memory is faulted in (:mod:`.ahead`) before numpy and the loader are imported: the disk and the
second core work while the process imports and scans the headers.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from DICOMPlusLib.loading.ahead import VolumeAhead
from DICOMPlusLib.loading.prefetch import files_of, prefetch

if TYPE_CHECKING:  # numpy is imported after the reads are queued, not before
    from DICOMPlusLib.loading.models import Volume

#: The longest the imports wait for the first file's read to be asked for (a file system that
#: blocks an ``open`` does not hold the load up longer than this).
WAIT_FIRST_S = 0.1


def load_folder(
    path: str | os.PathLike, *, resample: bool = False, progress=None, cancel=None
) -> list[Volume]:
    """Every volume of every series in a folder, read directly (no database)."""
    files = files_of([path])
    # The advice is a system call per file (~0.03 ms warm, longer when the disk queue is full):
    # a thread gives it while this one imports (an import holds the GIL; a system call does not).
    # The imports wait for its first file to be asked for (at most WAIT_FIRST_S): an import holds
    # the GIL, and a thread just started could otherwise get it only once numpy is importing.
    begun = threading.Event()
    queued = threading.Thread(
        target=prefetch, args=(files,), kwargs={"begun": begun}, name="dicomplus-prefetch", daemon=True
    )
    queued.start()
    begun.wait(WAIT_FIRST_S)
    # The first large volume's pages are faulted in on another thread meanwhile (see .ahead).
    ahead = VolumeAhead(files)
    ahead.start()
    needed = 0
    try:
        from DICOMPlusLib.loading.api import load, plan_files
        from DICOMPlusLib.loading.pixels import mapped_bytes

        volumes, _skipped = plan_files(files)
        sizes = [mapped_bytes(info) if _plain(info) else 0 for info in volumes]
        first = next((i for i, size in enumerate(sizes) if size), None)
        if first is not None:
            needed = sizes[first]
    finally:
        queued.join()
        memory = ahead.finish(needed)
    return [
        load(info, resample=resample, progress=progress, cancel=cancel, memory=memory if i == first else None)
        for i, info in enumerate(volumes)
    ]


def _plain(info) -> bool:
    """A volume whose voxels are read straight into one array (not a segmentation or a mosaic)."""
    from DICOMPlusLib.loading.models import SEGMENTATION_EXTRA

    return not info.mosaic and info.extra.get(SEGMENTATION_EXTRA) is None
