"""C-GET and C-MOVE against our sample PACS, Orthanc and DCMTK dcmqrscp: exactly the selection
arrives (a series, not its study), compressed instances come as they are stored, an unknown move
destination is explained, more SOP classes than fit in one association, resume, and the CLI.

Expected instances and pixels are taken from the files written for this module (pydicom), the
PACS side never from our own database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass

import numpy as np
import pydicom
import pytest

from dicomplus_testing.peers import LOOPBACK, DcmqrscpServer
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port, require_executable
from DICOMPlusLib.database import Database
from DICOMPlusLib.errors import RetrieveError
from DICOMPlusLib.network.listener import ListenerConfig
from DICOMPlusLib.network.models import RetrieveOptions
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
from DICOMPlusLib.network.pacs.qrscp import Destination, QRConfig, QueryRetrieveSCP
from DICOMPlusLib.network.retrieve import retrieve


@dataclass
class Data:
    pid: str
    ct: object
    mr: object
    files: list


@dataclass
class Peer:
    kind: str
    node: RemoteNode
    listener_port: int  # where the peer sends C-MOVE sub-operations for AE DICOMPLUS


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    root = tmp_path_factory.mktemp("qr-retrieve-data")
    pid = f"QRR{uuid.uuid4().hex[:8].upper()}"
    ct = make_series(root / "ct", n=8, rows=32, cols=32, patient_id=pid, series_number=1, seed=21)
    mr = make_series(root / "mr", n=5, rows=32, cols=32, modality="MR", patient_id=pid, study_uid=ct.study_uid,
                     series_number=2, seed=22)  # fmt: skip
    return Data(pid, ct, mr, [*ct.files, *mr.files])


@pytest.fixture(scope="module")
def sample_peer(tmp_path_factory, data):
    db = Database(tmp_path_factory.mktemp("qr-retrieve-pacs") / "db")
    db.import_paths([str(f) for f in data.files])
    port = free_port()
    config = QRConfig(
        ae_title="QRPACS", port=0, host=LOOPBACK, destinations=(Destination("DICOMPLUS", LOOPBACK, port),)
    )
    server = QueryRetrieveSCP(db, config).start()
    yield Peer("sample", RemoteNode("sample", DimseEndpoint("QRPACS", LOOPBACK, server.port)), port)
    server.stop()
    db.close()


@pytest.fixture(scope="module")
def orthanc_peer(orthanc_session, data):
    orthanc_session.upload(data.files)
    node = RemoteNode("orthanc", DimseEndpoint(orthanc_session.aet, LOOPBACK, orthanc_session.dicom_port))
    return Peer("orthanc", node, orthanc_session.dicomplus_port)


@pytest.fixture(scope="module")
def dcmqrscp_peer(tmp_path_factory, data):
    require_executable(DcmqrscpServer.executable)
    server = DcmqrscpServer(tmp_path_factory.mktemp("qr-retrieve-dcmqrscp"))
    server.start()
    try:
        server.load(data.files)
        yield Peer(
            "dcmqrscp",
            RemoteNode("dcmqrscp", DimseEndpoint(server.aet, LOOPBACK, server.port)),
            server.dicomplus_port,
        )
    finally:
        server.stop()


@pytest.fixture(params=["sample", "orthanc", "dcmqrscp"])
def peer(request) -> Peer:
    return request.getfixturevalue(f"{request.param}_peer")


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "local")
    yield database
    database.close()


def _listener(peer: Peer) -> ListenerConfig:
    return ListenerConfig(port=peer.listener_port, host=LOOPBACK)


def _stored(db: Database) -> set[str]:
    return {r.SOPInstanceUID for r in db.search("instance", {})}


def _same_pixels(db: Database, files) -> None:
    for f in files:
        source = pydicom.dcmread(f)
        stored = pydicom.dcmread(db.instance(source.SOPInstanceUID).path)
        assert stored.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
        assert np.array_equal(stored.pixel_array, source.pixel_array)


@pytest.mark.parametrize("method", ["get", "move"])
def test_one_series_and_only_that_series(peer, data, db, method):
    progress = []
    report = retrieve(peer.node, db, study_uid=data.ct.study_uid, series_uids=[data.mr.series_uid], method=method,
                      options=RetrieveOptions(listener_config=_listener(peer)), progress=lambda d, t, c: progress.append((d, t)))  # fmt: skip
    assert report.complete, report.to_dict()
    assert set(report.done) == set(data.mr.sop_uids) and report.expected == len(data.mr.sop_uids)
    assert _stored(db) == set(data.mr.sop_uids)  # not a single CT instance of the same study
    assert progress[-1] == (len(data.mr.sop_uids), len(data.mr.sop_uids))
    _same_pixels(db, data.mr.files)


@pytest.mark.parametrize("method", ["get", "move"])
def test_whole_study_then_nothing_to_do(peer, data, db, method):
    report = retrieve(
        peer.node,
        db,
        study_uid=data.ct.study_uid,
        method=method,
        options=RetrieveOptions(listener_config=_listener(peer)),
    )
    assert report.complete and _stored(db) == set(data.ct.sop_uids) | set(data.mr.sop_uids)
    again = retrieve(
        peer.node,
        db,
        study_uid=data.ct.study_uid,
        method=method,
        options=RetrieveOptions(listener_config=_listener(peer)),
    )
    assert again.complete and not again.done and len(again.skipped) == len(data.files)
    assert again.associations == 0  # resumed: nothing was missing, no retrieve association


def test_series_without_its_study_and_selected_instances(sample_peer, data, db):
    report = retrieve(sample_peer.node, db, series_uids=data.mr.series_uid, method="get")
    assert report.complete and _stored(db) == set(data.mr.sop_uids)
    chosen = data.ct.sop_uids[2:5]
    report = retrieve(sample_peer.node, db, study_uid=data.ct.study_uid, series_uids=[data.ct.series_uid],
                      sop_instance_uids=chosen, method="get")  # fmt: skip
    assert report.complete and set(report.done) == set(chosen)
    assert _stored(db) == set(data.mr.sop_uids) | set(chosen)


@pytest.mark.parametrize("method", ["get", "move"])
def test_resume_fetches_only_the_missing_instances(orthanc_peer, data, db, method):
    first = data.ct.sop_uids[:3]
    retrieve(orthanc_peer.node, db, study_uid=data.ct.study_uid, series_uids=[data.ct.series_uid],
             sop_instance_uids=first, method=method, options=RetrieveOptions(listener_config=_listener(orthanc_peer)))  # fmt: skip
    before = {sop: os.stat(db.instance(sop).path) for sop in first}
    report = retrieve(orthanc_peer.node, db, study_uid=data.ct.study_uid, method=method,
                      options=RetrieveOptions(listener_config=_listener(orthanc_peer)))  # fmt: skip
    assert report.complete
    assert sorted(report.skipped) == sorted(first)
    assert sorted(report.done) == sorted(set(data.ct.sop_uids + data.mr.sop_uids) - set(first))
    for sop, st in before.items():  # not fetched again: the very same files (a replacement gets a new file)
        now = os.stat(db.instance(sop).path)
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def test_unknown_move_destination_names_the_fix(peer, data, db):
    port = free_port()
    config = ListenerConfig(ae_title="NOWHERE", port=port, host=LOOPBACK)
    with pytest.raises(RetrieveError) as info:
        retrieve(
            peer.node,
            db,
            study_uid=data.ct.study_uid,
            method="move",
            options=RetrieveOptions(listener_config=config),
        )
    message = str(info.value)
    for text in ("NOWHERE", LOOPBACK, str(port), "DicomModalities", "HostTable", "AE list > New AE", "C-GET"):
        assert text in message, message
    status = "0xC000" if peer.kind == "orthanc" else "0xA801"
    assert status in message
    assert not _stored(db)


def test_compressed_studies_by_c_get_arrive_as_stored(orthanc_factory, manifest, tmp_path):
    orthanc = orthanc_factory()
    node = RemoteNode("orthanc", DimseEndpoint(orthanc.aet, LOOPBACK, orthanc.dicom_port))
    for key in ("dev_mr_jpeg2000", "dev_mr_jpegls"):
        files = sorted(p for p in manifest[key]["folder"].iterdir() if p.is_file())
        (syntax,) = manifest[key]["transfer_syntaxes"]
        orthanc.clear()
        orthanc.upload(files)
        db = Database(tmp_path / key)
        study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        report = retrieve(node, db, study_uid=study, method="get")
        assert report.complete and len(report.done) == len(files)
        assert {r.TransferSyntaxUID for r in db.search("instance", {})} == {syntax}  # not re-encoded
        _same_pixels(db, files)
        db.close()


def _many_classes(folder, count: int, pid: str):
    """One series whose instances each carry another storage SOP class (the PACS does not check
    the IOD), to need more presentation contexts than one association holds."""
    from pynetdicom.presentation import StoragePresentationContexts

    classes = [str(cx.abstract_syntax) for cx in StoragePresentationContexts]
    classes = [c for c in classes if not c.startswith("1.2.840.10008.5.1.1.")][:count]  # no (retired) print
    series = make_series(folder, n=count, rows=8, cols=8, patient_id=pid, seed=31)
    for path, sop_class in zip(series.files, classes, strict=True):
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.save_as(path)
    return series, classes


@pytest.mark.parametrize("kind", ["sample", "orthanc"])
def test_more_storage_classes_than_one_association_holds(kind, tmp_path, orthanc_session, request):
    series, classes = _many_classes(tmp_path / "many", 40, f"QRC{uuid.uuid4().hex[:8].upper()}")
    if kind == "orthanc":
        orthanc_session.upload(series.files)
        node = RemoteNode("orthanc", DimseEndpoint(orthanc_session.aet, LOOPBACK, orthanc_session.dicom_port))
        server = None
    else:
        pacs = Database(tmp_path / "pacs")
        pacs.import_paths([str(f) for f in series.files])
        server = QueryRetrieveSCP(pacs, QRConfig(ae_title="QRPACS", port=0, host=LOOPBACK)).start()
        request.addfinalizer(server.stop)
        node = RemoteNode("sample", DimseEndpoint("QRPACS", LOOPBACK, server.port))
    db = Database(tmp_path / "local")
    report = retrieve(node, db, study_uid=series.study_uid, method="get")
    assert report.complete, report.to_dict()
    assert report.associations >= 2  # 40 classes x 4 syntaxes > 126: split
    assert {r.SOPClassUID for r in db.search("instance", {})} == set(classes)
    db.close()


# -- CLI -------------------------------------------------------------------------------------------
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "DICOMPlusLib.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_cli_retrieve(sample_peer, data, tmp_path):
    address = f"QRPACS@{LOOPBACK}:{sample_peer.node.port}"
    path = tmp_path / "cli-db"
    proc = _cli("--db", str(path), "retrieve", address, "--study", data.ct.study_uid, "--series",
                data.mr.series_uid, "--method", "move", "--listener-port", str(sample_peer.listener_port),
                "--listener-host", LOOPBACK, "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["complete"] and report["done"] == len(data.mr.sop_uids) and report["method"] == "move"
    with Database(path) as db:
        assert _stored(db) == set(data.mr.sop_uids)
    proc = _cli("--db", str(path), "retrieve", address, "--study", data.ct.study_uid, "--method", "get")
    assert proc.returncode == 0, proc.stderr
    assert (
        f"retrieved {len(data.ct.sop_uids)} of {len(data.files)}" in proc.stdout
        and "already here" in proc.stdout
    )
    proc = _cli("--db", str(path), "retrieve", address, "--study", data.ct.study_uid, "--method", "move",
                "--listener-ae", "NOWHERE", "--listener-port", str(free_port()), "--no-resume")  # fmt: skip
    assert proc.returncode == 1 and "NOWHERE" in proc.stderr and "HostTable" in proc.stderr
    proc = _cli("--db", str(path), "retrieve", address)
    assert proc.returncode == 2 and "--study" in proc.stderr  # a usage error


def test_instances_the_pacs_cannot_send_are_reported_not_raised(tmp_path, request):
    """The sample PACS does not store the retired print SOP classes: it fails that sub-operation
    (and a retry of it); the rest arrives and the report names what is missing."""
    series = make_series(tmp_path / "mixed", n=4, rows=8, cols=8, patient_id="QRMIXED", seed=41)
    ds = pydicom.dcmread(series.files[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.1.29"  # Hardcopy Grayscale
    ds.save_as(series.files[0])
    pacs = Database(tmp_path / "pacs")
    pacs.import_paths([str(f) for f in series.files])
    server = QueryRetrieveSCP(pacs, QRConfig(ae_title="QRPACS", port=0, host=LOOPBACK)).start()
    request.addfinalizer(server.stop)
    db = Database(tmp_path / "local")
    report = retrieve(RemoteNode("sample", DimseEndpoint("QRPACS", LOOPBACK, server.port)), db, study_uid=series.study_uid,
                      method="get", options=RetrieveOptions(backoff=0.01))  # fmt: skip
    assert not report.complete and set(report.failed) == {str(ds.SOPInstanceUID)}
    assert _stored(db) == set(series.sop_uids) - {str(ds.SOPInstanceUID)}
    assert report.attempts == 2 and report.warnings
    db.close()


def test_move_to_a_listener_given_that_accepts_only_the_pacs(orthanc_peer, data, db):
    from DICOMPlusLib.network.listener import Listener

    config = ListenerConfig(port=orthanc_peer.listener_port, host=LOOPBACK,
                            allowed_calling_aets=(orthanc_peer.node.ae_title,))  # fmt: skip
    with Listener(db, config) as listener:
        arrived = []
        listener.subscribe(lambda i: arrived.append(i.sop_instance_uid))
        report = retrieve(orthanc_peer.node, db, study_uid=data.mr.study_uid, series_uids=[data.mr.series_uid],
                          method="move", options=RetrieveOptions(listener=listener))  # fmt: skip
        assert listener.running  # given, so left running
    assert report.complete and _stored(db) == set(data.mr.sop_uids)
    assert set(arrived) == set(data.mr.sop_uids)  # the application's own subscribers heard them too


def test_c_get_arrivals_are_announced_to_the_listener_of_the_database(sample_peer, data, db):
    """C-GET arrivals enter through the same ingest as C-MOVE ones, so the subscribers of a
    listener storing into the database hear of them alike, with the path of their row."""
    from DICOMPlusLib.network.listener import Listener

    with Listener(db, ListenerConfig(port=0, host=LOOPBACK, series_idle=0.2)) as listener:
        arrived, completes = [], []
        listener.subscribe(arrived.append, completes.append)
        report = retrieve(sample_peer.node, db, series_uids=data.mr.series_uid, method="get",
                          options=RetrieveOptions(listener=listener))  # fmt: skip
        assert report.complete
    # stop() delivered every notification and reported the open series
    assert {i.sop_instance_uid for i in arrived} == set(data.mr.sop_uids)
    assert all(i.path == db.instance(i.sop_instance_uid).path for i in arrived)
    assert [c.series_instance_uid for c in completes] == [data.mr.series_uid]


def test_a_pacs_that_does_not_know_our_calling_ae(orthanc_peer, data, db):
    with pytest.raises(RetrieveError, match=r"STRANGER.*DicomModalities"):
        retrieve(orthanc_peer.node, db, study_uid=data.ct.study_uid, method="get",
                 options=RetrieveOptions(calling_ae_title="STRANGER", timeout=5))  # fmt: skip
    assert not _stored(db)
