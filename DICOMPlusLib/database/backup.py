"""A copy of an SQLite database while it is in use (``dicomplus db backup``, the panel's Backup).

The ``.sqlite`` file alone can lack every commit since the last checkpoint (they are in its
``-wal``; docs/reliability.md "Copying or backing up the database"): :func:`backup` copies the
pages SQLite reads (``sqlite3_backup``) under one read transaction, so that writers of other
processes neither block it nor restart it. Imported only by :meth:`Database.backup
<DICOMPlusLib.database.database.Database.backup>`: no other command pays for it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from DICOMPlusLib.database.ingest import is_space_error
from DICOMPlusLib.database.store import create_owner_only, sync_path
from DICOMPlusLib.errors import DatabaseError, DiskFullError

if TYPE_CHECKING:
    from DICOMPlusLib.jobs import CancelToken, ProgressCallback

#: Pages a backup copies between two looks at its cancel token and its progress (1 MiB).
BACKUP_STEP_PAGES = 256


def backup(
    conn: sqlite3.Connection,
    source: Path,
    target: Path,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """A complete, consistent copy of the database ``source``, read through ``conn`` (a
    connection of its own, which the caller closes), in one new file ``target`` (an absolute
    path), while anything else may read or write it.

    The copy goes into a temporary name beside ``target``, is made a rollback-journal database
    (one self-contained file), checked, synced and renamed into place. The stored files are not
    copied: they stay in the store."""
    if target.exists():
        raise DatabaseError(f"{target} exists: a backup goes to a new file")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.incomplete")

    def step(_status: int, remaining: int, total: int) -> None:
        if progress is not None:
            progress(total - remaining, total, "pages")
        if cancel is not None:
            cancel.raise_if_cancelled()  # raised here, sqlite3 stops the copy

    made = not target.parent.exists()  # removed again if the backup does not finish
    done = False
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_owner_only(tmp)  # patient data: the copy as private as the database
        copy = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot taken
            conn.backup(copy, pages=BACKUP_STEP_PAGES, progress=step)
            conn.execute("COMMIT")
            copy.execute("PRAGMA journal_mode=DELETE")
            (check,) = copy.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise DatabaseError(f"the copy of {source} did not check out: {check}")
        finally:
            copy.close()
        sync_path(tmp)
        os.rename(tmp, target)
        done = True
        with contextlib.suppress(OSError):
            sync_path(target.parent)
    except (sqlite3.Error, OSError) as exc:
        if is_space_error(exc):  # the copy is removed below: nothing half-written stays
            raise DiskFullError(str(target.parent)) from exc
        why = exc if isinstance(exc, sqlite3.Error) else exc.strerror or exc
        raise DatabaseError(f"cannot back up {source} to {target}: {why}") from exc
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        with contextlib.suppress(OSError):
            os.unlink(f"{tmp}-journal")
        if made and not done:
            with contextlib.suppress(OSError):
                target.parent.rmdir()
    return target
