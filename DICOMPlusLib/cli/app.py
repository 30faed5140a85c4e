# PYTHON_ARGCOMPLETE_OK
"""The ``dicomplus`` command line: global options, the parser, exit codes and output helpers.

Shapes relied on by users and checks (see README): ``import``, ``info --json``, ``search
[--level L] [KEYWORD=VALUE ...] --json`` (a list of objects keyed by DICOM keyword), ``delete``.
``--db PATH`` or ``$DICOMPLUS_DB`` choose the database (:mod:`.arguments` opens it).
Errors print one line ``dicomplus: error: ...``; the exit codes are :class:`Exit`.

Only the modules of :mod:`DICOMPlusLib.cli` may import ``rich`` and ``argcomplete``
(lazily, so that start-up stays fast); the library proper never does: stock Slicer lacks them.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

from DICOMPlusLib import __version__
from DICOMPlusLib.cli.arguments import Parser, user_path
from DICOMPlusLib.cli.signals import (  # noqa: F401 - cancel_on_interrupt is used from here by the commands
    ENDING_SIGNALS,
    after_hangup,
    bar_on_screen,
    cancel_on_interrupt,
    ending_signals,
    first_signal,
    install_handlers,
    note_signal,
)
from DICOMPlusLib.errors import (
    DICOMPlusError,
    UsageError,
    space_error_in,
)

#: Each module adds its subcommands with ``add_commands(subparsers)``; a subparser sets
#: ``func`` (a callable taking the parsed arguments and returning the exit code). Only the
#: module of the command being run is imported (start-up time); ``--help`` imports them all.
COMMAND_MODULES = {
    "DICOMPlusLib.cli.database": ("import", "info", "search", "db", "delete"),
    "DICOMPlusLib.cli.loading": ("inspect", "convert"),
    "DICOMPlusLib.cli.export": ("export", "bundle"),
    "DICOMPlusLib.cli.network": ("echo", "listen", "send", "serve"),
    "DICOMPlusLib.cli.nodes": ("nodes",),
    "DICOMPlusLib.cli.qr": ("query", "retrieve"),
    "DICOMPlusLib.demo": ("demo",),
}


class Exit(enum.IntEnum):
    """Exit codes of every ``dicomplus`` command (:data:`EXIT_MEANINGS` says what each means;
    ``dicomplus --help`` and docs/cli.md show it)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    HANGUP = 129
    INTERRUPTED = 130
    TERMINATED = 143


EXIT_MEANINGS = {
    Exit.OK: "ok",
    Exit.FAILED: "failed, or did only part of the work (some files not stored, sent or retrieved)",
    Exit.USAGE: "usage: a bad option or value, or a database, path or node name that does not exist",
    Exit.HANGUP: "its terminal closed (SIGHUP): ended as by Ctrl-C",
    Exit.INTERRUPTED: "interrupted by Ctrl-C; completed work is kept (run the same command again to resume)",
    Exit.TERMINATED: "killed (SIGTERM: kill, a scheduler's time limit, a container stop): ended as by Ctrl-C",
}
#: ``listen`` and ``serve`` run until stopped: Ctrl-C, SIGTERM or SIGHUP is their normal end.
SERVERS_NOTE = (
    "listen and serve run until stopped: Ctrl-C, SIGTERM or SIGHUP ends them normally (0) once the"
    " transfers under way finish (up to 10 s; a second one ends them at once)"
)
EXIT_CODES_HELP = (
    "exit codes:\n"
    + "\n".join(f"  {int(code):<4d}{text}" for code, text in EXIT_MEANINGS.items())
    + f"\n  ({SERVERS_NOTE})"
)


