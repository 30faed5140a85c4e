"""``dicomplus`` subcommands for DIMSE networking: echo, listen, send, serve, nodes.

NODE is a configured node name (``dicomplus nodes add``) or ``AE@HOST:PORT``. The node list is
``--nodes FILE``, else ``$DICOMPLUS_NODES``, else ``~/.config/dicomplus/nodes.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from DICOMPlusLib.cli import ProgressBar, open_database, print_json
from DICOMPlusLib.errors import DICOMPlusError

EXIT_FAILED = 1


def _nodes(args):
    from DICOMPlusLib.network.nodes import NodeStore

    return NodeStore(args.nodes)


def _emit(args, text: str, data: dict) -> None:
    if getattr(args, "json", False):
        import json

        print(json.dumps(data, ensure_ascii=False, default=str), flush=True)
    else:
        print(text, flush=True)


@contextlib.contextmanager
def _until_stopped():
    """Yields an Event set by SIGTERM (SIGINT raises KeyboardInterrupt as usual)."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- echo --------------------------------------------------------------------------------------
def cmd_echo(args) -> int:
    from DICOMPlusLib.network.echo import echo

    node = _nodes(args).resolve(args.node)
    result = echo(node, calling_ae_title=args.calling_ae, timeout=args.timeout)
    if args.json:
        print_json(result.to_dict())
    elif result.ok:
        print(f"ok: {result.message} in {result.seconds * 1000:.0f} ms")
    else:
        print(f"failed ({result.problem.value}): {result.message}")
    return 0 if result.ok else EXIT_FAILED


# -- listen ------------------------------------------------------------------------------------
def _split_aes(text: str | None) -> tuple[str, ...]:
    return tuple(a.strip() for a in (text or "").split(",") if a.strip())


def cmd_listen(args) -> int:
    from DICOMPlusLib.network.listener import Listener, ListenerConfig

    db = open_database(args)
    config = ListenerConfig(
        ae_title=args.ae_title,
        port=args.port,
        host=args.host,
        allowed_calling_aets=_split_aes(args.allow),
        series_idle=args.idle,
        engine=args.engine,
    )
    listener = Listener(db, config)

    def on_instance(i) -> None:
        _emit(
            args,
            f"stored {i.sop_instance_uid} (series {i.series_instance_uid}) from {i.calling_ae or i.peer}",
            {"event": "instance", "SOPInstanceUID": i.sop_instance_uid, "SeriesInstanceUID": i.series_instance_uid,
             "StudyInstanceUID": i.study_instance_uid, "calling_ae": i.calling_ae, "status": i.status},
        )  # fmt: skip

    def on_series(s) -> None:
        _emit(
            args,
            f"series complete: {s.series_instance_uid} ({s.count} instances from {s.calling_ae})",
            {"event": "series_complete", "SeriesInstanceUID": s.series_instance_uid,
             "StudyInstanceUID": s.study_instance_uid, "count": s.count, "reason": s.reason},
        )  # fmt: skip

    listener.subscribe(on_instance, on_series)
    with _until_stopped() as stop:
        listener.start()
        info = listener.describe()
        allow = ", ".join(config.allowed_calling_aets) or "any calling AE title"
        _emit(
            args,
            f"listening as {info['ae_title']} on {args.host or 'all interfaces'} port {info['port']} "
            f"(accepting {allow}); storing into {db.path}; Ctrl-C to stop",
            {"event": "listening", **info, "database": str(db.path)},
        )
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            listener.stop()
    _emit(args, "stopped", {"event": "stopped"})
    return 0


# -- send --------------------------------------------------------------------------------------
def _send_stow(args, node, bar, token) -> int:
    """Send to a DICOMweb node with STOW-RS."""
    from DICOMPlusLib.database.indexer import iter_files
    from DICOMPlusLib.network.dicomweb import client_for

    if args.paths:
        files = list(iter_files(args.paths))
    else:
        db = open_database(args)
        series = (
            [args.series]
            if args.series
            else [s.SeriesInstanceUID for s in db.search("series", {"StudyInstanceUID": args.study})]
        )
        files = [r.path for uid in series for r in db.instances(uid)]
    try:
        report = client_for(node).store(files, progress=bar, cancel=token)
    finally:
        bar.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print(f"STOW-RS to {node.name}: {len(report.done)} stored, {len(report.failed)} failed")
        for what, reason in report.failed.items():
            print(f"  failed {what}: {reason}")
    return 0 if not report.failed and not report.cancelled else 1


