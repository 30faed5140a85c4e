"""The rows an import writes stay what they were: every column of every table and every stored
header blob, for the real scanners' files of the shared series, imported in place (``--link``),
copied with worker threads and copied in one thread. Compared with a digest of the rows that
main's code wrote for the same files (commit 59f511b, before session 9's cuts of the import's
per-file work: header scan, start-up imports), so that a faster scan or row building that changes
a value, a header's bytes or an offset fails here, not in a user's search months later.

What differs from one checkout to another is taken out of the digest: the time rows were written
(``inserted``), the folders (paths are written relative to the shared series or the store) and
the source files' mtimes (checked against the files instead). Regenerate the digests with
``python Testing/test_database_rows_golden.py`` only for a change meant to alter rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from DICOMPlusLib.database import Database

#: mode -> sha256 of :func:`rows_digest` for the shared series, as main 59f511b wrote them.
EXPECTED = {
    "link": "07c093cf8d4b056d75fe0b50b2a984b984c6221f872012c928baaf269c65c4c4",
    "copy": "569cc2efac200560ebb58e10339a6769fee746398aefdf2d446cf93dc83a6c6f",
    "jobs1": "569cc2efac200560ebb58e10339a6769fee746398aefdf2d446cf93dc83a6c6f",
}
MODES: dict[str, dict[str, Any]] = {
    "link": {"link": True},
    "copy": {"link": False},
    "jobs1": {"link": False, "jobs": 1},
}


def rows_digest(db_folder: Path, source_root: Path) -> tuple[str, int]:
    """(sha256 of every table's rows, the number of instances). Each row is every column but
    ``inserted``; paths are made relative (``<SRC>`` the shared series, ``<DB>`` the database's
    folder), a header is its sha256, a source file's mtime is checked against the file."""
    conn = sqlite3.connect(db_folder / "dicomplus.sqlite")
    src, db = str(source_root), str(db_folder)
    tables: dict[str, list[str]] = {}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if r[1] != "inserted"]
        rows = []
        for values in conn.execute(f"SELECT {','.join(columns)} FROM {table}"):
            row = dict(zip(columns, values, strict=True))
            if table in ("instances", "sources") and row.get("mtime") is not None:
                source = row["source"] if table == "instances" else row["path"]
                if source:  # the file's own mtime (the checkout's, not the digest's)
                    assert row["mtime"] == os.stat(source).st_mtime, (table, source)
                row["mtime"] = "<mtime>" if source else row["mtime"]
            for key, value in row.items():
                if isinstance(value, bytes):
                    row[key] = hashlib.sha256(value).hexdigest()
                elif isinstance(value, str):
                    row[key] = value.replace(src, "<SRC>").replace(db, "<DB>")
            rows.append(json.dumps(row, sort_keys=True))
        tables[table] = sorted(rows)
    conn.close()
    count = len(tables.get("instances", []))
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest(), count


def import_and_digest(tmp: Path, source_root: Path, mode: str) -> tuple[str, int]:
    folder = tmp / f"db-{mode}"
    with Database(folder) as db:
        report = db.import_paths([source_root], **MODES[mode])
        assert report.added > 0
    return rows_digest(folder, source_root)


@pytest.mark.parametrize("mode", list(MODES))
def test_rows_are_main_s_for_the_shared_series(tmp_path, shared_series, mode):
    digest, instances = import_and_digest(tmp_path, shared_series, mode)
    assert instances > 200  # the shared series were imported
    assert digest == EXPECTED[mode], (
        f"the rows of a {mode} import of the shared series changed (every column and header "
        "blob but the time written): if that is meant, regenerate EXPECTED (module docstring)"
    )


if __name__ == "__main__":  # print the digests for EXPECTED (with the code on sys.path)
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from dicomplus_testing.data import shared_series_dir

    with tempfile.TemporaryDirectory() as tmp:
        for name in MODES:
            print(name, *import_and_digest(Path(tmp), shared_series_dir(), name))
