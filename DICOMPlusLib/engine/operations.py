"""What the engine can do: one function per operation, each a thin call into the library.

Arguments arrive decoded (``task.args``); databases are named by path or ``postgresql://`` URL
(``db``) with their file store (``store``, optional) and opened once per engine and store
(``task.database()``). Results are the library's own report and record types; the host gets them
back as objects (:mod:`DICOMPlusLib.engine.protocol`).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import DICOMPlusLib
from DICOMPlusLib.engine.protocol import VolumeFile
from DICOMPlusLib.engine.tasks import Task, operation
from DICOMPlusLib.errors import CancelledError, DICOMPlusError, LoadError
from DICOMPlusLib.network.nodes import DEFAULT_AE_TITLE


@operation("ping")
def ping(task: Task) -> dict:
    """Who is there: the engine's pid, version and Python."""
    import sys

    return {"pid": os.getpid(), "version": DICOMPlusLib.__version__, "python": sys.version.split()[0]}


@operation("import")
def import_paths(task: Task):
    """Import files and folders (``paths``, ``link``) into the database ``db``: ImportReport."""
    db = task.database()
    return db.import_paths(
        list(task.args["paths"]),
        link=task.args.get("link"),
        progress=task.progress,
        cancel=task.cancel,
    )


@operation("delete")
def delete(task: Task) -> list:
    """Delete ``entries`` ([(level, key)]: "patient" and a PatientID, "study" or "series" and a
    UID) from ``db``, with the files it copied (``files``, default true): a DeleteReport each.
    Here, not in the host: removing a study's files took the host's main thread 0.3 s per
    thousand files. Cancel stops between entries (those done stay deleted)."""
    db = task.database()
    entries = [(str(level), str(key)) for level, key in task.args["entries"]]
    files = bool(task.args.get("files", True))
    reports = []
    for index, (level, key) in enumerate(entries):
        task.cancel.raise_if_cancelled()
        task.progress(index, len(entries), f"{level} {key}")
        reports.append(db.delete(**{level: key}, files=files))
    task.progress(len(entries), len(entries))
    return reports


@operation("search")
def search(task: Task) -> list:
    """Search ``db`` at ``level`` (default study) with ``criteria`` (a dict of keyword -> value,
    DICOM matching), ``text``, ``limit``: the records, as the database's search returns them."""
    db = task.database()
    return db.search(
        task.args.get("level", "study"),
        dict(task.args.get("criteria") or {}),
        text=task.args.get("text"),
        limit=task.args.get("limit"),
    )


@operation("load")
def load(task: Task) -> list[tuple[str, list[VolumeFile] | LoadError]]:
    """Decode ``series`` of ``db`` (``resample``); each volume's voxels go to a .npy file in
    ``folder`` (a new temporary folder when not given) for the host to memory-map. Returns
    [(series UID, [VolumeFile] or LoadError)]; the host removes the files when it is done, and
    the folder it gave after a failure or a cancel (a folder made here is removed then, here).

    A cancel ends it cancelled with nothing for the host, also one that comes once the pixels
    are read, while the volumes are written (seconds for a large one): it ended done before, and
    the host added to the scene what the user had cancelled."""
    from DICOMPlusLib.loading.decoders import refresh_plugins

    refresh_plugins()  # decoders the host installed since this engine started
    db = task.database()
    given = task.args.get("folder")
    folder = given or tempfile.mkdtemp(prefix="dicomplus-load-")
    try:
        return _load_into(task, db, folder)
    except BaseException:
        if not given:  # nobody else knows of it
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _load_into(task: Task, db, folder: str) -> list[tuple[str, list[VolumeFile] | LoadError]]:
    import numpy as np

    from DICOMPlusLib.loading import load_many

    os.makedirs(folder, exist_ok=True)
    loaded = load_many(
        db, list(task.args["series"]), resample=bool(task.args.get("resample")),
        progress=task.progress, cancel=task.cancel,
    )  # fmt: skip
    out: list[tuple[str, list[VolumeFile] | LoadError]] = []
    count = 0
    for uid, volumes in loaded:
        if isinstance(volumes, LoadError):
            out.append((uid, volumes))
            continue
        files = []
        for volume in volumes:
            _raise_if_load_cancelled(task)
            path = os.path.join(folder, f"volume-{count}.npy")
            count += 1
            np.save(path, np.ascontiguousarray(volume.array), allow_pickle=False)
            files.append(VolumeFile(path, volume.info))
        out.append((uid, files))
    _raise_if_load_cancelled(task)
    return out


