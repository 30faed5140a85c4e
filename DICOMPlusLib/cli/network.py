"""``dicomplus`` subcommands for networking: echo, listen, send, serve (``nodes`` is in
:mod:`node_commands`, ``query`` and ``retrieve`` in :mod:`qr_commands`).

NODE is a configured node name (``dicomplus nodes add``) or ``AE@HOST:PORT``. The node list is
``--nodes FILE``, else ``$DICOMPLUS_NODES``, else ``~/.config/dicomplus/nodes.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from DICOMPlusLib.cli.app import (
    ENDING_SIGNALS,
    Exit,
    ProgressBar,
    UsageError,
    cancel_on_interrupt,
    cancelled_message,
    counted,
    first_signal,
    install_handlers,
    interrupted,
    is_dicomdir,
    not_dicom,
    note_signal,
    print_json,
)
from DICOMPlusLib.cli.arguments import (
    IntermixedParser,
    count,
    listen_port,
    location,
    number,
    open_database,
    require_paths,
    seconds,
    user_path,
)

NODES_HELP = "node list file (default $DICOMPLUS_NODES, else ~/.config/dicomplus/nodes.json)"


def node_store(args):
    from DICOMPlusLib.network.nodes import NodeStore

    return NodeStore(args.nodes)


def _emit(args, text: str, data: dict) -> None:
    """One line, written whole: print() writes the text and its newline apart, and a Ctrl-C
    between the two joined the next line ("stopped") to it."""
    if getattr(args, "json", False):
        import json

        text = json.dumps(data, ensure_ascii=False, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class _StopRequest:
    """Set by SIGTERM or SIGHUP (SIGINT raises KeyboardInterrupt as usual). A plain flag polled by
    :meth:`wait`: a signal handler must take no lock (an Event's could be held by the very code
    it interrupts, and that deadlocks)."""

    def __init__(self) -> None:
        self.requested = False
        self.signals = 0  # how many came: one more while stopping stops at once

    def wait(self) -> None:
        while not self.requested:
            time.sleep(0.2)


@contextlib.contextmanager
def _until_stopped():
    stop = _StopRequest()

    def handler(signum, frame) -> None:
        stop.requested = True
        stop.signals += 1
        note_signal(signum)  # and after SIGHUP, output to /dev/null

    previous = install_handlers([s for s in ENDING_SIGNALS if s != signal.SIGINT], handler)
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _log_warnings_to_stderr() -> None:
    """A server run from the command line shows what it refuses (rejected associations, dropped
    connections) even without --verbose, which logs everything."""
    import logging

    network = logging.getLogger("DICOMPlusLib.network")
    if logging.getLogger().handlers or any(getattr(h, "dicomplus_cli", False) for h in network.handlers):
        return  # --verbose (already shown) or already added
    from DICOMPlusLib.cli.log_handler import StderrHandler

    handler = StderrHandler()
    handler.dicomplus_cli = True  # type: ignore[attr-defined]  # a mark to find our own handler again
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("dicomplus: %(message)s"))
    network.addHandler(handler)


def _python_warnings_to_log() -> None:
    """pydicom warns (``warnings.warn``, two lines of source on stderr) about values it decodes
    from what peers send: a garbled command set, a bad UI value in a C-FIND identifier. For a
    server that is the peer's problem, answered already (one line of ours when the association is
    aborted): the warnings go to the log (``py.warnings``), which --verbose shows."""
    import logging

    logging.captureWarnings(True)
    logging.getLogger("py.warnings").addHandler(logging.NullHandler())


# -- echo --------------------------------------------------------------------------------------
def cmd_echo(args) -> int:
    from DICOMPlusLib.errors import CancelledError
    from DICOMPlusLib.jobs import CancelToken
    from DICOMPlusLib.network.echo import echo

    node = node_store(args).resolve(args.node)
    with cancel_on_interrupt(CancelToken()) as token:
        try:
            result = echo(node, calling_ae_title=args.calling_ae, timeout=args.timeout, cancel=token)
        except CancelledError:  # the association aborted; nothing else to report
            return interrupted(first_signal() or signal.SIGINT)
    if args.json:
        print_json(result.to_dict())
    elif result.ok:
        print(f"ok: {result.message} in {result.seconds * 1000:.0f} ms")
    else:
        problem = result.problem.value if result.problem else "unknown"
        said = problem.lower() in result.message.lower()  # the message names it already: once is enough
        print(f"failed: {result.message}" if said else f"failed ({problem}): {result.message}")
    return Exit.OK if result.ok else Exit.FAILED


def ae_title(value: str) -> str:
    """argparse type of an AE title option (PS3.5 6.2: at most 16 characters)."""
    text = value.strip()
    if len(text) > 16:
        raise argparse.ArgumentTypeError(
            f"{value!r} has {len(text)} characters; an AE title has at most 16 (PS3.5 6.2)"
        )
    if not text or "\\" in text or any(ord(c) < 32 or ord(c) > 126 for c in text):
        raise argparse.ArgumentTypeError(
            f"{value!r}: an AE title is 1-16 printable ASCII characters, no backslash"
        )
    return text


def node_spec(value: str) -> str:
    """argparse type of NODE (a configured name or ``AE@HOST:PORT``): an address is checked whole
    here (AE title, a port from 1 to 65535), so a malformed one is a usage error (exit 2) like
    any other malformed value."""
    if "@" in value:
        node_address(value)
    return value


def node_address(value: str) -> str:
    """argparse type of ``AE@HOST:PORT`` (``nodes add``): the address must be whole."""
    from DICOMPlusLib.errors import NetworkError, NodeAddressError, NodeAddressProblem
    from DICOMPlusLib.network.nodes import RemoteNode

    ae, sep, _ = value.partition("@")
    if sep:
        ae_title(ae)  # its own message (how many characters)
    try:
        RemoteNode.parse(value)
    except NodeAddressError as exc:
        # what is missing, in the words of the address (the library's message also offers "a
        # configured node name", which nodes add does not take and an address with @ is not)
        example = "e.g. ORTHANC@192.0.2.10:4242"
        if exc.problem is NodeAddressProblem.NO_AE_TITLE:
            raise argparse.ArgumentTypeError(
                f"{value!r} has no AE title: give AE@HOST:PORT, {example}"
            ) from None
        if exc.problem is NodeAddressProblem.NO_PORT:
            raise argparse.ArgumentTypeError(
                f"{value!r} has no port number: give AE@HOST:PORT, {example} (the server's DICOM "
                "port; 104, 4242 and 11112 are common)"
            ) from None
        raise argparse.ArgumentTypeError(f"cannot read {value!r}: give AE@HOST:PORT, {example}") from None
    except NetworkError as exc:  # a port out of range: said as it is
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def ae_titles(value: str) -> str:
    """argparse type of ``--allow AE,AE``."""
    return ",".join(ae_title(a) for a in value.split(",") if a.strip())


# -- listen ------------------------------------------------------------------------------------
def _split_aes(text: str | None) -> tuple[str, ...]:
    return tuple(a.strip() for a in (text or "").split(",") if a.strip())


@contextlib.contextmanager
def _port_option():
    """A port in use names the option that chooses another (the library's message, shared with
    the Slicer panel and retrieve's C-MOVE listener, names none)."""
    import errno

    from DICOMPlusLib.errors import NetworkError

    try:
        yield
    except NetworkError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            raise NetworkError(f"{exc} (--port N; 0: any free port)") from None
        raise


def cmd_listen(args) -> int:
    from DICOMPlusLib.network.listener import STOP_GRACE, Listener, ListenerConfig

    db = open_database(args, create=True)
    config = ListenerConfig(
        ae_title=args.ae_title,
        port=args.port,
        host=args.host,
        allowed_calling_aets=_split_aes(args.allow),
        require_called_ae=args.require_called_ae,
        series_idle=args.idle,
        fsync=args.fsync,
    )
    listener = Listener(db, config)

    def on_instance(i) -> None:
        if not (args.verbose or args.json):  # one line per series unless -v
            return
        _emit(
            args,
            f"stored {i.sop_instance_uid} (series {i.series_instance_uid}) from {i.calling_ae or i.peer}",
            {"event": "instance", "SOPInstanceUID": i.sop_instance_uid, "SeriesInstanceUID": i.series_instance_uid,
             "StudyInstanceUID": i.study_instance_uid, "calling_ae": i.calling_ae, "status": i.status},
        )  # fmt: skip

    def on_series(s) -> None:
        _emit(
            args,
            f"received series {s.series_instance_uid}: {counted(s.count, 'instance', 'instances')}"
            + (f" (and {counted(s.resent, 're-sent copy', 're-sent copies')})" if s.resent else "")
            + f" of patient {s.patient_id or '(no ID)'} from {s.calling_ae}",
            {"event": "series_complete", "SeriesInstanceUID": s.series_instance_uid,
             "StudyInstanceUID": s.study_instance_uid, "count": s.count, "resent": s.resent,
             "reason": s.reason},
        )  # fmt: skip

    listener.subscribe(on_instance, on_series)
    _log_warnings_to_stderr()
    from DICOMPlusLib.cli.log_handler import report_rejections

    with _until_stopped() as stop, report_rejections(args, config, _emit):
        try:  # Ctrl-C once the port is open (even during the banner) is the normal end
            with _port_option():
                listener.start()
            info = listener.describe()
            allow = ", ".join(config.allowed_calling_aets) or "any calling AE title"
            if config.require_called_ae:
                allow += f", called AE title {config.ae_title} only"
            _emit(
                args,
                f"listening as {info['ae_title']} on {args.host or 'all interfaces'} port {info['port']} "
                f"(accepting {allow}); storing into {location(db)}; one line per series (-v: per instance); "
                "Ctrl-C to stop",
                {"event": "listening", **info, "database": location(db)},
            )
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            # the associations under way get STOP_GRACE to finish; a second Ctrl-C or SIGTERM
            # aborts them at once (their partial files removed)
            first = stop.signals
            with contextlib.suppress(KeyboardInterrupt):
                listener.stop(STOP_GRACE, at_once=lambda: stop.signals > first)
    _emit(args, "stopped", {"event": "stopped"})
    return Exit.OK


# -- send --------------------------------------------------------------------------------------
def _say_cancelled(done: int, total: int, sent: int) -> None:
    """A cancelled send says how far it got (on stderr), above its summary, and exits 130."""
    resume = "run the same command again to send the rest (the node gets the first ones again)"
    print(cancelled_message(done, total, sent, "files", resume), file=sys.stderr, flush=True)


def cmd_send(args) -> int:
    from DICOMPlusLib.jobs import CancelToken
    from DICOMPlusLib.network import send as sending
    from DICOMPlusLib.network.send_models import SendOptions

    if bool(args.paths) == bool(args.study or args.series):
        raise UsageError("give either --study UID, --series UID, or files and folders to send")
    require_paths(*args.paths)
    node = node_store(args).resolve(args.node)
    bar = ProgressBar("send", not args.json)
    token = CancelToken()
    options = SendOptions(
        calling_ae_title=args.calling_ae, parallel=args.parallel, retries=args.retries, timeout=args.timeout
    )
    db = None if args.paths else open_database(args)
    with cancel_on_interrupt(token):
        try:
            if args.paths:
                report = sending.send_paths(node, args.paths, options, progress=bar, cancel=token)
            else:
                assert db is not None  # opened above when no paths are given
                report = sending.send_from_database(
                    db,
                    node,
                    study=args.study,
                    series=args.series,
                    options=options,
                    progress=bar,
                    cancel=token,
                )
        finally:
            bar.close()
    failed = [r for r in report.failed if not not_dicom(r.message)]
    ignored = [r for r in report.failed if not_dicom(r.message)]
    dicomdirs = [r for r in ignored if is_dicomdir(r.message)]
    if report.cancelled:  # why it stopped first, then what it did: the order it is read in
        _say_cancelled(bar.done, bar.total or len(report.results), report.sent)
    if args.json:
        print_json(report.to_dict())
    else:
        total = len(report.results) - len(ignored)
        how = (
            f"{counted(report.associations, 'association', 'associations')}"
            if report.transport == "DIMSE"
            else "STOW-RS"
        )
        print(
            f"sent {report.sent} of {total} to {node.address} in {report.seconds:.2f} s ({how})"
            + (f", {report.warnings} with warnings" if report.warnings else "")
            + (f", DICOMDIR {len(dicomdirs)}" if dicomdirs else "")
            + (f", not DICOM {len(ignored) - len(dicomdirs)}" if len(ignored) > len(dicomdirs) else "")
        )
        for r in failed[:20]:
            print(f"  failed {r.path}: {r.message}")
        if len(failed) > 20:
            print(f"  ... and {len(failed) - 20} more failures (use --json for all)")
        for r in ignored if args.verbose else ():
            print(f"  skipped {r.path}: {r.message}")
    if report.cancelled:
        return Exit.INTERRUPTED
    if failed:
        return Exit.FAILED
    if report.sent == 0:
        print("dicomplus: error: nothing to send (no DICOM instance found)", file=sys.stderr)
        return Exit.FAILED
    return Exit.OK


# -- retrieve methods: one vocabulary ------------------------------------------------------------
#: The words the CLI takes and prints for retrieve methods (case-insensitive on input).
METHOD_WORDS = ("get", "move", "dicomweb")


def retrieve_method(value: str) -> str:
    """argparse type: ``get``, ``move`` or ``dicomweb`` in any case (``C-GET``... also read)."""
    word = value.strip().lower().replace("_", "-").removeprefix("c-")
    if word not in METHOD_WORDS:
        raise argparse.ArgumentTypeError(f"{value!r}: use get, move or dicomweb")
    return word


def method_word(method) -> str:
    """``RetrieveMethod.C_GET`` (or its value ``C-GET``) as the CLI says it: ``get``."""
    text = str(getattr(method, "value", method)).lower()
    return text.removeprefix("c-")


# -- serve -------------------------------------------------------------------------------------
def default_sample_database() -> Path:
    """Where ``serve --sample`` keeps its sample patients when ``--db`` is not given: a folder
    of its own, never the user's database."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "dicomplus" / "sample-pacs"


def cmd_serve(args) -> int:
    from DICOMPlusLib.network.pacs.qrscp import STOP_GRACE, Destination
    from DICOMPlusLib.network.pacs.sample import make_sample_data
    from DICOMPlusLib.network.pacs.serve import instructions, make_server

    if args.sample:
        if args.db is None:
            args.db = str(default_sample_database())
        db = open_database(args, create=True)
        added = make_sample_data(db)
        if not args.json:
            print(
                f"sample data in {location(db)}: {added['added']} instances added, "
                f"{added['already there']} already there (a database of its own; --db chooses another)",
                flush=True,
            )
    else:
        db = open_database(args)
    server = make_server(
        db,
        ae_title=args.ae_title,
        port=args.port,
        host=args.host,
        destinations=[Destination.parse(d) for d in args.destination or []],
        allowed_calling_aets=_split_aes(args.allow),
        require_called_ae=args.require_called_ae,
    )
    _log_warnings_to_stderr()
    _python_warnings_to_log()
    with _until_stopped() as stop:
        try:  # Ctrl-C once the port is open (even during the banner) is the normal end
            with _port_option():
                server.start()
            if args.json:
                print_json({**server.describe(), "sample": args.sample})
                sys.stdout.flush()
            else:
                sys.stdout.write(instructions(server, sample=args.sample) + "\n")  # whole: see _emit
                sys.stdout.flush()
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            # a retrieve under way gets STOP_GRACE to finish; a second Ctrl-C or SIGTERM ends it at once
            first = stop.signals
            with contextlib.suppress(KeyboardInterrupt):
                server.stop(STOP_GRACE, at_once=lambda: stop.signals > first)
    if not args.json:  # as listen says it (--json prints the configuration alone: one JSON document)
        _emit(args, "stopped", {})
    return Exit.OK


def add_commands(sub) -> None:
    from DICOMPlusLib.network.ae import DEFAULT_AE_TITLE, DEFAULT_PORT
    from DICOMPlusLib.network.pacs import SAMPLE_AE_TITLE, SAMPLE_PORT

    nodes_help = NODES_HELP
    require_called_help = (
        "reject associations whose called AE title is not --ae-title (default: accept any, like DCMTK and "
        "Orthanc); each rejection is logged with its reason"
    )

    p = sub.add_parser(
        "echo", help="C-ECHO a node (a QIDO-RS probe for a DICOMweb node) and diagnose what fails"
    )
    p.add_argument("node", type=node_spec, help="configured node name or AE@HOST:PORT")
    p.add_argument(
        "--calling-ae",
        type=ae_title,
        default=DEFAULT_AE_TITLE,
        help=f"our AE title (default {DEFAULT_AE_TITLE})",
    )
    p.add_argument("--timeout", type=seconds, default=10.0, help="seconds to wait at each step (default 10)")
    p.add_argument("--nodes", type=user_path, help=nodes_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_echo)

    p = sub.add_parser("listen", help="receive instances pushed by C-STORE into the database")
    p.add_argument(
        "--port",
        type=listen_port,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0: any free port)",
    )
    p.add_argument(
        "--ae-title",
        type=ae_title,
        default=DEFAULT_AE_TITLE,
        help=f"our AE title (default {DEFAULT_AE_TITLE})",
    )
    p.add_argument("--host", default="", help="address to listen on (default: all interfaces)")
    p.add_argument(
        "--allow", type=ae_titles, metavar="AE,...", help="accept only these calling AE titles (default: any)"
    )
    p.add_argument("--require-called-ae", action="store_true", help=require_called_help)
    p.add_argument(
        "--idle",
        type=seconds,
        default=5.0,
        help="seconds without data before a series is complete (default 5)",
    )
    p.add_argument(
        "--fsync",
        action="store_true",
        help="answer each instance only once its file, its row and its name are on the disk "
        "(survives a power cut, not only a crash; slower)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line for every event")
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser(
        "send", help="send files or stored studies/series to a node (C-STORE, or STOW-RS for a DICOMweb node)"
    )
    p.__class__ = IntermixedParser  # send NODE --parallel 2 FOLDER
    p.add_argument("node", type=node_spec, help="configured node name or AE@HOST:PORT")
    p.add_argument("paths", nargs="*", metavar="PATH", type=user_path, help="files or folders to send")
    p.add_argument("--study", help="send this stored study (StudyInstanceUID)")
    p.add_argument("--series", help="send this stored series (SeriesInstanceUID)")
    p.add_argument("--parallel", type=count, default=1, help="associations at once (default 1)")
    p.add_argument(
        "--retries", type=number(int, 0), default=1, help="retries of transient failures (default 1)"
    )
    p.add_argument(
        "--timeout",
        type=seconds,
        default=30.0,
        help="seconds to wait to connect and for the association to be accepted (default 30)",
    )
    p.add_argument(
        "--calling-ae",
        type=ae_title,
        default=DEFAULT_AE_TITLE,
        help=f"our AE title (default {DEFAULT_AE_TITLE})",
    )
    p.add_argument("--nodes", type=user_path, help=nodes_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "serve", help="serve a database as a PACS (Query/Retrieve SCP); --sample: the sample PACS"
    )
    p.add_argument(
        "--port",
        type=listen_port,
        default=SAMPLE_PORT,
        help=f"port (default {SAMPLE_PORT}; 0: any free port)",
    )
    p.add_argument(
        "--ae-title", type=ae_title, default=SAMPLE_AE_TITLE, help=f"its AE title (default {SAMPLE_AE_TITLE})"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0: every interface)",
    )
    p.add_argument(
        "--db", default=argparse.SUPPRESS, type=user_path, help="database to serve (default: the global --db)"
    )
    p.add_argument(
        "--sample",
        action="store_true",
        help="serve two sample patients (CT and MR) from a database of their own "
        "(~/.local/share/dicomplus/sample-pacs; --db chooses another)",
    )
    p.add_argument(
        "--destination", action="append", metavar="AE@HOST:PORT", help="a C-MOVE destination (repeat)"
    )
    p.add_argument(
        "--allow", type=ae_titles, metavar="AE,...", help="accept only these calling AE titles (default: any)"
    )
    p.add_argument("--require-called-ae", action="store_true", help=require_called_help)
    p.add_argument("--json", action="store_true", help="print the configuration as JSON")
    p.set_defaults(func=cmd_serve)
