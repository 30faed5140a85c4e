"""Issue 16 item 9, the header-scanner half: mutated real headers (flipped bytes, hostile lengths,
cuts, insertions) fed to the scanner and to the import parser. Whatever the bytes, the only
exceptions allowed are the documented ones: :class:`ScanError` from the scanner and
:class:`ImportFileError` from the parser. Bounded: a few thousand cases, derandomized (the same
cases on every run, so CI is repeatable), well under a minute."""

from __future__ import annotations

import re
import struct
import zlib
from io import BytesIO

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database.headerscan import ScanError, scan
from DICOMPlusLib.database.parsing import _WANTED, parse_bytes, parse_path
from DICOMPlusLib.errors import ImportFileError

INTERESTING = [0, 1, 2, 7, 8, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF]
DELIMITERS = [b"\xfe\xff\x00\xe0", b"\xfe\xff\x0d\xe0", b"\xfe\xff\xdd\xe0", b"\xe0\x7f\x10\x00"]


def _encodings(path) -> list[bytes]:
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:64]  # keep the cases small: the header is what is fuzzed
    out = []
    for ts in (None, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian):
        copy = ds.copy()
        if ts is not None:
            copy.file_meta.TransferSyntaxUID = ts
        buf = BytesIO()
        if ts in (ImplicitVRLittleEndian, ExplicitVRBigEndian):
            pydicom.dcmwrite(buf, copy, little_endian=ts != ExplicitVRBigEndian,
                             implicit_vr=ts == ImplicitVRLittleEndian, force_encoding=True)  # fmt: skip
        else:
            copy.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("fuzz")
    series = make_series(folder, n=1, rows=8, cols=8, fat_header=True, seed=16)
    return _encodings(series.files[0])


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "length", "cut", "insert", "delimiter", "repeat"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "length":  # a hostile 16- or 32-bit length anywhere
            value = draw(st.sampled_from(INTERESTING))
            packed = struct.pack("<I", value) if draw(st.booleans()) else struct.pack("<H", value & 0xFFFF)
            data[at : at + len(packed)] = packed
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delimiter":
            data[at : at + 4] = draw(st.sampled_from(DELIMITERS))
        else:
            size = draw(st.integers(1, 64))
            data[at:at] = data[at : at + size] * draw(st.integers(2, 8))
    return bytes(data)


def test_seeds_are_readable(seeds):
    for data in seeds:
        assert parse_bytes(data).values["SOPInstanceUID"]


