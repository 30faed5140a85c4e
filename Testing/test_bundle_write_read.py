"""Data Bundle write and read: the zip is the file's last element, stock Slicer's reader gets it,
our reader checks sizes and the hash, refuses oversize and damaged files; dciodvfy accepts it.

``stock_slicer_load`` below is DICOMSlicerDataBundlePlugin.load (Slicer/Slicer,
Modules/Scripted/DICOMPlugins) step for step: creator string -> int(split(" ")[2]) -> seek that
many bytes (one more when odd) from the end -> read. It is the independent oracle; it shares no
code with DICOMPlusLib.bundle. ``fileValue`` is served by DCMTK's dcmdump (what Slicer's
ctkDICOMDatabase uses) or by pydicom.
"""

from __future__ import annotations

import io
import os
import re
import zipfile

import numpy as np
import pydicom
import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.bundle import (
    extract_bundle,
    is_bundle,
    read_bundle,
    read_bundle_info,
    save_bundle_to_study,
    write_bundle,
)
from DICOMPlusLib.cli import main as cli_main
from DICOMPlusLib.database import Database
from DICOMPlusLib.errors import BundleError


def make_zip(payload: int = 5000, seed: int = 0, stored: bool = False) -> bytes:
    """A small MRB-like zip: a scene file and a data file of ``payload`` random bytes."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", method) as z:
        z.writestr("Scene/Scene.mrml", "<MRML version='Slicer4.4.0'></MRML>\n" * 20)
        z.writestr("Scene/Data/volume.nrrd", rng.bytes(payload))
    return buffer.getvalue()


def pydicom_file_value(path, tag: str) -> str:
    group, element = (int(x, 16) for x in tag.split(","))
    elem = pydicom.dcmread(path, defer_size=64).get((group, element))
    return "" if elem is None else str(elem.value)


def stock_slicer_load(path, file_value=pydicom_file_value) -> bytes:
    candygram = file_value(path, "cadb,0010")
    assert candygram, "stock Slicer would not offer this file as a scene"
    zip_size = int(candygram.split(" ")[2])
    with open(path, "rb") as fp:
        if zip_size % 2 == 0:
            fp.seek(-1 * (zip_size), os.SEEK_END)
        else:
            fp.seek(-1 * (1 + zip_size), os.SEEK_END)
        return fp.read(zip_size)


@pytest.fixture
def reference(tmp_path):
    series = make_series(tmp_path / "src", n=1, rows=8, cols=8)
    return pydicom.dcmread(series.files[0]), series


@pytest.mark.parametrize("payload", [5000, 5001])  # even and odd zip sizes (OB padding)
def test_round_trip_and_stock_reader(tmp_path, reference, payload):
    ref, series = reference
    data = make_zip(payload)
    info = write_bundle(data, tmp_path / "b.dcm", reference=ref)
    assert info.zip_size == len(data) and info.writer == "dicomplus"
    assert read_bundle(tmp_path / "b.dcm") == data
    assert stock_slicer_load(tmp_path / "b.dcm") == data
    # the zip is the last element: nothing follows it but the padding byte
    raw = (tmp_path / "b.dcm").read_bytes()
    padded = len(data) + len(data) % 2
    assert raw.endswith(data + b"\0" * (len(data) % 2))
    assert raw[-padded - 12 : -padded - 8] == bytes.fromhex("dbca1010")  # (CADB,1010) little endian
    ds = pydicom.dcmread(tmp_path / "b.dcm")
    assert list(ds.keys())[-1] == pydicom.tag.Tag(0xCADB, 0x1010)
    assert ds[0xCADB, 0x0010].value == f"3D Slicer {len(data)}"
    assert ds[0xCADB, 0x1008].value == str(len(data))
    # in the reference study, a new series
    assert ds.StudyInstanceUID == series.study_uid and ds.PatientID == series.patient_id
    assert ds.SeriesInstanceUID not in (series.series_uid, "")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"


def test_stock_reader_through_dcmtk(tmp_path, reference, dcmtk):
    """fileValue as Slicer's ctkDICOMDatabase gets it: from DCMTK."""

    def dcmtk_file_value(path, tag):
        out = dcmtk.run("dcmdump", "-q", "+P", tag, path).stdout
        match = re.search(r"\[(.*)\]", out)
        return match[1] if match else ""

    data = make_zip(7777)
    write_bundle(data, tmp_path / "b.dcm", reference=reference[0])
    assert stock_slicer_load(tmp_path / "b.dcm", dcmtk_file_value) == data


