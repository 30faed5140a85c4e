"""Time candidates against each other in one run, alternating, and report medians and ratios.

Method (docs/performance.md): every candidate runs once per round, in the same order (A B A B
...), so slow drifts of a shared machine (other jobs, page cache, CPU frequency) hit all of them
alike. The first ``warmup`` rounds are discarded; the next ``repeat`` rounds (at least 5) are kept.
Each candidate is reported as median [min-max]; each one is compared with a named reference by
the ratio of medians and by the range of the per-round (paired) ratios.

A candidate is a command (run as a child process; its CPU time and peak resident memory come from
``os.wait4``) or a Python callable (run in this process; CPU time from ``time.process_time``).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MIN_REPEAT = 5
RECORD_MARKER = "<!-- bench: new rows go above this line -->"


class BenchError(RuntimeError):
    """A candidate failed or a benchmark is malformed."""


@dataclass(frozen=True)
class CommandMeasurement:
    """One run of a child process, from ``os.wait4``."""

    seconds: float  # wall time, spawn to exit
    user: float  # CPU seconds in user mode
    system: float  # CPU seconds in the kernel
    max_rss_kib: int  # peak resident set size of the child (ru_maxrss, KiB on Linux)
    returncode: int

    @property
    def cpu(self) -> float:
        return self.user + self.system


# Forks and execs the command from a small interpreter (python -S), waits with os.wait4 and
# writes "wall user system maxrss_kib exitcode" to the file descriptor given as argv[1].
# Why not Popen + os.wait4 directly: Linux carries the spawning process's peak RSS over into the
# child at exec, so a child of the benchmark process would report at least the benchmark
# process's own peak (hundreds of MB after an in-process candidate). Forked from this launcher,
# the floor is the launcher's ~7 MiB.
_LAUNCHER = """
import os, sys, time
fd, argv = int(sys.argv[1]), sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.close(fd)
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        os.write(2, f"{argv[0]}: {error}\\n".encode())
    os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
code = os.waitstatus_to_exitcode(status)
os.write(fd, f"{seconds!r} {usage.ru_utime!r} {usage.ru_stime!r} {usage.ru_maxrss} {code}".encode())
"""


def measure_command(
    command: Sequence[str] | str,
    *,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    shell: bool = False,
    stdout: int | None = subprocess.DEVNULL,
    check: bool = True,
) -> CommandMeasurement:
    """Run ``command`` once and measure its wall time, CPU time and peak memory.

    The figures are the child's own (``os.wait4`` on it alone, not ``RUSAGE_CHILDREN``), taken by
    a small launcher process so that the peak memory is not inflated by this process's (see
    ``_LAUNCHER``); a peak near the launcher's ~7 MiB means "at most that". Wall time runs from
    fork to exit. With ``shell=True`` the command runs under ``/bin/sh -c`` and the figures are
    the shell's, which include the command only when the shell execs it: prefer an argv list.
    """
    argv = ["/bin/sh", "-c", command] if shell else [str(word) for word in command]
    if shell and not isinstance(command, str):
        raise BenchError("shell=True takes the command as one string")
    read_end, write_end = os.pipe()
    try:
        with tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(
                [sys.executable, "-S", "-E", "-c", _LAUNCHER, str(write_end), *argv],
                cwd=cwd, env=None if env is None else dict(env), pass_fds=(write_end,),
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            )  # fmt: skip
            os.close(write_end)
            write_end = -1
            with os.fdopen(read_end, "rb") as pipe:
                read_end = -1
                figures = pipe.read().decode()
            process.wait()
            stderr.seek(0)
            tail = stderr.read()[-4000:].decode(errors="replace")
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    if process.returncode != 0 or not figures:
        raise BenchError(f"launcher for {command!r} failed ({process.returncode}):\n{tail}")
    seconds, user, system, max_rss, returncode = figures.split()
    measurement = CommandMeasurement(
        seconds=float(seconds),
        user=float(user),
        system=float(system),
        max_rss_kib=int(max_rss),
        returncode=int(returncode),
    )
    if check and measurement.returncode != 0:
        raise BenchError(f"{_shorten(command)} exited with {measurement.returncode}:\n{tail}")
    return measurement


#: How long the file system is waited for after a benchmark deleted files (:func:`remove_tree`)
#: before its rounds start: ext4 without a journal (this project's machine) counts an inode as
#: recently freed for 60 s once its inode table block is written (``os.sync`` does that at once).
SETTLE_S = 61.0
_DELETED_AT = Path(tempfile.gettempdir()) / "dicomplus-bench-deleted-at"


def remove_tree(path: str | os.PathLike) -> None:
    """Delete ``path`` (a folder or a file, if it exists), write the deletion out (``os.sync``)
    and remember when: :func:`run` starts its rounds :data:`SETTLE_S` after it (see
    :class:`SetAside`)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    os.sync()
    _DELETED_AT.write_text(repr(time.time()))


