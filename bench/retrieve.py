"""Retrieve: a 300-instance 512x512 CT study from Orthanc by C-GET and C-MOVE, DICOMPlus vs DCMTK.

Orthanc (Debian 1.10, started by the test fixture code with TCP_NODELAY=1) holds two studies of
300 CT instances, 512x512 int16 (525 kB each, 157 MB): one single series, and one of 4 series of
75. Reference: DCMTK ``getscu`` of the single-series study (one association, files written to a
folder, TCP_NODELAY=1). Candidates:

* ``dcmtk-move``: DCMTK ``movescu`` with its own storage SCP (``+P``) as the move destination;
* ``get``: ``retrieve(method="get")`` in this process (library already imported, as in Slicer):
  plan (series- and image-level C-FIND), C-GET, every instance stored and indexed in the database
  before its C-STORE response;
* ``move``: ``retrieve(method="move")`` to a DICOMPlus listener already running (as in Slicer),
  same storing path;
* ``get-cli``: ``dicomplus retrieve --method get`` as a fresh process (includes starting Python);
* ``dcmtk-get-4s``: getscu of the 4-series study (DCMTK's single-association time for it);
* ``get-4s-threads``: the 4-series study with ``parallel=4`` (4 associations, threads);
* ``get-4s-procs``: the 4-series study as 4 ``dicomplus retrieve --series`` processes at once,
  into the same database.

Untimed before each run: the output folder or the database is emptied. Targets (issue 5): one
association <= 3x DCMTK's time; the multi-series study over parallel associations <= 1.5x DCMTK's
single-association time (``get-4s-*`` vs ``dcmtk-get-4s``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from bench.runner import Benchmark, Candidate

REPO = Path(__file__).resolve().parents[1]
FILES = 300
SERIES_4 = 4
ROWS = COLS = 512
GETSCU = "/usr/bin/getscu"
MOVESCU = "/usr/bin/movescu"
LOOPBACK = "127.0.0.1"


def _testing():
    path = str(REPO / "Testing")
    if path not in sys.path:
        sys.path.insert(0, path)


def make_studies(work_dir: Path) -> tuple[list[Path], list[Path]]:
    """The single-series and the 4-series study (written once, reused)."""
    _testing()
    from dicomplus_testing.synthetic import make_series

    one, four = work_dir / "ct300", work_dir / "ct300x4"
    marker = work_dir / "studies-v2.complete"
    if not marker.exists():
        for folder in (one, four):
            shutil.rmtree(folder, ignore_errors=True)
        make_series(one, n=FILES, rows=ROWS, cols=COLS, seed=505, patient_id="BENCHRET1")
        first = None
        for k in range(SERIES_4):
            s = make_series(four / f"s{k}", n=FILES // SERIES_4, rows=ROWS, cols=COLS, seed=600 + k,
                            patient_id="BENCHRET4", study_uid=first, series_number=k + 1)  # fmt: skip
            first = first or s.study_uid
        marker.write_text("ok")
    return sorted(p for p in one.rglob("*") if p.is_file()), sorted(p for p in four.rglob("*") if p.is_file())


def benchmark(work_dir: Path) -> Benchmark:
    sys.path.insert(0, str(REPO))
    _testing()
    import pydicom

    from dicomplus_testing.peers import OrthancServer, tool_env
    from dicomplus_testing.util import free_port
    from DICOMPlusLib.database import Database
    from DICOMPlusLib.network.listener import Listener, ListenerConfig
    from DICOMPlusLib.network.models import RetrieveOptions
    from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
    from DICOMPlusLib.network.retrieve import retrieve

    one, four = make_studies(work_dir)
    study1 = str(pydicom.dcmread(one[0], stop_before_pixels=True).StudyInstanceUID)
    study4 = str(pydicom.dcmread(four[0], stop_before_pixels=True).StudyInstanceUID)
    series4 = sorted({str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID) for f in four})
    megabytes = sum(f.stat().st_size for f in one) / 1e6
    env = tool_env()

    listener_port, movescu_port = free_port(), free_port()
    orthanc = OrthancServer(work_dir / "orthanc", dicomplus_port=listener_port,
                            modalities={"movescu": ("MOVESCU", movescu_port)})  # fmt: skip
    shutil.rmtree(orthanc.storage_dir, ignore_errors=True)
    orthanc.start()
    resources: list = []

    def cleanup() -> None:
        for item in reversed(resources):
            item()
        orthanc.stop()
        for name in ("out-get", "out-move", "db-get", "db-move", "db-cli", "db-4t", "db-4p"):
            shutil.rmtree(work_dir / name, ignore_errors=True)

    try:
        orthanc.upload(one, four)
        node = RemoteNode("orthanc", DimseEndpoint(orthanc.aet, LOOPBACK, orthanc.dicom_port))
        address = f"{orthanc.aet}@{LOOPBACK}:{orthanc.dicom_port}"
        out_get, out_move = work_dir / "out-get", work_dir / "out-move"
        paths = {name: work_dir / name for name in ("db-get", "db-move", "db-cli", "db-4t", "db-4p")}
        for path in (out_get, out_move, *paths.values()):
            shutil.rmtree(path, ignore_errors=True)
        out_get.mkdir()
        out_move.mkdir()
        dbs = {name: Database(path) for name, path in paths.items()}
        resources += [db.close for db in dbs.values()]
        listener = Listener(
            dbs["db-move"], ListenerConfig(port=listener_port, host=LOOPBACK, series_idle=3600)
        )
        listener.start()
        resources.append(listener.stop)
    except BaseException:
        cleanup()
        raise

    def empty_folder(folder: Path):
        def run() -> None:
            for entry in os.scandir(folder):
                os.unlink(entry.path)

        return run

    def empty_db(name: str):
        def run() -> None:
            db = dbs[name]
            for study in {r.StudyInstanceUID for r in db.search("study")}:
                db.delete(study=study)

        return run

    def ours(name: str, method: str, study: str, parallel: int = 1, **kwargs):
        def run() -> None:
            options = RetrieveOptions(parallel=parallel, **kwargs)
            report = retrieve(node, dbs[name], study_uid=study, method=method, options=options)
            assert report.complete and len(report.done) == FILES, report.to_dict()

        return run

    def getscu(study: str, out: Path) -> list[str]:
        return [GETSCU, "-S", "-aet", "DICOMPLUS", "-aec", orthanc.aet, "-k", "QueryRetrieveLevel=STUDY",
                "-k", f"StudyInstanceUID={study}", "-od", str(out), LOOPBACK, str(orthanc.dicom_port)]  # fmt: skip

    movescu = [MOVESCU, "-S", "-aet", "DICOMPLUS", "-aec", orthanc.aet, "-aem", "MOVESCU", "+P", str(movescu_port),
               "-od", str(out_move), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study1}",
               LOOPBACK, str(orthanc.dicom_port)]  # fmt: skip
    cli = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(paths["db-cli"]), "retrieve", address,
           "--study", study1, "--method", "get"]  # fmt: skip
    procs = " & ".join(
        f"{sys.executable} -m DICOMPlusLib.cli --db {paths['db-4p']} retrieve {address} --study {study4} "
        f"--series {s} --method get > /dev/null"
        for s in series4
    )

    candidates = [
        Candidate("dcmtk-get", command=getscu(study1, out_get), env=env, before=empty_folder(out_get),
                  label="getscu (DCMTK), one association, files into a folder"),
        Candidate("dcmtk-move", command=movescu, env=env, before=empty_folder(out_move),
                  label="movescu (DCMTK) with its own storage SCP (+P)"),
        Candidate("get", function=ours("db-get", "get", study1), before=empty_db("db-get"),
                  label="retrieve(method='get'): C-FIND plan, C-GET, stored + indexed"),
        Candidate("move", function=ours("db-move", "move", study1, listener=listener), before=empty_db("db-move"),
                  label="retrieve(method='move') to a running DICOMPlus listener, stored + indexed"),
        Candidate("get-cli", command=cli, cwd=REPO, before=empty_db("db-cli"),
                  label="dicomplus retrieve --method get (fresh process)"),
        Candidate("dcmtk-get-4s", command=getscu(study4, out_get), env=env, before=empty_folder(out_get),
                  label="getscu of the 4-series study (DCMTK, one association)"),
        Candidate("get-4s-threads", function=ours("db-4t", "get", study4, parallel=SERIES_4),
                  before=empty_db("db-4t"), label="retrieve(parallel=4) of the 4-series study (threads)"),
        Candidate("get-4s-procs", command=f"{procs} & wait", shell=True, cwd=REPO, before=empty_db("db-4p"),
                  label="4 x dicomplus retrieve --series at once (processes), one database"),
    ]  # fmt: skip
    return Benchmark(
        name="retrieve",
        description=f"retrieve {FILES} CT instances {ROWS}x{COLS} ({megabytes / FILES * 1e3:.0f} kB each, "
        f"{megabytes:.0f} MB) from Orthanc 1.10 on loopback, {os.cpu_count()} cores",
        candidates=candidates,
        reference="dcmtk-get",
        work={"files": FILES, "MB": megabytes},
        cleanup=cleanup,
    )
