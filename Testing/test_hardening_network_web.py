"""The DICOMweb client against a hostile or broken server (issue 16, item 7).

A real HTTP server on loopback answers what no correct server (Orthanc among them) would:
malformed JSON, JSON of another shape, an HTML page with status 200, a redirect to malformed
JSON, bytes that are not HTTP, multipart bodies without their boundary or with a part that is
not DICOM, and bodies far larger than any answer. Every case must end in a clear error naming
the server (exit code 1 from the command line), with nothing half-stored and memory bounded.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from dicomplus_testing.synthetic import make_series
from dicomplus_testing.util import REPO_ROOT, serve_in_thread
from DICOMPlusLib.cli import main
from DICOMPlusLib.database import Database
from DICOMPlusLib.errors import QueryError, RetrieveError
from DICOMPlusLib.network.web.client import DicomwebClient, DicomwebEndpoint

STUDY = "1.2.826.0.1.3680043.10.1137.100"
SERIES = "1.2.826.0.1.3680043.10.1137.101"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.seen.append((self.path, dict(self.headers)))
        self.server.behaviour(self)

    do_POST = do_GET

    # helpers for behaviours
    def answer(self, status: int, content_type: str, body: bytes = b"", **headers) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, content_type: str, chunks) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
        except OSError:
            pass  # the client stopped reading: expected
        self.close_connection = True


class HostileServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.httpd = http.server.ThreadingHTTPServer((host, 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.seen = []
        self.httpd.behaviour = lambda h: h.answer(404, "text/plain", b"nothing here")
        self.thread = serve_in_thread(self.httpd)
        self.root = f"http://{host}:{self.httpd.server_address[1]}"
        self.url = self.root + "/dicom-web"

    @property
    def seen(self):
        return self.httpd.seen

    def behave(self, behaviour) -> None:
        self.httpd.behaviour = behaviour

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = HostileServer()
    yield s
    s.close()


@pytest.fixture
def cli(server, tmp_path, monkeypatch, capsys):
    """Run ``dicomplus`` in-process against a DICOMweb node named ``web`` on the server."""
    nodes = tmp_path / "nodes.json"
    monkeypatch.setenv("DICOMPLUS_NODES", str(nodes))
    assert main(["nodes", "add", "web", "--dicomweb", server.url]) == 0
    capsys.readouterr()

    def run(*argv: str) -> tuple[int, str]:
        code = main(["--db", str(tmp_path / "db"), *argv])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


def _json(body: bytes):
    return lambda h: h.answer(200, "application/dicom+json", body)


QIDO_CASES = {
    "malformed JSON": (_json(b'[{"0020000D": {"vr": "UI", "Value": ["1.2"]}'), "malformed JSON"),
    "object, not a list": (_json(b'{"studies": []}'), "wrong shape: a dict at the top level"),
    "list of lists": (_json(b'[["0020000D"]]'), "wrong shape: result 1 is a list"),
    "attribute not an object": (_json(b'[{"0020000D": "1.2.3"}]'), "wrong shape: result 1 has '0020000D'"),
    "Value not a list": (
        _json(b'[{"0020000D": {"vr": "UI", "Value": "1.2.3"}}]'),
        "Value that is not a list",
    ),
    "HTML with 200": (
        lambda h: h.answer(200, "text/html", b"<html><body>Please log in</body></html>"),
        "answered an HTML page (HTTP 200)",
    ),
    "not HTTP at all": (
        lambda h: (h.wfile.write(b"HELLO THERE\r\n\r\n"), setattr(h, "close_connection", True)),
        "closed the connection or answered something that is not HTTP",
    ),
    "endless JSON": (
        lambda h: h.stream("application/dicom+json", [b"["] + [b" " * (1 << 20)] * 64),
        "more than 32 MiB of JSON",
    ),
}


@pytest.mark.parametrize("case", QIDO_CASES)
def test_query_of_a_hostile_server_is_a_clear_error(server, cli, case):
    behaviour, message = QIDO_CASES[case]
    server.behave(behaviour)
    code, out = cli("query", "web", "PatientID=X")
    assert code == 1, out
    assert message in out, out
    assert server.url in out and "Traceback" not in out
    assert "is the server running" not in out  # an answer did arrive


def test_redirect_to_malformed_json_names_where_it_went(server, cli):
    def behaviour(h):
        if h.path.startswith("/dicom-web/"):
            h.answer(302, "text/plain", b"", Location=server.root + "/moved" + h.path[len("/dicom-web") :])
        else:
            h.answer(200, "application/dicom+json", b"[{,]")

    server.behave(behaviour)
    code, out = cli("query", "web", "PatientID=X")
    assert code == 1
    assert "malformed JSON" in out and server.url in out


def test_no_authorization_header_on_a_redirect_to_another_host(server):
    other = HostileServer("127.0.0.2")
    try:
        other.behave(_json(b"[]"))
        hops = []

        def behaviour(h):
            hops.append(h.path)
            if len(hops) == 1:  # same host first, then another host
                h.answer(302, "text/plain", b"", Location=server.root + "/same" + h.path)
            else:
                h.answer(302, "text/plain", b"", Location=other.root + h.path)

        server.behave(behaviour)
        client = DicomwebClient(DicomwebEndpoint(server.url, token="SECRET"))
        assert list(client.search("study")) == []
    finally:
        other.close()
    assert [headers.get("Authorization") for _, headers in server.seen] == ["Bearer SECRET"] * 2
    assert len(other.seen) == 1 and "Authorization" not in other.seen[0][1]


# --------------------------------------------------------------------------------------------
# WADO-RS
# --------------------------------------------------------------------------------------------


def _instances_json(sops) -> bytes:
    return json.dumps([{"00080018": {"vr": "UI", "Value": [sop]}} for sop in sops]).encode()


def _wado(
    server, parts_of_body, sops, content_type='multipart/related; type="application/dicom"; boundary=B0UND'
):
    """QIDO answers ``sops``; the WADO-RS answer is ``parts_of_body`` streamed."""

    def behaviour(h):
        if "/instances" in h.path and "?" in h.path:
            h.answer(200, "application/dicom+json", _instances_json(sops))
        else:
            h.stream(content_type, parts_of_body() if callable(parts_of_body) else parts_of_body)

    server.behave(behaviour)


def _part(data: bytes, content_type: str = "application/dicom") -> bytes:
    return b"--B0UND\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n" + data + b"\r\n"


@pytest.fixture
def two(tmp_path):
    s = make_series(tmp_path / "s", n=2, rows=8, cols=8, seed=171)
    return s, [f.read_bytes() for f in s.files]


def _left_in_store(tmp_path) -> list[Path]:
    return list((tmp_path / "db").rglob(".incoming-*"))


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (_part(b"this is not DICOM at all, just text"), "part 2 from {url} is not DICOM"),
        (_part(b"<html>oops</html>", "text/html"), "part 2 from {url} is text/html, not application/dicom"),
    ],
    ids=["text", "html"],
)
def test_a_part_that_is_not_dicom_stops_the_retrieve_cleanly(server, cli, two, tmp_path, second, message):
    s, data = two
    _wado(server, [_part(data[0]), second, b"--B0UND--\r\n"], s.sop_uids)
    code, out = cli("retrieve", "web", "--study", s.study_uid, "--series", s.series_uid)
    assert code == 1, out
    assert message.format(url=server.url) in out and "Traceback" not in out
    db = Database(tmp_path / "db")
    try:
        assert db.info()["instances"] == 1  # the complete first part, nothing else
    finally:
        db.close()
    assert not _left_in_store(tmp_path)


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (
            'multipart/related; type="application/dicom"',
            [b"--B0UND\r\n\r\nxx"],
            "not a multipart/related response",
        ),
        ("text/html", [b"<html>login</html>"], "answered an HTML page (HTTP 200)"),
        (
            'multipart/related; type="application/dicom"; boundary=B0UND',
            [b"\0" * (1 << 20)] * 64,
            "without the multipart boundary it announced",
        ),
    ],
    ids=["no boundary", "html", "boundary never sent"],
)
def test_a_body_that_is_not_multipart_is_a_clear_error(
    server, cli, two, tmp_path, content_type, body, message
):
    s, _ = two
    _wado(server, body, s.sop_uids, content_type)
    code, out = cli("retrieve", "web", "--study", s.study_uid, "--series", s.series_uid)
    assert code == 1, out
    assert message in out and server.url in out and "Traceback" not in out
    assert not _left_in_store(tmp_path)


def test_a_retrieve_cut_inside_a_part_leaves_no_temporary_file(server, two, tmp_path):
    s, data = two
    _wado(
        server,
        [_part(data[0]), b"--B0UND\r\nContent-Type: application/dicom\r\n\r\n" + data[1][:500]],
        s.sop_uids,
    )
    db = Database(tmp_path / "db")
    try:
        with pytest.raises(RetrieveError, match="closed the connection after 1 of 2 instances"):
            DicomwebClient(server.url).retrieve(db, s.study_uid, s.series_uid)
        assert db.info()["instances"] == 1
    finally:
        db.close()
    assert not _left_in_store(tmp_path)


def _huge_instance(size: int) -> tuple[bytes, int]:
    """The header of an MR image whose Pixel Data is ``size`` bytes (sent as zeros)."""
    from io import BytesIO

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    side = int((size // 2) ** 0.5)
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1137.102"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, SERIES
    ds.PatientID, ds.Modality = "HUGE", "MR"
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 16, 15, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    pixels = side * side * 2
    return buf.getvalue() + b"\xe0\x7f\x10\x00OW\0\0" + pixels.to_bytes(4, "little"), pixels


def test_a_large_instance_is_spooled_to_disk_not_held_in_memory(server, tmp_path):
    header, pixels = _huge_instance(300 << 20)

    def body():
        yield b"--B0UND\r\nContent-Type: application/dicom\r\n\r\n" + header
        left = pixels
        block = b"\0" * (1 << 20)
        while left:
            n = min(left, len(block))
            yield block[:n]
            left -= n
        yield b"\r\n--B0UND--\r\n"

    _wado(server, body, ["1.2.826.0.1.3680043.10.1137.102"])
    script = (
        "import sys\n"
        "from DICOMPlusLib.database import Database\n"
        "from DICOMPlusLib.network.web.client import DicomwebClient\n"
        "db = Database(sys.argv[2])\n"
        f"report = DicomwebClient(sys.argv[1]).retrieve(db, {STUDY!r}, {SERIES!r})\n"
        # VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across exec
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print(len(report.done), int(hwm) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, server.url, str(tmp_path / "db")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    stored, peak_mib = map(int, done.stdout.split())
    assert stored == 1
    assert peak_mib < 200, f"peak RSS {peak_mib} MiB for a {pixels >> 20} MiB instance"
    db = Database(tmp_path / "db")
    try:
        record = db.instance("1.2.826.0.1.3680043.10.1137.102")
        assert Path(record.path).stat().st_size == len(header) + pixels
        assert pydicom.dcmread(record.path, stop_before_pixels=True).PatientID == "HUGE"
    finally:
        db.close()
    assert not _left_in_store(tmp_path)


def test_query_error_type_is_kept(server):
    server.behave(_json(b"nope"))
    with pytest.raises(QueryError, match="malformed JSON"):
        list(DicomwebClient(server.url).search("study"))


# --------------------------------------------------------------------------------------------
# STOW-RS
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "code", "message"),
    [
        (_json(b""), 0, "sent 1 of 1"),
        (lambda h: h.answer(200, "text/html", b"<html>login</html>"), 1, "answered an HTML page"),
        (_json(b'{"00081198": "oops"}'), 1, "JSON of the wrong shape (not a Store Instances Response)"),
        (_json(b'{"00081198": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["X"]}}'), 1,
         "malformed JSON"),
    ],
    ids=["empty 200", "html", "wrong shape", "malformed"],
)  # fmt: skip
def test_send_to_a_hostile_server_reports_what_it_cannot_confirm(server, cli, two, behaviour, code, message):
    s, _ = two
    server.behave(behaviour)
    status, out = cli("send", "web", str(s.files[0]))
    assert status == code, out
    assert message in out and "Traceback" not in out