def wait_for_deletions(progress: Callable[[str], object] | None = None, *, name: str = "") -> float:
    """Sleep until :data:`SETTLE_S` after the last :func:`remove_tree` (of any benchmark run on
    this machine); the seconds slept."""
    try:
        deleted_at = float(_DELETED_AT.read_text())
    except (OSError, ValueError):
        return 0.0
    left = deleted_at + SETTLE_S - time.time()
    if left <= 0:
        return 0.0
    if progress is not None:
        progress(
            f"{name}: waiting {left:.0f} s after deleting files, before the first round (bench/runner.py SetAside)"
        )
    time.sleep(left)
    return left


class SetAside:
    """Where the runs of a benchmark put what they wrote instead of deleting it: moved (renamed)
    into ``root`` after being timed, deleted with ``root`` when the benchmark ends (:meth:`remove`).

    Why not delete each run's output: on ext4 without a journal (this project's machine), a new
    file's inode is taken only after the kernel has looked at every inode of the block group freed
    in the last 60 s (360 s while its inode table block is dirty), and new files of a folder all
    come from the first group of its flex group with a free inode. Deleting each run's 300 files
    as soon as they were timed gave that group thousands of recently freed inodes within a few
    rounds: the kernel time of a candidate that creates files grew run after run (a 4-series
    retrieve's from 0.17 s to 0.37 s over four back-to-back runs of ``bench retrieve``, while its
    user time stayed 0.18 s), more for one process creating them in one thread than for four at
    once (docs/performance.md, session 17). Nobody's retrieve or import comes a few seconds after
    the deletion of thousands of files; the bench's own deletions measured the file system.

    After each move the file system is written out (``os.sync``: no dirty data piles up to the
    kernel's background writeback threshold and is written during a later timed run) and the moved
    files leave the page cache (``POSIX_FADV_DONTNEED``: the rounds' outputs, several GB, do not
    push the inputs out of memory)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        remove_tree(self.root)
        self.root.mkdir(parents=True)
        self._count = 0

    def move(self, *paths: str | os.PathLike, recreate: bool = False) -> None:
        """Move each path (which must exist) into the set-aside folder; ``recreate``: make an
        empty folder in its place."""
        moved = []
        for path in paths:
            path = Path(path)
            self._count += 1
            target = self.root / f"{self._count}-{path.name}"
            os.rename(path, target)
            moved.append(target)
            if recreate:
                path.mkdir()
        os.sync()
        for target in moved:
            drop_from_cache(target)

    def remove(self) -> None:
        remove_tree(self.root)


def drop_from_cache(path: Path) -> None:
    """Drop the clean pages of ``path`` (a file, or every file under a folder) from the page cache
    (``POSIX_FADV_DONTNEED``; dirty pages stay: ``os.sync()`` first); a file that cannot be
    opened is passed over."""
    files = [path] if path.is_file() else (Path(d) / f for d, _, names in os.walk(path) for f in names)
    for file in files:
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _shorten(command: Sequence[str] | str, limit: int = 300) -> str:
    """The command for an error message: a long one (hundreds of file names) would bury the
    exit status and the child's own error output that follow it."""
    text = command if isinstance(command, str) else shlex.join(str(word) for word in command)
    return text if len(text) <= limit else f"{text[:limit]} ... ({len(text)} characters)"