def cmd_send(args) -> int:
    from DICOMPlusLib.jobs import CancelToken
    from DICOMPlusLib.network import send as sending

    node = _nodes(args).resolve(args.node)
    if bool(args.paths) == bool(args.study or args.series):
        raise DICOMPlusError("give either --study UID, --series UID, or files and folders to send")
    bar = ProgressBar("send", not args.json)
    token = CancelToken()
    options = dict(
        calling_ae_title=args.calling_ae,
        parallel=args.parallel,
        retries=args.retries,
        progress=bar,
        cancel=token,
    )
    if node.retrieve_method.value == "DICOMweb":
        return _send_stow(args, node, bar, token)
    try:
        if args.paths:
            report = sending.send_paths(node, args.paths, **options)
        else:
            db = open_database(args)
            report = sending.send_from_database(db, node, study=args.study, series=args.series, **options)
    except KeyboardInterrupt:
        token.cancel()
        raise
    finally:
        bar.close()
    if args.json:
        print_json(report.to_dict())
    else:
        total = len(report.results)
        print(
            f"sent {report.sent} of {total} to {node.address} in {report.seconds:.2f} s "
            f"({report.associations} association{'s' if report.associations != 1 else ''})"
            + (f", {report.warnings} with warnings" if report.warnings else "")
            + (", cancelled" if report.cancelled else "")
        )
        for r in report.failed[:20]:
            print(f"  failed {r.path}: {r.message}")
        if len(report.failed) > 20:
            print(f"  ... and {len(report.failed) - 20} more failures (use --json for all)")
    return 0 if report.ok else EXIT_FAILED


