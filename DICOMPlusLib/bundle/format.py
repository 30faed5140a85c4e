"""The Slicer Data Bundle format: where a zipped scene lives inside a DICOM file.

Stock Slicer (DICOMLib/DICOMExportScene.py and DICOMPlugins/DICOMSlicerDataBundlePlugin.py)
writes a Secondary Capture whose private block in group ``CADB`` holds:

* ``(CADB,0010)`` LO private creator ``"3D Slicer <zip size>"`` (the size is in the creator
  string because the writer's dump2dcm step lost it elsewhere);
* ``(CADB,1008)`` LO the zip size again;
* ``(CADB,1010)`` OB the zip file (an MRB), padded to even length.

Group CADB sorts after Pixel Data (7FE0), so the zip is the file's last element; stock Slicer's
reader relies on it: it takes the size from the creator string and reads that many bytes from
the end of the file (one byte earlier when the size is odd, for the padding).

DICOMPlus writes exactly that (so stock Slicer opens our bundles), and adds its own block, with a
stable creator, in an odd group before Pixel Data (so the zip stays last):

* ``(0CAD,0010)`` LO ``"DICOMPlus Data Bundle"``
* ``(0CAD,1001)`` UL the zip size
* ``(0CAD,1002)`` LO the SHA-256 of the zip, 64 lowercase hex digits

Our reader reads the OB element itself (its offset and length from the file's structure), checks
the sizes agree, and verifies the hash when there is one; it also reads stock bundles.
"""

from __future__ import annotations

BUNDLE_GROUP = 0xCADB
STOCK_CREATOR_PREFIX = "3D Slicer"
ZIP_SIZE_TAG = 0xCADB1008
ZIP_DATA_TAG = 0xCADB1010
STOCK_BLOCK = 0x10  # (CADB,0010) reserves (CADB,10xx)

OUR_GROUP = 0x0CAD
OUR_CREATOR = "DICOMPlus Data Bundle"
OUR_SIZE_ELEMENT = 0x01  # (0CAD,xx01) UL
OUR_SHA256_ELEMENT = 0x02  # (0CAD,xx02) LO

#: The largest OB value a defined-length element can hold (PS3.5 7.1.1: 0xFFFFFFFF is undefined).
MAX_OB_LENGTH = 0xFFFFFFFE
#: Default limit when reading (configurable per call): 2 GiB.
DEFAULT_MAX_BUNDLE_BYTES = 2 * 1024**3

DEFAULT_SERIES_DESCRIPTION = "Slicer Data Bundle"


def stock_creator(zip_size: int) -> str:
    return f"{STOCK_CREATOR_PREFIX} {zip_size}"


def parse_stock_creator(creator: str) -> int | None:
    """The zip size in a stock creator string, parsed as stock Slicer does
    (``int(creator.split(" ")[2])``), or None."""
    parts = str(creator).strip().split(" ")
    if len(parts) < 3 or " ".join(parts[:2]) != STOCK_CREATOR_PREFIX:
        return None
    try:
        value = int(parts[2])
    except ValueError:
        return None
    return value if value >= 0 else None
