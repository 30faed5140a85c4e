"""``dicomplus`` subcommands for the local database: import, info, search, delete, db backup/migrate."""

from __future__ import annotations

import argparse
import sys

from DICOMPlusLib import dataclasses_lite
from DICOMPlusLib.cli.app import (
    Exit,
    ProgressBar,
    cancel_on_interrupt,
    cancelled_message,
    counted,
    is_dicomdir,
    not_dicom,
    parse_keys,
    print_json,
    print_table,
    stdout_is_terminal,
)
from DICOMPlusLib.cli.arguments import count, location, number, open_database, require_paths, user_path

#: The page a terminal shows when --limit is not given.
TERMINAL_PAGE = 20


def cmd_import(args) -> int:
    from DICOMPlusLib.cancel import CancelToken

    require_paths(*args.paths)
    db = open_database(args, create=True)
    bar = ProgressBar("import", not args.json)
    with cancel_on_interrupt(CancelToken()) as token:
        try:
            report = db.import_paths(args.paths, link=args.link, jobs=args.jobs, progress=bar, cancel=token)
        finally:
            bar.close()
    duplicates = [s for s in report.skipped if s.reason.startswith("duplicate")]
    others = [s for s in report.skipped if not s.reason.startswith("duplicate")]
    ignored = [s for s in others if not_dicom(s.reason)]
    failed = [s for s in others if not not_dicom(s.reason)]
    dicomdirs = [s for s in ignored if is_dicomdir(s.reason)]
    ignored = [s for s in ignored if not is_dicomdir(s.reason)]
    if report.cancelled:  # why it stopped first, then what it did: the order it is read in
        kept = report.added + report.unchanged + report.replaced
        print(
            cancelled_message(bar.done, bar.total, kept, "files", "run the same command again to resume"),
            file=sys.stderr,
            flush=True,
        )
    if args.json:
        print_json(report.to_dict())
    else:
        print(
            f"added {report.added}, unchanged {report.unchanged}, duplicates {len(duplicates)}, "
            + (f"DICOMDIR {len(dicomdirs)}, " if dicomdirs else "")
            + f"not DICOM {len(ignored)}, failed {len(failed)} in {report.seconds:.2f} s ({location(db)})"
        )
        for skipped in failed + dicomdirs + ignored + duplicates:
            if skipped in failed or args.verbose:
                print(f"  skipped {skipped.path}: {skipped.reason}")
        if (dicomdirs or ignored or duplicates) and not args.verbose:
            print("  (-v lists the skipped files by name, with the reason)")
    if report.cancelled:
        return Exit.INTERRUPTED
    if failed:
        return Exit.FAILED
    if report.files_seen == 0 or report.added + report.unchanged + report.replaced + len(duplicates) == 0:
        print(f"dicomplus: error: no DICOM instance found in {', '.join(args.paths)}", file=sys.stderr)
        return Exit.FAILED
    return Exit.OK


def cmd_info(args) -> int:
    db = open_database(args)
    info = db.info()
    if args.json:
        print_json(info)
    else:
        print(f"database: {location(db)}")
        print(f"store:    {db.store_root}")
        for key, value in info.items():
            print(f"{key:10s}{value}")
    return Exit.OK


COLUMNS = {
    "patient": [
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    ],
    "study": [
        "PatientID",
        "PatientName",
        "StudyDate",
        "ModalitiesInStudy",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "StudyInstanceUID",
    ],
    "series": [
        "PatientID",
        "PatientName",
        "StudyDate",
        "StudyDescription",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
        "SeriesInstanceUID",
    ],
    "instance": ["SeriesInstanceUID", "InstanceNumber", "SOPInstanceUID", "path"],
}


def _count(db, level: str, keys, text) -> int:
    """How many records match in all (-1 when header keys would make counting a full scan)."""
    total = db.count(level, keys, text=text)
    return -1 if total is None else total


def _with_study(db, rows: list[dict]) -> None:
    """Series rows get their study's date and description (a terminal table shows them)."""
    studies: dict[str, dict] = {}
    for row in rows:
        uid = str(row.get("StudyInstanceUID") or "")
        if uid and uid not in studies:
            found = db.search("study", {"StudyInstanceUID": uid})
            studies[uid] = found[0].to_dict() if found else {}
        for key in ("StudyDate", "StudyDescription"):
            row.setdefault(key, studies.get(uid, {}).get(key, ""))


