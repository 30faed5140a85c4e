"""DICOMweb over HTTPS through the cancellable connections (web/connection.py): a query with a
cancel token (as the CLI and the engine make it) connects, verifies the server's certificate
against the CA bundle the endpoint names and reads the answer; without that bundle the
verification fails, as before, with one message."""

from __future__ import annotations

import http.server
import ssl

import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.util import serve_in_thread
from DICOMPlusLib.errors import QueryError
from DICOMPlusLib.jobs import CancelToken
from DICOMPlusLib.network.endpoints import DicomwebEndpoint
from DICOMPlusLib.network.nodes import RemoteNode
from DICOMPlusLib.network.query import query

STUDY = {
    "0020000D": {"vr": "UI", "Value": ["1.2.3.4"]},
    "00100020": {"vr": "LO", "Value": ["TLS1"]},
}


@pytest.fixture
def https_server(tls_certificate):
    """A QIDO-RS server on HTTPS with a self-signed certificate for 127.0.0.1: (url, cert)."""
    import json

    cert, key = tls_certificate.cert, tls_certificate.key
    body = json.dumps([STUDY]).encode()

    class Qido(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Qido)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    serve_in_thread(server)
    try:
        yield f"https://{LOOPBACK}:{server.server_address[1]}/dicom-web", cert
    finally:
        server.shutdown()
        server.server_close()


def test_a_query_over_https_with_a_cancel_token(https_server):
    url, cert = https_server
    node = RemoteNode("TLS", web=DicomwebEndpoint(url, verify=str(cert)))
    [study] = list(query(node, "study", {}, cancel=CancelToken(), timeout=10))
    assert study.StudyInstanceUID == "1.2.3.4" and study.PatientID == "TLS1"


def test_an_unknown_certificate_is_still_refused(https_server):
    url, _ = https_server
    node = RemoteNode("TLS", web=DicomwebEndpoint(url))
    with pytest.raises(QueryError, match="TLS verification failed"):
        list(query(node, "study", {}, cancel=CancelToken(), timeout=10))


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_a_query_over_https_without_verification(https_server):
    """verify=False (a test server, a self-signed certificate the user chose to accept): the
    context the cancellable connection makes checks neither the certificate nor the name."""
    url, _ = https_server
    node = RemoteNode("TLS", web=DicomwebEndpoint(url, verify=False))
    [study] = list(query(node, "study", {}, cancel=CancelToken(), timeout=10))
    assert study.PatientID == "TLS1"
