"""UIDs: generator (UUID-derived and organisation root), validation, hostile values, new series only."""

from __future__ import annotations

import re
import uuid
import warnings

import numpy as np
import pytest

from dicomplus_testing.synthetic import make_series
from DICOMPlusLib.database import Database
from DICOMPlusLib.errors import ExportError
from DICOMPlusLib.export.series import SeriesMetadata, export_volume, export_volume_to_study
from DICOMPlusLib.export.uids import (
    MAX_UID_LENGTH,
    UIDGenerator,
    ensure_series_is_new,
    is_valid_uid,
    validate_root,
    validate_uid,
)

# PS3.5 9.1 written out independently of the module under test.
PS35_UID = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$")

HOSTILE = [
    "",
    " 1.2.3",
    "1.2.3 ",
    "1.2.3\x00",
    "1.2..3",
    ".1.2.3",
    "1.2.3.",
    "1.02.3",
    "1.2.a",
    "../../etc/passwd",
    "1.2.3/../../x",
    "1.2.3\\4",
    "1.2.3*",
    "1.2.?",
    "1." + "2" * 63,  # 65 characters
    "１.２",  # full-width digits
]


def test_default_uids_are_uuid_derived_and_valid():
    generator = UIDGenerator()
    values = list(generator.many(500))
    assert len(set(values)) == 500
    for value in values:
        assert PS35_UID.match(value) and len(value) <= MAX_UID_LENGTH
        assert value.startswith("2.25.")
        # the suffix is the decimal form of a 128-bit UUID (PS3.5 B.2)
        assert 0 < int(value[5:]) < 2**128
        assert uuid.UUID(int=int(value[5:])).version == 4


def test_organisation_root():
    root = "1.2.826.0.1.3680043.10.999"
    generator = UIDGenerator(root)
    values = list(generator.many(200))
    assert len(set(values)) == 200
    for value in values:
        assert value.startswith(root + ".")
        assert PS35_UID.match(value) and len(value) <= MAX_UID_LENGTH
        assert len(value) - len(root) - 1 >= 30  # room for randomness


@pytest.mark.parametrize("root", ["1.2.3.", "1.02", "abc", "1.2.3" + ".1" * 20, ""])
def test_bad_roots_are_refused(root):
    with pytest.raises(ExportError):
        UIDGenerator(root)
    with pytest.raises(ExportError):
        validate_root(root)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_uids_are_rejected(value):
    assert not is_valid_uid(value)
    with pytest.raises(ExportError, match="not a valid DICOM UID"):
        validate_uid(value, "SeriesInstanceUID")


@pytest.mark.parametrize("value", ["0", "1.2.3", "2.25.0", "1.2.840.10008.5.1.4.1.1.2", "1." + "2" * 62])
def test_valid_uids_pass(value):
    assert validate_uid(value) == value


def test_non_string_uid_is_rejected():
    with pytest.raises(ExportError):
        validate_uid(1.23)


@pytest.mark.parametrize("field", ["series_instance_uid", "frame_of_reference"])
@pytest.mark.parametrize("value", ["1.2.3/../../x", "1.2.3 ", "1.2.3.", "9" * 65])
def test_hostile_uids_in_metadata_are_rejected(tmp_path, field, value):
    metadata = SeriesMetadata(modality="CT", **{field: value})
    with pytest.raises(ExportError, match="not a valid DICOM UID"):
        export_volume(np.zeros((2, 4, 4), np.int16), np.eye(4), tmp_path / "out", metadata=metadata)
    assert not any((tmp_path / "out").glob("*"))


def test_hostile_study_uid_in_reference_is_rejected(tmp_path):
    from pydicom.dataset import Dataset

    reference = Dataset()
    reference.PatientID = "X"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the value we mean to plant
        reference.StudyInstanceUID = "1.2.3/../../evil"
    with pytest.raises(ExportError, match="StudyInstanceUID"):
        export_volume(np.zeros((2, 4, 4), np.int16), np.eye(4), tmp_path / "out", reference=reference)


def test_export_refuses_an_existing_series_uid(tmp_path):
    series = make_series(tmp_path / "src", n=3)
    with Database(tmp_path / "db") as db:
        db.import_paths([series.folder])
        with pytest.raises(ExportError, match="already exists"):
            ensure_series_is_new(db, series.series_uid)
        metadata = SeriesMetadata(modality="CT", series_instance_uid=series.series_uid)
        with pytest.raises(ExportError, match="already exists"):
            export_volume_to_study(
                db, series.study_uid, series.pixels, series.ijk_to_lps, metadata, out_dir=tmp_path / "out"
            )
        # nothing was written, nothing was added
        assert not any((tmp_path / "out").glob("*"))
        assert db.info()["instances"] == 3
        # a fresh UID is accepted
        fresh = UIDGenerator()()
        ensure_series_is_new(db, fresh)


def test_export_with_organisation_root(tmp_path):
    root = "1.2.826.0.1.3680043.10.999"
    result = export_volume(
        np.arange(32, dtype=np.int16).reshape(2, 4, 4),
        np.eye(4),
        tmp_path / "out",
        metadata=SeriesMetadata(modality="CT", frame_of_reference="new"),
        uids=UIDGenerator(root),
    )
    for uid in (result.series_uid, result.frame_of_reference_uid, result.study_uid, *result.sop_uids):
        assert uid.startswith(root + ".")