def test_zip_from_a_file_and_a_thumbnail(tmp_path, reference):
    data = make_zip(300_000, stored=True)
    (tmp_path / "scene.mrb").write_bytes(data)
    thumbnail = np.zeros((30, 40, 3), np.uint8)
    thumbnail[..., 0] = np.arange(40, dtype=np.uint8)[None, :] * 6
    thumbnail[..., 2] = 200
    info = write_bundle(
        tmp_path / "scene.mrb", tmp_path / "b.dcm", reference=reference[0], thumbnail=thumbnail
    )
    assert read_bundle(info.path) == data
    ds = pydicom.dcmread(info.path)
    assert (ds.Rows, ds.Columns, ds.PhotometricInterpretation) == (30, 40, "RGB")
    assert np.array_equal(ds.pixel_array, thumbnail)


def test_tampered_zip_fails_the_hash(tmp_path, reference):
    data = make_zip()
    info = write_bundle(data, tmp_path / "b.dcm", reference=reference[0])
    raw = bytearray((tmp_path / "b.dcm").read_bytes())
    raw[info.value_offset + 100] ^= 0xFF
    (tmp_path / "bad.dcm").write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="SHA-256"):
        read_bundle(tmp_path / "bad.dcm")
    with pytest.raises(BundleError, match="SHA-256"):
        extract_bundle(tmp_path / "bad.dcm", tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()
    # without verification the bytes come out as they are
    damaged = read_bundle(tmp_path / "bad.dcm", verify=False)
    assert len(damaged) == len(data) and damaged != data


def test_oversize_is_refused(tmp_path, reference):
    data = make_zip(20_000)
    write_bundle(data, tmp_path / "b.dcm", reference=reference[0])
    with pytest.raises(BundleError, match="over the limit"):
        read_bundle(tmp_path / "b.dcm", max_size=len(data) - 1)
    with pytest.raises(BundleError, match="over the limit"):
        extract_bundle(tmp_path / "b.dcm", tmp_path / "out.zip", max_size=1000)
    assert read_bundle(tmp_path / "b.dcm", max_size=len(data)) == data


def test_lying_sizes_and_truncation_are_refused(tmp_path, reference):
    data = make_zip(4000)
    write_bundle(data, tmp_path / "b.dcm", reference=reference[0])
    raw = (tmp_path / "b.dcm").read_bytes()
    # a creator string that claims another size (same length, so the file stays parseable)
    claimed = str(len(data) + 2).encode()
    lying = raw.replace(f"3D Slicer {len(data)}".encode(), b"3D Slicer " + claimed, 1)
    (tmp_path / "lying.dcm").write_bytes(lying)
    with pytest.raises(BundleError, match="disagree"):
        read_bundle_info(tmp_path / "lying.dcm")
    (tmp_path / "short.dcm").write_bytes(raw[:-500])
    with pytest.raises(BundleError):
        read_bundle(tmp_path / "short.dcm")
    assert not is_bundle(tmp_path / "short.dcm")


def test_not_a_bundle(tmp_path, reference):
    _, series = reference
    assert not is_bundle(series.files[0])
    with pytest.raises(BundleError, match="not a Slicer Data Bundle"):
        read_bundle(series.files[0])
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all" * 10)
    assert not is_bundle(tmp_path / "junk.dcm")


def test_writing_refuses_non_zip_and_existing_files(tmp_path, reference):
    with pytest.raises(BundleError, match="not a zip"):
        write_bundle(b"PK but not really a zip", tmp_path / "a.dcm", reference=reference[0])
    assert not (tmp_path / "a.dcm").exists()
    write_bundle(make_zip(), tmp_path / "b.dcm", reference=reference[0])
    before = (tmp_path / "b.dcm").read_bytes()
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(make_zip(seed=2), tmp_path / "b.dcm", reference=reference[0])
    assert (tmp_path / "b.dcm").read_bytes() == before


@pytest.mark.peers
def test_bundle_passes_dciodvfy(tmp_path, reference, dciodvfy_tool):
    for name, ref in (("with_reference.dcm", reference[0]), ("new_study.dcm", None)):
        write_bundle(make_zip(5001), tmp_path / name, reference=ref)
        report = dciodvfy_tool(tmp_path / name)
        assert report.iod == "SCImage", report.output
        assert report.errors == [], report.output


def test_save_into_a_study_and_index(tmp_path):
    series = make_series(tmp_path / "src", n=2, rows=8, cols=8)
    data = make_zip(1234)
    with Database(tmp_path / "db") as db:
        db.import_paths([series.folder])
        info = save_bundle_to_study(db, series.study_uid, data)
        assert db.store.contains(info.path)
        assert read_bundle(info.path) == data == stock_slicer_load(info.path)
        records = db.search("series", {"StudyInstanceUID": series.study_uid})
        bundle = [r for r in records if r.SeriesInstanceUID == info.series_uid]
        assert bundle and bundle[0].SeriesDescription == "Slicer Data Bundle" and bundle[0].SeriesNumber == 2
        with pytest.raises(BundleError, match="not in the database"):
            save_bundle_to_study(db, "1.2.3.4", data)


def test_cli_save_extract_info(tmp_path, capsys):
    series = make_series(tmp_path / "src", n=1, rows=8, cols=8)
    data = make_zip(999)
    (tmp_path / "scene.mrb").write_bytes(data)
    db = str(tmp_path / "db")
    assert cli_main(["--db", db, "import", str(series.folder)]) == 0
    bundle = tmp_path / "bundle.dcm"
    assert (
        cli_main(
            [
                "--db",
                db,
                "bundle",
                "save",
                str(tmp_path / "scene.mrb"),
                "--study",
                series.study_uid,
                "--out",
                str(bundle),
                "--index",
            ]
        )
        == 0
    )
    assert stock_slicer_load(bundle) == data
    capsys.readouterr()
    assert cli_main(["bundle", "info", str(bundle), "--json"]) == 0
    assert f'"zip_size": {len(data)}' in capsys.readouterr().out
    assert cli_main(["bundle", "extract", str(bundle), "--out", str(tmp_path / "out.zip")]) == 0
    assert (tmp_path / "out.zip").read_bytes() == data
    # refuses to overwrite, refuses oversize, both with a one-line error and exit 1
    assert cli_main(["bundle", "extract", str(bundle), "--out", str(tmp_path / "out.zip")]) == 1
    assert (
        cli_main(["bundle", "extract", str(bundle), "--out", str(tmp_path / "x.zip"), "--max-size", "100"])
        == 1
    )
    err = capsys.readouterr().err
    assert "already exists" in err and "over the limit" in err
    assert not (tmp_path / "x.zip").exists()


def test_detected_from_the_database_header(tmp_path):
    """The database stores headers up to Pixel Data: our block, before it, is enough to tell."""
    from DICOMPlusLib.bundle import is_bundle_dataset

    series = make_series(tmp_path / "src", n=1, rows=8, cols=8)
    with Database(tmp_path / "db") as db:
        db.import_paths([series.folder])
        info = save_bundle_to_study(db, series.study_uid, make_zip(100))
        assert is_bundle_dataset(db.header(info.sop_uid))
        assert not is_bundle_dataset(db.header(series.sop_uids[0]))
