"""The managed file store: where imported and received files live.

File names never come from UIDs or from the sender: a file's name is a hash of its
SOPInstanceUID, under two levels of fan-out folders, so a hostile UID such as ``../../x`` cannot
leave the store and no folder grows too large. Files are written to a temporary name in the
store and renamed into place (atomic on POSIX), so a crash never leaves a half-written file
under a final name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class FileStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def relative_path_for(self, sop_instance_uid: str, *, unique: bool = False) -> str:
        """``hh/<sha256>.dcm``; ``unique`` adds a random suffix (for a replacement written while
        the instance's current file must stay valid until the database commit)."""
        digest = hashlib.sha256(sop_instance_uid.encode("utf-8", "surrogateescape")).hexdigest()
        suffix = f"-{os.urandom(4).hex()}" if unique else ""
        return f"{digest[:2]}/{digest}{suffix}.dcm"

    def path_for(self, sop_instance_uid: str, *, unique: bool = False) -> Path:
        return self.root / self.relative_path_for(sop_instance_uid, unique=unique)

    def contains(self, path: str | Path) -> bool:
        """True when ``path`` resolves to a place inside the store."""
        try:
            Path(path).resolve().relative_to(self.root.resolve())
        except ValueError:
            return False
        return True

    def write_bytes(self, sop_instance_uid: str, data: bytes | memoryview, *, unique: bool = False) -> Path:
        """Write ``data`` atomically to the store; return the final path.

        Raises OSError (e.g. ENOSPC) with no partial file left behind.
        """
        final = self.path_for(sop_instance_uid, unique=unique)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return final

    def temporary_file(self) -> tuple[int, str]:
        """A temporary file inside the store (same file system, so os.replace is atomic)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=".incoming-", dir=self.root)

    def adopt(self, sop_instance_uid: str, tmp_path: str | Path, *, unique: bool = False) -> Path:
        """Move a finished temporary file into its final place."""
        final = self.path_for(sop_instance_uid, unique=unique)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_path, final)
        return final

    def remove(self, path: str | Path) -> bool:
        """Delete a stored file and the fan-out folders it leaves empty."""
        path = Path(path)
        if not self.contains(path):
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        if path.parent.parent == self.root and len(path.parent.name) == 2:  # a fan-out folder
            try:
                path.parent.rmdir()  # only when it is now empty
            except OSError:
                pass
        return True
