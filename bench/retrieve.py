"""Retrieve: a 300-instance 512x512 CT study by C-GET (and C-MOVE) from Orthanc, DCMTK dcmqrscp and
our own ``dicomplus serve``, DICOMPlus vs DCMTK, as a user runs the commands and in-process.

Three sources, each holding the single-series study of 300 CT instances, 512x512 int16 (525 kB
each, 157 MB), all with TCP_NODELAY=1: Orthanc (Debian 1.10, started by the test fixture code; it
also holds a study of 4 series of 75), DCMTK ``dcmqrscp`` (the test fixture's configuration, a
process forked per association) and ``dicomplus serve`` (a separate process serving a database
the study was imported into). The same work for every candidate of a source: the whole study by
C-GET on one association, each instance written to disk (getscu: files in a folder; ours: stored
into the database's store and indexed before its C-STORE response). Reference: DCMTK ``getscu``
of the single-series study from Orthanc. Candidates:

* ``dcmtk-move``: DCMTK ``movescu`` with its own storage SCP (``+P``) as the move destination;
* ``get``: ``retrieve(method="get")`` in this process (library already imported, as in Slicer):
  plan (series-level C-FIND; the database holds nothing of the study, so the C-GET goes out
  next and its counts give the expected list), C-GET, every instance stored and indexed in the
  database before its C-STORE response;
* ``move``: ``retrieve(method="move")`` to a DICOMPlus listener already running (as in Slicer),
  same storing path;
* ``get-cli``: ``dicomplus retrieve --method get`` as a fresh process (includes starting Python);
* ``qr-getscu``, ``qr-get``, ``qr-get-cli``: getscu, the in-process retrieve and the command,
  from dcmqrscp; ``serve-getscu``, ``serve-get``, ``serve-get-cli``: the same from ``dicomplus
  serve`` (the pairs ``qr-get-cli / qr-getscu`` and ``serve-get-cli / serve-getscu`` are the
  issue's figures);
* ``dcmtk-get-4s``: getscu of the 4-series study (DCMTK's single-association time for it);
* ``dcmtk-get-4x``: four getscu processes at once, one per series of the 4-series study
  (SERIES-level C-GET each), each into its own folder: DCMTK's time for the same four parallel
  associations, the reference of the ``*-4s-*`` candidates (pairs);
* ``dcmtk-find-get-4x``: the same work as ``get-4s-cli`` by DCMTK: ``findscu`` of the study's
  series (SERIES level), then one getscu per series found, all at once, into one folder (the
  four getscu of ``dcmtk-get-4x`` are given the series' UIDs by the bench; a user asking for a
  study must find them first, as our command does with its series-level C-FIND);
* ``get-4s-threads``: the 4-series study with ``parallel=4`` in this process (4 associations);
* ``get-4s-cli``: ``dicomplus retrieve --study ... --parallel 4`` as one fresh process;
* ``get-4s-procs``: the 4-series study as 4 ``dicomplus retrieve --series`` processes at once,
  into the same database.

Untimed after each run: its output folder or its database is moved aside (a new empty one put in
its place), not deleted; everything is deleted when the benchmark ends (bench.runner.SetAside:
this machine's file system makes a file created soon after thousands were deleted cost more to
create, for every candidate that creates files). Before the rounds the
repository's modules are compiled to bytecode, as an installed copy has them (bench/_installed.py).
Targets (issue 19): ``dicomplus retrieve`` by C-GET <= 1.2x getscu's time from dcmqrscp and from
``serve``; the 4 series over parallel associations <= 1.5x four getscu at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench._installed import compile_bytecode
from bench.runner import Benchmark, Candidate, SetAside, remove_tree

REPO = Path(__file__).resolve().parents[1]
FILES = 300
SERIES_4 = 4
ROWS = COLS = 512
GETSCU = "/usr/bin/getscu"
FINDSCU = "/usr/bin/findscu"
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


def _serve(work_dir: Path, files: list[Path], port: int, aet: str) -> subprocess.Popen:
    """``dicomplus serve`` as its own process over a database the files were imported into."""
    db = work_dir / "serve-db"
    remove_tree(db)
    cli = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(db)]
    subprocess.run([*cli, "import", str(files[0].parent)], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    log = open(work_dir / "serve.log", "w")  # closed here: the child keeps its own copy
    proc = subprocess.Popen([*cli, "serve", "--port", str(port), "--ae-title", aet], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    log.close()
    _testing()
    from dicomplus_testing.peers import port_accepts

    deadline = time.monotonic() + 60
    while not port_accepts(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                f"dicomplus serve did not start: {(work_dir / 'serve.log').read_text()[-2000:]}"
            )
        time.sleep(0.05)
    return proc


def benchmark(work_dir: Path) -> Benchmark:
    sys.path.insert(0, str(REPO))
    _testing()
    import pydicom

    from dicomplus_testing.peers import DcmqrscpServer, OrthancServer, tool_env
    from dicomplus_testing.util import free_port
    from DICOMPlusLib.database import Database
    from DICOMPlusLib.network.listener import Listener, ListenerConfig
    from DICOMPlusLib.network.models import RetrieveOptions
    from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
    from DICOMPlusLib.network.retrieve import retrieve

    compile_bytecode()
    one, four = make_studies(work_dir)
    study1 = str(pydicom.dcmread(one[0], stop_before_pixels=True).StudyInstanceUID)
    study4 = str(pydicom.dcmread(four[0], stop_before_pixels=True).StudyInstanceUID)
    series4 = sorted({str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID) for f in four})
    megabytes = sum(f.stat().st_size for f in one) / 1e6
    env = tool_env()

    listener_port, movescu_port, serve_port = free_port(), free_port(), free_port()
    orthanc = OrthancServer(work_dir / "orthanc", dicomplus_port=listener_port,
                            modalities={"movescu": ("MOVESCU", movescu_port)})  # fmt: skip
    remove_tree(orthanc.storage_dir)
    remove_tree(work_dir / "dcmqrscp")
    qrscp = DcmqrscpServer(work_dir / "dcmqrscp")
    resources: list = []
    db_names = ("db-get", "db-move", "db-cli", "db-4t", "db-4c", "db-4p", "db-qr", "db-qr-cli", "db-serve",
                "db-serve-cli")  # fmt: skip
    out_names = (
        "out-get",
        "out-move",
        "out-qr",
        "out-serve",
        "out-4f",
        *(f"out-4x-{k}" for k in range(SERIES_4)),
    )

    aside = SetAside(work_dir / "set-aside")

    def cleanup() -> None:
        for item in reversed(resources):
            item()
        aside.remove()
        for name in (*db_names, *out_names, "serve-db"):
            remove_tree(work_dir / name)

    try:
        orthanc.start()
        resources.append(orthanc.stop)
        orthanc.upload(one, four)
        qrscp.start()
        resources.append(qrscp.stop)
        qrscp.load(one)
        serve = _serve(work_dir, one, serve_port, "DICOMPLUSPACS")
        resources.append(lambda: (serve.terminate(), serve.wait(30)))
        nodes = {
            "orthanc": RemoteNode("orthanc", DimseEndpoint(orthanc.aet, LOOPBACK, orthanc.dicom_port)),
            "qr": RemoteNode("dcmqrscp", DimseEndpoint(qrscp.aet, LOOPBACK, qrscp.port)),
            "serve": RemoteNode("serve", DimseEndpoint("DICOMPLUSPACS", LOOPBACK, serve_port)),
        }
        addresses = {k: f"{n.ae_title}@{LOOPBACK}:{n.port}" for k, n in nodes.items()}
        outs = {name: work_dir / name for name in out_names}
        paths = {name: work_dir / name for name in db_names}
        for path in (*outs.values(), *paths.values()):
            remove_tree(path)
        for path in outs.values():
            path.mkdir()
        dbs = {name: Database(path) for name, path in paths.items()}
        resources.append(lambda: [db.close() for db in dbs.values()])
        listeners: list[Listener] = []

        def listen() -> None:
            config = ListenerConfig(port=listener_port, host=LOOPBACK, series_idle=3600)
            listeners.append(Listener(dbs["db-move"], config))
            listeners[-1].start()

        listen()
        resources.append(lambda: listeners[-1].stop())
    except BaseException:
        cleanup()
        raise

    def set_aside(*folders: Path):
        def run() -> None:
            aside.move(*folders, recreate=True)

        return run

    def new_db(name: str):
        """The database moved aside and a new empty one in its place (the listener of ``move``
        stopped and started again on it)."""

        def run() -> None:
            moving = name == "db-move"
            if moving:
                listeners.pop().stop()
            dbs[name].close()
            aside.move(paths[name])
            dbs[name] = Database(paths[name])
            if moving:
                listen()

        return run

    def ours(source: str, name: str, method: str, study: str, parallel: int = 1):
        def run() -> None:
            # a C-MOVE's destination: the listener running on this database (new after each run)
            moving = {"listener": listeners[-1]} if method == "move" else {}
            options = RetrieveOptions(parallel=parallel, **moving)
            report = retrieve(nodes[source], dbs[name], study_uid=study, method=method, options=options)
            assert report.complete and len(report.done) == FILES, report.to_dict()

        return run

    def getscu(source: str, out: Path, *keys: str) -> list[str]:
        node = nodes[source]
        keys = keys or ("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study1}")
        return [GETSCU, "-S", "-aet", "DICOMPLUS", "-aec", node.ae_title, *(w for k in keys for w in ("-k", k)),
                "-od", str(out), LOOPBACK, str(node.port)]  # fmt: skip

    def cli(source: str, db: str, *words: str) -> list[str]:
        return [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(paths[db]), "retrieve", addresses[source],
                *(words or ("--study", study1)), "--method", "get"]  # fmt: skip

    movescu = [MOVESCU, "-S", "-aet", "DICOMPLUS", "-aec", orthanc.aet, "-aem", "MOVESCU", "+P", str(movescu_port),
               "-od", str(outs["out-move"]), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study1}",
               LOOPBACK, str(orthanc.dicom_port)]  # fmt: skip
    procs = " & ".join(
        f"{sys.executable} -m DICOMPlusLib.cli --db {paths['db-4p']} retrieve {addresses['orthanc']} --study {study4} "
        f"--series {s} --method get > /dev/null"
        for s in series4
    )
    four_getscu = " & ".join(
        " ".join(
            getscu(
                "orthanc",
                outs[f"out-4x-{k}"],
                "QueryRetrieveLevel=SERIES",
                f"StudyInstanceUID={study4}",
                f"SeriesInstanceUID={s}",
            )
        )
        for k, s in enumerate(series4)
    )
    outs_4x = [outs[f"out-4x-{k}"] for k in range(SERIES_4)]
    # The same work as `dicomplus retrieve --study --parallel 4` by DCMTK: the study's series
    # found first (findscu, its answers' SeriesInstanceUID read from its verbose output), then
    # one getscu per series, all at once (four getscu alone are given the UIDs by the bench).
    one_getscu = " ".join(
        getscu(
            "orthanc",
            outs["out-4f"],
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={study4}",
            "SeriesInstanceUID=$s",
        )
    )
    find_then_get = (
        f"{FINDSCU} -S -v -aet DICOMPLUS -aec {orthanc.aet} -k QueryRetrieveLevel=SERIES "
        f"-k StudyInstanceUID={study4} -k SeriesInstanceUID {LOOPBACK} {orthanc.dicom_port} 2>&1 "
        r"| sed -n 's/.*(0020,000e) UI \[\([0-9.]*\)\].*/\1/p' "
        f"| {{ n=0; while read -r s; do {one_getscu} & n=$((n+1)); done; wait; test $n -eq {SERIES_4}; }}"
    )
    study4_keys = ("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study4}")

    candidates = [
        Candidate("dcmtk-get", command=getscu("orthanc", outs["out-get"]), env=env,
                  after=set_aside(outs["out-get"]), label="getscu (DCMTK) from Orthanc, one association"),
        Candidate("dcmtk-move", command=movescu, env=env, after=set_aside(outs["out-move"]),
                  label="movescu (DCMTK) from Orthanc with its own storage SCP (+P)"),
        Candidate("get", function=ours("orthanc", "db-get", "get", study1), after=new_db("db-get"),
                  label="retrieve(method='get') from Orthanc: C-FIND plan, C-GET, stored + indexed"),
        Candidate("move", function=ours("orthanc", "db-move", "move", study1),
                  after=new_db("db-move"), label="retrieve(method='move') from Orthanc to a running listener"),
        Candidate("get-cli", command=cli("orthanc", "db-cli"), cwd=REPO, after=new_db("db-cli"),
                  label="dicomplus retrieve --method get from Orthanc (fresh process)"),
        Candidate("qr-getscu", command=getscu("qr", outs["out-qr"]), env=env, after=set_aside(outs["out-qr"]),
                  label="getscu (DCMTK) from dcmqrscp"),
        Candidate("qr-get", function=ours("qr", "db-qr", "get", study1), after=new_db("db-qr"),
                  label="retrieve(method='get') from dcmqrscp, in this process"),
        Candidate("qr-get-cli", command=cli("qr", "db-qr-cli"), cwd=REPO, after=new_db("db-qr-cli"),
                  label="dicomplus retrieve --method get from dcmqrscp (fresh process)"),
        Candidate("serve-getscu", command=getscu("serve", outs["out-serve"]), env=env,
                  after=set_aside(outs["out-serve"]), label="getscu (DCMTK) from dicomplus serve"),
        Candidate("serve-get", function=ours("serve", "db-serve", "get", study1), after=new_db("db-serve"),
                  label="retrieve(method='get') from dicomplus serve, in this process"),
        Candidate("serve-get-cli", command=cli("serve", "db-serve-cli"), cwd=REPO, after=new_db("db-serve-cli"),
                  label="dicomplus retrieve --method get from dicomplus serve (fresh process)"),
        Candidate("dcmtk-get-4s", command=getscu("orthanc", outs["out-get"], *study4_keys), env=env,
                  after=set_aside(outs["out-get"]), label="getscu of the 4-series study (one association)"),
        Candidate("dcmtk-get-4x", command=f"{four_getscu} & wait", shell=True, env=env,
                  after=set_aside(*outs_4x), label="4 getscu at once, one series each (4 associations)"),
        Candidate("dcmtk-find-get-4x", command=find_then_get, shell=True, env=env, after=set_aside(outs["out-4f"]),
                  label="findscu of the study's series, then 4 getscu at once (what --study --parallel 4 does)"),
        Candidate("get-4s-threads", function=ours("orthanc", "db-4t", "get", study4, parallel=SERIES_4),
                  after=new_db("db-4t"), label="retrieve(parallel=4) of the 4-series study, in this process"),
        Candidate("get-4s-cli", command=cli("orthanc", "db-4c", "--study", study4, "--parallel", str(SERIES_4)),
                  cwd=REPO, after=new_db("db-4c"), label="dicomplus retrieve --parallel 4 (one fresh process)"),
        Candidate("get-4s-procs", command=f"{procs} & wait", shell=True, cwd=REPO, after=new_db("db-4p"),
                  label="4 x dicomplus retrieve --series at once (processes), one database"),
    ]  # fmt: skip
    return Benchmark(
        name="retrieve",
        description=f"retrieve {FILES} CT instances {ROWS}x{COLS} ({megabytes / FILES * 1e3:.0f} kB each, "
        f"{megabytes:.0f} MB) from Orthanc 1.10, dcmqrscp and dicomplus serve on loopback, {os.cpu_count()} cores",
        candidates=candidates,
        reference="dcmtk-get",
        pairs=[
            ("qr-get-cli", "qr-getscu"),
            ("qr-get", "qr-getscu"),
            ("serve-get-cli", "serve-getscu"),
            ("serve-get", "serve-getscu"),
            ("get-4s-cli", "dcmtk-get-4x"),
            ("get-4s-procs", "dcmtk-get-4x"),
            ("get-4s-threads", "dcmtk-get-4x"),
            ("get-4s-cli", "dcmtk-find-get-4x"),
        ],
        work={"files": FILES, "MB": megabytes},
        cleanup=cleanup,
    )
