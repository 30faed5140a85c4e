"""The ExtensionsIndex checks that can run offline (issue 14, Build item 8).

Slicer's extension catalog reads two things: the CMake metadata of the extension
(``EXTENSION_*`` variables, Extensions/CMake/SlicerExtensionDescriptionSpec.cmake) and the catalog
entry Resources/DICOMPlus.json (schema slicer-extension-catalog-entry-schema-v1.0.2, facts in
../shared/notes/slicer-runtime.md section 7). Online checks (that the URLs answer, that the
repository builds on the factory) cannot run here; these check what they would fetch instead:
every icon and screenshot URL names a file of this repository at the branch the entry builds.
"""

from __future__ import annotations

import json
import re
import shlex
import struct
from pathlib import Path

import pytest

from dicomplus_testing.util import REPO_ROOT

CATALOG_ENTRY = REPO_ROOT / "Resources" / "DICOMPlus.json"

# slicer-extension-catalog-entry-schema-v1.0.2.json: "additionalProperties": false.
REQUIRED_KEYS = {"$schema", "category", "scm_url"}
KEY_TYPES = {
    "$schema": str,
    "category": str,
    "scm_url": str,
    "scm_revision": str,
    "scm_type": str,
    "build_dependencies": list,
    "dicom_support_rule": str,
    "build_subdirectory": str,
    "enabled": bool,
    "tier": int,
}
# SlicerExtensionDescriptionSpec.cmake fields the template sets and the catalog shows.
REQUIRED_METADATA = (
    "HOMEPAGE",
    "CATEGORY",
    "CONTRIBUTORS",
    "DESCRIPTION",
    "ICONURL",
    "SCREENSHOTURLS",
    "DEPENDS",
)

_SET = re.compile(r'^\s*set\(\s*(EXTENSION_[A-Z_]+)\s+"([^"]*)"\s*\)', re.MULTILINE)


def cmake_metadata(path: Path = REPO_ROOT / "CMakeLists.txt") -> dict[str, str]:
    """``set(EXTENSION_X "value")`` of the top-level CMakeLists.txt, as {X: value}."""
    text = path.read_text(encoding="utf-8")
    return {name.removeprefix("EXTENSION_"): value for name, value in _SET.findall(text)}


def github_raw_prefix(scm_url: str, revision: str) -> str:
    """``https://raw.githubusercontent.com/<owner>/<repo>/<revision>/`` for a GitHub scm_url."""
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?", scm_url)
    assert match, f"scm_url {scm_url!r} is not an https GitHub repository URL"
    owner, repository = match.groups()
    return f"https://raw.githubusercontent.com/{owner}/{repository}/{revision}/"


def repository_file(url: str, prefix: str) -> Path:
    """The file of this repository that ``url`` serves once pushed, or an assertion error."""
    assert url.startswith(prefix), f"{url} is not a file of {prefix} (the catalog entry's repository)"
    relative = url.removeprefix(prefix)
    path = REPO_ROOT / relative
    assert path.is_file(), f"{url} points at {relative}, which is not in the repository"
    return path


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def entry() -> dict:
    return json.loads(CATALOG_ENTRY.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def metadata() -> dict[str, str]:
    return cmake_metadata()


def test_catalog_entry_is_valid_against_the_schema(entry):
    assert CATALOG_ENTRY.stem == "DICOMPlus", "the entry is named after the extension (project())"
    assert REQUIRED_KEYS <= set(entry), f"missing {REQUIRED_KEYS - set(entry)}"
    assert set(entry) <= set(KEY_TYPES), f"not in the schema: {set(entry) - set(KEY_TYPES)}"
    for key, value in entry.items():
        # bool is an int in Python; the schema's integer is not a boolean.
        assert isinstance(value, KEY_TYPES[key]) and not (
            KEY_TYPES[key] is int and isinstance(value, bool)
        ), f"{key}: {value!r} is not a {KEY_TYPES[key].__name__}"
    assert entry["$schema"].endswith("/slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry.get("scm_type", "git") in ("git", "local")
    assert all(isinstance(name, str) and name for name in entry.get("build_dependencies", []))
    assert 1 <= entry.get("tier", 1) <= 5
    assert (REPO_ROOT / entry.get("build_subdirectory", ".") / "CMakeLists.txt").is_file()


def test_cmake_metadata_is_present_and_matches_the_entry(entry, metadata):
    text = (REPO_ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"^project\(DICOMPlus\)", text, re.MULTILINE)
    for field in REQUIRED_METADATA:
        assert metadata.get(field, "").strip(), f"EXTENSION_{field} is missing or empty in CMakeLists.txt"
    assert metadata["CATEGORY"] == entry["category"]
    assert metadata["DEPENDS"] == "NA" or set(metadata["DEPENDS"].split()) == set(entry["build_dependencies"])
    repository = entry["scm_url"].removesuffix(".git")
    assert metadata["HOMEPAGE"].startswith(repository), "the homepage is the catalog entry's repository"
    # No version field exists in the catalog: the description says which Slicer is needed.
    assert "Slicer 5.12 or later" in metadata["DESCRIPTION"]


def test_icon_and_screenshot_urls_name_files_of_the_repository(entry, metadata):
    prefix = github_raw_prefix(entry["scm_url"], entry.get("scm_revision", "main"))
    icon = repository_file(metadata["ICONURL"], prefix)
    assert png_size(icon) == (128, 128), "Slicer's extension icons are 128x128 PNG"
    screenshots = shlex.split(metadata["SCREENSHOTURLS"])
    assert screenshots, "at least one screenshot"
    for url in screenshots:
        width, height = png_size(repository_file(url, prefix))
        assert width >= 300 and height >= 300, f"{url}: {width}x{height} is too small to show anything"


def test_url_check_fails_for_a_missing_file(entry):
    """The check itself: the URL the catalog carried before (a file never added) is refused."""
    prefix = github_raw_prefix(entry["scm_url"], entry.get("scm_revision", "main"))
    with pytest.raises(AssertionError, match="not in the repository"):
        repository_file(prefix + "docs/screenshots/browser.png", prefix)
    with pytest.raises(AssertionError, match="is not a file of"):
        repository_file("https://example.org/DICOMPlus.png", prefix)


def test_license_file_is_the_declared_bsd_3_clause():
    tomllib = pytest.importorskip("tomllib")
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["license"]
    assert declared == "BSD-3-Clause"
    license_text = (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("BSD 3-Clause License")
    # The three clauses, and the holder named.
    for clause in (
        "Redistributions of source code must retain",
        "Redistributions in binary form must reproduce",
        "Neither the name of the copyright holder",
    ):
        assert clause in license_text
    assert re.search(r"Copyright \(c\) \d{4}, \S", license_text)
