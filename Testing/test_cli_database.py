"""The CLI shapes others rely on: import, info --json, search --json, delete."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.cli import main


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_info_search_delete(tmp_path, capsys):
    db = str(tmp_path / "db")
    a = make_series(tmp_path / "a", n=3, patient_id="DOE1", patient_name="Doe^John", study_date="20200301")
    b = make_series(
        tmp_path / "b", n=2, patient_id="ROE1", patient_name="Roe^Ann", modality="MR", study_date="20210101"
    )
    code, out, err = run(capsys, "--db", db, "import", str(a.folder), str(b.folder), "--json")
    assert code == 0 and err == ""  # no progress noise in JSON mode
    assert json.loads(out)["added"] == 5

    code, out, _ = run(capsys, "--db", db, "info", "--json")
    assert json.loads(out) == {"patients": 2, "studies": 2, "series": 2, "instances": 5}

    code, out, _ = run(
        capsys, "--db", db, "search", "PatientName=DOE*", "StudyDate=20200101-20201231", "--json"
    )
    rows = json.loads(out)
    assert [r["PatientID"] for r in rows] == ["DOE1"]
    assert rows[0]["StudyInstanceUID"] == a.study_uid and rows[0]["ModalitiesInStudy"] == "CT"

    code, out, _ = run(capsys, "--db", db, "search", "--level", "series", "RepetitionTime=500", "--json")
    rows = json.loads(out)
    assert [r["SeriesInstanceUID"] for r in rows] == [b.series_uid]
    assert rows[0]["Modality"] == "MR" and rows[0]["RepetitionTime"] == "500"

    code, out, _ = run(
        capsys, "--db", db, "search", "--level", "instance", f"SeriesInstanceUID={a.series_uid}", "--json"
    )
    assert sorted(r["SOPInstanceUID"] for r in json.loads(out)) == sorted(a.sop_uids)

    code, out, _ = run(capsys, "--db", db, "delete", "--study", a.study_uid, "--dry-run")
    assert code == 0 and "would delete: 1 patient, 1 study, 1 series, 3 instances" in out
    code, out, _ = run(capsys, "--db", db, "delete", "--patient", "DOE1")
    assert "deleted: 1 patient, 1 study, 1 series, 3 instances" in out
    code, out, _ = run(capsys, "--db", db, "info", "--json")
    assert json.loads(out)["instances"] == 2


def test_errors_are_one_clear_line(tmp_path, capsys):
    db = str(tmp_path / "db")
    code, _, err = run(capsys, "--db", db, "search", "NoSuchKeyword=1")
    assert code == 2 and err.startswith("dicomplus: error: unknown DICOM keyword")
    code, _, err = run(capsys, "--db", db, "search", "PatientName")
    assert code == 2 and "expected KEYWORD=VALUE" in err


def test_console_script_and_env_database(tmp_path):
    series = make_series(tmp_path / "s", n=2)
    env = dict(os.environ, DICOMPLUS_DB=str(tmp_path / "envdb"))
    exe = os.path.join(os.path.dirname(sys.executable), "dicomplus")
    subprocess.run([exe, "import", str(series.folder)], check=True, env=env, capture_output=True)
    out = subprocess.run([exe, "info", "--json"], check=True, env=env, capture_output=True, text=True).stdout
    assert json.loads(out)["instances"] == 2
    assert (tmp_path / "envdb" / "dicomplus.sqlite").is_file()


def test_an_import_from_a_deleted_working_folder(tmp_path):
    """A shell left in a folder that was since removed: absolute paths import as anywhere else
    (a traceback from ``os.getcwd()`` at the first commit before)."""
    series = make_series(tmp_path / "s", n=2)
    gone = tmp_path / "gone"
    gone.mkdir()
    exe = os.path.join(os.path.dirname(sys.executable), "dicomplus")
    command = (
        f'cd "{gone}" && rmdir "{gone}" && exec "{exe}" --db "{tmp_path / "db"}" import "{series.folder}"'
    )
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert done.returncode == 0 and "added 2," in done.stdout + done.stderr, done.stderr
    assert not gone.exists()


def test_a_command_leaves_no_writer_lock_in_the_store(tmp_path, capsys):
    """Every command that wrote (import, import again, delete) left its ``.writer-<token>.lock``
    in the store until the next command swept it: the process leaves by ``os._exit`` without
    closing its database. The console script (the real exit) and ``main`` in-process (once the
    database is collected) leave none."""
    import gc

    series = make_series(tmp_path / "s", n=2)
    db = tmp_path / "db"
    exe = os.path.join(os.path.dirname(sys.executable), "dicomplus")
    for args in (["import", str(series.folder)], ["import", str(series.folder)],
                 ["delete", "--study", series.study_uid]):  # fmt: skip
        done = subprocess.run([exe, "--db", str(db), *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert [p.name for p in (db / "store").iterdir() if p.name.startswith(".writer-")] == [], args
    assert run(capsys, "--db", str(db), "import", str(series.folder))[0] == 0
    gc.collect()
    assert [p.name for p in (db / "store").iterdir() if p.name.startswith(".writer-")] == []


def test_a_tilde_the_shell_left_is_the_home_folder(tmp_path, capsys, monkeypatch):
    """``--db=~/x`` and ``--store=~/x`` reach the command with their ``~`` (the shell expands it
    only as a word's start): the import made a folder named "~" in the current one, where the
    next command's check (which expanded it) did not find the database."""
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    series = make_series(tmp_path / "s", n=2)
    code, _, err = run(capsys, "--db=~/mydb", "--store=~/files", "import", str(series.folder), "--json")
    assert code == 0, err
    code, out, err = run(capsys, "--db=~/mydb", "info", "--json")
    assert code == 0 and json.loads(out)["instances"] == 2, err
    assert (home / "mydb" / "dicomplus.sqlite").is_file()
    assert len(list((home / "files").rglob("*.dcm"))) == 2
    assert list(here.iterdir()) == []


def _path_actions():
    """Every (command, action) of the parser that names a file or folder, by its metavar or
    option: what a new path option will look like too."""
    import argparse

    from DICOMPlusLib.cli.app import build_parser

    words = ("PATH", "FILE", "FOLDER", "DIR", "ZIP", "IMAGE", "VOLUME", "DEST")
    options = {"--out", "--nodes", "--db", "--store", "--from"}

    def walk(parser, command):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, f"{command} {name}")
            elif any(w in str(action.metavar or "") for w in words) or options & set(action.option_strings):
                yield command, action

    return list(walk(build_parser(), "dicomplus"))


