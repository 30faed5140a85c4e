"""A signal at any point of an export leaves no partial file: the series export, the SEG export
and the Data Bundle writer share DICOMPlusLib.export.files (one guarantee, one place).

SIGTERM, SIGHUP and Ctrl-C raise KeyboardInterrupt or SystemExit in the command line wherever its
code is (DICOMPlusLib.cli). Here they are raised at chosen points of the real writes, which a
signal's timing cannot aim at: right after the file is created (before anything notes it: a
fresh-clone CI run left a slice so), and at the first, some middle and the last ``write`` call
into it. A file of another name that was in the folder, and one of the same name (not created by
the export, which then fails), stay as they were."""

from __future__ import annotations

import builtins
import io
import zipfile

import numpy as np
import pydicom
import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.bundle import write_bundle
from DICOMPlusLib.errors import BundleError, ExportError
from DICOMPlusLib.export.series import SeriesMetadata, export_volume

hd = pytest.importorskip("highdicom")


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("scene.mrml", "<MRML/>" * 2000)
        archive.writestr("data.bin", np.random.default_rng(3).bytes(300_001))  # odd: a pad byte
    return buffer.getvalue()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    series = make_series(tmp_path_factory.mktemp("src") / "ct", n=5, rows=12, cols=16)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files]
    return series, headers


def _series(out, source):
    return export_volume(
        np.zeros((5, 4, 4), np.int16), np.eye(4), out, metadata=SeriesMetadata(modality="CT")
    )


def _seg(out, source):
    from DICOMPlusLib.export.seg import SegmentInfo, export_segmentation

    series, headers = source
    labels = np.zeros(series.pixels.shape, np.uint8)
    labels[1:4, 2:8, 3:9] = 1
    return export_segmentation(
        labels, series.ijk_to_lps, headers, [SegmentInfo(1, "blob")], out / "IMG00001.dcm"
    )


def _bundle(out, source):
    return write_bundle(_zip(), out / "IMG00001.dcm", reference=source[1][0])


WRITERS = {"series": (_series, ExportError), "seg": (_seg, ExportError), "bundle": (_bundle, BundleError)}


class _Tripwire:
    """A file being written that raises ``signal`` at write call number ``at`` (0: never)."""

    def __init__(self, f, counter: list[int], at: int, signal: BaseException):
        self._f, self._counter, self._at, self._signal = f, counter, at, signal

    def write(self, data):
        self._counter[0] += 1
        if self._counter[0] == self._at:
            raise self._signal
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _interrupting(monkeypatch, *, after_create: int = 0, at_write: int = 0, signal=None):
    """Files created by the export raise ``signal`` once created (the ``after_create``-th one)
    or at the ``at_write``-th write; returns [creations, writes]."""
    counts = [0, 0]
    writes = [0]

    def opening(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        if "x" not in mode:
            return f
        counts[0] += 1
        if counts[0] == after_create:  # the file exists; the signal lands before anything notes it
            f.close()
            raise signal
        return _Tripwire(f, writes, at_write, signal)

    monkeypatch.setattr("DICOMPlusLib.export.files.open", opening, raising=False)
    return counts, writes


def _folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("the user's")
    return out


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("signal", [KeyboardInterrupt(), SystemExit(143)], ids=["ctrl-c", "sigterm"])
def test_a_signal_anywhere_in_the_write_leaves_no_file(tmp_path, monkeypatch, source, writer, signal):
    write, _ = WRITERS[writer]
    counting = _folder(tmp_path / "count")
    counts, writes = _interrupting(monkeypatch)
    write(counting, source)
    created, total = counts[0], writes[0]
    assert created >= 1 and total > 10
    monkeypatch.undo()

    points = [("created", k) for k in sorted({1, created})]
    points += [("write", k) for k in sorted({1, 2, total // 3, total // 2, total - 1, total})]
    for kind, k in points:
        out = _folder(tmp_path / f"{kind}-{k}")
        if kind == "created":
            counts, _ = _interrupting(monkeypatch, after_create=k, signal=signal)
        else:
            counts, writes = _interrupting(monkeypatch, at_write=k, signal=signal)
        with pytest.raises(type(signal)):
            write(out, source)
        monkeypatch.undo()
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"], (kind, k)
        assert (out / "notes.txt").read_text() == "the user's"


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_file_of_the_same_name_stays_and_is_not_overwritten(tmp_path, source, writer):
    write, error = WRITERS[writer]
    out = _folder(tmp_path)
    (out / "IMG00001.dcm").write_bytes(b"someone else's")
    with pytest.raises(error, match="already exists"):
        write(out, source)
    assert (out / "IMG00001.dcm").read_bytes() == b"someone else's"
    assert sorted(p.name for p in out.iterdir()) == ["IMG00001.dcm", "notes.txt"]
