"""Fixtures for real DICOM peers on loopback: Orthanc, DCMTK dcmqrscp and storescp, the DCMTK
command-line tools and the dicom3tools verifiers (dciodvfy, dcentvfy).

Fixtures (all skip on a developer machine and fail in CI when the executable is missing):

* ``dcmtk`` (session): the ``DCMTK`` paths, after checking every tool is installed.
* ``orthanc_session`` (session): one Orthanc for tests that only read or only add data.
* ``orthanc_factory`` (function): ``orthanc_factory(**OrthancServer kwargs) -> OrthancServer``,
  started; e.g. ``orthanc_factory(modalities={"storescp": ("STORESCP", port)})``.
* ``orthanc`` (function): a fresh, empty Orthanc (``orthanc_factory()``); prefer ``orthanc_session``
  where isolation is not needed (a start costs a fresh folder and ~0.1-1 s).
* ``dcmqrscp_factory`` / ``dcmqrscp`` (function): DCMTK Q/R SCP; the factory takes extra HostTable
  entries (C-MOVE destinations): ``dcmqrscp_factory(destinations={"store": ("STORESCP", port)})``.
* ``storescp_factory`` / ``storescp`` (function): DCMTK storescp writing into a tmp folder.
* ``dciodvfy_tool`` / ``dcentvfy_tool`` (session): the ``dciodvfy`` / ``dcentvfy`` functions.

Every server is a child started in its own session (``setsid``) with env ``TCP_NODELAY=1`` (Debian's
DCMTK, also inside Orthanc, keeps Nagle on otherwise: up to 40x slower C-STOREs), listens on free
ports (it binds 0.0.0.0: neither Orthanc 1.10 nor DCMTK can bind loopback only, we only ever talk to
127.0.0.1), writes its log into its tmp folder, and is stopped by PID (its process group:
dcmqrscp forks a child per association): ``stop()`` sends ``stop_signal`` (SIGTERM), then SIGKILL
after 10 s; ``discard()``, what the fixtures' teardowns call, sends SIGKILL at once (the peer's
state goes with its tmp folder, and Orthanc's graceful stop alone takes ~3.3 s). A failing test gets
the log tails of the peers it used appended to its report; a safety net at session end stops any
peer still running.

Our own AE title is ``DICOMPLUS`` (``OUR_AET``); every peer knows it (Orthanc ``DicomModalities``,
dcmqrscp ``HostTable``) at 127.0.0.1 and a port the test may choose (``dicomplus_port``; by default a
port that was free when the peer was configured, readable as ``server.dicomplus_port``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dicomplus_testing.util import free_port, missing, require_executable

OUR_AET = "DICOMPLUS"
LOOPBACK = "127.0.0.1"
STOP_TIMEOUT = 10.0


# --------------------------------------------------------------------------------------------
# DCMTK command-line tools
# --------------------------------------------------------------------------------------------


class ToolError(RuntimeError):
    """A command-line tool exited with a non-zero status (message has its output)."""


def tool_env() -> dict[str, str]:
    """The environment for DCMTK tools and Orthanc: ours plus ``TCP_NODELAY=1``."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class DcmtkTools:
    """Absolute paths of DCMTK's tools. Never call them by bare name: pynetdicom installs console
    scripts with the same names (and other options) into the venv, which shadow them on PATH."""

    echoscu: str = "/usr/bin/echoscu"
    storescu: str = "/usr/bin/storescu"
    storescp: str = "/usr/bin/storescp"
    findscu: str = "/usr/bin/findscu"
    movescu: str = "/usr/bin/movescu"
    getscu: str = "/usr/bin/getscu"
    dcmdump: str = "/usr/bin/dcmdump"
    dcmqrscp: str = "/usr/bin/dcmqrscp"

    TOOLS = ("echoscu", "storescu", "storescp", "findscu", "movescu", "getscu", "dcmdump", "dcmqrscp")

    def path(self, tool: str) -> str:
        """The absolute path of ``tool`` (one of ``TOOLS``), after require_executable."""
        if tool not in self.TOOLS:
            raise ValueError(f"unknown DCMTK tool {tool!r}; known: {', '.join(self.TOOLS)}")
        return require_executable(getattr(self, tool))

    def require(self, *tools: str) -> DcmtkTools:
        """Skip (locally) or fail (CI) unless all ``tools`` (default: all) are installed."""
        for tool in tools or self.TOOLS:
            self.path(tool)
        return self

    def run(
        self,
        tool: str,
        *args: str | int | os.PathLike,
        timeout: float = 60.0,
        check: bool = True,
        cwd: str | os.PathLike | None = None,
    ) -> subprocess.CompletedProcess:
        """Run a DCMTK tool with env ``TCP_NODELAY=1``, stdin closed, text output captured.
        Raises ``ToolError`` (with the output) on a non-zero exit if ``check``, and
        ``subprocess.TimeoutExpired`` (after killing it) past ``timeout`` seconds."""
        argv = [self.path(tool), *map(str, args)]
        proc = subprocess.run(
            argv,
            env=tool_env(),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise ToolError(
                f"{' '.join(argv)} exited with {proc.returncode}\n"
                f"--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}"
            )
        return proc


DCMTK = DcmtkTools()


# --------------------------------------------------------------------------------------------
# Processes and ports
# --------------------------------------------------------------------------------------------


def dying_with_us(argv: list[str]) -> list[str]:
    """``argv`` run so that the child gets SIGKILL when the test process that starts it dies
    (Linux's parent-death signal, set by util-linux's ``setpriv``, which then runs ``argv`` under
    the same PID): a test process that crashes (a segmentation fault runs no clean-up) leaves no
    server behind. Only from the main thread: the signal follows the thread that started the
    child, and a peer started by a thread that ends would be killed with it."""
    if (
        sys.platform.startswith("linux")
        and threading.current_thread() is threading.main_thread()
        and shutil.which("setpriv")
    ):
        return ["setpriv", "--pdeathsig", "KILL", "--", *argv]
    return argv


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """True if a TCP connection to host:port succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def dicomplus_server(*args: str | os.PathLike, port: int, startup: float = 60.0):
    """A ``dicomplus`` command that serves on ``port`` (``listen``, ``serve``) run as a user runs
    it, with its stdout and stderr as text pipes: yielded once the port accepts; killed on the
    way out if the test did not end it."""
    from dicomplus_testing.util import REPO_ROOT

    cmd = dying_with_us([sys.executable, "-m", "DICOMPlusLib.cli", *map(str, args)])
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + startup
        while not port_accepts(port) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@contextlib.contextmanager
def port_that_drops():
    """A loopback port that drops every SYN, as a firewall's DROP or an address nothing answers
    would: a listening socket whose backlog is full (a connection made to it, never accepted)."""
    with socket.socket() as full, socket.socket() as filler:
        full.bind((LOOPBACK, 0))
        full.listen(0)
        filler.connect(full.getsockname())  # fills the backlog, never accepted
        yield full.getsockname()[1]


def connecting_to(port: int) -> bool:
    """Whether a connection to ``port`` waits in SYN-SENT (/proc/net/tcp state 02): its SYN is
    dropped and the kernel retries it."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "02" and int(fields[2].partition(":")[2], 16) == port:
            return True
    return False


def port_listening(port: int) -> bool:
    """True if any socket of this machine LISTENs on TCP ``port`` (any address, IPv4 or IPv6),
    from /proc/net/tcp{,6} (TIME_WAIT connections do not count)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of ``pid`` from /proc, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """PIDs of the live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                members.append(int(entry))
    return members


class PeerStartError(RuntimeError):
    """A peer did not become ready (message has the command and its log tail)."""


_RUNNING: set[PeerProcess] = set()


class PeerProcess:
    """A server child process: started with setsid and env TCP_NODELAY=1, stdout+stderr into
    ``log_path``, stopped by PID (its process group). Subclasses define ``executable``,
    ``_prepare()`` (choose ports, write config), ``_argv()`` and ``_ready()``."""

    name = "peer"
    executable = ""
    start_timeout = 20.0
    #: What ``stop()`` sends first: the peer's own graceful end.
    stop_signal = signal.SIGTERM

    def __init__(self, workdir: str | os.PathLike) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen | None = None
        self._fixed_ports = False  # True when the caller chose ports: no retry on another port

    # to override
    def _prepare(self) -> None:
        raise NotImplementedError

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict:
        """Extra ``subprocess.Popen`` arguments (e.g. another user to run as)."""
        return {}

    # lifecycle
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_text(), lines)

    def start(self) -> PeerProcess:
        """Start and wait until ready; retried on fresh ports (up to 3 attempts) if the child
        exits early, as when a port chosen by free_port() was taken in between."""
        require_executable(self.executable)
        if self.running:
            return self
        attempts = 1 if self._fixed_ports else 3
        for attempt in range(1, attempts + 1):
            self._prepare()
            argv = self._argv()
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            with open(self.log_path, "a") as log:
                log.write(f"### {time.strftime('%H:%M:%S')} attempt {attempt}: {' '.join(argv)}\n")
                log.flush()
                self._proc = subprocess.Popen(
                    dying_with_us(argv),
                    cwd=self.workdir,
                    env=tool_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # setsid: own process group, stopped as a group
                    **self._popen_kwargs(),
                )
            _RUNNING.add(self)
            deadline = time.monotonic() + self.start_timeout
            delay = 0.01
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break
                if self._ready():
                    return self
                time.sleep(delay)
                delay = min(delay * 1.5, 0.1)
            rc = self._proc.poll()
            self.stop()
            if rc is None:
                raise PeerStartError(
                    f"{self.name} not ready after {self.start_timeout:.0f} s: {' '.join(argv)}\n"
                    f"--- {self.log_path} ---\n{self.log_tail()}"
                )
            if b"in use" not in self.log_path.read_bytes()[log_start:].lower():
                break  # not a port clash: another port will not help
        raise PeerStartError(
            f"{self.name} exited with status {rc} during startup: {' '.join(argv)}\n"
            f"--- {self.log_path} ---\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """``stop_signal`` (SIGTERM) to the process group, wait up to ``timeout`` s, then SIGKILL.
        Also ends forked children left in the group. Raises if anything survives SIGKILL.
        Idempotent."""
        self._end(self.stop_signal, timeout)

    def discard(self) -> None:
        """SIGKILL to the process group at once, then as ``stop()``: for a peer whose state is
        thrown away with its tmp folder (every fixture's teardown), where a graceful stop only
        costs time (Orthanc's: ~3.3 s, PostgreSQL's: until its clients leave). Idempotent."""
        self._end(signal.SIGKILL, 5.0)

    def _end(self, first: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid  # setsid: the group id is the child's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, first)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait(5)
        # forked children (dcmqrscp) got the SIGTERM too; give them a moment, then kill
        deadline = time.monotonic() + 2.0
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_members(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.1)
        self._proc = None
        _RUNNING.discard(self)
        left = group_members(pgid)
        if left:
            raise RuntimeError(f"{self.name}: processes {left} survived SIGKILL")

    def ports(self) -> list[int]:
        """The TCP ports this peer listens on."""
        raise NotImplementedError

    def __enter__(self) -> PeerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} ports={self.ports()} dir={self.workdir}>"


# --------------------------------------------------------------------------------------------
# Orthanc
# --------------------------------------------------------------------------------------------


class OrthancError(RuntimeError):
    """An Orthanc REST call answered with an HTTP error (message has the body)."""


_ORTHANC_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")


def _modality_entry(spec: Any) -> dict:
    """``("AET", port)``, ``("AET", host, port)`` or an Orthanc modality dict -> Orthanc dict."""
    if isinstance(spec, Mapping):
        entry = dict(spec)
    elif len(spec) == 2:
        entry = {"AET": spec[0], "Host": LOOPBACK, "Port": int(spec[1])}
    elif len(spec) == 3:
        entry = {"AET": spec[0], "Host": spec[1], "Port": int(spec[2])}
    else:
        raise ValueError(f"bad modality {spec!r}: use (AET, port), (AET, host, port) or a dict")
    for key in ("AllowEcho", "AllowFind", "AllowMove", "AllowGet", "AllowStore"):
        entry.setdefault(key, True)
    return entry


class OrthancServer(PeerProcess):
    """Orthanc 1.10 (Debian) with the DICOMweb plugin, on free loopback ports, storage in tmp.

    Access control, chosen to catch client bugs rather than to be permissive:
    * ``DicomCheckCalledAet`` **true** (default ``check_called_aet=True``): an association whose
      called AE title is not ``ORTHANC`` is rejected, so a client sending the wrong called AET
      fails here as it would on a strict PACS (Orthanc's own default is false).
    * ``DicomAlwaysAllowEcho/Store`` true, ``DicomAlwaysAllowFind/Get/Move`` false: only AEs in
      ``DicomModalities`` may query/retrieve. Pitfall: Orthanc sends **no DIMSE response** to a
      C-FIND/GET/MOVE from an unknown AE (the SCU hangs until its dimse_timeout).
    * ``DicomModalities``: ``dicomplus`` = (DICOMPLUS, 127.0.0.1, ``dicomplus_port``) with every
      Allow* true, plus ``modalities`` given by the test. C-MOVE destinations must be listed here
      (unknown destination -> final status 0xC000, not 0xA801). Fixed at start: Orthanc cannot add
      modalities at runtime without ``DicomModalitiesInDatabase``; pass ``config`` to change that.
    * ``UnknownSopClassAccepted`` true, ``RemoteAccessAllowed`` false, no HTTP authentication.

    ``config`` entries override/extend the generated JSON (top level).
    """

    name = "orthanc"
    executable = "/usr/sbin/Orthanc"
    dicomweb_plugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        modalities: Mapping[str, Any] | None = None,
        dicomplus_port: int | None = None,
        aet: str = "ORTHANC",
        check_called_aet: bool = True,
        dicomweb: bool = True,
        http_port: int | None = None,
        dicom_port: int | None = None,
        config: Mapping[str, Any] | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__(workdir)
        self.aet = aet
        self.check_called_aet = check_called_aet
        self.dicomweb = dicomweb
        self.dicomplus_port = dicomplus_port or free_port()
        self.extra_modalities = dict(modalities or {})
        self.extra_config = dict(config or {})
        self.verbose = verbose
        self._want_http, self._want_dicom = http_port, dicom_port
        self._fixed_ports = http_port is not None and dicom_port is not None
        self.http_port = http_port or 0
        self.dicom_port = dicom_port or 0
        self.config_path = self.workdir / "orthanc.json"
        self.storage_dir = self.workdir / "storage"
        self._session = None

    @property
    def modalities(self) -> dict[str, dict]:
        """The ``DicomModalities`` section, name -> Orthanc entry."""
        entries = {"dicomplus": _modality_entry((OUR_AET, self.dicomplus_port))}
        for name, spec in self.extra_modalities.items():
            entries[name] = _modality_entry(spec)
        return entries

    def config(self) -> dict:
        cfg = {
            "Name": "DICOMPlusTestOrthanc",
            "StorageDirectory": str(self.storage_dir),
            "IndexDirectory": str(self.storage_dir),
            "StorageCompression": False,
            "Plugins": [self.dicomweb_plugin] if self.dicomweb else [],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "HttpDescribeErrors": True,
            "HttpCompressionEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": self.check_called_aet,
            "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "UnknownSopClassAccepted": True,
            "DicomModalities": self.modalities,
            "DicomModalitiesInDatabase": False,
            "DicomWeb": {
                "Enable": self.dicomweb,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "Host": LOOPBACK,
                "Ssl": False,
            },
            "ConcurrentJobs": 2,
            "SaveJobs": False,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
        }
        cfg.update(self.extra_config)
        return cfg

    def _prepare(self) -> None:
        if self.dicomweb and not os.path.isfile(self.dicomweb_plugin):
            missing(f"Orthanc DICOMweb plugin {self.dicomweb_plugin} (Debian package orthanc-dicomweb)")
        self.http_port = self._want_http or free_port()
        self.dicom_port = self._want_dicom or free_port()
        while self.dicom_port == self.http_port:
            self.dicom_port = free_port()
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config(), indent=2))

    def _argv(self) -> list[str]:
        return [self.executable, *(["--verbose"] if self.verbose else []), str(self.config_path)]

    def _ready(self) -> bool:
        # Orthanc opens its DICOM port before its HTTP server: /system answering means both are up
        # (401 counts: a server started with AuthenticationEnabled answers so to anonymous calls)
        try:
            return self.request("GET", "/system", timeout=1.0, check=False).status_code in (200, 401)
        except Exception:
            return False

    def ports(self) -> list[int]:
        return [self.http_port, self.dicom_port]

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful stop takes ~3.3 s (HTTP ~1.8 s, DICOM ~1 s, jobs ~0.3 s)."""
        if self._session is not None:
            self._session.close()
            self._session = None
        super().stop(timeout)

    # addresses
    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    # REST
    def request(self, method: str, path: str, *, check: bool = True, timeout: float = 60.0, **kwargs):
        """A ``requests`` call to ``url + path`` (proxies from the environment are ignored).
        Raises ``OrthancError`` with the answer body on HTTP >= 400 if ``check``."""
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.trust_env = False  # never send loopback traffic through an HTTP proxy
        response = self._session.request(method, self.url + path, timeout=timeout, **kwargs)
        if check and response.status_code >= 400:
            raise OrthancError(
                f"{method} {path} -> HTTP {response.status_code}: {response.text[:2000]}\n"
                f"--- {self.log_path} ---\n{self.log_tail(20)}"
            )
        return response

    @staticmethod
    def _decode(response) -> Any:
        if "json" in response.headers.get("Content-Type", ""):
            return response.json()
        return response.text

    def get(self, path: str, **params) -> Any:
        """GET ``path`` with query ``params``; the JSON answer (or text)."""
        return self._decode(self.request("GET", path, params=params or None))

    def post(self, path: str, json: Any = None, *, data: bytes | str | None = None, **kwargs) -> Any:
        """POST ``json`` (or raw ``data``) to ``path``; the JSON answer (or text)."""
        return self._decode(self.request("POST", path, json=json, data=data, **kwargs))

    def put(self, path: str, json: Any = None, **kwargs) -> Any:
        return self._decode(self.request("PUT", path, json=json, **kwargs))

    def delete(self, path: str) -> Any:
        return self._decode(self.request("DELETE", path))

    def upload(self, *paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
        """POST /instances every file given (folders are walked recursively). Returns Orthanc's
        answers ({"ID", "ParentSeries", "ParentStudy", "Status", ...}); raises unless each
        Status is Success or AlreadyStored."""
        answers = []
        for file in _expand(paths):
            answer = self.post(
                "/instances", data=Path(file).read_bytes(), headers={"Content-Type": "application/dicom"}
            )
            if answer.get("Status") not in ("Success", "AlreadyStored"):
                raise OrthancError(f"upload of {file}: {answer}")
            answers.append(answer)
        return answers

    def counts(self) -> dict[str, int]:
        """{"patients", "studies", "series", "instances"} from /statistics."""
        stats = self.get("/statistics")
        return {
            "patients": int(stats["CountPatients"]),
            "studies": int(stats["CountStudies"]),
            "series": int(stats["CountSeries"]),
            "instances": int(stats["CountInstances"]),
        }

    def patient_ids(self) -> list[str]:
        return self.get("/patients")

    def study_ids(self) -> list[str]:
        return self.get("/studies")

    def series_ids(self) -> list[str]:
        return self.get("/series")

    def instance_ids(self) -> list[str]:
        return self.get("/instances")

    def lookup(self, uid: str) -> list[dict]:
        """Orthanc resources whose DICOM identifier is ``uid``: [{"ID", "Type", "Path"}]."""
        return self.post("/tools/lookup", data=uid)

    def resource_id(self, uid_or_id: str) -> str:
        """An Orthanc ID given an Orthanc ID or a Study/Series/SOP Instance UID (or PatientID)."""
        if _ORTHANC_ID.match(uid_or_id):
            return uid_or_id
        found = self.lookup(uid_or_id)
        if len(found) != 1:
            raise OrthancError(f"{uid_or_id!r} matches {len(found)} resources: {found}")
        return found[0]["ID"]

    def store_to(self, modality: str, resources: str | Iterable[str], *, timeout: float = 120.0) -> dict:
        """Orthanc as C-STORE SCU: POST /modalities/<modality>/store, synchronously.
        ``resources`` are Orthanc IDs or DICOM UIDs (looked up). Returns Orthanc's answer
        ({"InstancesCount", "FailedInstancesCount", "RemoteAet", ...})."""
        if isinstance(resources, str):
            resources = [resources]
        ids = [self.resource_id(r) for r in resources]
        return self.post(
            f"/modalities/{modality}/store",
            {"Resources": ids, "Synchronous": True},
            timeout=timeout,
        )

    def echo_modality(self, modality: str) -> bool:
        """Orthanc as C-ECHO SCU to a modality of its config."""
        return self.request("POST", f"/modalities/{modality}/echo", json={}, check=False).ok

    def clear(self) -> None:
        """Delete every patient (and so everything stored)."""
        for patient in self.patient_ids():
            self.delete(f"/patients/{patient}")


def _expand(paths) -> list[Path]:
    files: list[Path] = []
    for item in paths:
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if path.is_dir():
                files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
            else:
                files.append(path)
        else:
            files.extend(_expand(item))
    return files


# --------------------------------------------------------------------------------------------
# DCMTK dcmqrscp and storescp
# --------------------------------------------------------------------------------------------


def _host_entry(spec: Any) -> tuple[str, str, int]:
    if len(spec) == 2:
        return spec[0], LOOPBACK, int(spec[1])
    if len(spec) == 3:
        return spec[0], spec[1], int(spec[2])
    raise ValueError(f"bad HostTable entry {spec!r}: use (AET, port) or (AET, host, port)")


class DcmqrscpServer(PeerProcess):
    """DCMTK's dcmqrscp (Q/R SCP: C-ECHO, C-FIND, C-MOVE, C-GET, C-STORE) with AE title
    ``DCMQRSCP`` and a storage folder in tmp (read/write, quota 200 studies x 1 GB).

    HostTable: ``dicomplus`` = (DICOMPLUS, 127.0.0.1, ``dicomplus_port``) plus ``destinations``
    {name: (AET, port) | (AET, host, port)}: C-MOVE destinations are resolved there by AE title.
    Started with --disable-host-lookup; forks a child per association (stopped with the group).
    Unlike Orthanc, dcmqrscp accepts any calling AE and *omits* return keys it does not support
    (NumberOfStudyRelatedInstances, ModalitiesInStudy, SeriesDescription...): use ``ds.get()``.
    """

    name = "dcmqrscp"
    executable = DCMTK.dcmqrscp
    start_timeout = 10.0

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        destinations: Mapping[str, Any] | None = None,
        dicomplus_port: int | None = None,
        aet: str = "DCMQRSCP",
        port: int | None = None,
        max_pdu: int = 65536,
        verbose: bool = False,
    ) -> None:
        super().__init__(workdir)
        self.aet = aet
        self.dicomplus_port = dicomplus_port or free_port()
        self.destinations = dict(destinations or {})
        self.max_pdu = max_pdu
        self.verbose = verbose
        self._want_port = port
        self._fixed_ports = port is not None
        self.port = port or 0
        self.config_path = self.workdir / "dcmqrscp.cfg"
        self.storage_dir = self.workdir / "storage"

    @property
    def host_table(self) -> dict[str, tuple[str, str, int]]:
        """HostTable entries, symbolic name -> (AET, host, port)."""
        table = {"dicomplus": (OUR_AET, LOOPBACK, self.dicomplus_port)}
        for name, spec in self.destinations.items():
            table[re.sub(r"\W", "_", name)] = _host_entry(spec)
        return table

    def config_text(self) -> str:
        hosts = self.host_table
        lines = [
            f"NetworkTCPPort  = {self.port}",
            f"MaxPDUSize      = {self.max_pdu}",
            "MaxAssociations = 16",
            "",
            "HostTable BEGIN",
            *(f"{name} = ({aet}, {host}, {port})" for name, (aet, host, port) in hosts.items()),
            f"localpeers = {', '.join(hosts)}",
            "HostTable END",
            "",
            "VendorTable BEGIN",
            '"DICOMPlus test peers" = localpeers',
            "VendorTable END",
            "",
            "AETable BEGIN",
            f"{self.aet}  {self.storage_dir}  RW  (200, 1024mb)  ANY",
            "AETable END",
            "",
        ]
        return "\n".join(lines)

    def _prepare(self) -> None:
        self.port = self._want_port or free_port()
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())

    def _argv(self) -> list[str]:
        verbose = ["-v"] if self.verbose else []
        return [self.executable, *verbose, "--disable-host-lookup", "-c", str(self.config_path)]

    def _ready(self) -> bool:
        return port_accepts(self.port)

    def ports(self) -> list[int]:
        return [self.port]

    def load(self, *paths, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """C-STORE files/folders (recursively) into this archive with DCMTK storescu."""
        files = _expand(paths)
        if not files:
            raise ValueError("nothing to load")
        return DCMTK.run(
            "storescu", "-aet", OUR_AET, "-aec", self.aet, LOOPBACK, self.port, *files, timeout=timeout
        )

    def stored_files(self) -> list[Path]:
        """The DICOM files in the storage folder (dcmqrscp also keeps an index.dat there)."""
        return sorted(p for p in self.storage_dir.iterdir() if p.is_file() and p.name != "index.dat")


class StorescpServer(PeerProcess):
    """DCMTK's storescp (single process) with AE title ``aet``, writing every received object
    into ``out_dir``. Accepts all transfer syntaxes it knows (+xa) and, with ``promiscuous``,
    unknown SOP classes. ``extra_args`` are appended to the command line."""

    name = "storescp"
    executable = DCMTK.storescp
    start_timeout = 10.0

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        aet: str = "STORESCP",
        port: int | None = None,
        promiscuous: bool = True,
        extra_args: Iterable[str] = (),
    ) -> None:
        super().__init__(workdir)
        self.aet = aet
        self.promiscuous = promiscuous
        self.extra_args = list(extra_args)
        self._want_port = port
        self._fixed_ports = port is not None
        self.port = port or 0
        self.out_dir = self.workdir / "received"

    def _prepare(self) -> None:
        self.port = self._want_port or free_port()
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def _argv(self) -> list[str]:
        argv = [self.executable, "-aet", self.aet, "-od", str(self.out_dir), "+xa", "-dhl"]
        if self.promiscuous:
            argv.append("-pm")
        return [*argv, *self.extra_args, str(self.port)]

    def _ready(self) -> bool:
        return port_accepts(self.port)

    def ports(self) -> list[int]:
        return [self.port]

    def received(self) -> list[Path]:
        """Files written so far (storescp names them <modality>.<SOPInstanceUID>)."""
        return sorted(p for p in self.out_dir.iterdir() if p.is_file())

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Path]:
        """Wait until at least ``count`` files arrived; returns them (maybe fewer on timeout)."""
        deadline = time.monotonic() + timeout
        while len(files := self.received()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return files


# --------------------------------------------------------------------------------------------
# dicom3tools: dciodvfy, dcentvfy
# --------------------------------------------------------------------------------------------

DCIODVFY = "/usr/bin/dciodvfy"
DCENTVFY = "/usr/bin/dcentvfy"
_MESSAGE = re.compile(r"^(Error|Warning) - (.*)$")


@dataclass
class DciodvfyResult:
    """Parsed output of dciodvfy/dcentvfy. ``iod`` is the IOD dciodvfy recognised (e.g.
    "CTImage"; None for dcentvfy). DICOMDIR-related messages stay warnings, as printed."""

    iod: str | None
    errors: list[str]
    warnings: list[str]
    returncode: int = 0
    output: str = ""  # the whole stderr (stdout is empty for these tools)
    other: list[str] = field(default_factory=list)  # lines that are neither Error nor Warning

    @property
    def ok(self) -> bool:
        return not self.errors

    def __str__(self) -> str:
        return self.output


def _parse_verifier(output: str, returncode: int, with_iod: bool) -> DciodvfyResult:
    result = DciodvfyResult(iod=None, errors=[], warnings=[], returncode=returncode, output=output)
    for line in output.splitlines():
        line = line.rstrip()
        match = _MESSAGE.match(line)
        if match:
            (result.errors if match[1] == "Error" else result.warnings).append(match[2])
        elif with_iod and result.iod is None and re.fullmatch(r"\w+", line):
            result.iod = line
        elif line:
            result.other.append(line)
    return result


def _run_verifier(argv: list[str], timeout: float) -> tuple[str, int]:
    proc = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=timeout
    )
    # it writes everything to stderr; keep stdout too in case a version does not
    return proc.stderr + proc.stdout, proc.returncode


def dciodvfy(path: str | os.PathLike, *, timeout: float = 60.0) -> DciodvfyResult:
    """Check one file against its IOD with dicom3tools' dciodvfy (rc 1 iff any Error)."""
    output, rc = _run_verifier([require_executable(DCIODVFY), str(path)], timeout)
    return _parse_verifier(output, rc, with_iod=True)


def dcentvfy(paths: Iterable[str | os.PathLike], *, timeout: float = 60.0) -> DciodvfyResult:
    """Check patient/study/series consistency across files with dicom3tools' dcentvfy, e.g.
    "String attribute has different value - Element=<PatientName> IE=<Patient> ..."."""
    files = [str(p) for p in _expand([paths])]
    output, rc = _run_verifier([require_executable(DCENTVFY), *files], timeout)
    return _parse_verifier(output, rc, with_iod=False)


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


class PeerFactory:
    """Callable that creates and starts peers of one class in fresh tmp folders; stops them all
    at teardown. ``factory.servers`` lists what it started."""

    def __init__(self, cls: type[PeerProcess], tmp_path_factory: pytest.TempPathFactory) -> None:
        self.cls = cls
        self.tmp_path_factory = tmp_path_factory
        self.servers: list[PeerProcess] = []

    def __call__(self, **kwargs):
        require_executable(self.cls.executable)
        server = self.cls(self.tmp_path_factory.mktemp(self.cls.name), **kwargs)
        self.servers.append(server)
        return server.start()

    def stop_all(self) -> None:
        """Discard (SIGKILL) every server it started: their state goes with their tmp folders."""
        errors = []
        for server in reversed(self.servers):
            try:
                server.discard()
            except Exception as exc:  # stop every server even if one fails
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def dcmtk() -> DcmtkTools:
    """``DCMTK``, after checking that all its tools are installed."""
    return DCMTK.require()


@pytest.fixture(scope="session")
def orthanc_session(tmp_path_factory) -> OrthancServer:
    """One Orthanc for the whole session: for tests that only read, or add data under their own
    fresh UIDs (never assume it is empty; never stop it)."""
    require_executable(OrthancServer.executable)
    server = OrthancServer(tmp_path_factory.mktemp("orthanc_session"))
    server.start()
    yield server
    server.discard()


@pytest.fixture
def orthanc_factory(tmp_path_factory):
    """``orthanc_factory(**kwargs) -> OrthancServer`` (started, empty), kwargs as in
    OrthancServer: modalities, dicomplus_port, aet, check_called_aet, dicomweb, http_port,
    dicom_port, config, verbose. All discarded (SIGKILL) at teardown."""
    factory = PeerFactory(OrthancServer, tmp_path_factory)
    yield factory
    factory.stop_all()


@pytest.fixture
def orthanc(orthanc_factory) -> OrthancServer:
    """A fresh, empty Orthanc with the default config (see OrthancServer)."""
    return orthanc_factory()


@pytest.fixture
def dcmqrscp_factory(tmp_path_factory):
    """``dcmqrscp_factory(**kwargs) -> DcmqrscpServer`` (started, empty), kwargs as in
    DcmqrscpServer: destinations={name: (AET, port)}, dicomplus_port, aet, port, max_pdu, verbose."""
    factory = PeerFactory(DcmqrscpServer, tmp_path_factory)
    yield factory
    factory.stop_all()


@pytest.fixture
def dcmqrscp(dcmqrscp_factory) -> DcmqrscpServer:
    """An empty dcmqrscp (AET DCMQRSCP) knowing only DICOMPLUS."""
    return dcmqrscp_factory()


@pytest.fixture
def storescp_factory(tmp_path_factory):
    """``storescp_factory(**kwargs) -> StorescpServer`` (started), kwargs as in StorescpServer:
    aet, port, promiscuous, extra_args."""
    factory = PeerFactory(StorescpServer, tmp_path_factory)
    yield factory
    factory.stop_all()


@pytest.fixture
def storescp(storescp_factory) -> StorescpServer:
    """A DCMTK storescp, AET STORESCP, writing into ``storescp.out_dir``."""
    return storescp_factory()


@pytest.fixture(scope="session")
def dciodvfy_tool():
    """The ``dciodvfy(path) -> DciodvfyResult`` function, after checking the executable."""
    require_executable(DCIODVFY)
    return dciodvfy


@pytest.fixture(scope="session")
def dcentvfy_tool():
    """The ``dcentvfy(paths) -> DciodvfyResult`` function, after checking the executable."""
    require_executable(DCENTVFY)
    return dcentvfy


# --------------------------------------------------------------------------------------------
# Hooks: peer logs in failure reports, nothing left running at the end
# --------------------------------------------------------------------------------------------


def _peers_of(item) -> list[PeerProcess]:
    peers: list[PeerProcess] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, PeerProcess):
            peers.append(value)
        elif isinstance(value, PeerFactory):
            peers.extend(value.servers)
    return list(dict.fromkeys(peers))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for peer in _peers_of(item):
            report.sections.append((f"{peer.name} log {peer.log_path}", peer.log_tail(60)))
    return report


def pytest_sessionfinish(session, exitstatus):
    """Safety net: stop peers a test started without a fixture and did not stop (and say so)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for peer in list(_RUNNING):
        if reporter is not None:
            reporter.write_line(f"dicomplus peers: stopping {peer!r}, left running by a test", yellow=True)
        with contextlib.suppress(Exception):
            peer.stop()
