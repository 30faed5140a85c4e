"""Full disks, for every command that writes: one line that says what is full and how far the
command came, exit code 1, nothing lost, and the same command completes once there is room.

The disk is real: a size-limited tmpfs mounted by the test (the CI runs as root). Where mounting
is not allowed the tests fail and say so: a simulated ENOSPC cannot reach a ``dicomplus``
process the way a full disk does (the listener's own test, test_network_listener.py, has the
simulation for its in-process path). Each command is run as a user runs it (``python -m
DICOMPlusLib.cli``) against real peers: the sample PACS's Q/R SCP (``dicomplus serve``'s
engine) for C-GET and C-MOVE, Orthanc for DICOMweb.

"Nothing lost": every instance reported stored is in the database, its file whole and readable;
no temporary or unreferenced file is left in the store, nor a partial file in an output folder;
``PRAGMA integrity_check`` says ok.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pydicom
import pytest
from pynetdicom import evt

from dicomplus_testing.full_disk import assert_one_line_full, dicomplus, fill, grow
from dicomplus_testing.peers import LOOPBACK, dicomplus_server
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import free_port
from DICOMPlusLib.database import Database
from DICOMPlusLib.network.dimse.status import Status
from DICOMPlusLib.network.pacs.qrscp import Destination, QRConfig, QueryRetrieveSCP

N = 40  # instances of 128 KiB: 5 MiB, into a 2 MiB disk


@contextlib.contextmanager
def small_disk(path: Path, size: str = "2m"):
    """A tmpfs of ``size`` at ``path``; :func:`grow` makes room (as freeing space would)."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"these tests need a real small file system, and mounting a tmpfs failed "
                    f"({proc.stderr.strip()}): run them as root (the CI does)")  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def assert_consistent(db_file: Path, store: Path) -> int:
    """Integrity check, every row's file whole and readable, no temporary or unreferenced file
    in the store. Returns the number of instances."""
    conn = sqlite3.connect(db_file)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT SOPInstanceUID, path, size FROM instances").fetchall()
    finally:
        conn.close()
    for sop, path, size in rows:
        assert os.path.getsize(path) == size, sop
        assert str(pydicom.dcmread(path).SOPInstanceUID) == sop
    stored = {os.path.realpath(p) for p in store.rglob("*.dcm")} if store.exists() else set()
    inside = {os.path.realpath(p) for _, p, _ in rows if Path(p).is_relative_to(store)}
    assert stored == inside
    assert not list(store.rglob(".incoming-*")) if store.exists() else True
    return len(rows)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return make_series(tmp_path_factory.mktemp("full") / "ct", n=N, rows=256, cols=256,
                       patient_id="FULL1", seed=91)  # fmt: skip


# -- import ---------------------------------------------------------------------------------------
def test_import_into_a_full_store(series, tmp_path):
    db = tmp_path / "db"
    with small_disk(tmp_path / "small") as disk:
        store = disk / "store"
        code, _, err = dicomplus("--db", db, "--store", store, "import", series.folder)
        stored = assert_one_line_full(code, err, store, "files")
        assert 0 < stored < N
        assert assert_consistent(db / "dicomplus.sqlite", store) == stored
        grow(disk)
        code, out, err = dicomplus("--db", db, "--store", store, "import", series.folder)
        assert code == 0, err
        assert f"added {N - stored}, unchanged {stored}" in out
        assert assert_consistent(db / "dicomplus.sqlite", store) == N


def test_import_with_the_database_on_a_full_disk(series, tmp_path):
    """SQLite's "database or disk is full", the store on another disk: the batch is not committed
    and its copies leave the store."""
    store = tmp_path / "store"
    with small_disk(tmp_path / "small") as disk:
        db = disk / "dicomplus.sqlite"
        Database(db, store_dir=store).close()
        filler = fill(disk, 160 << 10)  # the WAL fills it during the import
        code, _, err = dicomplus("--db", db, "--store", store, "import", series.folder)
        stored = assert_one_line_full(code, err, db, "files")
        assert assert_consistent(db, store) == stored
        filler.unlink()
        filler = fill(disk, 8 << 10)  # no room to open it (SQLite: "disk I/O error")
        code, _, err = dicomplus("--db", db, "--store", store, "import", series.folder)
        assert assert_one_line_full(code, err, db) is None
        filler.unlink()
        assert assert_consistent(db, store) == stored
        code, _, err = dicomplus("--db", db, "--store", store, "import", series.folder)
        assert code == 0, err
        assert assert_consistent(db, store) == N


