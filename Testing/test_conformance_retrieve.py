"""Network conformance of what the sample PACS (``dicomplus serve``) sends on retrieve.

- C-GET sends every file of the shared data (../shared/data/series and series2) byte for byte:
  the data set received is the data set stored, group lengths and all. Checked with DCMTK
  getscu in bit-preserving mode (``+B``: it writes what arrives) for files stored in Explicit VR
  Little Endian, and with the DICOMPlus C-GET SCU for the others (getscu 3.6.7 cannot propose
  them first).
- A requester that accepts only uncompressed syntaxes (getscu's default) still gets the shared
  JPEG 2000, JPEG-LS, RLE and JPEG Lossless series: decoded, pixel-identical to the original,
  and the responses say so in their Error Comment.

Folders that hold the same SOP Instances (the four compressed copies of one MR series) are
served from separate databases, so every file is sent once.
"""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomplus_testing.peers import LOOPBACK
from dicomplus_testing.util import data_set_bytes
from DICOMPlusLib.database import Database
from DICOMPlusLib.network.nodes import DimseEndpoint, RemoteNode
from DICOMPlusLib.network.pacs.qrscp import Destination, QRConfig, QueryRetrieveSCP
from DICOMPlusLib.network.retrieve import retrieve

PACS_AET = "DICOMPLUSPACS"
#: DCMTK 3.6.7's getscu proposes, for each storage class, one context with Explicit VR Little
#: Endian first (then Big Endian, Implicit): a file stored in another syntax is retrieved with the
#: DICOMPlus C-GET SCU, which proposes one context per (class, syntax) and stores what arrives;
#: so is a file of a private SOP class.
GETSCU_SYNTAX = "1.2.840.10008.1.2.1"
COMPRESSED_FOLDERS = ("dev_mr_jpeg2000", "dev_mr_jpegls", "dev_mr_rle", "dev_mr_jpeg_lossless")


def instances(folders: list[Path]) -> dict[Path, pydicom.Dataset]:
    """Every storage instance under ``folders`` (media directories and non-DICOM files left out)."""
    found = {}
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except pydicom.errors.InvalidDicomError:
                continue
            if "SOPInstanceUID" in ds and "SOPClassUID" in ds and "TransferSyntaxUID" in ds.file_meta:
                found[path] = ds
    return found


def batches(folders: list[Path]) -> list[list[Path]]:
    """The folders in as few groups as possible such that no SOP Instance UID is in two
    folders of one group."""
    groups: list[tuple[list[Path], set[str]]] = []
    for folder in folders:
        uids = {str(ds.SOPInstanceUID) for ds in instances([folder]).values()}
        if not uids:
            continue
        for members, seen in groups:
            if not uids & seen:
                members.append(folder)
                seen |= uids
                break
        else:
            groups.append(([folder], set(uids)))
    return [members for members, _ in groups]


@pytest.fixture(scope="module")
def shared_folders(shared_series) -> list[Path]:
    roots = [shared_series, shared_series.parent / "series2"]
    return sorted(
        p for root in roots if root.is_dir() for p in root.iterdir() if p.is_dir() and p.name != "licenses"
    )


def getscu(dcmtk, port: int, out: Path, keys: dict[str, str], *options: str):
    out.mkdir(parents=True)
    args = ["-S", "-aec", PACS_AET, "-od", out, *options]
    for keyword, value in keys.items():
        args += ["-k", f"{keyword}={value}"]
    return dcmtk.run("getscu", "-d", *args, LOOPBACK, port, timeout=300)


