"""Send and echo to a DICOMweb node (issue 15, item 2) through the one transport protocol:
STOW-RS and a QIDO-RS probe, from the library, from the command line and from the module's
Logic with the real engine, against Orthanc's DICOMweb plugin; and what echo says when the URL
is dead, unknown or not a DICOMweb service."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys

import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, free_port, serve_in_thread
from DICOMPlusLib.network.echo import EchoProblem, echo
from DICOMPlusLib.network.nodes import DicomwebEndpoint, DimseEndpoint, EndpointKind, RemoteNode
from DICOMPlusLib.network.query import query
from DICOMPlusLib.network.send import send_paths


def on_orthanc(url: str, series_uid: str) -> set[str]:
    """The SOP Instance UIDs Orthanc has of a series (asked by QIDO-RS)."""
    node = RemoteNode.dicomweb("check", url)
    return {i.SOPInstanceUID for i in query(node, "instance", {"SeriesInstanceUID": series_uid})}


def test_library_send_to_a_dicomweb_node_is_stow_rs(orthanc_session, tmp_path):
    series = make_series(tmp_path / "s", n=4, rows=16, cols=16, seed=151)
    (tmp_path / "s" / "notes.txt").write_text("not DICOM")
    node = RemoteNode.dicomweb("web", orthanc_session.dicomweb_url)
    report = send_paths(node, [series.folder])
    assert report.transport == "DICOMweb" and report.sent == 4, report.to_dict()
    assert [r.path for r in report.failed] == [str(tmp_path / "s" / "notes.txt")]  # one result per file
    assert on_orthanc(orthanc_session.dicomweb_url, series.series_uid) == set(series.sop_uids)


def test_a_node_with_both_endpoints_uses_the_one_it_prefers(orthanc_session, tmp_path):
    """The DIMSE endpoint is a port where nothing listens: a node that prefers DICOMweb never
    touches it; the same node preferring DIMSE reports the refusal."""
    dead = DimseEndpoint("NOBODY", LOOPBACK, free_port())
    web = DicomwebEndpoint(orthanc_session.dicomweb_url)
    prefers_web = RemoteNode("both", dead, web, prefer=EndpointKind.DICOMWEB)
    assert echo(prefers_web).ok
    series = make_series(tmp_path / "s", n=2, rows=8, cols=8, seed=152)
    assert send_paths(prefers_web, [series.folder]).sent == 2
    prefers_dimse = RemoteNode("both", dead, web)
    result = echo(prefers_dimse, timeout=5)
    assert not result.ok and result.problem is EchoProblem.REFUSED
    assert echo(prefers_dimse, endpoint=EndpointKind.DICOMWEB).ok


class _HtmlPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html><body>Welcome to a web server</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def html_server():
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), _HtmlPage)
    thread = serve_in_thread(server)
    yield f"http://{LOOPBACK}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_echo_of_a_dicomweb_node_diagnoses_dead_unknown_and_wrong_urls(html_server):
    dead = echo(RemoteNode.dicomweb("dead", f"http://{LOOPBACK}:{free_port()}/dicom-web"), timeout=5)
    assert not dead.ok and dead.problem is EchoProblem.REFUSED and "nothing listens" in dead.message
    unknown = echo(RemoteNode.dicomweb("ghost", "http://no-such-host.invalid/dicom-web"), timeout=5)
    assert not unknown.ok and unknown.problem is EchoProblem.UNREACHABLE
    assert "no-such-host.invalid" in unknown.message
    page = echo(RemoteNode.dicomweb("page", html_server + "/dicom-web"), timeout=5)
    assert not page.ok and page.problem is EchoProblem.NOT_DICOMWEB
    assert "text/html" in page.message and "DICOMweb root" in page.message


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "DICOMPlusLib.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=timeout)  # fmt: skip


def test_cli_send_and_echo_to_a_dicomweb_node(orthanc_session, tmp_path, html_server):
    nodes = tmp_path / "nodes.json"
    assert (
        _cli("nodes", "add", "web", "--dicomweb", orthanc_session.dicomweb_url, "--nodes", nodes).returncode
        == 0
    )
    assert (
        _cli("nodes", "add", "page", "--dicomweb", html_server + "/dicom-web", "--nodes", nodes).returncode
        == 0
    )
    series = make_series(tmp_path / "s", n=3, rows=8, cols=8, seed=153)
    sent = _cli("send", "web", series.folder, "--nodes", nodes)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "sent 3 of 3" in sent.stdout and "STOW-RS" in sent.stdout
    assert on_orthanc(orthanc_session.dicomweb_url, series.series_uid) == set(series.sop_uids)
    as_json = _cli("send", "web", series.files[0], "--nodes", nodes, "--json")
    assert json.loads(as_json.stdout)["transport"] == "DICOMweb"
    ok = _cli("echo", "web", "--nodes", nodes)
    assert ok.returncode == 0 and "answered a QIDO-RS query" in ok.stdout
    wrong = _cli("echo", "page", "--nodes", nodes, "--timeout", "5")
    assert wrong.returncode == 1 and "not a DICOMweb service" in wrong.stdout