# -- retrieve -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pacs(series, tmp_path_factory):
    """The Q/R SCP of ``dicomplus serve`` over the series, with our C-MOVE destination."""
    root = tmp_path_factory.mktemp("pacs")
    db = Database(root / "db")
    db.import_paths([series.folder], jobs=1)
    move_port = free_port()
    server = QueryRetrieveSCP(db, QRConfig(ae_title="FULLPACS", port=0, host=LOOPBACK,
                                           destinations=(Destination("DICOMPLUS", LOOPBACK, move_port),)))  # fmt: skip
    server.start()
    requests: list[str] = []  # the C-GET, C-MOVE and C-CANCEL requests it was sent, as the PACS saw them
    assert server._server is not None
    server._server.bind(evt.EVT_DIMSE_RECV, lambda event: requests.append(type(event.message).__name__))
    offered: list[str] = []  # the instances its sub-operations sent (C-GET) or had sent (C-MOVE)
    sub_operations = server._sub_operations

    def counted(event, records):
        for status, sent in sub_operations(event, records):
            if sent is not None and status != Status.CANCEL:
                offered.append("")
            yield status, sent

    server._sub_operations = counted  # type: ignore[method-assign]
    yield f"FULLPACS@{LOOPBACK}:{server.port}", move_port, requests, offered
    server.stop()
    db.close()


@pytest.mark.parametrize("method", ["get", "move"])
def test_retrieve_into_a_full_store(series, pacs, tmp_path, method):
    """The PACS hears our 0xA700 refusals and gives up (0xA702): the user hears that our disk is
    full and how many arrived, not that the PACS is out of resources or lacks a destination. A
    full disk is no transient failure: with retries allowed (the default, 2) the PACS is asked
    once, not again for what is missing. After the first instance refused for want of room,
    the PACS gets a C-CANCEL: it stops sending (before, it sent the other instances, each
    refused 0xA700)."""
    node, move_port, requests, offered = pacs
    db = tmp_path / "db"
    with small_disk(tmp_path / "small") as disk:
        store = disk / "store"
        argv = ["--db", db, "--store", store, "retrieve", node, "--study", series.study_uid, "--method", method,
                "--listener-port", move_port, "--listener-host", LOOPBACK]  # fmt: skip
        requests.clear()
        offered.clear()
        code, _, err = dicomplus(*argv)
        stored = assert_one_line_full(code, err, store, "instances")
        assert 0 < stored < N - 4
        asked = [r for r in requests if r in ("C_GET_RQ", "C_MOVE_RQ")]
        assert asked == [f"C_{method.upper()}_RQ"], requests
        assert "C_CANCEL_RQ" in requests, requests
        # the refused one, and at most two the PACS had under way when the C-CANCEL came
        assert len(offered) <= stored + 3, (len(offered), stored)
        assert assert_consistent(db / "dicomplus.sqlite", store) == stored
        grow(disk)
        code, out, err = dicomplus(*argv)
        assert code == 0, err
        assert f"({stored} already here), complete" in out, out
        assert assert_consistent(db / "dicomplus.sqlite", store) == N


