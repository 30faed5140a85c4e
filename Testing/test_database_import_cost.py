"""What a folder import costs per file, counted (system calls, working-folder lookups), not timed:
the import's own Python work per file is what bounds ``dicomplus import --link`` (issue 19)."""

from __future__ import annotations

import collections
import os

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database


def count_calls(monkeypatch, names: tuple[str, ...]) -> collections.Counter:
    """Count calls of the ``os`` functions ``names``: all of them, and (key ``name:file``) those
    given a path of a ``.dcm`` file."""
    calls: collections.Counter = collections.Counter()
    for name in names:
        real = getattr(os, name)

        def counting(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            if args and isinstance(args[0], str) and args[0].endswith(".dcm"):
                calls[f"{_name}:file"] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, counting)
    return calls


def test_link_import_opens_reads_and_stats_each_file_once(tmp_path, monkeypatch):
    """One ``open``, ``fstat``, header ``pread`` and ``stat`` a file: the ``stat`` of the path
    after the scan tells a file replaced or rewritten meanwhile, and with the same inode it is
    the open file's (a second ``fstat`` would say the same). A relative path is made absolute
    against the working folder looked up once a batch, not once or twice a file."""
    series = make_series(tmp_path / "s", n=12, rows=8, cols=8)
    monkeypatch.chdir(tmp_path)
    with Database(tmp_path / "db") as db:
        calls = count_calls(monkeypatch, ("open", "fstat", "stat", "pread", "getcwd"))
        report = db.import_paths(["s"], link=True, jobs=1)
        monkeypatch.undo()
        paths = sorted(row[0] for row in db._reader().execute("SELECT path FROM instances"))
        sources = sorted(row[0] for row in db._reader().execute("SELECT path FROM sources"))
    assert report.added == 12
    assert paths == sources == sorted(str(p) for p in series.files)
    assert (calls["open:file"], calls["fstat"], calls["pread"], calls["stat:file"]) == (12, 12, 12, 12)
    assert calls["getcwd"] == 1


def test_copying_import_stats_each_source_once(tmp_path, monkeypatch):
    """The same for a copying import (``--jobs 1``): one ``fstat`` of each open source."""
    make_series(tmp_path / "s", n=12, rows=8, cols=8)
    with Database(tmp_path / "db") as db:
        calls = count_calls(monkeypatch, ("open", "fstat", "stat"))
        report = db.import_paths([tmp_path / "s"], jobs=1)
        monkeypatch.undo()
        stored = [row[0] for row in db._reader().execute("SELECT path FROM instances")]
        assert all(db.store.contains(path) for path in stored)
    assert report.added == len(stored) == 12
    assert (calls["open:file"], calls["stat:file"]) == (12, 12)
    assert calls["fstat"] == 12 + 1  # and the writer's lock file, once (FileStore._claim)


def test_link_import_makes_each_source_path_absolute_once(tmp_path, monkeypatch):
    """A linked file's stored path is its source's path made absolute, and so is its sources
    row's: made once a file, not once for each row (a relative path given here, so the rows show
    that both are the absolute one)."""
    from DICOMPlusLib.database import base, rows

    series = make_series(tmp_path / "s", n=12, rows=8, cols=8)
    monkeypatch.chdir(tmp_path)
    made: collections.Counter = collections.Counter()
    real = rows.absolute

    def counting(path, cwd=None):
        made[path] += 1
        return real(path, cwd)

    with Database(tmp_path / "db") as db:
        for module in (base, rows):
            monkeypatch.setattr(module, "absolute", counting)
        report = db.import_paths(["s"], link=True, jobs=1)
        monkeypatch.undo()
        instances = sorted(row[0] for row in db._reader().execute("SELECT path FROM instances"))
        sources = sorted(row[0] for row in db._reader().execute("SELECT path FROM sources"))
    assert report.added == 12
    files = sorted(str(p) for p in series.files)
    assert instances == sources == files
    assert len(made) == 12 and set(made.values()) == {1}


def test_an_import_makes_records_only_for_its_subscribers(tmp_path, monkeypatch):
    """An import reads only the statuses of its commits: no ``InstanceRecord`` is made for a
    file while nobody subscribes to the database's new instances; a subscriber gets each stored
    instance with its record, as committed."""
    from DICOMPlusLib.database import database

    made = []
    real = database.placed_record

    def counting(*args, **kwargs):
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(database, "placed_record", counting)
    first = make_series(tmp_path / "a", n=12, rows=8, cols=8)
    second = make_series(tmp_path / "b", n=5, rows=8, cols=8)
    with Database(tmp_path / "db") as db:
        assert db.import_paths([first.folder], link=True, jobs=1).added == 12
        assert made == []
        seen = []
        db.ingest.subscribe(lambda result, context: seen.append(result))
        assert db.import_paths([second.folder], link=True, jobs=1).added == 5
    assert len(made) == 5
    assert sorted(r.record.path for r in seen) == sorted(str(p) for p in second.files)
    assert all(r.record.SOPInstanceUID == r.sop_instance_uid for r in seen)


def test_import_again_looks_up_the_working_folder_once_a_folder(tmp_path, monkeypatch):
    """Importing unchanged files again given a relative path: one ``stat`` a file, no file
    opened, and the working folder looked up once for the folder, not once a file (a
    ``getcwd`` system call each: 18 of the ~130 ms of an import again of 10,080 files)."""
    series = make_series(tmp_path / "s", n=12, rows=8, cols=8)
    monkeypatch.chdir(tmp_path)
    with Database(tmp_path / "db") as db:
        assert db.import_paths(["s"], link=True, jobs=1).added == 12
        calls = count_calls(monkeypatch, ("open", "stat", "getcwd"))
        again = db.import_paths(["s", "./s/../s/" + series.files[0].name], link=True, jobs=1)
        monkeypatch.undo()
    assert (again.unchanged, again.added, again.files_seen) == (13, 0, 13)
    assert (calls["open:file"], calls["stat:file"]) == (0, 13)
    assert calls["getcwd"] == 2  # "s" and "./s/../s"
