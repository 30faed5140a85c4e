"""Hardening of the C-STORE listener against hostile peers (issue 16, network items).

Real sockets on loopback, a real DCMTK storescu as the legitimate sender: hostile data sets
answered with a status and no file left behind, the called-AE check, and denial of service by
slow or idle connections.
"""

from __future__ import annotations

import struct

import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database
from DICOMPlusLib.network import dimse, scu
from DICOMPlusLib.network.listener import Listener, ListenerConfig

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "db")
    yield database
    database.close()


def start_listener(db, **kwargs) -> Listener:
    kwargs.setdefault("port", 0)
    kwargs.setdefault("host", LOOPBACK)
    kwargs.setdefault("series_idle", 0.3)
    return Listener(db, ListenerConfig(**kwargs)).start()


def storescu(dcmtk, port: int, files, *, aec: str = "DICOMPLUS", check: bool = True, timeout: float = 300):
    return dcmtk.run("storescu", "-aet", "PUSHER", "-aec", aec, LOOPBACK, port, *files, check=check,
                     timeout=timeout)  # fmt: skip


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def nested_data_set(levels: int, sop_instance_uid: str) -> bytes:
    """An Explicit VR Little Endian data set whose Content Sequence nests ``levels`` deep, every
    sequence and item of undefined length (PS3.5 7.5.2)."""
    opening = struct.pack("<HH2s2xI", 0x0040, 0xA730, b"SQ", 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return (
        _element(0x00080016, b"UI", CT.encode())
        + _element(0x00080018, b"UI", sop_instance_uid.encode())
        + _element(0x0020000D, b"UI", b"1.2.826.0.1.3680043.10.1137.1")
        + _element(0x0020000E, b"UI", b"1.2.826.0.1.3680043.10.1137.2")
        + opening * levels
        + closing * levels
    )


def _client(port: int, calling: str = "HOSTILE", called: str = "DICOMPLUS") -> scu.ClientAssociation:
    return scu.associate(LOOPBACK, port, called_ae=called, calling_ae=calling, contexts=[(CT, [EXPLICIT])])


# --------------------------------------------------------------------------------------------
# Hostile data sets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["direct", "pynetdicom"])
def test_deeply_nested_data_set_is_refused_and_the_association_goes_on(db, dcmtk, tmp_path, engine):
    good = make_series(tmp_path / "s", n=2, rows=16, cols=16, seed=161)
    with start_listener(db, engine=engine) as lst:
        assoc = _client(lst.port)
        cx = next(iter(assoc.contexts.values()))
        answer = assoc.store(
            cx, "1.2.826.0.1.3680043.10.1137.3", nested_data_set(2000, "1.2.826.0.1.3680043.10.1137.3")
        )
        assert answer.get(dimse.STATUS) == dimse.CANNOT_UNDERSTAND
        # the same association still works: a shallow nesting is stored
        answer = assoc.store(
            cx, "1.2.826.0.1.3680043.10.1137.4", nested_data_set(3, "1.2.826.0.1.3680043.10.1137.4")
        )
        assert answer.get(dimse.STATUS) == dimse.SUCCESS
        assoc.release()
        assert not list(db.store.root.rglob(".incoming-*"))
        storescu(dcmtk, lst.port, good.files)  # and the listener serves the next sender
    assert db.info()["instances"] == 3
    stored = {r[0] for r in db.reader().execute("SELECT SOPInstanceUID FROM instances")}
    assert "1.2.826.0.1.3680043.10.1137.3" not in stored
