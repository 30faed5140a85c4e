"""Soak: the listener under 8 concurrent senders for 10,000 instances, killed with SIGKILL and
restarted every few seconds (``python -m bench.soak``; not a timed comparison, so not listed by
``python -m bench``).

Each sender is a process of its own that keeps one association open (our SCU, so that every
C-STORE is timed from its first byte sent to its response) and, when the listener dies under it,
reconnects and sends the unacknowledged instance again. The listener is ``dicomplus listen`` as
a separate process; its resident memory is sampled from /proc every 0.2 s.

Reported: instances acknowledged (status 0x0000) vs stored in the database at the end (every
acknowledged instance must be there: PS3.4 B.2.3), rows without their file, peak RSS per listener
life (flat means no growth across restarts), ``.incoming-*`` temporary files left in the store
after the last (graceful) stop, and the C-STORE latency (median, p99) compared with the same
senders against DCMTK ``storescp --fork`` measured in the same run (no kills).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
STORESCP = "/usr/bin/storescp"
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _instance(sender: int, k: int, rows: int) -> tuple[str, bytes]:
    """(SOP Instance UID, Explicit VR LE data set bytes) of a small CT image."""
    import numpy as np
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    sop = f"1.2.826.0.1.3680043.10.1137.8.{sender}.{k + 1}"
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CT, sop
    ds.PatientID, ds.PatientName, ds.Modality = f"SOAK{sender}", f"Soak^{sender}", "CT"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1137.8.{sender}"
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.1137.8.{sender}.0"
    ds.InstanceNumber = k + 1
    ds.Rows = ds.Columns = rows
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = (np.arange(rows * rows, dtype=np.uint16) % 4096 + k % 7).tobytes()
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False  # Explicit VR Little Endian
    write_dataset(buf, ds)
    return sop, buf.getvalue()


def _sender(sender: int, count: int, port: int, rows: int, calling: str, called: str, out: str) -> None:
    """Send ``count`` instances; reconnect and resend after a failure. Writes JSON to ``out``."""
    sys.path.insert(0, str(REPO))
    from DICOMPlusLib.network.dimse import messages as dimse
    from DICOMPlusLib.network.dimse import scu
    from DICOMPlusLib.network.dimse.status import Status

    acked, latencies, failures = [], [], 0
    assoc = None
    k = 0
    give_up = time.monotonic() + 600
    while k < count and time.monotonic() < give_up:
        sop, data = _instance(sender, k, rows)
        try:
            if assoc is None:
                assoc = scu.associate(LOOPBACK, port, called_ae=called, calling_ae=calling,
                                      contexts=[(CT, [EXPLICIT])], acse_timeout=5, dimse_timeout=30)  # fmt: skip
            cx = next(iter(assoc.contexts.values()))
            started = time.perf_counter()
            status = assoc.store(cx, sop, data).get(dimse.STATUS)
            latency = time.perf_counter() - started
        except Exception:  # the listener died (or is not back yet): reconnect, send again
            failures += 1
            if assoc is not None:
                assoc.abort()
            assoc = None
            time.sleep(0.1)
            continue
        if status == Status.SUCCESS:
            acked.append(sop)
            latencies.append(latency)
            k += 1
        else:
            failures += 1
    if assoc is not None:
        try:
            assoc.release()
        except Exception:
            assoc.abort()
    Path(out).write_text(json.dumps({"acked": acked, "latencies": latencies, "failures": failures}))


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ListenerProcess:
    """``dicomplus listen`` as a child process, restartable on the same port."""

    def __init__(self, db: Path, port: int) -> None:
        self.argv = [sys.executable, "-m", "DICOMPlusLib.cli", "--db", str(db), "listen", "--port", str(port),
                     "--host", LOOPBACK, "--idle", "3600", "--json"]  # fmt: skip
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.peaks: list[int] = []  # peak RSS (KiB) of each life
        self.kills = 0
        self._sampler: threading.Thread | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
        line = self.proc.stdout.readline()
        if '"listening"' not in line:
            raise RuntimeError(f"the listener did not start: {line!r}")
        self.peaks.append(0)
        proc, life = self.proc, len(self.peaks) - 1

        def sample() -> None:
            while proc.poll() is None:
                self.peaks[life] = max(self.peaks[life], _rss_kib(proc.pid))
                time.sleep(0.2)

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.kills += 1

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def _send_all(
    port: int, senders: int, total: int, rows: int, called: str, work: Path, during=None
) -> list[dict]:
    ctx = multiprocessing.get_context("spawn")
    per = [total // senders + (1 if i < total % senders else 0) for i in range(senders)]
    outs = [work / f"sender{i}.json" for i in range(senders)]
    procs = [
        ctx.Process(target=_sender, args=(i, per[i], port, rows, f"SOAK{i}", called, str(outs[i])))
        for i in range(senders)
    ]
    for p in procs:
        p.start()
    if during is not None:
        during(procs)
    for p in procs:
        p.join()
    return [json.loads(o.read_text()) for o in outs]


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def soak(work: Path, *, total: int, senders: int, kill_every: float, rows: int, reference: int) -> dict:
    sys.path.insert(0, str(REPO))
    from DICOMPlusLib.database import Database

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db_dir = work / "db"
    listener = ListenerProcess(db_dir, _free_port())
    listener.start()

    def killer(procs) -> None:
        while any(p.is_alive() for p in procs):
            deadline = time.monotonic() + kill_every
            while time.monotonic() < deadline and any(p.is_alive() for p in procs):
                time.sleep(0.1)
            if any(p.is_alive() for p in procs):
                listener.kill()
                listener.start()

    started = time.monotonic()
    try:
        results = _send_all(listener.port, senders, total, rows, "DICOMPLUS", work, killer)
    except BaseException:
        listener.kill()  # never leave it running
        raise
    seconds = time.monotonic() - started
    listener.stop()
    acked = {sop for r in results for sop in r["acked"]}
    db = Database(db_dir)
    try:
        rows_db = list(db.instance_paths().items())
        store_root = db.store_root
    finally:
        db.close()
    stored = {sop for sop, _ in rows_db}
    missing_files = sum(1 for _, path in rows_db if not os.path.exists(path))
    temporaries = len(list(store_root.glob(".incoming-*")))
    latencies = [t for r in results for t in r["latencies"]]

    # the same senders against DCMTK storescp --fork (a process per association), no kills
    ref_dir = work / "storescp"
    ref_dir.mkdir()
    port = _free_port()
    scp = subprocess.Popen([STORESCP, "--fork", "-aet", "STORESCP", "-od", str(ref_dir), str(port)],
                           env={**os.environ, "TCP_NODELAY": "1"}, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.5)
        ref_work = work / "ref"
        ref_work.mkdir()
        ref = _send_all(port, senders, reference, rows, "STORESCP", ref_work)
    finally:
        os.killpg(scp.pid, signal.SIGTERM)
        scp.wait(30)
    ref_latencies = [t for r in ref for t in r["latencies"]]
    p99, ref_p99 = _percentile(latencies, 0.99), _percentile(ref_latencies, 0.99)
    return {
        "instances": total,
        "senders": senders,
        "seconds": round(seconds, 1),
        "kills": listener.kills,
        "acknowledged": len(acked),
        "stored": len(stored),
        "acknowledged_not_stored": len(acked - stored),
        "rows_without_file": missing_files,
        "failed_attempts": sum(r["failures"] for r in results),  # refused connects and cut stores, resent
        "peak_rss_mib_per_life": [round(p / 1024, 1) for p in listener.peaks],
        "temporary_files_left": temporaries,
        "latency_ms_median": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "latency_ms_p99": round(p99 * 1000, 2),
        "storescp_latency_ms_median": round(statistics.median(ref_latencies) * 1000, 2)
        if ref_latencies
        else None,
        "storescp_latency_ms_p99": round(ref_p99 * 1000, 2),
        "p99_ratio_vs_storescp": round(p99 / ref_p99, 2) if ref_p99 else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between kill -9 (default 5)")
    parser.add_argument("--rows", type=int, default=64, help="image size (rows = columns; default 64)")
    parser.add_argument(
        "--reference", type=int, default=2_000, help="instances sent to storescp (default 2000)"
    )
    parser.add_argument("--work-dir", type=Path, default=REPO / "bench" / "_work" / "soak")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = soak(args.work_dir, total=args.instances, senders=args.senders, kill_every=args.kill_every,
                  rows=args.rows, reference=args.reference)  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
    ok = (
        result["acknowledged_not_stored"] == 0
        and result["rows_without_file"] == 0
        and result["acknowledged"] == args.instances
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
