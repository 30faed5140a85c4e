"""A JPEG-LS frame's codestream checked before it is decoded (ISO/IEC 14495-1 = ITU-T T.87).

CharLS (behind pyjpegls, and inside GDCM) takes seconds to give up on a frame whose scan stops
without a marker (a truncated file or fragment): 5-14 s for a 256x256 12-bit MR frame cut at half
or at 90 % (pyjpegls 1.5.1), where the same frame with random bytes in its scan, or cut but ending
in EOI, fails in 2 ms. So the marker structure is walked first, which costs one pass of ``re``
over the bytes (~0.07 ms a 512x512 CT frame): SOI, the frame header (SOF55) against the data set, each scan header (SOS), the scan data
up to its marker (inside a scan, 0xFF is followed by a byte below 0x80, T.87 A.1), and EOI. A
frame that cannot be decoded is then a :class:`LoadError` naming the frame and the file before any
decoder runs; random bytes inside a well-formed scan are left to the decoder, which fails fast.

Only what decides whether the frame can be decoded into the data set's pixels is compared: rows,
columns and samples (PS3.5 8.2.3), and a sample precision that fits Bits Allocated. A precision
other than Bits Stored decodes fine (pydicom corrects the sign with it), so it is not an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import BinaryIO

from DICOMPlusLib import uids
from DICOMPlusLib.errors import LoadError
from DICOMPlusLib.loading.models import Frame

SYNTAXES = frozenset({uids.JPEGLSLossless, uids.JPEGLSNearLossless})

SOI, EOI, SOS, SOF55, LSE, DRI = 0xD8, 0xD9, 0xDA, 0xF7, 0xF8, 0xDD
_RST = range(0xD0, 0xD8)
#: Marker segments allowed between the frame's or a scan's headers (T.87 C.2.2, C.2.4): LSE,
#: DRI, COM and the APPn.
_TABLES = frozenset({LSE, DRI, 0xFE, *range(0xE0, 0xF0)})
#: A marker inside entropy-coded data: 0xFF and a byte of 0x80 or more (0xFF: a fill byte before
#: the marker's own 0xFF). A literal first byte lets ``re`` skip ahead fast (~1.5 GB/s here, 15x
#: the speed of a pattern that starts with ``\xff+``).
_MARKER = re.compile(rb"\xff[\x80-\xff]")
#: The tag of an item (FFFE,E000) in little endian: encapsulated pixel data begin with one.
_ITEM = b"\xfe\xff\x00\xe0"


class _Bad(Exception):
    """What is wrong with the codestream (made a LoadError with the frame's name)."""


def check_frames(path: str, frames: Sequence[Frame]) -> None:
    """Raise :class:`LoadError` if a JPEG-LS frame of ``path`` in ``frames`` cannot be decoded.

    Each frame's bytes are read as pydicom's decoder then reads them for it
    (``pydicom.encaps.get_frame``: the Basic Offset Table, else one fragment a frame, else the
    fragments up to each EOI), from the file. The fragments are listed once per call, not once
    per frame as ``get_frame`` does (a 1,000-frame file without offsets: 1,000 walks of 1,000
    items)."""
    try:
        with open(path, "rb") as fp:
            source: bytes | BinaryIO = fp
            offset = frames[0].pixel_offset
            if offset >= 0:
                fp.seek(offset)
            if offset < 0 or fp.read(4) != _ITEM:  # not noted, or the file changed since: pydicom finds it
                import pydicom

                fp.seek(0)
                source = pydicom.dcmread(fp).PixelData
            else:
                fp.seek(offset)
            frame_bytes = _frame_reader(source, frames[0].number_of_frames)
            for f in frames:
                try:
                    codestream = frame_bytes(f.frame)
                except Exception as exc:  # pydicom's ValueError, struct.error...
                    raise LoadError(
                        f"{f.label}: JPEG-LS frame {f.frame + 1} cannot be found in the pixel data "
                        f"({type(exc).__name__}: {exc}): the file is damaged"
                    ) from exc
                check_codestream(codestream, f)
    except OSError as exc:
        raise LoadError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _frame_reader(source, number_of_frames: int):
    """index -> that frame's bytes in the encapsulated pixel data ``source`` (bytes, or a file at
    its first item). With one fragment a frame and no Basic Offset Table, each is read at its
    place (``get_frame``'s own branch for that case, with the fragments listed once)."""
    import io

    from pydicom.encaps import generate_fragments, get_frame, parse_basic_offsets, parse_fragments

    buffer = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    start = buffer.tell()
    if parse_basic_offsets(buffer) or number_of_frames <= 1:
        buffer.seek(start)
        return lambda index: get_frame(buffer, index, number_of_frames=number_of_frames)
    count, places = parse_fragments(buffer)  # from after the (empty) offset table
    buffer.seek(start)
    if count != number_of_frames:
        return lambda index: get_frame(buffer, index, number_of_frames=number_of_frames)

    def fragment(index: int) -> bytes:
        buffer.seek(places[index])
        return next(generate_fragments(buffer))

    return fragment


def check_codestream(data: bytes, f: Frame) -> None:
    """Raise :class:`LoadError` naming ``f`` if ``data`` is not a JPEG-LS codestream that can be
    decoded into ``f``'s rows, columns and samples."""
    try:
        _walk(data, f)
    except _Bad as exc:
        where = f"frame {f.frame + 1} of " if f.number_of_frames > 1 else ""
        raise LoadError(
            f"{f.label}: the JPEG-LS data of {where}this file cannot be decoded ({exc}); "
            "the file is damaged: fetch or export it again"
        ) from None


def _u16(data, at: int) -> int:
    return (data[at] << 8) | data[at + 1]


def _segment(data, at: int, code: int) -> tuple[int, int]:
    """(start of the segment's parameters, end of the segment) of the marker at ``at``."""
    if at + 4 > len(data):
        raise _Bad(f"the data end inside marker 0xFF{code:02X} at byte {at}")
    length = _u16(data, at + 2)
    end = at + 2 + length
    if length < 2 or end > len(data):
        raise _Bad(
            f"marker 0xFF{code:02X} at byte {at} has length {length}, {len(data) - at - 2} bytes remain"
        )
    return at + 4, end


def _marker(data, at: int) -> tuple[int, int]:
    """(code, position after the code) of the marker at ``at``, after any fill bytes."""
    k = at
    while k < len(data) and data[k] == 0xFF:
        k += 1
    if k == at or k >= len(data):
        raise _Bad(f"no marker at byte {at} of {len(data)}")
    return data[k], k + 1


def _walk(data, f: Frame) -> None:
    if len(data) < 2 or data[0] != 0xFF or data[1] != SOI:
        raise _Bad("it does not start with the SOI marker")
    at = 2
    frame: dict | None = None
    scanned: set[int] = set()
    restart = 0
    while True:
        code, after = _marker(data, at)
        start = after - 2
        if code == EOI:
            break
        if code == SOF55:
            if frame is not None:
                raise _Bad(f"a second frame header at byte {start}")
            params, at = _segment(data, start, code)
            frame = _frame_header(data, params, at, f)
            continue
        if code in _TABLES:
            params, at = _segment(data, start, code)
            if code == DRI and at - params >= 2:
                restart = _u16(data, params)
            if code == LSE and frame is not None and at - params >= 1 and data[params] == 4:
                _oversize(data, params, at, frame, f)
            continue
        if code == SOS:
            if frame is None:
                raise _Bad(f"a scan at byte {start} before the frame header")
            params, at = _segment(data, start, code)
            scanned |= _scan_header(data, params, at, frame, scanned)
            at = _scan_data(data, at, restart)
            continue
        if code in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            raise _Bad(f"it holds a JPEG (not JPEG-LS) frame header 0xFF{code:02X}")
        raise _Bad(f"unexpected marker 0xFF{code:02X} at byte {start}")
    if frame is None:
        raise _Bad("it has no frame header (SOF55)")
    if scanned != set(frame["components"]):
        raise _Bad(f"its scans cover {len(scanned)} of {len(frame['components'])} components")
    _compare(frame, f)


def _frame_header(data, params: int, end: int, f: Frame) -> dict:
    """SOF55 (T.87 C.2.2): P, Y, X, Nf and Nf component specifications of 3 bytes."""
    if end - params < 6:
        raise _Bad("its frame header is too short")
    precision, rows, columns, count = (
        data[params],
        _u16(data, params + 1),
        _u16(data, params + 3),
        data[params + 5],
    )
    if end - params != 6 + 3 * count or count == 0:
        raise _Bad(f"its frame header declares {count} components in {end - params} bytes")
    components = [data[params + 6 + 3 * k] for k in range(count)]
    return {"precision": precision, "rows": rows, "columns": columns, "components": components}


def _oversize(data, params: int, end: int, frame: dict, f: Frame) -> None:
    """LSE id 4 (T.87 C.2.4.1.4): the rows and columns when they do not fit 16 bits."""
    if end - params < 2:
        raise _Bad("its oversize-dimension segment is too short")
    width = data[params + 1]
    if width not in (2, 3, 4) or end - params != 2 + 2 * width:
        raise _Bad("its oversize-dimension segment is malformed")
    frame["rows"] = int.from_bytes(data[params + 2 : params + 2 + width], "big")
    frame["columns"] = int.from_bytes(data[params + 2 + width : params + 2 + 2 * width], "big")


def _scan_header(data, params: int, end: int, frame: dict, scanned: set[int]) -> set[int]:
    """SOS (T.87 C.2.3): Ns, Ns (component, mapping table) pairs, NEAR, ILV, point transform."""
    count = data[params] if end > params else 0
    if count == 0 or end - params != 4 + 2 * count:
        raise _Bad(f"its scan header declares {count} components in {end - params} bytes")
    ids = {data[params + 1 + 2 * k] for k in range(count)}
    if not ids <= set(frame["components"]) or ids & scanned:
        raise _Bad("a scan names components the frame header does not, or names one twice")
    interleave = data[params + 2 + 2 * count]
    if interleave > 2:
        raise _Bad(f"its interleave mode is {interleave}")
    return ids


def _scan_data(data, at: int, restart: int) -> int:
    """The position of the marker that ends the scan starting at ``at`` (restart markers, when
    a restart interval is set, are part of the scan)."""
    while True:
        found = _MARKER.search(data, at)
        if found is None:
            raise _Bad(f"it ends inside the scan data ({len(data)} bytes, no end marker): truncated")
        code, after = _marker(data, found.start())
        if restart and code in _RST:
            at = after
            continue
        return found.start()


def _compare(frame: dict, f: Frame) -> None:
    rows, columns, precision = frame["rows"], frame["columns"], frame["precision"]
    samples = len(frame["components"])
    problems = []
    if rows and f.rows is not None and rows != f.rows:  # 0: defined elsewhere; the decoder decides
        problems.append(f"{rows} rows, the data set has {f.rows}")
    if f.columns is not None and columns != f.columns:
        problems.append(f"{columns} columns, the data set has {f.columns}")
    if samples != f.samples_per_pixel:
        problems.append(f"{samples} samples per pixel, the data set has {f.samples_per_pixel}")
    if not 2 <= precision <= 16 or precision > f.bits_allocated:
        problems.append(f"{precision}-bit samples, the data set allocates {f.bits_allocated} bits")
    if problems:
        raise _Bad("its frame header gives " + "; ".join(problems))
