"""The benchmark runner (bench/runner.py): alternation, ratio direction, report shape, records,
and peak memory that is the child's own. Timings are checked for direction, not value."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time

import pytest

from dicomplus_testing.util import REPO_ROOT


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.import_module("bench.runner")


def _sleeper(seconds: float, name: str, log: list[str]):
    def sleep() -> None:
        log.append(name)
        time.sleep(seconds)

    return sleep


def _fast_and_slow(runner, log: list[str]):
    return runner.Benchmark(
        name="sleep",
        description="sleep 1 ms vs 20 ms",
        candidates=[
            runner.Candidate("fast", function=_sleeper(0.001, "fast", log)),
            runner.Candidate("slow", function=_sleeper(0.020, "slow", log)),
        ],
        reference="fast",
        work={"naps": 1},
    )


def test_alternates_and_compares_with_the_reference(runner):
    log: list[str] = []
    result = runner.run(_fast_and_slow(runner, log), repeat=5, warmup=1, command_line="test")

    # One warm-up round then five kept rounds, A B A B ...
    assert log == ["fast", "slow"] * 6
    fast, slow = result.timings["fast"], result.timings["slow"]
    assert len(fast.seconds) == len(slow.seconds) == 5
    assert fast.minimum <= fast.median <= fast.maximum
    assert slow.median > fast.median
    comparison = result.comparison("slow")
    assert comparison.reference == "fast"
    assert comparison.time_ratio > 5  # ~20x; slower than the reference
    assert comparison.throughput_ratio < 0.2
    assert 1 < comparison.paired_min <= comparison.paired_max


def test_ratio_direction_follows_the_reference(runner):
    result = runner.run(_fast_and_slow(runner, []), repeat=5, reference="slow")
    comparison = result.comparison("fast")
    assert comparison.time_ratio < 0.2
    assert comparison.throughput_ratio > 5
    assert comparison.sentence().startswith("fast / slow = ")


def test_report_and_dict_shape(runner):
    result = runner.run(_fast_and_slow(runner, []), repeat=5, command_line="python -m bench sleep")
    text = result.report()
    lines = text.splitlines()
    assert lines[0] == "sleep: sleep 1 ms vs 20 ms"
    assert lines[1].startswith("machine: ") and "CPUs" in lines[1]
    assert "5 rounds alternating fast slow" in lines[2]
    assert lines[3].split()[:3] == ["candidate", "median", "s"]
    assert lines[4].startswith("fast (ref)") and lines[5].startswith("slow ")
    assert lines[-1].startswith("slow / fast = ") and "x throughput" in lines[-1]

    data = json.loads(json.dumps(result.to_dict()))
    assert data["reference"] == "fast"
    assert data["method"] == {"warmup_rounds": 1, "rounds": 5, "order": "alternating"}
    assert set(data["candidates"]) == {"fast", "slow"}
    assert set(data["candidates"]["slow"]) >= {"median_s", "min_s", "max_s", "cpu_median_s", "peak_rss_kib"}
    assert data["ratios"]["slow"]["time_ratio"] > 5
    assert data["machine"]["nproc"] >= 1 and data["machine"]["cpu_model"]
    assert data["command_line"] == "python -m bench sleep"


def test_record_appends_rows(runner, tmp_path):
    result = runner.run(_fast_and_slow(runner, []), repeat=5, command_line="python -m bench sleep")
    table = tmp_path / "results.md"
    table.write_text(f"| date | benchmark |\n|---|---|\n{runner.RECORD_MARKER}\n\nAfter.\n")
    runner.record(result, table)
    runner.record(result, table)
    lines = table.read_text().splitlines()
    assert lines[2].startswith("| ") and "| sleep |" in lines[2] and "`python -m bench sleep`" in lines[2]
    assert lines[3] == lines[2]
    assert lines[4] == runner.RECORD_MARKER and lines[-1] == "After."

    jsonl = tmp_path / "results.jsonl"
    runner.record(result, jsonl)
    runner.record(result, jsonl)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [row["benchmark"] for row in rows] == ["sleep", "sleep"]


def test_rejects_too_few_rounds_and_bad_candidates(runner):
    with pytest.raises(runner.BenchError, match="at least 5"):
        runner.run(_fast_and_slow(runner, []), repeat=4)
    with pytest.raises(runner.BenchError, match="exactly one"):
        runner.Candidate("both", command=["true"], function=lambda: None)
    with pytest.raises(runner.BenchError, match="reference"):
        runner.run(_fast_and_slow(runner, []), reference="nobody")


def test_command_candidates_report_the_childs_own_peak_memory(runner):
    # Make this process big first: a child spawned directly would inherit this peak in ru_maxrss.
    ballast = bytearray(150 * 1024 * 1024)
    ballast[::4096] = b"\1" * len(ballast[::4096])
    small = runner.measure_command(["true"])
    big = runner.measure_command(
        runner.python_command("x = bytearray(80 * 1024 * 1024); x[::4096] = b'\\1' * len(x[::4096])")
    )
    del ballast
    assert small.returncode == 0 and small.seconds > 0
    assert small.max_rss_kib < 50 * 1024, small
    assert big.max_rss_kib > 80 * 1024, big
    with pytest.raises(runner.BenchError, match="exited with 3"):
        runner.measure_command(runner.python_command("raise SystemExit(3)"))


def test_cli_lists_the_floor_benchmark():
    listing = subprocess.run(
        [sys.executable, "-m", "bench", "--list"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0, listing.stderr
    assert any(line.split()[0] == "floor" for line in listing.stdout.splitlines())


def test_pairs_compare_a_candidate_with_its_own_peer(runner):
    """A benchmark can compare a process with the peer's process besides everyone with the
    reference; a pair naming an unknown candidate is refused."""
    log: list[str] = []
    bench = _fast_and_slow(runner, log)
    bench.candidates.append(runner.Candidate("slower", function=_sleeper(0.040, "slower", log)))
    bench.pairs = [("slower", "slow")]
    result = runner.run(bench, repeat=5, warmup=0)
    pair = [c for c in result.comparisons if (c.name, c.reference) == ("slower", "slow")]
    assert len(pair) == 1 and 1.3 < pair[0].time_ratio < 3.5  # ~2x
    assert {(c.name, c.reference) for c in result.comparisons} >= {("slow", "fast"), ("slower", "fast")}
    bench.pairs = [("slower", "nobody")]
    with pytest.raises(runner.BenchError, match="unknown candidate"):
        runner.run(bench, repeat=5, warmup=0)


def test_verify_runs_after_a_complete_run_only(runner):
    """``verify`` checks what the last round left, so it runs once after every round completed,
    never after a run that stopped early (its last round is partial: a check would report the
    work that never ran as lost, and hide why the run stopped)."""
    log: list[str] = []
    bench = _fast_and_slow(runner, log)
    verified: list[int] = []
    bench.verify = lambda: verified.append(len(log))
    runner.run(bench, repeat=5, warmup=1)
    assert verified == [12]  # once, after the 6 rounds of 2 candidates

    verified.clear()
    log.clear()
    bench.candidates[1] = runner.Candidate("slow", command=["false"], before=lambda: None)
    with pytest.raises(runner.BenchError) as failed:
        runner.run(bench, repeat=5, warmup=0)
    assert verified == []
    assert str(failed.value).startswith("slow, round 1: false exited with 1")


def test_a_failed_command_is_named_short(runner):
    """A command with hundreds of arguments is cut in the error, so that its exit status and the
    child's own error output stay readable."""
    words = ["sh", "-c", "echo the child said why >&2; exit 5", *[f"file{i:04}.dcm" for i in range(2000)]]
    with pytest.raises(runner.BenchError) as failed:
        runner.measure_command(words)
    message = str(failed.value)
    assert "exited with 5" in message and "the child said why" in message
    assert len(message) < 1000 and "characters)" in message


