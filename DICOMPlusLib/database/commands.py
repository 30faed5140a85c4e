"""``dicomplus`` subcommands for the local database: import, info, search, delete."""

from __future__ import annotations

from DICOMPlusLib.cli import ProgressBar, open_database, parse_keys, print_json, print_table


def cmd_import(args) -> int:
    from DICOMPlusLib.jobs import CancelToken

    db = open_database(args)
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
        print_json(report.to_dict())
    else:
        print(
            f"added {report.added}, unchanged {report.unchanged}, duplicates {report.duplicates}, "
            f"skipped {len(report.skipped) - report.duplicates} in {report.seconds:.2f} s ({db.path})"
        )
        for skipped in report.skipped:
            if args.verbose or not skipped.reason.startswith("duplicate"):
                print(f"  skipped {skipped.path}: {skipped.reason}")
    return 1 if report.cancelled else 0


def cmd_info(args) -> int:
    db = open_database(args)
    info = db.info()
    if args.json:
        print_json(info)
    else:
        print(f"database: {db.path}")
        print(f"store:    {db.store.root}")
        for key, value in info.items():
            print(f"{key:10s}{value}")
    return 0


def cmd_search(args) -> int:
    db = open_database(args)
    records = db.search(
        args.level, parse_keys(args.keys), text=args.text, limit=args.limit, offset=args.offset
    )
    rows = [r.to_dict() for r in records]
    if args.json:
        print_json(rows)
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
    print_table(rows, columns, parse_keys(args.keys))
    return 0


def cmd_delete(args) -> int:
    db = open_database(args)
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
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb}: {len(report.patients)} patients, {len(report.studies)} studies, {len(report.series)} series, "
        f"{report.instances} instances; files {'to remove' if args.dry_run else 'removed'}: {len(report.files_removed)}"
    )
    if report.files_kept:
        print(f"files kept (imported in place; add --files to remove them): {len(report.files_kept)}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("import", help="import files, folders or DICOMDIRs into the database")
    p.set_defaults(func=cmd_import)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--link", action="store_true", help="index files where they are instead of copying them")
    p.add_argument("--jobs", type=int, default=None, help="parallel header parsers (default: CPU count)")
    p.add_argument("--json", action="store_true", help="print the import report as JSON")

    p = sub.add_parser("info", help="counts of patients, studies, series and instances")
    p.set_defaults(func=cmd_info)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("search", help="search the local database with DICOM matching")
    p.set_defaults(func=cmd_search)
    p.add_argument("--level", choices=["patient", "study", "series", "instance"], default="study")
    p.add_argument(
        "keys", nargs="*", metavar="KEYWORD=VALUE", help="e.g. PatientName=DOE* StudyDate=20200101-"
    )
    p.add_argument("--text", default=None, help="free text in names, IDs, descriptions, accession numbers")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true")

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
