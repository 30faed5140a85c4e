"""``dicomplus export``: a NRRD/NIfTI volume becomes a new DICOM series in a chosen study.

    dicomplus export VOLUME.nrrd --study UID [--modality CT|MR|OT] (--out DIR | --send NODE)

The study must be in the database (its stored header gives the patient and study modules).
The volume is read with SimpleITK, whose physical space is LPS like the library's.
Also registers the ``bundle`` commands (:mod:`DICOMPlusLib.cli.bundle`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from DICOMPlusLib.cli.app import UID_ROOT_HELP, ProgressBar, counted, print_json, uid_generator
from DICOMPlusLib.cli.arguments import location, open_database, require_paths, user_path
from DICOMPlusLib.errors import DICOMPlusError, ExportError
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE

if TYPE_CHECKING:
    import numpy as np


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(array [k, j, i], ijk_to_lps)`` of a NRRD, NIfTI or MetaImage file (SimpleITK), with a
    NIfTI's geometry taken from its header (the sform when it is the exact, sheared grid:
    :mod:`DICOMPlusLib.export.nifti`)."""
    return read_volume_with_notes(path)[:2]


def read_volume_with_notes(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """:func:`read_volume` plus what the user should know about the geometry read."""
    import numpy as np
    import SimpleITK as sitk

    from DICOMPlusLib.export import nifti

    # ITK's own warnings go straight to stderr ("WARNING: In /tmp/SimpleITK-build/...
    # itkNiftiImageIO.cxx ... unexpected scales in sform", twice per read of a sheared NIfTI): what
    # matters of them is in the notes below, said once in our words
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ExportError(f"cannot read {path}: {str(exc).strip().splitlines()[-1]}") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ExportError(
            f"{path} has {image.GetNumberOfComponentsPerPixel()} components per voxel; export a scalar volume"
        )
    dimension = image.GetDimension()
    if dimension not in (2, 3):
        raise ExportError(f"{path} is {dimension}D; export a 3D (or 2D) volume")
    array = sitk.GetArrayFromImage(image)
    spacing = np.array(image.GetSpacing(), float)
    direction = np.array(image.GetDirection(), float).reshape(dimension, dimension)
    origin = np.array(image.GetOrigin(), float)
    matrix = np.eye(4)
    matrix[:dimension, :dimension] = direction @ np.diag(spacing)
    matrix[:dimension, 3] = origin
    if dimension == 2:
        array = array[None]
    notes: list[str] = []
    if nifti.is_nifti(path):
        header = nifti.read_header(path)
        chosen, note = nifti.choose_ijk_to_lps(header, path) if header is not None else (None, "")
        if chosen is not None:
            matrix = chosen
        if note:
            notes.append(note)
    return array, matrix, notes


def _send_node(args):
    """The node of ``--send NODE`` (a configured name or AE@HOST:PORT), found before any work:
    a mistyped name is a usage error (exit 2) with nothing exported."""
    try:
        from DICOMPlusLib.network.nodes import NodeStore
    except ImportError:  # pragma: no cover - a build without the network package
        raise DICOMPlusError(
            "--send is not available in this build (no DICOMPlusLib.network); use --out DIR"
        ) from None
    return NodeStore(args.nodes).resolve(args.send)


def _send(args, node, files: list[Path]) -> dict:
    """C-STORE the exported files to the node of ``--send``."""
    from DICOMPlusLib.network.send import SendOptions, send_paths

    bar = ProgressBar("send", not args.json)
    try:
        report = send_paths(
            node, [str(f) for f in files], SendOptions(calling_ae_title=args.calling_ae), progress=bar
        )
    finally:
        bar.close()
    if not report.ok:
        failed = report.failed
        first = f"{failed[0].path}: {failed[0].message}" if failed else "cancelled"
        raise DICOMPlusError(
            f"sending to {node.address} failed for {len(failed)} of "
            f"{counted(len(report.results), 'file', 'files')} ({first}); the series is {'in the database' if args.index else 'not kept'}: "
            "export with --out DIR (or --index) to keep it and send it again"
        )
    return report.to_dict()


def cmd_export(args) -> int:
    from DICOMPlusLib.export.series import SeriesMetadata, export_volume_to_study

    require_paths(args.volume)
    db = open_database(args)  # the database is checked before the volume is read
    node = _send_node(args) if args.send else None
    array, matrix, notes = read_volume_with_notes(args.volume)
    uids = uid_generator(args)
    metadata = SeriesMetadata(
        modality=args.modality,
        series_description=args.description
        if args.description is not None
        else Path(args.volume).name.split(".")[0][:64],
        series_number=args.series_number,
        series_instance_uid=args.series_uid,
        frame_of_reference=args.frame_of_reference,
    )
    temporary = None
    out_dir = args.out
    if out_dir is None:
        temporary = tempfile.mkdtemp(prefix="dicomplus-export-")
        out_dir = temporary
    bar = ProgressBar("export", not args.json)
    try:
        result = export_volume_to_study(
            db,
            args.study,
            array,
            matrix,
            metadata,
            out_dir=out_dir,
            index=args.index,
            uids=uids,
            progress=bar,
        )
        bar.close()
        sent = _send(args, node, list(result.files)) if node is not None else None
    finally:
        bar.close()
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    output = result.to_dict()
    if temporary is not None and not result.indexed:
        output["files"] = []
    if sent is not None:
        output["sent"] = sent
    output["notes"] = [{"code": "nifti_sheared_sform", "message": n} for n in notes] + output["notes"]
    if args.json:
        print_json(output)
    else:
        where = f"to {args.send}" if args.send else f"into {args.out}"
        print(
            f"exported {counted(len(result.sop_uids), f'{result.modality} instance', f'{result.modality} instances')} "
            f"{where}: series "
            f"{result.series_uid} (number {result.series_number}) in study {result.study_uid}"
        )
        if result.indexed:  # --index: the series is in the database too, and can be found there
            print(
                f"  indexed: {counted(len(result.sop_uids), 'instance', 'instances')} added to {location(db)}"
            )
        if not result.encoding.exact:
            print(
                f"  values rescaled: slope {result.encoding.slope}, intercept {result.encoding.intercept}, "
                f"largest error {result.encoding.max_error:.3g}"
            )
        if result.tilt_deg > 1e-3:
            print(f"  slices are sheared by {result.tilt_deg:.3f} degrees (written position by position)")
        for note in output["notes"]:
            print(f"  note: {note['message']}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("export", help="write a NRRD/NIfTI volume as a new DICOM series in a study")
    p.set_defaults(func=cmd_export)
    p.add_argument(
        "volume", metavar="VOLUME", type=user_path, help="a .nrrd, .nhdr, .nii, .nii.gz, .mha or .mhd file"
    )
    p.add_argument(
        "--study", required=True, metavar="UID", help="StudyInstanceUID of a study in the database"
    )
    p.add_argument(
        "--modality",
        type=str.upper,
        default=None,
        help="CT or MR: CT/MR Image Storage; anything else (default OT): a multi-frame secondary capture",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR", type=user_path, help="write the files into this folder")
    target.add_argument("--send", metavar="NODE", help="send the series to this configured node")
    p.add_argument("--index", action="store_true", help="also import the new series into the database")
    p.add_argument(
        "--nodes",
        default=None,
        type=user_path,
        help="node list for --send (default $DICOMPLUS_NODES, else ~/.config/dicomplus/nodes.json)",
    )
    p.add_argument(
        "--calling-ae",
        default=DEFAULT_AE_TITLE,
        help=f"our AE title when sending (default {DEFAULT_AE_TITLE})",
    )
    p.add_argument("--description", default=None, help="SeriesDescription (default: the file name)")
    p.add_argument("--series-number", type=int, default=None, help="default: after the study's last series")
    p.add_argument("--series-uid", default=None, help="SeriesInstanceUID (default: a new one)")
    p.add_argument(
        "--frame-of-reference",
        default="reuse",
        metavar="reuse|new|UID",
        help="reuse the study's frame of reference (default), make a new one, or use this UID",
    )
    p.add_argument(
        "--uid-root",
        default=None,
        help=UID_ROOT_HELP,
    )
    p.add_argument("--json", action="store_true", help="print what was written as JSON")

    from DICOMPlusLib.cli.bundle import add_commands as add_bundle_commands

    add_bundle_commands(sub)
