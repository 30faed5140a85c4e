# PYTHON_ARGCOMPLETE_OK
"""The ``dicomplus`` command line: :mod:`app` (global options, the parser, exit codes, shared
output helpers), :mod:`arguments` (what option values mean: numbers, paths, the database) and one module of subcommands per area (:mod:`database`, :mod:`loading`,
:mod:`export`, :mod:`bundle`, :mod:`network`, :mod:`nodes`, :mod:`qr`). Only the command modules
import ``rich`` and ``argcomplete``, and only the module of the command being run is imported.

``python -m DICOMPlusLib.cli`` and the ``dicomplus`` console script run :func:`main` through
:func:`~DICOMPlusLib.cli.entry.run`, which ends the process without the interpreter's teardown.
"""

from __future__ import annotations

from DICOMPlusLib.cli.app import (
    COMMAND_MODULES,
    EXIT_MEANINGS,
    SERVERS_NOTE,
    Exit,
    UsageError,
    build_parser,
    main,
)

__all__ = ["COMMAND_MODULES", "EXIT_MEANINGS", "SERVERS_NOTE", "Exit", "UsageError", "build_parser", "main"]
