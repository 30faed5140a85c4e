"""`dicomplus demo` (README command 1): the whole workflow, its outputs, and nothing left running."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pydicom
import SimpleITK as sitk

from DICOMPlusLib.bundle import read_bundle
from DICOMPlusLib.demo import run_demo


def test_demo_produces_what_it_names_and_stops_everything(tmp_path):
    threads_before = {t.ident for t in threading.enumerate()}
    lines = []
    summary = run_demo(tmp_path / "out", say=lines.append)
    assert len(lines) == 7 and lines[0].startswith("1. sample PACS")
    assert lines[0].endswith("is up with 60 sample instances"), lines[0]  # not a dict
    assert summary.studies_found >= 2
    assert summary.instances_retrieved > 0 and summary.sent == summary.instances_retrieved
    # the volume on disk is the retrieved series
    image = sitk.ReadImage(summary.outputs["volume"])
    assert image.GetSize() == tuple(summary.volume_dims[:3])
    # the exported series is valid DICOM of the same study, and the PACS received it
    exported = sorted((tmp_path / "out" / "exported").iterdir())
    assert len(exported) == summary.volume_dims[2]
    first = pydicom.dcmread(exported[0])
    assert first.SeriesInstanceUID == summary.exported_series
    assert summary.pacs_series_after >= 2
    # the bundle holds a zip with the NRRD; the contact sheet is a PNG
    zip_bytes = read_bundle(summary.outputs["data_bundle"])
    assert zip_bytes[:2] == b"PK"
    png = open(summary.outputs["contact_sheet"], "rb").read()
    assert png.startswith(b"\x89PNG")
    assert json.loads(open(summary.outputs["summary"]).read())["sent"] == summary.sent
    # nothing left: the PACS port is closed and no new thread survives
    port = int(summary.pacs.rsplit(":", 1)[1])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [t for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()]
        if not left:
            break
        time.sleep(0.1)
    assert not left, left
    assert np.isfinite(summary.seconds) and summary.seconds < 60


def test_dicomplus_demo_command(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "dicomplus")
    started = time.monotonic()
    done = subprocess.run(
        [exe, "demo", "--out", str(tmp_path / "demo-output")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    assert "Everything it started has stopped" in done.stdout
    for name in (
        "volume.nrrd",
        "bundle.dcm",
        "contact_sheet.png",
        "summary.json",
        "database/dicomplus.sqlite",
    ):
        assert (tmp_path / "demo-output" / name).is_file(), name
    # run again into the same folder: outputs are replaced, not refused
    again = subprocess.run(
        [exe, "demo", "--out", str(tmp_path / "demo-output"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr


def test_demo_refuses_a_database_of_the_users(tmp_path, capsys):
    """The demo replaces OUT/database on each run: it does not offer --db (or --store), and says
    so when given one rather than ignoring it; the user's database is not created or touched."""
    from DICOMPlusLib.cli import Exit, main

    mine = tmp_path / "mine"
    for args in (["--db", mine, "demo"], ["demo", "--db", mine], ["demo", "--store", mine]):
        assert main([str(a) for a in [*args, "--out", tmp_path / "out"]]) == Exit.USAGE
        assert "leave out --db/--store" in capsys.readouterr().err
    assert not mine.exists() and not (tmp_path / "out").exists()
    try:
        main(["demo", "--help"])
    except SystemExit:
        pass
    assert "--db" not in capsys.readouterr().out
