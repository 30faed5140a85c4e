"""Nodes and their JSON file; the direct path's PDU and command codecs checked against independent
decoders (pynetdicom's PDU classes, pydicom); association negotiation rules."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from io import BytesIO

import pytest

from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib.errors import NetworkError, NodeAddressError, NodeAddressProblem
from DICOMPlusLib.network.dimse import messages as dimse
from DICOMPlusLib.network.dimse import ul
from DICOMPlusLib.network.dimse.acceptor import AcceptorPolicy, is_storage_class, negotiate
from DICOMPlusLib.network.dimse.status import Category, category, describe
from DICOMPlusLib.network.nodes import (
    DicomwebEndpoint,
    DimseEndpoint,
    EndpointKind,
    NodeStore,
    RemoteNode,
    RetrieveMethod,
    TLSSettings,
    default_nodes_path,
)
from DICOMPlusLib.network.storage import ReceiveMeta, file_meta_bytes

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
J2K = "1.2.840.10008.1.2.4.90"


# -- nodes -------------------------------------------------------------------------------------
def test_an_unreadable_address_says_what_it_lacks():
    """The parse error carries what the address lacks (the command line words its hint from it,
    not from the message's text); kept when the engine pickles it to the host."""
    cases = {
        "ORTHANC": NodeAddressProblem.NO_AE_TITLE,
        "127.0.0.1:104": NodeAddressProblem.NO_AE_TITLE,
        "@host:1": NodeAddressProblem.NO_AE_TITLE,
        "ORTHANC@host": NodeAddressProblem.NO_PORT,
        "ORTHANC@host:x": NodeAddressProblem.NO_PORT,
        "PACS@[::1]": NodeAddressProblem.NO_PORT,
        "PACS@:104": NodeAddressProblem.UNREADABLE,
        "WAYTOOLONGAETITLE17@h:1": NodeAddressProblem.UNREADABLE,
    }
    for spec, problem in cases.items():
        with pytest.raises(NodeAddressError) as caught:
            RemoteNode.parse(spec)
        assert caught.value.problem is problem, spec
        again = pickle.loads(pickle.dumps(caught.value))
        assert (type(again), again.problem, str(again)) == (NodeAddressError, problem, str(caught.value))
    with pytest.raises(NetworkError) as caught:  # a port out of range is read, and refused
        RemoteNode.parse("A@h:70000")
    assert not isinstance(caught.value, NodeAddressError)


def test_parse_node_addresses():
    node = RemoteNode.parse("ORTHANC@127.0.0.1:4242")
    assert (node.ae_title, node.host, node.port) == ("ORTHANC", "127.0.0.1", 4242)
    assert RemoteNode.parse("PACS@[::1]:104").host == "::1"
    assert RemoteNode.parse("A B@pacs.example.org:11112").ae_title == "A B"
    for bad in (
        "ORTHANC",
        "ORTHANC@host",
        "@host:1",
        "WAYTOOLONGAETITLE17@h:1",
        "A@h:0",
        "A@h:70000",
        "A\\B@h:1",
    ):
        with pytest.raises(NetworkError):
            RemoteNode.parse(bad)
    with pytest.raises(NetworkError, match="DICOMweb URL"):
        RemoteNode("web", DimseEndpoint("X", "h", 1), retrieve_method=RetrieveMethod.DICOMWEB)
    with pytest.raises(NetworkError, match="no endpoint"):
        RemoteNode("nothing")
    with pytest.raises(NetworkError, match="AE@HOST:PORT"):
        RemoteNode("web", web=DicomwebEndpoint("http://h/dicom-web"), retrieve_method=RetrieveMethod.C_MOVE)
    with pytest.raises(NetworkError, match="not a DICOMweb URL"):
        RemoteNode.dicomweb("web", "ftp://h/dicom-web")


def test_a_node_is_its_endpoints():
    """Echo, query and send go to the preferred endpoint: DIMSE when there is one, unless the
    node prefers DICOMweb; a DICOMweb-only node has no DIMSE fields to read by mistake."""
    web = RemoteNode.dicomweb("web", "http://127.0.0.1:8042/dicom-web", user="u", password="s3cret")
    assert web.dimse is None and web.preferred is EndpointKind.DICOMWEB
    assert web.retrieve_method is RetrieveMethod.DICOMWEB and web.address == "http://127.0.0.1:8042/dicom-web"
    with pytest.raises(NetworkError, match="DICOMweb only"):
        _ = web.port
    both = RemoteNode("both", DimseEndpoint("PACS", "h", 104), DicomwebEndpoint("http://h/dicom-web"))
    assert both.preferred is EndpointKind.DIMSE and both.retrieve_method is RetrieveMethod.C_GET
    assert both.address == "PACS@h:104"
    prefers_web = RemoteNode("both", both.dimse, both.web, prefer="DICOMweb")
    assert prefers_web.preferred is EndpointKind.DICOMWEB and prefers_web.address == "http://h/dicom-web"
    assert "s3cret" not in repr(web)  # secrets stay out of logs and tracebacks


def test_retrieve_method_names():
    assert RetrieveMethod.parse("c-move") is RetrieveMethod.C_MOVE
    assert RetrieveMethod.parse("C_GET") is RetrieveMethod.C_GET
    assert RetrieveMethod.parse("dicomweb") is RetrieveMethod.DICOMWEB
    with pytest.raises(NetworkError):
        RetrieveMethod.parse("ftp")


def test_node_store_round_trip(tmp_path):
    store = NodeStore(tmp_path / "cfg" / "nodes.json")
    assert store.list() == []
    pacs = RemoteNode(
        "pacs", DimseEndpoint("PACS", "10.0.0.5", 104), retrieve_method="C-MOVE", description="main archive"
    )
    web = RemoteNode("web", DimseEndpoint("ORTHANC", "127.0.0.1", 4242, tls=True, tls_settings=TLSSettings(ca_file="/ca.pem")),
                     DicomwebEndpoint("http://127.0.0.1:8042/dicom-web", token="tok"),
                     retrieve_method=RetrieveMethod.DICOMWEB, prefer=EndpointKind.DICOMWEB)  # fmt: skip
    store.add(pacs)
    store.add(web)
    with pytest.raises(NetworkError, match="exists"):
        store.add(pacs)
    again = NodeStore(store.path)
    assert again.list() == [pacs, web]
    assert again.get("web").tls_settings.ca_file == "/ca.pem"
    data = json.loads(store.path.read_text())
    assert data["version"] == 2 and data["nodes"][0]["retrieve_method"] == "C-MOVE"
    assert data["nodes"][1]["dimse"]["port"] == 4242 and data["nodes"][1]["dicomweb"]["token"] == "tok"
    assert again.resolve("pacs") == pacs
    assert again.resolve("X@h:1").ae_title == "X"
    with pytest.raises(NetworkError, match="nodes add"):
        again.resolve("nosuch")
    store.add(RemoteNode("pacs", DimseEndpoint("PACS2", "10.0.0.6", 104)), replace_existing=True)
    assert again.get("pacs").ae_title == "PACS2"
    assert again.remove("pacs").ae_title == "PACS2"
    assert [n.name for n in again.list()] == ["web"]
    assert not list(store.path.parent.glob(".nodes-*"))  # no temporary file left


def test_an_unknown_node_name_points_to_the_configured_ones(tmp_path):
    """A typo ("pcas" for "pacs") said only "no node named 'pcas'": the message now offers the
    closest configured name, else lists them, else says none is configured."""
    store = NodeStore(tmp_path / "nodes.json")
    with pytest.raises(NetworkError, match=r"no node named 'pacs' in .* \(no node is configured\)"):
        store.resolve("pacs")
    for name in ("pacs", "orthanc", "archive"):
        store.add(RemoteNode(name, DimseEndpoint(name.upper(), "10.0.0.5", 104)))
    for typed, hint in (("pcas", "did you mean 'pacs'?"), ("ORTHANC", "did you mean 'orthanc'?"),
                        ("xyz", "configured: pacs, orthanc, archive")):  # fmt: skip
        for call in (store.resolve, store.get, store.remove):
            with pytest.raises(NetworkError, match=re.escape(f"no node named {typed!r}")) as raised:
                call(typed)
            assert f"({hint})" in str(raised.value), (call, str(raised.value))
    assert [node.name for node in store.list()] == ["pacs", "orthanc", "archive"]


def test_node_files_of_version_1_are_read(tmp_path):
    """A node file written before endpoints existed: flat AE/host/port, and for a DICOMweb-only
    node the placeholder AE title DICOMWEB with the URL's host and port. It reads as endpoints;
    the next change rewrites it as version 2."""
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps({"version": 1, "nodes": [
        {"name": "pacs", "ae_title": "PACS", "host": "10.0.0.5", "port": 104, "tls": True,
         "retrieve_method": "C-MOVE", "dicomweb_url": "", "tls_settings": {"ca_file": "/ca.pem", "cert_file": "",
                                                                          "key_file": "", "verify": True}},
        {"name": "web", "ae_title": "DICOMWEB", "host": "127.0.0.1", "port": 8042, "tls": False,
         "retrieve_method": "DICOMweb", "dicomweb_url": "http://127.0.0.1:8042/dicom-web",
         "dicomweb_user": "alice", "dicomweb_password": "secret"},
        {"name": "orthanc", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": 4242, "tls": False,
         "retrieve_method": "DICOMweb", "dicomweb_url": "http://127.0.0.1:8042/dicom-web"},
        {"name": "plain", "ae_title": "P", "host": "h", "port": 11112, "tls": False, "retrieve_method": "C-GET",
         "dicomweb_url": "http://h/dicom-web"},
    ]}))  # fmt: skip
    store = NodeStore(path)
    pacs, web, orthanc, plain = store.list()
    assert pacs.dimse == DimseEndpoint(
        "PACS", "10.0.0.5", 104, tls=True, tls_settings=TLSSettings(ca_file="/ca.pem")
    )
    assert pacs.web is None and pacs.retrieve_method is RetrieveMethod.C_MOVE
    assert web.dimse is None and web.web == DicomwebEndpoint("http://127.0.0.1:8042/dicom-web", username="alice",
                                                             password="secret")  # fmt: skip
    # a real DIMSE address that retrieved by DICOMweb was queried by QIDO-RS: it still is
    assert orthanc.dimse.address == "ORTHANC@127.0.0.1:4242" and orthanc.preferred is EndpointKind.DICOMWEB
    assert plain.preferred is EndpointKind.DIMSE and plain.web.url == "http://h/dicom-web"
    store.add(RemoteNode.parse("X@h:1", name="new"))
    data = json.loads(path.read_text())
    assert data["version"] == 2 and [n["name"] for n in data["nodes"]] == [
        "pacs",
        "web",
        "orthanc",
        "plain",
        "new",
    ]
    assert NodeStore(path).list()[:4] == [pacs, web, orthanc, plain]


