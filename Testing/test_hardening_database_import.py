"""Issue 16, import side: valid files accepted (deflated), damaged or moving ones reported
(rewritten while copied, an unreadable folder, an image cut before its pixel data), and
temporary files of dead writers swept on the next open while a live writer's are kept."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, require_executable
from DICOMPlusLib.database import Database
from DICOMPlusLib.database.parsing import parse_path

DEFLATED = "1.2.840.10008.1.2.1.99"
DCMCONV = "/usr/bin/dcmconv"  # DCMTK's encoder for deflated files, not ours


def stored_bytes(db: Database, sop: str) -> bytes:
    return Path(db.instance(sop).path).read_bytes()


def temporaries(store: Path) -> list[Path]:
    """Every temporary left anywhere in the store, file or folder."""
    return sorted(store.rglob(".incoming-*"))


@pytest.mark.parametrize("link", [False, True], ids=["copy", "link"])
def test_deflated_explicit_vr_little_endian_is_imported(tmp_path, link):
    require_executable(DCMCONV)
    series = make_series(tmp_path / "in", n=2, rows=512, cols=512, fat_header=True, seed=5)
    deflated = tmp_path / "deflated"
    deflated.mkdir()
    for f in series.files:
        subprocess.run([DCMCONV, "+td", f, deflated / f.name], check=True)
    assert pydicom.dcmread(deflated / series.files[0].name).file_meta.TransferSyntaxUID == DEFLATED
    db = Database(tmp_path / "db")
    report = db.import_paths([deflated], link=link)
    assert report.added == 2 and report.skipped == [], report.skipped
    for f in series.files:
        original = pydicom.dcmread(f)
        record = db.instance(str(original.SOPInstanceUID))
        assert record.TransferSyntaxUID == DEFLATED
        assert Path(record.path).read_bytes() == (deflated / f.name).read_bytes()
        header = db.header(str(original.SOPInstanceUID))  # the stored header reads back whole
        assert header.PatientName == original.PatientName and header.Rows == 512
        assert [e.tag for e in header if e.tag < 0x7FE00010] == [
            e.tag for e in original if e.tag < 0x7FE00010
        ]
    db.close()


def test_truncated_deflated_file_is_reported(tmp_path):
    require_executable(DCMCONV)
    series = make_series(tmp_path / "in", n=1, rows=512, cols=512, seed=6)
    full = tmp_path / "full.dcm"
    subprocess.run([DCMCONV, "+td", series.files[0], full], check=True)
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "x.dcm").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    db = Database(tmp_path / "db")
    report = db.import_paths([cut])
    assert report.added == 0 and "truncated" in report.skipped[0].reason
    db.close()


def _cut_before_pixel_data(source: Path, target: Path) -> None:
    data = source.read_bytes()
    at = data.rfind(b"\xe0\x7f\x10\x00")  # (7FE0,0010), explicit VR little endian
    assert at > 0
    target.write_bytes(data[:at])


@pytest.mark.parametrize("link", [False, True], ids=["copy", "link"])
def test_image_cut_exactly_before_pixel_data_is_truncated(tmp_path, link):
    series = make_series(tmp_path / "in", n=1, rows=16, cols=16, seed=7)
    cut = tmp_path / "cut"
    cut.mkdir()
    _cut_before_pixel_data(series.files[0], cut / "ct.dcm")
    assert "PixelData" not in pydicom.dcmread(cut / "ct.dcm")  # a "valid" data set, pixel-less
    db = Database(tmp_path / "db")
    report = db.import_paths([cut], link=link)
    assert report.added == 0 and len(report.skipped) == 1
    assert report.skipped[0].reason.startswith("truncated") and "Pixel Data" in report.skipped[0].reason
    db.close()


def test_private_or_non_image_objects_without_pixel_data_are_still_accepted(tmp_path):
    series = make_series(tmp_path / "in", n=2, rows=16, cols=16, seed=8)
    out = tmp_path / "out"
    out.mkdir()
    for i, f in enumerate(series.files):
        ds = pydicom.dcmread(f)
        del ds.PixelData
        # A private SOP class with Rows/Columns (as Philips' private MR series data), then MR
        # spectroscopy: legitimately pixel-less.
        uid = "1.3.46.670589.11.0.0.12.2" if i == 0 else "1.2.840.10008.5.1.4.1.1.4.2"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid
        ds.save_as(out / f"{i}.dcm", enforce_file_format=True)
    db = Database(tmp_path / "db")
    report = db.import_paths([out])
    assert report.added == 2, report.skipped
    db.close()


def test_file_rewritten_while_being_copied_is_never_stored_torn(tmp_path):
    """A writer rewrites a large file (truncated, then written in chunks, as ``cp`` does),
    alternating two versions of the same size, while it is imported again and again: every stored copy is one whole version (with its size), or
    the file is reported as changing."""
    series = make_series(tmp_path / "in", n=1, rows=1536, cols=1536, seed=9)
    path = series.files[0]
    a = path.read_bytes()
    ds = pydicom.dcmread(path)
    ds.PixelData = (np.frombuffer(ds.PixelData, dtype=np.int16) ^ 0x5A5A).astype(np.int16).tobytes()
    b_path = tmp_path / "b.dcm"
    ds.save_as(b_path, enforce_file_format=True)
    b = b_path.read_bytes()
    assert len(a) == len(b) and a != b
    sop = str(ds.SOPInstanceUID)
    stop = threading.Event()

    def rewrite() -> None:
        n = 0
        while not stop.is_set():
            with open(path, "wb", buffering=0) as f:  # as cp or a scanner's export does
                version = (b, a)[n % 2]
                for i in range(0, len(version), 1 << 20):
                    f.write(version[i : i + (1 << 20)])
            n += 1
            time.sleep(0.002)

    db = Database(tmp_path / "db")
    writer = threading.Thread(target=rewrite)
    writer.start()
    stored, reported = 0, 0
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and stored < 60:
            report = db.import_paths([path], force=True, on_duplicate="replace")
            if report.added or report.replaced:
                data = stored_bytes(db, sop)
                assert data in (a, b), "a torn copy was stored"
                assert db.instance(sop).size == len(data)
                stored += 1
            else:
                # caught between the truncation and the writes, or changing under the copy
                assert report.skipped[0].reason.startswith(
                    ("changed while being read", "empty file", "truncated")
                ), report.skipped
                reported += 1
    finally:
        stop.set()
        writer.join()
    assert stored >= 5, (stored, reported)
    db.close()


def test_unreadable_folder_is_reported(tmp_path):
    series = make_series(tmp_path / "in" / "ok", n=2, seed=10)
    locked = tmp_path / "in" / "locked"
    make_series(locked, n=2, seed=11)
    os.chmod(locked, 0)
    try:
        command = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(tmp_path / "db"), "import",
                   str(tmp_path / "in"), "--json"]  # fmt: skip
        if os.geteuid() == 0:  # root reads everything: drop the capabilities that allow it
            command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    finally:
        os.chmod(locked, 0o755)
    assert result.returncode == 1, result.stderr  # partial: stored what it could read, said what not
    report = json.loads(result.stdout)
    assert report["added"] == len(series.files)
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert str(locked) in reasons and reasons[str(locked)].startswith("cannot read folder"), reasons


WRITER = """
import os, signal, sys
from DICOMPlusLib.database import Database
db = Database(sys.argv[1])
fd, path = db.store.temporary_file()
os.write(fd, b"half an instance")
folder = db.store.incoming_dir()
open(db.store.temporary_name(folder), "wb").write(b"half a copy")
print(path, flush=True)
if sys.argv[2] == "die":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.readline()
"""


def _writer(db_dir: Path, mode: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(db_dir), mode], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip


def test_leftovers_of_a_killed_writer_are_swept_on_open(tmp_path):
    db_dir = tmp_path / "db"
    proc = _writer(db_dir, "die")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    store = db_dir / "store"
    assert len(temporaries(store)) == 2
    db = Database(db_dir)  # any open by a writer sweeps
    assert temporaries(store) == []
    assert not list(store.glob(".writer-*.lock"))
    db.close()


KILLED_IMPORT = """
import os, signal, sys
from DICOMPlusLib.database import Database, indexer

