"""A fast, read-only scanner for DICOM Part 10 headers.

Import spends its time parsing headers. pydicom builds an element object for every element
(~0.7 ms for a 10 KB header); this scanner walks the encoded bytes with ``struct`` and decodes only
the elements it is asked for, skips sequences by their length or by walking their items
(PS3.5 7.5), and stops at the pixel data, whose offset and length it reports so that loading can
read pixels without parsing again.

It handles the file meta group (always explicit VR little endian, PS3.10 7.1), and datasets in
explicit or implicit VR little endian, explicit VR big endian and encapsulated (compressed)
transfer syntaxes; a deflated data set is scanned after :func:`inflate_header` has inflated as much
of it as the header needs. Files without the ``DICM`` prefix and anything it cannot walk raise
:class:`ScanError` (the only exception it raises, whatever the bytes); the caller then falls back
to pydicom.
"""

from __future__ import annotations

import functools
import struct
import warnings
import zlib

from DICOMPlusLib import uids
from DICOMPlusLib._lazy import import_pydicom
from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.errors import ScanError

# VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 Table 7.1-1).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_DELIM = 0xFFFEE00D
_SEQ_DELIM = 0xFFFEE0DD
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_TEXT_VRS = frozenset({b"SH", b"LO", b"ST", b"LT", b"UT", b"UC", b"PN"})
#: The VRs with a 2-byte length in explicit VR (PS3.5 Table 7.1-2). Any other VR at the top level
#: sends the file to pydicom (which reads it, and fails on its value): two upper-case letters
#: alone (an ``IW`` for InstanceNumber, found by fuzzing) indexed a value pydicom cannot give back.
_SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())

IMPLICIT_LE = uids.ImplicitVRLittleEndian
EXPLICIT_LE = uids.ExplicitVRLittleEndian
DEFLATED_LE = uids.DeflatedExplicitVRLittleEndian
EXPLICIT_BE = uids.ExplicitVRBigEndian


class TruncatedError(ScanError):
    """The whole file was given and it ends before its data does."""


class NeedMoreData(ScanError):
    """The buffer ends before the scan is complete; read more of the file and try again."""


class DeflatedError(ScanError):
    """The data set is deflated (PS3.5 A.5): inflate it with :func:`inflate_header` first."""


# eq=False: never compared; each generated method is compiled as the module is imported.
@dataclass(eq=False)
class ScanResult:
    """What the scanner found.

    ``values`` maps a wanted tag (int) to its decoded value: ``str`` for text VRs (multiple
    values keep their backslashes), ``int``/``float`` (or a tuple for several) for binary numbers,
    ``bytes`` for a private element whose VR is OB/OW/UN or unknown (implicit VR).
    """

    transfer_syntax: str
    media_sop_class: str
    values: dict[int, object] = field(default_factory=dict)
    header_end: int = 0  # offset of the pixel data element (or end of data when there is none)
    pixel_tag: int = 0
    pixel_offset: int = -1  # offset of the pixel data value in the file
    pixel_length: int = -1  # its length; -1 when encapsulated (undefined length)
    last_tag: int = 0  # the last top-level element walked


_IMPLICIT_HEAD = struct.Struct("<HHI")
_EXPLICIT_HEAD_LE = struct.Struct("<HH2sH")
_EXPLICIT_HEAD_BE = struct.Struct(">HH2sH")
_LENGTH_LE = struct.Struct("<I")
_LENGTH_BE = struct.Struct(">I")


#: Binary number VRs -> their struct code (PS3.5 Table 6.2-1).
_NUMBER_CODES = {b"US": "H", b"SS": "h", b"UL": "I", b"SL": "i", b"FL": "f", b"FD": "d", b"AT": "I"}
_ONE_NUMBER_LE = {vr: struct.Struct("<" + code) for vr, code in _NUMBER_CODES.items()}
_ONE_NUMBER_BE = {vr: struct.Struct(">" + code) for vr, code in _NUMBER_CODES.items()}
#: Text VRs whose leading spaces are significant (PS3.5 6.2: ST, LT, UT; a PN keeps its own).
_KEEP_LEADING = frozenset({b"ST", b"LT", b"UT", b"PN"})


