"""Write docs/cli.md from the command line's own help (``python docs/gen_cli.py``).

Testing/test_docs.py fails when docs/cli.md differs from what this writes, so the reference
cannot drift from the code.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HEADER = """# Command-line reference

Generated from `dicomplus --help` and `dicomplus COMMAND --help` by `python docs/gen_cli.py`
(a test fails when this file is out of date). The README has a tour with examples.

"""


def render() -> str:
    os.environ["COLUMNS"] = "100"  # stable wrapping
    from DICOMPlusLib.cli import EXIT_MEANINGS, SERVERS_NOTE, build_parser

    parser = build_parser()
    parser.prog = "dicomplus"
    out = [HEADER, "```text\n", parser.format_help(), "```\n"]
    out += ["\n## Exit codes\n\nEvery command exits with one of these (`DICOMPlusLib.cli.Exit`):\n\n"]
    out += ["| code | meaning |\n|---|---|\n"]
    out += [f"| {int(code)} | {text} |\n" for code, text in EXIT_MEANINGS.items()]
    out += [f"\n{SERVERS_NOTE[0].upper()}{SERVERS_NOTE[1:]}.\n"]
    out += [
        "\nThe global options `--db`, `--store`, `-v` and `--json` are accepted before or after the command; "
        "`--nodes` before the command, and after the commands that take a node (echo, send, query, retrieve, "
        "nodes, export --send). "
        "Tables are aligned columns on a terminal and tab-separated (with a header line) when piped; "
        "colour and progress bars only on a terminal.\n\n"
        'Shell completion (bash, zsh): `eval "$(register-python-argcomplete dicomplus)"`.\n'
    ]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        out += [f"\n## dicomplus {name}\n\n```text\n", command.format_help()]
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            for child_name, child in action.choices.items():
                out += ["```\n", f"\n### dicomplus {name} {child_name}\n\n```text\n", child.format_help()]
        out.append("```\n")
    return "".join(out)


def main() -> int:
    target = Path(__file__).with_name("cli.md")
    target.write_text(render())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