def python_command(code: str, *args: str) -> list[str]:
    """argv running ``code`` in a fresh interpreter (this one), e.g. to get a callable's peak
    memory through :func:`measure_command`."""
    return [sys.executable, "-c", code, *args]


@dataclass(frozen=True)
class Candidate:
    """Something to time: exactly one of ``command`` (argv list, or a string with ``shell``) or
    ``function`` (called with no arguments). ``before`` runs untimed before every run (e.g. to
    empty an output folder), ``after`` untimed after it (e.g. to remove what it wrote: the page
    cache's dirty data of every candidate's last output, kept, can pass the kernel's background
    writeback threshold, which then writes it out during other candidates' timed runs)."""

    name: str
    command: Sequence[str] | str | None = None
    function: Callable[[], object] | None = None
    shell: bool = False
    cwd: str | os.PathLike | None = None
    env: Mapping[str, str] | None = None
    before: Callable[[], object] | None = None
    after: Callable[[], object] | None = None
    label: str = ""  # how the candidate is described in reports (default: the command)

    def __post_init__(self) -> None:
        if (self.command is None) == (self.function is None):
            raise BenchError(f"candidate {self.name!r}: give exactly one of command and function")

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.command is None:
            return (
                f"{getattr(self.function, '__module__', '?')}.{getattr(self.function, '__qualname__', '?')}()"
            )
        if isinstance(self.command, str):
            return self.command
        words = [str(word) for word in self.command]
        shown = " ".join(words[:6]) + (f" ... (+{len(words) - 6} args)" if len(words) > 6 else "")
        return shown

    def run_once(self) -> tuple[float, float, float, int | None]:
        """(wall seconds, CPU seconds, of them in the kernel, peak RSS KiB or None)."""
        if self.before is not None:
            self.before()
        if self.command is not None:
            m = measure_command(self.command, cwd=self.cwd, env=self.env, shell=self.shell)
            result = m.seconds, m.cpu, m.system, m.max_rss_kib
        else:
            times_start = os.times()
            cpu_start = time.process_time()
            start = time.perf_counter()
            self.function()
            seconds = time.perf_counter() - start
            kernel = os.times().system - times_start.system
            result = seconds, time.process_time() - cpu_start, kernel, None
        if self.after is not None:
            self.after()
        return result


