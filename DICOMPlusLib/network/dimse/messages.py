"""DIMSE command sets (PS3.7 6.3, 9.3, Annex E) and status codes, for the direct data path.

A command set is group 0000 encoded in Implicit VR Little Endian (PS3.7 6.3.1), whatever the
transfer syntax of the presentation context. Only the elements the C-ECHO, C-STORE and
Query/Retrieve (C-FIND, C-GET, C-MOVE, C-CANCEL) services use are known by name here; anything else
in a received command is kept as raw bytes.
"""

from __future__ import annotations

import struct

from DICOMPlusLib import uids
from DICOMPlusLib.dataclasses_lite import dataclass, field
from DICOMPlusLib.errors import CommandError
from DICOMPlusLib.network.dimse.status import Status

# Query/Retrieve information models (PS3.4 C.6.1, C.6.2)
PATIENT_ROOT_FIND = uids.PatientRootQueryRetrieveInformationModelFind
PATIENT_ROOT_MOVE = uids.PatientRootQueryRetrieveInformationModelMove
PATIENT_ROOT_GET = uids.PatientRootQueryRetrieveInformationModelGet
STUDY_ROOT_FIND = uids.StudyRootQueryRetrieveInformationModelFind
STUDY_ROOT_MOVE = uids.StudyRootQueryRetrieveInformationModelMove
STUDY_ROOT_GET = uids.StudyRootQueryRetrieveInformationModelGet

# Command Field values (PS3.7 E.1-1)
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_GET_RQ = 0x0010
C_GET_RSP = 0x8010
C_FIND_RQ = 0x0020
C_FIND_RSP = 0x8020
C_MOVE_RQ = 0x0021
C_MOVE_RSP = 0x8021
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
C_CANCEL_RQ = 0x0FFF
NO_DATA_SET = 0x0101  # CommandDataSetType "no data set present" (any other value: present)

# Group 0000 tags (PS3.7 E.1-1, E.2-1)
AFFECTED_SOP_CLASS_UID = 0x00000002
COMMAND_FIELD = 0x00000100
MESSAGE_ID = 0x00000110
MESSAGE_ID_BEING_RESPONDED_TO = 0x00000120
MOVE_DESTINATION = 0x00000600
PRIORITY = 0x00000700
COMMAND_DATA_SET_TYPE = 0x00000800
STATUS = 0x00000900
OFFENDING_ELEMENT = 0x00000901
ERROR_COMMENT = 0x00000902
AFFECTED_SOP_INSTANCE_UID = 0x00001000
MOVE_ORIGINATOR_AET = 0x00001030
NUMBER_OF_REMAINING_SUBOPERATIONS = 0x00001020
NUMBER_OF_COMPLETED_SUBOPERATIONS = 0x00001021
NUMBER_OF_FAILED_SUBOPERATIONS = 0x00001022
NUMBER_OF_WARNING_SUBOPERATIONS = 0x00001023
MOVE_ORIGINATOR_MESSAGE_ID = 0x00001031

_US = {COMMAND_FIELD, MESSAGE_ID, MESSAGE_ID_BEING_RESPONDED_TO, PRIORITY, COMMAND_DATA_SET_TYPE,
       STATUS, MOVE_ORIGINATOR_MESSAGE_ID, NUMBER_OF_REMAINING_SUBOPERATIONS,
       NUMBER_OF_COMPLETED_SUBOPERATIONS, NUMBER_OF_FAILED_SUBOPERATIONS,
       NUMBER_OF_WARNING_SUBOPERATIONS}  # fmt: skip
_TEXT = {AFFECTED_SOP_CLASS_UID, AFFECTED_SOP_INSTANCE_UID, MOVE_ORIGINATOR_AET, ERROR_COMMENT,
         MOVE_DESTINATION}  # fmt: skip


def _text_value(value: str) -> bytes:
    data = value.encode("ascii", "replace")
    return data + b"\0" if len(data) % 2 else data


def _text_value_padded_space(value: str) -> bytes:
    data = value.encode("ascii", "replace")
    return data + b" " if len(data) % 2 else data