# -- global options ------------------------------------------------------------------------------
#: Options accepted before and after the subcommand: (flags, argparse keyword arguments).
#: (flags, add_argument keyword arguments) of the options every command takes.
GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--db",),
        dict(
            metavar="PATH|URL",
            type=user_path,
            help="database file or folder, or a postgresql:// URL (default: $DICOMPLUS_DB, else "
            "~/.local/share/dicomplus/dicomplus.sqlite)",
        ),
    ),
    (
        ("--store",),
        dict(
            metavar="PATH",
            type=user_path,
            help="folder of the stored files (default: store/ beside an SQLite file; for PostgreSQL, "
            "the folder the database records, given once)",
        ),
    ),
    (("-v", "--verbose"), dict(action="store_true", help="say more (and log to stderr)")),
    (("--json",), dict(action="store_true", help="print JSON instead of text")),
)
#: Options taken before any command and after the commands that use them (``--nodes``: echo,
#: send, query, retrieve, nodes, export), as ``--db`` is before and after every command.
SHARED_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--nodes",),
        dict(
            metavar="FILE",
            type=user_path,
            help="node list file (default $DICOMPLUS_NODES, else ~/.config/dicomplus/nodes.json)",
        ),
    ),
)
_GLOBAL_DEFAULTS = {"db": None, "store": None, "nodes": None, "verbose": False, "json": False}


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    """Let every subcommand (nested ones too) take the global options: they default to
    SUPPRESS there so that a value given before the subcommand is not overwritten."""
    for flags, kwargs in GLOBAL_OPTIONS + SHARED_OPTIONS:
        existing = [parser._option_string_actions[f] for f in flags if f in parser._option_string_actions]
        if existing:
            existing[0].default = argparse.SUPPRESS
        elif (flags, kwargs) in GLOBAL_OPTIONS:
            parser.add_argument(*flags, **{**kwargs, "default": argparse.SUPPRESS})
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_global_options(child)


# -- output ------------------------------------------------------------------------------------------
def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _console(stream=None):
    from rich.console import Console

    return Console(file=stream or sys.stdout, highlight=False, soft_wrap=False)


def counted(n: int, one: str, many: str) -> str:
    """``n`` and the noun that goes with it: "1 study", "2 studies", "0 series"."""
    return f"{n} {one if n == 1 else many}"


def print_json(value) -> None:
    import json

    json.dump(value, sys.stdout, indent=1, ensure_ascii=False, default=_json_default)
    sys.stdout.write("\n")


