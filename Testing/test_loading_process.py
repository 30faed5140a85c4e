"""A folder load as a process (issue 19): what it imports, when it queues its reads, what it
holds. Asserted on mechanism (modules, calls, traced bytes), never on the time; the figures are
in docs/performance.md (``python -m bench load``)."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib.errors import LoadError
from DICOMPlusLib.loading import geometry, pixels, plan_folder, prefetch
from DICOMPlusLib.loading.pixels import read_pixels

#: Run in a fresh interpreter: records every posix_fadvise call with whether numpy was already
#: imported at that moment, loads the folder, then lists the modules the load imported.
CHILD = """
import json, os, sys
import threading, time
# A busy machine: the prefetch thread's first system call comes late (its core is taken, or its
# disk is slow). Without the load's wait for the first advice, the main thread went on and
# began importing numpy first (seen in a fresh-clone CI run at load 4).
late = float(os.environ.get("DICOMPLUS_TEST_LATE", "0"))
real_open = os.open
def slow_open(path, flags, *args, **kwargs):
    global late
    if late and threading.current_thread().name == "dicomplus-prefetch":
        time.sleep(late)
        late = 0
    return real_open(path, flags, *args, **kwargs)
os.open = slow_open
calls = []
real = os.posix_fadvise
def advise(fd, offset, length, advice):
    calls.append([os.path.basename(os.readlink(f"/proc/self/fd/{fd}")), length, advice,
                  "numpy" in sys.modules])
    return real(fd, offset, length, advice)
os.posix_fadvise = advise
if os.environ.get("DICOMPLUS_TEST_COLD"):  # every file reads as not cached (the probe's EAGAIN)
    def preadv(fd, buffers, offset, flags=0):
        if flags & os.RWF_NOWAIT:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_preadv(fd, buffers, offset, flags)
    real_preadv = os.preadv
    os.preadv = preadv