def encode_command(elements: dict[int, int | str]) -> bytes:
    """Encode a command set (Implicit VR LE) with its (0000,0000) group length first."""
    body = bytearray()
    for tag in sorted(elements):
        value = elements[tag]
        if tag in _US:
            data = struct.pack("<H", int(value))
        elif tag in (AFFECTED_SOP_CLASS_UID, AFFECTED_SOP_INSTANCE_UID):
            data = _text_value(str(value))
        else:  # AE, LO: space padded
            data = _text_value_padded_space(str(value))
        body += struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(data)) + data
    return struct.pack("<HHII", 0, 0, 4, len(body)) + bytes(body)


# eq=False: never compared; each generated method is compiled as the module is imported.
@dataclass(eq=False)
class Command:
    """A decoded command set: known elements by tag, as int (US/UL) or str (UI/AE/LO)."""

    elements: dict[int, int | str] = field(default_factory=dict)

    def get(self, tag: int, default=None):
        return self.elements.get(tag, default)

    @property
    def field(self) -> int:
        return int(self.elements.get(COMMAND_FIELD, -1))

    @property
    def has_data_set(self) -> bool:
        return int(self.elements.get(COMMAND_DATA_SET_TYPE, NO_DATA_SET)) != NO_DATA_SET

    @property
    def message_id(self) -> int:
        return int(self.elements.get(MESSAGE_ID, 0))


#: The longest command set taken from a peer: a C-STORE-RQ is about 200 bytes and the longest
#: command of the services here (an N-GET's attribute list aside, which we do not serve) stays
#: well under 1 KiB. Fragments past this are a peer that never sends the last one, whose bytes
#: would otherwise be held in memory until the association times out (PS3.8 sets no limit).
MAX_COMMAND_SET = 64 * 1024


def add_command_fragment(buf: bytearray, data: bytes | memoryview) -> None:
    """Append a command fragment to ``buf``; CommandError when the command set grows past
    :data:`MAX_COMMAND_SET`."""
    if len(buf) + len(data) > MAX_COMMAND_SET:
        raise CommandError(
            f"a command set longer than {MAX_COMMAND_SET} bytes (its last fragment never came)"
        )
    buf += data


def decode_command(data: bytes | bytearray | memoryview) -> Command:
    """Decode an Implicit VR LE group 0000 command set."""
    data = memoryview(data)
    out: dict[int, int | str] = {}
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 8:
            raise CommandError("command set ends inside an element header")
        group, element, length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        if group != 0:
            raise CommandError(f"element ({group:04X},{element:04X}) in a command set")
        if length > end - pos:
            raise CommandError("command element runs past the end of the command set")
        value = data[pos : pos + length]
        pos += length
        tag = element
        if tag in _US:
            if length != 2:
                raise CommandError(f"(0000,{element:04X}) should be 2 bytes, is {length}")
            out[tag] = struct.unpack("<H", value)[0]
        elif tag == 0x0000:
            continue
        elif tag in _TEXT:
            out[tag] = bytes(value).decode("ascii", "replace").rstrip("\0 ")
        elif length == 4:
            out[tag] = struct.unpack("<I", value)[0]
        else:
            out[tag] = bytes(value).decode("ascii", "replace").rstrip("\0 ")
    if COMMAND_FIELD not in out:
        raise CommandError("command set without (0000,0100) Command Field")
    return Command(out)


def store_request(
    message_id: int,
    sop_class: str,
    sop_instance: str,
    *,
    priority: int = 0,
    move_originator_aet: str = "",
    move_originator_id: int | None = None,
) -> bytes:
    """C-STORE-RQ (PS3.7 9.3.1.1)."""
    elements: dict[int, int | str] = {
        AFFECTED_SOP_CLASS_UID: sop_class,
        COMMAND_FIELD: C_STORE_RQ,
        MESSAGE_ID: message_id,
        PRIORITY: priority,
        COMMAND_DATA_SET_TYPE: 0x0000,
        AFFECTED_SOP_INSTANCE_UID: sop_instance,
    }
    if move_originator_aet:
        elements[MOVE_ORIGINATOR_AET] = move_originator_aet
    if move_originator_id is not None:
        elements[MOVE_ORIGINATOR_MESSAGE_ID] = move_originator_id
    return encode_command(elements)


