"""Bounded fuzzing of the Upper Layer PDU decoder and the DIMSE command decoder (issue 16, item 9).

Hypothesis feeds random bytes and mutations of valid PDUs (flipped, cut, inserted bytes; lengths
set to extremes) to every decoder the listener runs on untrusted input. The documented outcome
of bad input is :class:`ul.ProtocolError` (PDUs, PDV items), :class:`dimse.CommandError`
(command sets), :class:`ul.ConnectionClosed` (a stream that ends early) and ``TimeoutError``;
any other exception fails the test. The last test runs whole associations over a socket pair and
fails if the acceptor ever reaches its catch-all ("association failed") handler.

Bounded for CI: a fixed seed (``derandomize``), no example database, about 3,000 cases in all.
"""

from __future__ import annotations

import itertools
import logging
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from DICOMPlusLib.database import Database
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import ul
from DICOMPlusLib.network.dimse.acceptor import AcceptorPolicy, StorageAssociation, negotiate
from DICOMPlusLib.network.storage import DatabaseSink

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
FUZZ = settings(max_examples=700, deadline=None, derandomize=True, database=None)

_RQ = ul.AssociateRQ(
    "DICOMPLUS",
    "FUZZER",
    [ul.ContextRQ(1, CT, [EXPLICIT, "1.2.840.10008.1.2"]), ul.ContextRQ(3, ul.VERIFICATION, [EXPLICIT])],
    max_length=16384,
    roles={CT: (True, False)},
).encode()
_AC = ul.AssociateAC(
    "DICOMPLUS", "FUZZER", [ul.ContextAC(1, ul.PC_ACCEPTANCE, EXPLICIT), ul.ContextAC(3, 3)], 16384
).encode()
_COMMAND = dimse.store_request(7, CT, "1.2.826.0.1.3680043.10.1137.9")
_PDATA = ul.pdata_header(1, 0x03, len(_COMMAND)) + _COMMAND


@st.composite
def mutated(draw, seed: bytes):
    """``seed`` with a few random edits: byte changes, cuts, insertions, extreme 16/32-bit values."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["set", "cut", "insert", "u16", "u32", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind in ("u16", "u32"):
            fmt, size = (">H", 2) if kind == "u16" else (">I", 4)
            value = draw(
                st.sampled_from(
                    [0, 1, 2, 3, 4, 5, 6, 0x7F, 0xFF, 0xFFFF, 0xFFFFFFFF][: 10 if size == 2 else 11]
                )
            )
            if pos + size <= len(data):
                data[pos : pos + size] = struct.pack(fmt, value & (0xFFFF if size == 2 else 0xFFFFFFFF))
    return bytes(data)


def _decode_pdu(raw: bytes) -> None:
    """What the acceptor does with one PDU's bytes (header checked by the stream)."""
    if len(raw) < 6:
        raise ul.ProtocolError("short")
    pdu_type, _, length = struct.unpack_from(">BBI", raw)
    body = memoryview(raw)[6 : 6 + length]
    if pdu_type == ul.A_ASSOCIATE_RQ:
        rq = ul.AssociateRQ.decode(body)
        negotiate(rq, AcceptorPolicy("DICOMPLUS"))
    elif pdu_type == ul.A_ASSOCIATE_AC:
        ul.AssociateAC.decode(body)
    elif pdu_type == ul.P_DATA_TF:
        buf = bytearray()
        for _ctx, control, data in ul.iter_pdvs(body):
            if control & 0x01:
                buf += data
                if control & 0x02:
                    dimse.decode_command(buf)
                    buf.clear()


_EXPECTED = (ul.ProtocolError, dimse.CommandError)


@FUZZ
@given(st.one_of(mutated(_RQ), mutated(_AC), mutated(_PDATA), st.binary(max_size=300)))
def test_pdu_decoders_raise_only_their_documented_errors(raw):
    try:
        _decode_pdu(raw)
    except _EXPECTED:
        pass


@FUZZ
@given(st.one_of(mutated(_COMMAND), st.binary(max_size=200)))
def test_command_decoder_raises_only_command_error(raw):
    try:
        dimse.decode_command(raw)
    except dimse.CommandError:
        pass