def test_default_nodes_path(monkeypatch, tmp_path):
    monkeypatch.setenv("DICOMPLUS_NODES", str(tmp_path / "n.json"))
    assert default_nodes_path() == tmp_path / "n.json"
    monkeypatch.delenv("DICOMPLUS_NODES")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_nodes_path() == tmp_path / "xdg" / "dicomplus" / "nodes.json"


def test_corrupt_node_file_is_a_clear_error(tmp_path):
    path = tmp_path / "nodes.json"
    path.write_text("{not json")
    with pytest.raises(NetworkError, match="not valid JSON"):
        NodeStore(path).list()


def test_cli_nodes(tmp_path):
    nodes = tmp_path / "nodes.json"

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "DICOMPlusLib.cli", "nodes", *map(str, args), "--nodes", nodes],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert cli("add", "pacs", "PACS@10.1.2.3:104", "--retrieve", "C-MOVE").returncode == 0
    assert cli("add", "web", "ORTHANC@127.0.0.1:4242", "--dicomweb-url", "http://x/dicom-web").returncode == 0
    duplicate = cli("add", "pacs", "PACS@10.1.2.3:104")
    assert duplicate.returncode == 2 and "exists" in duplicate.stderr and "--replace" in duplicate.stderr
    listed = json.loads(cli("list", "--json").stdout)
    assert [
        (n["name"], n["dimse"]["ae_title"], n["dimse"]["port"], n["retrieve_method"]) for n in listed
    ] == [
        ("pacs", "PACS", 104, "move"),
        ("web", "ORTHANC", 4242, "get"),
    ]
    assert listed[1]["dicomweb"]["url"] == "http://x/dicom-web" and listed[1]["transport"] == "DIMSE"
    assert cli("add", "w2", "--dicomweb", "http://y/dicom-web").returncode == 0
    assert (
        cli("add", "both", "B@h:1", "--dicomweb", "http://y/dicom-web", "--prefer", "dicomweb").returncode
        == 0
    )
    shown = {n["name"]: n for n in json.loads(cli("list", "--json").stdout)}
    assert "dimse" not in shown["w2"] and shown["w2"]["retrieve_method"] == "dicomweb"
    assert shown["both"]["transport"] == "DICOMweb" and shown["both"]["retrieve_method"] == "get"
    assert cli("remove", "w2").returncode == 0 and cli("remove", "both").returncode == 0
    assert "PACS@10.1.2.3:104" in cli("list").stdout
    assert cli("remove", "pacs").returncode == 0
    assert cli("remove", "pacs").returncode == 2  # gone: no node of that name (usage)
    assert [n["name"] for n in json.loads(cli("list", "--json").stdout)] == ["web"]


