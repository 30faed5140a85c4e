"""``dicomplus query`` and ``dicomplus retrieve``: C-FIND / C-GET / C-MOVE (or DICOMweb) against a
node. NODE is a configured node name (``dicomplus nodes add``) or ``AE@HOST:PORT``.

``query --json`` prints the same shape as local ``search --json``: a list of objects keyed by
DICOM keyword. ``retrieve --json`` prints the retrieve report.
"""

from __future__ import annotations

import sys

from DICOMPlusLib.cli.app import (
    Exit,
    ProgressBar,
    UsageError,
    cancel_on_interrupt,
    cancelled_message,
    counted,
    parse_keys,
    print_json,
    print_table,
)
from DICOMPlusLib.cli.arguments import IntermixedParser, count, number, open_database, seconds, user_path
from DICOMPlusLib.cli.network import ae_title, method_word, node_spec, retrieve_method
from DICOMPlusLib.errors import CancelledError, RetrieveError
from DICOMPlusLib.network.nodes import DEFAULT_PORT

_COLUMNS = {
    "patient": ["PatientID", "PatientName", "PatientBirthDate", "NumberOfPatientRelatedStudies"],
    "study": ["PatientID", "PatientName", "StudyDate", "ModalitiesInStudy", "StudyDescription", "StudyInstanceUID"],
    "series": ["Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances",
               "SeriesInstanceUID"],
    "instance": ["SeriesInstanceUID", "InstanceNumber", "SOPClassUID", "SOPInstanceUID"],
}  # fmt: skip


def _node(args):
    from DICOMPlusLib.network.nodes import NodeStore

    return NodeStore(args.nodes).resolve(args.node)


def cmd_query(args) -> int:
    from DICOMPlusLib.jobs import CancelToken
    from DICOMPlusLib.network.query import QueryReport, query

    keys = parse_keys(args.keys)
    node = _node(args)
    rows = []
    report = QueryReport()
    with cancel_on_interrupt(CancelToken()) as token:
        try:
            for record in query(node, args.level, keys, model=args.model, calling_ae_title=args.calling_ae,
                                limit=args.limit, cancel=token, timeout=args.timeout, report=report):  # fmt: skip
                rows.append(record.to_dict())
        except CancelledError:
            pass
    if report.filtered or report.unchecked_keys:
        print(f"{node.name}: {report.message()}", file=sys.stderr)
    if args.json:
        print_json(rows)
    elif rows or not token.cancelled:  # a query cancelled before any answer matched nothing: no "no match"
        print_table(rows, _COLUMNS[args.level], keys, chosen=args.columns)
        if args.limit is not None and len(rows) >= args.limit:
            print(f"(stopped at --limit {args.limit})")
    if token.cancelled:
        print(f"cancelled after {len(rows)} results", file=sys.stderr)
        return Exit.INTERRUPTED
    return Exit.OK


def cmd_retrieve(args) -> int:
    from DICOMPlusLib.cancel import CancelToken, run_threads
    from DICOMPlusLib.network.models import RetrieveOptions
    from DICOMPlusLib.network.retrieve import retrieve

    if not (args.study or args.series or args.instance):
        raise UsageError("give what to retrieve: --study UID, --series UID ... or --instance UID ...")
    node = _node(args)
    db = open_database(args, create=True)
    listener_config = None
    if args.listener_port is not None or args.listener_ae or args.listener_host:
        from DICOMPlusLib.network.listener import ListenerConfig  # a C-MOVE's; a C-GET has no listener

        listener_config = ListenerConfig(
            ae_title=args.listener_ae or args.calling_ae,
            port=DEFAULT_PORT if args.listener_port is None else args.listener_port,
            host=args.listener_host or "",
        )
    options = RetrieveOptions(calling_ae_title=args.calling_ae, listener_config=listener_config,
                              resume=not args.no_resume, timeout=args.timeout, retries=args.retries,
                              parallel=args.parallel)  # fmt: skip
    bar = ProgressBar("retrieve", not args.json)
    # drawn at once: finding what the selection holds (a query per series) can take seconds on
    # a large study, and a terminal that shows nothing then looks hung
    bar(0, 0, "finding the instances")
    token = CancelToken()
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["report"] = retrieve(
                node, db, study_uid=args.study, series_uids=args.series or (), sop_instance_uids=args.instance or (),
                method=args.method, options=options, progress=lambda done, total, _sop: bar(done, total),
                cancel=token,
            )  # fmt: skip
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc
        finally:
            db.release_reader()

    # The retrieve runs in a thread so that the main thread keeps receiving Ctrl-C: the first one
    # cancels cleanly (C-CANCEL, then an abort after the grace period), a second one stops at
    # once: each association aborted, the file being received removed (run_threads waits for that).
    with cancel_on_interrupt(token):
        try:
            run_threads([run], token, "dicomplus-retrieve")
        finally:
            bar.close()
    error = outcome.get("error")
    report = outcome.get("report")
    if isinstance(error, CancelledError) or (report is None and token.cancelled):
        return _cancelled(bar, bar.done)
    if isinstance(error, RetrieveError) and "C-MOVE destination" in str(error):
        raise RetrieveError(f"{error} (--listener-port N)") from None
    if error is not None:
        raise error
    assert report is not None  # run() sets either an error or a report
    cancelled = report.cancelled or token.cancelled
    if cancelled:  # why it stopped first, then what it did: the order it is read in
        _cancelled(bar, len(report.done) + len(report.skipped))
    if args.json:
        print_json({**report.to_dict(), "method": method_word(report.method)})
    else:
        print_retrieve_summary(report, node.name)
    if cancelled:
        return Exit.INTERRUPTED
    return Exit.OK if report.complete else Exit.FAILED


