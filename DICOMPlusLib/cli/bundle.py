"""``dicomplus bundle``: save a zipped scene into a study as a Data Bundle, or extract it.

    dicomplus bundle save SCENE.zip --study UID --out FILE.dcm [--thumbnail IMAGE] [--index]
    dicomplus bundle extract FILE.dcm --out SCENE.zip [--max-size BYTES] [--no-verify]
    dicomplus bundle info FILE.dcm [--json]

Registered by :mod:`DICOMPlusLib.cli.export`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from DICOMPlusLib.cli.app import UID_ROOT_HELP, print_json, uid_generator
from DICOMPlusLib.cli.arguments import open_database, require_paths, user_path
from DICOMPlusLib.errors import BundleError

if TYPE_CHECKING:
    import numpy as np


def read_thumbnail(path: str) -> np.ndarray:
    """An RGB array of a PNG/JPEG/BMP file (SimpleITK)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(path)
    except RuntimeError as exc:
        raise BundleError(f"cannot read the thumbnail {path}: {str(exc).strip().splitlines()[-1]}") from None
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 3 and image.GetNumberOfComponentsPerPixel() == 1:
        array = array[array.shape[0] // 2]
    return array


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        return int(float(number) * factor)
    except ValueError:
        raise BundleError(f"--max-size {text!r}: give bytes, or a number with K, M or G") from None


def cmd_save(args) -> int:
    from DICOMPlusLib.bundle.write import save_bundle_to_study

    require_paths(args.zip, args.thumbnail)
    if Path(args.out).exists():
        raise BundleError(f"{args.out} already exists: choose another --out")
    db = open_database(args)
    thumbnail = read_thumbnail(args.thumbnail) if args.thumbnail else None
    info = save_bundle_to_study(
        db,
        args.study,
        args.zip,
        out_path=args.out,
        index=args.index,
        thumbnail=thumbnail,
        series_description=args.description,
        uids=uid_generator(args),
    )
    if args.json:
        print_json(info.to_dict())
    else:
        print(
            f"saved {info.zip_size} bytes of zip into {info.path} (series {info.series_uid}, study {info.study_uid})"
        )
    return 0


def cmd_extract(args) -> int:
    from DICOMPlusLib.bundle.read import extract_bundle

    require_paths(args.file)
    if Path(args.out).exists() and not args.force:
        raise BundleError(f"{args.out} already exists: choose another --out, or add --force to overwrite it")
    max_size = None if args.max_size == "none" else _size(args.max_size)
    info = extract_bundle(
        args.file, args.out, max_size=max_size, verify=not args.no_verify, overwrite=args.force
    )
    if args.json:
        print_json({**info.to_dict(), "out": args.out})
    else:
        checked = "SHA-256 verified" if info.sha256 and not args.no_verify else "no hash recorded"
        if info.sha256 and args.no_verify:
            checked = "hash not checked"
        print(f"extracted {info.zip_size} bytes to {args.out} ({info.writer} bundle, {checked})")
    return 0


def cmd_info(args) -> int:
    from DICOMPlusLib.bundle.read import read_bundle_info

    require_paths(args.file)
    info = read_bundle_info(args.file)
    if args.json:
        print_json(info.to_dict())
    else:
        for key, value in info.to_dict().items():
            print(f"{key:20s}{value}")
    return 0


def add_commands(sub) -> None:
    from DICOMPlusLib.bundle.format import DEFAULT_MAX_BUNDLE_BYTES, DEFAULT_SERIES_DESCRIPTION

    bundle = sub.add_parser("bundle", help="Slicer Data Bundles: a zipped scene inside a DICOM file")
    bundle_sub = bundle.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)

    p = bundle_sub.add_parser("save", help="wrap a zip (MRB) into a DICOM file of a study")
    p.set_defaults(func=cmd_save)
    p.add_argument("zip", metavar="ZIP", type=user_path, help="the scene as a zip (.mrb or .zip)")
    p.add_argument(
        "--study", required=True, metavar="UID", help="StudyInstanceUID of a study in the database"
    )
    p.add_argument("--out", required=True, metavar="FILE.dcm", type=user_path)
    p.add_argument(
        "--thumbnail", default=None, metavar="IMAGE", type=user_path, help="PNG/JPEG shown as the image"
    )
    p.add_argument("--description", default=DEFAULT_SERIES_DESCRIPTION, help="SeriesDescription")
    p.add_argument("--index", action="store_true", help="also import the bundle into the database")
    p.add_argument("--uid-root", default=None, help=UID_ROOT_HELP)
    p.add_argument("--json", action="store_true")

    p = bundle_sub.add_parser("extract", help="write the zip (MRB) held by a Data Bundle file")
    p.set_defaults(func=cmd_extract)
    p.add_argument("file", metavar="FILE.dcm", type=user_path)
    p.add_argument("--out", required=True, metavar="ZIP", type=user_path)
    p.add_argument(
        "--max-size",
        default=str(DEFAULT_MAX_BUNDLE_BYTES),
        help="refuse larger zips (bytes, or e.g. 500M, 4G; 'none' for no limit; default 2G)",
    )
    p.add_argument("--no-verify", action="store_true", help="do not check the recorded SHA-256")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--json", action="store_true")

    p = bundle_sub.add_parser("info", help="what a Data Bundle file holds (no extraction)")
    p.set_defaults(func=cmd_info)
    p.add_argument("file", metavar="FILE.dcm", type=user_path)
    p.add_argument("--json", action="store_true")
