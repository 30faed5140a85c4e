"""``dicomplus inspect`` / ``convert`` shapes, and series thumbnails."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import SimpleITK as sitk
from test_loading_support import assert_matrix, database_with, edit, geometric_files, make

from DICOMPlusLib.cli import main
from DICOMPlusLib.database import Database
from DICOMPlusLib.loading.preview import ThumbnailCache, series_thumbnail

VOLUME_KEYS = {"series_uid", "dims", "spacing", "ijk_to_ras", "ijk_to_lps", "warnings"}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_inspect_json_shape_and_values(manifest, capsys):
    entry = manifest["dev_ct_gantry_tilt"]
    code, out, _ = run(capsys, "inspect", str(entry["folder"]), "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"volumes"}
    (volume,) = doc["volumes"]
    assert set(volume) == VOLUME_KEYS
    assert volume["dims"] == entry["expected"]["dims"]
    assert np.allclose(volume["spacing"], entry["expected"]["spacing"], atol=1e-3)
    assert_matrix(volume["ijk_to_lps"], entry["expected"]["ijk_to_lps"])
    assert_matrix(volume["ijk_to_ras"], entry["expected"]["ijk_to_ras"])
    assert all(set(w) == {"code", "message"} for w in volume["warnings"])
    assert "gantry_tilt" in {w["code"] for w in volume["warnings"]}


def test_inspect_4d_dims_have_time_last(manifest, capsys):
    _, out, _ = run(capsys, "inspect", str(manifest["dev_mr_4d_fmri"]["folder"]), "--json")
    assert json.loads(out)["volumes"][0]["dims"] == manifest["dev_mr_4d_fmri"]["expected"]["dims"]


def test_inspect_series_from_the_database_equals_the_folder(tmp_path, capsys):
    series = make(tmp_path / "s", n=5)
    db = database_with(tmp_path, series.folder)
    db.close()
    _, from_db, _ = run(
        capsys, "--db", str(tmp_path / "db"), "inspect", "--series", series.series_uid, "--json"
    )
    _, from_folder, _ = run(capsys, "inspect", str(series.folder), "--json")
    assert json.loads(from_db) == json.loads(from_folder)
    code, text, _ = run(capsys, "inspect", str(series.folder))
    assert code == 0 and "32x32x5" in text


def test_inspect_needs_exactly_one_source(tmp_path, capsys):
    code, _, err = run(capsys, "--db", str(tmp_path / "db"), "inspect", str(tmp_path), "--series", "1.2.3")
    assert code == 2 and "not both" in err  # a usage error
    code, _, err = run(capsys, "--db", str(tmp_path / "db"), "inspect", "--series", "1.2.3")
    assert code == 2 and "no database at" in err and not (tmp_path / "db").exists()
    Database(tmp_path / "db").close()
    code, _, err = run(capsys, "--db", str(tmp_path / "db"), "inspect", "--series", "1.2.3")
    assert code == 1 and "not in the database" in err


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_convert_writes_every_volume(manifest, tmp_path, capsys, suffix):
    out = tmp_path / f"mixed{suffix}"
    code, text, _ = run(
        capsys, "convert", str(manifest["dev_mr_mixed_orientation"]["folder"]), "--out", str(out)
    )
    assert code == 0
    second = tmp_path / f"mixed_2{suffix}"
    assert out.is_file() and second.is_file() and str(second) in text
    groups = manifest["dev_mr_mixed_orientation"]["expected"]["orientation_groups"]
    sizes = sorted(sitk.ReadImage(str(p)).GetSpacing()[2] for p in (out, second))
    assert np.allclose(sizes, sorted(g["spacing"][2] for g in groups), atol=1e-3)


def test_convert_resample_json(manifest, tmp_path, capsys):
    out = tmp_path / "tilt.nrrd"
    code, text, _ = run(
        capsys,
        "convert",
        str(manifest["dev_ct_gantry_tilt"]["folder"]),
        "--out",
        str(out),
        "--resample",
        "--json",
    )
    assert code == 0
    (written,) = json.loads(text)["written"]
    assert written["path"] == str(out)
    image = sitk.ReadImage(str(out))
    d = np.array(image.GetDirection()).reshape(3, 3)
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-6)  # orthogonal after resampling
    assert image.GetSpacing()[2] == pytest.approx(
        manifest["dev_ct_gantry_tilt"]["expected"]["spacing_perpendicular"], abs=1e-3
    )


def test_convert_out_says_file_or_folder(tmp_path, capsys):
    """``--out x.txt`` made a folder named x.txt: a suffix that is no volume's, an existing file
    in the way, or --format with a FILE (whose suffix says its type) is a usage error (exit 2)
    before any work, and nothing is made; a folder with a dot in its name ends with /."""
    series = make(tmp_path / "s", n=3)
    for out, extra, said in (
        ("x.txt", (), ".txt is not a volume file type"),
        ("brain.nii.bz2", (), ".bz2 is not a volume file type"),
        ("x.nrrd", ("--format", "nii"), "--format nii is the file type in an --out FOLDER"),
        (str(series.files[0]), (), "is an existing file of no volume file type"),
    ):
        target = out if out.startswith("/") else str(tmp_path / out)
        code, text, err = run(capsys, "convert", str(series.folder), "--out", target, *extra)
        assert code == 2 and text == "", (out, text)
        assert err.startswith("dicomplus: error: --") and said in err and err.count("\n") == 1, err
        assert "FILE.nii.gz (.nii, .nrrd, .nhdr, .mha, .mhd) or a FOLDER" in err or "--format" in said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # nothing made
    code, text, _ = run(capsys, "convert", str(series.folder), "--out", f"{tmp_path / 'results.v2'}/")
    assert code == 0 and len(list((tmp_path / "results.v2").glob("*.nii.gz"))) == 1, text
    code, text, _ = run(
        capsys, "convert", str(series.folder), "--out", str(tmp_path / "plain"), "--format", "nrrd"
    )
    assert code == 0 and len(list((tmp_path / "plain").glob("*.nrrd"))) == 1, text
    (tmp_path / "dir.nii.gz").mkdir()  # an existing folder stays a folder, whatever its name
    code, text, _ = run(capsys, "convert", str(series.folder), "--out", str(tmp_path / "dir.nii.gz"))
    assert code == 0 and len(list((tmp_path / "dir.nii.gz").glob("*.nii.gz"))) == 1, text


def _decode_png(data: bytes) -> np.ndarray:
    """A minimal PNG reader for 8-bit grayscale, filter 0 (what the thumbnail writer produces)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color = header[:4]
    assert (depth, color) == (8, 0)
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, width + 1)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:]


