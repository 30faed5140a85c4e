"""A fresh ``dicomplus listen`` process takes a burst of associations at once, and every one of
them succeeds.

What happened (bench pg_ingest, a loaded machine): the listener imported pydicom only when the
first associations needed it, in their own threads: one negotiating (the storage SOP classes and
transfer syntaxes come from pydicom's UID dictionary), another storing (the header scan looks up
a VR in pydicom's data dictionary). Python's imports of one package from two threads at once are
not safe when its modules import each other, as pydicom's do: one thread got "cannot import name
'Dataset' from partially initialized module 'pydicom.dataset'" and aborted its association, another
"partially initialized module 'pydicom' has no attribute 'valuerep'" and answered 0xA700. Those
instances were never acknowledged: lost to the sender, not by the database. The listener then
imported what its threads need before it opened its port; it now needs no pydicom for either
(the tables are plain, ``uids.TRANSFER_SYNTAXES``; the VRs ``database.keywords``), and what
still may (an odd file's parse) goes through ``_lazy.import_pydicom``, one thread at a time.

Asserted on what decides it, on a real listener process and a real burst: which thread imports
pydicom (slowed down by a second here, as a loaded machine does, so that the burst arrives while
it runs): never an association's thread; and every sender of the burst succeeds, every instance
stored.
"""

from __future__ import annotations

import json
import subprocess
import sys

from dicomplus_testing.peers import LOOPBACK, tool_env
from dicomplus_testing.slow_imports import SLOW_PYDICOM
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port
from DICOMPlusLib.database import open_database

SENDERS = 8


def test_a_fresh_listener_takes_a_burst_of_associations(dcmtk, tmp_path):
    files = [str(p) for p in make_series(tmp_path / "series", n=3 * SENDERS, rows=4, cols=4).files]
    port = free_port()
    db_path = tmp_path / "db"
    listener = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SLOW_PYDICOM,
            "--db",
            str(db_path),
            "listen",
            "--port",
            str(port),
            "--host",
            LOOPBACK,
            "--json",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    senders = []
    try:
        line = listener.stdout.readline()
        assert json.loads(line)["event"] == "listening", line
        senders = [
            subprocess.Popen(
                [dcmtk.path("storescu"), "-aec", "DICOMPLUS", LOOPBACK, str(port), *files[k::SENDERS]],
                env=tool_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for k in range(SENDERS)
        ]
        outcomes = [(sender.wait(120), sender.communicate()[0]) for sender in senders]
    finally:
        for proc in [*senders, listener]:
            if proc.poll() is None:
                proc.terminate()
        _, log = listener.communicate(timeout=30)
    importers = [line.split(" on ")[-1] for line in log.splitlines() if line.startswith("importing pydicom")]
    assert all(name == "MainThread" for name in importers), log[-3000:]  # never by an association
    failed = [(code, out[-300:]) for code, out in outcomes if code != 0]
    assert not failed, f"{len(failed)} of {SENDERS} senders failed: {failed[:2]}\nlistener:\n{log[-3000:]}"
    assert "partially initialized" not in log, log[-3000:]
    with open_database(str(db_path)) as db:
        assert len(db.instance_paths()) == len(files)