def _decode(raw: bytes, vr: bytes, little: bool, charsets: list[str]) -> object:
    code = _NUMBER_CODES.get(vr)
    if code is not None:
        one = (_ONE_NUMBER_LE if little else _ONE_NUMBER_BE)[vr]
        count = len(raw) // one.size
        if count == 1:  # Rows, Columns...: one value, by a struct made once
            return one.unpack_from(raw)[0]
        if count == 0:
            return None
        nums = struct.unpack(("<" if little else ">") + code * count, raw[: count * one.size])
        return nums
    if charsets and vr in _TEXT_VRS:
        single = _PLAIN_CODECS.get(charsets[0]) if len(charsets) == 1 else None
        if single is not None and 0x1B not in raw:  # no code extensions: the codec alone
            text = raw.decode(single, "replace")
        else:
            text = _decode_extended(raw, vr, charsets)
    else:
        text = raw.decode("latin-1")
    text = text.rstrip("\x00 ")
    return text if vr in _KEEP_LEADING else text.lstrip(" ")


#: VRs that :func:`_decode` reads as latin-1 whatever the character set, stripped of trailing NULs
#: and spaces and of leading spaces (UI, DA, TM, CS, IS, DS...): neither numbers nor text VRs.
_LATIN1_VRS = (_SHORT_VRS | _LONG_VRS) - _TEXT_VRS - frozenset(_NUMBER_CODES)

# Defined terms of SpecificCharacterSet without code extensions (PS3.3 C.12.1.1.2) that decode
# with one Python codec; the others go through pydicom (ISO 2022 escapes, several terms).
_PLAIN_CODECS = {
    "ISO_IR 6": "latin_1",  # ASCII; latin-1 keeps stray 8-bit bytes as pydicom's fallback does
    "ISO_IR 100": "latin_1",
    "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO_IR 144": "iso8859_5",
    "ISO_IR 127": "iso8859_6",
    "ISO_IR 126": "iso8859_7",
    "ISO_IR 138": "iso8859_8",
    "ISO_IR 148": "iso8859_9",
    "ISO_IR 203": "iso8859_15",
    "ISO_IR 166": "iso8859_11",
    "ISO_IR 192": "utf_8",
    "GB18030": "gb18030",
    "GBK": "gbk",
}


def _decode_extended(raw: bytes, vr: bytes, charsets: list[str]) -> str:
    import_pydicom()  # this scan runs on worker threads
    from pydicom.charset import decode_bytes

    try:
        with warnings.catch_warnings():  # pydicom warns about unknown terms and falls back
            warnings.simplefilter("ignore")
            return decode_bytes(
                raw, _python_codecs(tuple(charsets)), {0x5C, 0x3D, 0x5E} if vr == b"PN" else {0x5C}
            )
    except (LookupError, ValueError):  # a malformed SpecificCharacterSet (e.g. a NUL in a term)
        return raw.decode("latin-1")


@functools.lru_cache(maxsize=64)
def _python_codecs(terms: tuple[str, ...]) -> list[str]:
    """SpecificCharacterSet defined terms (PS3.3 C.12.1.1.2) -> Python codec names."""
    import_pydicom()
    from pydicom.charset import convert_encodings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_encodings(list(terms))


#: Sequences nested deeper than this are refused: real objects stay far below (an RT plan or a
#: structured report reaches about 10), and pydicom, which later reads the stored header,
#: recurses once per level.
MAX_NESTING = 64


