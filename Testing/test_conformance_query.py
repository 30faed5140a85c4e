"""Answers from peers that ignore keys (issue 17, item 10): DCMTK dcmqrscp matches only the keys
it indexes and answers a ``SeriesDescription=*T1*`` query with every series, without the
attribute. ``query`` re-checks each answer against the criteria; what it cannot check (the
attribute is not in the answer) it says, by key and count. Answers left out because they do not
match are tested against Orthanc in test_conformance_matching.py.

The series are written here (synthetic, pydicom); the expected answers are what the files say.
"""

from __future__ import annotations

import subprocess
import sys

import pydicom
import pytest

from dicomplus_testing.peers import LOOPBACK, OUR_AET
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
from DICOMPlusLib.network.query import QueryReport, query

DESCRIPTIONS = ("T1 axial", "T2 axial", "FLAIR", "T1 post contrast", "DWI")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, dcmqrscp_factory_module):
    root = tmp_path_factory.mktemp("ignored_keys")
    study = pydicom.uid.generate_uid()
    files = []
    for i, description in enumerate(DESCRIPTIONS):
        series = make_series(root / f"s{i}", n=1, rows=4, cols=4, patient_id="IGNORED", study_uid=study,
                             series_description=description, seed=60 + i)  # fmt: skip
        files += series.files
    server = dcmqrscp_factory_module()
    server.load(*files)
    by_series = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        by_series[str(ds.SeriesInstanceUID)] = str(ds.SeriesDescription)
    return server, study, by_series


@pytest.fixture(scope="module")
def dcmqrscp_factory_module(tmp_path_factory):
    from dicomplus_testing.peers import DcmqrscpServer, PeerFactory

    factory = PeerFactory(DcmqrscpServer, tmp_path_factory)
    yield factory
    factory.stop_all()


def test_answers_a_peer_could_not_match_are_reported(loaded):
    server, study, by_series = loaded
    node = RemoteNode("dcmqr", DimseEndpoint(server.aet, LOOPBACK, server.port))
    keys = {"StudyInstanceUID": study, "SeriesDescription": "*T1*"}
    report = QueryReport()
    found = {
        r.SeriesInstanceUID for r in query(node, "series", keys, calling_ae_title=OUR_AET, report=report)
    }
    assert found == set(by_series)  # dcmqrscp ignored the key and did not return it: nothing to check
    assert report.received == len(DESCRIPTIONS) and report.filtered == 0
    assert report.unchecked_keys == {"SeriesDescription": len(DESCRIPTIONS)}
    assert "did not return SeriesDescription in 5 answers" in report.message()


def test_cli_says_which_keys_were_not_checked(loaded):
    server, study, by_series = loaded
    proc = subprocess.run(
        [sys.executable, "-m", "DICOMPlusLib.cli", "query", f"{server.aet}@{LOOPBACK}:{server.port}",
         "--calling-ae", OUR_AET, "--level", "series", f"StudyInstanceUID={study}", "SeriesDescription=*T1*"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "did not return SeriesDescription in 5 answers" in proc.stderr
    assert all(uid in proc.stdout for uid in by_series)
