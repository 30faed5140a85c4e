"""``dicomplus inspect`` and ``dicomplus convert``: volumes of a folder or a database series.

``inspect (PATH... | --series UID) --json`` prints ``{"volumes": [{"series_uid", "dims" ([i, j, k]
or [i, j, k, t]), "spacing", "ijk_to_ras", "ijk_to_lps", "warnings": [{"code", "message"}]}]}``
(the manifest convention: i along the row direction, j along the column direction, k by
increasing position along the normal, origin at the first slice, exact sheared matrices).
``convert (PATH... | --series UID) --out FILE.nii.gz|FILE.nrrd|FOLDER [--name TEMPLATE] [--resample]``
writes every volume: to FILE (the others beside it with a readable suffix: ``_e2``, ``_localizer``,
``_2``...) or into FOLDER with names from a dcm2niix-like template (``%s_%d``); each with a BIDS-style
JSON sidecar and, for a diffusion series written as NIfTI, ``.bval``/``.bvec`` in FSL's convention.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from DICOMPlusLib.cli.app import ProgressBar, UsageError, print_json
from DICOMPlusLib.cli.arguments import open_database, require_paths, user_path
from DICOMPlusLib.errors import DICOMPlusError
from DICOMPlusLib.loading.naming import DEFAULT_TEMPLATE


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
        if info.bvals is not None:
            shells = sorted({round(b) for b in info.bvals})
            print(
                f"  diffusion: {len(info.bvals)} volumes, b-values {', '.join(str(b) for b in shells)} s/mm2"
            )
        if info.mosaic:
            print("  mosaic: slices split from their mosaic images")
        if info.tilt_deg > 0.1:
            print(f"  stack tilt {info.tilt_deg:.2f} deg")
        for row in info.ijk_to_lps[:3]:
            print("  ijk->lps " + " ".join(f"{x:10.4f}" for x in row))
        _print_warnings(info.warnings, sys.stdout)
    return 0


SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
FORMATS = ("nii.gz", "nii", "nrrd", "nhdr", "mha", "mhd")
DEFAULT_FORMAT = "nii.gz"


def _split_suffix(name: str) -> tuple[str, str] | None:
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return None


def _check_out(args) -> None:
    """``--out`` names a volume file (by its suffix) or a folder: a name whose suffix is no
    volume's (``x.txt``, ``brain.nii.bz2``) made a folder of that name, and an existing file in
    the way failed after the loading. Both are usage errors (exit 2), said before any work; a
    folder with a dot in its name is written with a trailing ``/`` (``results.v2/``)."""
    out = Path(args.out)
    volume_file = _split_suffix(out.name) is not None
    folder_meant = args.out.endswith(("/", os.sep)) or out.is_dir()
    if out.is_file() and not volume_file:
        raise _Usage(f"--out {args.out} is an existing file of no volume file type; {OUT_TAKES}")
    if not volume_file and out.suffix and not folder_meant:
        raise _Usage(
            f"--out {args.out}: {out.suffix} is not a volume file type; {OUT_TAKES} (a folder "
            f"whose name has a dot ends with /: {args.out}/)"
        )
    if volume_file and not folder_meant and args.format is not None:
        raise _Usage(
            f"--format {args.format} is the file type in an --out FOLDER; {args.out} is a file, whose "
            "suffix says its type: drop --format, or give --out a folder"
        )


#: What ``--out`` takes, as its help and its errors say it.
OUT_TAKES = "give FILE.nii.gz (.nii, .nrrd, .nhdr, .mha, .mhd) or a FOLDER"


def _header(info):
    """The first image's header (for names and sidecars), None when it cannot be read."""
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(info.frames[0].path, stop_before_pixels=True, force=True)
    except Exception:  # a missing or unreadable file only costs the names and the sidecar
        return None


def _outputs(args, infos, headers) -> list[Path]:
    """One path per volume: ``--out FILE`` for the first and readable suffixes for the others,
    or ``--out FOLDER`` with names from the ``--name`` template."""
    from DICOMPlusLib.loading.naming import clean, default_stem, expand, volume_suffix

    out = Path(args.out)
    split = _split_suffix(out.name)
    if split is not None and not out.is_dir():
        if args.name:
            raise _Usage("--name names files in a folder: give --out FOLDER, or drop --name")
        stem, ext = split
        paths = [out]
        for index, info in enumerate(infos[1:], 2):
            paths.append(out.with_name(f"{stem}_{volume_suffix(info, index)}{ext}"))
        return _unique(paths)
    ext = "." + (args.format or DEFAULT_FORMAT)
    stems = [
        expand(args.name, ds, info) if args.name else default_stem(ds, info)
        for ds, info in zip(headers, infos, strict=True)
    ]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    seen: dict[str, int] = {}
    paths = []
    for stem, info in zip(stems, infos, strict=True):
        if counts[stem] > 1:
            seen[stem] = seen.get(stem, 0) + 1
            stem = f"{stem}_{volume_suffix(info, seen[stem])}"
        paths.append(out / f"{clean(stem) or 'volume'}{ext}")
    return _unique(paths)