def _json_default(value):
    if isinstance(value, tuple | set):
        return list(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def table_columns(rows: list[dict], columns: list[str], keys=(), chosen: str | None = None) -> list[str]:
    """The columns to print: ``chosen`` (``--columns A,B``, keywords in any case) or ``columns``
    plus those of the query keys the records carry."""
    if chosen:
        known = {c.lower(): c for row in rows[:1] for c in row} | {c.lower(): c for c in columns}
        out = []
        for name in (c.strip() for c in chosen.split(",") if c.strip()):
            if name.lower() not in known:
                raise UsageError(
                    f"--columns: no column {name!r}; choose from {', '.join(sorted(known.values()))}"
                )
            out.append(known[name.lower()])
        return out
    return columns + [k for k, _ in keys if k not in columns and rows and k in rows[0]]


#: Short headings for wide keywords in a terminal table (piped output keeps the keywords).
HEADINGS = {
    "NumberOfPatientRelatedStudies": "Studies",
    "NumberOfPatientRelatedSeries": "Series",
    "NumberOfPatientRelatedInstances": "Instances",
    "NumberOfStudyRelatedSeries": "Series",
    "NumberOfStudyRelatedInstances": "Instances",
    "NumberOfSeriesRelatedInstances": "Instances",
    "ModalitiesInStudy": "Modalities",
    "PatientBirthDate": "BirthDate",
}


_TEXT_COLUMNS = ("Name", "Description", "path")
_TEXT_WIDTH = 32
#: Which columns a narrow terminal hides first (UIDs never: they are what people copy). What
#: tells who and when (PatientName, then the series' own number and description, the date)
#: gives way last: a user looking for a patient needs the name more than the counts.
DROP_FIRST = ("StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfPatientRelatedSeries",
              "PatientBirthDate", "InstanceNumber", "NumberOfPatientRelatedStudies",
              "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances",
              "NumberOfPatientRelatedInstances", "ModalitiesInStudy", "PatientID", "StudyDate",
              "SeriesDescription", "SeriesNumber", "PatientName")  # fmt: skip


def _fit(rows: list[dict], columns: list[str], width: int, *, keep_all: bool) -> tuple[list[str], list[str]]:
    """The columns that fit ``width`` (text columns cut to _TEXT_WIDTH), and those left out
    that have a value.

    A column needs its heading whole too (rich cuts the other columns before a heading), and
    one with no value in any row goes first: an empty SeriesDescription took 19 columns of a
    120-column terminal, and rich cut "Modality" and "SeriesNumber" to make room for it."""

    def need(c: str) -> int:
        cells = max(len(_cell(row.get(c))) for row in rows)
        cells = min(cells, _TEXT_WIDTH) if c.endswith(_TEXT_COLUMNS) else cells
        return max(cells, len(HEADINGS.get(c, c))) + 2

    shown = list(columns)
    hidden: list[str] = []
    empty = [c for c in columns if not c.endswith("UID") and not any(_cell(row.get(c)) for row in rows)]
    for c in [*empty, *(c for c in DROP_FIRST if c not in empty)]:
        if keep_all or sum(need(x) for x in shown) <= width:
            break
        if c in shown and len(shown) > 1:
            shown.remove(c)
            if c not in empty:  # an empty column hides nothing
                hidden.append(c)
    # the room a wide column left: the most wanted of the narrower hidden ones that fit it
    for c in reversed(list(hidden)):
        if sum(need(x) for x in shown) + need(c) <= width:
            hidden.remove(c)
            shown = [x for x in columns if x in shown or x == c]
    return shown, hidden


def print_table(
    rows: list[dict],
    columns: list[str],
    keys: Sequence[tuple[str, str]] = (),
    *,
    chosen: str | None = None,
    total: int | None = None,
    offset: int = 0,
) -> None:
    """Records as aligned columns on a terminal, tab-separated (with a header line) when piped.

    ``total`` (all matches, when known; -1: more may match) adds a "showing N of M" line on a
    terminal.
    """
    if not rows:
        print("no match", file=sys.stderr if not stdout_is_terminal() else sys.stdout)
        return
    columns = table_columns(rows, columns, keys, chosen)
    if not stdout_is_terminal():
        print("\t".join(columns))
        for row in rows:
            print("\t".join(_cell(row.get(c)) for c in columns))
        return
    from rich.table import Table

    console = _console()
    shown, hidden = _fit(rows, columns, console.width, keep_all=bool(chosen))
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for c in shown:
        # UIDs are copied from here: never cut them; names and descriptions give way first.
        whole = max(len(_cell(row.get(c))) for row in rows) + 1 if c.endswith("UID") else None
        table.add_column(HEADINGS.get(c, c), no_wrap=True, overflow="ellipsis", min_width=whole,
                         max_width=_TEXT_WIDTH if c.endswith(_TEXT_COLUMNS) else None)  # fmt: skip
    columns = shown
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)
    if hidden:
        console.print(
            f"(too narrow for {', '.join(hidden)}: --columns chooses, --json shows all)", style="dim"
        )
    if total is not None and total > len(rows):
        first = offset + 1
        console.print(
            f"showing {len(rows)} of {total} (rows {first}-{offset + len(rows)}; "
            "--limit N, --offset N or --limit 0 for all)",
            style="dim",
        )
    elif total == -1:  # a page is full and counting all would read every header
        console.print(f"showing the first {len(rows)}; more may match (--limit 0 for all)", style="dim")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value).replace("\t", " ").replace("\n", " ")