from DICOMPlusLib.loading import load_folder
(volume,) = load_folder(sys.argv[1])
print(json.dumps({"calls": calls, "shape": list(volume.array.shape), "modules": sorted(sys.modules)}))
"""


@pytest.mark.skipif(
    not hasattr(os, "posix_fadvise") or not os.path.isdir("/proc/self/fd"), reason="Linux only"
)
@pytest.mark.parametrize("late", ["0", "0.01"], ids=["prompt", "prefetch-thread-late"])
def test_a_folder_load_queues_every_read_before_importing_numpy(tmp_path, late):
    """Every file is asked for (WILLNEED, whole file), from before numpy and the loader are
    imported, so a cold folder is read by the disk while the process imports; and the load imports
    neither pydicom nor numpy.ma (``np.median`` imports it: 12 ms and 0.5 MB for one median) nor
    the segmentation loader."""
    series = make_series(tmp_path / "s", n=6, rows=16, cols=16)
    (series.folder / "notes.txt").write_text("not DICOM\n")
    for path in series.folder.iterdir():  # cold: a cached file is not advised (see the next test)
        _evict(path)
    # ... and the probe is told so: on a busy machine a page evicted above could be back in the
    # cache when the child probes it (two fresh-clone CI runs found files skipped as cached)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), DICOMPLUS_TEST_COLD="1", DICOMPLUS_TEST_LATE=late)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(series.folder)], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=env, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["shape"] == [6, 16, 16]
    names = sorted(os.listdir(series.folder))
    assert [c[0] for c in result["calls"]] == names  # each file once, in the load's order
    assert all(c[2] == os.POSIX_FADV_WILLNEED for c in result["calls"])
    assert [c[1] for c in result["calls"]] == [(series.folder / n).stat().st_size for n in names]
    # The advice is given on a thread while the main one imports (folder.py): it starts before
    # numpy is imported; the last files may be advised while numpy's import runs.
    assert not result["calls"][0][3], "numpy was imported before the first read was queued"
    modules = set(result["modules"])
    assert "numpy" in modules and "DICOMPlusLib.loading.api" in modules  # the listing is real
    assert not {m for m in modules if m.split(".")[0] == "pydicom" or m.split(".")[:2] == ["numpy", "ma"]}
    assert "DICOMPlusLib.loading.seg" not in modules  # only a series with a SEG in it needs it
    assert "DICOMPlusLib.loading.unindexed" not in modules  # notes.txt is no Part 10 file: no image
    # the pixels' reader threads are plain threads: concurrent.futures (with queue, heapq) is ~2 ms
    assert not {m for m in modules if m.split(".")[0] == "concurrent"}


def _evict(path) -> None:
    """Drop a file's pages from the page cache (written back first: dirty pages stay), until
    mincore(2) finds none of them resident: on a busy machine one DONTNEED can leave a page (a
    fresh-clone CI run once found the first file cached, and the prefetch rightly skipped it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(50):
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if not _resident(fd):
                return
            time.sleep(0.02)
        raise AssertionError(f"{path} stays in the page cache: the test cannot make it cold")
    finally:
        os.close(fd)


def _resident(fd: int, last_page_only: bool = False, size: int | None = None) -> bool:
    """Whether any page of the file (``last_page_only``: its last page) is in the page cache:
    mincore(2) on a mapping never touched, so the check reads nothing and starts no readahead."""
    size = os.fstat(fd).st_size if size is None else size
    if not size:
        return False
    with mmap.mmap(fd, size, access=mmap.ACCESS_COPY) as mapped:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        address = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        resident = bool(vec[pages - 1] & 1) if last_page_only else any(v & 1 for v in vec)
        del address  # the buffer export ends before the mapping closes
        return resident


def _files(folder, count: int, size: int) -> list[str]:
    files = []
    for i in range(count):
        path = folder / f"f{i}"
        path.write_bytes(b"x" * size)
        files.append(str(path))
    return files


def test_prefetch_stops_at_its_budget(tmp_path, monkeypatch):
    """A folder larger than the budget is asked for only up to it: the page cache is not flooded."""
    files = _files(tmp_path, 5, 1000)
    calls = []
    monkeypatch.setattr(
        os, "posix_fadvise", lambda fd, offset, length, advice: calls.append(length), raising=False
    )
    monkeypatch.delattr(os, "RWF_NOWAIT", raising=False)  # no cache probe: every file is advised
    prefetch.prefetch([str(tmp_path / "missing"), *files], budget=2500)
    assert calls == [1000, 1000, 500]  # an unreadable file is left to the load to report


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT") or not os.path.isdir("/proc/self/fd"), reason="Linux only")
def test_prefetch_skips_files_already_cached(tmp_path, monkeypatch):
    """A warm folder costs no advice: only the files whose last page is not cached are advised.

    What is cached is measured with mincore(2) at the moment the prefetch probes each file (in
    the ``fstat`` just before its probe), not assumed from the set-up: a run under heavy I/O once
    failed with the set-up assumed. mincore on a mapping never touched reads nothing and starts
    no readahead; an RWF_NOWAIT read, the prefetch's own probe, starts the readahead of the page
    it asks about, so it cannot be the test's check too. The set-up is retried until the measure
    finds it (files 1 and 3 cold, 0 and 2 warm); the prefetch must then advise exactly the cold."""
    files = _files(tmp_path, 4, 64 * 1024)
    real_fstat = os.fstat
    resident, calls = {}, []

    def fstat(fd):
        stat = real_fstat(fd)
        resident[os.readlink(f"/proc/self/fd/{fd}")] = _resident(fd, True, stat.st_size)
        return stat

    def advise(fd, offset, length, advice):
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))

    for _attempt in range(5):
        for path in files[1::2]:
            _evict(path)
        for path in files[0::2]:  # warm, whole: read them (a written page may have been evicted)
            with open(path, "rb") as f:
                f.read()
        resident.clear()
        calls.clear()
        monkeypatch.setattr(os, "fstat", fstat)
        monkeypatch.setattr(os, "posix_fadvise", advise)
        prefetch.prefetch(files)
        monkeypatch.undo()
        assert sorted(resident) == files  # each file was probed, and measured just before
        if [resident[path] for path in files] == [True, False, True, False]:
            break
    else:
        raise AssertionError(f"the test could not make files 1 and 3 cold, 0 and 2 warm: {resident}")
    # A warm file costs no advice; a cold one is advised, unless the probe's own read brought its
    # last page in: an RWF_NOWAIT read of an uncached page starts the kernel's readahead, and on a
    # fast disk the page can be read before the kernel looks again (a fresh-clone CI run saw both
    # cold files found cached so). Then that page is cached after the prefetch, which is checked.
    assert not [path for path in calls if resident[path]], (calls, resident)
    for path in files:
        if not resident[path] and path not in calls:
            fd = os.open(path, os.O_RDONLY)
            try:
                assert _resident(fd, True), f"{path}: cold, not advised, and its last page not read"
            finally:
                os.close(fd)
    assert calls == [path for path in files if path in calls]  # in the folder's order, once each


def test_files_of_lists_folders_in_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    for name in ("b/2", "b/1", "a/9", "z", "c"):
        (tmp_path / name).write_text("")
    expected = [str(tmp_path / n) for n in ("c", "z", "a/9", "b/1", "b/2")]
    assert prefetch.files_of([tmp_path]) == expected
    assert prefetch.files_of([tmp_path / "z", str(tmp_path / "a")]) == [
        str(tmp_path / "z"),
        str(tmp_path / "a/9"),
    ]
    with pytest.raises(LoadError, match="does not exist"):
        prefetch.files_of([tmp_path / "nothing"])


def test_median_is_numpys():
    """The spacing's nominal gap is the median numpy would give (even counts: mean of the middle two)."""
    rng = random.Random(19)
    for n in range(1, 40):
        values = sorted(rng.uniform(0.1, 5.0) for _ in range(n))
        assert geometry._median(values) == float(np.median(values)), values


