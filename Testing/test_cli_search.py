"""``dicomplus search`` as people type it (issue 21, items 4-8): read-only commands never create a
database, values in the forms people type are read or refused with the expected form, global
options go anywhere, a closed pipe ends quietly, piped output is tab-separated with a header."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import warnings

import pytest

from dicomplus_testing.backends import BACKENDS, database_for
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, run_cli
from DICOMPlusLib.cli import Exit
from DICOMPlusLib.database.typed_keys import SearchKeyError, parse_typed_keys


@pytest.fixture(scope="module", params=BACKENDS)
def db(request, tmp_path_factory):
    """What ``--db`` names: an SQLite folder or a PostgreSQL URL (its store recorded in it)."""
    root = tmp_path_factory.mktemp("search")
    today = datetime.date.today().strftime("%Y%m%d")
    made = [
        make_series(root / "a", n=2, rows=4, cols=4, patient_id="DOE1", patient_name="Doe^Peter",
                    study_date="20200301", study_description="Chest"),
        make_series(root / "b", n=3, rows=4, cols=4, patient_id="ROE1", patient_name="Roe^Ann", modality="MR",
                    study_date="20210715", study_description="Knee"),
        make_series(root / "c", n=1, rows=4, cols=4, patient_id="NOW1", patient_name="Now^Nina",
                    study_date=today, study_description="Today"),
    ]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid date, on purpose
        made.append(make_series(root / "d", n=1, rows=4, cols=4, patient_id="BAD1", study_date="***"))
    path = root / "db"
    with database_for(request, request.param, path) as database:
        database.import_paths([m.folder for m in made], jobs=1)
        return getattr(database, "url", str(path))


def ids(capsys, db, *args) -> list[str]:
    code, out, err = run_cli(capsys, "--db", db, "search", *args, "--json")
    assert code == Exit.OK, err
    return sorted(r["PatientID"] for r in json.loads(out))


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["StudyDate=2020"], ["DOE1"]),
        (["StudyDate=2020-03-01"], ["DOE1"]),
        (["StudyDate=202003"], ["DOE1"]),
        (["StudyDate=2020-03"], ["DOE1"]),
        (["StudyDate=2020-01-01..2021-12-31"], ["DOE1", "ROE1"]),
        (["StudyDate=2020-01-01/2020-12-31"], ["DOE1"]),
        (["StudyDate=2020-01-01-2021-07-15"], ["DOE1", "ROE1"]),
        (["StudyDate=2021-"], ["NOW1", "ROE1"]),
        (["StudyDate=-2020"], ["DOE1"]),  # not the study dated '***'
        (["StudyDate=-20201231"], ["DOE1"]),
        (["StudyDate=today"], ["NOW1"]),
        (["Modality=ct"], ["BAD1", "DOE1", "NOW1"]),
        (["modality=MR"], ["ROE1"]),
        (["patientname=doe*"], ["DOE1"]),
        (["PatientName=DOE^PETER"], ["DOE1"]),
        (["StudyDescription=Knee", "studydate=2021"], ["ROE1"]),
    ],
)
def test_forms_people_type(capsys, db, keys, expected):
    assert ids(capsys, db, *keys) == expected


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("StudyDate=soon", "expected a date like 20200315, 2020-03-15"),
        ("StudyDate=2020-13-01", "no such date"),
        ("StudyDate=20201301", "no such date"),
        ("StudyDate=2021..2020", "ends before it starts"),
        ("PatientName=Doe Peter", "FAMILY^GIVEN, e.g. PatientName='Doe^Peter'"),
        ("PatientName=Doe, Peter", "FAMILY^GIVEN"),
        ("PatientNam=Doe", "did you mean PatientName?"),
        ("Modalty=CT", "did you mean Modality?"),
        ("StudyInstanceUID=1.2.3*", "UIDs take no wildcards"),
        ("SeriesNumber=three", "expected a number"),
        ("StudyTime=noon", "expected a time like 1430"),
        ("Modality=C-T", "letters, digits, spaces and _"),
        ("PatientName", "expected KEYWORD=VALUE"),
        (
            "series",
            "expected KEYWORD=VALUE, got 'series' (e.g. PatientName=DOE* or StudyDate=2020-); "
            "to list series, give --level series",
        ),
        ("Images", "to list images, give --level instance"),
    ],
)
def test_values_in_no_known_form_are_refused_with_the_form(capsys, db, key, says):
    code, out, err = run_cli(capsys, "--db", db, "search", key)
    assert code == Exit.USAGE and says in err and out == ""


def test_typed_keys_are_put_in_dicom_form():
    assert parse_typed_keys(["studydate=2020-02", "modality=mr", "StudyTime=08:00-12:00"]) == [
        ("StudyDate", "20200201-20200229"),
        ("Modality", "MR"),
        ("StudyTime", "08:00-12:00"),
    ]
    assert parse_typed_keys(["PatientName=", "StudyDate=*", "SeriesInstanceUID=1.2.3\\1.2.4"]) == [
        ("PatientName", ""),
        ("StudyDate", "*"),
        ("SeriesInstanceUID", "1.2.3\\1.2.4"),
    ]
    with pytest.raises(SearchKeyError, match="did you mean RepetitionTime"):
        parse_typed_keys(["RepetitionTme=500"])


def test_search_help_states_the_matching_rules(capsys):
    code, out, _ = run_cli(capsys, "search", "--help")
    assert code == 0
    for rule in ("wildcards", "FAMILY^GIVEN", "2020-01-01..2020-12-31", "case", "upper case", "universal"):
        assert rule in out


def test_no_default_database_yet(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("DICOMPLUS_DB", raising=False)
    code, _, err = run_cli(capsys, "search")
    assert code == Exit.USAGE and "yet: import files first (dicomplus import PATH)" in err
    assert not (tmp_path / "home").exists()


def test_read_only_commands_never_create_a_database(capsys, tmp_path, db):
    typo = tmp_path / "typo" / "nested"
    for args in (
        ["search"],
        ["info"],
        ["delete", "--study", "1.2.3"],
        ["inspect", "--series", "1.2.3"],
        ["convert", "--series", "1.2.3", "--out", tmp_path / "x.nrrd"],
        ["send", "X@127.0.0.1:104", "--study", "1.2.3"],
        ["export", REPO_ROOT / "pyproject.toml", "--study", "1.2.3", "--out", tmp_path / "e"],
        ["serve", "--port", "0"],
    ):
        code, _, err = run_cli(capsys, "--db", typo, *args)
        assert code == Exit.USAGE and f"no database at {typo}" in err, args
    assert not (tmp_path / "typo").exists()


def test_global_options_after_the_subcommand(capsys, db, tmp_path):
    code, out, _ = run_cli(capsys, "search", "--db", db, "--json", "PatientID=DOE1")
    assert code == 0 and json.loads(out)[0]["PatientID"] == "DOE1"
    code, out, _ = run_cli(capsys, "info", "--json", "--db", db)
    assert code == 0 and json.loads(out)["patients"] == 4
    code, out, _ = run_cli(capsys, "--json", "--db", db, "info")  # before it, as before
    assert code == 0 and json.loads(out)["patients"] == 4
    code, out, _ = run_cli(capsys, "--db", tmp_path / "elsewhere", "search", "--db", db, "PatientID=ROE1")
    assert code == 0 and "ROE1" in out  # the one after the subcommand wins
    code, out, _ = run_cli(capsys, "nodes", "list", "-v", "--json", "--nodes", tmp_path / "n.json")
    assert code == 0 and json.loads(out) == []


def test_piped_output_is_tab_separated_with_columns(capsys, db):
    code, out, _ = run_cli(capsys, "--db", db, "search", "--level", "series", "Modality=MR")
    assert "\x1b" not in out  # no colour or styling unless on a terminal
    lines = out.splitlines()
    header = lines[0].split("\t")
    assert header[:4] == ["PatientID", "PatientName", "StudyDate", "StudyDescription"]  # series with study
    assert "NumberOfSeriesRelatedInstances" in header
    row = dict(zip(header, lines[1].split("\t"), strict=True))
    assert row["StudyDescription"] == "Knee" and row["NumberOfSeriesRelatedInstances"] == "3"
    code, out, _ = run_cli(capsys, "--db", db, "search", "PatientID=DOE1")
    header, row = (line.split("\t") for line in out.splitlines())
    row = dict(zip(header, row, strict=True))
    assert row["NumberOfStudyRelatedSeries"] == "1" and row["NumberOfStudyRelatedInstances"] == "2"
    code, out, _ = run_cli(capsys, "--db", db, "search", "--columns", "studydate,PATIENTID", "--limit", "1")
    assert out.splitlines()[0] == "StudyDate\tPatientID" and len(out.splitlines()) == 2
    code, _, err = run_cli(capsys, "--db", db, "search", "--columns", "Nope")
    assert code == Exit.USAGE and "no column 'Nope'" in err


def test_a_closed_pipe_ends_quietly(db):
    """``dicomplus search | head -1``: the reader goes away; no BrokenPipeError, exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "DICOMPlusLib.cli", "--db", db, "search", "--level", "instance"],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()  # before the command writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0 and err == ""
    shell = subprocess.run(f"'{sys.executable}' -m DICOMPlusLib.cli --db '{db}' search --level instance | head -1",
                           shell=True, cwd=REPO_ROOT, capture_output=True, text=True)  # fmt: skip
    assert shell.stdout.startswith("SeriesInstanceUID\t") and shell.stderr == ""