def _raise_if_load_cancelled(task: Task) -> None:
    if task.cancel.cancelled:
        raise CancelledError("Cancelled by the user; nothing was loaded.")


@operation("preview_plan")
def preview_plan(task: Task):
    """What the preview shows first: (SeriesRecord, [VolumeInfo], windows) of ``series``."""
    from DICOMPlusLib.loading.preview import plan_preview

    return plan_preview(task.database(), task.args["series"])


@operation("frame")
def frame(task: Task):
    """The output values of one ``frame`` (a loading Frame): a 2D (or RGB) array."""
    from DICOMPlusLib.loading.decoders import refresh_plugins
    from DICOMPlusLib.loading.preview import read_frame

    refresh_plugins()
    return read_frame(task.args["frame"])


@operation("thumbnail")
def thumbnail(task: Task) -> bytes:
    """The PNG thumbnail of ``series`` of ``db`` (``size`` pixels; cached beside the database)."""
    from DICOMPlusLib.loading.decoders import refresh_plugins
    from DICOMPlusLib.loading.preview import DEFAULT_SIZE, series_thumbnail

    refresh_plugins()
    return series_thumbnail(
        task.database(), task.args["series"], size=int(task.args.get("size", DEFAULT_SIZE))
    )


@operation("echo")
def echo(task: Task):
    """Echo ``node`` (a RemoteNode; C-ECHO or a QIDO-RS probe): EchoResult."""
    from DICOMPlusLib.network.echo import echo as run_echo

    return run_echo(
        task.args["node"],
        calling_ae_title=task.args.get("calling_ae_title", DEFAULT_AE_TITLE),
        timeout=float(task.args.get("timeout", 10.0)),
        cancel=task.cancel,
    )


@operation("query")
def query(task: Task) -> list:
    """C-FIND (or QIDO-RS) ``node`` at ``level`` with ``criteria``: the records."""
    from DICOMPlusLib.network.query import query as run_query

    out = []
    for record in run_query(
        task.args["node"],
        task.args.get("level", "study"),
        task.args.get("criteria") or {},
        calling_ae_title=task.args.get("calling_ae_title", DEFAULT_AE_TITLE),
        limit=task.args.get("limit"),
        cancel=task.cancel,
    ):
        out.append(record)
        task.progress(len(out), 0, "")
    return out


@operation("retrieve")
def retrieve(task: Task):
    """Retrieve ``study``/``series`` from ``node`` into ``db`` (``method``: get, move, dicomweb or
    the node's own); C-MOVE goes to the engine's running listener. RetrieveReport."""
    from DICOMPlusLib.network.models import RetrieveOptions
    from DICOMPlusLib.network.retrieve import retrieve as run_retrieve

    listener = task.engine.listener
    options = RetrieveOptions(
        calling_ae_title=task.args.get("calling_ae_title", DEFAULT_AE_TITLE),
        listener=listener if listener is not None and listener.running else None,
    )
    return run_retrieve(
        task.args["node"],
        task.database(),
        study_uid=task.args.get("study"),
        series_uids=list(task.args.get("series") or ()),
        method=task.args.get("method"),
        options=options,
        progress=task.progress,
        cancel=task.cancel,
    )


@operation("send")
def send(task: Task):
    """Send ``studies`` and ``series`` of ``db`` to ``node`` (C-STORE, or STOW-RS for a DICOMweb
    node): SendReport."""
    from DICOMPlusLib.network.send import send_selection
    from DICOMPlusLib.network.send_models import SendOptions

    return send_selection(
        task.database(), task.args["node"], studies=list(task.args.get("studies") or ()),
        series=list(task.args.get("series") or ()),
        options=SendOptions(calling_ae_title=task.args.get("calling_ae_title", DEFAULT_AE_TITLE)),
        progress=task.progress, cancel=task.cancel,
    )  # fmt: skip