def test_a_large_volume_gives_the_free_heap_back_first(tmp_path, monkeypatch):
    """Before a volume of _TRIM_BYTES or more is allocated, the heap's free pages are released
    (they would otherwise count in the peak next to the volume), and the volume gets its own
    mapping (see pixels._volume_array); a small one pays for neither."""
    series = make_series(tmp_path / "s", n=4, rows=16, cols=16)
    (info,) = plan_folder(series.folder)
    calls = []
    monkeypatch.setattr(pixels, "release_free_heap", lambda: calls.append(1))
    read_pixels(info)
    assert calls == []
    monkeypatch.setattr(pixels, "_TRIM_BYTES", 4 * 16 * 16 * 2)
    array = read_pixels(info)
    assert calls == [1]
    assert np.array_equal(array, series.pixels - 1024)
    if sys.platform.startswith("linux"):  # its own anonymous mapping: 4 KiB pages, not numpy's huge pages
        base = array
        while isinstance(base, np.ndarray):
            base = base.base
        assert isinstance(getattr(base, "obj", base), mmap.mmap)  # numpy holds it through a memoryview


#: A fresh interpreter: every open and positioned read of the series' files while a warm folder loads.
READS_CHILD = """
import builtins, io, json, os, sys
folder = sys.argv[1]
log = []
def wrap(name, real, path_of):
    def call(*args, **kwargs):
        result = real(*args, **kwargs)
        path = path_of(args, result)
        if path.endswith(".dcm"):
            size = sum(len(b) for b in args[1]) if name == "preadv" else args[1] if name == "pread" else 0
            log.append([name, os.path.basename(path), size])
        return result
    return call
os.open = wrap("open", os.open, lambda a, r: str(a[0]))
os.pread = wrap("pread", os.pread, lambda a, r: os.readlink(f"/proc/self/fd/{a[0]}"))
os.preadv = wrap("preadv", os.preadv, lambda a, r: os.readlink(f"/proc/self/fd/{a[0]}"))
builtins.open = io.open = wrap("file", io.open, lambda a, r: str(a[0]))
from DICOMPlusLib.loading import load_folder
(volume,) = load_folder(folder)
print(json.dumps(log))
"""


@pytest.mark.skipif(not hasattr(os, "preadv") or not os.path.isdir("/proc/self/fd"), reason="Linux only")
def test_a_warm_folder_load_reads_each_file_once_for_its_header_and_once_for_its_pixels(tmp_path):
    """Per file of a warm series: one open and one ``pread`` of the header, one open and one
    ``preadv`` of the pixel data straight into the volume (no file object: 3 system calls a
    slice, not 5), besides the prefetch's one-byte probe of each file."""
    n = 12
    series = make_series(tmp_path / "s", n=n, rows=16, cols=16)
    proc = subprocess.run([sys.executable, "-c", READS_CHILD, str(series.folder)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    log = json.loads(proc.stdout)
    names = sorted(p.name for p in series.folder.glob("*.dcm"))
    assert not [entry for entry in log if entry[0] == "file"]
    probes = [entry for entry in log if entry[0] == "preadv" and entry[2] == 1]
    assert sorted(p[1] for p in probes) == names
    for name in names:
        mine = [entry[0] for entry in log if entry[1] == name and entry not in probes]
        assert mine.count("pread") == 1 and mine.count("preadv") == 1, (name, mine)
        assert mine.count("open") == 3, (name, mine)  # the probe's, the header's, the pixels'
    assert sorted(entry[2] for entry in log if entry[0] == "preadv" and entry[2] > 1) == [16 * 16 * 2] * n


#: A fresh interpreter: the value OpenBLAS finds in the environment when numpy is imported (an
#: audit hook sees the import start), and what the environment holds after the loader's import.
BLAS_CHILD = """
import ctypes, json, os, sys
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p
seen = []
def hook(event, args):
    if event == "import" and args[0] == "numpy" and not seen:
        seen.append(libc.getenv(b"OPENBLAS_THREAD_TIMEOUT"))
sys.addaudithook(hook)
import DICOMPlusLib.loading.api
print(json.dumps({"during": [v and v.decode() for v in seen],
                  "after": libc.getenv(b"OPENBLAS_THREAD_TIMEOUT") and "set",
                  "environ": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}))
"""


@pytest.mark.skipif(not hasattr(os, "unsetenv"), reason="needs os.unsetenv")
@pytest.mark.parametrize("preset", [None, "9"], ids=["default", "user-set"])
def test_numpy_is_imported_with_openblas_threads_that_sleep_at_once(preset):
    """The loader imports numpy with OPENBLAS_THREAD_TIMEOUT=4 in the C environment (OpenBLAS's
    workers then sleep instead of spinning ~0.1 s on the cores the load's threads need), removes it
    afterwards (child processes do not inherit it) and leaves a value the user set alone."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if preset:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    proc = subprocess.run([sys.executable, "-c", BLAS_CHILD], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    if preset:
        assert result == {"during": [preset], "after": "set", "environ": preset}
    else:
        assert result == {"during": ["4"], "after": None, "environ": None}
