"""Slicer Data Bundle of a 256 MiB scene zip: write and extract with DICOMPlus vs copying the file.

Candidates, alternating in one run (reference: ``copy``, the floor: the zip copied with
shutil.copyfile):

* ``write``: ``write_bundle(zip path, out.dcm)``: SHA-256 pass over the zip, the Secondary Capture
  written by pydicom, the zip streamed after it;
* ``extract``: ``extract_bundle(bundle, out.zip)``: the element located by parsing the file,
  streamed out with its SHA-256 verified and the zip structure checked;
* ``stock-read``: stock Slicer's way of getting the zip out (creator string -> size -> seek from
  the end -> read all -> write), no checks, for comparison;
* ``copy``: shutil.copyfile of the zip.

All in this process; outputs are deleted (untimed) before every run. The zip is stored
(uncompressed random bytes) and written once into the work folder.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pydicom

from bench.runner import Benchmark, Candidate

SIZE = 256 * 1024 * 1024


def _zip(work_dir: Path) -> Path:
    path = work_dir / "scene.mrb"
    if path.is_file() and path.stat().st_size > SIZE:
        return path
    chunk = os.urandom(4 * 1024 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("Scene/Scene.mrml", "<MRML></MRML>\n")
        with z.open("Scene/Data/volume.nrrd", "w", force_zip64=True) as member:
            for _ in range(SIZE // len(chunk)):
                member.write(chunk)
    return path


def _remove(*paths: Path):
    def run() -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    return run


def benchmark(work_dir: Path) -> Benchmark:
    from DICOMPlusLib.bundle import extract_bundle, read_bundle_info, write_bundle

    work_dir.mkdir(parents=True, exist_ok=True)
    source = _zip(work_dir)
    bundle = work_dir / "bundle.dcm"
    bundle.unlink(missing_ok=True)
    write_bundle(source, bundle)
    assert read_bundle_info(bundle).zip_size == source.stat().st_size
    written, extracted, stock, copied = (work_dir / n for n in ("w.dcm", "x.zip", "s.zip", "c.zip"))

    def write() -> None:
        write_bundle(source, written)

    def extract() -> None:
        extract_bundle(bundle, extracted)

    def stock_read() -> None:
        creator = str(pydicom.dcmread(bundle, defer_size=1024)[0xCADB, 0x0010].value)
        size = int(creator.split(" ")[2])
        with open(bundle, "rb") as f:
            f.seek(-(size + size % 2), os.SEEK_END)
            data = f.read(size)
        stock.write_bytes(data)

    def copy() -> None:
        shutil.copyfile(source, copied)

    def cleanup() -> None:
        _remove(bundle, written, extracted, stock, copied)()

    return Benchmark(
        name="bundle",
        description=f"Data Bundle of a {source.stat().st_size / 2**20:.0f} MiB zip: write, extract, vs a copy",
        candidates=[
            Candidate("copy", function=copy, before=_remove(copied), label="shutil.copyfile of the zip"),
            Candidate("write", function=write, before=_remove(written), label="write_bundle(zip path)"),
            Candidate(
                "extract",
                function=extract,
                before=_remove(extracted),
                label="extract_bundle (SHA-256 verified)",
            ),
            Candidate(
                "stock-read",
                function=stock_read,
                before=_remove(stock),
                label="stock Slicer's seek-from-the-end read, no checks",
            ),
        ],
        reference="copy",
        work={"MB": source.stat().st_size / 1e6},
        cleanup=cleanup,
    )
