"""The UIDs the library names (PS3.6 Annex A), in one place, under pydicom's names.

Why not ``from pydicom.uid import ...`` everywhere: importing ``pydicom.uid`` imports pydicom and
numpy (about a second), and the command line's start-up (``dicomplus search``, ``--version``) and
the DIMSE stack deliberately import neither (Testing/test_cli_startup.py). So the values live here,
as plain strings, and Testing/test_uids.py checks that every one equals the pydicom (or, for the
DIMSE service classes, pynetdicom) constant of the same name. Modules that import pydicom anyway
may use its constants directly.
"""

from __future__ import annotations

# -- Transfer syntaxes (PS3.5 section 10 and Annex A) ------------------------------------------------
ImplicitVRLittleEndian = "1.2.840.10008.1.2"
ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"
DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
ExplicitVRBigEndian = "1.2.840.10008.1.2.2"  # retired, still met
JPEGBaseline8Bit = "1.2.840.10008.1.2.4.50"
JPEGExtended12Bit = "1.2.840.10008.1.2.4.51"
JPEGLossless = "1.2.840.10008.1.2.4.57"
JPEGLosslessSV1 = "1.2.840.10008.1.2.4.70"
JPEGLSLossless = "1.2.840.10008.1.2.4.80"
JPEGLSNearLossless = "1.2.840.10008.1.2.4.81"
JPEG2000Lossless = "1.2.840.10008.1.2.4.90"
JPEG2000 = "1.2.840.10008.1.2.4.91"
HTJ2KLossless = "1.2.840.10008.1.2.4.201"
HTJ2KLosslessRPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLELossless = "1.2.840.10008.1.2.5"

#: Transfer syntaxes whose pixel data is not encapsulated.
NATIVE_SYNTAXES = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian})

# -- Storage SOP classes (PS3.4 B.5) -----------------------------------------------------------------
#: Every Storage SOP Class UID starts with this.
STORAGE_ROOT = "1.2.840.10008.5.1.4.1.1."
MediaStorageDirectoryStorage = "1.2.840.10008.1.3.10"  # DICOMDIR: never an image
CTImageStorage = "1.2.840.10008.5.1.4.1.1.2"
EnhancedCTImageStorage = "1.2.840.10008.5.1.4.1.1.2.1"
LegacyConvertedEnhancedCTImageStorage = "1.2.840.10008.5.1.4.1.1.2.2"
MRImageStorage = "1.2.840.10008.5.1.4.1.1.4"
EnhancedMRImageStorage = "1.2.840.10008.5.1.4.1.1.4.1"
MRSpectroscopyStorage = "1.2.840.10008.5.1.4.1.1.4.2"
EnhancedMRColorImageStorage = "1.2.840.10008.5.1.4.1.1.4.3"
LegacyConvertedEnhancedMRImageStorage = "1.2.840.10008.5.1.4.1.1.4.4"
EnhancedXAImageStorage = "1.2.840.10008.5.1.4.1.1.12.1.1"
EnhancedXRFImageStorage = "1.2.840.10008.5.1.4.1.1.12.2.1"
LegacyConvertedEnhancedPETImageStorage = "1.2.840.10008.5.1.4.1.1.128.1"
EnhancedPETImageStorage = "1.2.840.10008.5.1.4.1.1.130"
SegmentationStorage = "1.2.840.10008.5.1.4.1.1.66.4"
LabelMapSegmentationStorage = "1.2.840.10008.5.1.4.1.1.66.7"  # 2024; newer than our pydicom
RTDoseStorage = "1.2.840.10008.5.1.4.1.1.481.2"

# -- DIMSE service classes (PS3.4 A.4, C.6), pynetdicom's names ----------------------------------------
Verification = "1.2.840.10008.1.1"
PatientRootQueryRetrieveInformationModelFind = "1.2.840.10008.5.1.4.1.2.1.1"
PatientRootQueryRetrieveInformationModelMove = "1.2.840.10008.5.1.4.1.2.1.2"
PatientRootQueryRetrieveInformationModelGet = "1.2.840.10008.5.1.4.1.2.1.3"
StudyRootQueryRetrieveInformationModelFind = "1.2.840.10008.5.1.4.1.2.2.1"
StudyRootQueryRetrieveInformationModelMove = "1.2.840.10008.5.1.4.1.2.2.2"
StudyRootQueryRetrieveInformationModelGet = "1.2.840.10008.5.1.4.1.2.2.3"


def valid_uid_text(value: str) -> bool:
    """A value we are willing to write into the file meta or send as an affected SOP instance:
    at most 64 printable characters. (Not a conformance check: ``../../x`` passes, and is
    stored under a hashed name.) Here, with the UIDs, so that the C-STORE SCU does not import
    the receiving side (storage, ingest, sqlite3) to check what it sends."""
    # characters 33-126, tested by C string methods (a send checks two UIDs a file; the generator
    # over the characters was ~45,000 steps for 500 files): ASCII, printable, and not a space
    return 0 < len(value) <= 64 and value.isascii() and value.isprintable() and " " not in value