def _skip_undefined(buf: bytes, pos: int, implicit: bool, little: bool) -> int:
    """Return the offset just after the sequence delimiter of an undefined-length value.

    Walked with an explicit stack of open sequences and items, so the walk itself never hits
    Python's recursion limit; nesting past :data:`MAX_NESTING` sequences is a ScanError."""
    end = len(buf)
    fmt_tag = "<HH" if little else ">HH"
    fmt_len = "<I" if little else ">I"
    stack: list[tuple[bool, bool]] = [(True, implicit)]  # (a sequence? else an item, implicit)
    while stack:
        in_sequence, imp = stack[-1]
        if pos + 8 > end:
            raise NeedMoreData("sequence runs past the end of the buffer")
        group, elem = struct.unpack_from(fmt_tag, buf, pos)
        tag = (group << 16) | elem
        if in_sequence:
            if tag == _SEQ_DELIM:
                pos += 8
                stack.pop()
                continue
            if tag != _ITEM:
                raise ScanError(f"expected an item at offset {pos}, found {tag:08X}")
            (length,) = struct.unpack_from(fmt_len, buf, pos + 4)
            pos += 8
            if length == _UNDEFINED:
                stack.append((False, imp))  # an item of undefined length: walk its elements
            else:
                pos += length
            continue
        if tag == _ITEM_DELIM:
            pos += 8
            stack.pop()
            continue
        pos, vr, length, value_pos = _element_header(buf, pos, imp, little)
        if length == _UNDEFINED:
            # UN of undefined length holds implicit VR little endian (PS3.5 6.2.2)
            stack.append((True, imp or vr == b"UN"))
            if len(stack) > 2 * MAX_NESTING:  # a sequence and an item per level
                raise ScanError(f"sequences nested more than {MAX_NESTING} levels deep (at offset {pos})")
            pos = value_pos
        else:
            pos = value_pos + length
    return pos


def _element_header(buf: bytes, pos: int, implicit: bool, little: bool) -> tuple[int, bytes, int, int]:
    """Parse one element header at ``pos``: (pos, vr, length, value_offset)."""
    if implicit:
        if pos + 8 > len(buf):
            raise NeedMoreData("element header past the end of the buffer")
        (length,) = struct.unpack_from("<I", buf, pos + 4)
        return pos, b"", length, pos + 8
    if pos + 8 > len(buf):
        raise NeedMoreData("element header past the end of the buffer")
    vr = buf[pos + 4 : pos + 6]
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            raise NeedMoreData("element header past the end of the buffer")
        (length,) = struct.unpack_from("<I" if little else ">I", buf, pos + 8)
        return pos, vr, length, pos + 12
    if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
        raise ScanError(f"invalid VR {vr!r} at offset {pos}")
    (length,) = struct.unpack_from("<H" if little else ">H", buf, pos + 6)
    return pos, vr, length, pos + 8


_CHARSET = 0x00080005  # SpecificCharacterSet: how the text values after it are decoded


@functools.lru_cache(maxsize=32)
def _watched(wanted: frozenset[int]) -> frozenset[int]:
    """The tags a scan stops at: ``wanted`` and SpecificCharacterSet (one set lookup an element)."""
    return wanted | {_CHARSET}


def data_set_offset(head: bytes) -> int | None:
    """Where the data set begins in a file whose first bytes are ``head``: after the 128-byte
    preamble, ``DICM`` and the file meta (group 0002 in explicit VR little endian, PS3.10 7.1),
    its elements walked to the first element of another group, as pydicom reads them. The group
    length is not trusted: one pointing inside an element (found by fuzzing) would start the data
    set in the middle of the meta. 0 for a file without ``DICM``; None when the walk meets an
    element of undefined length or does not end inside ``head``. The one walk of the meta that a
    send and serve's C-STORE sub-operations make of each file."""
    if len(head) < 132 or head[128:132] != b"DICM":
        return 0
    pos = 132
    while pos + 8 <= len(head):
        if head[pos : pos + 2] != b"\x02\x00":
            return pos
        if head[pos + 4 : pos + 6] in _LONG_VRS:
            length = int.from_bytes(head[pos + 8 : pos + 12], "little")
            if pos + 12 > len(head) or length == _UNDEFINED:
                return None
            pos += 12 + length
        else:
            pos += 8 + int.from_bytes(head[pos + 6 : pos + 8], "little")
    return None


