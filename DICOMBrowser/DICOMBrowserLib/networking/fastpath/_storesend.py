"""C-STORE of a stored Part 10 file, the command set and P-DATA built directly.

Why: pynetdicom's `send_c_store(path)` (chunked mode: the data set streamed from the file as
stored) reads the file meta with pydicom and encodes the command set twice through a pydicom
Dataset (once for its group length), about half of the ~1.6 ms each small instance took to send.

What `send_as_stored(assoc, path, message_id)` does is send_c_store's own sequence: the file
meta's SOP class, SOP instance and transfer syntax (headerscan.file_meta), the accepted context
for them without conversion (pynetdicom's `_get_valid_context`, the same ValueError when there is
none), pause the association loop (`pause`: it stays paused for the next file, until the caller's
`resume`), send the command set (commands.encode_store_request, the bytes
pynetdicom encodes; tested) and the data set bytes as stored in P-DATA fragments of the size
pynetdicom uses (the peer's maximum PDU length - 6), take the response with `dimse.get_msg`, and judge the response with pynetdicom's own `_check_received_status` /
`_handle_no_response`. It returns None, without sending anything, for what it was not written
for: a file without preamble and file meta, a file over DIRECT_LIMIT (pynetdicom streams those
from disk), handlers bound to EVT_DIMSE_SENT (pynetdicom's debug log), another pynetdicom; the
caller then uses send_c_store.
"""
from __future__ import annotations

import os
import time
from typing import Any

import pynetdicom
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.pdu_primitives import P_DATA

from ... import headerscan
from . import _commands as commands

# Files up to this size are read whole and sent from memory; bigger ones are streamed by pynetdicom.
DIRECT_LIMIT = 64 << 20
PRIORITY = 2  # LOW, what pynetdicom's send_c_store sends by default
_NEEDS = ("_get_valid_context", "_check_received_status", "_handle_no_response", "_reactor_checkpoint",
          "_is_paused", "dimse", "dul", "get_handlers")


def supported(assoc: Any) -> bool:
    from . import VERIFIED

    return (pynetdicom.__version__ in VERIFIED and all(hasattr(assoc, name) for name in _NEEDS)
            and hasattr(assoc.dimse, "maximum_pdu_size") and not assoc.get_handlers(evt.EVT_DIMSE_SENT))


def send_as_stored(assoc: Any, path: str, message_id: int) -> Dataset | None:
    """send_c_store(path) for a plain Part 10 file (see the module docstring); None: not sent, use pynetdicom."""
    if not assoc.is_established:
        raise RuntimeError("The association with a peer SCP must be established before sending a C-STORE request")
    if not supported(assoc) or os.stat(path).st_size > DIRECT_LIMIT:
        return None
    with open(path, "rb") as handle:
        data = handle.read()
    found = headerscan.file_meta(data)
    if found is None:
        return None
    meta, offset = found
    if offset >= len(data):  # no data set: pynetdicom's path decides what that means
        return None
    sop_class, sop_instance, syntax = (meta.get(tag) for tag in (0x00020002, 0x00020003, 0x00020010))
    if not (sop_class and sop_instance and syntax):
        return None
    context = assoc._get_valid_context(sop_class, syntax, "scu", allow_conversion=False)  # ValueError: none
    command = commands.encode_store_request(sop_class, message_id, PRIORITY, sop_instance)
    if command is None:
        return None
    pause(assoc)
    for pdata in p_data(context.context_id, command, memoryview(data)[offset:], assoc.dimse.maximum_pdu_size):
        assoc.dul.send_pdu(pdata)
    _context_id, response = assoc.dimse.get_msg(block=True)
    if response is None or not response.is_valid_response:
        # pynetdicom's loop must run again to see the abort or closed connection behind this
        # (parked, it never would: the next file waited a DIMSE timeout, and so on for every file)
        resume(assoc)
    if response is None:
        assoc._handle_no_response()
        return Dataset()
    return assoc._check_received_status(response)


def pause(assoc: Any, timeout: float = 30.0) -> None:
    """Park the association loop (as send_c_store does) so that we read the responses ourselves;
    it stays parked until `resume`: the next file of a batch does not pay the hand-shake again
    (~0.1-0.2 ms, a sleep of pynetdicom's while the loop parks). A no-op when already parked."""
    if not assoc._reactor_checkpoint.is_set():
        return
    assoc._reactor_checkpoint.clear()
    deadline = time.monotonic() + timeout
    while not assoc._is_paused:
        if not assoc.is_established or not assoc.is_alive():  # its loop has ended: nothing will park
            assoc._reactor_checkpoint.set()
            raise RuntimeError("association lost")
        if time.monotonic() > deadline:
            assoc._reactor_checkpoint.set()
            raise RuntimeError(f"the association loop did not pause within {timeout:.0f} s")
        time.sleep(0.0001)


def resume(assoc: Any) -> None:
    """Let the association loop run again (after a batch; pynetdicom's send_c_store does it itself)."""
    checkpoint = getattr(assoc, "_reactor_checkpoint", None)
    if checkpoint is not None:
        checkpoint.set()


def p_data(context_id: int, command: bytes, data_set: memoryview, maximum_pdu: int) -> list[P_DATA]:
    """The P-DATA primitives of one message, one PDV each, as pynetdicom fragments it (PS3.8 E.2):
    command fragments (last one marked), then data set fragments (last one marked)."""
    primitives = []
    size = maximum_pdu - 6 if maximum_pdu else max(len(command), len(data_set), 1)
    for payload, middle, last in ((memoryview(command), b"\x01", b"\x03"), (data_set, b"\x00", b"\x02")):
        for start in range(0, len(payload), size):
            header = last if start + size >= len(payload) else middle
            primitive = P_DATA()
            primitive.presentation_data_value_list.append((context_id, header + payload[start:start + size]))
            primitives.append(primitive)
    return primitives