def print_retrieve_summary(report, node_name: str) -> None:
    """What a retrieve did, below the account a cancel printed first: how many arrived of how
    many (when known), what failed instance by instance, what a cancel kept from coming in one
    line (the account says how to resume), the warnings."""
    from DICOMPlusLib.network.models import NOT_FETCHED_CANCELLED

    if report.expected:
        how_many = f"{len(report.done)} of {counted(report.expected, 'instance', 'instances')}"
    else:  # not known: a cancel came before the selection's instances were listed
        how_many = counted(len(report.done), "instance", "instances")
    print(
        f"retrieved {how_many} from {node_name} by {method_word(report.method)} in {report.seconds:.2f} s"
        + (f" ({len(report.skipped)} already here)" if report.skipped else "")
        + (", complete" if report.complete else "")
    )
    failed = [(sop, reason) for sop, reason in report.failed.items() if reason != NOT_FETCHED_CANCELLED]
    for sop, reason in failed[:20]:
        print(f"  missing {sop}: {reason}")
    if len(failed) > 20:
        print(f"  ... and {len(failed) - 20} more (use --json for all)")
    not_fetched = len(report.failed) - len(failed)
    if not_fetched:
        print(f"  {counted(not_fetched, 'instance', 'instances')} not fetched: {NOT_FETCHED_CANCELLED}")
    for warning in report.warnings:
        print(f"  warning: {warning}")


def _cancelled(bar: ProgressBar, kept: int) -> int:
    resume = "run the same command again to resume (instances already here are not fetched again)"
    print(cancelled_message(bar.done, bar.total, kept, "instances", resume), file=sys.stderr, flush=True)
    return Exit.INTERRUPTED


def add_commands(sub) -> None:
    from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE

    nodes_help = "node list file (default $DICOMPLUS_NODES, else ~/.config/dicomplus/nodes.json)"

    p = sub.add_parser(
        "query",
        help="query a node (C-FIND, or QIDO-RS for a DICOMweb node)",
        epilog="KEYWORD=VALUE is read as by 'dicomplus search' (see its --help): keywords in any case, "
        "dates as 2020, 2020-03-15 or 2020-01-01..2020-12-31, names as FAMILY^GIVEN, "
        "Sequence.Keyword (ProcedureCodeSequence.CodeValue=CT*) sent inside the sequence's item; values in another "
        "form are refused with the form expected, before anything is sent.",
    )
    p.__class__ = IntermixedParser
    p.add_argument("node", type=node_spec, help="configured node name or AE@HOST:PORT")
    p.add_argument(
        "--level", type=str.lower, choices=["patient", "study", "series", "instance"], default="study"
    )
    p.add_argument("keys", nargs="*", metavar="KEYWORD=VALUE",
                   help="matching keys, e.g. PatientName=DOE* StudyDate=20240101-20241231 Modality=CT")  # fmt: skip
    p.add_argument("--model", choices=["study", "patient"], default="study",
                   help="information model (default study root; the patient level uses patient root)")  # fmt: skip
    p.add_argument(
        "--limit", type=number(int, 0), default=None, help="stop after N results (the rest is cancelled)"
    )
    p.add_argument("--columns", metavar="A,B,...", default=None, help="the columns to print (keywords)")
    p.add_argument(
        "--calling-ae",
        type=ae_title,
        default=DEFAULT_AE_TITLE,
        help=f"our AE title (default {DEFAULT_AE_TITLE})",
    )
    p.add_argument("--timeout", type=seconds, default=30.0, help="seconds to wait for an answer (default 30)")
    p.add_argument("--nodes", type=user_path, help=nodes_help)
    p.add_argument("--json", action="store_true", help="print a list of objects keyed by DICOM keyword")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("retrieve", help="retrieve a study, series or instances from a node into the database")
    p.add_argument("node", type=node_spec, help="configured node name or AE@HOST:PORT")
    p.add_argument(
        "--study", metavar="UID", help="the study (alone: all of it; with --series/--instance: their study)"
    )
    p.add_argument(
        "--series", metavar="UID", nargs="+", action="extend", help="series to retrieve (only these)"
    )
    p.add_argument("--instance", metavar="UID", nargs="+", action="extend", help="SOP instances to retrieve")
    p.add_argument("--method", type=retrieve_method, default=None,
                   help="get (C-GET), move (C-MOVE to our listener) or dicomweb (default: the node's own)")  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="fetch instances already in the database again")
    p.add_argument("--parallel", type=count, default=1, help="associations at once (default 1)")
    p.add_argument(
        "--retries", type=number(int, 0), default=2, help="retries after a transient failure (default 2)"
    )
    p.add_argument(
        "--listener-port",
        type=number(int, 1, 65535),
        default=None,
        help=f"C-MOVE: port of our listener (default {DEFAULT_PORT})",
    )
    p.add_argument(
        "--listener-ae",
        type=ae_title,
        default=None,
        help="C-MOVE: AE title of our listener (default: --calling-ae)",
    )
    p.add_argument("--listener-host", default=None, help="C-MOVE: address our listener binds (default: all)")
    p.add_argument(
        "--calling-ae",
        type=ae_title,
        default=DEFAULT_AE_TITLE,
        help=f"our AE title (default {DEFAULT_AE_TITLE})",
    )
    p.add_argument("--timeout", type=seconds, default=30.0, help="seconds to wait at each step (default 30)")
    p.add_argument("--nodes", type=user_path, help=nodes_help)
    p.add_argument("--json", action="store_true", help="print the retrieve report as JSON")
    p.set_defaults(func=cmd_retrieve)
