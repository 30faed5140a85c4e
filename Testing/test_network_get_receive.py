"""What a C-GET's receiving side does per instance, counted against a real SCP (DCMTK dcmqrscp),
not timed (issue 19: ``dicomplus retrieve`` <= 1.2x getscu's time).

A C-GET SCP sends its next instance only after our C-STORE response to the previous one, and we
answer only once the instance is committed: everything we do between the last byte of an
instance and that response is paid once per file, in series with the SCP. Creating the next
instance's temporary file (an ext4 create, 0.2-1 ms on a loaded machine) is done in the gap
instead, while the SCP reads and sends its next file; the one made after the last instance is
removed. The instances still arrive byte for byte as the SCP holds them.
"""

from __future__ import annotations

import pytest

from dicomplus_testing.peers import LOOPBACK, DcmqrscpServer
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import data_set_bytes, require_executable
from DICOMPlusLib.database import Database
from DICOMPlusLib.database.store import TMP_PREFIX
from DICOMPlusLib.network.dimse import qrscu
from DICOMPlusLib.network.models import RetrieveOptions
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
from DICOMPlusLib.network.retrieve import retrieve

FILES = 6


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return make_series(tmp_path_factory.mktemp("get-receive-src"), n=FILES, rows=32, cols=32, seed=77)


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory, series):
    require_executable(DcmqrscpServer.executable)
    server = DcmqrscpServer(tmp_path_factory.mktemp("get-receive-dcmqrscp"))
    server.start()
    try:
        server.load(series.files)
        yield RemoteNode("dcmqrscp", DimseEndpoint(server.aet, LOOPBACK, server.port))
    finally:
        server.stop()


def test_next_temporary_file_is_made_before_its_c_store_arrives(dcmqrscp, series, tmp_path, monkeypatch):
    events: list[str] = []
    with Database(tmp_path / "db") as db:
        real_incoming = db.ingest.incoming

        def incoming():
            events.append("create")
            return real_incoming()

        monkeypatch.setattr(db.ingest, "incoming", incoming)
        real_begin = qrscu.QRAssociation._begin_store

        def begin_store(self, *args, **kwargs):
            events.append("C-STORE-RQ")
            return real_begin(self, *args, **kwargs)

        monkeypatch.setattr(qrscu.QRAssociation, "_begin_store", begin_store)
        report = retrieve(dcmqrscp, db, study_uid=series.study_uid, method="get", options=RetrieveOptions())
        monkeypatch.undo()

        assert report.complete and len(report.done) == FILES, report.to_dict()
        # the first file is made when its request arrives; every later one before its request; one
        # more after the last instance, which the end of the C-GET removes
        assert events == ["C-STORE-RQ", "create", *["create", "C-STORE-RQ"] * (FILES - 1), "create"], events
        assert not [p.name for p in db.store.root.iterdir() if p.name.startswith(TMP_PREFIX)]
        stored = {r.SOPInstanceUID: r.path for r in db.search("instance", {})}
    assert len(stored) == FILES
    sources = sorted(data_set_bytes(f) for f in series.files)
    assert sorted(data_set_bytes(p) for p in stored.values()) == sources  # byte-identical data sets