copied = []


def copy_then_die(fd, size, tmp):  # SIGKILL in the middle of the copies, as `kill -9` would
    real_copy(fd, size, tmp)
    copied.append(tmp)
    if len(copied) == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)


real_copy, indexer.copy_into = indexer.copy_into, copy_then_die
Database(sys.argv[1]).import_paths([sys.argv[2]], jobs=2)
"""


def test_an_import_killed_mid_way_leaves_no_temporary_after_the_next_open(tmp_path):
    """Two copying threads, killed in the middle of their copies: the sweep of the next open
    finds the copies in the store's ``.incoming`` and removes them all."""
    series = make_series(tmp_path / "in", n=150, seed=21)
    db_dir = tmp_path / "db"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    command = [sys.executable, "-c", KILLED_IMPORT, str(db_dir), str(series.folder), "120"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    store = db_dir / "store"
    left = temporaries(store)
    assert left and all(p.parent == store / ".incoming" and p.is_file() for p in left), left
    db = Database(db_dir)  # any open by a writer sweeps
    assert temporaries(store) == []
    assert not list(store.glob(".writer-*.lock"))
    assert db.info()["instances"] == 0  # killed before its first commit (480 files a batch)
    assert not [p for p in store.rglob("*.dcm")]  # nothing moved into place without its row
    db.close()


def test_a_live_writers_temporaries_are_kept_until_it_dies(tmp_path):
    db_dir = tmp_path / "db"
    proc = _writer(db_dir, "wait")
    try:
        path = proc.stdout.readline().strip()
        store = db_dir / "store"
        assert Path(path) in temporaries(store)
        Database(db_dir).close()
        assert len(temporaries(store)) == 2  # its lock says it is alive: nothing swept
        proc.kill()
        proc.wait(30)
        Database(db_dir).close()
        assert temporaries(store) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_import_leaves_no_temporaries_and_parse_path_still_reads_whole_files(tmp_path):
    series = make_series(tmp_path / "in", n=3, seed=12)
    db = Database(tmp_path / "db")
    db.import_paths([series.folder])
    assert temporaries(db.store.root) == []
    parsed = parse_path(str(series.files[0]), keep_data=True)
    assert parsed.data == series.files[0].read_bytes()
    db.close()
    shutil.rmtree(tmp_path / "db")


@pytest.mark.parametrize("without", ["none", "copy_file_range", "copy_file_range+sendfile"])
def test_kernel_copy_falls_back_to_what_the_platform_has(tmp_path, monkeypatch, without):
    from DICOMPlusLib.database import store

    source = tmp_path / "source"
    source.write_bytes(os.urandom(3 << 20) + b"tail")
    if "copy_file_range" in without:
        monkeypatch.delattr(os, "copy_file_range")
    if "sendfile" in without:

        def no_sendfile(*args):
            raise OSError(38, "sendfile not available")

        monkeypatch.setattr(os, "sendfile", no_sendfile)
    fd = os.open(source, os.O_RDONLY)
    try:
        store.copy_into(fd, source.stat().st_size, str(tmp_path / "copy"))
        assert (tmp_path / "copy").read_bytes() == source.read_bytes()
        assert (tmp_path / "copy").stat().st_mode & 0o077 == 0
        with pytest.raises(OSError):  # a source shorter than announced: nothing left behind
            store.copy_into(fd, source.stat().st_size + 10, str(tmp_path / "short"))
        assert not (tmp_path / "short").exists()
    finally:
        os.close(fd)
