"""Export a 512x512x300 volume as a DICOM series: DICOMPlus (pydicom) vs SimpleITK/GDCM vs the floor.

Candidates, alternating in one run (reference: SimpleITK, the ITK/GDCM path stock Slicer's
CreateDICOMSeries CLI takes):

* ``simpleitk``: one ImageFileWriter call per slice with the per-slice tags (position,
  orientation, spacing, UIDs, instance number), as SimpleITK's "DICOM series from array" example
  does, int16, in this process;
* ``dicomplus-ct``: ``export_volume(int16 volume, CT)``: 300 CT Image Storage files with every
  mandatory module, in this process;
* ``dicomplus-ct-float``: the same volume as float32, so a rescale is planned (one pass) and the
  values quantised;
* ``dicomplus-sc``: the int16 volume as one multi-frame secondary capture with functional groups;
* ``floor``: write 300 files of the same pixel bytes (no header), in this process.

Every candidate writes into an emptied folder (emptying is not timed). Before timing, the
DICOMPlus CT output is read back with SimpleITK and compared with the volume (stderr).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from bench.runner import Benchmark, Candidate

N, ROWS, COLS = 300, 512, 512


def _volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    volume = rng.integers(-1024, 3000, size=(N, ROWS, COLS), dtype=np.int16)
    matrix = np.eye(4)
    matrix[:3, :3] = np.diag([0.7, 0.7, 1.25])
    matrix[:3, 3] = [-179.0, -179.0, -200.0]
    return volume, matrix


def _empty(folder: Path):
    def run() -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

    return run


def _simpleitk_writer(volume: np.ndarray, matrix: np.ndarray, folder: Path):
    import SimpleITK as sitk

    from DICOMPlusLib.export.uids import new_uid

    def write() -> None:
        image = sitk.GetImageFromArray(volume)
        image.SetSpacing([float(np.linalg.norm(matrix[:3, c])) for c in range(3)])
        image.SetOrigin(matrix[:3, 3].tolist())
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        study, series, frame = new_uid(), new_uid(), new_uid()
        direction = image.GetDirection()
        orientation = "\\".join(str(v) for v in (*direction[0::3], *direction[1::3]))
        for k in range(image.GetDepth()):
            plane = image[:, :, k]
            position = image.TransformIndexToPhysicalPoint((0, 0, k))
            for tag, value in (
                ("0008|0060", "CT"),
                ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"),
                ("0008|0018", new_uid()),
                ("0020|000d", study),
                ("0020|000e", series),
                ("0020|0052", frame),
                ("0020|0013", str(k + 1)),
                ("0020|0032", "\\".join(map(str, position))),
                ("0020|0037", orientation),
                ("0028|0030", f"{image.GetSpacing()[1]}\\{image.GetSpacing()[0]}"),
                ("0018|0050", str(image.GetSpacing()[2])),
            ):
                plane.SetMetaData(tag, value)
            writer.SetFileName(str(folder / f"IMG{k + 1:05d}.dcm"))
            writer.Execute(plane)

    return write


def _check(volume: np.ndarray, matrix: np.ndarray, folder: Path) -> None:
    import SimpleITK as sitk

    from DICOMPlusLib.export.series import SeriesMetadata, export_volume

    _empty(folder)()
    export_volume(volume, matrix, folder, metadata=SeriesMetadata(modality="CT"))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    same = np.array_equal(sitk.GetArrayViewFromImage(image), volume)
    origin = np.allclose(image.GetOrigin(), matrix[:3, 3])
    print(
        f"export: check with SimpleITK: voxels {'identical' if same else 'DIFFERENT'}, origin "
        f"{'identical' if origin else 'DIFFERENT'}",
        file=sys.stderr,
    )


def benchmark(work_dir: Path) -> Benchmark:
    from DICOMPlusLib.export.series import SeriesMetadata, export_volume

    work_dir.mkdir(parents=True, exist_ok=True)
    volume, matrix = _volume()
    floats = volume.astype(np.float32) * np.float32(0.5)
    folders = {name: work_dir / name for name in ("simpleitk", "ct", "ct_float", "sc", "floor")}
    _check(volume, matrix, folders["ct"])

    def dicomplus_ct() -> None:
        export_volume(volume, matrix, folders["ct"], metadata=SeriesMetadata(modality="CT"))

    def dicomplus_float() -> None:
        result = export_volume(floats, matrix, folders["ct_float"], metadata=SeriesMetadata(modality="CT"))
        assert not result.encoding.exact  # halves of integers: quantised with a rescale

    def dicomplus_sc() -> None:
        export_volume(volume, matrix, folders["sc"], metadata=SeriesMetadata(modality="OT"))

    def floor() -> None:
        for k in range(N):
            with open(folders["floor"] / f"IMG{k + 1:05d}.raw", "wb") as f:
                f.write(volume[k].tobytes())

    def cleanup() -> None:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)

    return Benchmark(
        name="export",
        description=f"write a {COLS}x{ROWS}x{N} int16 volume ({volume.nbytes / 1e6:.1f} MB) as a DICOM series",
        candidates=[
            Candidate(
                "simpleitk",
                function=_simpleitk_writer(volume, matrix, folders["simpleitk"]),
                before=_empty(folders["simpleitk"]),
                label="SimpleITK/GDCM ImageFileWriter per slice with tags, in process",
            ),
            Candidate(
                "dicomplus-ct",
                function=dicomplus_ct,
                before=_empty(folders["ct"]),
                label="export_volume(int16, CT): 300 files, in process",
            ),
            Candidate(
                "dicomplus-ct-float",
                function=dicomplus_float,
                before=_empty(folders["ct_float"]),
                label="export_volume(float32, CT): rescale planned + quantised, in process",
            ),
            Candidate(
                "dicomplus-sc",
                function=dicomplus_sc,
                before=_empty(folders["sc"]),
                label="export_volume(int16, OT): one multi-frame SC, in process",
            ),
            Candidate(
                "floor",
                function=floor,
                before=_empty(folders["floor"]),
                label="write the pixel bytes as 300 raw files, in process",
            ),
        ],
        reference="simpleitk",
        work={"files": N, "MB": volume.nbytes / 1e6},
        cleanup=cleanup,
    )