# -- codecs against independent decoders ---------------------------------------------------------
def test_associate_rq_decodes_with_pynetdicom():
    from pynetdicom.pdu import A_ASSOCIATE_RQ

    rq = ul.AssociateRQ(
        "CALLEDAE",
        "CALLINGAE",
        [ul.ContextRQ(1, CT, [EXPLICIT, IMPLICIT]), ul.ContextRQ(3, ul.VERIFICATION, [IMPLICIT])],
        max_length=65536,
        roles={CT: (False, True)},
    )
    encoded = rq.encode()
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(encoded)
    assert pdu.called_ae_title == "CALLEDAE" and pdu.calling_ae_title == "CALLINGAE"
    assert [(c.context_id, c.abstract_syntax, c.transfer_syntax) for c in pdu.presentation_context] == [
        (1, CT, [EXPLICIT, IMPLICIT]),
        (3, ul.VERIFICATION, [IMPLICIT]),
    ]
    user = pdu.user_information
    assert user.maximum_length == 65536
    assert user.implementation_class_uid == ul.IMPLEMENTATION_CLASS_UID
    assert user.implementation_version_name == ul.IMPLEMENTATION_VERSION_NAME
    assert (user.role_selection[CT].scu_role, user.role_selection[CT].scp_role) == (False, True)
    # and ours decodes what pynetdicom encodes
    back = ul.AssociateRQ.decode(pdu.encode()[6:])
    assert back.contexts[0].transfer_syntaxes == [EXPLICIT, IMPLICIT]
    assert back.roles == {CT: (False, True)} and back.max_length == 65536


