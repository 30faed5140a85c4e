"""docs/ stays true: the CLI reference is what the parser prints, and the files it names exist."""

from __future__ import annotations

import importlib.util
import re

from dicomplus_testing.util import REPO_ROOT


def test_cli_reference_is_current():
    spec = importlib.util.spec_from_file_location("gen_cli", REPO_ROOT / "docs" / "gen_cli.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    current = (REPO_ROOT / "docs" / "cli.md").read_text()
    assert current == gen.render(), "docs/cli.md is out of date: run python docs/gen_cli.py"


def test_links_and_images_in_docs_exist():
    for doc in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)\)", doc.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_benchmark_commands_in_performance_md_run(tmp_path):
    """The commands docs/performance.md shows: --list names every benchmark it reports, and one
    benchmark runs and records (the long `all` is the same loop over the listed names)."""
    import subprocess
    import sys

    doc = (REPO_ROOT / "docs" / "performance.md").read_text()
    listed = subprocess.run(
        [sys.executable, "-m", "bench", "--list"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    names = {line.split()[0] for line in listed.splitlines() if line.strip()}
    for name in set(re.findall(r"python -m bench (\w+)", doc)) - {"all"}:
        assert name in names, f"performance.md runs {name}, which --list does not know"
    record = tmp_path / "floor.jsonl"
    subprocess.run(
        [sys.executable, "-m", "bench", "floor", "-r", "5", "--record", str(record)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "floor" in record.read_text()