#: The instance key of each level's record, to find one instance under it.
_ONE_INSTANCE_BY = {"patient": "PatientID", "study": "StudyInstanceUID", "series": "SeriesInstanceUID"}


def _header_return_keys(db, level: str, keys, records, rows: list[dict]) -> None:
    """Universal keys on tags that are not columns (``RepetitionTime=*``) are return keys: each row
    gets the value from the stored header of one instance under it (empty when it has none), as
    a C-FIND of our Q/R SCP returns it (PS3.4 C.2.2.1.2). One header read per row shown."""
    from DICOMPlusLib.database.keywords import vr_of

    wanted = [
        k
        for k, v in keys
        if v in ("", "*") and "." not in k and vr_of(k) != "SQ"
        and not any(k == f.name for f in dataclasses_lite.fields(records[0]))
    ]  # fmt: skip
    if not wanted:
        return
    for record, row in zip(records, rows, strict=True):
        sop = getattr(record, "SOPInstanceUID", None)
        if level != "instance":
            key = _ONE_INSTANCE_BY[level]
            uid = getattr(record, key)  # a patient without an ID: an empty key would match all
            found = db.search("instance", {key: uid}, limit=1) if uid else []
            sop = found[0].SOPInstanceUID if found else None
        header = db.header(sop) if sop else None
        for keyword in wanted:
            if keyword not in row:
                row[keyword] = _plain(header[keyword]) if header is not None and keyword in header else ""


def _plain(element) -> object:
    """An element's value as search prints it: text (several values joined by a backslash, as
    stored), a number for binary numeric VRs."""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    if isinstance(value, int | float) and element.VR not in ("DS", "IS"):
        return value
    return str(value)


def cmd_search(args) -> int:
    keys = parse_keys(args.keys)
    db = open_database(args)
    table = not args.json
    limit = args.limit
    if limit is None and table and stdout_is_terminal():
        limit = TERMINAL_PAGE
    if limit == 0:
        limit = None
    records = db.search(args.level, keys, text=args.text, limit=limit, offset=args.offset)
    rows = [r.to_dict() for r in records]
    if records:
        _header_return_keys(db, args.level, keys, records, rows)
    if args.json:
        print_json(rows)
        return Exit.OK
    if args.level == "series":
        _with_study(db, rows)
    total = _count(db, args.level, keys, args.text) if limit is not None and len(rows) == limit else None
    print_table(rows, COLUMNS[args.level], keys, chosen=args.columns, total=total, offset=args.offset)
    return Exit.OK


def _exists(db, args) -> bool:
    if args.patient is not None:
        return bool(db.search("patient", {"PatientID": args.patient}, limit=1))
    if args.study is not None:
        return bool(db.search("study", {"StudyInstanceUID": args.study}, limit=1))
    return bool(db.search("series", {"SeriesInstanceUID": args.series}, limit=1))


def cmd_delete(args) -> int:
    db = open_database(args)
    if not _exists(db, args):
        what = (
            f"patient {args.patient}"
            if args.patient is not None
            else f"study {args.study}"
            if args.study is not None
            else f"series {args.series}"
        )
        raise_nothing = (
            f"nothing to delete: no {what} in {location(db)} (dicomplus search finds what is there)"
        )
        if args.json:
            print_json({"error": raise_nothing})
        print(f"dicomplus: error: {raise_nothing}", file=sys.stderr)
        return Exit.FAILED
    report = db.delete(
        patient=args.patient,
        study=args.study,
        series=args.series,
        files=True,
        linked_files=args.files,
        dry_run=args.dry_run,
    )
    if args.json:
        print_json(report.to_dict())
        return Exit.OK
    verb = "would delete" if args.dry_run else "deleted"
    counts = (
        counted(len(report.patients), "patient", "patients"),
        counted(len(report.studies), "study", "studies"),
        counted(len(report.series), "series", "series"),
        counted(report.instances, "instance", "instances"),
    )
    print(
        f"{verb}: {', '.join(counts)}; files {'to remove' if args.dry_run else 'removed'}: {len(report.files_removed)}"
    )
    if report.files_kept:
        print(f"files kept (imported in place; add --files to remove them): {len(report.files_kept)}")
    return Exit.OK