def scan(buf: bytes, wanted: frozenset[int] | set[int], *, complete: bool = False) -> ScanResult:
    """Scan a whole Part 10 file (or at least its header) held in ``buf``.

    ``complete`` says that ``buf`` is the whole file; otherwise running out of bytes before the
    pixel data raises :class:`NeedMoreData` (read more and call again).
    """
    if len(buf) < 132:
        if complete:
            raise ScanError("file is shorter than the 132-byte DICOM preamble and prefix")
        raise NeedMoreData("short buffer")
    if buf[128:132] != b"DICM":
        raise ScanError("no 'DICM' prefix at offset 128")
    pos = 132
    meta_end = None
    ts = ""
    media_class = ""
    values: dict[int, object] = {}
    end = len(buf)
    # File meta information: explicit VR little endian.
    while pos + 8 <= end:
        group, elem, vr, length = _EXPLICIT_HEAD_LE.unpack_from(buf, pos)
        if group != 0x0002:
            break
        if vr in _SHORT_VRS:
            value_pos = pos + 8
        elif vr in _LONG_VRS:
            if pos + 12 > end:
                raise NeedMoreData("element header past the end of the buffer")
            (length,) = _LENGTH_LE.unpack_from(buf, pos + 8)
            value_pos = pos + 12
        elif not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
            raise ScanError(f"invalid VR {vr!r} at offset {pos}")
        else:  # two capital letters that are no VR: pydicom cannot read the meta back
            raise ScanError(f"invalid VR {vr!r} in the file meta information at offset {pos}")
        if length == _UNDEFINED or value_pos + length > end:
            if complete and value_pos + length > end and length != _UNDEFINED:
                raise ScanError("file meta element runs past the end of the file")
            raise (
                ScanError("undefined length in file meta information")
                if length == _UNDEFINED
                else NeedMoreData("meta")
            )
        pos = value_pos + length
        if elem == 0x0010:
            ts = buf[value_pos:pos].decode("ascii", "replace").rstrip("\x00 ")
        elif elem == 0x0002:
            media_class = buf[value_pos:pos].decode("ascii", "replace").rstrip("\x00 ")
        elif elem == 0x0000:
            meta_end = pos + _LENGTH_LE.unpack_from(buf, value_pos)[0] if length == 4 else None
        if (0x00020000 | elem) in wanted:
            values[0x00020000 | elem] = _decode(buf[value_pos:pos], vr, True, [])
    if meta_end is not None and meta_end != pos and (complete or pos + 8 <= end):
        # pydicom walks the group and ignores its length, and it is pydicom that reads the stored
        # header back: a data set found where pydicom would not look is never indexed
        raise ScanError(f"file meta group length says offset {meta_end}, its elements end at {pos}")
    if not ts:
        raise ScanError("no TransferSyntaxUID in the file meta information")
    if ts == DEFLATED_LE:
        raise DeflatedError("deflated transfer syntax")
    implicit = ts == IMPLICIT_LE
    little = ts != EXPLICIT_BE
    result = ScanResult(transfer_syntax=ts, media_sop_class=media_class, values=values)
    watched = _watched(wanted) if isinstance(wanted, frozenset) else wanted | {_CHARSET}
    if pos + 2 <= end and buf[pos : pos + 2] == b"\0\0":
        # a data set that opens with group 0000: pydicom reads it as a command set (implicit VR
        # little endian, whatever the file's syntax), so let pydicom read it
        raise ScanError("the data set opens with a command group (0000) element")
    if little and not implicit:
        return _scan_explicit_le(buf, pos, complete, result, wanted, watched)
    return _scan_elements(buf, pos, complete, result, wanted, watched, implicit, little)