# -- serve -------------------------------------------------------------------------------------
def cmd_serve(args) -> int:
    from DICOMPlusLib.network.qrscp import Destination
    from DICOMPlusLib.network.sample import make_sample_data
    from DICOMPlusLib.network.serve import instructions, make_server

    db = open_database(args)
    if args.sample:
        added = make_sample_data(db)
        print(
            f"sample data: {added['added']} instances added, {added['already there']} already there",
            flush=True,
        )
    server = make_server(
        db,
        ae_title=args.ae_title,
        port=args.port,
        host=args.host,
        destinations=[Destination.parse(d) for d in args.destination or []],
        allowed_calling_aets=_split_aes(args.allow),
    )
    with _until_stopped() as stop:
        server.start()
        if args.json:
            print_json(server.describe())
            sys.stdout.flush()
        else:
            print(instructions(server), flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return 0


# -- nodes -------------------------------------------------------------------------------------
def cmd_nodes_add(args) -> int:
    from DICOMPlusLib.network.nodes import RemoteNode, RetrieveMethod

    if args.address is None:
        if not args.dicomweb_url:
            raise DICOMPlusError("give AE@HOST:PORT, or --dicomweb URL for a DICOMweb node")
        node = RemoteNode.dicomweb(
            args.name,
            args.dicomweb_url,
            token=args.token or "",
            user=args.user or "",
            password=args.password or "",
        )
        store = _nodes(args)
        store.add(node, replace_existing=args.replace)
        print(f"added {node.name}: DICOMweb {node.dicomweb_url} ({store.path})")
        return 0
    parsed = RemoteNode.parse(args.address)
    node = RemoteNode(
        name=args.name,
        ae_title=parsed.ae_title,
        host=parsed.host,
        port=parsed.port,
        tls=args.tls,
        retrieve_method=RetrieveMethod.parse(args.retrieve),
        dicomweb_url=args.dicomweb_url or "",
        description=args.description or "",
        dicomweb_token=args.token or "",
        dicomweb_user=args.user or "",
        dicomweb_password=args.password or "",
    )
    store = _nodes(args)
    store.add(node, replace_existing=args.replace)
    print(f"added {node.name}: {node.address} ({store.path})")
    return 0


def cmd_nodes_list(args) -> int:
    store = _nodes(args)
    nodes = store.list()
    if args.json:
        print_json([n.to_dict() for n in nodes])
        return 0
    if not nodes:
        print(f"no nodes configured ({store.path}); add one with: dicomplus nodes add NAME AE@HOST:PORT")
        return 0
    for n in nodes:
        extra = " tls" if n.tls else ""
        web = f" {n.dicomweb_url}" if n.dicomweb_url else ""
        print(f"{n.name:16s} {n.address:40s} {n.retrieve_method.value}{extra}{web}")
    return 0


def cmd_nodes_remove(args) -> int:
    node = _nodes(args).remove(args.name)
    print(f"removed {node.name} ({node.address})")
    return 0


def add_commands(sub) -> None:
    from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE, DEFAULT_PORT
    from DICOMPlusLib.network.qrscp import SAMPLE_AE_TITLE, SAMPLE_PORT

    nodes_help = "node list file (default $DICOMPLUS_NODES, else ~/.config/dicomplus/nodes.json)"

    p = sub.add_parser("echo", help="C-ECHO a node and diagnose what fails")
    p.add_argument("node", help="configured node name or AE@HOST:PORT")
    p.add_argument(
        "--calling-ae", default=DEFAULT_AE_TITLE, help=f"our AE title (default {DEFAULT_AE_TITLE})"
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait at each step (default 10)")
    p.add_argument("--nodes", help=nodes_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_echo)

    p = sub.add_parser("listen", help="receive instances pushed by C-STORE into the database")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)"
    )
    p.add_argument("--ae-title", default=DEFAULT_AE_TITLE, help=f"our AE title (default {DEFAULT_AE_TITLE})")
    p.add_argument("--host", default="", help="address to listen on (default: all interfaces)")
    p.add_argument("--allow", metavar="AE,...", help="accept only these calling AE titles (default: any)")
    p.add_argument("--idle", type=float, default=5.0, help="seconds without data before a series is complete")
    p.add_argument("--engine", choices=("direct", "pynetdicom"), default="direct", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="one JSON object per line for every event")
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser("send", help="send files or stored studies/series to a node (C-STORE)")
    p.add_argument("node", help="configured node name or AE@HOST:PORT")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders to send")
    p.add_argument("--study", help="send this stored study (StudyInstanceUID)")
    p.add_argument("--series", help="send this stored series (SeriesInstanceUID)")
    p.add_argument("--parallel", type=int, default=1, help="associations at once (default 1)")
    p.add_argument("--retries", type=int, default=1, help="retries of transient failures (default 1)")
    p.add_argument(
        "--calling-ae", default=DEFAULT_AE_TITLE, help=f"our AE title (default {DEFAULT_AE_TITLE})"
    )
    p.add_argument("--nodes", help=nodes_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("serve", help="run the sample PACS (Query/Retrieve SCP) over a database")
    p.add_argument(
        "--port", type=int, default=SAMPLE_PORT, help=f"port (default {SAMPLE_PORT}; 0: any free port)"
    )
    p.add_argument("--ae-title", default=SAMPLE_AE_TITLE, help=f"its AE title (default {SAMPLE_AE_TITLE})")
    p.add_argument("--host", default="", help="address to listen on (default: all interfaces)")
    p.add_argument("--db", default=argparse.SUPPRESS, help="database to serve (default: the global --db)")
    p.add_argument("--sample", action="store_true", help="add two sample patients (CT and MR) first")
    p.add_argument(
        "--destination", action="append", metavar="AE@HOST:PORT", help="a C-MOVE destination (repeat)"
    )
    p.add_argument("--allow", metavar="AE,...", help="accept only these calling AE titles (default: any)")
    p.add_argument("--json", action="store_true", help="print the configuration as JSON")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("nodes", help="configured DICOM nodes: add, list, remove")
    nodes_sub = p.add_subparsers(dest="nodes_command", metavar="ACTION", required=True)
    a = nodes_sub.add_parser("add", help="add a node")
    a.add_argument("name")
    a.add_argument(
        "address", metavar="AE@HOST:PORT", nargs="?", help="omit for a DICOMweb-only node (--dicomweb)"
    )
    a.add_argument("--tls", action="store_true", help="connect with TLS")
    a.add_argument("--retrieve", default="C-GET", help="C-GET (default), C-MOVE or DICOMweb")
    a.add_argument(
        "--dicomweb",
        "--dicomweb-url",
        dest="dicomweb_url",
        help="DICOMweb service root, e.g. http://host:8042/dicom-web",
    )
    a.add_argument("--token", help="DICOMweb bearer token")
    a.add_argument("--user", help="DICOMweb user name (HTTP basic)")
    a.add_argument("--password", help="DICOMweb password (HTTP basic)")
    a.add_argument("--description")
    a.add_argument("--replace", action="store_true", help="replace a node of the same name")
    a.add_argument("--nodes", help=nodes_help)
    a.set_defaults(func=cmd_nodes_add)
    a = nodes_sub.add_parser("list", help="list the nodes")
    a.add_argument("--json", action="store_true")
    a.add_argument("--nodes", help=nodes_help)
    a.set_defaults(func=cmd_nodes_list)
    a = nodes_sub.add_parser("remove", help="remove a node")
    a.add_argument("name")
    a.add_argument("--nodes", help=nodes_help)
    a.set_defaults(func=cmd_nodes_remove)
