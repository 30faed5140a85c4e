"""DICOMPlusLib.uids keeps the library's UIDs as plain strings (no pydicom import at start-up):
each must equal the pydicom (or pynetdicom) constant of the same name, and the library must not
spell a UID that is there as a literal elsewhere."""

from __future__ import annotations

import re

import pydicom.uid
import pynetdicom.sop_class

from dicomplus_testing.util import REPO_ROOT
from DICOMPlusLib import uids

#: Named here, not (yet) in the pydicom this suite runs with: checked against the Standard's value.
NEWER_THAN_PYDICOM = {"LabelMapSegmentationStorage": "1.2.840.10008.5.1.4.1.1.66.7"}


def _constants() -> dict[str, str]:
    return {name: value for name, value in vars(uids).items() if name[0].isupper() and isinstance(value, str)}


def test_every_uid_equals_pydicoms_constant_of_the_same_name():
    constants = _constants()
    assert len(constants) > 30
    for name, value in constants.items():
        if name == "STORAGE_ROOT":
            assert pydicom.uid.CTImageStorage.startswith(value)
            continue
        expected = getattr(pydicom.uid, name, None) or getattr(pynetdicom.sop_class, name, None)
        expected = expected or NEWER_THAN_PYDICOM.get(name)
        assert expected == value, f"uids.{name} = {value!r}, pydicom/pynetdicom say {expected!r}"


def test_no_named_uid_is_spelled_out_elsewhere_in_the_library():
    named = set(_constants().values())
    literal = re.compile(r"""["'](1\.2\.840\.10008\.[0-9.]+)["']""")
    found = []
    for path in (REPO_ROOT / "DICOMPlusLib").rglob("*.py"):
        if path.name == "uids.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found += [
                f"{path.relative_to(REPO_ROOT)}:{number}: {m}" for m in literal.findall(line) if m in named
            ]
    assert not found, "use DICOMPlusLib.uids:\n" + "\n".join(found)


def test_valid_uid_text_takes_1_to_64_of_the_characters_33_to_126():
    """Every character alone and inside a UID, against the rule as written (PS3.5 is stricter:
    this only keeps what we write into a file meta or a command printable and bounded)."""
    for code in range(0x3000):  # ASCII, Latin-1, and beyond (non-ASCII digits, spaces)
        c = chr(code)
        expected = 32 < code < 127
        assert uids.valid_uid_text(c) is expected, hex(code)
        assert uids.valid_uid_text(f"1.2.{c}.3") is expected, hex(code)
    assert uids.valid_uid_text("1" * 64) and not uids.valid_uid_text("1" * 65)
    assert not uids.valid_uid_text("")


def test_the_tables_of_transfer_syntaxes_and_storage_classes_are_pydicoms():
    """``TRANSFER_SYNTAXES`` and ``STORAGE_OUTSIDE_ROOT`` (a storage SCP's negotiation, without
    importing pydicom) list what pydicom's UID dictionary and pynetdicom's storage contexts do: a
    pydicom that knows a new one fails here (add it)."""
    from pydicom._uid_dict import UID_dictionary
    from pynetdicom.presentation import AllStoragePresentationContexts

    syntaxes = {uid for uid, entry in UID_dictionary.items() if entry[1] == "Transfer Syntax"}
    assert uids.TRANSFER_SYNTAXES == syntaxes
    storage = {
        uid
        for uid, (name, kind, *_) in UID_dictionary.items()
        if kind == "SOP Class" and "Storage" in name and "Commitment" not in name
        and not uid.startswith(("1.2.840.10008.1.3.", "1.2.840.10008.5.1.1."))  # DICOMDIR, print
    } | {str(cx.abstract_syntax) for cx in AllStoragePresentationContexts}  # fmt: skip
    assert uids.STORAGE_OUTSIDE_ROOT == {uid for uid in storage if not uid.startswith(uids.STORAGE_ROOT)}
    assert uids.CTImageStorage in storage and uids.ImplicitVRLittleEndian in uids.TRANSFER_SYNTAXES
