"""``dicomplus query`` and ``dicomplus retrieve``: C-FIND / C-GET / C-MOVE (or DICOMweb) against a
node. NODE is a configured node name (``dicomplus nodes add``) or ``AE@HOST:PORT``.

``query --json`` prints the same shape as local ``search --json``: a list of objects keyed by
DICOM keyword. ``retrieve --json`` prints the retrieve report.
"""

from __future__ import annotations

import argparse
import sys
import threading

from DICOMPlusLib.cli import ProgressBar, open_database, parse_keys, print_json, print_table
from DICOMPlusLib.errors import DICOMPlusError

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

_COLUMNS = {
    "patient": ["PatientID", "PatientName", "PatientBirthDate", "NumberOfPatientRelatedStudies"],
    "study": ["PatientID", "PatientName", "StudyDate", "ModalitiesInStudy", "StudyDescription", "StudyInstanceUID"],
    "series": ["Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances",
               "SeriesInstanceUID"],
    "instance": ["SeriesInstanceUID", "InstanceNumber", "SOPClassUID", "SOPInstanceUID"],
}  # fmt: skip


class _IntermixedParser(argparse.ArgumentParser):
    """Lets matching keys follow options (``query NODE --level series K=V``): argparse alone
    stops filling positionals once an option came between them."""

    def parse_known_args(self, args=None, namespace=None):
        if getattr(self, "_intermixing", False):
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _node(args):
    from DICOMPlusLib.network.nodes import NodeStore

    return NodeStore(args.nodes).resolve(args.node)


def cmd_query(args) -> int:
    from DICOMPlusLib.jobs import CancelToken
    from DICOMPlusLib.network.query import QueryReport, query

    node = _node(args)
    keys = parse_keys(args.keys)
    token = CancelToken()
    rows = []
    report = QueryReport()
    try:
        for record in query(node, args.level, keys, model=args.model, calling_ae_title=args.calling_ae,
                            limit=args.limit, cancel=token, timeout=args.timeout, report=report):  # fmt: skip
            rows.append(record.to_dict())
    except KeyboardInterrupt:
        token.cancel()
        raise
    if report.filtered or report.unchecked_keys:
        print(f"{node.name}: {report.message()}", file=sys.stderr)
    if args.json:
        print_json(rows)
        return 0
    print_table(rows, _COLUMNS[args.level], keys)
    if args.limit is not None and len(rows) >= args.limit:
        print(f"(stopped at --limit {args.limit})")
    return 0


def cmd_retrieve(args) -> int:
    from DICOMPlusLib.jobs import CancelToken
    from DICOMPlusLib.network.listener import ListenerConfig
    from DICOMPlusLib.network.retrieve import retrieve

    if not (args.study or args.series or args.instance):
        raise DICOMPlusError("give what to retrieve: --study UID, --series UID ... or --instance UID ...")
    node = _node(args)
    db = open_database(args)
    listener_config = None
    if args.listener_port is not None or args.listener_ae or args.listener_host:
        listener_config = ListenerConfig(
            ae_title=args.listener_ae or args.calling_ae,
            port=11112 if args.listener_port is None else args.listener_port,
            host=args.listener_host or "",
        )
    bar = ProgressBar("retrieve", not args.json)
    token = CancelToken()
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["report"] = retrieve(
                node, db, study_uid=args.study, series_uids=args.series or (), sop_instance_uids=args.instance or (),
                method=args.method, listener_config=listener_config, calling_ae_title=args.calling_ae,
                resume=not args.no_resume, progress=bar, cancel=token, timeout=args.timeout,
                retries=args.retries, parallel=args.parallel,
            )  # fmt: skip
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc
        finally:
            db.release_reader()

    worker = threading.Thread(target=run, name="dicomplus-retrieve", daemon=True)
    worker.start()
    interrupted = False
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:  # cancel cleanly: C-CANCEL, then abort after the grace period
        interrupted = True
        token.cancel()
        worker.join()
    finally:
        bar.close()
    if "error" in outcome:
        raise outcome["error"]
    report = outcome["report"]
    if args.json:
        print_json(report.to_dict())
    else:
        total = report.expected or len(report.done) + len(report.skipped)
        print(
            f"retrieved {len(report.done)} of {total} instance(s) from {node.name} by {report.method} in "
            f"{report.seconds:.2f} s"
            + (f" ({len(report.skipped)} already here)" if report.skipped else "")
            + (", cancelled" if report.cancelled else "")
            + (", complete" if report.complete else "")
        )
        for sop, reason in list(report.failed.items())[:20]:
            print(f"  missing {sop}: {reason}")
        if len(report.failed) > 20:
            print(f"  ... and {len(report.failed) - 20} more (use --json for all)")
        for warning in report.warnings:
            print(f"  warning: {warning}")
    if interrupted:
        return EXIT_INTERRUPTED
    return 0 if report.complete else EXIT_FAILED