def _unique(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        candidate, n = path, 2
        while candidate in out:
            stem, ext = _split_suffix(path.name) or (path.stem, path.suffix)
            candidate = path.with_name(f"{stem}_{n}{ext}")
            n += 1
        out.append(candidate)
    return out


def _companions(args, info, path: Path) -> list[Path]:
    """The files written beside the volume at ``path``: its JSON sidecar, a DWI's ``.bval`` and
    ``.bvec`` (NIfTI only)."""
    from DICOMPlusLib.loading.writers import NIFTI_SUFFIXES

    stem, ext = _split_suffix(path.name) or (path.stem, path.suffix)
    out = [] if args.no_sidecar else [path.with_name(stem + ".json")]
    if info.bvals is not None and info.gradients_lps is not None and ext.lower() in NIFTI_SUFFIXES:
        out += [path.with_name(stem + ".bval"), path.with_name(stem + ".bvec")]
    return out


def _check_companions(args, infos, outputs: list[Path]) -> None:
    """A volume written again is replaced with its sidecar (the same command run twice gives
    the same files); but ``3_CT.nrrd`` beside an earlier ``3_CT.nii.gz`` would replace the
    NIfTI's ``3_CT.json`` (and ``.bval``/``.bvec``) with no word. That is refused before any
    work, as a usage error (exit 2), like the other ``--out`` conflicts."""
    for info, path in zip(infos, outputs, strict=True):
        stem, ext = _split_suffix(path.name) or (path.stem, path.suffix)
        taken = [p for p in _companions(args, info, path) if p.exists()]
        if not taken:
            continue
        for suffix in SUFFIXES:
            other = path.with_name(stem + suffix)
            if suffix != ext.lower() and other.exists():
                raise _Usage(
                    f"{taken[0]} belongs to {other}, converted before; writing {path} would replace it: "
                    "give another --out or --name, or --no-sidecar"
                )


class _Usage(DICOMPlusError):
    """A combination of options that cannot work (exit 2)."""


def cmd_convert(args) -> int:
    try:
        return _convert(args)
    except _Usage as exc:
        print(f"dicomplus: error: {exc}", file=sys.stderr)
        return 2


def _convert(args) -> int:
    from DICOMPlusLib import __version__
    from DICOMPlusLib.jobs import CancelToken
    from DICOMPlusLib.loading.api import load
    from DICOMPlusLib.loading.diffusion import write_fsl
    from DICOMPlusLib.loading.naming import check_template, sidecar
    from DICOMPlusLib.loading.writers import NIFTI_SUFFIXES, write_volume

    _check_out(args)
    if args.name:
        try:
            check_template(args.name)
        except DICOMPlusError as exc:
            raise _Usage(str(exc)) from None
    infos = _plan(args)
    if args.skip_localizers:
        infos = [i for i in infos if not i.localizer] or infos
    headers = [_header(info) for info in infos]
    outputs = _outputs(args, infos, headers)
    _check_companions(args, infos, outputs)
    token = CancelToken()
    written = []
    for info, ds, path in zip(infos, headers, outputs, strict=True):
        bar = ProgressBar(f"load {path.name}", not args.json)
        try:
            volume = load(info, resample=args.resample, progress=bar, cancel=token)
        except KeyboardInterrupt:
            token.cancel()
            raise
        finally:
            bar.close()
        notes = write_volume(volume, path, compression=args.gz_level)
        warnings = list(volume.warnings) + notes
        stem, _ext = _split_suffix(path.name) or (path.stem, path.suffix)
        entry = {"path": str(path), **volume.to_dict(), "warnings": [w.to_dict() for w in warnings]}
        extra = []
        if info.bvals is not None and info.gradients_lps is not None and _ext.lower() in NIFTI_SUFFIXES:
            entry["bval"], entry["bvec"] = write_fsl(
                info.bvals, info.gradients_lps, volume.ijk_to_lps, path.with_name(stem)
            )
            extra += [entry["bval"], entry["bvec"]]
        if not args.no_sidecar:
            side = path.with_name(stem + ".json")
            side.write_text(json.dumps(sidecar(ds, volume.info, __version__), indent=2) + "\n")
            entry["sidecar"] = str(side)
            extra.append(str(side))
        written.append(entry)
        if not args.json:
            dims = "x".join(str(d) for d in volume.dims)
            also = f" + {', '.join(Path(p).suffix for p in extra)}" if extra else ""
            print(f"wrote {path} ({dims}, {volume.array.dtype}){also}")
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
        p.add_argument("paths", nargs="*", metavar="PATH", type=user_path, help="DICOM files or folders")
        p.add_argument("--series", metavar="UID", help="a series in the database (see --db)")
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "convert":
            from DICOMPlusLib.loading.naming import template_help

            p.add_argument(
                "--out",
                required=True,
                metavar="FILE|FOLDER",
                type=user_path,
                help="FILE.nii.gz (.nii, .nrrd, .nhdr, .mha, .mhd): the first volume there, others beside it with "
                "a readable suffix; or a FOLDER (made if missing; a name with a dot ends with /): files named "
                "by --name",
            )
            p.add_argument(
                "-f",
                "--name",
                metavar="TEMPLATE",
                help=f"file names in --out FOLDER, like dcm2niix -f (default {DEFAULT_TEMPLATE}): {template_help()}".replace(
                    "%", "%%"
                ),
            )
            p.add_argument(
                "--format",
                choices=FORMATS,
                help=f"file type in --out FOLDER (default {DEFAULT_FORMAT}; a FILE's suffix says its own)",
            )
            p.add_argument(
                "--gz-level",
                type=int,
                choices=range(1, 10),
                default=1,
                metavar="1-9",
                help="gzip level of .nii.gz (1 fastest, default; 9 smallest; dcm2niix -z y uses 6)",
            )
            p.add_argument(
                "--no-sidecar",
                action="store_true",
                help="do not write the BIDS-style NAME.json beside each volume",
            )
            p.add_argument(
                "--resample",
                action="store_true",
                help="resample tilted or irregular stacks onto a regular orthogonal grid",
            )
            p.add_argument("--skip-localizers", action="store_true", help="do not write probable localizers")
        p.set_defaults(func=func)
