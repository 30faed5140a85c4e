"""Start-up of the command line (issue 19): ``dicomplus --version`` and ``dicomplus search`` import
no pixel decoder, no GDCM and not even pydicom or numpy. Asserted on the modules that
``python -X importtime`` lists, not on the time (docs/performance.md has the figures).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, run_script
from DICOMPlusLib.database import Database

#: Top-level packages a start-up must not import: pixel decoders and GDCM, and what pulls them
#: (pydicom imports every decoder plugin it finds), the network stack, the terminal libraries
#: (only for a terminal; these runs are piped) and shell completion (only when completing).
HEAVY = ("pydicom", "numpy", "gdcm", "pylibjpeg", "openjpeg", "rle", "jpeg_ls", "libjpeg", "pynetdicom",
         "SimpleITK", "highdicom", "rich", "argcomplete")  # fmt: skip


def imported(*args: str) -> set[str]:
    """Top-level packages imported by ``python -m DICOMPlusLib.cli ARGS``."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("_ARGCOMPLETE", None)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "DICOMPlusLib.cli", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "DICOMPlusLib" in names  # the listing is there
    return names


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("startup")
    series = make_series(root / "s", n=2, rows=4, cols=4, patient_name="Doe^Peter", study_date="20200301")
    path = root / "db"
    with Database(path) as database:
        database.import_paths([series.folder], jobs=1)
    return str(path)


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("search",),
        ("search", "PatientName=doe*", "StudyDate=2020", "modality=ct", "--level", "series"),
        ("search", "--text", "doe", "--json"),
        ("info", "--json"),
    ],
    ids=["version", "search", "search-keys", "search-text", "info"],
)
def test_start_up_imports_nothing_heavy(db, args):
    full = args if args == ("--version",) else ("--db", db, *args)
    assert imported(*full) & set(HEAVY) == set()