FUZZ = settings(
    max_examples=1500, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip


@pytest.mark.filterwarnings("ignore")  # pydicom warns about every malformed value it meets
@FUZZ
@given(data=st.data())
def test_scanner_raises_only_scan_error(seeds, data):
    buf = data.draw(mutated(seeds))
    for complete in (True, False):
        try:
            scan(buf, _WANTED, complete=complete)
        except ScanError:
            pass


@pytest.mark.filterwarnings("ignore")
@FUZZ
@given(data=st.data())
def test_import_parser_raises_only_import_file_error(seeds, data):
    buf = data.draw(mutated(seeds))
    try:
        parse_bytes(buf)
    except ImportFileError:
        pass


def _nested(depth: int) -> bytes:
    """A data set with ``depth`` levels of undefined-length sequences (explicit VR LE)."""
    open_seq = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    close_seq = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    meta_ts = b"1.2.840.10008.1.2.1\x00"
    meta = b"\x02\x00\x10\x00UI" + struct.pack("<H", len(meta_ts)) + meta_ts
    return b"\x00" * 128 + b"DICM" + meta + open_seq * depth + close_seq * depth


@pytest.mark.parametrize("depth", [10, 2000, 20000])
def test_deep_nesting_is_walked_or_a_scan_error(depth):
    try:
        result = scan(_nested(depth), _WANTED, complete=True)
    except ScanError:
        pass
    else:
        assert result.pixel_tag == 0 and result.last_tag == 0x00081115
    with pytest.raises(ImportFileError):
        parse_bytes(_nested(depth))  # no UIDs at any depth: reported, never a crash


def _part10(charset: str = "ISO_IR 192", name: str = "Müller^Jörg") -> bytes:
    """A small Explicit VR LE Part 10 image (no pixels needed: not an image SOP class)."""
    ds = pydicom.Dataset()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: no Rows/Columns, no pixels
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1137.81"
    ds.PatientName = name
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1137.82"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1137.83"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _group_length_skips_the_charset(data: bytes) -> bytes:
    """Group length (0002,0000) made to end the meta group after SpecificCharacterSet, the data
    set's first element: a walk trusting it never sees the character set."""
    at = data.index(b"\x08\x00\x05\x00CS")  # the data set starts here: 144 + the group length
    (charset_length,) = struct.unpack_from("<H", data, at + 6)
    return data[:140] + struct.pack("<I", at + 8 + charset_length - 144) + data[144:]


def _transfer_syntax_cut(data: bytes) -> bytes:
    """The TransferSyntaxUID's length field set to 2 (found by fuzzing the fMRI series): the group
    walk, as pydicom does it, ends inside the UID; only the group length still says where the data
    set starts."""
    at = data.index(b"\x02\x00\x10\x00UI")
    return data[: at + 6] + struct.pack("<H", 2) + data[at + 8 :]


def _charset_of_vr_us(data: bytes) -> bytes:
    """SpecificCharacterSet re-labelled US (found by fuzzing the JPEG 2000 series): pydicom cannot
    read a data set whose character set is a number."""
    at = data.index(b"\x08\x00\x05\x00CS")
    return data[: at + 4] + b"US" + data[at + 6 :]


def _instance_number_of_vr_iw(data: bytes) -> bytes:
    """InstanceNumber with the VR ``IW``, which is none (found by fuzzing the mixed orientation
    series): pydicom reads the element and fails on its value."""
    ds = pydicom.dcmread(BytesIO(data))
    ds.InstanceNumber = 7
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    at = data.index(b"\x20\x00\x13\x00IS")
    return data[: at + 4] + b"IW" + data[at + 6 :]


def _command_group_first(data: bytes) -> bytes:
    """Explicit VR big endian, its first element moved to group 0000 (found by fuzzing the CT
    series): pydicom reads a data set that opens with group 0000 as a command set, little endian,
    and finds nothing else in it; the scanner read on in big endian and indexed the file."""
    ds = pydicom.dcmread(BytesIO(data))
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    buf = BytesIO()
    pydicom.dcmwrite(buf, ds, little_endian=False, implicit_vr=False, force_encoding=True)
    data = buf.getvalue()
    at = data.index(b"\x00\x08\x00\x05CS")
    return data[:at] + b"\x00\x00" + data[at + 2 :]


def _delimiter_at_the_top_level(data: bytes) -> bytes:
    """Implicit VR, an item delimiter (FFFE,E00D) between two elements of the data set (found by
    fuzzing the oblique MR series): pydicom ends the data set there; the scanner read on."""
    ds = pydicom.dcmread(BytesIO(data))
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = BytesIO()
    pydicom.dcmwrite(buf, ds, little_endian=True, implicit_vr=True, force_encoding=True)
    data = buf.getvalue()
    at = data.index(b"\x10\x00\x10\x00")  # PatientName: the UIDs of group 0020 come after it
    return data[:at] + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + data[at:]


def _meta_group_length_of_vr_uh(data: bytes) -> bytes:
    """The meta group length re-labelled ``UH`` (found by fuzzing the CT series): pydicom cannot
    read the file meta back."""
    return data.replace(b"\x02\x00\x00\x00UL", b"\x02\x00\x00\x00UH", 1)


def _as_pydicom_reads(header: bytes) -> dict[str, object]:
    back = pydicom.dcmread(BytesIO(header), force=True)
    out = {}
    for keyword in ("PatientName", "SOPInstanceUID", "InstanceNumber"):
        try:
            value = back.get(keyword)
        except Exception:  # a value pydicom cannot convert: indexed as absent
            value = None
        out[keyword] = value if keyword == "InstanceNumber" or value is None else str(value)
    return out


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    "mutate",
    [
        _group_length_skips_the_charset,
        _transfer_syntax_cut,
        _charset_of_vr_us,
        _instance_number_of_vr_iw,
        _command_group_first,
        _delimiter_at_the_top_level,
        _meta_group_length_of_vr_uh,
    ],
)
def test_an_imported_header_says_what_pydicom_reads_back(tmp_path, mutate):
    """What the scanner indexes is what pydicom, which reads the stored header back (loading,
    export, the DICOMweb and Q/R servers), reads there; or the file is refused. The scanner once
    trusted the meta group length over its walk of the group (pydicom ignores the length), took
    any two letters for a VR, and a character set of any VR."""
    data = mutate(_part10())
    path = tmp_path / "f.dcm"
    path.write_bytes(data)
    for parse in (lambda: parse_bytes(data), lambda: parse_path(str(path), keep_data=False)):
        try:
            parsed = parse()
        except ImportFileError as exc:
            assert re.search("InstanceUID|unreadable DICOM", str(exc))  # as pydicom fails
            assert mutate not in (_group_length_skips_the_charset, _instance_number_of_vr_iw)
            continue
        back = _as_pydicom_reads(parsed.header)
        assert parsed.values["PatientName"] == back["PatientName"]
        if mutate is _group_length_skips_the_charset:
            assert back["PatientName"] == "Müller^Jörg"  # its character set read, not skipped
        assert parsed.values["SOPInstanceUID"] == back["SOPInstanceUID"]
        assert parsed.values["InstanceNumber"] == back["InstanceNumber"]


