"""``dicomplus inspect`` and ``dicomplus convert``: volumes of a folder or a database series.

``inspect (PATH... | --series UID) --json`` prints ``{"volumes": [{"series_uid", "dims" ([i, j, k]
or [i, j, k, t]), "spacing", "ijk_to_ras", "ijk_to_lps", "warnings": [{"code", "message"}]}]}``
(the manifest convention: i along the row direction, j along the column direction, k by
increasing position along the normal, origin at the first slice, exact sheared matrices).
``convert (PATH... | --series UID) --out FILE.nrrd|FILE.nii.gz [--resample]`` writes every volume;
several volumes get ``_2``, ``_3``... before the suffix.
"""

from __future__ import annotations

import sys
from pathlib import Path

from DICOMPlusLib.cli import ProgressBar, UsageError, open_database, print_json, require_paths


def _plan(args):
    from DICOMPlusLib.loading.api import plan_paths, plan_series

    if args.series and args.paths:
        raise UsageError("give PATH or --series, not both")
    if args.series:
        return plan_series(open_database(args), args.series)
    if not args.paths:
        raise UsageError("give a PATH (file or folder) or --series UID")
    require_paths(*args.paths)
    volumes, skipped = plan_paths(args.paths)
    if args.verbose:
        for s in skipped:
            print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
    return volumes


def _print_warnings(warnings, stream=None, prefix="  ") -> None:
    for w in warnings:
        print(f"{prefix}warning [{w.code}] {w.message}", file=stream or sys.stderr)


def cmd_inspect(args) -> int:
    from DICOMPlusLib.loading.api import inspect

    infos = _plan(args)
    if args.json:
        print_json(inspect(infos))
        return 0
    for n, info in enumerate(infos, 1):
        dims = "x".join(str(d) for d in info.dims)
        spacing = " x ".join(f"{s:.4g}" for s in info.spacing)
        tags = [info.label] if info.label else []
        if info.localizer:
            tags.append("localizer")
        print(f"volume {n}: {info.modality or '?'} {dims} voxels, {spacing} mm {' '.join(tags)}".rstrip())
        print(f"  series {info.series_uid}")
        if info.time_axis:
            print(
                f"  time axis ({info.time_source}, {info.time_unit}): {', '.join(f'{t:g}' for t in info.time_axis)}"
            )
        if info.tilt_deg > 0.1:
            print(f"  stack tilt {info.tilt_deg:.2f} deg")
        for row in info.ijk_to_lps[:3]:
            print("  ijk->lps " + " ".join(f"{x:10.4f}" for x in row))
        _print_warnings(info.warnings, sys.stdout)
    return 0


def _outputs(out: Path, count: int) -> list[Path]:
    if count == 1:
        return [out]
    name = out.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            stem, ext = name[: -len(suffix)], name[-len(suffix) :]
            break
    else:
        stem, ext = out.stem, out.suffix
    return [out] + [out.with_name(f"{stem}_{i}{ext}") for i in range(2, count + 1)]


def cmd_convert(args) -> int:
    from DICOMPlusLib.jobs import CancelToken
    from DICOMPlusLib.loading.api import load
    from DICOMPlusLib.loading.writers import write_volume

    infos = _plan(args)
    if args.skip_localizers:
        infos = [i for i in infos if not i.localizer] or infos
    outputs = _outputs(Path(args.out), len(infos))
    token = CancelToken()
    written = []
    for info, path in zip(infos, outputs, strict=True):
        bar = ProgressBar(f"load {path.name}", not args.json)
        try:
            volume = load(info, resample=args.resample, progress=bar, cancel=token)
        except KeyboardInterrupt:
            token.cancel()
            raise
        finally:
            bar.close()
        notes = write_volume(volume, path)
        warnings = list(volume.warnings) + notes
        written.append(
            {
                "path": str(path),
                **volume.to_dict(),
                "warnings": [w.to_dict() for w in warnings],
            }
        )
        if not args.json:
            dims = "x".join(str(d) for d in volume.dims)
            print(f"wrote {path} ({dims}, {volume.array.dtype})")
            _print_warnings(warnings)
    if args.json:
        print_json({"written": written})
    return 0


def add_commands(sub) -> None:
    for name, func, text in (
        ("inspect", cmd_inspect, "describe the volumes of a folder or a database series (no pixels read)"),
        ("convert", cmd_convert, "write the volumes of a folder or a database series as NRRD or NIfTI"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("paths", nargs="*", metavar="PATH", help="DICOM files or folders")
        p.add_argument("--series", metavar="UID", help="a series in the database (see --db)")
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "convert":
            p.add_argument("--out", required=True, metavar="FILE", help="FILE.nrrd, FILE.nii or FILE.nii.gz")
            p.add_argument(
                "--resample",
                action="store_true",
                help="resample tilted or irregular stacks onto a regular orthogonal grid",
            )
            p.add_argument("--skip-localizers", action="store_true", help="do not write probable localizers")
        p.set_defaults(func=func)
