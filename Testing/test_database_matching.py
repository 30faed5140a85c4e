"""PS3.4 C.2.2.2 matching rules, on columns (SQL) and on header-only tags (Python on SQLite, the
server's JSONB on PostgreSQL), one test per rule, on both back ends."""

from __future__ import annotations

import pytest

from dicomplus_testing.backends import BACKENDS, database_for
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Criterion, Database, MatchKind
from DICOMPlusLib.errors import DatabaseError


@pytest.fixture(scope="module", params=BACKENDS)
def db(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("matching")
    specs = [
        dict(
            patient_id="P1",
            patient_name="Doe^John",
            study_date="20200115",
            modality="CT",
            study_description="Chest 100% dose",
            series_description="axial_1",
        ),
        dict(
            patient_id="P2",
            patient_name="DOE^JANE",
            study_date="20201231",
            modality="MR",
            study_description="Brain",
            series_description="T1 [fast]",
        ),
        dict(
            patient_id="P3",
            patient_name="Smith^Anna",
            study_date="20210301",
            modality="MR",
            study_description="Knee",
            series_description="PD",
        ),
        dict(
            patient_id="P_4",
            patient_name="Müller^Jörg",
            study_date="20190601",
            modality="CT",
            study_description="Abdomen",
            series_description="venous",
        ),
    ]
    database = database_for(request, request.param, root / "db")
    series = []
    for i, spec in enumerate(specs):
        s = make_series(root / f"s{i}", n=2, rows=4, cols=4, seed=i, **spec)
        series.append(s)
    database.import_paths([root / f"s{i}" for i in range(len(specs))])
    yield database, series
    database.close()


def ids(records):
    return sorted(r.PatientID for r in records)


def test_universal_matching(db):
    database, _ = db
    assert ids(database.search("study", {"PatientName": ""})) == ["P1", "P2", "P3", "P_4"]
    assert ids(database.search("study", {"PatientName": "*"})) == ["P1", "P2", "P3", "P_4"]
    assert Criterion.parse("StudyDate", "").kind is MatchKind.UNIVERSAL


def test_single_value_is_exact_and_case_sensitive_outside_pn(db):
    database, _ = db
    assert ids(database.search("study", {"PatientID": "P1"})) == ["P1"]
    assert ids(database.search("study", {"PatientID": "p1"})) == []
    assert ids(database.search("study", {"StudyDescription": "brain"})) == []
    assert ids(database.search("study", {"StudyDescription": "Brain"})) == ["P2"]


def test_pn_is_case_insensitive_single_and_wildcard(db):
    database, _ = db
    assert ids(database.search("study", {"PatientName": "doe^john"})) == ["P1"]
    assert ids(database.search("study", {"PatientName": "DOE*"})) == ["P1", "P2"]
    assert ids(database.search("study", {"PatientName": "müller*"})) == ["P_4"]


def test_wildcards_star_and_question_mark(db):
    database, _ = db
    assert ids(database.search("study", {"PatientID": "P?"})) == ["P1", "P2", "P3"]
    assert ids(database.search("study", {"StudyDescription": "*ee"})) == ["P3"]
    assert ids(database.search("series", {"SeriesDescription": "axial?1"})) == ["P1"]


def test_sql_wildcards_and_brackets_are_literal(db):
    database, _ = db
    # '_' and '%' are ordinary characters in DICOM matching, and '[' is not a character class
    assert ids(database.search("study", {"PatientID": "P_*"})) == ["P_4"]
    assert ids(database.search("study", {"StudyDescription": "*100%*"})) == ["P1"]
    assert ids(database.search("study", {"StudyDescription": "*0% d*"})) == ["P1"]
    assert ids(database.search("series", {"SeriesDescription": "*[fast]"})) == ["P2"]
    assert ids(database.search("series", {"SeriesDescription": "*[f]*"})) == []


def test_list_of_uids(db):
    database, series = db
    uids = f"{series[0].study_uid}\\{series[2].study_uid}"
    assert ids(database.search("study", {"StudyInstanceUID": uids})) == ["P1", "P3"]
    assert Criterion.parse("StudyInstanceUID", uids).kind is MatchKind.UID_LIST


def test_date_ranges_closed_and_open(db):
    database, _ = db
    assert ids(database.search("study", {"StudyDate": "20200101-20201231"})) == ["P1", "P2"]
    assert ids(database.search("study", {"StudyDate": "20201231-"})) == ["P2", "P3"]
    assert ids(database.search("study", {"StudyDate": "-20200115"})) == ["P1", "P_4"]
    assert ids(database.search("study", {"StudyDate": "20200115"})) == ["P1"]


def test_lower_level_key_at_higher_level(db):
    database, _ = db
    assert ids(database.search("study", {"Modality": "MR"})) == ["P2", "P3"]
    assert ids(database.search("patient", {"Modality": "CT"})) == ["P1", "P_4"]
    assert ids(database.search("study", {"ModalitiesInStudy": "CT"})) == ["P1", "P_4"]


def test_header_only_tags_use_the_same_rules(db):
    database, _ = db
    # RepetitionTime and ProtocolName are not columns: they are matched in the stored headers
    assert ids(database.search("series", {"RepetitionTime": "500"})) == ["P2", "P3"]
    assert ids(database.search("series", {"RepetitionTime": "500.0"})) == ["P2", "P3"]
    assert ids(database.search("study", {"ProtocolName": "*t1"})) == []  # case-sensitive (LO)
    hits = database.search("series", {"ProtocolName": "*T1"})
    assert ids(hits) == ["P2", "P3"]
    assert hits[0].to_dict()["ProtocolName"] == "Synthetic T1"
    assert ids(database.search("instance", {"KVP": "120"})) == ["P1", "P1", "P_4", "P_4"]
    assert ids(database.search("study", {"KVP": "121"})) == []


def test_python_matching_agrees_with_sql():
    cases = [
        ("PatientName", "doe*", "DOE^JOHN", True),
        ("PatientName", "doe?john", "Doe^John", True),
        ("StudyDescription", "a_c", "abc", False),
        ("StudyDescription", "a%c", "a%c", True),
        ("StudyDescription", "[x]*", "[x]yz", True),
        ("StudyDate", "2020-", "20210101", True),
        ("StudyDate", "-2020", "20210101", False),
        ("StudyTime", "10:00-11:00", "103000", True),
        ("SeriesInstanceUID", "1.2\\1.3", "1.3", True),
        ("ImageType", "AXIAL", "ORIGINAL\\PRIMARY\\AXIAL", True),
    ]
    for keyword, pattern, value, expected in cases:
        assert Criterion.parse(keyword, pattern).matches(value) is expected, (keyword, pattern, value)


def test_free_text_and_paging(db):
    database, _ = db
    assert ids(database.search("study", text="knee")) == ["P3"]
    assert ids(database.search("study", text="venous")) == ["P_4"]  # a series description
    page1 = database.search("study", limit=2, offset=0)
    page2 = database.search("study", limit=2, offset=2)
    assert len(page1) == 2 and len(page2) == 2
    assert {r.StudyInstanceUID for r in page1}.isdisjoint({r.StudyInstanceUID for r in page2})


def test_unknown_keyword_is_a_clear_error(db):
    database, _ = db
    with pytest.raises(DatabaseError, match="unknown DICOM keyword"):
        database.search("study", {"PatientsNickname": "x"})


def test_multiple_values_on_any_multi_valued_vr(db):
    """C.2.2.2.8: each value of a list may be a single value or a wildcard (SQL and Python)."""
    database, _ = db
    assert ids(database.search("study", {"ModalitiesInStudy": "MR\\CT"})) == ["P1", "P2", "P3", "P_4"]
    assert ids(database.search("study", {"StudyDescription": "Knee\\Abd*"})) == ["P3", "P_4"]
    assert ids(database.search("patient", {"PatientName": "doe^john\\Smith*"})) == ["P1", "P3"]
    assert Criterion.parse("StudyDescription", "Knee\\Abd*").kind is MatchKind.MULTIPLE
    assert Criterion.parse("ImageType", "SECONDARY\\AX*").matches("ORIGINAL\\PRIMARY\\AXIAL")
    # a backslash is a character in ST/LT/UT: no list there
    assert Criterion.parse("ImageComments", "a\\b").kind is MatchKind.SINGLE


def test_short_time_bounds_cover_their_unit_and_names_normalise():
    assert Criterion.parse("StudyTime", "-0930").matches("093059.5")
    assert not Criterion.parse("StudyTime", "-0930").matches("093100")
    assert Criterion.parse("StudyTime", "0930-10").matches("105959")
    for stored in ("Wang^XiaoDong=王^小東=", "Wang^XiaoDong=王^小東", "wang^xiaodong^^=王^小東^="):
        assert Criterion.parse("PatientName", "Wang^XiaoDong=王^小東").matches(stored), stored
        assert Criterion.parse("PatientName", "Wang^XiaoDong=王^小東=").matches(stored), stored


def test_sequence_keys_match_one_item_with_every_key():
    from pydicom import Dataset

    from DICOMPlusLib.database.matching import SequenceCriterion, parse_criteria

    def item(value, scheme):
        ds = Dataset()
        ds.CodeValue, ds.CodingSchemeDesignator = value, scheme
        return ds

    stored = [item("A1", "X"), item("B2", "Y")]
    (one,) = parse_criteria(
        {"ProcedureCodeSequence.CodeValue": "A*", "ProcedureCodeSequence.CodingSchemeDesignator": "X"}
    )
    assert isinstance(one, SequenceCriterion) and one.matches(stored)
    (mixed,) = parse_criteria(
        {"ProcedureCodeSequence.CodeValue": "A1", "ProcedureCodeSequence.CodingSchemeDesignator": "Y"}
    )
    assert not mixed.matches(stored)  # both keys must hold in the same item
    assert not one.matches(None) and not one.matches([])
    with pytest.raises(DatabaseError, match="not a sequence"):
        parse_criteria({"PatientName.CodeValue": "x"})


def test_version_2_person_names_are_normalised_again_on_open(tmp_path):
    """A database written before one PN normalisation served every path gets its normalised
    name columns redone (schema v3), so names stored with trailing delimiters match."""
    import sqlite3

    from dicomplus_testing.synthetic import make_series
    from DICOMPlusLib.database.matching import normalize_pn

    series = make_series(tmp_path / "s", n=1, rows=4, cols=4, patient_name="Doe^John^^^=")
    with Database(tmp_path / "db") as db:
        db.import_paths([series.folder])
        path = db.path
    conn = sqlite3.connect(path)
    conn.execute("UPDATE patients SET PatientNameNorm='doe^john^^^='")  # as version 2 kept it
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with Database(tmp_path / "db") as db:
        assert db.schema_version() >= 3
        (norm,) = db._reader().execute("SELECT PatientNameNorm FROM patients").fetchone()
        assert norm == normalize_pn("Doe^John^^^=") != "doe^john^^^="
        assert len(db.search("patient", {"PatientName": "Doe^John"})) == 1