def test_thumbnail_is_the_geometric_middle_slice_windowed_and_cached(tmp_path):
    series = make(tmp_path / "s", n=9, modality="MR", shuffle=True)
    files = geometric_files(series)

    def constant(ds, k):
        ds.PixelData = np.full((32, 32), 100 * k, np.int16).tobytes()
        ds.WindowCenter, ds.WindowWidth = "400", "800"

    edit(files, constant)
    db = database_with(tmp_path, series.folder)
    cache = ThumbnailCache(tmp_path / "thumbs")
    png = series_thumbnail(db, series.series_uid, cache=cache)
    image = _decode_png(png)
    assert image.shape == (112, 128)  # 32 x 0.7 mm rows by 32 x 0.8 mm columns, fitted in 128
    assert (image == 128).all()  # slice k=4 holds 400 = the window centre: mid grey
    assert series_thumbnail(db, series.series_uid, cache=cache) == png and cache.hits == 1
    assert len(list((tmp_path / "thumbs").rglob("*.png"))) == 1
    again = ThumbnailCache(tmp_path / "thumbs")  # a new session finds it on disk
    assert series_thumbnail(db, series.series_uid, cache=again) == png and again.misses == 0
    try:
        from PIL import Image  # Pillow, when present, must read the file too
    except ImportError:
        return
    import io

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    db.close()


def test_thumbnail_without_window_uses_percentiles(tmp_path):
    from DICOMPlusLib.loading import plan_folder
    from DICOMPlusLib.loading.preview import thumbnail

    series = make(tmp_path / "s", n=3, modality="MR")
    (info,) = plan_folder(series.folder)
    image = _decode_png(thumbnail(info, size=32))
    assert image.min() == 0 and image.max() == 255


def test_convert_names_a_series_without_description_by_number_and_modality(tmp_path, capsys):
    """Without --name a series with no description was written as ``3.nii.gz``: it is ``3_CT``
    (series number and modality); one with a description keeps ``%s_%d``."""
    from dicomplus_testing.synthetic import make_series

    bare = make_series(tmp_path / "bare", n=3, rows=8, cols=8, series_number=3, series_description="")
    named = make_series(
        tmp_path / "named", n=3, rows=8, cols=8, series_number=4, series_description="Head CT"
    )
    out = tmp_path / "out"
    for series in (bare, named):
        code, _, err = run(capsys, "convert", str(series.folder), "--out", f"{out}/")
        assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "3_CT.json",
        "3_CT.nii.gz",
        "4_Head_CT.json",
        "4_Head_CT.nii.gz",
    ]


def test_convert_does_not_replace_another_files_sidecar(tmp_path, capsys):
    """A series written as .nii.gz, then as .nrrd under the same name, replaced the NIfTI's JSON
    sidecar without a word: a usage error (exit 2) before any work, naming the file and the way
    out; the same command run again still replaces its own files, and --no-sidecar writes."""
    from dicomplus_testing.synthetic import make_series

    series = make_series(tmp_path / "s", n=3, rows=8, cols=8, series_number=3, series_description="T1")
    out = tmp_path / "out"
    assert run(capsys, "convert", str(series.folder), "--out", f"{out}/")[0] == 0
    assert run(capsys, "convert", str(series.folder), "--out", f"{out}/")[0] == 0  # its own: replaced
    sidecar = out / "3_T1.json"
    assert json.loads(sidecar.read_text())["SeriesDescription"] == "T1"
    sidecar.write_text('{"kept": true}\n')  # what a user may have added to it
    code, text, err = run(capsys, "convert", str(series.folder), "--out", f"{out}/", "--format", "nrrd")
    assert code == 2 and text == "" and err.count("\n") == 1, (text, err)
    assert f"{sidecar} belongs to {out / '3_T1.nii.gz'}" in err and "--no-sidecar" in err, err
    assert sidecar.read_text() == '{"kept": true}\n' and not (out / "3_T1.nrrd").exists()
    code, _, err = run(capsys, "convert", str(series.folder), "--out", str(out / "3_T1.nrrd"))
    assert code == 2 and "belongs to" in err  # --out FILE alike
    code, _, err = run(
        capsys, "convert", str(series.folder), "--out", f"{out}/", "--format", "nrrd", "--no-sidecar"
    )
    assert code == 0 and (out / "3_T1.nrrd").exists() and sidecar.read_text() == '{"kept": true}\n', err
