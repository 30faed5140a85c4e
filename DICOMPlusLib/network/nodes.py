"""Remote DICOM nodes (PACS, workstations, DICOMweb services) and where they are kept.

A :class:`RemoteNode` is a name and its endpoints: a DIMSE endpoint (AE title, host, port,
TLS: PS3.8 7.1.1, PS3.15 B.1), a DICOMweb endpoint (service root URL and credentials,
PS3.18), or both. Which transport answers echo, query and send is the node's ``prefer``red
endpoint (by default DIMSE when it has one); how studies are retrieved is its
``retrieve_method`` (C-GET, C-MOVE, DICOMweb WADO-RS), which needs the matching endpoint. The
transports themselves are in :mod:`DICOMPlusLib.network.transports`.

Nodes are kept by :class:`NodeStore` in one JSON file, by default
``$DICOMPLUS_NODES``, else ``$XDG_CONFIG_HOME/dicomplus/nodes.json``
(``~/.config/dicomplus/nodes.json``). The file is rewritten atomically (temporary file, then
rename), so a crash never leaves half a configuration. Files written before endpoints existed
(version 1: flat ``ae_title``/``host``/``port`` with placeholders for DICOMweb-only nodes) are
read as before. The Slicer module maps its own settings onto the same objects; nothing here
reads QSettings.

On the command line a node is either a configured name or ``AE@HOST:PORT``
(:meth:`NodeStore.resolve`).
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import threading
from pathlib import Path

from DICOMPlusLib.dataclasses_lite import dataclass
from DICOMPlusLib.errors import (
    DiskFullError,
    NetworkError,
    NodeAddressError,
    NodeAddressProblem,
    UnknownNodeError,
    space_error_in,
)
from DICOMPlusLib.network.ae import DEFAULT_AE_TITLE, DEFAULT_PORT, check_ae_title, check_port
from DICOMPlusLib.network.endpoints import DicomwebEndpoint, DimseEndpoint, EndpointKind, TLSSettings

__all__ = [
    "DEFAULT_AE_TITLE",
    "DEFAULT_PORT",
    "DicomwebEndpoint",
    "DimseEndpoint",
    "EndpointKind",
    "NodeStore",
    "RemoteNode",
    "RetrieveMethod",
    "TLSSettings",
    "check_ae_title",
    "check_port",
    "default_nodes_path",
]

#: The AE title version 1 files gave a DICOMweb-only node (its host and port came from the URL).
_PLACEHOLDER_AE = "DICOMWEB"

_NODE_SPEC = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\s]+):(?P<port>\d{1,5})$")


def _address_problem(spec: str) -> NodeAddressProblem:
    """What an address :data:`_NODE_SPEC` does not match lacks."""
    ae, sep, where = spec.partition("@")
    if not sep or not ae:
        return NodeAddressProblem.NO_AE_TITLE
    if not where.rpartition(":")[2].isdigit() or where.endswith("]"):
        return NodeAddressProblem.NO_PORT
    return NodeAddressProblem.UNREADABLE


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

    @property
    def endpoint(self) -> EndpointKind:
        """The endpoint a retrieve by this method goes to."""
        return EndpointKind.DICOMWEB if self is RetrieveMethod.DICOMWEB else EndpointKind.DIMSE


@dataclass(frozen=True)
class RemoteNode:
    """One remote application: ``name`` is how users refer to it; ``dimse`` and ``web`` are its
    endpoints (at least one). ``prefer`` chooses the endpoint of echo, query and send (None:
    DIMSE when there is one); ``retrieve_method`` None means C-GET with a DIMSE endpoint, else
    DICOMweb.

    ``RemoteNode("pacs", DimseEndpoint("PACS", "10.0.0.5", 104))``,
    ``RemoteNode("web", web=DicomwebEndpoint("http://host:8042/dicom-web"))``.
    """

    name: str
    dimse: DimseEndpoint | None = None
    web: DicomwebEndpoint | None = None
    retrieve_method: RetrieveMethod | None = None
    prefer: EndpointKind | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.dimse is None and self.web is None:
            raise NetworkError(f"node {self.name!r} has no endpoint: give AE@HOST:PORT or a DICOMweb URL")
        if self.web is not None:
            self.web.check()
        method = self.retrieve_method
        if method is None:
            method = RetrieveMethod.C_GET if self.dimse is not None else RetrieveMethod.DICOMWEB
        method = RetrieveMethod.parse(method)
        object.__setattr__(self, "retrieve_method", method)
        if self.endpoint(method.endpoint) is None:
            what = "a DICOMweb URL" if method is RetrieveMethod.DICOMWEB else "an AE@HOST:PORT address"
            raise NetworkError(f"node {self.name!r} retrieves with {method.value} but has no {what}")
        prefer = EndpointKind.parse(self.prefer) if self.prefer is not None else None
        if prefer is not None and self.endpoint(prefer) is None:
            raise NetworkError(
                f"node {self.name!r} prefers {prefer.value} but has no {prefer.value} endpoint"
            )
        object.__setattr__(self, "prefer", prefer)

    @property
    def method(self) -> RetrieveMethod:
        """``retrieve_method`` as ``__post_init__`` resolved it: never None once the node exists
        (the field is optional only as a constructor argument)."""
        assert self.retrieve_method is not None
        return self.retrieve_method

    # -- endpoints -----------------------------------------------------------------------------
    def endpoint(self, kind: EndpointKind) -> DimseEndpoint | DicomwebEndpoint | None:
        return self.dimse if kind is EndpointKind.DIMSE else self.web

    @property
    def kinds(self) -> tuple[EndpointKind, ...]:
        """The kinds of endpoint the node has."""
        return tuple(k for k in EndpointKind if self.endpoint(k) is not None)

    @property
    def preferred(self) -> EndpointKind:
        """The endpoint of echo, query and send."""
        if self.prefer is not None:
            return self.prefer
        return EndpointKind.DIMSE if self.dimse is not None else EndpointKind.DICOMWEB

    def require_dimse(self) -> DimseEndpoint:
        if self.dimse is None:
            raise NetworkError(
                f"node {self.name!r} is reached by DICOMweb only ({self.web.url if self.web else ''}): "
                "it has no AE title, host and port for DIMSE"
            )
        return self.dimse

    def require_web(self) -> DicomwebEndpoint:
        if self.web is None:
            raise NetworkError(f"node {self.name!r} has no DICOMweb URL: add one (--dicomweb URL)")
        return self.web

    # The DIMSE endpoint's fields, read through the node (NetworkError for a DICOMweb-only node).
    @property
    def ae_title(self) -> str:
        return self.require_dimse().ae_title

    @property
    def host(self) -> str:
        return self.require_dimse().host

    @property
    def port(self) -> int:
        return self.require_dimse().port

    @property
    def tls(self) -> bool:
        return self.require_dimse().tls

    @property
    def tls_settings(self) -> TLSSettings:
        return self.require_dimse().tls_settings

    @property
    def dicomweb_url(self) -> str:
        return self.web.url if self.web is not None else ""

    @property
    def address(self) -> str:
        """Where the preferred endpoint is: ``AE@HOST:PORT`` or the DICOMweb URL."""
        if self.preferred is EndpointKind.DIMSE:
            return self.require_dimse().address
        return self.require_web().url

    @property
    def label(self) -> str:
        """How messages name it: ``name (address)``, or the address alone when the node was given
        as one (``AE@HOST:PORT`` on the command line: not "A@h:1 (A@h:1)")."""
        try:
            where = self.address
        except NetworkError:  # no endpoint: the name is all there is
            where = ""
        return f"{self.name} ({where})" if where and where != self.name else self.name or where

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def parse(cls, spec: str, name: str = "") -> RemoteNode:
        """``AE@HOST:PORT`` (IPv6 hosts in brackets: ``AE@[::1]:104``)."""
        match = _NODE_SPEC.match(spec.strip())
        if not match:
            raise NodeAddressError(
                f"cannot read node {spec!r}: give a configured node name or AE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242",
                _address_problem(spec.strip()),
            )
        host = match["host"].strip("[]")
        return cls(name=name or spec.strip(), dimse=DimseEndpoint(match["ae"], host, int(match["port"])))

    @classmethod
    def dicomweb(
        cls,
        name: str,
        url: str,
        *,
        token: str = "",
        user: str = "",
        password: str = "",
        description: str = "",
    ) -> RemoteNode:
        """A DICOMweb-only node: queried with QIDO-RS, retrieved with WADO-RS, sent to with
        STOW-RS, echoed with a QIDO-RS probe."""
        web = DicomwebEndpoint(url, token=token, username=user, password=password).check()
        return cls(name=name, web=web, description=description)

    # -- the node file ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out: dict = {"name": self.name, "retrieve_method": self.method.value}
        if self.prefer is not None:
            out["prefer"] = self.prefer.value
        if self.dimse is not None:
            d = self.dimse
            out["dimse"] = {"ae_title": d.ae_title, "host": d.host, "port": d.port, "tls": d.tls}
            if d.tls_settings != TLSSettings():
                s = d.tls_settings
                out["dimse"]["tls_settings"] = {"ca_file": s.ca_file, "cert_file": s.cert_file,
                                                "key_file": s.key_file, "verify": s.verify}  # fmt: skip
        if self.web is not None:
            out["dicomweb"] = {"url": self.web.url}
            for key in ("token", "username", "password"):
                if getattr(self.web, key):
                    out["dicomweb"][key] = getattr(self.web, key)
            if self.web.verify is not True:
                out["dicomweb"]["verify"] = self.web.verify
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RemoteNode:
        try:
            if "ae_title" in data:  # version 1: flat, with placeholders for DICOMweb-only nodes
                return cls._from_flat(data)
            dimse = web = None
            if data.get("dimse"):
                d = dict(data["dimse"])
                d["tls_settings"] = TLSSettings(**d.get("tls_settings", {}))
                dimse = DimseEndpoint(**d)
            if data.get("dicomweb"):
                web = DicomwebEndpoint(**data["dicomweb"])
            return cls(name=str(data["name"]), dimse=dimse, web=web,
                       retrieve_method=data.get("retrieve_method"), prefer=data.get("prefer"),
                       description=str(data.get("description", "")))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise NetworkError(f"invalid node entry {_public(data)!r}: {exc}") from exc

    @classmethod
    def _from_flat(cls, data: dict) -> RemoteNode:
        """A version 1 entry. A DICOMweb node had the placeholder AE title ``DICOMWEB`` and its
        URL's host and port: it becomes a DICOMweb-only node. A node with a real address that
        retrieved by DICOMweb was queried and echoed by DICOMweb too: it keeps both endpoints and
        prefers DICOMweb."""
        method = RetrieveMethod.parse(data.get("retrieve_method", "C-GET"))
        url = str(data.get("dicomweb_url", ""))
        web = None
        if url:
            web = DicomwebEndpoint(url, token=str(data.get("dicomweb_token", "")),
                                   username=str(data.get("dicomweb_user", "")),
                                   password=str(data.get("dicomweb_password", "")))  # fmt: skip
        address = DimseEndpoint(str(data["ae_title"]), str(data["host"]), int(data["port"]),
                                tls=bool(data.get("tls", False)),
                                tls_settings=TLSSettings(**data.get("tls_settings", {})))  # fmt: skip
        dimse: DimseEndpoint | None = address
        prefer = None
        if method is RetrieveMethod.DICOMWEB and web is not None:
            placeholder = (
                address.ae_title == _PLACEHOLDER_AE and (address.host, address.port) == web.host_port
            )
            dimse = None if placeholder else address
            prefer = EndpointKind.DICOMWEB
        return cls(name=str(data["name"]), dimse=dimse, web=web, retrieve_method=method,
                   prefer=prefer if dimse is not None else None,
                   description=str(data.get("description", "")))  # fmt: skip


def _public(data: dict) -> dict:
    """An entry as it may appear in a message: without its secrets."""
    hidden = {"password", "token", "dicomweb_password", "dicomweb_token"}
    out: dict = {k: ("(set)" if k in hidden else v) for k, v in data.items()}
    if isinstance(out.get("dicomweb"), dict):
        out["dicomweb"] = _public(out["dicomweb"])
    return out


def default_nodes_path() -> Path:
    """``$DICOMPLUS_NODES``, else ``$XDG_CONFIG_HOME/dicomplus/nodes.json``."""
    env = os.environ.get("DICOMPLUS_NODES")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "dicomplus" / "nodes.json"


class NodeStore:
    """The configured nodes, kept in a JSON file (``{"version": 2, "nodes": [...]}``; version 1
    files are read, and rewritten as version 2 by the next change)."""

    VERSION = 2

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
        import json  # here: a command given AE@HOST:PORT and no node list does not import it

        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            raise NetworkError(
                f"the node list {self.path} is not valid JSON ({exc}); fix or delete it"
            ) from exc
        return [RemoteNode.from_dict(item) for item in data.get("nodes", [])]

    def _write(self, nodes: list[RemoteNode]) -> None:
        import json
        import tempfile  # only a change of the list writes it (random, hashlib: ~1 ms to import)

        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"version": self.VERSION, "nodes": [n.to_dict() for n in nodes]}, indent=2)
        fd, tmp = tempfile.mkstemp(prefix=".nodes-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload + "\n")
            os.replace(tmp, self.path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if space_error_in(exc) is not None:  # the list as it was stays
                raise DiskFullError(str(self.path.parent)) from exc
            raise

    def list(self) -> list[RemoteNode]:
        with self._lock:
            return self._read()

    def get(self, name: str) -> RemoteNode:
        nodes = self.list()
        for node in nodes:
            if node.name == name:
                return node
        raise UnknownNodeError(
            f"no node named {name!r} in {self.path}{_known(name, nodes)}; add it with: "
            f"dicomplus nodes add {name} AE@HOST:PORT"
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
        raise UnknownNodeError(f"no node named {name!r} in {self.path}{_known(name, nodes)}")

    def resolve(self, spec: str | RemoteNode) -> RemoteNode:
        """A configured node by name, else ``AE@HOST:PORT``."""
        if isinstance(spec, RemoteNode):
            return spec
        nodes = self.list()
        for node in nodes:
            if node.name == spec:
                return node
        if "@" in spec:
            return RemoteNode.parse(spec)
        if spec.startswith(("http://", "https://")):
            raise UnknownNodeError(
                f"a DICOMweb URL is given by the name of a node: add it with 'dicomplus nodes add NAME "
                f"--dicomweb {spec}', then use NAME"
            )
        raise UnknownNodeError(
            f"no node named {spec!r} in {self.path}{_known(spec, nodes)}; give AE@HOST:PORT or "
            f"add it with 'dicomplus nodes add {spec} AE@HOST:PORT'"
        )


def _known(name: str, nodes: list[RemoteNode]) -> str:
    """What a message about an unknown node name adds: the configured name it is closest to (a
    typo: "pcas" for "pacs"), else the configured names (up to 8), else nothing."""
    names = [node.name for node in nodes]
    if not names:
        return " (no node is configured)"
    import difflib

    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    close = close or [n for n in names if n.lower() == name.lower()]
    if close:
        return f" (did you mean {close[0]!r}?)"
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return f" (configured: {shown})"