def test_every_path_option_takes_the_users_tilde():
    """One helper (arguments.user_path) for every option and argument naming a file or folder,
    new ones included: the ones the shell leaves a ``~`` in are not only ``--db`` and ``--store``."""
    from DICOMPlusLib.cli.arguments import user_path

    found = [
        (command, action.option_strings[0] if action.option_strings else action.dest, action)
        for command, action in _path_actions()
    ]
    named = {(command, name) for command, name, _ in found}
    assert {("dicomplus db migrate", "--from"), ("dicomplus bundle save", "--thumbnail"),
            ("dicomplus convert", "--out"), ("dicomplus import", "paths"), ("dicomplus demo", "--out"),
            ("dicomplus send", "--nodes"), ("dicomplus", "--db")} <= named  # fmt: skip
    hidden = {("dicomplus demo", "--db"), ("dicomplus demo", "--store")}  # refused, never opened
    without = sorted(
        f"{command} {name}"
        for command, name, action in found
        if action.type is not user_path and (command, name) not in hidden
    )
    assert without == [], f"path options that leave a ~ as it is: {without}"


def test_a_tilde_in_any_path_option_is_the_home_folder(tmp_path, capsys, monkeypatch):
    """``--nodes=~/n.json`` wrote the node list into a folder named "~" in the current one,
    ``db backup "~/b.sqlite"`` and ``bundle extract --out=~/x`` theirs too: the shell leaves
    the ``~`` of ``--option=~/x`` and of a quoted word."""
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    make_series(home / "series", n=2)
    code, _, err = run(capsys, "--db=~/db", "import", "~/series", "--json")
    assert code == 0, err
    code, _, err = run(capsys, "nodes", "add", "pacs", "PACS@127.0.0.1:104", "--nodes=~/n.json")
    assert code == 0 and (home / "n.json").is_file(), err
    code, _, err = run(capsys, "--db=~/db", "db", "backup", "~/backup.sqlite")
    assert code == 0 and (home / "backup.sqlite").is_file(), err
    code, _, err = run(capsys, "db", "migrate", "--from=~/nothing", "--to=postgresql://u@127.0.0.1:1/x")
    assert code != 0 and f"no SQLite database at {home / 'nothing'}" in err, err
    assert list(here.iterdir()) == []
