"""Where a node is reached: a DIMSE endpoint (AE title, host, port, TLS) and a DICOMweb endpoint
(service root URL and credentials).

Value objects only (no sockets, no HTTP): the node configuration (:mod:`.nodes`), the DIMSE
stack and the DICOMweb client all read them, so this module sits below all of them.
"""

from __future__ import annotations

import enum

from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.errors import NetworkError
from DICOMPlusLib.network.ae import check_ae_title, check_port


class EndpointKind(enum.Enum):
    """The two ways DICOM travels: DIMSE over the Upper Layer (PS3.7, PS3.8) and DICOMweb over
    HTTP (PS3.18). A node has an endpoint of one kind, or of both."""

    DIMSE = "DIMSE"
    DICOMWEB = "DICOMweb"

    @classmethod
    def parse(cls, value: str | EndpointKind) -> EndpointKind:
        if isinstance(value, EndpointKind):
            return value
        text = str(value).strip().lower()
        for member in cls:
            if member.value.lower() == text:
                return member
        raise NetworkError(f"unknown endpoint {value!r}: use DIMSE or DICOMweb")


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
class DimseEndpoint:
    """A DIMSE peer: the called AE title sent in A-ASSOCIATE-RQ (PS3.8 9.3.2), the address the
    TCP connection goes to, and whether it is TLS (PS3.15 B.1)."""

    ae_title: str
    host: str
    port: int
    tls: bool = False
    tls_settings: TLSSettings = field(default_factory=TLSSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title, "called AE title"))
        object.__setattr__(self, "port", check_port(self.port))
        if not str(self.host).strip():
            raise NetworkError(f"the DIMSE endpoint {self.ae_title} has no host")

    @property
    def address(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    def tls_context(self):
        """The client SSL context, or None without TLS."""
        return self.tls_settings.client_context(self.host) if self.tls else None


@dataclass(frozen=True)
class DicomwebEndpoint:
    """Where a DICOMweb service lives and how to authenticate.

    ``url`` is the service root (e.g. ``http://127.0.0.1:8042/dicom-web``). ``token`` is sent as
    ``Authorization: Bearer``; ``username``/``password`` as HTTP basic. ``verify`` is TLS
    certificate verification (on by default; a path to a CA bundle also works). ``timeout`` is
    per request; a node's stored endpoint keeps the default and callers replace it.
    """

    url: str
    token: str = field(default="", repr=False)
    username: str = ""
    password: str = field(default="", repr=False)
    verify: bool | str = True
    timeout: float = 30.0

    @property
    def host_port(self) -> tuple[str, int]:
        """The host and port of the URL (the port the scheme implies when none is written)."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)

    def check(self) -> DicomwebEndpoint:
        """This endpoint, when its URL is an http(s) URL with a host; else NetworkError."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NetworkError(f"not a DICOMweb URL: {self.url!r} (expected http(s)://host[:port]/path)")
        return self
