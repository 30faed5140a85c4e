"""Command line of the benchmark runner (see bench/__init__.py and docs/performance.md)."""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import shlex
import sys
from pathlib import Path

from bench.runner import MIN_REPEAT, BenchError, record, run

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / "_work"
NOT_BENCHMARKS = {"__init__", "__main__", "runner"}


def available() -> dict[str, str]:
    """{name: first line of its docstring} for every bench/<name>.py defining ``benchmark``.

    Read with ast, not imported, so a helper module that fails to import does not hide the rest.
    """
    found = {}
    for path in sorted(BENCH_DIR.glob("*.py")):
        if path.stem in NOT_BENCHMARKS or path.stem.startswith("_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        if any(isinstance(node, ast.FunctionDef) and node.name == "benchmark" for node in tree.body):
            found[path.stem] = (ast.get_docstring(tree) or "").strip().split("\n", 1)[0]
    return found


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time a benchmark's candidates alternately in one run and compare them.",
    )
    parser.add_argument("name", nargs="?", help="benchmark to run (bench/<name>.py), or 'all'")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "-r",
        "--repeat",
        type=int,
        default=MIN_REPEAT,
        help=f"kept rounds (>= {MIN_REPEAT}; default %(default)s)",
    )
    parser.add_argument(
        "-w", "--warmup", type=int, default=1, help="discarded rounds first (default %(default)s)"
    )
    parser.add_argument("--reference", help="candidate to compare with (default: the benchmark's)")
    parser.add_argument(
        "--record",
        action="append",
        default=[],
        metavar="FILE",
        help="append the result to FILE (.md table row or .json line); may be repeated",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of text")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="scratch data (default: bench/_work)")
    args = parser.parse_args(argv)

    benchmarks = available()
    if args.list:
        for name, summary in benchmarks.items():
            print(f"{name:20} {summary}")
        return 0
    if not args.name:
        parser.error("give a benchmark name, 'all' or --list")
    names = list(benchmarks) if args.name == "all" else [args.name]
    unknown = [n for n in names if n not in benchmarks]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; available: {', '.join(benchmarks) or 'none'}")

    command_line = shlex.join(["python", "-m", "bench", *argv])
    status = 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        benchmark = module.benchmark(args.work_dir / name)
        try:
            result = run(
                benchmark,
                repeat=args.repeat,
                warmup=args.warmup,
                reference=args.reference,
                command_line=command_line,
                progress=lambda message: print(message, file=sys.stderr, flush=True),
            )
        except BenchError as error:
            print(f"{name}: {error}", file=sys.stderr)
            status = 1
            continue
        finally:
            if benchmark.cleanup is not None:
                benchmark.cleanup()
        print(json.dumps(result.to_dict(), indent=2) if args.json else result.report())
        for path in args.record:
            print(f"recorded in {record(result, path)}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