def add_commands(sub) -> None:
    from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE

    nodes_help = "node list file (default $DICOMPLUS_NODES, else ~/.config/dicomplus/nodes.json)"

    p = sub.add_parser("query", help="query a node (C-FIND, or QIDO-RS for a DICOMweb node)")
    p.__class__ = _IntermixedParser
    p.add_argument("node", help="configured node name or AE@HOST:PORT")
    p.add_argument("--level", choices=["patient", "study", "series", "instance"], default="study")
    p.add_argument("keys", nargs="*", metavar="KEYWORD=VALUE",
                   help="matching keys, e.g. PatientName=DOE* StudyDate=20240101-20241231 Modality=CT")  # fmt: skip
    p.add_argument("--model", choices=["study", "patient"], default="study",
                   help="information model (default study root; the patient level uses patient root)")  # fmt: skip
    p.add_argument("--limit", type=int, default=None, help="stop after N results (the rest is cancelled)")
    p.add_argument(
        "--calling-ae", default=DEFAULT_AE_TITLE, help=f"our AE title (default {DEFAULT_AE_TITLE})"
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer (default 30)")
    p.add_argument("--nodes", help=nodes_help)
    p.add_argument("--json", action="store_true", help="print a list of objects keyed by DICOM keyword")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("retrieve", help="retrieve a study, series or instances from a node into the database")
    p.add_argument("node", help="configured node name or AE@HOST:PORT")
    p.add_argument(
        "--study", metavar="UID", help="the study (alone: all of it; with --series/--instance: their study)"
    )
    p.add_argument(
        "--series", metavar="UID", nargs="+", action="extend", help="series to retrieve (only these)"
    )
    p.add_argument("--instance", metavar="UID", nargs="+", action="extend", help="SOP instances to retrieve")
    p.add_argument("--method", choices=["get", "move", "dicomweb"], default=None,
                   help="C-GET, C-MOVE to our listener, or DICOMweb (default: the node's own)")  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="fetch instances already in the database again")
    p.add_argument("--parallel", type=int, default=1, help="associations at once (default 1)")
    p.add_argument("--retries", type=int, default=2, help="retries after a transient failure (default 2)")
    p.add_argument(
        "--listener-port", type=int, default=None, help="C-MOVE: port of our listener (default 11112)"
    )
    p.add_argument(
        "--listener-ae", default=None, help="C-MOVE: AE title of our listener (default: --calling-ae)"
    )
    p.add_argument("--listener-host", default=None, help="C-MOVE: address our listener binds (default: all)")
    p.add_argument(
        "--calling-ae", default=DEFAULT_AE_TITLE, help=f"our AE title (default {DEFAULT_AE_TITLE})"
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait at each step (default 30)")
    p.add_argument("--nodes", help=nodes_help)
    p.add_argument("--json", action="store_true", help="print the retrieve report as JSON")
    p.set_defaults(func=cmd_retrieve)