def test_get_is_byte_identical_for_every_shared_file(dcmtk, shared_folders, tmp_path):
    checked = 0
    for n, group in enumerate(batches(shared_folders)):
        expected = instances(group)
        db = Database(tmp_path / f"db{n}")
        try:
            db.import_paths(group)
            with QueryRetrieveSCP(db, QRConfig(port=0, host=LOOPBACK)) as pacs:
                series: dict[tuple[str, str], list[Path]] = {}
                for path, ds in expected.items():
                    private = ds.SOPClassUID.is_private  # getscu proposes only the standard classes
                    key = (
                        str(ds.SeriesInstanceUID),
                        "private" if private else str(ds.file_meta.TransferSyntaxUID),
                    )
                    series.setdefault(key, []).append(path)
                node = RemoteNode("pacs", DimseEndpoint(PACS_AET, LOOPBACK, pacs.port))
                for i, ((series_uid, syntax), paths) in enumerate(sorted(series.items())):
                    out = tmp_path / f"get{n}_{i}"
                    if syntax == GETSCU_SYNTAX:
                        keys = {"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": series_uid}
                        getscu(dcmtk, pacs.port, out, keys, "+B")
                        files = list(out.iterdir())
                    else:
                        study = str(expected[paths[0]].StudyInstanceUID)
                        with Database(out / "db") as into:
                            report = retrieve(
                                node, into, study_uid=study, series_uids=[series_uid], method="get"
                            )
                            assert report.complete, report.to_dict()
                            files = [
                                Path(r.path)
                                for r in into.search("instance", {"SeriesInstanceUID": series_uid})
                            ]
                    received = {
                        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files
                    }
                    for path in paths:
                        sop = str(expected[path].SOPInstanceUID)
                        assert sop in received, f"{path} was not retrieved"
                        assert data_set_bytes(received[sop]) == data_set_bytes(path), (
                            f"{path} changed in transit"
                        )
                        checked += 1
        finally:
            db.close()
    assert checked == len(instances(shared_folders))


@pytest.mark.parametrize("folder", COMPRESSED_FOLDERS)
def test_get_without_compressed_syntaxes_decompresses_losslessly(dcmtk, shared_series, folder, tmp_path):
    originals = instances([shared_series / folder])
    db = Database(tmp_path / "db")
    try:
        db.import_paths([shared_series / folder])
        with QueryRetrieveSCP(db, QRConfig(port=0, host=LOOPBACK)) as pacs:
            study = next(iter(originals.values())).StudyInstanceUID
            result = getscu(
                dcmtk, pacs.port, tmp_path / "out", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}
            )
    finally:
        db.close()
    assert "compressed instances sent decompressed" in result.stdout + result.stderr
    received = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, (tmp_path / "out").iterdir())}
    assert len(received) == len(originals)
    for path, header in originals.items():
        got = received[str(header.SOPInstanceUID)]
        assert not got.file_meta.TransferSyntaxUID.is_compressed
        assert np.array_equal(got.pixel_array, pydicom.dcmread(path).pixel_array), path


def test_move_to_a_known_but_unreachable_destination_says_so(tmp_path):
    """0xA702 (sub-operations failed) with the reason, not 0xA801 "destination unknown": the
    destination is configured, it just does not answer (as dcmqrscp answers)."""
    from pynetdicom import AE

    from dicomplus_testing.util import free_port
    from DICOMPlusLib.network.pacs.sample import make_sample_data, sample_files

    db = Database(tmp_path / "db")
    make_sample_data(db)
    study = str(pydicom.dcmread(BytesIO(sample_files()[0])).StudyInstanceUID)
    nobody = Destination("GONE", LOOPBACK, free_port())  # nothing listens there
    try:
        with QueryRetrieveSCP(db, QRConfig(port=0, host=LOOPBACK, destinations=(nobody,))) as pacs:
            ae = AE(ae_title="CHECKER")
            ae.add_requested_context("1.2.840.10008.5.1.4.1.2.2.2")  # Study Root C-MOVE
            assoc = ae.associate(LOOPBACK, pacs.port, ae_title=PACS_AET)
            assert assoc.is_established
            query = pydicom.Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = study
            final = [s for s, _ in assoc.send_c_move(query, "GONE", "1.2.840.10008.5.1.4.1.2.2.2") if s][-1]
            assoc.release()
            # and the unknown destination still answers 0xA801
            assoc = ae.associate(LOOPBACK, pacs.port, ae_title=PACS_AET)
            unknown = [s for s, _ in assoc.send_c_move(query, "NOBODY", "1.2.840.10008.5.1.4.1.2.2.2") if s][
                -1
            ]
            assoc.release()
    finally:
        db.close()
    assert final.Status == 0xA702, final
    assert "GONE unreachable" in final.ErrorComment and "refused" in final.ErrorComment.lower()
    assert final.NumberOfFailedSuboperations > 0 and final.NumberOfCompletedSuboperations == 0
    assert unknown.Status == 0xA801