def test_before_and_after_run_untimed_around_every_run(runner):
    """``before`` and ``after`` run around each run of their candidate, warm-up included, and
    their time is not the run's (``after`` removes what a run wrote as soon as it is timed)."""
    log: list[str] = []
    bench = _fast_and_slow(runner, log)
    bench.candidates[0] = runner.Candidate(
        "fast",
        function=_sleeper(0.001, "fast", log),
        before=lambda: log.append("before"),
        after=lambda: (log.append("after"), time.sleep(0.2)),
    )
    result = runner.run(bench, repeat=5, warmup=1)
    assert log == ["before", "fast", "after", "slow"] * 6
    assert result.timings["fast"].maximum < 0.2  # the 0.2 s of each ``after`` is not counted


def test_kernel_time_is_reported_apart(runner):
    """The ``sys s`` column: of each candidate's CPU, the seconds in the kernel, for a command
    (``os.wait4``) and in-process (``os.times``). A loop of system calls spends most of its CPU
    there, a loop of arithmetic almost none."""
    syscalls = "import os\nfor _ in range(60000): os.stat('/')"
    arithmetic = "x = 0\nfor i in range(1000000): x += i * i"

    def in_process_syscalls() -> None:
        exec(syscalls, {})

    bench = runner.Benchmark(
        name="kernel",
        description="system calls vs arithmetic",
        candidates=[
            runner.Candidate("calls", command=[sys.executable, "-c", syscalls]),
            runner.Candidate("arithmetic", command=[sys.executable, "-c", arithmetic]),
            runner.Candidate("calls-in-process", function=in_process_syscalls),
        ],
        reference="calls",
    )
    result = runner.run(bench, repeat=5, warmup=0)
    calls, arithmetic_t, in_process = (result.timings[n] for n in ("calls", "arithmetic", "calls-in-process"))
    assert 0.4 * calls.cpu_median < calls.system_median <= calls.cpu_median
    assert arithmetic_t.system_median < 0.3 * arithmetic_t.cpu_median
    assert 0.4 * in_process.cpu_median < in_process.system_median <= in_process.cpu_median + 0.01
    assert result.report().splitlines()[3].split()[:6] == [
        "candidate",
        "median",
        "s",
        "[min-max]",
        "s",
        "CPU",
    ]
    assert "sys s" in result.report().splitlines()[3]
    assert result.to_dict()["candidates"]["calls"]["system_median_s"] == calls.system_median


