"""Load a 512x512x300 int16 CT series into a volume: DICOMPlus vs SimpleITK vs dcm2niix vs the floor.

Candidates, alternating in one run (reference: SimpleITK's ImageSeriesReader):

* ``simpleitk``: GetGDCMSeriesFileNames + ImageSeriesReader.Execute, in this process;
* ``dicomplus``: ``load_series(db, uid)``: geometry from the database's stored headers, pixels read
  at the stored offsets into one int16 array (rescale applied), in this process;
* ``dicomplus-folder``: ``load_folder(folder)``: the same without a database (headers scanned);
* ``dcm2niix``: ``dcm2niix -z n -b n`` to an uncompressed NIfTI (its "time to a volume" includes
  writing it), a child process;
* ``floor``: read every byte of the 300 files (page cache), in this process;
* ``dicomplus-process`` / ``simpleitk-process``: the same loads in a fresh interpreter (start-up,
  imports and load, as a user's command pays them), with their peak resident memory;
* ``dicomplus-folder-process``: ``load_folder`` in a fresh interpreter, compared with
  ``simpleitk-process`` (both read the folder);
* ``dicomplus-folder-cold`` / ``simpleitk-cold``: the two processes after the files' pages were
  evicted from the page cache (``posix_fadvise(DONTNEED)``), compared with each other;
* ``floor-process``: the least a numpy loader of this folder does as a process (python, numpy
  imported as the loader imports it, the volume mapped as the loader maps it, each slice's pixel
  data read at an offset listed beforehand, on two threads, the rescale in place; no header
  read, nothing of DICOMPlusLib imported), compared with ``simpleitk-process`` and with ``dicomplus-folder-process``: the
  same voxels (checked before timing), without the loader's own work.

Before timing, it checks that DICOMPlus and SimpleITK give the same voxels and geometry, and
prints the memory figures to stderr: the peak RSS of a child that loads the volume from the
database and of one that loads the folder, of children that only import the same modules, of a
child that only imports numpy (python + numpy: the floor under any numpy volume), and the
volume's bytes.

Every process candidate runs its package as installed: DICOMPlusLib's bytecode is compiled
first (``compileall``, as pip does at install time; SimpleITK's is in site-packages already).
Without that, a checkout run with ``PYTHONDONTWRITEBYTECODE`` compiles ~20 modules from source
in every DICOMPlus child, which no installed copy does.
"""

from __future__ import annotations

import compileall
import os
import shutil
import sys
from pathlib import Path

from bench.floor import read_all
from bench.runner import Benchmark, Candidate, measure_command, python_command

REPO = Path(__file__).resolve().parents[1]
N, ROWS, COLS = 300, 512, 512

DICOMPLUS_CHILD = """
import sys
from DICOMPlusLib.database import Database
from DICOMPlusLib.loading import load_series
db = Database(sys.argv[1])
{body}
"""
LOAD_BODY = "(v,) = load_series(db, sys.argv[2]); assert v.array.shape == (300, 512, 512), v.array.shape"
FOLDER_CHILD = """
import sys
from DICOMPlusLib.loading import load_folder
(v,) = load_folder(sys.argv[1])
assert v.array.shape == (300, 512, 512), v.array.shape
"""
#: The least a numpy loader of this folder does as a process: start python, import numpy, map
#: the volume in 4 KiB pages as the loader does (``pixels._volume_array``), read each slice's
#: pixel data at its offset (known beforehand: listed by the parent, in geometric order, with
#: the rescale intercept) straight into it on two threads, apply the rescale in place, exit. No
#: header is read or parsed and nothing of DICOMPlusLib is imported: what is left of a load once
#: its own work is taken away. numpy is imported as the loader imports it (see
#: ``DICOMPlusLib/_numpy.py``: OpenBLAS's idle workers sleep at once, not spinning on a core).
FLOOR_CHILD = """
import mmap, os, sys, threading
os.putenv("OPENBLAS_THREAD_TIMEOUT", "4")
import numpy as np
os.unsetenv("OPENBLAS_THREAD_TIMEOUT")
lines = open(sys.argv[1]).read().split("\\n")
rows, cols, intercept = map(int, lines[0].split())
slices = [line.split(" ", 1) for line in lines[1:] if line]
size = rows * cols * 2
memory = mmap.mmap(-1, len(slices) * size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
volume = np.frombuffer(memory, np.int16).reshape(len(slices), rows, cols)
def read(first):
    for i in range(first, len(slices), 2):
        offset, path = slices[i]
        with open(path, "rb", buffering=0) as f:
            f.seek(int(offset))
            assert f.readinto(volume[i].data.cast("B")) == size
        u = volume[i].view(np.uint16)
        np.add(u, np.uint16(intercept % 65536), out=u)
threads = [threading.Thread(target=read, args=(k,)) for k in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert volume.shape == (300, 512, 512), volume.shape
"""
SITK_CHILD = """
import sys
import SimpleITK as sitk
{body}
"""
SITK_BODY = (
    "r = sitk.ImageSeriesReader(); r.SetFileNames(r.GetGDCMSeriesFileNames(sys.argv[1])); "
    "image = r.Execute(); assert image.GetSize() == (512, 512, 300)"
)


