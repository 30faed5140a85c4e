"""The header scanner walks explicit VR little endian data sets (nearly every file) in a loop of
its own, ``_scan_explicit_le``, which reads each element header as numbers; every other transfer
syntax goes through the general loop, ``_scan_elements``. Both must say the same of every buffer:
the same values, offsets, last tag and transfer syntax, or the same exception with the same
message. Checked on the real scanners' files of the shared series, whole, cut short and with
bytes changed (seeded: the same cases on every run), complete or not, with the import's tags and
with private and pixel-module tags added."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import pytest

from DICOMPlusLib.database import headerscan
from DICOMPlusLib.database.parsing import _WANTED

#: The import's tags, and some a loader asks for: a private tag (odd group, OB), pixel module tags
#: read as numbers (US), and one past the pixel data.
EXTRA = _WANTED | frozenset(
    {0x00280030, 0x00200032, 0x00200037, 0x00281052, 0x00291010, 0x00091001, 0x7FE10010}
)
SPLICES = [
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\xfe\xff\x00\xe0",
    b"\xe0\x7f\x10\x00",
    b"\xfe\xff\xdd\xe0",
]
VRS = [b"SQ", b"UN", b"OB", b"XX", b"US", b"CS", b"UT"]


def _outcome(buf: bytes, wanted, complete: bool) -> tuple:
    try:
        r = headerscan.scan(buf, wanted, complete=complete)
    except headerscan.ScanError as exc:
        return ("error", type(exc).__name__, str(exc))
    values = sorted(r.values.items())
    return ("ok", r.transfer_syntax, r.media_sop_class, values, r.header_end, r.pixel_tag, r.pixel_offset,
            r.pixel_length, r.last_tag)  # fmt: skip


def _general(buf, pos, complete, result, wanted, watched):
    return headerscan._scan_elements(buf, pos, complete, result, wanted, watched, False, True)


def _an_image(shared_series: Path) -> bytes:
    """The first explicit VR little endian file of the shared series with pixel data."""
    for path in sorted(shared_series.rglob("*")):
        data = path.read_bytes() if path.is_file() else b""
        if data[128:132] == b"DICM":
            with contextlib.suppress(headerscan.ScanError):
                result = headerscan.scan(data, _WANTED, complete=True)
                if result.pixel_tag and result.transfer_syntax == "1.2.840.10008.1.2.1":
                    return data
    raise AssertionError("no explicit VR little endian image in the shared series")


def _cases(shared_series: Path) -> list[bytes]:
    rng = random.Random(19)
    cases = []
    for root, _, names in sorted(os.walk(shared_series)):
        for name in sorted(names):
            data = (Path(root) / name).read_bytes()[:24576]
            if data[128:132] != b"DICM":
                continue
            cases += [data, data[: rng.randrange(len(data) + 1)]]
            for _ in range(3):
                b = bytearray(data[:16384])
                for _ in range(rng.randint(1, 3)):
                    at = rng.randrange(132, max(133, len(b)))
                    op = rng.random()
                    if op < 0.4:
                        b[at : at + 1] = bytes([b[at] ^ (1 << rng.randrange(8))]) if at < len(b) else b""
                    elif op < 0.6:
                        b[at : at + 4] = rng.choice(SPLICES)
                    elif op < 0.85:
                        b[at : at + 2] = rng.choice(VRS)
                    else:
                        del b[at:]
                cases.append(bytes(b))
    return cases


def test_the_explicit_le_loop_says_what_the_general_loop_says(shared_series, monkeypatch):
    cases = _cases(shared_series)
    assert len(cases) > 1000
    runs = [
        (buf, wanted, complete) for buf in cases for wanted in (_WANTED, EXTRA) for complete in (False, True)
    ]
    fast = [_outcome(*run) for run in runs]
    monkeypatch.setattr(headerscan, "_scan_explicit_le", _general)
    general = [_outcome(*run) for run in runs]
    kinds = {outcome[0] if outcome[0] == "ok" else outcome[1] for outcome in general}
    assert kinds >= {"ok", "TruncatedError", "NeedMoreData", "ScanError"}  # every way out was taken
    differ = [(i, f, g) for i, (f, g) in enumerate(zip(fast, general, strict=True)) if f != g]
    assert not differ, f"{len(differ)} of {len(runs)} scans differ, the first: {differ[0]}"


def test_an_explicit_le_file_takes_its_own_loop(shared_series, monkeypatch):
    """The loop the test above compares is the one an explicit VR little endian file goes through."""
    buf = _an_image(shared_series)
    calls = []

    def counted(*args):
        calls.append(1)
        return _general(*args)

    monkeypatch.setattr(headerscan, "_scan_explicit_le", counted)
    headerscan.scan(buf, _WANTED)
    assert calls == [1]


@pytest.mark.parametrize("cut", [0, 1, 7, 8, 11])
def test_a_header_cut_inside_an_element_header(shared_series, monkeypatch, cut):
    """A buffer that ends ``cut`` bytes into an element header: NeedMoreData, or TruncatedError
    when the buffer is the whole file, as the general loop says (the fast loop learns it from
    the ``struct`` unpack that fails, not from a comparison an element)."""
    data = _an_image(shared_series)
    result = headerscan.scan(data, _WANTED)
    buf = data[: result.header_end + cut]  # the pixel data element's header, cut
    outcomes = [_outcome(buf, _WANTED, complete) for complete in (False, True)]
    monkeypatch.setattr(headerscan, "_scan_explicit_le", _general)
    assert outcomes == [_outcome(buf, _WANTED, complete) for complete in (False, True)]
    assert outcomes[0][0] == "error"