def test_common_keywords_agree_with_the_dictionary():
    """The keywords looked up without loading the dictionary have PS3.6's tag and VR."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    from DICOMPlusLib.database.keywords import COMMON, _entries

    for keyword, (tag, vr) in COMMON.items():
        assert tag_for_keyword(keyword) == tag and dictionary_VR(tag).split(" or ")[0] == vr, keyword
    assert _entries()["RepetitionTime"] == (0x00180080, "DS")


def test_shell_completion(tmp_path):
    """argcomplete answers the shell's completion request (and only then is it imported)."""
    answer_file = tmp_path / "completions"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), _ARGCOMPLETE="1", _ARGCOMPLETE_IFS="\n",
               _ARGCOMPLETE_STDOUT_FILENAME=str(answer_file))  # fmt: skip
    for line, expected in (("dicomplus sea", {"search"}), ("dicomplus search --le", {"--level"}),
                           ("dicomplus nodes ", {"add", "list", "remove"})):  # fmt: skip
        env.update(COMP_LINE=line, COMP_POINT=str(len(line)))
        proc = subprocess.run([sys.executable, "-m", "DICOMPlusLib.cli"], cwd=REPO_ROOT, env=env,
                              capture_output=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert set(answer_file.read_text().split()) >= expected


def test_command_table_names_what_each_module_registers():
    """cli.COMMAND_MODULES (which module to import for a command) matches the parsers built."""
    import argparse

    from DICOMPlusLib.cli import COMMAND_MODULES, build_parser

    for module, names in COMMAND_MODULES.items():
        parser = build_parser([names[0]])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert tuple(sub.choices) == names, module
    full = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(full.choices) == [n for names in COMMAND_MODULES.values() for n in names]


def test_only_command_line_code_imports_rich_and_argcomplete():
    """Stock Slicer bundles neither: the library and the Slicer module must not import them."""
    import ast

    for path in [
        *sorted((REPO_ROOT / "DICOMPlusLib").rglob("*.py")),
        *sorted((REPO_ROOT / "DICOMPlus").rglob("*.py")),
    ]:
        if path.parent.name == "cli" and path.parent.parent.name == "DICOMPlusLib":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & {"rich", "argcomplete"}, path


def test_every_dataclass_has_a_docstring():
    """Every value type says what it is. (The rule came from the standard ``@dataclass``, which
    made a missing docstring from ``inspect.signature`` as the module was imported, 0.05-0.15 ms
    a class; the package's classes are now made by ``dataclasses_lite``, which makes none.)"""
    import ast

    missing = []
    for path in sorted((REPO_ROOT / "DICOMPlusLib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                "dataclass" in ast.unparse(d).split("(")[0] for d in node.decorator_list
            ):
                if ast.get_docstring(node) is None:
                    missing.append(f"{path.relative_to(REPO_ROOT)}: {node.name}")
    assert missing == []


def test_loading_a_classic_series_never_imports_pydicom(tmp_path):
    """Loading single-frame images from a folder reads headers with the fast scanner and pixels at
    their offsets: pydicom (its data dictionary and every decoder plugin it finds) is never
    imported, so a load as a process does not pay for it."""
    series = make_series(tmp_path / "s", n=3, rows=8, cols=8)
    (series.folder / "README.txt").write_text("not DICOM: skipped, without asking pydicom\n")
    printed = _after_a_folder_load(
        series.folder,
        "sorted(m for m in sys.modules if m.split('.')[0] in ('pydicom', 'gdcm', 'pylibjpeg', 'SimpleITK'))",
    )
    assert printed == "[]", printed


#: Run ``dicomplus ARGS`` in a fresh interpreter and report which files it opened under a folder,
#: whether it started a process, and which heavy or pool modules it imported (an audit hook sees
#: every ``open``, ``os.fork``, ``os.posix_spawn`` and ``subprocess.Popen``).
_WATCH = """
import json, sys
folder, args = sys.argv[1], sys.argv[2:]
seen = {"opened": [], "processes": []}
def hook(event, details):
    if event == "open" and isinstance(details[0], str) and details[0].startswith(folder):
        seen["opened"].append(details[0])
    elif event in ("os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "subprocess.Popen"):
        seen["processes"].append(event)
sys.addaudithook(hook)
from DICOMPlusLib.cli import main
code = main(args)
seen["modules"] = sorted({m.split(".")[0] for m in sys.modules} | {m for m in sys.modules if m.startswith(("concurrent", "multiprocessing", "DICOMPlusLib.database.", "DICOMPlusLib.query_records", "DICOMPlusLib.jobs"))})
print(json.dumps(seen), file=sys.stderr)
sys.exit(code)
"""


#: Modules an import of files never uses (imported by the database when a search, a count or a
#: delete is made): ~3 ms of an import's start-up.
READING_ONLY = (
    "DICOMPlusLib.database.matching",
    "DICOMPlusLib.database.search",
    "DICOMPlusLib.database.delete",
    "DICOMPlusLib.query_records",  # the patient, study and series records (~2 ms of dataclasses)
)


def _watched(folder, *args: str) -> tuple[dict, dict]:
    """(the CLI's JSON answer, what the audit hook saw)."""
    import json

    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-c", _WATCH, str(folder), *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), json.loads(proc.stderr.strip().splitlines()[-1])


def test_import_imports_no_pixel_stack_and_import_again_opens_no_file(tmp_path):
    """An import reads headers with the scanner (no pydicom, numpy or decoders in the process);
    importing the same unchanged files again decides from one query and a stat per file: it
    opens none of them, starts no worker process and does not import the pool's modules.
    Neither imports what only reading the database needs (matching, search) or delete."""
    series = make_series(tmp_path / "s", n=6, rows=8, cols=8)
    db = str(tmp_path / "db")
    first, seen = _watched(series.folder, "--db", db, "import", str(series.folder), "--json")
    assert first["added"] == 6
    assert set(seen["modules"]) & set(HEAVY) == set()
    assert len(seen["opened"]) >= 6  # the watch works: the first import read every file
    assert "DICOMPlusLib.database.ingest" in seen["modules"]  # the listing names the database's modules
    assert "DICOMPlusLib.database.parsing" in seen["modules"]
    assert set(seen["modules"]) & set(READING_ONLY) == set()
    assert "dataclasses" not in seen["modules"]  # its value types are dataclasses_lite's (no inspect, ast)

    again, seen = _watched(series.folder, "--db", db, "import", str(series.folder), "--json")
    assert (again["added"], again["unchanged"]) == (0, 6)
    assert seen["opened"] == [] and seen["processes"] == []
    assert not [m for m in seen["modules"] if m.startswith(("multiprocessing", "concurrent"))]
    assert set(seen["modules"]) & set(HEAVY) == set()
    assert set(seen["modules"]) & set(READING_ONLY) == set()
    # argparse measures the terminal through shutil only to print help or an error (cli.arguments.Parser)
    assert "shutil" not in seen["modules"]
    # nor what only reading a file needs, the background jobs (an import needs the cancel flag
    # only) or logging (nothing is logged): ~5 ms of a process (docs/performance.md)
    assert set(seen["modules"]) & set(NOT_AGAIN) == set()


#: Modules an import again of unchanged files does not need.
NOT_AGAIN = (
    "DICOMPlusLib.database.parsing",  # the header scanner: no file is read
    "DICOMPlusLib.database.headerscan",
    "DICOMPlusLib.jobs",  # Job, JobSnapshot, Pacer: their enum and dataclasses
    "logging",  # with traceback, string, textwrap
)


def test_the_query_records_are_made_when_a_search_needs_them(tmp_path):
    """The patient, study and series records are in their own module, which an import never
    loads (the test above) and a search does; ``DICOMPlusLib.models`` still names them."""
    from DICOMPlusLib import models, query_records

    series = make_series(tmp_path / "s", n=2, rows=8, cols=8)
    db = str(tmp_path / "db")
    assert _watched(series.folder, "--db", db, "import", str(series.folder), "--json")[0]["added"] == 2
    found, seen = _watched(series.folder, "--db", db, "search", "--level", "series", "--json")
    assert len(found) == 1
    assert "DICOMPlusLib.query_records" in seen["modules"]
    assert "dataclasses" not in seen["modules"]
    records = (query_records.PatientRecord, query_records.StudyRecord, query_records.SeriesRecord)
    assert (models.PatientRecord, models.StudyRecord, models.SeriesRecord) == records
    assert models.Record == records[0] | records[1] | records[2] | models.InstanceRecord


def test_copying_import_copies_in_threads_not_processes(tmp_path):
    """A copying import large enough for workers (``PARALLEL_THRESHOLD``) copies in threads: the
    kernel's copy releases the GIL, so threads overlap it with the scans and commits, and the
    process forks nothing and imports neither ``multiprocessing`` nor the process pool."""
    from DICOMPlusLib.database.indexer import PARALLEL_THRESHOLD

    n = PARALLEL_THRESHOLD + 10
    series = make_series(tmp_path / "s", n=n, rows=8, cols=8)
    db = str(tmp_path / "db")
    report, seen = _watched(series.folder, "--db", db, "import", "--jobs", "2", str(series.folder), "--json")
    assert report["added"] == n and not report["skipped"]
    assert len(seen["opened"]) >= n
    assert seen["processes"] == []
    assert "concurrent.futures.thread" in seen["modules"]  # the workers ran
    assert not [m for m in seen["modules"] if m.startswith(("multiprocessing", "concurrent.futures.process"))]
    with Database(db) as opened:
        assert opened.info()["instances"] == n
        assert not list((opened.store.root / ".incoming").iterdir())


def test_a_load_and_the_version_do_not_import_logging(tmp_path):
    """``logging`` (with ``traceback``, ``string``, ``textwrap``: a few milliseconds) is imported
    when a record is first logged: neither ``dicomplus --version`` nor a load from a folder does
    (nor an import again, above)."""
    assert "logging" not in imported("--version")
    series = make_series(tmp_path / "s", n=3, rows=8, cols=8)
    printed = _after_a_folder_load(series.folder, "'logging' in sys.modules")
    assert printed == "False", printed


def test_every_library_logger_comes_with_the_null_handler():
    """The library's ``NullHandler`` is on ``DICOMPlusLib`` before any of its loggers can emit a
    record: every module that makes a logger makes it with ``_log.get_logger``, which adds the
    handler (once) before the first record, so a record nobody configured logging for never
    reaches Python's last-resort handler (stderr)."""
    import ast

    makers = []
    for path in sorted((REPO_ROOT / "DICOMPlusLib").rglob("*.py")):
        if path.name == "_log.py" or "cli" in path.relative_to(REPO_ROOT).parts:
            continue  # the command line configures handlers; it emits nothing of its own
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "getLogger":
                makers.append(str(path.relative_to(REPO_ROOT)))
    assert makers == []
    code = (
        "import logging, sys\n"
        "import DICOMPlusLib.jobs, DICOMPlusLib.loading.pixels, DICOMPlusLib.database\n"
        "from DICOMPlusLib.jobs import logger\n"
        "logger.warning('not shown')\n"
        "handlers = logging.getLogger('DICOMPlusLib').handlers\n"
        "print([type(h).__name__ for h in handlers])\n"
    )
    proc = run_script(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['NullHandler']", proc.stdout
    assert proc.stderr == ""


def test_a_logger_made_before_logging_is_imported_gets_the_null_handler_at_its_first_record():
    """Where ``logging`` was not imported (a command line process), ``get_logger`` gives a
    stand-in: nothing is imported until a record is logged; then the handler is added once,
    even when two threads log their first records at the same time, and records reach the
    handlers a program configures as before."""
    code = (
        "import sys, threading\n"
        "from DICOMPlusLib.database import indexer, ingest\n"
        "assert 'logging' not in sys.modules\n"
        "start = threading.Barrier(2)\n"
        "def first(logger):\n"
        "    start.wait()\n"
        "    logger.warning('not shown')\n"
        "threads = [threading.Thread(target=first, args=(m.logger,)) for m in (indexer, ingest)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "import logging\n"
        "print([type(h).__name__ for h in logging.getLogger('DICOMPlusLib').handlers])\n"
        "logging.basicConfig(format='%(name)s %(message)s')\n"
        "indexer.logger.warning('shown')\n"
        "assert indexer.logger.getEffectiveLevel() == logging.WARNING\n"
    )
    proc = run_script(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['NullHandler']", proc.stdout
    assert proc.stderr == "DICOMPlusLib.database.indexer shown\n"


def _after_a_folder_load(folder, expression: str) -> str:
    """What a fresh python prints of ``expression`` after ``load_folder(folder)`` (a series of
    three 8x8 slices), as a user's process runs it."""
    code = (
        "import sys\n"
        "from DICOMPlusLib.loading import load_folder\n"
        f"(volume,) = load_folder({str(folder)!r})\n"
        "assert volume.array.shape == (3, 8, 8), volume.array.shape\n"
        f"print({expression})\n"
    )
    proc = run_script(code)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()
