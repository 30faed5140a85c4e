"""``dicomplus db migrate``: an SQLite database copied into PostgreSQL, files kept or moved,
resumable after SIGKILL (a real kill of the migrating process, between moving a batch's files
and committing it) and after a cancel; a second run adds nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.cli import main
from DICOMPlusLib.database import Database, open_database
from DICOMPlusLib.database.migrate import migrate
from DICOMPlusLib.errors import DatabaseError
from DICOMPlusLib.jobs import CancelToken


def _sqlite(tmp_path, *, linked: bool = False) -> tuple[Database, list]:
    """An SQLite database with two patients, three series (one MR with non-column tags), one
    of them imported in place when ``linked``."""
    a = make_series(tmp_path / "a", n=7, seed=1, rows=8, cols=8)
    b = make_series(tmp_path / "b", n=5, seed=2, rows=8, cols=8, modality="MR", patient_id="P2",
                    patient_name="Other^Person")  # fmt: skip
    c = make_series(tmp_path / "c", n=4, seed=3, rows=8, cols=8, study_uid=a.study_uid, series_number=2)
    db = Database(tmp_path / "sqlite")
    db.import_paths([a.folder, b.folder])
    db.import_paths([c.folder], link=linked)
    return db, [a, b, c]


def _rows(db) -> dict[str, tuple]:
    return {
        r.SOPInstanceUID: (r.SeriesInstanceUID, r.InstanceNumber, r.Rows, r.size, r.pixel_offset)
        for s in db.search("series")
        for r in db.instances(s.SeriesInstanceUID)
    }


def _keys(records) -> list[str]:
    return sorted(r.SeriesInstanceUID for r in records)


def _studies(db) -> list[dict]:
    return sorted((s.to_dict() for s in db.search("study")), key=lambda d: d["StudyInstanceUID"])


def test_keep_files_copies_rows_headers_and_sources(postgres_url, tmp_path):
    src, (a, b, c) = _sqlite(tmp_path, linked=True)
    expected_rows, expected_studies, expected_paths = _rows(src), _studies(src), src.instance_paths()
    expected_exact = _keys(src.search("series", {"ImageType": "ORIGINAL"}))
    src.close()
    report = migrate(tmp_path / "sqlite", postgres_url, batch=4)
    assert (report.total, report.copied, report.already, report.files_moved) == (16, 16, 0, 0)
    assert report.sources >= 16 and not report.cancelled
    with open_database(postgres_url) as dst:
        assert dst.store_root == tmp_path / "sqlite" / "store"  # the SQLite store, kept in place
        assert _rows(dst) == expected_rows
        assert _studies(dst) == expected_studies  # counts and modalities as in SQLite
        assert dst.instance_paths() == expected_paths
        assert {p: os.path.exists(p) for p in expected_paths.values()} == dict.fromkeys(
            expected_paths.values(), True
        )
        # The JSONB elements were computed: a non-column tag is matched by the server.
        assert len(dst.search("instance", {"RepetitionTime": "5*"})) == 5
        # The terms of each series too: an exact key finds what SQLite's header scan found.
        exact = {"ImageType": "ORIGINAL"}
        assert _keys(dst.search("series", exact)) == expected_exact != []
        assert dst.header(b.sop_uids[0]).PatientID == "P2"
        # The import history came along: importing the same folders again adds nothing.
        again = dst.import_paths([a.folder, c.folder])
        assert again.added == 0 and again.unchanged == 11
    second = migrate(tmp_path / "sqlite", postgres_url, batch=4)
    assert (second.copied, second.already) == (0, 16)


def test_move_files_into_the_postgresql_store(postgres_url, tmp_path):
    src, (a, _, c) = _sqlite(tmp_path, linked=True)
    old_paths = src.instance_paths()
    src.close()
    code = main(["db", "migrate", "--from", str(tmp_path / "sqlite"), "--to", postgres_url,
                 "--store", str(tmp_path / "pgstore"), "--move-files", "--json"])  # fmt: skip
    assert code == 0
    with open_database(postgres_url) as dst:
        paths = dst.instance_paths()
        for sop, path in paths.items():
            assert os.path.exists(path)
            if sop in c.sop_uids:  # imported in place: the user's files, not moved
                assert path == old_paths[sop]
            else:
                assert dst.store.contains(path) and not os.path.exists(old_paths[sop])
        dst.delete(series=a.series_uid)
        assert not any(os.path.exists(paths[sop]) for sop in a.sop_uids)


def _stored_files(folder) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if f.endswith(".dcm"))


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import DICOMPlusLib.database.postgres as pg
    from DICOMPlusLib.database.migrate import migrate

    real, calls = pg.lock_keys, []

    def lock_then_die(conn, keys):
        calls.append(1)
        if len(calls) == 2:  # the second batch: its files are moved, its rows not committed
            os.kill(os.getpid(), signal.SIGKILL)
        real(conn, keys)

    pg.lock_keys = lock_then_die
    migrate(sys.argv[1], sys.argv[2], store=sys.argv[3], move_files=True, batch=5)
    """
)