@dataclass
class Benchmark:
    """What a bench/<name>.py module's ``benchmark(work_dir)`` returns."""

    name: str
    description: str
    candidates: list[Candidate]
    reference: str  # name of the candidate the others are compared with
    work: dict[str, float] = field(default_factory=dict)  # e.g. {"files": 300, "MB": 157.3}
    #: Checks what the last run of each candidate left (e.g. every instance stored), called once
    #: after the last round when every round completed; not after a run that stopped early,
    #: whose last round is partial. A BenchError from it fails the benchmark.
    verify: Callable[[], object] | None = None
    cleanup: Callable[[], object] | None = None  # always called, also after a failure
    #: Further (candidate, its own reference) comparisons, e.g. a whole process against the peer's
    #: whole process, besides every candidate against ``reference``.
    pairs: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Timing:
    name: str
    description: str
    seconds: list[float]
    cpu: list[float]
    max_rss_kib: list[int]
    #: Of ``cpu``, the seconds in the kernel (system calls: on this project's machine, creating a
    #: file after many were deleted costs the kernel 0.1-0.5 ms, docs/performance.md)
    system: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def minimum(self) -> float:
        return min(self.seconds)

    @property
    def maximum(self) -> float:
        return max(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def system_median(self) -> float:
        return statistics.median(self.system) if self.system else 0.0

    @property
    def peak_rss_kib(self) -> int | None:
        return max(self.max_rss_kib) if self.max_rss_kib else None


@dataclass
class Comparison:
    """``name`` against the reference: time ratio > 1 means slower than the reference."""

    name: str
    reference: str
    time_ratio: float  # median(name) / median(reference)
    paired_min: float  # range of the per-round ratios
    paired_max: float

    @property
    def throughput_ratio(self) -> float:
        return 1.0 / self.time_ratio if self.time_ratio else float("inf")

    def sentence(self) -> str:
        return (
            f"{self.name} / {self.reference} = {self.throughput_ratio:.2f}x throughput "
            f"(time {self.time_ratio:.2f}x, paired {self.paired_min:.2f}-{self.paired_max:.2f}x)"
        )


@dataclass
class Result:
    benchmark: str
    description: str
    reference: str
    repeat: int
    warmup: int
    timings: dict[str, Timing]
    comparisons: list[Comparison]
    work: dict[str, float]
    machine: dict[str, object]
    command_line: str
    started: str  # ISO 8601, local time with offset

    def comparison(self, name: str) -> Comparison:
        for comparison in self.comparisons:
            if comparison.name == name:
                return comparison
        raise KeyError(name)

    def to_dict(self) -> dict[str, object]:
        return {
            "benchmark": self.benchmark,
            "description": self.description,
            "date": self.started,
            "machine": self.machine,
            "command_line": self.command_line,
            "method": {"warmup_rounds": self.warmup, "rounds": self.repeat, "order": "alternating"},
            "work": self.work,
            "reference": self.reference,
            "candidates": {
                t.name: {
                    "description": t.description,
                    "median_s": t.median,
                    "min_s": t.minimum,
                    "max_s": t.maximum,
                    "cpu_median_s": t.cpu_median,
                    "system_median_s": t.system_median,
                    "peak_rss_kib": t.peak_rss_kib,
                    "seconds": t.seconds,
                }
                for t in self.timings.values()
            },
            "ratios": {
                c.name: {
                    "time_ratio": c.time_ratio,
                    "throughput_ratio": c.throughput_ratio,
                    "paired_min": c.paired_min,
                    "paired_max": c.paired_max,
                }
                for c in self.comparisons
            },
        }

    def report(self) -> str:
        """A plain-text report: one line per candidate, then one sentence per comparison."""
        m = self.machine
        lines = [
            f"{self.benchmark}: {self.description}",
            f"machine: {m['nproc']} CPUs, {m['cpu_model']}, {m['system']}, Python {m['python']}, "
            f"load {m['loadavg']}",
            f"method: {self.warmup} warm-up round(s) discarded, {self.repeat} rounds alternating "
            f"{' '.join(self.timings)}; median [min-max]",
        ]
        header = ["candidate", "median s", "[min-max] s", "CPU s", "sys s"]
        header += [f"{unit}/s" for unit in self.work]
        header += ["peak RSS", "what"]
        rows = [header]
        for t in self.timings.values():
            name = t.name + (" (ref)" if t.name == self.reference else "")
            row = [name, f"{t.median:.4f}", f"[{t.minimum:.4f}-{t.maximum:.4f}]", f"{t.cpu_median:.3f}"]
            row.append(f"{t.system_median:.3f}")
            row += [_format_rate(amount / t.median) for amount in self.work.values()]
            row += [_format_kib(t.peak_rss_kib), t.description]
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        for row in rows:
            lines.append(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
            )
        lines += [c.sentence() for c in self.comparisons]
        return "\n".join(lines)

    def markdown_row(self) -> str:
        """One row for the results table in docs/performance.md."""
        figures = "; ".join(
            f"{t.name} {t.median:.4f} s [{t.minimum:.4f}-{t.maximum:.4f}]" for t in self.timings.values()
        )
        ratios = "; ".join(c.sentence() for c in self.comparisons)
        m = self.machine
        machine = f"{m['nproc']} CPUs, {m['cpu_model']}, load {m['loadavg']}"
        return f"| {self.started[:10]} | {self.benchmark} | {machine} | `{self.command_line}` | {figures} | {ratios} |"


def _format_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _format_kib(kib: int | None) -> str:
    if kib is None:
        return "-"
    return f"{kib / 1024:.1f} MiB"


def machine_info() -> dict[str, object]:
    """nproc, CPU model, OS, Python and the load average when the run started."""
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {
        "nproc": nproc,
        "cpu_model": cpu_model,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "loadavg": load,
        "hostname": platform.node(),
    }


def run(
    benchmark: Benchmark,
    *,
    repeat: int = MIN_REPEAT,
    warmup: int = 1,
    reference: str | None = None,
    command_line: str = "",
    progress: Callable[[str], object] | None = None,
) -> Result:
    """Run every candidate ``warmup + repeat`` times, alternating, and compare with the reference."""
    if repeat < MIN_REPEAT:
        raise BenchError(f"repeat={repeat}: at least {MIN_REPEAT} rounds are needed for a median")
    names = [c.name for c in benchmark.candidates]
    if len(names) < 2 or len(set(names)) != len(names):
        raise BenchError(f"{benchmark.name}: needs two or more candidates with distinct names, got {names}")
    reference = reference or benchmark.reference
    if reference not in names:
        raise BenchError(f"{benchmark.name}: reference {reference!r} is not one of {names}")

    wait_for_deletions(progress, name=benchmark.name)
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    machine = machine_info()
    timings = {c.name: Timing(c.name, c.describe(), [], [], []) for c in benchmark.candidates}
    for round_index in range(warmup + repeat):
        kept = round_index >= warmup
        for candidate in benchmark.candidates:
            try:
                seconds, cpu, system, rss = candidate.run_once()
            except BenchError as error:
                raise BenchError(f"{candidate.name}, round {round_index + 1}: {error}") from error
            if kept:
                timing = timings[candidate.name]
                timing.seconds.append(seconds)
                timing.cpu.append(cpu)
                timing.system.append(system)
                if rss is not None:
                    timing.max_rss_kib.append(rss)
        if progress is not None:
            what = "warm-up" if not kept else f"round {round_index - warmup + 1}/{repeat}"
            progress(f"{benchmark.name}: {what} done")

    def compare(name: str, against: str) -> Comparison:
        timing, ref = timings[name], timings[against]
        paired = [a / b for a, b in zip(timing.seconds, ref.seconds, strict=True) if b > 0]
        return Comparison(
            name=name,
            reference=against,
            time_ratio=timing.median / ref.median if ref.median > 0 else float("inf"),
            paired_min=min(paired, default=float("nan")),
            paired_max=max(paired, default=float("nan")),
        )

    if benchmark.verify is not None:
        benchmark.verify()
    comparisons = [compare(name, reference) for name in timings if name != reference]
    for name, against in benchmark.pairs:
        if name not in timings or against not in timings:
            raise BenchError(f"{benchmark.name}: pair {name!r} / {against!r} names an unknown candidate")
        comparisons.append(compare(name, against))
    return Result(
        benchmark=benchmark.name,
        description=benchmark.description,
        reference=reference,
        repeat=repeat,
        warmup=warmup,
        timings=timings,
        comparisons=comparisons,
        work=dict(benchmark.work),
        machine=machine,
        command_line=command_line,
        started=started,
    )


def record(result: Result, path: str | os.PathLike) -> Path:
    """Append ``result`` to a results file: a JSON line to ``*.json``/``*.jsonl``, a table row to
    ``*.md`` (above :data:`RECORD_MARKER` when the file has it, else at the end)."""
    path = Path(path)
    if path.suffix in (".json", ".jsonl"):
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(result.to_dict(), sort_keys=True) + "\n")
        return path
    if path.suffix != ".md":
        raise BenchError(f"{path}: record to a .md, .json or .jsonl file")
    row = result.markdown_row()
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if RECORD_MARKER in text:
        text = text.replace(RECORD_MARKER, f"{row}\n{RECORD_MARKER}", 1)
    else:
        text = text + ("" if text.endswith("\n") or not text else "\n") + row + "\n"
    path.write_text(text, encoding="utf-8")
    return path
