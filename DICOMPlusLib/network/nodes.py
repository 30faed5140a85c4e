"""Remote DICOM nodes (PACS, workstations, DICOMweb services) and where they are kept.

A :class:`RemoteNode` says how to reach another application entity: its AE title, host and
port (PS3.8 7.1.1: the called AE title, the address the TCP connection goes to), whether the
connection is TLS (PS3.15 B.1), how studies are preferably retrieved from it (C-GET, C-MOVE or
DICOMweb WADO-RS) and, for DICOMweb, its service root URL.

Nodes are kept by :class:`NodeStore` in one JSON file, by default
``$DICOMPLUS_NODES``, else ``$XDG_CONFIG_HOME/dicomplus/nodes.json``
(``~/.config/dicomplus/nodes.json``). The file is rewritten atomically (temporary file, then
rename), so a crash never leaves half a configuration. The Slicer module maps its own settings
onto the same objects; nothing here reads QSettings.

On the command line a node is either a configured name or ``AE@HOST:PORT``
(:meth:`NodeStore.resolve`).
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from DICOMPlusLib.errors import NetworkError

#: The AE title DICOMPlus uses for itself unless told otherwise (listener and calling AE).
DEFAULT_AE_TITLE = "DICOMPLUS"
#: The registered DICOM port (PS3.8 G.1) needs root; 11112 is the customary unprivileged one.
DEFAULT_PORT = 11112

_NODE_SPEC = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\s]+):(?P<port>\d{1,5})$")


class RetrieveMethod(enum.Enum):
    """How studies are fetched from a node (PS3.4 C.4.2 C-MOVE, C.4.3 C-GET, PS3.18 WADO-RS)."""

    C_GET = "C-GET"
    C_MOVE = "C-MOVE"
    DICOMWEB = "DICOMweb"

    @classmethod
    def parse(cls, value: str | RetrieveMethod) -> RetrieveMethod:
        if isinstance(value, RetrieveMethod):
            return value
        text = str(value).strip().replace("_", "-").lower()
        for member in cls:
            if member.value.lower() == text or member.name.lower().replace("_", "-") == text:
                return member
        raise NetworkError(f"unknown retrieve method {value!r}: use C-GET, C-MOVE or DICOMweb")


def check_ae_title(value: str, what: str = "AE title") -> str:
    """An AE title as PS3.5 6.2 allows it: 1-16 characters, no backslash or control
    characters, not only spaces. Leading and trailing spaces are not significant."""
    text = str(value).strip()
    if not text or len(text) > 16 or "\\" in text or any(ord(c) < 32 or ord(c) > 126 for c in text):
        raise NetworkError(
            f"invalid {what} {value!r}: use 1 to 16 printable ASCII characters without backslash"
        )
    return text


def check_port(value: int | str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise NetworkError(f"invalid port {value!r}: use a number from 1 to 65535") from None
    if not 0 < port < 65536:
        raise NetworkError(f"invalid port {value!r}: use a number from 1 to 65535")
    return port


@dataclass(frozen=True)
class TLSSettings:
    """TLS for one connection (PS3.15 B.1, "The Basic TLS Secure Transport Connection Profile").

    ``ca_file`` verifies the peer's certificate (system defaults when empty); ``cert_file`` and
    ``key_file`` are our own certificate, needed when the peer asks for client certificates (and
    always on a TLS listener). ``verify`` off accepts any certificate: tests only.
    """

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    verify: bool = True

    def client_context(self, host: str):
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file or None)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file or None)
        return ctx

    def server_context(self, require_client_certificate: bool = False):
        import ssl

        if not self.cert_file:
            raise NetworkError("a TLS listener needs a certificate (cert_file) and its key (key_file)")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca_file or None)
        ctx.load_cert_chain(self.cert_file, self.key_file or None)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_NONE
        return ctx


@dataclass(frozen=True)
class RemoteNode:
    """One remote application entity. ``name`` is how users refer to it; ``ae_title`` is the
    called AE title sent in A-ASSOCIATE-RQ (PS3.8 9.3.2)."""

    name: str
    ae_title: str
    host: str
    port: int
    tls: bool = False
    retrieve_method: RetrieveMethod = RetrieveMethod.C_GET
    dicomweb_url: str = ""
    tls_settings: TLSSettings = field(default_factory=TLSSettings)
    description: str = ""
    #: DICOMweb credentials: a bearer token, or a user name and password (HTTP basic). They are
    #: stored in the node file, which is written readable by its owner only.
    dicomweb_token: str = field(default="", repr=False)
    dicomweb_user: str = ""
    dicomweb_password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title, "called AE title"))
        object.__setattr__(self, "port", check_port(self.port))
        object.__setattr__(self, "retrieve_method", RetrieveMethod.parse(self.retrieve_method))
        if not str(self.host).strip():
            raise NetworkError(f"node {self.name!r} has no host")
        if self.retrieve_method is RetrieveMethod.DICOMWEB and not self.dicomweb_url:
            raise NetworkError(f"node {self.name!r} retrieves with DICOMweb but has no DICOMweb URL")

    @property
    def address(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    @classmethod
    def parse(cls, spec: str, name: str = "") -> RemoteNode:
        """``AE@HOST:PORT`` (IPv6 hosts in brackets: ``AE@[::1]:104``)."""
        match = _NODE_SPEC.match(spec.strip())
        if not match:
            raise NetworkError(
                f"cannot read node {spec!r}: give a configured node name or AE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242"
            )
        host = match["host"].strip("[]")
        return cls(name=name or spec.strip(), ae_title=match["ae"], host=host, port=int(match["port"]))

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "ae_title": self.ae_title,
            "host": self.host,
            "port": self.port,
            "tls": self.tls,
            "retrieve_method": self.retrieve_method.value,
            "dicomweb_url": self.dicomweb_url,
        }
        if self.tls_settings != TLSSettings():
            out["tls_settings"] = {
                "ca_file": self.tls_settings.ca_file,
                "cert_file": self.tls_settings.cert_file,
                "key_file": self.tls_settings.key_file,
                "verify": self.tls_settings.verify,
            }
        if self.description:
            out["description"] = self.description
        for key in ("dicomweb_token", "dicomweb_user", "dicomweb_password"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out

    @classmethod
    def dicomweb(
        cls, name: str, url: str, *, token: str = "", user: str = "", password: str = ""
    ) -> RemoteNode:
        """A DICOMweb-only node: queried with QIDO-RS, retrieved with WADO-RS, sent to with
        STOW-RS. Its AE title, host and port are only placeholders derived from the URL."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NetworkError(f"not a DICOMweb URL: {url!r} (expected http(s)://host[:port]/path)")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(
            name=name,
            ae_title="DICOMWEB",
            host=parts.hostname,
            port=port,
            retrieve_method=RetrieveMethod.DICOMWEB,
            dicomweb_url=url,
            dicomweb_token=token,
            dicomweb_user=user,
            dicomweb_password=password,
        )

    @classmethod
    def from_dict(cls, data: dict) -> RemoteNode:
        try:
            return cls(
                name=str(data["name"]),
                ae_title=str(data["ae_title"]),
                host=str(data["host"]),
                port=int(data["port"]),
                tls=bool(data.get("tls", False)),
                retrieve_method=RetrieveMethod.parse(data.get("retrieve_method", "C-GET")),
                dicomweb_url=str(data.get("dicomweb_url", "")),
                tls_settings=TLSSettings(**data.get("tls_settings", {})),
                description=str(data.get("description", "")),
                dicomweb_token=str(data.get("dicomweb_token", "")),
                dicomweb_user=str(data.get("dicomweb_user", "")),
                dicomweb_password=str(data.get("dicomweb_password", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NetworkError(f"invalid node entry {data!r}: {exc}") from exc


def default_nodes_path() -> Path:
    """``$DICOMPLUS_NODES``, else ``$XDG_CONFIG_HOME/dicomplus/nodes.json``."""
    env = os.environ.get("DICOMPLUS_NODES")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "dicomplus" / "nodes.json"


class NodeStore:
    """The configured nodes, kept in a JSON file (``{"version": 1, "nodes": [...]}``)."""

    VERSION = 1

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_nodes_path()
        self._lock = threading.Lock()

    def _read(self) -> list[RemoteNode]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise NetworkError(f"cannot read the node list {self.path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            raise NetworkError(
                f"the node list {self.path} is not valid JSON ({exc}); fix or delete it"
            ) from exc
        return [RemoteNode.from_dict(item) for item in data.get("nodes", [])]

    def _write(self, nodes: list[RemoteNode]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"version": self.VERSION, "nodes": [n.to_dict() for n in nodes]}, indent=2)
        fd, tmp = tempfile.mkstemp(prefix=".nodes-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload + "\n")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def list(self) -> list[RemoteNode]:
        with self._lock:
            return self._read()

    def get(self, name: str) -> RemoteNode:
        for node in self.list():
            if node.name == name:
                return node
        raise NetworkError(
            f"no node named {name!r} in {self.path}; add it with: dicomplus nodes add {name} AE@HOST:PORT"
        )

    def add(self, node: RemoteNode, *, replace_existing: bool = False) -> RemoteNode:
        with self._lock:
            nodes = self._read()
            names = [n.name for n in nodes]
            if node.name in names:
                if not replace_existing:
                    raise NetworkError(
                        f"a node named {node.name!r} exists already (remove it first, or replace it)"
                    )
                nodes[names.index(node.name)] = node
            else:
                nodes.append(node)
            self._write(nodes)
        return node

    def remove(self, name: str) -> RemoteNode:
        with self._lock:
            nodes = self._read()
            for i, node in enumerate(nodes):
                if node.name == name:
                    del nodes[i]
                    self._write(nodes)
                    return node
        raise NetworkError(f"no node named {name!r} in {self.path}")

    def resolve(self, spec: str | RemoteNode) -> RemoteNode:
        """A configured node by name, else ``AE@HOST:PORT``."""
        if isinstance(spec, RemoteNode):
            return spec
        for node in self.list():
            if node.name == spec:
                return node
        if "@" in spec:
            return RemoteNode.parse(spec)
        raise NetworkError(
            f"no node named {spec!r} in {self.path}; give AE@HOST:PORT or add it with "
            f"'dicomplus nodes add {spec} AE@HOST:PORT'"
        )
