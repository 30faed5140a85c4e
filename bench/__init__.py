"""DICOMPlus benchmarks: ``python -m bench --list``, ``python -m bench <name>``.

A benchmark is a module ``bench/<name>.py`` with a ``benchmark(work_dir)`` function returning a
:class:`bench.runner.Benchmark` (its candidates and the reference they are compared with). The
runner (:mod:`bench.runner`) times them alternately in one run; docs/performance.md describes the
method and keeps the results.
"""

from bench.runner import (
    BenchError,
    Benchmark,
    Candidate,
    CommandMeasurement,
    Result,
    measure_command,
    python_command,
    record,
    run,
)

__all__ = [
    "BenchError",
    "Benchmark",
    "Candidate",
    "CommandMeasurement",
    "Result",
    "measure_command",
    "python_command",
    "record",
    "run",
]
