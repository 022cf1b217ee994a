"""DIMSE command sets of C-STORE, encoded and parsed directly (PS3.7 9.3.1, E.1).

Why: pynetdicom encodes and decodes every command set through a pydicom Dataset (an element
object, UID validation and a dataset writer or reader per field), ~0.1-0.3 ms per message, which
was most of the time per small instance received (_acceptor.py, _storelane.py) or sent (scu.py).
The C-STORE command sets are a fixed handful of elements: these functions write and read them
byte for byte as pynetdicom does (implicit VR little endian, elements in tag order, group length
first; Testing/test_network_failures.py compares every function with pynetdicom's encoder and
decoder) and decline (None) anything they were not written for, which then goes through pynetdicom.
"""
from __future__ import annotations

import re
import struct
from typing import Any, NamedTuple


def _element(tag: int, value: bytes) -> bytes:
    """One implicit VR little endian element of the command group (0000,eeee)."""
    return struct.pack("<HHI", 0x0000, tag, len(value)) + value


def _uid_value(uid: Any) -> bytes | None:
    text = str(uid) if uid is not None else ""
    if not text:
        return None
    value = text.encode("ascii")
    return value + b"\0" if len(value) % 2 else value


def _command_set(*elements: tuple[int, bytes]) -> bytes:
    """Group length first, then the elements (given in tag order)."""
    body = b"".join(_element(tag, value) for tag, value in elements)
    return _element(0x0000, struct.pack("<I", len(body))) + body


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def encode_store_response(sop_class: str, message_id: int, status: int, sop_instance: str) -> bytes | None:
    """The encoded command set of a plain C-STORE-RSP (no Error Comment, no Offending Element),
    or None when a value cannot be encoded that way."""
    sop_class_value, sop_instance_value = _uid_value(sop_class), _uid_value(sop_instance)
    if sop_class_value is None or sop_instance_value is None or not isinstance(message_id, int) \
            or not isinstance(status, int):
        return None
    return _command_set((0x0002, sop_class_value), (0x0100, _us(0x8001)),  # CommandField: C-STORE-RSP
                        (0x0120, _us(message_id)), (0x0800, _us(0x0101)),  # no data set
                        (0x0900, _us(status)), (0x1000, sop_instance_value))


def encode_store_request(sop_class: str, message_id: int, priority: int, sop_instance: str) -> bytes | None:
    """The encoded command set of a plain C-STORE-RQ with a data set (no Move Originator), or None
    when a value cannot be encoded that way."""
    sop_class_value, sop_instance_value = _uid_value(sop_class), _uid_value(sop_instance)
    if sop_class_value is None or sop_instance_value is None or not isinstance(message_id, int) \
            or not isinstance(priority, int):
        return None
    return _command_set((0x0002, sop_class_value), (0x0100, _us(0x0001)),  # CommandField: C-STORE-RQ
                        (0x0110, _us(message_id)), (0x0700, _us(priority)),
                        (0x0800, _us(0x0001)),  # CommandDataSetType: a data set follows (as pynetdicom)
                        (0x1000, sop_instance_value))


_UID_BYTES = re.compile(rb"[0-9]+(?:\.[0-9]+)*\0?")
_AE_BYTES = re.compile(rb"[ -\[\]-~]{1,16} ?")  # printable ASCII without backslash (one value), space padded
# (element, VR length) of a plain C-STORE-RQ command set, in the order it must appear
_STORE_RQ_LAYOUT = ((0x0000, 4), (0x0002, None), (0x0100, 2), (0x0110, 2), (0x0700, 2), (0x0800, 2), (0x1000, None))
_MOVE_ORIGINATOR_AE, _MOVE_ORIGINATOR_ID = 0x1030, 0x1031


class StoreRequest(NamedTuple):
    """The values of a plain C-STORE-RQ command set (PS3.7 9.3.1.1)."""

    sop_class: str
    message_id: int
    priority: int
    sop_instance: str
    move_originator: str | None = None     # (0000,1030): set when the store is a C-MOVE sub-operation
    move_originator_id: int | None = None  # (0000,1031)


def parse_store_request(command: bytes) -> StoreRequest | None:
    """The values of a plain C-STORE-RQ command set (implicit VR little endian, PS3.7 9.3.1.1 / E.1:
    the required elements, optionally the Move Originator pair, nothing else), or None otherwise."""
    values: list[Any] = []
    offset = 0
    originator: str | None = None
    originator_id: int | None = None
    try:
        for element, size in _STORE_RQ_LAYOUT:
            group, number, length = struct.unpack_from("<HHI", command, offset)
            offset += 8
            if group != 0 or number != element or (size is not None and length != size) \
                    or offset + length > len(command):
                return None
            value = command[offset:offset + length]
            offset += length
            if size == 2:
                values.append(struct.unpack("<H", value)[0])
            elif size == 4:
                if struct.unpack("<I", value)[0] != len(command) - 12:  # group length: what follows it
                    return None
            else:
                if not _UID_BYTES.fullmatch(value) or len(value) > 65:
                    return None
                values.append(value.rstrip(b"\0").decode("ascii"))
        while offset < len(command):  # the optional Move Originator elements, in tag order
            group, number, length = struct.unpack_from("<HHI", command, offset)
            offset += 8
            value = command[offset:offset + length]
            offset += length
            if group != 0 or offset > len(command):
                return None
            if number == _MOVE_ORIGINATOR_AE and originator is None and originator_id is None:
                if not _AE_BYTES.fullmatch(value) or not value.strip(b" "):
                    return None
                originator = value.decode("ascii").strip(" ")
            elif number == _MOVE_ORIGINATOR_ID and originator_id is None and length == 2:
                originator_id = struct.unpack("<H", value)[0]
            else:
                return None
    except struct.error:
        return None
    sop_class, command_field, message_id, priority, data_set_type, sop_instance = values
    if command_field != 0x0001 or data_set_type == 0x0101:
        return None
    return StoreRequest(sop_class, message_id, priority, sop_instance, originator, originator_id)