def cmd_db_migrate(args) -> int:
    from DICOMPlusLib.database.migrate import migrate
    from DICOMPlusLib.database.postgres import is_postgres_url, redact
    from DICOMPlusLib.errors import UsageError
    from DICOMPlusLib.jobs import CancelToken

    if not is_postgres_url(args.to):
        raise UsageError(f"--to must be a postgresql:// URL, not {args.to!r}")
    _say_another_store(args)
    bar = ProgressBar("migrate", not args.json)
    with cancel_on_interrupt(CancelToken()) as token:
        try:
            report = migrate(
                args.source, args.to, store=args.store, move_files=args.move_files, progress=bar, cancel=token
            )
        finally:
            bar.close()
    if report.cancelled:  # why it stopped first, then what it did: the order it is read in
        kept = report.copied + report.already
        print(cancelled_message(bar.done, bar.total, kept, "instances", "run the same command again to resume"),
              file=sys.stderr, flush=True)  # fmt: skip
    if args.json:
        print_json(report.to_dict())
    else:
        moved = f", files moved {report.files_moved} into {report.store}" if args.move_files else ""
        print(
            f"copied {report.copied}, already there {report.already}{moved}, sources {report.sources} "
            f"in {report.seconds:.2f} s ({args.source} -> {redact(args.to)})"
        )
        if report.files_missing:
            print(f"  {report.files_missing} instances have no file at their path (copied all the same)")
    if report.cancelled:
        return Exit.INTERRUPTED
    return Exit.OK


def _say_another_store(args) -> None:
    """``--store X --move-files`` into a database that records the store Y moves the files into X,
    as ``--store`` on any command overrides the recorded store for that command (docs/deployment.md);
    the rows then point into X, which the workstations that use Y may not reach: said once on
    stderr before anything moves, with the way to use Y."""
    import os

    from DICOMPlusLib.database.postgres import recorded_store, redact

    if args.store is None or not args.move_files:
        return
    recorded = recorded_store(args.to)
    chosen = os.path.abspath(args.store)
    if recorded is not None and chosen != os.path.abspath(recorded):
        print(
            f"note: {redact(args.to)} records the store {recorded}; --store moves these files into {chosen}, "
            f"where only the machines that reach {chosen} find them (without --store they go to {recorded})",
            file=sys.stderr,
            flush=True,
        )


def cmd_db_backup(args) -> int:
    import os

    from DICOMPlusLib.errors import CancelledError
    from DICOMPlusLib.jobs import CancelToken

    db = open_database(args)
    bar = ProgressBar("backup", not args.json)
    with cancel_on_interrupt(CancelToken()) as token:
        try:
            dest = db.backup(args.dest, progress=bar, cancel=token)
        except CancelledError:
            print("backup stopped: no file written", file=sys.stderr)
            return Exit.INTERRUPTED
        finally:
            bar.close()
    size = os.stat(dest).st_size
    if args.json:
        print_json({"database": location(db), "backup": str(dest), "bytes": size})
    else:
        print(
            f"backed up {location(db)} to {dest} ({size / 1e6:.1f} MB); the stored files stay in {db.store_root}"
        )
    return Exit.OK


BACKUP_HELP = """\
A consistent copy of every patient, study, series and instance row and header, taken under one
read transaction while imports, listeners or Slicer keep using the database. The .sqlite file
alone can lack the last commits (they are in its -wal until a checkpoint): copy this instead.
The copy is a new file (never overwritten), readable by its owner only; the stored files are not
copied (back up the store folder beside it as files). Ctrl-C stops it and leaves no partial file."""


MIGRATE_HELP = """\
Copies the patients, studies, series and instances (with their headers) and the import history of
an SQLite database into a PostgreSQL database, which may already hold data (an instance it holds
is left as it is). Resumable: run the same command again after a failure, a kill or Ctrl-C; it
continues where the last committed batch ended. The SQLite database is only read.
Files: --keep-files (default) leaves them where they are (the rows point at them; without --store,
a new PostgreSQL database takes the SQLite store as its store); --move-files moves them into the
PostgreSQL store (--store, or the one it records; a --store other than the recorded one is used
for this command, as on any command, and a note says so). Files imported with --link are never moved."""


