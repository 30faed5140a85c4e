"""The engine's operations registry and the task a running operation sees.

:mod:`operations` registers its functions here with :func:`operation`; :mod:`server` runs them
as :class:`Task` objects. Kept apart from the server so that operations and server do not import
each other.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from DICOMPlusLib._log import get_logger
from DICOMPlusLib.engine import protocol
from DICOMPlusLib.errors import CancelledError, DICOMPlusError
from DICOMPlusLib.jobs import CancelToken

if TYPE_CHECKING:
    from DICOMPlusLib.database.protocol import DatabaseProtocol
    from DICOMPlusLib.network.listener import Listener
    from DICOMPlusLib.network.pacs.qrscp import QueryRetrieveSCP
    from DICOMPlusLib.network.storage import Subscription


class TaskHost(Protocol):
    """What a task and the operations see of the engine that runs them
    (:class:`~DICOMPlusLib.engine.server.Engine`): written here, so that the registry does not
    import the server that imports it."""

    listener: Listener | None
    _listener_subscription: Subscription | None
    pacs: QueryRetrieveSCP | None

    def send(self, message: dict) -> None: ...

    def notify(self, topic: str, value: Any) -> None: ...

    def database(
        self, target: str, store: str | None = None, user: Task | None = None
    ) -> DatabaseProtocol: ...

    def finished(self, task: Task) -> None: ...

    def stop_listener(self, at_once: Callable[[], bool] | None = None) -> None: ...

    def stop_pacs(self, at_once: Callable[[], bool] | None = None) -> None: ...


logger = get_logger("DICOMPlusLib.engine.server")

#: Progress events per task are sent at most this often (seconds); the last one always is.
PROGRESS_INTERVAL = 0.05

Operation = Callable[["Task"], Any]
OPERATIONS: dict[str, Operation] = {}


def operation(name: str) -> Callable[[Operation], Operation]:
    """Register ``func(task) -> result`` as the engine operation ``name``."""

    def register(func: Operation) -> Operation:
        OPERATIONS[name] = func
        return func

    return register


_site_stamp: tuple = ()


def refresh_import_paths() -> None:
    """Make packages the host installed since this engine started importable: forget the import
    system's directory caches and, when a site folder changed (a new .pth file, as ``pip install
    --prefix`` setups and some installers write), read its .pth files again."""
    global _site_stamp
    import site

    importlib.invalidate_caches()
    folders = [f for f in site.getsitepackages() if os.path.isdir(f)]
    stamp = tuple(os.stat(f).st_mtime_ns for f in folders)
    if stamp != _site_stamp:
        _site_stamp = stamp
        for folder in folders:
            site.addsitedir(folder)


class Task:
    """One request being served: its arguments, a throttled progress callback, a cancel token."""

    def __init__(self, engine: TaskHost, ident: int, op: str, args: dict) -> None:
        self.engine = engine
        self.id = ident
        self.op = op
        self.args = {key: protocol.decode_value(value) for key, value in args.items()}
        self.cancel = CancelToken()
        self._last_progress = 0.0
        #: The openings this task was given: the engine keeps them open until it ends.
        self.databases: list[DatabaseProtocol] = []

    def progress(self, done: int, total: int, current: str = "") -> None:
        now = time.monotonic()
        last = bool(total) and done >= total
        if not last and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        self.engine.send(
            {
                "id": self.id,
                "event": "progress",
                "done": int(done),
                "total": int(total),
                "current": str(current),
            }
        )

    def log(self, message: str) -> None:
        self.engine.send({"id": self.id, "event": "log", "message": str(message)})

    def database(self, key: str = "db"):
        """The database named by argument ``key`` (a path or a URL; ``store``: its file store)."""
        return self.engine.database(self.args[key], self.args.get("store"), self)

    def run(self) -> None:
        func = OPERATIONS.get(self.op)
        try:
            if func is None:
                raise DICOMPlusError(f"the DICOMPlus engine has no operation {self.op!r}")
            refresh_import_paths()  # packages installed since the engine started are found
            result = func(self)
        except CancelledError as exc:
            self.engine.send({"id": self.id, "event": "cancelled", "message": str(exc)})
        except BaseException as exc:
            if not isinstance(exc, DICOMPlusError):
                logger.exception("engine operation %s failed", self.op)
            self.engine.send({"id": self.id, "event": "failed", "error": protocol.encode_error(exc)})
        else:
            if self.cancel.cancelled and getattr(result, "cancelled", False):
                self.engine.send(
                    {
                        "id": self.id,
                        "event": "cancelled",
                        "message": "Cancelled by the user; completed work was kept.",
                        "result": protocol.encode_value(result),
                    }
                )
            else:
                self.engine.send({"id": self.id, "event": "done", "result": protocol.encode_value(result)})
        finally:
            self.engine.finished(self)