def _scan_elements(
    buf: bytes,
    pos: int,
    complete: bool,
    result: ScanResult,
    wanted: frozenset[int] | set[int],
    watched: frozenset[int] | set[int],
    implicit: bool,
    little: bool,
) -> ScanResult:
    """The data set loop of :func:`scan` from ``pos``, any transfer syntax but deflated
    (:func:`_scan_explicit_le` walks explicit VR little endian the same way, faster)."""
    end = len(buf)
    charsets: list[str] = []
    # One unpack per element header (this loop is most of an import's CPU time, so what it
    # touches per element is in locals, and the VR check is one set lookup).
    head = _IMPLICIT_HEAD if implicit else _EXPLICIT_HEAD_LE if little else _EXPLICIT_HEAD_BE
    long_length = _LENGTH_LE if little else _LENGTH_BE
    long_vrs, short_vrs, undefined = _LONG_VRS, _SHORT_VRS, _UNDEFINED
    vr = b""
    tag = 0
    limit = end - 8  # the last offset an element header fits at
    while pos < end:
        if pos > limit:
            if complete:
                raise TruncatedError(f"the file ends inside an element header at offset {pos}")
            raise NeedMoreData("element header")
        if implicit:
            group, elem, length = head.unpack_from(buf, pos)
            value_pos = pos + 8
        else:
            group, elem, vr, length = head.unpack_from(buf, pos)
            if vr in short_vrs:
                value_pos = pos + 8
            elif vr in long_vrs:
                if pos + 12 > end:
                    raise NeedMoreData("element header past the end of the buffer")
                (length,) = long_length.unpack_from(buf, pos + 8)
                value_pos = pos + 12
            else:
                raise ScanError(f"invalid VR {vr!r} at offset {pos}")
        tag = (group << 16) | elem
        if group >= 0x7FE0:  # one comparison for the common case
            if tag in _PIXEL_TAGS:
                return _at_pixel_data(result, tag, pos, value_pos, length, complete, end)
            if group == 0xFFFE:  # an item or a delimiter outside a sequence: pydicom ends the data set there
                raise ScanError(f"({group:04X},{elem:04X}) outside any sequence at offset {pos}")
        if length == undefined:
            pos = _skip_undefined(buf, value_pos, implicit or vr == b"UN", little)
            continue
        pos = value_pos + length  # past ``end``: the loop ends, and says so below
        if tag in watched and pos <= end:  # a wanted tag, or SpecificCharacterSet
            raw = buf[value_pos:pos]
            if tag == _CHARSET:
                if vr not in (b"CS", b"UN") and not implicit:  # pydicom fails on any other (an int...)
                    raise ScanError(f"SpecificCharacterSet of VR {vr!r}")
                charsets = _charsets(raw)
                if tag not in wanted:
                    continue
            if implicit:
                import_pydicom()
                from pydicom.datadict import dictionary_VR

                try:
                    vr = dictionary_VR(tag).split(" or ")[0].encode()
                except KeyError:
                    vr = b"UN"
            if group & 1 and vr in (b"UN", b"OB", b"OW"):
                # a private element whose VR the file does not say: its bytes, for the caller to decode
                result.values[tag] = bytes(raw)
            elif vr in _LATIN1_VRS:  # what _decode does with them, without the call (most index tags)
                result.values[tag] = raw.decode("latin-1").rstrip("\x00 ").lstrip(" ")
            else:
                result.values[tag] = _decode(raw, vr, little, charsets)
    return _past_the_buffer(result, tag, pos, end, complete)


#: Explicit VR little endian element headers read as numbers: the tag as one little-endian 32-bit
#: number (its element number in the high half, its group in the low: no shift to put it
#: together), the VR as a 16-bit number (a set of numbers hashes no bytes object) and the 16-bit
#: length. The tags a scan watches are looked up in that form (:func:`_swapped`).
_EXPLICIT_LE_NUMBERS = struct.Struct("<IHH")
_VR_OF_CODE = {int.from_bytes(vr, "little"): vr for vr in _SHORT_VRS | _LONG_VRS}
_SHORT_CODES = frozenset(int.from_bytes(vr, "little") for vr in _SHORT_VRS)
_LONG_CODES = frozenset(int.from_bytes(vr, "little") for vr in _LONG_VRS)
_UN_CODE = int.from_bytes(b"UN", "little")
_LATIN1_CODES = frozenset(int.from_bytes(vr, "little") for vr in _LATIN1_VRS)
_CHARSET_CODES = frozenset(int.from_bytes(vr, "little") for vr in (b"CS", b"UN"))
_PRIVATE_BYTES_CODES = frozenset(int.from_bytes(vr, "little") for vr in (b"UN", b"OB", b"OW"))