@pytest.mark.parametrize("peer", ["dcmqrscp", "orthanc"])
def test_a_c_get_from_dcmtk_and_orthanc_is_cancelled_when_the_store_fills(series, peer, request, tmp_path):
    """DCMTK's dcmqrscp and Orthanc as the PACS: after the first instance refused for want of
    room the C-GET is cancelled, so the instances our C-GET refused (each logged with
    --verbose) are that one and at most two under way, not every one left (before: N minus
    those stored); the one line, exit 1, and what was stored is kept."""
    if peer == "orthanc":
        server = request.getfixturevalue("orthanc_session")
        server.upload(series.folder)
        node = f"{server.aet}@{LOOPBACK}:{server.dicom_port}"
    else:
        server = request.getfixturevalue("dcmqrscp")
        server.load(series.folder)
        node = f"{server.aet}@{LOOPBACK}:{server.port}"
    db = tmp_path / "db"
    with small_disk(tmp_path / "small") as disk:
        store = disk / "store"
        code, _, err = dicomplus("--db", db, "--store", store, "--verbose", "retrieve", node, "--study",
                                 series.study_uid, "--method", "get")  # fmt: skip
        lines = err.splitlines()
        assert code == 1, err
        assert_one_line_full(code, lines[-1] + "\n", store, "instances")
        stored = int(re.search(r"stored (\d+) of", lines[-1]).group(1))  # type: ignore[union-attr]
        assert 0 < stored < N - 4
        refused = [line for line in lines if "C-STORE sub-operation" in line and "0xA700" in line]
        assert 1 <= len(refused) <= 3, err
        assert any("C-CANCEL sent" in line for line in lines), err
        assert assert_consistent(db / "dicomplus.sqlite", store) == stored


def test_dicomweb_retrieve_into_a_full_store(series, orthanc_session, tmp_path):
    """With the default --retries: WADO-RS has no association to retry, the part that found no
    room ends the retrieve."""
    orthanc_session.upload(series.folder)
    nodes = tmp_path / "nodes.json"
    assert (
        dicomplus("nodes", "add", "web", "--dicomweb", orthanc_session.dicomweb_url, "--nodes", nodes)[0] == 0
    )
    db = tmp_path / "db"
    with small_disk(tmp_path / "small") as disk:
        store = disk / "store"
        argv = [
            "--db",
            db,
            "--store",
            store,
            "retrieve",
            "web",
            "--study",
            series.study_uid,
            "--nodes",
            nodes,
        ]
        code, _, err = dicomplus(*argv)
        stored = assert_one_line_full(code, err, store, "instances")
        assert 0 < stored < N
        assert assert_consistent(db / "dicomplus.sqlite", store) == stored
        grow(disk)
        code, _, err = dicomplus(*argv)
        assert code == 0, err
        assert assert_consistent(db / "dicomplus.sqlite", store) == N


# -- receiving: listen, serve -------------------------------------------------------------------
@pytest.mark.parametrize("command", ["listen", "serve"])
def test_a_server_whose_store_fills(series, dcmtk, tmp_path, command):
    """A peer storing into ``listen`` or ``serve`` when the store fills: each instance that finds
    no room is answered 0xA700 (out of resources), never success; the server says the disk is
    full in one line, not one per refusal, goes on, and stores again once there is room."""
    port = free_port()
    db = tmp_path / "db"
    with small_disk(tmp_path / "small") as disk:
        store = disk / "store"
        if command == "listen":
            argv = ["--db", db, "--store", store, "listen", "--port", port, "--host", LOOPBACK]
        else:
            Database(db, store_dir=store).close()  # serve wants a database that is there
            argv = ["--store", store, "serve", "--db", db, "--port", port, "--host", LOOPBACK]
        with dicomplus_server(*argv, port=port) as proc:
            # --no-halt: go on after a refusal (storescu stops at the first by default)
            sent = dcmtk.run(
                "storescu", "-v", "-nh", "-aec", "ANY", LOOPBACK, port, *series.files, check=False
            )
            answers = re.findall(r"Received Store Response \((.+?)\)", sent.stdout + sent.stderr)
            assert len(answers) == N, sent.stdout + sent.stderr
            stored = answers.count("Success")
            assert 0 < stored < N and answers[stored:] == ["Refused: OutOfResources"] * (N - stored), answers
            assert assert_consistent(db / "dicomplus.sqlite", store) == stored
            grow(disk)
            sent = dcmtk.run("storescu", "-aec", "ANY", LOOPBACK, port, *series.files)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, 130), err
        assert err.splitlines() == [
            f"dicomplus: the disk holding {store} is full: instances sent to us are refused (0xA700, out of "
            "resources) until there is room; free space there"
        ], err
        assert assert_consistent(db / "dicomplus.sqlite", store) == N


