"""DIMSE status codes: the one table (PS3.7 Annex C, PS3.4 B.2.3, C.4.1.1.4, C.4.2.1.5, C.4.3.1.4).

:class:`Status` names every code DICOMPlus sends or tells apart; :func:`category` says what a code
means for the operation (PS3.7 C.1-C.6: success, warning, failure, pending, cancel);
:func:`describe` gives a short English meaning for reports. A code's meaning can depend on the
service (0xB000 is "coercion of data elements" for C-STORE, "sub-operations complete with failures"
for C-GET and C-MOVE): pass ``service`` where it matters.
"""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    SUCCESS = 0x0000
    # pending and cancel (Query/Retrieve)
    PENDING = 0xFF00
    PENDING_OPTIONAL_KEYS_UNSUPPORTED = 0xFF01
    CANCEL = 0xFE00
    # warnings
    WARNING = 0xB000  # C-STORE: coercion of data elements; C-GET/C-MOVE: sub-operations failed
    ELEMENTS_DISCARDED = 0xB006
    DATA_SET_DOES_NOT_MATCH_WARNING = 0xB007
    ATTRIBUTE_LIST_ERROR = 0x0107
    ATTRIBUTE_VALUE_OUT_OF_RANGE = 0x0116
    # failures
    PROCESSING_FAILURE = 0x0110
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NOT_AUTHORIZED = 0x0124
    UNRECOGNIZED_OPERATION = 0x0211
    OUT_OF_RESOURCES = 0xA700
    OUT_OF_RESOURCES_MATCHES = 0xA701
    OUT_OF_RESOURCES_SUB_OPERATIONS = 0xA702
    MOVE_DESTINATION_UNKNOWN = 0xA801
    DATA_SET_DOES_NOT_MATCH = 0xA900  # C-FIND/C-GET/C-MOVE: identifier does not match SOP class
    CANNOT_UNDERSTAND = 0xC000  # C-FIND/C-GET/C-MOVE: unable to process
    CANNOT_UNDERSTAND_DECODE = 0xC210


class Category(enum.Enum):
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    PENDING = "pending"
    CANCEL = "cancel"


_WARNINGS = frozenset(
    {
        Status.WARNING,
        Status.ELEMENTS_DISCARDED,
        Status.DATA_SET_DOES_NOT_MATCH_WARNING,
        Status.ATTRIBUTE_LIST_ERROR,
        Status.ATTRIBUTE_VALUE_OUT_OF_RANGE,
    }
)


def category(status: int | None) -> Category:
    """What ``status`` means for the operation; no status at all (no response) is a failure."""
    if status is None:
        return Category.FAILURE
    if status == Status.SUCCESS:
        return Category.SUCCESS
    if status in _WARNINGS or (status & 0xF000) == 0xB000:
        return Category.WARNING
    if status in (Status.PENDING, Status.PENDING_OPTIONAL_KEYS_UNSUPPORTED):
        return Category.PENDING
    if status == Status.CANCEL:
        return Category.CANCEL
    return Category.FAILURE


#: Meanings that differ between services: (service, code) -> text.
_BY_SERVICE: dict[tuple[str, int], str] = {
    ("storage", Status.WARNING): "warning: coercion of data elements",
    ("qr", Status.WARNING): "warning: sub-operations complete, one or more failures or warnings",
    ("qr", Status.DATA_SET_DOES_NOT_MATCH): "error: identifier does not match SOP class",
}
_TEXT: dict[int, str] = {
    Status.SUCCESS: "success",
    Status.PENDING: "pending",
    Status.PENDING_OPTIONAL_KEYS_UNSUPPORTED: "pending (optional keys not supported)",
    Status.CANCEL: "cancelled",
    Status.ELEMENTS_DISCARDED: "warning: elements discarded",
    Status.DATA_SET_DOES_NOT_MATCH_WARNING: "warning: data set does not match SOP class",
    Status.PROCESSING_FAILURE: "processing failure",
    Status.SOP_CLASS_NOT_SUPPORTED: "refused: SOP class not supported",
    Status.NOT_AUTHORIZED: "refused: not authorized",
    Status.UNRECOGNIZED_OPERATION: "unrecognized operation",
    Status.OUT_OF_RESOURCES: "refused: out of resources",
    Status.OUT_OF_RESOURCES_MATCHES: "refused: out of resources (unable to calculate the number of matches)",
    Status.OUT_OF_RESOURCES_SUB_OPERATIONS: "refused: out of resources (unable to perform sub-operations)",
    Status.MOVE_DESTINATION_UNKNOWN: "refused: move destination unknown",
}


def describe(status: int | None, service: str = "storage") -> str:
    """A short English meaning of ``status`` for reports; ``service`` is ``storage`` (C-STORE,
    C-ECHO) or ``qr`` (C-FIND, C-GET, C-MOVE)."""
    if status is None:
        return "no response"
    text = _BY_SERVICE.get((service, status)) or _TEXT.get(status)
    if text:
        return text
    if (status & 0xFF00) == Status.OUT_OF_RESOURCES:
        return "refused: out of resources"
    if (status & 0xFF00) == Status.DATA_SET_DOES_NOT_MATCH:
        return "error: data set does not match SOP class"
    if (status & 0xF000) == 0xC000:
        return f"error: unable to process (0x{status:04X})" if service == "qr" else "error: cannot understand"
    return f"status 0x{status:04X}"