@functools.lru_cache(maxsize=32)
def _swapped(watched: frozenset[int]) -> frozenset[int]:
    """``watched`` as :data:`_EXPLICIT_LE_NUMBERS` reads tags: (element << 16) | group."""
    return frozenset(((tag & 0xFFFF) << 16) | (tag >> 16) for tag in watched)


def _scan_explicit_le(
    buf: bytes,
    pos: int,
    complete: bool,
    result: ScanResult,
    wanted: frozenset[int] | set[int],
    watched: frozenset[int] | set[int],
) -> ScanResult:
    """The data set loop of :func:`scan` for explicit VR little endian, nearly every file: the
    same walk, checks, values and errors as the general loop, with less work an element (no
    bytes object for its VR, no tag put together but for the elements it stops at)."""
    end = len(buf)
    unpack = _EXPLICIT_LE_NUMBERS.unpack_from
    long_length = _LENGTH_LE.unpack_from
    short_codes, long_codes, latin1_codes, undefined = _SHORT_CODES, _LONG_CODES, _LATIN1_CODES, _UNDEFINED
    values = result.values
    stops = _swapped(watched if isinstance(watched, frozenset) else frozenset(watched))
    charsets: list[str] = []
    key = 0
    while pos < end:
        try:
            key, code, length = unpack(buf, pos)
        except struct.error:  # fewer than 8 bytes left: the element header does not fit
            if complete:
                raise TruncatedError(f"the file ends inside an element header at offset {pos}") from None
            raise NeedMoreData("element header") from None
        if code in short_codes:
            value_pos = pos + 8
        elif code in long_codes:
            if pos + 12 > end:
                raise NeedMoreData("element header past the end of the buffer")
            (length,) = long_length(buf, pos + 8)
            value_pos = pos + 12
        else:
            raise ScanError(f"invalid VR {buf[pos + 4 : pos + 6]!r} at offset {pos}")
        if (key & 0xFFFF) >= 0x7FE0:  # one comparison for the common case
            group = key & 0xFFFF
            tag = (group << 16) | (key >> 16)
            if tag in _PIXEL_TAGS:
                return _at_pixel_data(result, tag, pos, value_pos, length, complete, end)
            if group == 0xFFFE:  # an item or a delimiter outside a sequence: pydicom ends the data set there
                raise ScanError(f"({group:04X},{key >> 16:04X}) outside any sequence at offset {pos}")
        if length == undefined:
            pos = _skip_undefined(buf, value_pos, code == _UN_CODE, True)
            continue
        pos = value_pos + length  # past ``end``: the loop ends, and says so below
        if key in stops and pos <= end:  # a wanted tag, or SpecificCharacterSet
            tag = ((key & 0xFFFF) << 16) | (key >> 16)
            raw = buf[value_pos:pos]
            if tag == _CHARSET:
                if code not in _CHARSET_CODES:  # pydicom fails on any other VR (an int...)
                    raise ScanError(f"SpecificCharacterSet of VR {_VR_OF_CODE[code]!r}")
                charsets = _charsets(raw)
                if tag not in wanted:
                    continue
            if key & 1 and code in _PRIVATE_BYTES_CODES:
                # a private element whose VR the file does not say: its bytes, for the caller to decode
                values[tag] = bytes(raw)
            elif code in latin1_codes:  # what _decode does with them, without the call (most index tags)
                values[tag] = raw.decode("latin-1").rstrip("\x00 ").lstrip(" ")
            else:
                values[tag] = _decode(raw, _VR_OF_CODE[code], True, charsets)
    tag = ((key & 0xFFFF) << 16) | (key >> 16)
    return _past_the_buffer(result, tag, pos, end, complete)


