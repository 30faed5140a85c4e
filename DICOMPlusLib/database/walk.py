"""Walking the paths given to an import or a send: every file under them, sorted, hidden files
skipped, a DICOMDIR expanded to the files it references.

A module of its own, apart from :mod:`.indexer`: ``dicomplus send FOLDER`` walks the folder too,
and should not import the indexer's ingest, store and ``sqlite3`` (about 4 ms of a process that
sends nothing to a database) to do it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from DICOMPlusLib.models import SkippedFile


def iter_files(
    paths: Iterable[str | os.PathLike], *, unreadable: list[SkippedFile] | None = None
) -> Iterator[str]:
    """Every file under ``paths`` (recursively, sorted, hidden files skipped). A DICOMDIR given
    explicitly expands to the files it references, as well as its folder's other files. Folders
    that cannot be listed are appended to ``unreadable`` (with the reason) when it is given."""

    def on_error(exc: OSError) -> None:
        if unreadable is not None:
            unreadable.append(SkippedFile(str(exc.filename), f"cannot read folder: {exc.strerror or exc}"))

    for given in paths:
        path = Path(given)
        if path.is_dir():
            for root, dirs, files in os.walk(path, onerror=on_error):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith("."):
                        yield os.path.join(root, name)
        elif path.name.upper() == "DICOMDIR" and path.is_file():
            yield from _dicomdir_files(path)
        else:
            yield str(path)


def _dicomdir_files(path: Path) -> Iterator[str]:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        yield str(path)
        return
    yield str(path)  # reported as a media storage directory
    for record in ds.get("DirectoryRecordSequence", []):
        ref = record.get("ReferencedFileID")
        if ref:
            parts = [ref] if isinstance(ref, str) else list(ref)
            yield str(path.parent.joinpath(*parts))