@operation("listen")
def listen(task: Task) -> int:
    """Start the listener (``config``: a ListenerConfig) into ``db``; returns the bound port.
    Each completed series is announced as a ``series_complete`` notification.

    A cancel (the host stops the listener while it starts: a Stop, a switch of database) is
    honoured at each step: the previous listener's stop is cut short, a database that took its
    time to open is not listened into, and a listener that came up meanwhile is stopped at once;
    the task then ends cancelled with no listener running."""
    from DICOMPlusLib.network.listener import Listener

    engine = task.engine
    engine.stop_listener(at_once=lambda: task.cancel.cancelled)
    db = task.database()
    if task.cancel.cancelled:
        raise CancelledError("Cancelled by the user; the listener was not started.")
    listener = Listener(db, task.args["config"])

    def on_series_complete(event) -> None:
        engine.notify("series_complete", event)

    subscription = listener.subscribe(on_series_complete=on_series_complete)
    try:
        listener.start()
    except BaseException:
        subscription.close()
        raise
    engine.listener, engine._listener_subscription = listener, subscription
    if task.cancel.cancelled:  # its Cancel came while it bound the port
        engine.stop_listener(at_once=lambda: True)
        raise CancelledError("Cancelled by the user; the listener was stopped as it started.")
    return listener.port


def _stop_cut_short(task: Task, what: str, stop) -> None:
    """Run ``stop(at_once)`` (a server's stop with a grace); CancelledError if the task's cancel
    cut the grace short (the associations under way were aborted: the server is stopped all the
    same). A cancel that came once nothing was left to wait for leaves the task done."""
    cut = []

    def at_once() -> bool:
        if task.cancel.cancelled:
            cut.append(True)
            return True
        return False

    stop(at_once)
    if cut:
        raise CancelledError(
            f"Cancelled by the user: the {what} stopped at once (transfers under way, if any, "
            "were aborted; their partial instances are not kept)."
        )


@operation("unlisten")
def unlisten(task: Task) -> None:
    """Stop the listener (associations in progress get its STOP_GRACE to finish; a cancel of
    this task aborts them at once and ends it cancelled; their series are announced)."""
    _stop_cut_short(task, "listener", lambda at_once: task.engine.stop_listener(at_once=at_once))


@operation("listener")
def listener_state(task: Task) -> dict:
    """{"running": bool, "port": int} of the engine's listener."""
    listener = task.engine.listener
    if listener is None or not listener.running:
        return {"running": False, "port": 0}
    return {"running": True, "port": listener.port}


@operation("pacs")
def pacs(task: Task) -> int:
    """Start a Query/Retrieve SCP over ``db`` (``config``: a QRConfig; ``sample``: add the sample
    patients first), the sample PACS of the panel and of the module's self-test; returns its
    port. One per engine: a second call replaces the first."""
    from DICOMPlusLib.network.pacs.qrscp import QueryRetrieveSCP
    from DICOMPlusLib.network.pacs.sample import make_sample_data

    engine = task.engine
    engine.stop_pacs()
    db = task.database()
    if task.args.get("sample"):
        make_sample_data(db)
    server = QueryRetrieveSCP(db, task.args["config"])
    server.start()
    engine.pacs = server
    return server.port


@operation("pacs_stop")
def pacs_stop(task: Task) -> None:
    """Stop the sample PACS (a retrieve under way gets its STOP_GRACE; a cancel of this task
    aborts it at once and ends it cancelled)."""
    _stop_cut_short(task, "sample PACS", lambda at_once: task.engine.stop_pacs(at_once=at_once))


@operation("fail")
def fail(task: Task) -> None:
    """Raise the DICOMPlus error ``message`` (hosts test their error path with it)."""
    raise DICOMPlusError(str(task.args.get("message", "failed on request")))