SEARCH_HELP = """\
Matching (PS3.4 C.2.2.2), one KEYWORD=VALUE per attribute, all must match:
  keywords     any DICOM keyword, in any case (PatientName, studydate); columns or any stored tag
  exact        Modality=CT (code strings are upper case: ct is read as CT), SeriesNumber=3
  wildcards    PatientName='DOE*' (* any run, ? one character); names are FAMILY^GIVEN,
               case-insensitive: PatientName='Doe^Peter' or 'doe*'
  dates        StudyDate=20200315 or 2020-03-15; 2020 (the year); 2020-03 (the month);
               today; yesterday
  date ranges  20200101-20201231, 2020-01-01..2020-12-31, 2020- (from), -2020 (until)
  times        StudyTime=0800-1200 (HHMMSS or HH:MM:SS)
  UID lists    SeriesInstanceUID='1.2.3\\1.2.4' (no wildcards in UIDs)
  sequences    ProcedureCodeSequence.CodeValue='CT*': Sequence.Keyword matches an attribute of
               the sequence's items (C.2.2.2.6); keys on one sequence match in one item
  universal    an empty value or * matches everything and shows that attribute: a column of
               the level (PatientBirthDate=* at --level study), or any other tag read from the
               stored header of one instance under each row (RepetitionTime=*)
Values in another form are refused with the form expected.
On a terminal the first 20 matches are shown as a table (--limit 0 for all); piped, every match
is printed tab-separated with a header line; --json prints a list of objects keyed by keyword."""


def add_commands(sub) -> None:
    p = sub.add_parser("import", help="import files, folders or DICOMDIRs into the database")
    p.set_defaults(func=cmd_import)
    p.add_argument("paths", nargs="+", metavar="PATH", type=user_path)
    p.add_argument("--link", action="store_true", help="index files where they are instead of copying them")
    p.add_argument(
        "--jobs",
        type=count,
        default=None,
        help="parallel workers reading and copying files (default: CPU count; threads, or processes "
        "for a --link import of 2,500 files or more)",
    )
    p.add_argument("--json", action="store_true", help="print the import report as JSON")

    p = sub.add_parser("info", help="counts of patients, studies, series and instances")
    p.set_defaults(func=cmd_info)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "search",
        help="search the local database with DICOM matching",
        description="Search the local database.",
        epilog=SEARCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=cmd_search)
    p.add_argument(
        "--level", type=str.lower, choices=["patient", "study", "series", "instance"], default="study"
    )
    p.add_argument(
        "keys", nargs="*", metavar="KEYWORD=VALUE", help="e.g. PatientName=DOE* StudyDate=2020 Modality=CT"
    )
    p.add_argument("--text", default=None, help="free text in names, IDs, descriptions, accession numbers")
    p.add_argument(
        "--limit",
        type=number(int, 0),
        default=None,
        help="at most N results (default: 20 on a terminal, else all; 0: all)",
    )
    p.add_argument("--offset", type=number(int, 0), default=0, help="skip the first N results")
    p.add_argument("--columns", metavar="A,B,...", default=None, help="the columns to print (keywords)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "db", help="database administration: back up, migrate an SQLite database to PostgreSQL"
    )
    db_sub = p.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    p = db_sub.add_parser(
        "migrate",
        help="copy an SQLite database into PostgreSQL (resumable, with progress)",
        description="Copy an SQLite database into a PostgreSQL database.",
        epilog=MIGRATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=cmd_db_migrate)
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="SQLITE_PATH",
        type=user_path,
        help="dicomplus.sqlite or its folder",
    )
    p.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host:port/dbname")
    files = p.add_mutually_exclusive_group()
    files.add_argument("--move-files", action="store_true", help="move the files into the PostgreSQL store")
    files.add_argument(
        "--keep-files",
        dest="move_files",
        action="store_false",
        help="leave the files where they are (default)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = db_sub.add_parser(
        "backup",
        help="a complete copy of the SQLite index in one new file, while it is in use",
        description="Copy the database of --db into one new, self-contained SQLite file.",
        epilog=BACKUP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=cmd_db_backup)
    p.add_argument(
        "dest",
        metavar="DEST",
        type=user_path,
        help="a new file, or a folder (a name without a suffix) to hold dicomplus.sqlite",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("delete", help="delete a patient, study or series (and the files DICOMPlus copied)")
    p.set_defaults(func=cmd_delete)
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--patient", metavar="ID", help="PatientID")
    scope.add_argument("--study", metavar="UID")
    scope.add_argument("--series", metavar="UID")
    p.add_argument(
        "--files", action="store_true", help="also remove files that were imported in place (--link)"
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    p.add_argument("--json", action="store_true")