@pytest.mark.parametrize("folder", ["dev_mr_4d_fmri", "dev_mr_jpeg2000"])
def test_move_sends_the_stored_bytes(dcmtk, shared_series, storescp_factory, folder, tmp_path):
    """C-MOVE sub-operations to DCMTK storescp (bit-preserving, every syntax accepted) carry the
    stored data sets byte for byte: group lengths (the fMRI files have them) and compressed
    pixel data as stored."""
    storescp = storescp_factory(extra_args=["+B"])
    originals = instances([shared_series / folder])
    db = Database(tmp_path / "db")
    try:
        db.import_paths([shared_series / folder])
        config = QRConfig(
            port=0, host=LOOPBACK, destinations=(Destination(storescp.aet, LOOPBACK, storescp.port),)
        )
        with QueryRetrieveSCP(db, config) as pacs:
            study = str(next(iter(originals.values())).StudyInstanceUID)
            dcmtk.run("movescu", "-S", "-aec", PACS_AET, "-aem", storescp.aet, "-k", "QueryRetrieveLevel=STUDY",
                      "-k", f"StudyInstanceUID={study}", LOOPBACK, pacs.port)  # fmt: skip
            received = storescp.wait_for(len(originals))
    finally:
        db.close()
    by_uid = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in received}
    for path, header in originals.items():
        assert data_set_bytes(by_uid[str(header.SOPInstanceUID)]) == data_set_bytes(path), path


def test_lossy_instances_are_not_decompressed(dcmtk, shared_series, tmp_path):
    """A JPEG Baseline (lossy) instance is not decoded for a requester that accepts only
    uncompressed syntaxes: the sub-operation fails (the receiver could not tell from the transfer
    syntax that the pixels went through lossy compression)."""
    folder = shared_series.parent / "series2" / "dev_color_ybr_jpeg"
    originals = instances([folder])
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in originals.values()} == {"1.2.840.10008.1.2.4.50"}
    db = Database(tmp_path / "db")
    try:
        db.import_paths([folder])
        with QueryRetrieveSCP(db, QRConfig(port=0, host=LOOPBACK)) as pacs:
            study = str(next(iter(originals.values())).StudyInstanceUID)
            keys = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}
            out = tmp_path / "out"
            result = getscu(dcmtk, pacs.port, out, keys)
    finally:
        db.close()
    assert list(out.iterdir()) == []
    final = (result.stdout + result.stderr).rsplit("C-GET Response", 1)[-1]
    assert "OutOfResourcesSubOperations" in final, final  # 0xA702: every sub-operation failed
    assert re.search(r"Number of Failed Suboperations\s*: 1", final), final


def test_get_sends_an_instance_stored_without_file_meta(dcmtk, tmp_path):
    """A bare data set (no preamble or File Meta Information, as some archives write) is sent too."""
    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "2.25.901", "2.25.902", "2.25.903"
    ds.PatientName, ds.PatientID, ds.Modality = "Bare^Data^Set", "BARE", "OT"
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "bare", implicit_vr=True, little_endian=True)
    assert (tmp_path / "in" / "bare").read_bytes()[128:132] != b"DICM"
    db = Database(tmp_path / "db")
    try:
        db.import_paths([tmp_path / "in"])
        with QueryRetrieveSCP(db, QRConfig(port=0, host=LOOPBACK)) as pacs:
            out = tmp_path / "out"
            getscu(dcmtk, pacs.port, out, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "2.25.902"})
    finally:
        db.close()
    (received,) = [pydicom.dcmread(p) for p in out.iterdir()]
    assert received.SOPInstanceUID == "2.25.901" and received.PatientName == "Bare^Data^Set"