def test_outputs_set_aside_during_the_rounds_and_deleted_before_the_next_bench_waits(
    runner, tmp_path, monkeypatch
):
    """``SetAside`` moves a run's output away (an empty folder in its place) instead of deleting
    it; ``remove`` deletes everything at the end and remembers when, and the next ``run`` waits
    ``SETTLE_S`` after that deletion before its first round (this machine's file system makes a
    file created soon after many were deleted cost more, docs/performance.md, session 17)."""
    monkeypatch.setattr(runner, "_DELETED_AT", tmp_path / "deleted-at")
    monkeypatch.setattr(runner, "SETTLE_S", 0.6)
    out = tmp_path / "out"
    out.mkdir()
    aside = runner.SetAside(tmp_path / "aside")
    assert not (tmp_path / "deleted-at").exists()  # nothing was there to delete
    for k in range(3):
        (out / f"file{k}").write_bytes(b"x" * 10)
        aside.move(out, recreate=True)
        assert out.is_dir() and not any(out.iterdir())
    kept = sorted(p.relative_to(aside.root).as_posix() for p in aside.root.rglob("*") if p.is_file())
    assert kept == ["1-out/file0", "2-out/file1", "3-out/file2"]  # nothing deleted during the rounds

    messages: list[str] = []
    assert runner.wait_for_deletions(messages.append) == 0.0
    aside.remove()
    assert not aside.root.exists()
    start = time.monotonic()
    result = runner.run(_fast_and_slow(runner, []), repeat=5, warmup=0, progress=messages.append)
    assert time.monotonic() - start >= 0.5  # waited for the deletion before the first round
    assert messages[0].startswith("sleep: waiting") and "after deleting files" in messages[0]
    assert len(result.timings["fast"].seconds) == 5
    assert runner.wait_for_deletions() == 0.0  # once the time has passed, no wait
