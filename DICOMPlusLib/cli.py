"""The ``dicomplus`` command line.

Shapes relied on by users and checks (see README): ``import``, ``info --json``, ``search
[--level L] [KEYWORD=VALUE ...] --json`` (a list of objects keyed by DICOM keyword), ``delete``.
``--db PATH`` or ``$DICOMPLUS_DB`` choose the database; see :func:`default_database_path`.
Errors print one line ``dicomplus: error: ...`` and exit 2 (usage) or 1 (failure).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time

from DICOMPlusLib import __version__
from DICOMPlusLib.errors import DICOMPlusError

#: Each module adds its subcommands with ``add_commands(subparsers)``; a subparser sets
#: ``func`` (a callable taking the parsed arguments and returning the exit code).
COMMAND_MODULES = [
    "DICOMPlusLib.database.commands",
    "DICOMPlusLib.loading.commands",
    "DICOMPlusLib.export.commands",
    "DICOMPlusLib.network.commands",
    "DICOMPlusLib.network.qr_commands",
    "DICOMPlusLib.demo",
]


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


def open_database(args):
    from DICOMPlusLib.database import Database

    return Database(args.db)


def print_json(value) -> None:
    json.dump(value, sys.stdout, indent=1, ensure_ascii=False, default=_json_default)
    sys.stdout.write("\n")


def _json_default(value):
    if isinstance(value, tuple | set):
        return list(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def print_table(rows: list[dict], columns: list[str], keys: list[tuple[str, str]] = ()) -> None:
    """Records as tab-separated columns, plus the columns of the query keys they carry."""
    if not rows:
        print("no match")
        return
    columns = columns + [k for k, _ in keys if k not in columns and k in rows[0]]
    print("\t".join(columns))
    for row in rows:
        print("\t".join(str(row.get(c, "")) for c in columns))


def parse_keys(items: list[str]) -> list[tuple[str, str]]:
    keys = []
    for item in items:
        keyword, sep, value = item.partition("=")
        if not sep or not keyword:
            raise DICOMPlusError(
                f"expected KEYWORD=VALUE, got {item!r} (e.g. PatientName=DOE* or StudyDate=2020-)"
            )
        keys.append((keyword.strip(), value))
    return keys


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

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
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
        return args.func(args)
    except DICOMPlusError as exc:
        print(f"dicomplus: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dicomplus: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
