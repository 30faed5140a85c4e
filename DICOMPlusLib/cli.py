"""The ``dicomplus`` command line (subcommands are added per capability)."""

from __future__ import annotations

import argparse
import sys

from DICOMPlusLib import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicomplus", description="DICOMPlus: DICOM database, network and loading."
    )
    parser.add_argument("--version", action="version", version=f"dicomplus {__version__}")
    parser.add_subparsers(dest="command")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
