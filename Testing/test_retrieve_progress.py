"""What a retrieve's progress says while it runs: a total only once the PACS has given one.

Orthanc answers a C-GET's first pending response after its first C-STORE: until then the total
is unknown, and a progress of "1 of 1 (100%)" (the panel's Activity line) would be false."""

from __future__ import annotations

import uuid

import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.cli.app import cancelled_message
from DICOMPlusLib.database import Database
from DICOMPlusLib.network.listener import ListenerConfig
from DICOMPlusLib.network.models import RetrieveOptions
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
from DICOMPlusLib.network.retrieve import retrieve

N = 24


@pytest.fixture(scope="module")
def study(tmp_path_factory, orthanc_session):
    series = make_series(
        tmp_path_factory.mktemp("progress") / "s",
        n=N,
        rows=32,
        cols=32,
        patient_id=f"PRG{uuid.uuid4().hex[:8]}",
    )
    orthanc_session.upload(series.files)
    return series


@pytest.mark.parametrize("method", ["get", "move"])
def test_progress_gives_no_total_it_does_not_know(study, orthanc_session, tmp_path, method):
    node = RemoteNode("orthanc", DimseEndpoint(orthanc_session.aet, LOOPBACK, orthanc_session.dicom_port))
    calls: list[tuple[int, int]] = []
    listener = ListenerConfig(port=orthanc_session.dicomplus_port, host=LOOPBACK)
    report = retrieve(
        node, Database(tmp_path / "db"), study_uid=study.study_uid, method=method,
        progress=lambda done, total, current: calls.append((done, total)),
        options=RetrieveOptions(listener_config=listener),
    )  # fmt: skip
    assert report.complete and len(report.done) == N, report
    print(calls)
    assert calls and calls[-1] == (N, N)
    wrong = [(done, total) for done, total in calls if total not in (0, N)]
    assert not wrong, f"a total other than unknown (0) or the study's {N} instances: {wrong[:5]}"


def test_a_cancelled_command_with_no_total_yet_says_only_how_many():
    assert cancelled_message(3, 0, 3, "instances", "again") == "cancelled after 3 instances; 3 kept; again"
    assert (
        cancelled_message(3, 24, 3, "instances", "again") == "cancelled after 3/24 instances; 3 kept; again"
    )