#: The pynetdicom engine's C-STORE handler (``pynetdicom_glue.store_handler``): the data set goes
#: to the store as a view of the request's buffer, ``BytesIO.getbuffer()``. Then nothing is left
#: for the garbage collector: the BytesIO is freed as the call returns, and a collection finds
#: nothing of it.
REFUSED_SCRIPT = r"""
import gc, io, json, sys, weakref

from DICOMPlusLib.database import Database
from DICOMPlusLib.network.dimse.receive import DatabaseSink, ReceiveMeta

gc.disable()  # what reference counting alone frees; the collection below is the test's own
db = Database(sys.argv[1], store_dir=sys.argv[2])
sink = DatabaseSink(db)
meta = ReceiveMeta(sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.3.4",
                   transfer_syntax="1.2.840.10008.1.2.1")
data = io.BytesIO(open(sys.argv[3], "rb").read())
kept = weakref.ref(data)
outcome = sink.store_bytes(meta, data.getbuffer())
del data
freed = kept() is None
gc.collect()  # Python 3.12.1 crashed here on a BytesIO view in a reference cycle
print(json.dumps({"status": outcome.status, "comment": outcome.comment, "freed": freed}))
db.close()
"""


def test_a_refused_c_store_leaves_nothing_to_the_garbage_collector(series, tmp_path):
    """A C-STORE the full store refuses (0xA700): the received data set is freed at once. The
    write's error, kept for the answer, held it through its traceback's frames in a reference
    cycle; only the garbage collector freed it, and on Python 3.12.1 the collector crashed on
    the BytesIO view in that cycle (CPython gh-111049): ``serve`` died of a segmentation fault
    at the first instance the full disk refused."""
    from dicomplus_testing.util import run_script

    db = tmp_path / "db"
    with small_disk(tmp_path / "small") as disk:
        store = disk / "store"
        Database(db, store_dir=store).close()
        fill(disk, leave=0)
        run = run_script(REFUSED_SCRIPT, str(db), str(store), str(series.files[0]))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"status": 0xA700, "comment": "out of disk space", "freed": True}


