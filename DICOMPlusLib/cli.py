"""The ``dicomplus`` command line.

Shapes relied on by users and checks (see README): ``import``, ``info --json``, ``search
[--level L] [KEYWORD=VALUE ...] --json`` (a list of objects keyed by DICOM keyword), ``delete``.
``--db PATH`` or ``$DICOMPLUS_DB`` choose the database; see :func:`default_database_path`.
Errors print one line ``dicomplus: error: ...`` and exit 2 (usage) or 1 (failure).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable

from DICOMPlusLib import __version__
from DICOMPlusLib.errors import DICOMPlusError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(func):
        COMMANDS[name] = func
        return func

    return register


class ProgressBar:
    """A one-line progress bar on stderr, shown only on a terminal."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int, current: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        width = 30
        filled = int(width * done / total) if total else width
        name = current[-40:] if current else ""
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {name:<40}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _open_db(args):
    from DICOMPlusLib.database import Database

    return Database(args.db)


def _print_json(value) -> None:
    json.dump(value, sys.stdout, indent=1, ensure_ascii=False, default=_json_default)
    sys.stdout.write("\n")


def _json_default(value):
    if isinstance(value, tuple | set):
        return list(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _parse_keys(items: list[str]) -> list[tuple[str, str]]:
    keys = []
    for item in items:
        keyword, sep, value = item.partition("=")
        if not sep or not keyword:
            raise DICOMPlusError(
                f"expected KEYWORD=VALUE, got {item!r} (e.g. PatientName=DOE* or StudyDate=2020-)"
            )
        keys.append((keyword.strip(), value))
    return keys


# -- database commands ----------------------------------------------------------------------------
@command("import")
def cmd_import(args) -> int:
    from DICOMPlusLib.jobs import CancelToken

    db = _open_db(args)
    bar = ProgressBar("import", not args.json)
    token = CancelToken()
    try:
        report = db.import_paths(args.paths, link=args.link, jobs=args.jobs, progress=bar, cancel=token)
    except KeyboardInterrupt:
        token.cancel()
        raise
    finally:
        bar.close()
    if args.json:
        _print_json(report.to_dict())
    else:
        print(
            f"added {report.added}, unchanged {report.unchanged}, duplicates {report.duplicates}, "
            f"skipped {len(report.skipped) - report.duplicates} in {report.seconds:.2f} s ({db.path})"
        )
        for skipped in report.skipped:
            if args.verbose or not skipped.reason.startswith("duplicate"):
                print(f"  skipped {skipped.path}: {skipped.reason}")
    return 1 if report.cancelled else 0


@command("info")
def cmd_info(args) -> int:
    db = _open_db(args)
    info = db.info()
    if args.json:
        _print_json(info)
    else:
        print(f"database: {db.path}")
        print(f"store:    {db.store.root}")
        for key, value in info.items():
            print(f"{key:10s}{value}")
    return 0


@command("search")
def cmd_search(args) -> int:
    db = _open_db(args)
    records = db.search(
        args.level, _parse_keys(args.keys), text=args.text, limit=args.limit, offset=args.offset
    )
    rows = [r.to_dict() for r in records]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no match")
        return 0
    columns = {
        "patient": ["PatientID", "PatientName", "PatientBirthDate", "NumberOfPatientRelatedStudies"],
        "study": [
            "PatientID",
            "PatientName",
            "StudyDate",
            "ModalitiesInStudy",
            "StudyDescription",
            "StudyInstanceUID",
        ],
        "series": [
            "PatientID",
            "Modality",
            "SeriesNumber",
            "SeriesDescription",
            "NumberOfSeriesRelatedInstances",
            "SeriesInstanceUID",
        ],
        "instance": ["SeriesInstanceUID", "InstanceNumber", "SOPInstanceUID", "path"],
    }[args.level]
    extra = [k for k, _ in _parse_keys(args.keys) if k not in columns and rows and k in rows[0]]
    columns = columns + extra
    print("\t".join(columns))
    for row in rows:
        print("\t".join(str(row.get(c, "")) for c in columns))
    return 0


@command("delete")
def cmd_delete(args) -> int:
    db = _open_db(args)
    report = db.delete(
        patient=args.patient,
        study=args.study,
        series=args.series,
        files=True,
        linked_files=args.files,
        dry_run=args.dry_run,
    )
    if args.json:
        _print_json(report.to_dict())
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb}: {len(report.patients)} patients, {len(report.studies)} studies, {len(report.series)} series, "
        f"{report.instances} instances; files {'to remove' if args.dry_run else 'removed'}: {len(report.files_removed)}"
    )
    if report.files_kept:
        print(f"files kept (imported in place; add --files to remove them): {len(report.files_kept)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicomplus",
        description="DICOMPlus: a DICOM database, network node and volume loader.",
    )
    parser.add_argument("--version", action="version", version=f"dicomplus {__version__}")
    parser.add_argument(
        "--db",
        default=None,
        help="database file or folder (default: $DICOMPLUS_DB, else ~/.local/share/dicomplus/dicomplus.sqlite)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="say more (and log to stderr)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("import", help="import files, folders or DICOMDIRs into the database")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--link", action="store_true", help="index files where they are instead of copying them")
    p.add_argument("--jobs", type=int, default=None, help="parallel header parsers (default: CPU count)")
    p.add_argument("--json", action="store_true", help="print the import report as JSON")

    p = sub.add_parser("info", help="counts of patients, studies, series and instances")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("search", help="search the local database with DICOM matching")
    p.add_argument("--level", choices=["patient", "study", "series", "instance"], default="study")
    p.add_argument(
        "keys", nargs="*", metavar="KEYWORD=VALUE", help="e.g. PatientName=DOE* StudyDate=20200101-"
    )
    p.add_argument("--text", default=None, help="free text in names, IDs, descriptions, accession numbers")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("delete", help="delete a patient, study or series (and the files DICOMPlus copied)")
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--patient", metavar="ID", help="PatientID")
    scope.add_argument("--study", metavar="UID")
    scope.add_argument("--series", metavar="UID")
    p.add_argument(
        "--files", action="store_true", help="also remove files that were imported in place (--link)"
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except DICOMPlusError as exc:
        print(f"dicomplus: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dicomplus: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
