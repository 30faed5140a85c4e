"""``dicomplus serve`` against peers that break the protocol: an A-ABORT, one log line each on
stderr naming the peer and what was wrong, no thread traceback, and the server goes on serving
DCMTK's echoscu and findscu.

Before: a PDV item of length 1 raised IndexError in pynetdicom's DUL thread (a multi-line thread
traceback, and the peer got no A-ABORT); a C-STORE-RQ on a C-FIND presentation context was
handled as a store; PDUs out of order were aborted without a word. The hostile PDUs are written
on raw sockets to a real ``serve`` process (DICOMPlusLib.network.pacs.pynetdicom_guard)."""

from __future__ import annotations

import re
import signal
import socket
import struct

import pytest

from dicomplus_testing.peers import LOOPBACK, dicomplus_server
from dicomplus_testing.util import free_port
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import ul
from DICOMPlusLib.network.dimse.messages import STUDY_ROOT_FIND

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
TITLE = "DICOMPLUSPACS"


def _associated(port: int) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    stream = ul.PDUStream(sock, timeout=10)
    contexts = [ul.ContextRQ(1, ul.VERIFICATION, [EXPLICIT]), ul.ContextRQ(3, STUDY_ROOT_FIND, [EXPLICIT])]
    stream.send(ul.AssociateRQ(TITLE, "HOSTILE", contexts, max_length=16384).encode())
    pdu_type, _ = stream.read_pdu()
    assert pdu_type == ul.A_ASSOCIATE_AC
    return sock


def _pdv(length: int) -> bytes:
    """A P-DATA-TF holding one PDV item of ``length`` (its bytes: context 1, a command's last)."""
    return struct.pack(">BBII", ul.P_DATA_TF, 0, 4 + length, length) + bytes([1, 3])[:length]


def _store_on_find() -> bytes:
    command = dimse.store_request(7, CT, "1.2.826.0.1.3680043.10.1137.9")
    data = b"\x08\x00\x18\x00\x02\x00\x00\x001\x00"  # SOPInstanceUID "1"
    return ul.pdata_header(3, 0x03, len(command)) + command + ul.pdata_header(3, 0x02, len(data)) + data


def _echo(sop_class: str = ul.VERIFICATION) -> bytes:
    command = dimse.encode_command(
        {dimse.AFFECTED_SOP_CLASS_UID: sop_class, dimse.COMMAND_FIELD: dimse.C_ECHO_RQ, dimse.MESSAGE_ID: 1,
         dimse.COMMAND_DATA_SET_TYPE: dimse.NO_DATA_SET}
    )  # fmt: skip
    return ul.pdata_header(1, 0x03, len(command)) + command


#: name -> (associate first?, bytes sent, what the log line must say)
HOSTILE = {
    "pdv-length-0": (True, _pdv(0), "a P-DATA-TF with a PDV item of length 0"),
    "pdv-length-1": (True, _pdv(1), "a P-DATA-TF with a PDV item of length 1"),
    "store-on-find-context": (True, _store_on_find(), "a C-STORE-RQ for 1.2.840.10008.5.1.4.1.1.2 (CT Image "
                              "Storage) on presentation context 3, which was negotiated for 1.2.840.10008.5.1.4.1.2.2.1"),
    # pydicom warns about the UID as it decodes it (two lines of source on stderr): to the log
    "echo-of-an-invalid-uid": (True, _echo("1.2.840.1x008.1.1"), "a C-ECHO-RQ for 1.2.840.1x008.1.1 on presentation "
                               "context 1, which was negotiated for 1.2.840.10008.1.1 (Verification SOP Class)"),
    "p-data-before-associate": (False, _echo(), "a P-DATA-TF before its A-ASSOCIATE-RQ"),
    "second-associate-rq": (True, ul.AssociateRQ(TITLE, "HOSTILE", [ul.ContextRQ(1, ul.VERIFICATION, [EXPLICIT])]).encode(),
                            "an A-ASSOCIATE-RQ on an established association"),
    "release-rp-unasked": (True, ul.RELEASE_RP, "an A-RELEASE-RP on an established association"),
    "command-set-of-a-group-length-only": (True, ul.pdata_header(1, 0x03, 12) + struct.pack("<HHI", 0, 0x0100, 4) + b"\0" * 4,
                                      "a P-DATA-TF pynetdicom could not process ("),
}  # fmt: skip


@pytest.fixture
def serve(tmp_path):
    port = free_port()
    with dicomplus_server(
        "--db", tmp_path / "db", "serve", "--sample", "--port", port, "--host", LOOPBACK, port=port
    ) as proc:
        yield proc, port


def test_hostile_pdus_get_an_abort_and_one_line_each_and_serve_goes_on(serve, dcmtk):
    proc, port = serve
    sent = {}
    for name, (associate, data, _) in HOSTILE.items():
        sock = _associated(port) if associate else socket.create_connection((LOOPBACK, port), timeout=10)
        sent[name] = sock.getsockname()[1]
        sock.sendall(data)
        reply = sock.recv(16)
        assert reply[:1] == bytes([ul.A_ABORT]), (name, reply)
        sock.close()
    dcmtk.run("echoscu", "-aec", TITLE, LOOPBACK, port)
    found = dcmtk.run("findscu", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-aec", TITLE,
                      "-v", LOOPBACK, port)  # fmt: skip
    assert found.stderr.count("Find Response:") >= 2, found.stderr  # the two sample patients' studies
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Exception in thread" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == len(HOSTILE), err  # one line per bad association, nothing else
    for name, (_, _, expected) in HOSTILE.items():
        [line] = [x for x in lines if re.search(rf"\b{LOOPBACK}:{sent[name]}\b", x)]
        assert expected in line and line.endswith("; aborting"), (name, line)


def test_a_pynetdicom_without_the_guards_hooks_serves_unguarded_and_says_so_once(caplog):
    """The guard replaces pynetdicom 3.0's internals (the DUL's PDU decoder, the state machine's
    actions, the association's request dispatch); a pynetdicom without one of them must leave
    each connection as pynetdicom made it (nothing replaced) and say so once, not fail every
    connection."""
    from types import SimpleNamespace

    from DICOMPlusLib.network.pacs.pynetdicom_guard import _unguarded, guard_handler

    _unguarded.clear()
    recv = object()
    transport = SimpleNamespace(recv=recv)
    dul = SimpleNamespace(
        socket=transport, _decode_pdu=object(), state_machine=SimpleNamespace(do_action=object())
    )
    assoc = SimpleNamespace(dul=dul, _serve_request=object())  # no _accepted_cx: another pynetdicom
    handle = guard_handler(16384)
    with caplog.at_level("WARNING", logger="DICOMPlusLib.network.pacs.pynetdicom_guard"):
        handle(SimpleNamespace(assoc=assoc, address=(LOOPBACK, 1)))
        handle(SimpleNamespace(assoc=assoc, address=(LOOPBACK, 2)))
    assert transport.recv is recv  # nothing replaced
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "are not checked" in warned[0] and "_accepted_cx" in warned[0], warned
    _unguarded.clear()