def _at_pixel_data(
    result: ScanResult, tag: int, pos: int, value_pos: int, length: int, complete: bool, end: int
) -> ScanResult:
    """``result`` at the pixel data element (tag at ``pos``, its value at ``value_pos``): where
    both element loops stop."""
    result.last_tag = tag
    result.header_end = pos
    result.pixel_tag = tag
    result.pixel_offset = value_pos
    result.pixel_length = -1 if length == _UNDEFINED else length
    if length != _UNDEFINED and complete and value_pos + length > end:
        raise TruncatedError("pixel data runs past the end of the file")
    return result


def _charsets(raw: bytes) -> list[str]:
    """The terms of a SpecificCharacterSet value (empty ones dropped)."""
    return [c for c in (c.strip() for c in raw.decode("ascii", "replace").split("\\")) if c]


def _past_the_buffer(result: ScanResult, tag: int, pos: int, end: int, complete: bool) -> ScanResult:
    """How both element loops end without reaching the pixel data: the last element (``tag``,
    whose value ends at ``pos``) past the buffer, more of the file needed, or a data set with no
    pixel data."""
    if pos > end:  # the last element's value runs past the buffer
        if complete:
            raise TruncatedError(
                f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) runs past the end of the file"
            )
        raise NeedMoreData("element value")
    if not complete:
        raise NeedMoreData("no pixel data yet")
    result.last_tag = tag
    result.header_end = end
    return result


#: How much of a deflated data set is inflated, at most, to find the end of its header.
MAX_INFLATED_HEADER = 64 << 20
_EXPLICIT_LE_VALUE = b"1.2.840.10008.1.2.1\x00"


def inflate_header(buf: bytes, wanted: frozenset[int] | set[int]) -> tuple[bytes, ScanResult]:
    """Scan a whole Deflated Explicit VR Little Endian file (PS3.5 A.5).

    Returns ``(prefix, result)``: ``prefix`` is an equivalent Explicit VR Little Endian Part 10
    header (its TransferSyntaxUID and group length rewritten, the data set inflated up to the
    pixel data), which ``result`` describes; ``result.transfer_syntax`` stays the deflated one and
    its pixel offsets are -1 (the pixels are not at a fixed place in the file). Only as much is
    inflated as the header needs (at most :data:`MAX_INFLATED_HEADER`).
    """
    pos, meta = 132, []
    while pos + 8 <= len(buf) and struct.unpack_from("<H", buf, pos)[0] == 0x0002:
        _p, _vr, length, value_pos = _element_header(buf, pos, False, True)
        if length == _UNDEFINED or value_pos + length > len(buf):
            raise TruncatedError("the file meta information runs past the end of the file")
        elem = struct.unpack_from("<H", buf, pos + 2)[0]
        if elem == 0x0010:
            meta.append(b"\x02\x00\x10\x00UI" + struct.pack("<H", 20) + _EXPLICIT_LE_VALUE)
        elif elem != 0x0000:
            meta.append(buf[pos : value_pos + length])
        pos = value_pos + length
    body = b"".join(meta)
    prefix = bytearray(buf[:132] + b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<I", len(body)) + body)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending = buf[pos:]
    while True:
        try:
            # as much again as inflated so far: a header that runs on (a private element of
            # 1 GiB of zeros deflates to 1 MiB) is scanned again log(n) times, not once a MiB
            want = max(1 << 20, min(len(prefix), MAX_INFLATED_HEADER + 1 - len(prefix)))
            prefix += inflater.decompress(pending, want)
        except zlib.error as exc:
            raise ScanError(f"the deflated data set cannot be inflated: {exc}") from None
        pending = inflater.unconsumed_tail
        finished = inflater.eof or not pending
        try:
            result = scan(bytes(prefix), wanted, complete=finished)
        except NeedMoreData:
            if finished:
                raise TruncatedError("the deflated data set ends before its data does") from None
            if len(prefix) > MAX_INFLATED_HEADER:
                raise ScanError("the deflated header inflates past 64 MiB") from None
            continue
        if finished and not inflater.eof and not result.pixel_tag:
            raise TruncatedError("the deflated data set is cut short")
        result.transfer_syntax = DEFLATED_LE
        result.pixel_offset = result.pixel_length = -1
        return bytes(prefix[: result.header_end]), result
