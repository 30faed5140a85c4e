"""Network commands as whole processes (issue 19): what ``dicomplus send`` and ``retrieve`` import.

A send is a process of its own: it should pay for the C-STORE SCU and the header scan, not for
pydicom (which imports numpy, GDCM and every pixel decoder it finds), nor for the C-FIND,
retrieve or receiving code (storage, the sample PACS), TLS when no TLS is asked for, or the
database's import path and SQLite when it sends files (not stored instances). Asserted
on the modules ``python -X importtime`` lists while a real send to DCMTK storescp succeeds, not
on the time (``python -m bench store`` has the figures).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from dicomplus_testing.peers import port_accepts
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port

#: Packages a plain send must not import at all.
HEAVY_PACKAGES = {"pydicom", "numpy", "gdcm", "pylibjpeg", "pynetdicom", "requests", "rich", "ssl"}
#: Our modules that belong to other operations.
OTHER_OPERATIONS = {
    "DICOMPlusLib.network.find",
    "DICOMPlusLib.network.retrieve_qr",
    "DICOMPlusLib.network.retrieve_dimse",
    "DICOMPlusLib.network.storage",
    "DICOMPlusLib.network.dimse.receive",
    "DICOMPlusLib.network.dimse.qrscu",
    "DICOMPlusLib.network.pacs.qrscp",
    "DICOMPlusLib.network.echo_dimse",
    # the other operations' value types (each module's ``@dataclass``\ es compile their methods
    # as it is imported): echo's, and retrieve's
    "DICOMPlusLib.network.echo_models",
    "DICOMPlusLib.network.models",
}
#: What a send of files (no database) has no use for: the database's import path and SQLite
#: (the folder is walked by ``database.walk``), and the IDNA codec that a str host name costs
#: ``getaddrinfo`` (stringprep, unicodedata).
NOT_FOR_FILES = {
    "sqlite3",
    "DICOMPlusLib.database.indexer",
    "DICOMPlusLib.database.ingest",
    "DICOMPlusLib.database.store",
    "encodings.idna",
    "stringprep",
    "unicodedata",
    "tempfile",  # the node list is only read
}
#: No network command defines a class with the standard ``dataclasses`` (each compiles six
#: methods; with ``inspect``, ``ast``, ``dis``: ~25 ms of a retrieve's start): its value types
#: are made by ``DICOMPlusLib.dataclasses_lite``.
STANDARD_DATACLASSES = {"dataclasses", "inspect"}

#: What a retrieve by C-GET has no use for: the listener (a C-MOVE's destination) and the
#: notifications of received instances (a listener's subscribers), the other operations,
#: OpenSSL (``hashlib``: the store names its files by CPython's own SHA-256), ``shutil``
#: (argparse's help formatter asks it for the terminal's width: ``cli.arguments.Parser``), and
#: echo's and send's value types.
NOT_FOR_GET = {
    "DICOMPlusLib.network.listener",
    "DICOMPlusLib.network.storage",
    "DICOMPlusLib.network.send_dimse",
    "DICOMPlusLib.network.send_models",
    "DICOMPlusLib.network.echo_dimse",
    "DICOMPlusLib.network.echo_models",
    "DICOMPlusLib.network.dimse.acceptor",
    "DICOMPlusLib.network.pacs.qrscp",
    "queue",
    "hashlib",
    "_hashlib",
    "ssl",
    "shutil",
}

#: What a listener has no use for: the nodes and their endpoints (it is given its AE title and
#: port, from ``network.ae``, and reaches no node), the operations of a client, and the value
#: types of echo, send and retrieve.
NOT_FOR_LISTEN = {
    "DICOMPlusLib.network.nodes",
    "DICOMPlusLib.network.endpoints",
    "DICOMPlusLib.network.dimse.scu",
    "DICOMPlusLib.network.dimse.qrscu",
    "DICOMPlusLib.network.find",
    "DICOMPlusLib.network.echo_models",
    "DICOMPlusLib.network.send_models",
    "DICOMPlusLib.network.models",
    "DICOMPlusLib.database.matching",
}


def modules_imported(*args: str, expect: str = "DICOMPlusLib.network.send_dimse") -> set[str]:
    """Every module ``python -m DICOMPlusLib.cli ARGS`` imported (full dotted names)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "DICOMPlusLib.cli", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert expect in names  # the listing is there and the operation ran
    return names