class ProgressBar:
    """A progress bar on stderr (``rich``), shown only on a terminal. Also the callback
    ``(done, total, current)`` the library's long operations take; it remembers the last
    ``done``/``total`` so that a cancelled command can say how far it got."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self.done = 0
        self.total = 0
        self._last = 0.0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._lock = threading.Lock()

    def _start(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        # auto_refresh=False: no refresh thread (the importer forks its workers only while the
        # process has a single thread); the callback refreshes at most 10 times a second.
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[current]}", style="dim"),
            console=_console(sys.stderr),
            auto_refresh=False,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=None, current="")
        bar_on_screen[0] = True

    def __call__(self, done: int, total: int, current: str = "") -> None:
        self.done, self.total = done, total
        if not self.enabled:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._last < 0.1 and (done < total or not total):  # the last count always drawn
                return
            self._last = now
            if self._progress is None:
                self._start()
            progress, task = self._progress, self._task
            assert progress is not None and task is not None  # _start set both
            name = Path(current).name[-40:] if current else ""
            progress.update(task, completed=done, total=total or None, current=name)
            try:
                progress.refresh()
            except OSError:  # the terminal closed (EIO): the work goes on, undrawn
                self.enabled = False

    def close(self) -> None:
        with self._lock:
            if self._progress is not None:
                with contextlib.suppress(OSError):  # the terminal closed
                    if self._task is not None:  # the last count, which the 0.1 s throttle may have skipped
                        self._progress.update(self._task, completed=self.done, total=self.total or None)
                    self._progress.refresh()
                    self._progress.stop()
                self._progress = None
                bar_on_screen[0] = False


# -- Ctrl-C, kill and a closed terminal (signals.py) ---------------------------------------------
def exit_code(code: int) -> int:
    """A command that returned :attr:`Exit.INTERRUPTED` after a SIGTERM or SIGHUP exits 128 + it."""
    if code == Exit.INTERRUPTED and first_signal():
        return 128 + first_signal()
    return code


#: What import and send call a DICOMDIR (or DIRFILE) they skip.
DICOMDIR_REASON = "media storage directory"
#: What import and send call a file that is not a DICOM instance: importing a CD or a folder with
#: a viewer, a README or a DICOMDIR beside the images is not a partial failure.
NOT_DICOM_REASONS = (
    "not a DICOM file",
    "no SOPInstanceUID",
    "no SOP Class UID",
    "not a composite instance",
    DICOMDIR_REASON,
)


def not_dicom(reason: str) -> bool:
    return any(r in reason for r in NOT_DICOM_REASONS)


def is_dicomdir(reason: str) -> bool:
    """A DICOMDIR (a media storage directory, PS3.3 Annex F) is DICOM but holds no image: the
    summaries count it apart from the files that are not DICOM at all."""
    return DICOMDIR_REASON in reason


def cancelled_message(done: int, total: int, kept: int, unit: str, resume: str) -> str:
    """The one account a cancelled command prints (``total`` 0: not known yet)."""
    return f"cancelled after {f'{done}/{total}' if total else done} {unit}; {kept} kept; {resume}"


# -- new UIDs ----------------------------------------------------------------------------------------
UID_ROOT_HELP = "organisation UID root (default $DICOMPLUS_UID_ROOT, else 2.25 UUIDs)"


def uid_generator(args):
    """The UIDs of what a command writes (export, bundle save): under ``--uid-root``, else
    ``$DICOMPLUS_UID_ROOT``, else 2.25 UUIDs; the same rule for every command that makes UIDs."""
    from DICOMPlusLib.export.uids import UIDGenerator

    return UIDGenerator(args.uid_root or os.environ.get("DICOMPLUS_UID_ROOT") or None)


# -- search keys -------------------------------------------------------------------------------------
def parse_keys(items: list[str]) -> list[tuple[str, str]]:
    """``KEYWORD=VALUE`` arguments checked and put in DICOM form (see
    :mod:`DICOMPlusLib.database.typed_keys`); a bad one is a usage error."""
    from DICOMPlusLib.database.typed_keys import SearchKeyError, parse_typed_keys

    try:
        return parse_typed_keys(items)
    except SearchKeyError as exc:
        raise UsageError(str(exc)) from None


# -- the parser ----------------------------------------------------------------------------------------
def _modules_for(argv: list[str]) -> list[str]:
    """The command modules a command line needs: the one of its command, none for a bare
    ``--version``, all of them otherwise (help, completion, an unknown command)."""
    takes_value = {
        flags[0] for flags, kwargs in GLOBAL_OPTIONS + SHARED_OPTIONS if kwargs.get("action") != "store_true"
    }
    tokens = iter(argv)
    for token in tokens:
        if token in takes_value:
            next(tokens, None)
        elif token in ("-h", "--help"):
            break
        elif token == "--version":
            return []
        elif not token.startswith("-"):
            return [m for m, names in COMMAND_MODULES.items() if token in names] or list(COMMAND_MODULES)
    return list(COMMAND_MODULES)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the part that command line needs."""
    parser = Parser(
        prog="dicomplus",
        description="DICOMPlus: a DICOM database, network node and volume loader.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dicomplus {__version__}")
    for flags, kwargs in GLOBAL_OPTIONS + SHARED_OPTIONS:
        parser.add_argument(*flags, **kwargs)
    parser.set_defaults(**_GLOBAL_DEFAULTS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    modules = list(COMMAND_MODULES) if argv is None or "_ARGCOMPLETE" in os.environ else _modules_for(argv)
    for module in modules:
        importlib.import_module(module).add_commands(sub)
    for child in sub.choices.values():
        _add_global_options(child)
    return parser


def _complete(parser: argparse.ArgumentParser) -> None:
    """Shell completion (``eval "$(register-python-argcomplete dicomplus)"``); argcomplete is
    imported only when the shell asks for completions."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    with contextlib.suppress(ImportError):
        import argcomplete

        argcomplete.autocomplete(parser)


def _quiet_stdout() -> None:
    """After a broken pipe (``dicomplus search | head``): drop further output, no traceback."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    _complete(parser)
    args = parser.parse_args(argv)  # a usage error exits 2 (SystemExit), --help and --version 0
    if args.verbose:
        import logging

        from DICOMPlusLib.cli.log_handler import StderrHandler

        logging.basicConfig(
            level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", handlers=[StderrHandler()]
        )
    if not args.command:
        parser.print_help()
        return Exit.OK
    try:
        with ending_signals():
            return _run(args)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM or SIGHUP (Stopped), where no command caught it
        return interrupted(first_signal() or getattr(exc, "signum", signal.SIGINT))


def interrupted(signum: int) -> int:
    """The account of a command that has nothing partial to report (echo, or any command the
    signal stopped outside its own handling): one line; returns 128 + the signal."""
    name = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
    print(f"\ndicomplus: interrupted{name}", file=sys.stderr)
    return 128 + signum


def _run(args) -> int:
    try:
        code = args.func(args)
        sys.stdout.flush()
        return exit_code(int(code))
    except UsageError as exc:
        print(f"dicomplus: error: {exc}", file=sys.stderr)
        return Exit.USAGE
    except DICOMPlusError as exc:
        print(f"dicomplus: error: {exc}", file=sys.stderr)
        return Exit.FAILED
    except BrokenPipeError:
        _quiet_stdout()
        return Exit.OK
    except OSError as exc:
        if first_signal() == getattr(signal, "SIGHUP", None):
            return Exit.HANGUP  # a write to the closed terminal failed before its SIGHUP's handler ran
        full = space_error_in(exc)
        if full is None:
            raise
        # A full disk that no command turned into a DiskFullError: one line, not a traceback.
        where = f" holding {full.filename}" if full.filename else ""
        print(f"dicomplus: error: the disk{where} is full ({full.strerror}): free space and run the "
              "same command again", file=sys.stderr)  # fmt: skip
        return Exit.FAILED