def _series(work_dir: Path) -> tuple[Path, str]:
    folder = work_dir / "ct300"
    marker = folder / ".series_uid"
    if marker.is_file() and len(list(folder.glob("*.dcm"))) == N:
        return folder, marker.read_text().strip()
    shutil.rmtree(folder, ignore_errors=True)
    sys.path.insert(0, str(REPO / "Testing"))
    from dicomplus_testing.synthetic import make_series

    series = make_series(folder, n=N, rows=ROWS, cols=COLS)
    marker.write_text(series.series_uid)
    return folder, series.series_uid


def _database(work_dir: Path, folder: Path, uid: str):
    from DICOMPlusLib.database import Database

    db = Database(work_dir / "db")
    if len(db.instances(uid)) != N:
        db.import_paths([str(folder)], link=True)
    return db


def _check(db, uid: str, folder: Path) -> None:
    import numpy as np
    import SimpleITK as sitk

    from DICOMPlusLib.loading import load_series

    (v,) = load_series(db, uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    same_voxels = np.array_equal(sitk.GetArrayViewFromImage(image), v.array)
    direction = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    same_geometry = np.allclose(direction, v.ijk_to_lps[:3, :3], atol=1e-6) and np.allclose(
        image.GetOrigin(), v.ijk_to_lps[:3, 3], atol=1e-6
    )
    print(
        f"load: check vs SimpleITK: voxels {'identical' if same_voxels else 'DIFFERENT'}, geometry "
        f"{'identical' if same_geometry else 'DIFFERENT'}; DICOMPlus dtype {v.array.dtype}, SimpleITK "
        f"{image.GetPixelIDTypeAsString()}",
        file=sys.stderr,
    )


def _floor_list(folder: Path, work_dir: Path) -> Path:
    """The slices' pixel offsets in geometric order, for :data:`FLOOR_CHILD` (from the loader's plan)."""
    from DICOMPlusLib.loading import plan_folder

    (info,) = plan_folder(folder)
    f0 = info.frames[0]
    assert all(f.rescale_slope == 1 and f.rescale_intercept == f0.rescale_intercept for f in info.frames)
    listing = work_dir / "floor_slices.txt"
    lines = [f"{f0.rows} {f0.columns} {int(f0.rescale_intercept)}"]
    lines += [f"{f.pixel_offset} {f.path}" for f in info.frames]
    listing.write_text("\n".join(lines) + "\n")
    return listing


def _check_floor(folder: Path, listing: Path) -> None:
    """The floor child's volume has the loader's voxels (a digest of each, compared)."""
    import hashlib
    import subprocess

    from DICOMPlusLib.loading import load_folder

    digest = "\nimport hashlib\nprint(hashlib.sha256(volume.data).hexdigest())\n"
    child = subprocess.run(
        python_command(FLOOR_CHILD + digest, str(listing)),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    (v,) = load_folder(folder)
    same = child.stdout.strip() == hashlib.sha256(v.array.data).hexdigest()
    print(
        f"load: check floor-process vs load_folder: voxels {'identical' if same else 'DIFFERENT'}",
        file=sys.stderr,
    )


def _memory(db_path: Path, uid: str, folder: Path, volume_bytes: int) -> None:
    def peak(code: str, *args: str) -> float:
        runs = [measure_command(python_command(code, *args), cwd=REPO).max_rss_kib for _ in range(5)]
        return sorted(runs)[2] * 1024.0

    mib = 1024.0 * 1024.0

    def line(name: str, loaded: float, imported: float) -> str:
        return (
            f"{name} peak RSS {loaded / mib:.1f} MiB = {loaded / volume_bytes:.3f}x the volume (imports alone "
            f"{imported / mib:.1f} MiB; above them {(loaded - imported) / volume_bytes:.3f}x)"
        )

    loaded = peak(DICOMPLUS_CHILD.format(body=LOAD_BODY), str(db_path), uid)
    imported = peak(DICOMPLUS_CHILD.format(body="pass"), str(db_path), uid)
    folder_loaded = peak(FOLDER_CHILD, str(folder))
    folder_imported = peak("import DICOMPlusLib.loading.api")
    floor = peak("import numpy")
    sitk_loaded = peak(SITK_CHILD.format(body=SITK_BODY), str(folder))
    sitk_imported = peak(SITK_CHILD.format(body="pass"), str(folder))
    print(
        f"load: memory (median of 5 children): volume {volume_bytes / mib:.1f} MiB; floor (python + numpy) "
        f"{floor / mib:.1f} MiB, {(floor + volume_bytes) / volume_bytes:.3f}x with the volume; "
        + "; ".join(
            (
                line("DICOMPlus from the database", loaded, imported),
                line("DICOMPlus from the folder", folder_loaded, folder_imported),
                line("SimpleITK", sitk_loaded, sitk_imported),
            )
        ),
        file=sys.stderr,
    )


def benchmark(work_dir: Path) -> Benchmark:
    import SimpleITK as sitk

    from DICOMPlusLib.loading import load_folder, load_series

    work_dir.mkdir(parents=True, exist_ok=True)
    compileall.compile_dir(REPO / "DICOMPlusLib", quiet=1)  # as installed (see the module doc)
    folder, uid = _series(work_dir)
    db = _database(work_dir, folder, uid)
    files = sorted(folder.glob("*.dcm"))
    total = sum(p.stat().st_size for p in files)
    volume_bytes = N * ROWS * COLS * 2
    _check(db, uid, folder)
    _memory(db.path, uid, folder, volume_bytes)
    floor_list = _floor_list(folder, work_dir)
    _check_floor(folder, floor_list)
    dcm2niix = str(Path(sys.executable).parent / "dcm2niix")
    out = work_dir / "dcm2niix_out"

    def empty_out() -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()

    def simpleitk() -> None:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        image = reader.Execute()
        assert image.GetSize() == (COLS, ROWS, N)

    def dicomplus() -> None:
        (v,) = load_series(db, uid)
        assert v.array.shape == (N, ROWS, COLS)

    def dicomplus_folder() -> None:
        (v,) = load_folder(folder)
        assert v.array.shape == (N, ROWS, COLS)

    def floor() -> None:
        assert read_all(files) == total

    def evict() -> None:
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

    return Benchmark(
        name="load",
        description=f"{N} CT slices {ROWS}x{COLS} int16 ({total / 1e6:.1f} MB of files) to one volume",
        candidates=[
            Candidate("simpleitk", function=simpleitk, label="SimpleITK ImageSeriesReader, in process"),
            Candidate("dicomplus", function=dicomplus, label="load_series(db, uid), in process"),
            Candidate("dicomplus-folder", function=dicomplus_folder, label="load_folder(folder), in process"),
            Candidate(
                "dcm2niix",
                command=[dcm2niix, "-z", "n", "-b", "n", "-o", str(out), str(folder)],
                before=empty_out,
                label="dcm2niix -z n -b n (writes NIfTI), child process",
            ),
            Candidate("floor", function=floor, label="read the files' bytes (page cache), in process"),
            Candidate(
                "dicomplus-process",
                command=python_command(DICOMPLUS_CHILD.format(body=LOAD_BODY), str(db.path), uid),
                cwd=REPO,
                label="load_series in a fresh python (start-up, imports, load)",
            ),
            Candidate(
                "simpleitk-process",
                command=python_command(SITK_CHILD.format(body=SITK_BODY), str(folder)),
                cwd=REPO,
                label="SimpleITK in a fresh python (start-up, imports, load)",
            ),
            Candidate(
                "dicomplus-folder-process",
                command=python_command(FOLDER_CHILD, str(folder)),
                cwd=REPO,
                label="load_folder in a fresh python (start-up, imports, header scan, load)",
            ),
            Candidate(
                "floor-process",
                command=python_command(FLOOR_CHILD, str(floor_list)),
                cwd=REPO,
                label="python + numpy + the pixel reads alone (offsets given), fresh python",
            ),
            Candidate(
                "simpleitk-cold",
                command=python_command(SITK_CHILD.format(body=SITK_BODY), str(folder)),
                cwd=REPO,
                before=evict,
                label="SimpleITK in a fresh python, files evicted from the page cache",
            ),
            Candidate(
                "dicomplus-folder-cold",
                command=python_command(FOLDER_CHILD, str(folder)),
                cwd=REPO,
                before=evict,
                label="load_folder in a fresh python, files evicted from the page cache",
            ),
        ],
        reference="simpleitk",
        pairs=[
            ("dicomplus-process", "simpleitk-process"),
            ("dicomplus-folder-process", "simpleitk-process"),
            ("floor-process", "simpleitk-process"),
            ("dicomplus-folder-process", "floor-process"),
            ("dicomplus-folder-cold", "simpleitk-cold"),
        ],
        work={"files": N, "MB": total / 1e6},
        cleanup=db.close,
    )
