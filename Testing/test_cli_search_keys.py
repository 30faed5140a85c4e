"""Keys beyond the columns in ``dicomplus search`` and ``dicomplus query``:

- ``Sequence.Keyword`` keys (PS3.4 C.2.2.2.6): the same matching as the library's search, on
  both back ends, and a C-FIND identifier with the key inside the sequence's item, answered by
  our Q/R SCP and by Orthanc;
- universal keys on tags that are not columns (``RepetitionTime=*``) are return keys: their
  values, read from the stored header, are shown (table and --json) as C-FIND returns them.

Data: three synthetic studies whose one series carries a ProcedureCodeSequence item (CTCHEST,
CTHEAD, MRKNEE, coding scheme 99DPLUS); the MR one also RepetitionTime 2000 and ScanningSequence
SE\\IR (two values), which the CT ones do not have.
"""

from __future__ import annotations

import json

import pydicom
import pytest

from dicomplus_testing.backends import BACKENDS, database_for
from dicomplus_testing.peers import LOOPBACK, OrthancServer, PeerFactory
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import run_cli as run
from DICOMPlusLib.cli import Exit
from DICOMPlusLib.network.pacs.qrscp import QRConfig, QueryRetrieveSCP

CODES = {"SEQ1": "CTCHEST", "SEQ2": "CTHEAD", "SEQ3": "MRKNEE"}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list:
    root = tmp_path_factory.mktemp("sequence-keys")
    paths = []
    for patient_id, code in CODES.items():
        series = make_series(root / patient_id, n=1, rows=4, cols=4, patient_id=patient_id,
                             modality=code[:2], seed=len(paths))  # fmt: skip
        for path in series.files:
            ds = pydicom.dcmread(path)
            item = pydicom.Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "99DPLUS", code.title()
            ds.ProcedureCodeSequence = [item]
            if code.startswith("MR"):
                ds.RepetitionTime = "2000"
                ds.ScanningSequence = ["SE", "IR"]
            ds.save_as(path)
            paths.append(path)
    return paths


@pytest.fixture(scope="module", params=BACKENDS)
def db(request, files, tmp_path_factory):
    """What ``--db`` names: an SQLite folder or a PostgreSQL URL."""
    path = tmp_path_factory.mktemp("sequence-keys-db") / "db"
    with database_for(request, request.param, path) as database:
        database.import_paths(files, jobs=1)
        return getattr(database, "url", str(path))


def _patients(rows: list[dict]) -> set[str]:
    return {r["PatientID"] for r in rows}


@pytest.mark.parametrize(
    "keys, expected",
    [
        (["ProcedureCodeSequence.CodeValue=CT*"], {"SEQ1", "SEQ2"}),
        (["procedurecodesequence.codevalue=MRKNEE"], {"SEQ3"}),  # keywords in any case
        (["ProcedureCodeSequence.CodeValue=CTHEAD", "ProcedureCodeSequence.CodingSchemeDesignator=99DPLUS"],
         {"SEQ2"}),
        (["ProcedureCodeSequence.CodeValue=CTHEAD", "ProcedureCodeSequence.CodingSchemeDesignator=DCM"], set()),
    ],
)  # fmt: skip
def test_search_matches_inside_a_sequence(capsys, db, keys, expected):
    for level in ("study", "series"):
        code, out, err = run(capsys, "--db", db, "search", "--level", level, *keys, "--json")
        assert code == Exit.OK, err
        assert _patients(json.loads(out)) == expected, (level, keys)


@pytest.mark.parametrize(
    "key, says",
    [
        ("PatientName.CodeValue=X", "PatientName is not a sequence"),
        ("ProcedureCodeSequence=X", "a sequence"),
        ("ProcedureCodeSequence.=X", "Sequence.Keyword"),
        ("ProcedureCodeSequence.CodeValu=X", "did you mean CodeValue"),
    ],
)
def test_malformed_sequence_keys_are_usage_errors(capsys, db, key, says):
    code, _, err = run(capsys, "--db", db, "search", key)
    assert code == Exit.USAGE and says in err, err


@pytest.fixture(scope="module")
def nodes(files, tmp_path_factory):
    """Our Q/R SCP and Orthanc, each holding the three studies, as ``AE@HOST:PORT``. Orthanc
    takes a sequence key as universal but returns the sequence: ``query`` re-checks it."""
    from DICOMPlusLib.database import Database

    db = Database(tmp_path_factory.mktemp("sequence-keys-pacs") / "db")
    db.import_paths(files, jobs=1)
    server = QueryRetrieveSCP(db, QRConfig(port=0, host=LOOPBACK)).start()
    factory = PeerFactory(OrthancServer, tmp_path_factory)
    try:
        orthanc = factory()
        orthanc.upload(files[0].parent.parent)
        yield {"sample": f"{server.config.ae_title}@{LOOPBACK}:{server.port}",
               "orthanc": f"{orthanc.aet}@{LOOPBACK}:{orthanc.dicom_port}"}  # fmt: skip
    finally:
        factory.stop_all()
        server.stop()
        db.close()


@pytest.mark.parametrize("peer", ["sample", "orthanc"])
def test_query_sends_the_key_inside_the_sequence_item(capsys, nodes, peer, tmp_path):
    nodes_file = ("--nodes", tmp_path / "nodes.json")
    code, out, err = run(
        capsys, "query", nodes[peer], "ProcedureCodeSequence.CodeValue=CT*", "--json", *nodes_file
    )
    assert code == Exit.OK, err
    assert _patients(json.loads(out)) == {"SEQ1", "SEQ2"}, (out, err)
    code, out, err = run(capsys, "query", nodes[peer], "--level", "series", "ProcedureCodeSequence.CodeValue=MR*",
                         "--json", *nodes_file)  # fmt: skip
    assert code == Exit.OK, err
    assert [r["Modality"] for r in json.loads(out)] == ["MR"], (out, err)


def test_universal_keys_on_header_tags_show_their_values(capsys, db):
    mr = {"SEQ3": ("2000", "SE\\IR")}
    for level in ("patient", "study", "series", "instance"):
        code, out, err = run(capsys, "--db", db, "search", "--level", level, "RepetitionTime=*",
                             "ScanningSequence=", "--json")  # fmt: skip
        assert code == Exit.OK, err
        rows = json.loads(out)
        assert len(rows) == 3, (level, rows)
        for row in rows:
            expected = mr.get(row["PatientID"], ("", ""))
            assert (row["RepetitionTime"], row["ScanningSequence"]) == expected, (level, row)
    # piped: a column with its keyword as heading
    code, out, _ = run(capsys, "--db", db, "search", "--level", "series", "repetitiontime=*")
    header, *lines = out.splitlines()
    column = header.split("\t").index("RepetitionTime")
    assert sorted(line.split("\t")[column] for line in lines) == ["", "", "2000"]
    # a value still matches (and is shown) as before
    code, out, _ = run(capsys, "--db", db, "search", "RepetitionTime=2000", "--json")
    assert [(r["PatientID"], r["RepetitionTime"]) for r in json.loads(out)] == [("SEQ3", "2000")]
