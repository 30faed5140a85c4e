"""Convert the developer series to NIfTI: ``dicomplus convert`` vs ``dcm2niix``, whole processes.

The input is every series of ../shared/data/series and the diffusion and mosaic series of
../shared/data/series2 (linked file by file into one folder under the work dir, never copied):
plain, tilted and irregular CT, enhanced and compressed MR, 4D fMRI, classic and enhanced DWI of
four vendors, Siemens and UIH mosaics. Candidates, alternating in one run (reference: dcm2niix):

* ``dcm2niix``: ``dcm2niix -z y -b y -o OUT IN``: .nii.gz (gzip level 6), .bval/.bvec, BIDS .json;
* ``dicomplus``: ``python -m DICOMPlusLib.cli convert IN --out OUT``: .nii.gz (gzip level 1, the
  default), .bval/.bvec, .json; a fresh interpreter each time (start-up and imports included);
* ``dicomplus-gz6``: the same with ``--gz-level 6``, dcm2niix's compression level.

Every candidate writes into an emptied folder (emptying is not timed). Before timing, both tools'
outputs are listed (stderr) so that a reader sees they wrote the same volumes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.runner import BenchError, Benchmark, Candidate

REPO = Path(__file__).resolve().parents[1]


def _shared() -> Path:
    env = os.environ.get("DICOMPLUS_TEST_DATA")
    return (Path(env) if env else REPO.parent / "shared" / "data" / "series").parent


def _link_tree(work_dir: Path) -> tuple[Path, int, int]:
    """work_dir/convert_in/<series>/<files>: symbolic links to the developer files."""
    shared = _shared()
    folders = []
    manifest = shared / "series" / "manifest.json"
    if manifest.is_file():
        folders += [shared / "series" / e["folder"] for e in json.loads(manifest.read_text())["series"]]
    manifest2 = shared / "series2" / "manifest.json"
    if manifest2.is_file():
        for entry in json.loads(manifest2.read_text())["series"]:
            expected = entry["expected"]
            if expected.get("kind") == "diffusion" or expected.get("mosaic"):
                folders.append(shared / "series2" / entry["folder"])
    if not folders:
        raise BenchError(f"no developer series under {shared} (set DICOMPLUS_TEST_DATA)")
    root = work_dir / "convert_in"
    shutil.rmtree(root, ignore_errors=True)
    files = size = 0
    for folder in folders:
        for dirpath, _dirs, names in os.walk(folder):
            target = root / folder.name / os.path.relpath(dirpath, folder)
            target.mkdir(parents=True, exist_ok=True)
            for name in names:
                source = Path(dirpath) / name
                (target / name).symlink_to(source)
                files += 1
                size += source.stat().st_size
    return root, files, size


def _outputs(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir())
    volumes = [n for n in names if n.endswith((".nii", ".nii.gz"))]
    return f"{len(volumes)} volumes, {sum(n.endswith('.bval') for n in names)} bval, {sum(n.endswith('.json') for n in names)} json"


def benchmark(work_dir: Path) -> Benchmark:
    work_dir.mkdir(parents=True, exist_ok=True)
    source, files, size = _link_tree(work_dir)
    dcm2niix = shutil.which("dcm2niix", path=str(Path(sys.executable).parent)) or shutil.which("dcm2niix")
    if dcm2niix is None:
        raise BenchError("dcm2niix is not installed (pip install dcm2niix)")
    outs = {name: work_dir / f"convert_out_{name}" for name in ("dcm2niix", "dicomplus", "dicomplus-gz6")}

    def emptier(folder: Path):
        def empty() -> None:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)

        return empty

    commands = {
        "dcm2niix": [dcm2niix, "-z", "y", "-b", "y", "-o", str(outs["dcm2niix"]), str(source)],
        "dicomplus": [sys.executable, "-m", "DICOMPlusLib.cli", "convert", str(source), "--out", str(outs["dicomplus"])],
        "dicomplus-gz6": [
            sys.executable, "-m", "DICOMPlusLib.cli", "convert", str(source),
            "--out", str(outs["dicomplus-gz6"]), "--gz-level", "6",
        ],
    }  # fmt: skip
    for name, command in commands.items():
        emptier(outs[name])()
        subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"convert: {name} wrote {_outputs(outs[name])}", file=sys.stderr)
    return Benchmark(
        name="convert",
        description=f"{files} developer DICOM files ({size / 1e6:.1f} MB) to NIfTI + bval/bvec + JSON",
        candidates=[
            Candidate(
                "dcm2niix",
                command=commands["dcm2niix"],
                before=emptier(outs["dcm2niix"]),
                label="dcm2niix -z y -b y (gzip 6), child process",
            ),
            Candidate(
                "dicomplus",
                command=commands["dicomplus"],
                cwd=REPO,
                before=emptier(outs["dicomplus"]),
                label="dicomplus convert (gzip 1), fresh python",
            ),
            Candidate(
                "dicomplus-gz6",
                command=commands["dicomplus-gz6"],
                cwd=REPO,
                before=emptier(outs["dicomplus-gz6"]),
                label="dicomplus convert --gz-level 6, fresh python",
            ),
        ],
        reference="dcm2niix",
        work={"files": files, "MB": size / 1e6},
    )