def test_a_deflated_header_that_runs_on_is_refused_after_a_few_scans(monkeypatch):
    """A private OB element of 1 GiB of zeros deflates to 1 MiB. The header was inflated 1 MiB at
    a time and scanned again from the start after each (64 scans and copies of up to 64 MiB: over
    2 s for a 1 MiB file); it now inflates as much again as it has, and gives up past 64 MiB."""
    from DICOMPlusLib.database import headerscan

    syntax = pydicom.uid.DeflatedExplicitVRLittleEndian.encode() + b"\0"
    meta = b"\x02\x00\x10\x00UI" + struct.pack("<H", len(syntax)) + syntax
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(b"\x09\x00\x10\x10OB\x00\x00" + struct.pack("<I", 0xFFFFFFF0))
    body += b"".join(deflate.compress(bytes(1 << 20)) for _ in range(1024)) + deflate.flush()
    scans = []
    real_scan = headerscan.scan
    monkeypatch.setattr(headerscan, "scan", lambda *a, **k: scans.append(1) or real_scan(*a, **k))
    with pytest.raises(ImportFileError, match="inflates past 64 MiB"):
        parse_bytes(b"\0" * 128 + b"DICM" + meta + body)
    assert len(scans) <= 10, len(scans)


@pytest.mark.filterwarnings("ignore")
def test_an_item_longer_than_the_file_is_truncated_whichever_way_the_file_is_read(tmp_path):
    """An item whose length field says 0xFFFFFEFF, in a file of a few KiB (found by fuzzing the
    classic MR pair): the import from a path said "truncated"; the one from bytes (DICOMweb
    retrieve) fell back to pydicom, which reads on to the item delimiter, and stored it. Both say
    truncated now."""
    element = b"\x08\x00\x50\x11UI\x04\x001.2\x00"
    item = b"\xfe\xff\x00\xe0\xff\xfe\xff\xff" + element + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    sequence = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff" + item + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    data = _part10() + sequence + b"\x40\x00\x31\xa7CS\x02\x00NO"
    path = tmp_path / "f.dcm"
    path.write_bytes(data)
    with pytest.raises(ImportFileError, match="truncated"):
        parse_bytes(data)
    with pytest.raises(ImportFileError, match="truncated"):
        parse_path(str(path), keep_data=False)
