"""The first C-FIND and C-GET after ``dicomplus serve`` starts import nothing on their
association's thread (issue 19: the first C-GET after a start was the slow one).

What the first retrieve paid and the next ones did not: the modules of the retrieve path (the
sub-operations' wire, the DIMSE encoder, the database's keyword dictionary) imported by the
association's thread (and the database reader's) while the requester waited, and the stored
files read from the disk one after another when the page cache did not hold them. The server now
imports them on the thread that starts it, and asks the kernel for a retrieve's files before they
are sent (on a thread of its own).

Asserted on a real ``dicomplus serve`` process and DCMTK's findscu and getscu: every import of a
DICOMPlus, pydicom or pynetdicom module runs on the main thread; the C-GET brings every
instance, byte for byte.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from dicomplus_testing.peers import LOOPBACK, tool_env
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, data_set_bytes, free_port
from DICOMPlusLib.database import Database

# Runs the command line and says, on stderr, which thread imports each module of ours, pydicom's
# or pynetdicom's (an import found in sys.modules runs no finder: only real imports are told).
IMPORTS_BY_THREAD = textwrap.dedent(
    """
    import sys, threading

    class Tell:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("DICOMPlusLib", "pydicom", "pynetdicom"):
                print(f"import {name} on {threading.current_thread().name}", file=sys.stderr, flush=True)
            return None

    sys.meta_path.insert(0, Tell())
    from DICOMPlusLib.cli.app import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_first_find_and_get_import_nothing_on_association_threads(dcmtk, tmp_path):
    series = make_series(tmp_path / "series", n=4, rows=16, cols=16, seed=31)
    db_path = tmp_path / "db"
    with Database(db_path) as db:
        db.import_paths([str(f) for f in series.files])
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", IMPORTS_BY_THREAD, "--db", str(db_path), "serve", "--port", str(port),
         "--host", LOOPBACK, "--ae-title", "FIRSTGET"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    try:
        banner = server.stdout.readline()
        assert "is running" in banner, banner + server.stderr.read()[-3000:]
        keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={series.study_uid}"]
        found = subprocess.run(
            [dcmtk.path("findscu"), "-S", "-aec", "FIRSTGET", *keys, "-k", "PatientName", LOOPBACK, str(port)],
            env=tool_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert found.returncode == 0, found.stdout + found.stderr
        got = subprocess.run(
            [dcmtk.path("getscu"), "-S", "-aec", "FIRSTGET", *keys, "-od", str(out), LOOPBACK, str(port)],
            env=tool_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert got.returncode == 0, got.stdout + got.stderr
    finally:
        server.terminate()
        _, log = server.communicate(timeout=30)
    imports = [line for line in log.splitlines() if line.startswith("import ")]
    assert imports, log[-3000:]  # the hook ran
    elsewhere = [line for line in imports if not line.endswith(" on MainThread")]
    assert not elsewhere, elsewhere
    received = sorted(data_set_bytes(p) for p in out.iterdir())
    assert received == sorted(data_set_bytes(f) for f in series.files)  # every instance, byte for byte