def test_a_killed_migration_resumes_without_duplicates(postgres_url, tmp_path):
    src, series = _sqlite(tmp_path)
    total = src.info()["instances"]
    src.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    store = tmp_path / "pgstore"
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(tmp_path / "sqlite"), postgres_url, str(store)],
        env=env,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL
    with open_database(postgres_url) as dst:
        assert dst.info()["instances"] == 5  # the first batch, committed
    assert len(_stored_files(store)) == 10  # the second batch's files moved, not yet indexed
    out = subprocess.run(
        [sys.executable, "-m", "DICOMPlusLib.cli", "db", "migrate", "--from", str(tmp_path / "sqlite"),
         "--to", postgres_url, "--move-files", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["copied"], report["already"], report["files_missing"]) == (total - 5, 5, 0)
    with open_database(postgres_url) as dst:
        info = dst.info()
        assert info == {"patients": 2, "studies": 2, "series": 3, "instances": total}
        paths = dst.instance_paths()
        assert sorted(paths.values()) == _stored_files(store)  # one file per row, none left over
        assert set(paths) == {sop for s in series for sop in s.sop_uids}
    assert _stored_files(tmp_path / "sqlite" / "store") == []


def test_cancel_keeps_whole_batches_and_the_next_run_continues(postgres_url, tmp_path):
    src, _ = _sqlite(tmp_path)
    src.close()
    token = CancelToken()
    report = migrate(
        tmp_path / "sqlite",
        postgres_url,
        batch=6,
        cancel=token,
        progress=lambda done, total, cur: token.cancel(),
    )
    assert report.cancelled and report.copied == 6 and report.sources == 0
    rest = migrate(tmp_path / "sqlite", postgres_url, batch=6)
    assert (rest.copied, rest.already, rest.cancelled) == (10, 6, False)


def test_clear_errors(postgres_url, tmp_path):
    with pytest.raises(DatabaseError, match="no SQLite database at"):
        migrate(tmp_path / "nothing", postgres_url)
    assert not (tmp_path / "nothing").exists()
    src, _ = _sqlite(tmp_path)
    src.close()
    with pytest.raises(DatabaseError, match="no file store yet: give one with --store"):
        migrate(tmp_path / "sqlite", postgres_url, move_files=True)
    assert (
        main(["db", "migrate", "--from", str(tmp_path / "sqlite"), "--to", str(tmp_path / "x.sqlite")]) == 2
    )


def test_move_files_into_another_store_than_the_recorded_one_says_so(postgres_url, tmp_path, capsys):
    """``--store X --move-files`` into a database that records the store Y put the files in X
    with no word: --store wins for the command (as on every command), and a note on stderr names
    both before anything moves; the summary says where the files went."""
    recorded, other = tmp_path / "recorded", tmp_path / "other"
    assert main(["--db", postgres_url, "--store", str(recorded), "info"]) == 0
    src, _ = _sqlite(tmp_path)
    src.close()
    capsys.readouterr()
    code = main(["db", "migrate", "--from", str(tmp_path / "sqlite"), "--to", postgres_url,
                 "--store", str(other), "--move-files"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"records the store {recorded}; --store moves these files into {other}" in err, err
    assert f"files moved 16 into {other}" in out, out
    with open_database(postgres_url) as dst:
        assert str(dst.store.root) == str(recorded)  # the database still records its own
        assert all(path.startswith(f"{other}/") for path in dst.instance_paths().values())
    # the recorded store itself, or no --store: no note
    src, _ = _sqlite(tmp_path / "again")
    src.close()
    code = main(["db", "migrate", "--from", str(tmp_path / "again" / "sqlite"), "--to", postgres_url,
                 "--store", str(recorded), "--move-files", "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0 and "note:" not in err and json.loads(out)["store"] == str(recorded), err
