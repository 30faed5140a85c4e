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