@FUZZ
@given(st.one_of(mutated(_RQ + _PDATA), mutated(_PDATA), st.binary(max_size=300)))
def test_pdu_stream_raises_only_its_documented_errors(raw):
    a, b = socket.socketpair()
    try:
        a.sendall(raw)
        a.shutdown(socket.SHUT_WR)
        stream = ul.PDUStream(b, max_receive=16384, timeout=2.0, pdu_timeout=2.0)
        with pytest.raises((ul.ProtocolError, ul.ConnectionClosed, TimeoutError)):
            while True:
                pdu_type, body = stream.read_pdu()
                _decode_pdu(struct.pack(">BBI", pdu_type, 0, len(body)) + bytes(body))
    except dimse.CommandError:
        pass
    finally:
        a.close()
        b.close()


class _Failures(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    db = Database(tmp_path_factory.mktemp("fuzz") / "db")
    yield DatabaseSink(db)
    db.close()


@settings(FUZZ, max_examples=600, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(mutated(_RQ + _PDATA + ul.RELEASE_RQ), st.binary(max_size=300)))
def test_acceptor_never_reaches_its_catch_all_handler(sink, raw):
    failures = _Failures()
    logger = logging.getLogger("DICOMPlusLib.network.dimse.acceptor")
    logger.addHandler(failures)
    a, b = socket.socketpair()
    try:
        a.sendall(raw)
        a.shutdown(socket.SHUT_WR)
        policy = AcceptorPolicy("DICOMPLUS", acse_timeout=2.0, network_timeout=2.0, pdu_timeout=2.0)
        StorageAssociation(b, "fuzzer", policy, sink).run()
    finally:
        logger.removeHandler(failures)
        a.close()
        b.close()
    assert not failures.records, failures.records[0].exc_info
    assert not list(sink.db.store.root.glob(".incoming-*"))


# --------------------------------------------------------------------------------------------
# The multipart splitter of the DICOMweb client: parts come out whole, wherever chunks split
# --------------------------------------------------------------------------------------------


class _Chunks:
    """What spool_multipart reads of a requests.Response: headers, status, url, iter_content."""

    def __init__(self, content_type: str, chunks: list[bytes]) -> None:
        self.headers = {"Content-Type": content_type}
        self.status_code = 200
        self.url = "http://127.0.0.1:1/dicom-web/studies/1"
        self._chunks = chunks

    def iter_content(self, chunk_size: int):
        yield from self._chunks


@settings(FUZZ, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=5),
    boundary=st.text("abcXYZ0123456789'()+_,-./:=?", min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
)
def test_multipart_parts_come_out_whole_wherever_the_chunks_split(sink, parts, boundary, cuts):
    from DICOMPlusLib.errors import RetrieveError
    from DICOMPlusLib.network.web.response import spool_multipart

    delimiter = b"--" + boundary.encode()
    if any(delimiter in p or p.endswith(b"\r") for p in parts):
        return  # a body may not contain its own delimiter (RFC 2046 5.1.1)
    body = (
        b"preamble\r\n"
        + b"".join(delimiter + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n" for p in parts)
        + delimiter
        + b"--\r\nepilogue"
    )
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    chunks = [body[a:b] for a, b in itertools.pairwise(points)]
    response = _Chunks(f'multipart/related; type="application/dicom"; boundary="{boundary}"', chunks)
    got = []
    for incoming in spool_multipart(response, sink.db, "http://127.0.0.1:1/dicom-web", RetrieveError):
        with open(incoming.path, "rb") as f:
            got.append(f.read())
        incoming.discard()
    assert got == parts
    assert not list(sink.db.store.root.glob(".incoming-*"))


@pytest.mark.parametrize("cut", [b"Content-Type: appli", b"\r\nContent-Type: application/dicom\r", b"\r"])
def test_a_multipart_body_cut_in_the_headers_of_a_part_is_a_cut_not_the_end(sink, cut):
    """A body cut after a part's delimiter, inside the next part's headers (found by feeding the
    splitter truncated bodies): the retrieve ended as if the server had sent everything. It is
    StreamCut now ("retrieve again to fetch the rest"), after the whole parts before it."""
    from DICOMPlusLib.errors import RetrieveError, StreamCut
    from DICOMPlusLib.network.web.response import spool_multipart

    body = b"--b\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--b" + cut
    response = _Chunks('multipart/related; type="application/dicom"; boundary=b', [body])
    got = []
    with pytest.raises(StreamCut, match="headers of part 2"):
        for incoming in spool_multipart(response, sink.db, "http://127.0.0.1:1/dicom-web", RetrieveError):
            with open(incoming.path, "rb") as f:
                got.append(f.read())
            incoming.discard()
    assert got == [b"first"]
    assert not list(sink.db.store.root.glob(".incoming-*"))
