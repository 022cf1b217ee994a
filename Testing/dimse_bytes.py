"""DIMSE and PDU bytes for tests that talk to the listener below pynetdicom's API.

Command sets are encoded by pynetdicom's own encoder (what a pynetdicom SCU would send); PDVs and
P-DATA-TF PDUs are put together by hand (PS3.8 9.3.5), so a test can split, reorder or break them.
"""
from __future__ import annotations

import struct
from io import BytesIO

COMMAND = 0x01  # message control header bits (PS3.8 E.2)
LAST = 0x02


def store_rq_command(sop_class: str, sop_instance: str, message_id: int, priority: int = 0,
                     originator: str | None = None, originator_id: int | None = None) -> bytes:
    """A C-STORE-RQ command set as pynetdicom's own encoder writes it."""
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode

    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = sop_class
    primitive.AffectedSOPInstanceUID = sop_instance
    primitive.Priority = priority
    if originator is not None:
        primitive.MoveOriginatorApplicationEntityTitle = originator
        primitive.MoveOriginatorMessageID = originator_id
    primitive.DataSet = BytesIO(b"\x08\x00\x16\x00\x00\x00\x00\x00")
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


def pdv(context_id: int, control: int, data: bytes) -> bytes:
    """One presentation data value item: length, context ID, message control header, fragment."""
    return struct.pack(">IBB", len(data) + 2, context_id, control) + data


def p_data_tf(*items: bytes) -> bytes:
    """A P-DATA-TF PDU holding the given PDV items."""
    body = b"".join(items)
    return struct.pack(">BBI", 0x04, 0, len(body)) + body
