"""What the values on a ``dicomplus`` command line mean, checked before any work: numbers in a
range (a usage error, exit 2, that names the range), positionals after options
(:class:`IntermixedParser`), paths that must exist, and the database ``--db`` names (never
created by a command that only reads; opened read-only, with one note, where it cannot be
written; its store checked before a command that writes into it starts).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from DICOMPlusLib.errors import DICOMPlusError, UsageError


class Parser(argparse.ArgumentParser):
    """argparse's parser with a cheaper help formatter: argparse makes one for every
    ``add_argument`` (to check its metavar) and each asks ``shutil.get_terminal_size``, which
    costs a command's start the import of ``shutil`` (with ``bz2``, ``lzma``: ~2 ms) and a
    failing ``ioctl`` per option when the output is not a terminal (~1.3 ms for ``retrieve``).
    The width is worked out as shutil does (``$COLUMNS``, else the terminal's, else 80), the
    terminal asked once."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=help_width())  # type: ignore[call-arg]


def help_width() -> int:
    """The width argparse would wrap help at: ``$COLUMNS`` or the terminal's columns (80 when
    stdout is no terminal), less argparse's margin of 2."""
    global _terminal_columns
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        if _terminal_columns is None:
            try:
                _terminal_columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                _terminal_columns = 0
        columns = _terminal_columns or 80
    return columns - 2


_terminal_columns: int | None = None


class IntermixedParser(Parser):
    """Lets positionals follow options (``query NODE --level series K=V``, ``send NODE
    --parallel 2 FOLDER``): argparse alone stops filling positionals once an option came between
    them ("unrecognized arguments: FOLDER"). A subparser takes it with ``p.__class__ = ...``."""

    def parse_known_args(self, args=None, namespace=None):
        if getattr(self, "_intermixing", False):
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


# -- numbers -----------------------------------------------------------------------------------------
def number(kind: type = int, low: float = 0, high: float | None = None, *, above: bool = False):
    """An argparse type for a number in a range: ``--timeout 0`` or ``--parallel 0`` is a usage
    error (exit 2) that names the range, not a traceback or a hang deep inside a command.
    ``above``: ``low`` itself is excluded (seconds must be more than 0)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if (
            value is None
            or not math.isfinite(value)
            or (value <= low if above else value < low)
            or (high is not None and value > high)
        ):
            word = "a whole number" if kind is int else "a number"
            bound = f"more than {low:g}" if above else f"{low:g} or more"
            if high is not None:
                bound = f"from {low:g} to {high:g}"
            raise argparse.ArgumentTypeError(f"{text!r}: use {word} {bound}")
        return value

    parse.__name__ = kind.__name__
    return parse


#: Seconds to wait (a timeout, an idle time): a zero or negative one is refused by the sockets.
seconds = number(float, 0, above=True)
#: How many at once (workers, associations): at least one.
count = number(int, 1)
#: A port to listen on (0: any free port).
listen_port = number(int, 0, 65535)


# -- paths -----------------------------------------------------------------------------------------
def user_path(text: str) -> str:
    """The ``type`` of every option and argument that names a file or folder: a leading ``~``
    (``~user``) is the home folder. The shell expands it only at the start of a word, so the ``~``
    of ``--from=~/x`` (or of a quoted ``"~/x"``) reached the command as it was: ``db migrate``
    looked for a folder named "~" here, and an output went into one. A ``postgresql://`` URL is
    left as it is (it never starts with ``~``)."""
    return os.path.expanduser(text)


# -- databases -------------------------------------------------------------------------------------
def database_file(path: str | os.PathLike | None) -> Path:
    """The sqlite file ``--db`` names (a folder or a suffix-less name holds ``dicomplus.sqlite``)."""
    from DICOMPlusLib.database.database import DB_FILE_NAME, default_database_path

    target = Path(path).expanduser() if path is not None else default_database_path()
    if target.is_dir() or target.suffix == "":
        target = target / DB_FILE_NAME
    return target


def location(db) -> str:
    """The database as output names it (a PostgreSQL URL without its password, or the file)."""
    from DICOMPlusLib.database.backends import location as db_location

    return db_location(db)


#: The databases a command opened, when the console script runs it (``cli/entry.py`` sets a
#: list): kept referenced until the process ends by ``os._exit``. A database is held by a
#: reference cycle (it and its ingest), so once the command's frames let go of it the cyclic
#: collector could free it at any allocation before the exit, closing its connections, and
#: SQLite checkpoints the WAL when the last one closes (~4 MB and three ``fdatasync`` after an
#: import of 320 large headers): whether it did depended on the collector's counts.
held: list | None = None


def open_database(args, *, create: bool = False):
    """The database of ``--db``. Only commands that store something (``create=True``) may
    create it: a typo in ``--db`` must not silently make an empty database."""
    db = _open_database(args, create)
    read_only = getattr(db, "read_only", "")
    if read_only and create:
        db.close()
        raise DICOMPlusError(
            f"cannot write the database {db.path}: {read_only}; choose a writable one with --db "
            "(or copy it to a writable folder)"
        )
    if read_only:  # reading works (search, info, inspect, convert, send, serve): one line says how
        print(f"dicomplus: note: {read_only_note(db)}", file=sys.stderr)
    if create and not getattr(args, "link", False):
        _check_store_writable(db)
    _release_store_at_exit(db)
    if held is not None:
        held.append(db)
    return db


def _release_store_at_exit(db) -> None:
    """The store's writer token goes when the command ends. The command leaves by ``os._exit``
    without closing its database (closing would checkpoint the WAL: cli/entry.py), so every
    command that wrote left its ``.writer-<token>.lock`` in the store until the next command swept
    it: a stray file in a folder users back up and count. A finalizer (run at exit by the entry's
    atexit functions, or when ``db`` is collected in a caller that runs ``main`` in-process)
    removes it; it holds no reference to ``db``."""
    import weakref

    store = getattr(db, "store", None)
    release = getattr(store, "release", None)
    if release is not None:
        weakref.finalize(db, release)


def read_only_note(db) -> str:
    """The line that says a database was opened for reading only, and why."""
    return f"the database {db.path} is opened read-only ({db.read_only}): commands that change it will fail"


def _check_store_writable(db) -> None:
    """A command that copies files into the store (import, retrieve, listen) checks that it can
    before it starts: a read-only or mistyped ``--store`` (a file, a read-only mount) was a
    traceback from an import or a DICOMweb retrieve, and a listener or C-GET that answered every
    instance 0xA700 without saying why."""
    try:
        db.store.check_writable()
    except DICOMPlusError as exc:
        db.close()
        raise DICOMPlusError(f"{exc}; choose a writable folder with --store (or another --db)") from None


def _open_database(args, create: bool):
    from DICOMPlusLib.database.backends import is_url
    from DICOMPlusLib.database.backends import open_database as open_backend

    path = getattr(args, "db", None)
    store = getattr(args, "store", None)
    # The parser's user_path expands --db=~/x and --store=~/x; again here for the namespaces made
    # in code: the database was made in a folder named "~" here, where the next command did not look.
    if path is not None and not is_url(path):
        path = user_path(path)
    if store is not None:
        store = user_path(store)
    if path is None and is_url(os.environ.get("DICOMPLUS_DB")):
        path = os.environ["DICOMPLUS_DB"]
    if is_url(path):  # the server says whether it exists; a new one gets its tables
        return open_backend(path, store=store)
    if not create:
        target = database_file(path)
        if not target.is_file() and path is None:
            raise UsageError(
                f"no database at {target} yet: import files first (dicomplus import PATH), "
                "or choose a database with --db or $DICOMPLUS_DB"
            )
        if not target.is_file():
            raise UsageError(
                f"no database at {path}; check --db (or $DICOMPLUS_DB), or create one with "
                f"dicomplus --db {path} import PATH"
            )
    return open_backend(path, store=store)


def require_paths(*paths) -> None:
    """A path the user named that does not exist is a usage error (exit 2), said before any work."""
    missing = [str(p) for p in paths if p is not None and not os.path.exists(p)]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
