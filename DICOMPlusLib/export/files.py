"""Output files that are whole or absent: the one guarantee of the series export, the SEG export
and the Data Bundle writer.

A SIGTERM or Ctrl-C of the command line raises (KeyboardInterrupt, SystemExit) wherever the code
happens to be, including between the creation of a file and the line that would note it (a
fresh-clone CI run left a slice so). So the name being created is noted *before* ``open(...,
"xb")``, and :meth:`NewFiles.discard` removes it unless a file of that name was in the folder
before the operation began (then the ``"xb"`` failed and the file is someone else's).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


class NewFiles:
    """The files one operation creates in ``folder``; none may exist yet."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.written: list[Path] = []
        self.before = set(os.listdir(self.folder))
        self.pending: Path | None = None

    @contextlib.contextmanager
    def create(self, name: str) -> Iterator[BinaryIO]:
        """``folder/name`` opened for writing; ``FileExistsError`` if it exists (left as it is)."""
        path = self.folder / name
        self.pending = path
        with open(path, "xb") as f:
            self.written.append(path)
            self.pending = None
            yield f

    def discard(self) -> None:
        """Remove every file created so far (also one created but not noted yet)."""
        if self.pending is not None and self.pending.name not in self.before:
            self.written.append(self.pending)
        for path in self.written:
            with contextlib.suppress(OSError):
                path.unlink()
        self.written.clear()
        self.pending = None


@contextlib.contextmanager
def whole_or_none(folder: str | os.PathLike) -> Iterator[NewFiles]:
    """:class:`NewFiles` for ``folder``, all removed if the block raises anything (an
    ``ExportError``, a ``CancelledError``, a signal's ``KeyboardInterrupt`` or ``SystemExit``)."""
    files = NewFiles(folder)
    try:
        yield files
    except BaseException:
        files.discard()
        raise
