"""Query/retrieve identifiers of plain text keys, encoded and decoded without pydicom.

A retrieve plans with C-FIND and asks with C-GET/C-MOVE using identifiers of a few UIDs and
code strings (Query/Retrieve Level, Study, Series and SOP Instance UIDs, SOP Class UID; PS3.4
C.4.1.2.1, C.4.2.2.1, C.4.3.2.1), and reads back only UIDs (and Failed SOP Instance UID List,
C.4.2.1.4). Building them with pydicom made every ``dicomplus retrieve`` process import it, and
with it numpy, GDCM and every pixel decoder plugin (0.4-0.5 s, more than a third of a 300-instance
C-GET as a process). A user query (:mod:`DICOMPlusLib.network.find`), whose answers carry names in
any character set, keeps pydicom.

Encoding (PS3.5 7.1): elements in ascending tag order, implicit or explicit VR little endian,
values padded to even length (UI with NUL, others with a space, PS3.5 6.2). Decoding walks the
top-level elements, skipping sequences by their length or item by item (PS3.5 7.5), and keeps
the asked-for elements as ASCII text without padding.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from DICOMPlusLib import uids
from DICOMPlusLib.database.keywords import tag_of, vr_of
from DICOMPlusLib.errors import ProtocolError

IMPLICIT_LE = uids.ImplicitVRLittleEndian
#: Explicit VR: VRs with two reserved bytes and a 4-byte length (PS3.5 Table 7.1-1).
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_UNDEFINED = 0xFFFFFFFF
#: The keys a retrieve uses (PS3.6), looked up without loading the whole dictionary.
_RETRIEVE_KEYS = {
    "QueryRetrieveLevel": (0x00080052, "CS"),
    "FailedSOPInstanceUIDList": (0x00080058, "UI"),
    "SOPClassUID": (0x00080016, "UI"),
    "SOPInstanceUID": (0x00080018, "UI"),
    "StudyInstanceUID": (0x0020000D, "UI"),
    "SeriesInstanceUID": (0x0020000E, "UI"),
}
_ITEM, _ITEM_DELIM, _SEQ_DELIM = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


def encode(values: Mapping[str, str], transfer_syntax: str) -> bytes:
    """``{keyword: text}`` as a data set in ``transfer_syntax`` (implicit or explicit VR LE)."""
    implicit = transfer_syntax == IMPLICIT_LE
    elements = []
    for keyword, text in values.items():
        tag, vr = _RETRIEVE_KEYS.get(keyword) or (tag_of(keyword), vr_of(keyword))
        if tag is None or vr is None:
            raise ValueError(f"{keyword!r} is not a DICOM keyword")
        raw = str(text).encode("ascii")
        if len(raw) % 2:
            raw += b"\0" if vr == "UI" else b" "
        elements.append((tag, vr, raw))
    out = bytearray()
    for tag, vr, raw in sorted(elements):
        out += struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        if implicit:
            out += struct.pack("<I", len(raw))
        elif vr in _LONG_VRS:
            out += vr.encode() + struct.pack("<HI", 0, len(raw))
        else:
            if len(raw) > 0xFFFF:
                raise ValueError(f"{keyword}: {len(raw)} bytes do not fit a {vr} value")
            out += vr.encode() + struct.pack("<H", len(raw))
        out += raw
    return bytes(out)


def decode(data: bytes, transfer_syntax: str, keywords: Iterable[str]) -> dict[str, str]:
    """The elements named by ``keywords`` found at the top level of ``data``, as text without
    padding (``\\``-separated when multi-valued); the others are skipped unread."""
    wanted = {}
    for keyword in keywords:
        tag = _RETRIEVE_KEYS[keyword][0] if keyword in _RETRIEVE_KEYS else tag_of(keyword)
        if tag is not None:
            wanted[tag] = keyword
    implicit = transfer_syntax == IMPLICIT_LE
    found: dict[str, str] = {}
    pos = 0
    try:
        while pos + 8 <= len(data):
            tag, _vr, length, value_at = _element(data, pos, implicit)
            if length == _UNDEFINED:
                pos = _skip_undefined(data, value_at, implicit)
                continue
            end = value_at + length
            if end > len(data):
                raise ProtocolError(
                    f"identifier element ({tag >> 16:04X},{tag & 0xFFFF:04X}) runs past its end"
                )
            if tag in wanted:
                found[wanted[tag]] = data[value_at:end].decode("ascii", "replace").strip("\0 ")
            pos = end
    except struct.error:
        raise ProtocolError("identifier ends inside an element header") from None
    return found


def _element(data: bytes, pos: int, implicit: bool) -> tuple[int, str, int, int]:
    """(tag, VR or "", length, where the value starts) of the element at ``pos``."""
    group, element = struct.unpack_from("<HH", data, pos)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:  # item tags carry no VR in any syntax
        (length,) = struct.unpack_from("<I", data, pos + 4)
        return tag, "", length, pos + 8
    vr = data[pos + 4 : pos + 6].decode("ascii", "replace")
    if vr in _LONG_VRS:
        (length,) = struct.unpack_from("<I", data, pos + 8)
        return tag, vr, length, pos + 12
    (length,) = struct.unpack_from("<H", data, pos + 6)
    return tag, vr, length, pos + 8


def _skip_undefined(data: bytes, pos: int, implicit: bool) -> int:
    """Past the Sequence Delimitation Item of a sequence of undefined length whose items start
    at ``pos`` (items of defined length are skipped whole, others element by element)."""
    while pos + 8 <= len(data):
        tag, _vr, length, value_at = _element(data, pos, implicit)
        if tag == _SEQ_DELIM:
            return value_at
        if tag != _ITEM:
            raise ProtocolError(f"expected an item in a sequence, found ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        if length != _UNDEFINED:
            pos = value_at + length
            continue
        pos = value_at
        while True:  # an item of undefined length: its elements up to the Item Delimitation Item
            if pos + 8 > len(data):
                raise ProtocolError("identifier ends inside a sequence item")
            tag, _vr, length, value_at = _element(data, pos, implicit)
            if tag == _ITEM_DELIM:
                pos = value_at
                break
            pos = _skip_undefined(data, value_at, implicit) if length == _UNDEFINED else value_at + length
    raise ProtocolError("identifier ends inside a sequence of undefined length")