def test_associate_ac_against_pynetdicom():
    from pynetdicom.pdu import A_ASSOCIATE_AC

    ac = ul.AssociateAC(
        "CALLEDAE", "CALLINGAE", [ul.ContextAC(1, 0, EXPLICIT), ul.ContextAC(3, 3)], max_length=16384
    )
    pdu = A_ASSOCIATE_AC()
    pdu.decode(ac.encode())
    results = {c.context_id: (c.result, c.transfer_syntax) for c in pdu.presentation_context}
    assert results[1] == (0, EXPLICIT) and results[3][0] == 3
    assert pdu.user_information.maximum_length == 16384
    decoded = ul.AssociateAC.decode(pdu.encode()[6:])
    first = decoded.contexts[0]
    assert (first.id, first.result, first.transfer_syntax) == (1, 0, EXPLICIT)


def test_commands_decode_with_pydicom():
    from pydicom.filereader import read_dataset

    raw = dimse.store_request(7, CT, "1.2.3.4.5", move_originator_aet="MOVER", move_originator_id=3)
    ds = read_dataset(BytesIO(raw), is_implicit_VR=True, is_little_endian=True)
    assert ds.CommandGroupLength == len(raw) - 12
    assert (ds.CommandField, ds.MessageID, ds.CommandDataSetType) == (0x0001, 7, 0)
    assert (ds.AffectedSOPClassUID, ds.AffectedSOPInstanceUID) == (CT, "1.2.3.4.5")
    assert ds.MoveOriginatorApplicationEntityTitle.strip() == "MOVER" and ds.MoveOriginatorMessageID == 3
    request = dimse.decode_command(raw)
    response = read_dataset(
        BytesIO(dimse.store_response(request, 0xA700, "disk full")),
        is_implicit_VR=True,
        is_little_endian=True,
    )
    assert (response.CommandField, response.MessageIDBeingRespondedTo, response.Status) == (0x8001, 7, 0xA700)
    assert response.ErrorComment == "disk full" and response.CommandDataSetType == 0x0101