def store_response(request: Command, status: int, comment: str = "") -> bytes:
    """C-STORE-RSP (PS3.7 9.3.1.2)."""
    elements: dict[int, int | str] = {
        AFFECTED_SOP_CLASS_UID: str(request.get(AFFECTED_SOP_CLASS_UID, "")),
        COMMAND_FIELD: C_STORE_RSP,
        MESSAGE_ID_BEING_RESPONDED_TO: request.message_id,
        COMMAND_DATA_SET_TYPE: NO_DATA_SET,
        STATUS: status,
        AFFECTED_SOP_INSTANCE_UID: str(request.get(AFFECTED_SOP_INSTANCE_UID, "")),
    }
    if comment and status != Status.SUCCESS:
        elements[ERROR_COMMENT] = comment[:64]
    return encode_command(elements)


def query_request(
    field: int, message_id: int, sop_class: str, *, priority: int = 0, move_destination: str = ""
) -> bytes:
    """C-FIND-RQ, C-GET-RQ or C-MOVE-RQ (PS3.7 9.3.2.1, 9.3.3.1, 9.3.4.1); an identifier (a data
    set) always follows."""
    if field not in (C_FIND_RQ, C_GET_RQ, C_MOVE_RQ):
        raise ValueError(f"not a query/retrieve request: 0x{field:04X}")
    elements: dict[int, int | str] = {
        AFFECTED_SOP_CLASS_UID: sop_class,
        COMMAND_FIELD: field,
        MESSAGE_ID: message_id,
        PRIORITY: priority,
        COMMAND_DATA_SET_TYPE: 0x0000,
    }
    if field == C_MOVE_RQ:
        if not move_destination:
            raise ValueError("C-MOVE-RQ needs a move destination")
        elements[MOVE_DESTINATION] = move_destination
    return encode_command(elements)


def cancel_request(message_id_being_responded_to: int) -> bytes:
    """C-CANCEL-RQ (PS3.7 9.3.2.3): asks the SCP to stop the operation with that Message ID."""
    return encode_command(
        {
            COMMAND_FIELD: C_CANCEL_RQ,
            MESSAGE_ID_BEING_RESPONDED_TO: message_id_being_responded_to,
            COMMAND_DATA_SET_TYPE: NO_DATA_SET,
        }
    )


def echo_request(message_id: int) -> bytes:
    """C-ECHO-RQ (PS3.7 9.3.5.1)."""
    return encode_command(
        {
            AFFECTED_SOP_CLASS_UID: uids.Verification,
            COMMAND_FIELD: C_ECHO_RQ,
            MESSAGE_ID: message_id,
            COMMAND_DATA_SET_TYPE: NO_DATA_SET,
        }
    )


def echo_response(request: Command, status: int = Status.SUCCESS) -> bytes:
    """C-ECHO-RSP (PS3.7 9.3.5.2)."""
    return encode_command(
        {
            AFFECTED_SOP_CLASS_UID: str(request.get(AFFECTED_SOP_CLASS_UID, uids.Verification)),
            COMMAND_FIELD: C_ECHO_RSP,
            MESSAGE_ID_BEING_RESPONDED_TO: request.message_id,
            COMMAND_DATA_SET_TYPE: NO_DATA_SET,
            STATUS: status,
        }
    )


def generic_response(request: Command, status: int) -> bytes:
    """A response to a request this node does not perform (status e.g. 0x0211)."""
    return encode_command(
        {
            AFFECTED_SOP_CLASS_UID: str(request.get(AFFECTED_SOP_CLASS_UID, "")),
            COMMAND_FIELD: (request.field | 0x8000) & 0xFFFF,
            MESSAGE_ID_BEING_RESPONDED_TO: request.message_id,
            COMMAND_DATA_SET_TYPE: NO_DATA_SET,
            STATUS: status,
        }
    )
