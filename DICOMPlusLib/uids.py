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
#: Every transfer syntax of PS3.6 Table A-1 (uncompressed, deflated, compressed, video, the
#: retired ones; pynetdicom adds JPEG XL's to pydicom's dictionary): what a storage SCP accepts.
#: Written out rather than read from that dictionary, whose import (pydicom, numpy, every pixel
#: decoder it finds, pynetdicom: ~0.3-0.4 s) a listener's start paid for this table alone;
#: Testing/test_uids.py compares the two.
TRANSFER_SYNTAXES = frozenset({
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    "1.2.840.10008.1.2.1.98",  # Encapsulated Uncompressed Explicit VR Little Endian
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    "1.2.840.10008.1.2.4.52",  # JPEG Extended (Process 3 and 5)
    "1.2.840.10008.1.2.4.53",  # JPEG Spectral Selection, Non-Hierarchical (Process 6 and 8)
    "1.2.840.10008.1.2.4.54",  # JPEG Spectral Selection, Non-Hierarchical (Process 7 and 9)
    "1.2.840.10008.1.2.4.55",  # JPEG Full Progression, Non-Hierarchical (Process 10 and 12)
    "1.2.840.10008.1.2.4.56",  # JPEG Full Progression, Non-Hierarchical (Process 11 and 13)
    JPEGLossless,
    "1.2.840.10008.1.2.4.58",  # JPEG Lossless, Non-Hierarchical (Process 15)
    "1.2.840.10008.1.2.4.59",  # JPEG Extended, Hierarchical (Process 16 and 18)
    "1.2.840.10008.1.2.4.60",  # JPEG Extended, Hierarchical (Process 17 and 19)
    "1.2.840.10008.1.2.4.61",  # JPEG Spectral Selection, Hierarchical (Process 20 and 22)
    "1.2.840.10008.1.2.4.62",  # JPEG Spectral Selection, Hierarchical (Process 21 and 23)
    "1.2.840.10008.1.2.4.63",  # JPEG Full Progression, Hierarchical (Process 24 and 26)
    "1.2.840.10008.1.2.4.64",  # JPEG Full Progression, Hierarchical (Process 25 and 27)
    "1.2.840.10008.1.2.4.65",  # JPEG Lossless, Hierarchical (Process 28)
    "1.2.840.10008.1.2.4.66",  # JPEG Lossless, Hierarchical (Process 29)
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)
    "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 Multi-component Image Compression
    "1.2.840.10008.1.2.4.94",  # JPIP Referenced
    "1.2.840.10008.1.2.4.95",  # JPIP Referenced Deflate
    "1.2.840.10008.1.2.4.100",  # MPEG2 Main Profile / Main Level
    "1.2.840.10008.1.2.4.100.1",  # Fragmentable MPEG2 Main Profile / Main Level
    "1.2.840.10008.1.2.4.101",  # MPEG2 Main Profile / High Level
    "1.2.840.10008.1.2.4.101.1",  # Fragmentable MPEG2 Main Profile / High Level
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 High Profile / Level 4.1
    "1.2.840.10008.1.2.4.102.1",  # Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.1
    "1.2.840.10008.1.2.4.103",  # MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1
    "1.2.840.10008.1.2.4.103.1",  # Fragmentable MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1
    "1.2.840.10008.1.2.4.104",  # MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video
    "1.2.840.10008.1.2.4.104.1",  # Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video
    "1.2.840.10008.1.2.4.105",  # MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video
    "1.2.840.10008.1.2.4.105.1",  # Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video
    "1.2.840.10008.1.2.4.106",  # MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2
    "1.2.840.10008.1.2.4.106.1",  # Fragmentable MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main Profile / Level 5.1
    "1.2.840.10008.1.2.4.108",  # HEVC/H.265 Main 10 Profile / Level 5.1
    "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
    "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG Recompression
    "1.2.840.10008.1.2.4.112",  # JPEG XL
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    HTJ2K,
    "1.2.840.10008.1.2.4.204",  # JPIP HTJ2K Referenced
    "1.2.840.10008.1.2.4.205",  # JPIP HTJ2K Referenced Deflate
    RLELossless,
    "1.2.840.10008.1.2.6.1",  # RFC 2557 MIME encapsulation
    "1.2.840.10008.1.2.6.2",  # XML Encoding
    "1.2.840.10008.1.2.7.1",  # SMPTE ST 2110-20 Uncompressed Progressive Active Video
    "1.2.840.10008.1.2.7.2",  # SMPTE ST 2110-20 Uncompressed Interlaced Active Video
    "1.2.840.10008.1.2.7.3",  # SMPTE ST 2110-30 PCM Digital Audio
    "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression
    "1.2.840.10008.1.20",  # Papyrus 3 Implicit VR Little Endian
})  # fmt: skip

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
#: The storage SOP classes of PS3.4 B.5 outside :data:`STORAGE_ROOT` (a storage SCP accepts
#: these, and any class under the root); Testing/test_uids.py compares them with pydicom's
#: dictionary and pynetdicom's storage contexts.
STORAGE_OUTSIDE_ROOT = frozenset({
    "1.2.840.10008.5.1.4.34.1",  # RT Beams Delivery Instruction Storage - Trial
    "1.2.840.10008.5.1.4.34.7",  # RT Beams Delivery Instruction Storage
    "1.2.840.10008.5.1.4.34.10",  # RT Brachy Application Setup Delivery Instruction Storage
    "1.2.840.10008.5.1.4.38.1",  # Hanging Protocol Storage
    "1.2.840.10008.5.1.4.39.1",  # Color Palette Storage
    "1.2.840.10008.5.1.4.43.1",  # Generic Implant Template Storage
    "1.2.840.10008.5.1.4.44.1",  # Implant Assembly Template Storage
    "1.2.840.10008.5.1.4.45.1",  # Implant Template Group Storage
})  # fmt: skip

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