def test_file_meta_reads_with_pydicom():
    import pydicom

    meta = ReceiveMeta(CT, "1.2.3.4.5", EXPLICIT, calling_ae="SENDER")
    ds = pydicom.dcmread(BytesIO(file_meta_bytes(meta) + b"\x08\x00\x18\x00UI\x0a\x001.2.3.4.5\x00"))
    assert ds.file_meta.MediaStorageSOPClassUID == CT
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT
    assert ds.file_meta.SourceApplicationEntityTitle.strip() == "SENDER"
    assert ds.SOPInstanceUID == "1.2.3.4.5"


def test_status_categories():
    assert category(0) is Category.SUCCESS
    assert category(0xB000) is category(0xB007) is Category.WARNING
    assert category(0xA700) is category(0xC000) is category(0xC123) is Category.FAILURE
    assert category(0xFF01) is Category.PENDING and category(0xFE00) is Category.CANCEL
    assert category(None) is Category.FAILURE
    assert "out of resources" in describe(0xA701)
    assert describe(0xB000) == "warning: coercion of data elements"
    assert describe(0xB000, "qr").startswith("warning: sub-operations complete")
    assert describe(0xC123, "qr") == "error: unable to process (0xC123)"
    assert describe(0xA801, "qr") == "refused: move destination unknown"


# -- negotiation -------------------------------------------------------------------------------
def _rq(**kwargs):
    defaults = {"called_ae": "DICOMPLUS", "calling_ae": "SENDER", "contexts": []}
    defaults.update(kwargs)
    return ul.AssociateRQ(**defaults)


def test_negotiation_of_presentation_contexts():
    policy = AcceptorPolicy("DICOMPLUS")
    contexts = [
        ul.ContextRQ(1, CT, [J2K, EXPLICIT]),  # the requestor's first choice wins
        ul.ContextRQ(3, "1.2.840.10008.5.1.4.1.2.2.1", [EXPLICIT]),  # a FIND model: not storage
        ul.ContextRQ(5, CT, ["1.2.3.999"]),  # unknown transfer syntax
        ul.ContextRQ(7, "1.3.12.2.1107.5.9.1", [EXPLICIT]),  # private SOP class: accepted
        ul.ContextRQ(9, ul.VERIFICATION, [IMPLICIT]),
        ul.ContextRQ(9, CT, [EXPLICIT]),  # duplicate ID
    ]
    result = negotiate(_rq(contexts=contexts), policy)
    got = {(c.id, c.result, c.transfer_syntax) for c in result.ac.contexts}
    assert (1, ul.PC_ACCEPTANCE, J2K) in got
    assert (3, ul.PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, "") in got
    assert (5, ul.PC_TRANSFER_SYNTAXES_NOT_SUPPORTED, "") in got
    assert (7, ul.PC_ACCEPTANCE, EXPLICIT) in got
    assert result.contexts == {
        1: (CT, J2K),
        7: ("1.3.12.2.1107.5.9.1", EXPLICIT),
        9: (ul.VERIFICATION, IMPLICIT),
    }
    strict = negotiate(
        _rq(contexts=contexts[3:4]), AcceptorPolicy("DICOMPLUS", accept_unknown_sop_classes=False)
    )
    assert strict.contexts == {}


def test_negotiation_rejections():
    policy = AcceptorPolicy("DICOMPLUS", allowed_calling_aets=frozenset({"GOOD"}), require_called_ae=True)
    assert negotiate(_rq(calling_ae="BAD"), policy).reject == (1, 1, ul.RJ_CALLING_AE_NOT_RECOGNIZED)
    assert negotiate(_rq(calling_ae="GOOD", called_ae="OTHER"), policy).reject == (
        1,
        1,
        ul.RJ_CALLED_AE_NOT_RECOGNIZED,
    )
    assert negotiate(_rq(calling_ae="GOOD", application_context="1.2.3"), policy).reject == (1, 1, 2)
    assert negotiate(_rq(calling_ae="GOOD", protocol_version=2), policy).reject == (1, 2, 2)
    assert negotiate(_rq(calling_ae="GOOD"), policy).reject is None


def test_storage_classes():
    assert is_storage_class(CT)
    assert is_storage_class("1.2.840.10008.5.1.4.1.1.66.4")  # Segmentation
    assert is_storage_class("1.2.840.10008.5.1.4.1.1.999.1")  # a future class in the storage arc
    assert not is_storage_class("1.2.840.10008.5.1.4.1.2.2.1")  # Study Root FIND
    assert not is_storage_class("1.2.840.10008.1.20.1")  # Storage Commitment
    assert not is_storage_class("1.2.840.10008.1.3.10")  # DICOMDIR
