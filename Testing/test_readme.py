"""Every command and code example in README.md runs (issue: the README tour is exercised by a test).

The examples use readable placeholders; this test gives them real values: ``~`` is a temporary
home holding ``dicom/ct-study`` (patient DOE^JOHN, PAT001, 2020) and ``dicom/archive`` (an MR knee
study), ``1.2.3.4`` and ``1.2.3.4.5`` are that CT study and series, the ports are free ones, and
``/tmp/dicom`` / ``/tmp/mydb`` are folders of the test. Long-running commands (``serve``,
``listen``) are started, checked to be listening, and stopped.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import zipfile

import pytest

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port

README = (REPO_ROOT / "README.md").read_text()
LONG_RUNNING = ("dicomplus serve", "dicomplus listen")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


@pytest.fixture
def world(tmp_path):
    home = tmp_path / "home"
    ct = make_series(
        home / "dicom" / "ct-study",
        n=6,
        rows=16,
        cols=16,
        patient_id="PAT001",
        patient_name="Doe^John",
        study_date="20200315",
    )
    mr = make_series(
        home / "dicom" / "archive",
        n=4,
        rows=16,
        cols=16,
        modality="MR",
        patient_id="KNEE1",
        patient_name="Roe^Ann",
        study_description="Right knee",
        study_date="20210101",
    )
    with zipfile.ZipFile(tmp_path / "scene.mrb", "w") as z:
        z.writestr("scene/scene.mrml", "<MRML></MRML>")
    ports = {"11113": str(free_port()), "11112": str(free_port())}
    env = dict(
        os.environ,
        HOME=str(home),
        DICOMPLUS_DB=str(tmp_path / "db"),
        DICOMPLUS_NODES=str(tmp_path / "nodes.json"),
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
    )
    return {"tmp": tmp_path, "home": home, "ct": ct, "mr": mr, "ports": ports, "env": env}


def substitute(line: str, world) -> str:
    line = line.replace("1.2.3.4.5", world["ct"].series_uid).replace("1.2.3.4", world["ct"].study_uid)
    for old, new in world["ports"].items():
        line = line.replace(old, new)
    return line


def wait_port(port: int, proc, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_readme_opens_with_the_two_commands():
    first = blocks("bash")[0].strip().splitlines()
    assert [line.split("#")[0].strip() for line in first] == ["make demo", "make test"]


def test_every_cli_example_runs(world):
    commands = [
        line.split("  #")[0].strip()
        for line in blocks("bash")[1].splitlines()
        if line.strip().startswith("dicomplus")
    ]
    assert len(commands) >= 18
    background = []
    try:
        for command in commands:
            command = substitute(command, world)
            argv = shlex.split(os.path.expanduser(command.replace("~", str(world["home"]))))
            if command.startswith(LONG_RUNNING):
                proc = subprocess.Popen(
                    argv, cwd=world["tmp"], env=world["env"], stdout=subprocess.PIPE, text=True
                )
                background.append(proc)
                wait_port(int(argv[argv.index("--port") + 1]), proc)
                continue
            done = subprocess.run(
                argv, cwd=world["tmp"], env=world["env"], capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    finally:
        for proc in background:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    assert (world["tmp"] / "ct.nrrd").is_file()
    assert (world["tmp"] / "bundle.dcm").is_file() and (world["tmp"] / "scene-copy.mrb").is_file()
    assert any((world["tmp"] / "exported").iterdir())


def test_python_example_runs(world):
    code = blocks("python")[0]
    code = code.replace("/tmp/dicom", str(world["home"] / "dicom")).replace(
        "/tmp/mydb", str(world["tmp"] / "mydb")
    )
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["volume"].array.shape == (6, 16, 16)
    assert scope["header"].PatientID == "PAT001"


def test_slicer_console_example_runs(world, dicomplus_module, monkeypatch):
    monkeypatch.setitem(sys.modules, "DICOMPlus", dicomplus_module)
    code = blocks("python")[1]
    code = code.replace("/tmp/dicom", str(world["home"] / "dicom" / "ct-study"))
    code = code.replace(
        "logic = DICOMPlusLogic()", f"logic = DICOMPlusLogic(databasePath={str(world['tmp'] / 'sdb')!r})"
    )
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert len(scope["nodes"]) == 1
    series = scope["logic"].search("series", {"StudyInstanceUID": scope["study"].StudyInstanceUID})
    assert {s.Modality for s in series} >= {"CT", "OT"}  # the export and the Data Bundle joined the study
    scope["logic"].closeDatabase()