# -- files written: convert, export, bundle, backup -----------------------------------------------
@pytest.fixture(scope="module")
def study_db(series, tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    with Database(root / "db") as db:
        db.import_paths([series.folder], jobs=1)
    volume = root / "volume.nrrd"
    assert dicomplus("convert", series.folder, "--out", volume)[0] == 0
    scene = root / "scene.mrb"
    with zipfile.ZipFile(scene, "w") as z:
        z.writestr("scene/scene.mrml", "<MRML></MRML>")
        z.writestr("scene/Data/noise.bin", os.urandom(3 << 20))  # does not compress
    return root / "db", volume, scene


@pytest.mark.parametrize("out", ["vol.nrrd", "vol.nhdr", "vol.mha", "vol.nii.gz", "vol.nii", "folder/"])
def test_convert_to_a_full_disk(series, tmp_path, out):
    with small_disk(tmp_path / "small") as disk:
        target = disk / out
        code, _, err = dicomplus("convert", series.folder, "--out", target)
        assert_one_line_full(code, err, target if out.endswith("/") else disk)
        leftovers = [p for p in disk.rglob("*") if p.is_file()]
        assert leftovers == [], leftovers  # no partial file, no temporary
        grow(disk)
        code, _, err = dicomplus("convert", series.folder, "--out", target)
        assert code == 0, err


def test_export_and_bundle_to_a_full_disk(series, study_db, tmp_path):
    db, volume, scene = study_db
    with small_disk(tmp_path / "small") as disk:
        exported = disk / "export"
        export = ["--db", db, "export", volume, "--study", series.study_uid, "--out", exported]
        code, _, err = dicomplus(*export)
        assert_one_line_full(code, err, exported)
        assert list(exported.iterdir()) == []
        bundle = ["--db", db, "bundle", "save", scene, "--study", series.study_uid, "--out", disk / "b.dcm"]
        code, _, err = dicomplus(*bundle)
        assert_one_line_full(code, err, disk)
        assert not (disk / "b.dcm").exists()
        grow(disk)
        assert dicomplus(*export)[0] == 0
        assert dicomplus(*bundle)[0] == 0


def test_export_and_bundle_indexed_into_a_full_store(series, study_db, tmp_path):
    """The files are written, then the store fills as they are indexed: the series leaves the
    database and the output, so that the same command again is not refused for what it left."""
    _, volume, scene = study_db
    copy = tmp_path / "db"
    with Database(copy) as linked:  # the study's files stay where they are: the store is for the new ones
        linked.import_paths([series.folder], link=True, jobs=1)
    with small_disk(tmp_path / "small") as disk:
        store = disk / "store"
        exported = tmp_path / "export"
        export = ["--db", copy, "--store", store, "export", volume, "--study", series.study_uid, "--out",
                  exported, "--index"]  # fmt: skip
        code, _, err = dicomplus(*export)
        assert_one_line_full(code, err, store, "files")
        assert list(exported.iterdir()) == []
        bundle = ["--db", copy, "--store", store, "bundle", "save", scene, "--study", series.study_uid,
                  "--out", tmp_path / "b.dcm", "--index"]  # fmt: skip
        code, _, err = dicomplus(*bundle)
        assert_one_line_full(code, err, store, "files")
        assert not (tmp_path / "b.dcm").exists()
        grow(disk)
        code, _, err = dicomplus(*export)
        assert code == 0, err
        code, _, err = dicomplus(*bundle)
        assert code == 0, err
        instances = json.loads(dicomplus("--db", copy, "--store", store, "info", "--json")[1])["instances"]
        assert assert_consistent(copy / "dicomplus.sqlite", store) == instances


def test_backup_to_a_full_disk(study_db, tmp_path):
    db, _, _ = study_db
    with small_disk(tmp_path / "small") as disk:
        filler = fill(disk, 32 << 10)
        code, _, err = dicomplus("--db", db, "db", "backup", disk / "copy.sqlite")
        assert_one_line_full(code, err, disk)
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
        filler.unlink()
        code, _, err = dicomplus("--db", db, "db", "backup", disk / "copy.sqlite")
        assert code == 0, err
        conn = sqlite3.connect(disk / "copy.sqlite")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()


# -- the engine (what the Slicer panel calls) ---------------------------------------------------
def test_engine_import_and_retrieve_into_a_full_store(series, pacs, tmp_path):
    """The host gets one DiskFullError, message and fields, for an import and for a retrieve;
    the engine goes on, and the same jobs complete once there is room."""
    from DICOMPlusLib.engine.client import SubprocessEngine
    from DICOMPlusLib.errors import DiskFullError
    from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode

    address, _, requests, _ = pacs
    ae, host_port = address.split("@")
    node = RemoteNode("pacs", DimseEndpoint(ae, LOOPBACK, int(host_port.rsplit(":", 1)[1])))
    with small_disk(tmp_path / "small") as disk, SubprocessEngine() as engine:
        imported = {"db": str(tmp_path / "a"), "store": str(disk / "a"), "paths": [str(series.folder)]}
        with pytest.raises(DiskFullError) as caught:
            engine.submit("import", imported, "Import").get(120)
        error = caught.value
        assert error.path == str(disk / "a") and error.total == N and 0 < error.done < N
        assert "\n" not in str(error) and str(error).startswith(f"stored {error.done} of {N} files; the disk")
        assert assert_consistent(tmp_path / "a" / "dicomplus.sqlite", disk / "a") == error.done

        shutil.rmtree(disk / "a")  # room for the retrieve
        retrieved = {"db": str(tmp_path / "b"), "store": str(disk / "b"), "node": node,
                     "study": series.study_uid, "method": "get"}  # fmt: skip
        requests.clear()
        with pytest.raises(DiskFullError) as caught:
            engine.submit("retrieve", retrieved, "Retrieve").get(120)
        assert [r for r in requests if r == "C_GET_RQ"] == ["C_GET_RQ"], requests  # not retried
        error = caught.value
        assert error.path == str(disk / "b") and error.total == N and 0 < error.done < N
        assert assert_consistent(tmp_path / "b" / "dicomplus.sqlite", disk / "b") == error.done

        grow(disk)
        report = engine.submit("retrieve", retrieved, "Retrieve").get(120)
        assert len(report.done) + len(report.skipped) == N and report.complete
        assert assert_consistent(tmp_path / "b" / "dicomplus.sqlite", disk / "b") == N


def test_delete_and_nodes_add_on_a_full_disk(series, tmp_path):
    """A delete whose database cannot grow its WAL keeps every row and file; a node list that
    cannot be written stays as it was."""
    store = tmp_path / "store"
    with small_disk(tmp_path / "small") as disk:
        db = disk / "dicomplus.sqlite"
        with Database(db, store_dir=store) as opened:
            opened.import_paths([series.folder], jobs=1)
        nodes = disk / "nodes.json"
        assert dicomplus("nodes", "add", "pacs", f"PACS@{LOOPBACK}:104", "--nodes", nodes)[0] == 0
        before = nodes.read_bytes()
        filler = fill(disk, 0)
        delete = ["--db", db, "--store", store, "delete", "--series", series.series_uid]
        code, _, err = dicomplus(*delete)
        assert assert_one_line_full(code, err, db) is None
        code, _, err = dicomplus("nodes", "add", "other", f"OTHER@{LOOPBACK}:104", "--nodes", nodes)
        assert assert_one_line_full(code, err, disk) is None
        assert nodes.read_bytes() == before
        assert not list(disk.glob(".nodes-*"))  # no temporary list left
        filler.unlink()
        assert assert_consistent(db, store) == N
        code, _, err = dicomplus(*delete)
        assert code == 0, err
        assert assert_consistent(db, store) == 0


def test_an_open_database_writes_again_once_there_is_room(series, tmp_path):
    """A long-lived process (the engine, a listener): after the commit that found the disk full
    (SQLite rolled it back; Database.write makes sure no transaction stays open), the same
    connection writes again once there is room."""
    from DICOMPlusLib.errors import DiskFullError

    with (
        small_disk(tmp_path / "small") as disk,
        Database(disk / "dicomplus.sqlite", store_dir=tmp_path / "store") as db,
    ):
        filler = fill(disk, 16 << 10)
        with pytest.raises(DiskFullError, match=f"the disk holding {disk / 'dicomplus.sqlite'} is full"):
            db.import_paths([series.folder], jobs=1)
        filler.unlink()
        kept = db.info()["instances"]
        assert db.import_paths([series.folder], jobs=1).added == N - kept
        assert db.info()["instances"] == N
        assert assert_consistent(disk / "dicomplus.sqlite", tmp_path / "store") == N


def test_the_sample_pacs_on_a_full_disk(tmp_path):
    """``serve --sample`` makes its database first: on a full disk it says so and starts
    nothing; the sample data is one transaction, so nothing of it is left half there."""
    from DICOMPlusLib.network.pacs.sample import make_sample_data

    with small_disk(tmp_path / "small", "1m") as disk:
        sample = disk / "sample"
        code, _, err = dicomplus("serve", "--sample", "--db", sample, "--port", 0, timeout=60)
        assert assert_one_line_full(code, err, sample / "store") is None
        assert assert_consistent(sample / "dicomplus.sqlite", sample / "store") == 0
        grow(disk)
        with Database(sample) as db:
            assert make_sample_data(db)["added"] > 0
        assert assert_consistent(sample / "dicomplus.sqlite", sample / "store") > 0
