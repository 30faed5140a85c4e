"""C-STORE send to DCMTK storescp, Orthanc and our own listener; counts checked on the receiving
side. Presentation contexts from the files' own SOP classes and transfer syntaxes (split past
128), parallel associations, per-file report, cancel, retry, conversion when the original
transfer syntax is refused, and the CLI.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.database import Database
from DICOMPlusLib.jobs import CancelToken
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse.status import Status
from DICOMPlusLib.network.listener import Listener, ListenerConfig
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
from DICOMPlusLib.network.send import (
    SendItem,
    SendOptions,
    data_set_offset,
    send,
    send_from_database,
    send_paths,
)
from DICOMPlusLib.network.send_dimse import MAX_CONTEXTS, contexts_for, split_by_contexts
from DICOMPlusLib.network.storage import DatabaseSink, StoreOutcome

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"


def data_set(path) -> bytes:
    data = Path(path).read_bytes()
    return data[data_set_offset(data[:4096]) :]


def sop_of(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "db")
    yield database
    database.close()


@pytest.fixture
def listener(db):
    lst = Listener(db, ListenerConfig(port=0, host=LOOPBACK)).start()
    yield lst
    lst.stop()


def node_of(server, ae: str | None = None) -> RemoteNode:
    return RemoteNode("peer", DimseEndpoint(ae or server.aet, LOOPBACK, server.port))


def test_send_to_storescp_one_association_bytes_unchanged(storescp, tmp_path):
    ct = make_series(tmp_path / "ct", n=15, rows=64, cols=64, seed=21)
    mr = make_series(tmp_path / "mr", n=5, rows=64, cols=64, modality="MR", seed=22)
    progress = []
    report = send_paths(
        node_of(storescp), [ct.folder, mr.folder], progress=lambda d, t, c: progress.append((d, t))
    )
    assert report.ok and report.sent == 20 and report.associations == 1
    assert progress[-1] == (20, 20)
    received = storescp.wait_for(20)
    assert len(received) == 20
    originals = {sop_of(f): f for f in ct.files + mr.files}
    for path in received:
        assert data_set(path) == data_set(originals[sop_of(path)])  # sent without re-encoding
    assert all(r.category == "success" and r.status == 0 and not r.converted for r in report.results)


def test_files_read_ahead_keep_their_bytes_and_a_missing_one_fails_alone(storescp, tmp_path):
    """Each file is read while the peer stores the one before, into one reused buffer: files of
    2 MiB (read in two blocks) between 8 KiB ones all arrive byte for byte, and a file gone since
    it was scanned fails alone on the same association, with nothing of it on the wire."""
    big = make_series(tmp_path / "big", n=3, rows=1024, cols=1024, seed=23)
    small = make_series(tmp_path / "small", n=3, rows=64, cols=64, seed=24)
    files = [f for pair in zip(sorted(big.files), sorted(small.files), strict=True) for f in pair]
    items = [SendItem(str(f), CT, sop_of(f), EXPLICIT) for f in files]
    gone = SendItem(str(tmp_path / "gone.dcm"), CT, "1.2.3.4.5", EXPLICIT)
    report = send(node_of(storescp), [*items[:3], gone, *items[3:]])
    assert report.sent == 6 and report.associations == 1
    (failed,) = report.failed
    assert failed.path == gone.path and failed.message.startswith("cannot read")
    received = storescp.wait_for(6)
    originals = {sop_of(f): f for f in files}
    assert sorted(map(sop_of, received)) == sorted(originals)
    for path in received:
        assert data_set(path) == data_set(originals[sop_of(path)])


def test_send_to_orthanc(orthanc_session, tmp_path):
    series = make_series(tmp_path / "s", n=12, rows=32, cols=32, patient_id="SENDORTH", seed=23)
    node = RemoteNode("orthanc", DimseEndpoint(orthanc_session.aet, LOOPBACK, orthanc_session.dicom_port))
    report = send_paths(node, [series.folder])
    assert report.ok and report.sent == 12
    series_id = orthanc_session.resource_id(series.series_uid)
    assert len(orthanc_session.get(f"/series/{series_id}/instances")) == 12
    wrong = RemoteNode("orthanc", DimseEndpoint("NOTORTHANC", LOOPBACK, orthanc_session.dicom_port))
    refused = send_paths(wrong, [series.files[0]])
    assert not refused.ok and "called AE title not recognized" in refused.results[0].message


def test_send_stored_study_and_series(storescp_factory, db, tmp_path):
    a = make_series(tmp_path / "a", n=6, rows=32, cols=32, seed=24)
    b = make_series(tmp_path / "b", n=4, rows=32, cols=32, study_uid=a.study_uid, series_number=2, seed=25)
    db.import_paths([a.folder, b.folder])
    first = storescp_factory()
    report = send_from_database(db, node_of(first), study=a.study_uid)
    assert report.sent == 10 and len(first.wait_for(10)) == 10
    second = storescp_factory()
    report = send_from_database(db, node_of(second), series=b.series_uid)
    assert report.sent == 4
    assert {sop_of(p) for p in second.wait_for(4)} == set(b.sop_uids)


def test_contexts_come_from_the_files_and_split_past_128():
    items = [SendItem(f"f{k}", f"1.2.3.4.5.{k}", f"9.{k}", EXPLICIT) for k in range(70)]
    items.append(SendItem("rle", CT, "9.100", "1.2.840.10008.1.2.5"))
    items.append(SendItem("ct", CT, "9.101", EXPLICIT))
    contexts = contexts_for(items)
    assert ("1.2.3.4.5.0", [EXPLICIT]) in contexts and ("1.2.3.4.5.0", [IMPLICIT]) in contexts
    assert (CT, ["1.2.840.10008.1.2.5"]) in contexts and (CT, [EXPLICIT]) in contexts
    assert (CT, [IMPLICIT]) in contexts
    assert len(contexts) == 2 * 70 + 3
    groups = split_by_contexts(items)
    assert len(groups) == 2
    assert all(len(contexts_for(g)) <= MAX_CONTEXTS for g in groups)
    assert sorted(i.sop_instance_uid for g in groups for i in g) == sorted(i.sop_instance_uid for i in items)


def test_more_than_128_contexts_use_several_associations(storescp, tmp_path):
    source = make_series(tmp_path / "src", n=1, rows=8, cols=8, seed=26)
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(70):  # 70 private SOP classes x 2 contexts each = 140 > 128
        ds = pydicom.dcmread(source.files[0])
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = f"1.2.826.0.1.3680043.9.7777.{k}"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"{k}.dcm")
    report = send_paths(node_of(storescp), [folder])
    assert report.ok and report.sent == 70
    assert report.associations == 2
    assert len(storescp.wait_for(70)) == 70


def test_parallel_associations(listener, db, tmp_path):
    series = make_series(tmp_path / "s", n=60, rows=32, cols=32, seed=27)
    before = listener.associations
    report = send_paths(
        RemoteNode("us", DimseEndpoint("DICOMPLUS", LOOPBACK, listener.port)),
        [series.folder],
        SendOptions(parallel=3),
    )
    assert report.ok and report.sent == 60 and report.associations == 3
    assert listener.associations - before == 3
    assert {r.SOPInstanceUID for r in db.instances(series.series_uid)} == set(series.sop_uids)


def test_per_file_report(storescp, tmp_path):
    series = make_series(tmp_path / "s", n=3, rows=16, cols=16, seed=28)
    (series.folder / "notes.txt").write_text("not DICOM")
    report = send_paths(node_of(storescp), [series.folder])
    assert report.sent == 3 and not report.ok
    (bad,) = report.failed
    assert bad.path.endswith("notes.txt") and bad.message.startswith("not sent")
    assert len(report.to_dict()["files"]) == 4


def test_cancel_stops_between_files(listener, db, tmp_path):
    series = make_series(tmp_path / "s", n=40, rows=16, cols=16, seed=29)
    token = CancelToken()

    def progress(done, total, current):
        if done >= 5:
            token.cancel()

    report = send_paths(RemoteNode("us", DimseEndpoint("DICOMPLUS", LOOPBACK, listener.port)), [series.folder], progress=progress,
                        cancel=token)  # fmt: skip
    assert report.cancelled and not report.ok
    sent = [r for r in report.results if r.category == "success"]
    assert 5 <= len(sent) < 40
    assert all(r.category in ("success", "cancelled") for r in report.results)
    assert db.info()["instances"] == len(sent)


def test_retry_of_transient_failures(db, tmp_path, monkeypatch):
    """The receiver answers 0xA700 (out of resources) to the first attempt of every other
    instance; one retry gets them all in."""
    series = make_series(tmp_path / "s", n=10, rows=16, cols=16, seed=30)
    refused_once: set[str] = set()
    real_finish = DatabaseSink.finish

    def finish(self, incoming):
        sop = incoming.meta.sop_instance_uid
        if sop in series.sop_uids[::2] and sop not in refused_once:
            refused_once.add(sop)
            incoming.discard()
            return StoreOutcome(Status.OUT_OF_RESOURCES, "busy, try again")
        return real_finish(self, incoming)

    monkeypatch.setattr(DatabaseSink, "finish", finish)
    with Listener(db, ListenerConfig(port=0, host=LOOPBACK)) as lst:
        node = RemoteNode("us", DimseEndpoint("DICOMPLUS", LOOPBACK, lst.port))
        report = send_paths(node, [series.folder], SendOptions(retries=1, retry_delay=0.05))
        assert report.ok and report.sent == 10
        attempts = {r.sop_instance_uid: r.attempts for r in report.results}
        assert {s for s, a in attempts.items() if a == 2} == set(series.sop_uids[::2])
        assert db.info()["instances"] == 10
        refused_once.clear()
        db.delete(series=series.series_uid)
        report = send_paths(node, [series.folder], SendOptions(retries=0))
        assert len(report.failed) == 5 and all(r.status == 0xA700 for r in report.failed)
        assert "busy, try again" in report.failed[0].message


def test_refused_original_transfer_syntax_is_converted(tmp_path):
    """A peer that accepts CT only uncompressed gets the RLE file decoded and re-encoded."""
    from pydicom.uid import RLELossless
    from pynetdicom import AE, evt

    series = make_series(tmp_path / "s", n=1, rows=32, cols=32, seed=31)
    ds = pydicom.dcmread(series.files[0])
    ds.compress(RLELossless)
    rle = tmp_path / "rle.dcm"
    ds.save_as(rle)
    received = []

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append((str(event.context.transfer_syntax), ds))
        return 0

    ae = AE(ae_title="PICKY")
    ae.add_supported_context(CT, [IMPLICIT])
    server = ae.start_server((LOOPBACK, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        report = send_paths(
            RemoteNode("picky", DimseEndpoint("PICKY", LOOPBACK, server.server_address[1])), [rle]
        )
    finally:
        server.shutdown()
    assert report.ok and report.results[0].converted
    ((syntax, got),) = received
    assert syntax == IMPLICIT
    assert got.pixel_array.tolist() == pydicom.dcmread(series.files[0]).pixel_array.tolist()


def test_rejected_association_reports_every_file(db, tmp_path):
    series = make_series(tmp_path / "s", n=3, rows=16, cols=16, seed=32)
    with Listener(db, ListenerConfig(port=0, host=LOOPBACK, allowed_calling_aets=("OTHER",))) as lst:
        report = send_paths(
            RemoteNode("us", DimseEndpoint("DICOMPLUS", LOOPBACK, lst.port)),
            [series.folder],
            SendOptions(retries=0),
        )
    assert len(report.failed) == 3
    assert all("calling AE title not recognized" in r.message for r in report.failed)


def test_a_permanent_rejection_is_not_retried(db, tmp_path):
    """A peer that rejects the association permanently (our AE title unknown to it) is not asked
    again after the retry delay: a second try can only be rejected too."""
    series = make_series(tmp_path / "s", n=2, rows=16, cols=16, seed=33)
    with Listener(db, ListenerConfig(port=0, host=LOOPBACK, allowed_calling_aets=("OTHER",))) as lst:
        report = send_paths(
            RemoteNode("us", DimseEndpoint("DICOMPLUS", LOOPBACK, lst.port)),
            [series.folder],
            SendOptions(retries=2, retry_delay=0.05),
        )
    assert len(report.failed) == 2 and all("rejected permanently" in r.message for r in report.failed)
    assert {r.attempts for r in report.failed} == {1}, [r.attempts for r in report.failed]


def test_send_items_without_context_fail_alone(listener, db, tmp_path):
    series = make_series(tmp_path / "s", n=2, rows=16, cols=16, seed=33)
    items = [SendItem(str(f), CT, sop_of(f), EXPLICIT) for f in series.files]
    items.append(
        SendItem(str(series.files[0]), "1.2.840.10008.5.1.4.1.2.2.1", "9.9.9", EXPLICIT)
    )  # a FIND class
    report = send(RemoteNode("us", DimseEndpoint("DICOMPLUS", LOOPBACK, listener.port)), items)
    assert report.sent == 2 and len(report.failed) == 1
    assert "no presentation context" in report.failed[0].message


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "DICOMPlusLib.cli", *map(str, args)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_cli_send(storescp, db, tmp_path):
    series = make_series(tmp_path / "s", n=4, rows=16, cols=16, seed=34)
    proc = _cli("send", f"{storescp.aet}@{LOOPBACK}:{storescp.port}", series.folder, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sent"] == 4
    db.import_paths([series.folder])
    proc = _cli(
        "--db", db.path, "send", f"{storescp.aet}@{LOOPBACK}:{storescp.port}", "--series", series.series_uid
    )
    assert proc.returncode == 0, proc.stderr
    assert "sent 4 of 4" in proc.stdout
    refused = _cli("send", f"NOBODY@{LOOPBACK}:{free_port()}", series.folder)
    assert refused.returncode == 1 and "connection refused" in refused.stdout
    both = _cli("send", f"X@{LOOPBACK}:1", series.folder, "--series", "1.2")
    assert both.returncode == 2 and "either" in both.stderr  # a usage error


def test_send_runs_in_a_job_thread(listener, db, tmp_path):
    """The send API is usable from a background job with progress and cancel (the GUI's way)."""
    from DICOMPlusLib.jobs import Job, JobState

    series = make_series(tmp_path / "s", n=8, rows=16, cols=16, seed=35)
    node = RemoteNode("us", DimseEndpoint("DICOMPLUS", LOOPBACK, listener.port))
    job = Job(
        "send", lambda progress, cancel: send_paths(node, [series.folder], progress=progress, cancel=cancel)
    )
    job.start()
    assert job.wait(60)
    assert job.state is JobState.DONE and job.result.sent == 8
    assert job.poll().done == 8
    assert threading.active_count() >= 1


def test_a_lost_association_is_reopened_and_its_file_retried(db, tmp_path, monkeypatch):
    """The receiver aborts the association while storing the 4th file (once): the sender opens a
    new association for the rest, and the retry sends the 4th again."""
    from DICOMPlusLib.network.dimse import acceptor, ul

    series = make_series(tmp_path / "s", n=8, rows=16, cols=16, seed=36)
    victim = sorted(series.files)[3]
    victim_sop = sop_of(victim)
    real = acceptor.StorageAssociation._on_data_set_end
    aborted = []

    def on_data_set_end(self, ctx, command):
        if command.get(dimse.AFFECTED_SOP_INSTANCE_UID) == victim_sop and not aborted:
            aborted.append(victim_sop)
            raise ul.ProtocolError("simulated failure")
        return real(self, ctx, command)

    monkeypatch.setattr(acceptor.StorageAssociation, "_on_data_set_end", on_data_set_end)
    with Listener(db, ListenerConfig(port=0, host=LOOPBACK)) as lst:
        report = send_paths(
            RemoteNode("us", DimseEndpoint("DICOMPLUS", LOOPBACK, lst.port)),
            sorted(series.files),
            SendOptions(retry_delay=0.05),
        )
    assert aborted == [victim_sop]
    assert report.ok and report.sent == 8
    attempts = {r.sop_instance_uid: r.attempts for r in report.results}
    assert attempts[victim_sop] == 2 and sum(attempts.values()) == 9
    assert report.associations == 3  # the first, its replacement, and the retry
    assert db.info()["instances"] == 8


def test_a_meta_group_length_that_points_inside_an_element_is_not_trusted(listener, db, tmp_path):
    """The group length of a file's meta said where the data set began; one pointing inside the
    meta's last element (the next two bytes not of group 0002) sent the rest of the meta as the
    data set (found by fuzzing). The meta is walked as pydicom reads it: the peer gets the data
    set, byte for byte."""
    series = make_series(tmp_path / "ct", n=1, rows=8, cols=8, seed=23)
    data = bytearray(series.files[0].read_bytes())
    assert data[132:138] == b"\x02\x00\x00\x00UL"
    true_offset = 144 + struct.unpack_from("<I", data, 140)[0]
    struct.pack_into("<I", data, 140, struct.unpack_from("<I", data, 140)[0] - 10)  # 10 bytes short
    assert struct.unpack_from("<H", data, true_offset - 10)[0] != 2  # inside an element's value
    lying = tmp_path / "lying.dcm"
    lying.write_bytes(bytes(data))
    assert data_set_offset(bytes(data[:4096])) == true_offset
    report = send_paths(RemoteNode("us", DimseEndpoint("DICOMPLUS", LOOPBACK, listener.port)), [lying])
    assert report.ok and report.sent == 1
    stored = db.instance(series.sop_uids[0]).path
    assert data_set(stored) == bytes(data[true_offset:])