def test_send_command_imports_only_the_store_scu(storescp, tmp_path):
    series = make_series(tmp_path / "ct", n=3, rows=8, cols=8)
    names = modules_imported("send", f"{storescp.aet}@127.0.0.1:{storescp.port}", str(series.folder))
    assert len(storescp.wait_for(3)) == 3
    assert {name.split(".")[0] for name in names} & HEAVY_PACKAGES == set()
    assert names & OTHER_OPERATIONS == set()
    assert names & NOT_FOR_FILES == set()
    assert names & STANDARD_DATACLASSES == set()
    assert "DICOMPlusLib.database.walk" in names  # the folder was walked
    assert "logging" not in names  # nothing was logged (with traceback and textwrap, ~3 ms of a start)


def test_retrieve_command_does_not_import_pydicom(dcmqrscp, tmp_path):
    """The C-FIND plan and the C-GET use plain identifiers (``dimse/identifiers.py``); the
    received instances are indexed by the header scanner: no pydicom anywhere in the process,
    and nothing of a C-MOVE's listener, the other operations or OpenSSL (:data:`NOT_FOR_GET`)."""
    series = make_series(tmp_path / "ct", n=3, rows=8, cols=8)
    dcmqrscp.load(series.folder)
    names = modules_imported("--db", str(tmp_path / "db"), "retrieve", f"{dcmqrscp.aet}@127.0.0.1:{dcmqrscp.port}",
                             "--study", series.study_uid, "--method", "get", expect="DICOMPlusLib.network.retrieve_dimse")  # fmt: skip
    assert {name.split(".")[0] for name in names} & HEAVY_PACKAGES == set()
    assert names & NOT_FOR_GET == set()
    assert names & STANDARD_DATACLASSES == set()
    assert "DICOMPlusLib.network.dimse.receive" in names  # the instances were received
    assert "logging" not in names  # nothing was logged (listen's rejection reporter is not imported)
    from DICOMPlusLib.database import Database

    with Database(tmp_path / "db") as db:
        assert len(db.search("instance")) == 3


def test_retrieve_by_move_does_not_import_pydicom(dcmqrscp, tmp_path):
    """A C-MOVE's listener, started in the retrieving process, negotiates with the plain tables
    too: no pydicom, numpy or pynetdicom (it imported all three for them before)."""
    series = make_series(tmp_path / "ct", n=3, rows=8, cols=8)
    dcmqrscp.load(series.folder)
    names = modules_imported("--db", str(tmp_path / "db"), "retrieve", f"{dcmqrscp.aet}@127.0.0.1:{dcmqrscp.port}",
                             "--study", series.study_uid, "--method", "move", "--listener-port",
                             str(dcmqrscp.dicomplus_port), expect="DICOMPlusLib.network.dimse.acceptor")  # fmt: skip
    assert {name.split(".")[0] for name in names} & HEAVY_PACKAGES == set()
    from DICOMPlusLib.database import Database

    with Database(tmp_path / "db") as db:
        assert len(db.search("instance")) == 3


def test_listen_command_imports_neither_pydicom_nor_pynetdicom(dcmtk, tmp_path):
    """A listener negotiates with plain tables of storage classes and transfer syntaxes
    (``uids.STORAGE_OUTSIDE_ROOT``, ``uids.TRANSFER_SYNTAXES``) and indexes what it receives with
    the header scanner: its start imports neither pydicom (numpy, the pixel decoders) nor
    pynetdicom, which it once did for those tables alone (~0.3-0.4 s)."""
    series = make_series(tmp_path / "ct", n=3, rows=8, cols=8)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "DICOMPlusLib.cli", "--db", str(tmp_path / "db"),
                             "listen", "--port", str(port), "--host", "127.0.0.1"], cwd=REPO_ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not port_accepts(port):
            assert proc.poll() is None and time.monotonic() < deadline, "dicomplus listen did not start"
            time.sleep(0.05)
        dcmtk.run("storescu", "-aec", "DICOMPLUS", "127.0.0.1", port, *sorted(map(str, series.files)))
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "DICOMPlusLib.network.dimse.acceptor" in names  # the listing is there and it listened
    assert {name.split(".")[0] for name in names} & HEAVY_PACKAGES == set()
    assert names & NOT_FOR_LISTEN == set()
    assert names & STANDARD_DATACLASSES == set()
    from DICOMPlusLib.database import Database

    with Database(tmp_path / "db") as db:
        assert len(db.search("instance")) == 3
