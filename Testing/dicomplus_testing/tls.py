"""A self-signed certificate for the TLS tests (DIMSE over TLS, HTTPS), made once per session.

``tls_certificate`` (session): a :class:`Certificate` whose subject is ``localhost`` and whose
subjectAltName names both ``localhost`` and ``127.0.0.1``, so that a client verifying the host
name accepts it for either; its key is unencrypted. Made by ``openssl req`` (one RSA key takes
0.05-1 s: once, not per test)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicomplus_testing.util import missing


@dataclass(frozen=True)
class Certificate:
    cert: Path  # PEM certificate, also the CA a client trusts
    key: Path  # PEM private key, unencrypted


def make_certificate(folder: Path) -> Certificate:
    """A self-signed certificate for ``localhost`` and ``127.0.0.1`` in ``folder``, valid one day."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        proc = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
             "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except FileNotFoundError:
        missing("openssl")
    if proc.returncode != 0:
        missing(f"openssl ({proc.stderr.strip()[:200]})")
    return Certificate(cert, key)


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))
