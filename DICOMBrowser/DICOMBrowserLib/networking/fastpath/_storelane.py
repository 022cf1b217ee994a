"""Plain C-STORE requests served on the association's network thread, without pynetdicom's DIMSE layer.

Why: with _acceptor.py's loops in place, a small instance still cost the listener ~1 ms of CPU and
as much wall time, split over two threads that take turns: pynetdicom's DUL thread reads the PDU,
decodes it into PDU and primitive objects, runs its state machine and queues the message; the
association thread wakes up, builds the request and response primitives, triggers EVT_C_STORE,
and queues the response, which the DUL thread wakes up again to encode and send. Two thread
hand-offs and a dozen objects per instance; DCMTK's storescp does the same work in one thread.

What: `install(assoc)` gives one acceptor's DUL thread its own `_read_pdu_data` (pynetdicom's
"read one PDU from the socket" step). A P-DATA-TF PDU that starts a plain C-STORE-RQ
(commands.parse_store_request: a complete command set in one PDV, optionally with the Move
Originator pair) on an accepted presentation context, for a SOP class pynetdicom serves with its
Storage service class, is kept together with the PDUs carrying its data set; once the last data
set fragment is in, the EVT_C_STORE handler's direct entry (`handler.store_encoded(sop_class,
sop_instance, transfer_syntax, data_set_fragments) -> status`, see storage.store_handler) stores it,
and the C-STORE-RSP (the same bytes pynetdicom would encode: commands.encode_store_response) goes
straight to the socket. pynetdicom's state machine stays in Sta6 either way (receiving and sending
P-DATA does not change the state), and its idle timer restarts on every PDU as before.
A data set larger than max(SPOOL_FACTOR x our maximum PDU, SPOOL_AFTER) is written to its file
as it arrives (`handler.open_encoded(...) -> storage.SpooledStore`) and its PDUs are let go, so
memory per association stays a few PDUs; such a message can no longer be handed to pynetdicom,
so one that stops being plain after that point is answered with A-ABORT.

Everything else goes to pynetdicom exactly as it arrived, in order: any other PDU, a message that
starts while pynetdicom still has one in progress or queued, and a message that turns out not to
be plain halfway (another command, a different context, more data after the last fragment,
malformed PDV lengths): its PDUs kept so far are decoded and queued the way pynetdicom's own
`_read_pdu_data` does, and its DIMSE layer takes over. The lane stays off while anyone listens to
pynetdicom's PDU/DIMSE/data events (its debug logging binds them), while a release is under way,
and with pynetdicom's chunked-dataset mode. A connection that breaks mid-message drops the
partial message (nothing written, nothing indexed), as pynetdicom would.

Our C-GET requestor associations get the lane too (acceptor.install_requestor, when an
EVT_C_STORE handler with a direct entry is bound): there the peer's C-STORE sub-operations are
served on contexts whose SCP role was negotiated, which is what pynetdicom's `_c_store_scp` checks.

It uses pynetdicom 3.0 internals (`_read_pdu_data`, `_decode_pdu`, `_recv_pdu`, `event_queue`,
`state_machine`, `_accepted_cx`, `_sent_release`, `dimse.message`); `install` checks for them and
otherwise leaves the association on pynetdicom's path.
"""
from __future__ import annotations

import logging
import struct
import time
from typing import Any

from pynetdicom import _config, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from . import _acceptor as acceptor, _commands as commands, _connection as connection

logger = logging.getLogger(__name__)

# events whose handlers expect to see each PDU / message / raw byte string (pynetdicom's debug logging)
_OBSERVED_EVENTS = (evt.EVT_DATA_RECV, evt.EVT_DATA_SENT, evt.EVT_PDU_RECV, evt.EVT_PDU_SENT,
                    evt.EVT_DIMSE_RECV, evt.EVT_DIMSE_SENT)
_DUL_NEEDS = ("_read_pdu_data", "_decode_pdu", "_recv_pdu", "event_queue", "state_machine", "socket")
_ASSOC_NEEDS = ("_accepted_cx", "_sent_release", "acceptor", "get_handlers", "is_acceptor", "_get_valid_context")
_P_DATA_TF = 0x04
_PDU_TYPES = range(0x01, 0x08)

# Memory per association: a data set is kept in memory (its PDUs, so that a message that stops
# being plain halfway can still be handed to pynetdicom as it arrived) up to the larger of
# SPOOL_FACTOR x our maximum PDU size and SPOOL_AFTER bytes; beyond that it is written to its
# .part file as each PDU arrives (storage.InstanceFile) and the PDUs are let go. A 512 x 512 CT
# slice (0.5 MB) stays in memory as before; a 200 MB instance costs a few PDUs.
SPOOL_FACTOR = 4
SPOOL_AFTER = 1 << 20

# PDU ceiling of an association without a connection guard (none of ours: the listener and C-GET guard theirs)
UNGUARDED_PDU_SIZE = 1 << 20


def supported(assoc: Any) -> bool:
    dul = getattr(assoc, "dul", None)
    return (dul is not None and all(hasattr(dul, name) for name in _DUL_NEEDS)
            and all(hasattr(assoc, name) for name in _ASSOC_NEEDS) and hasattr(assoc.dimse, "message")
            and hasattr(getattr(dul, "socket", None), "socket"))


def install(assoc: Any) -> bool:
    """Serve this association's plain C-STORE requests on its DUL thread (the listener's
    associations; our C-GET requestors); False if unsupported."""
    if not supported(assoc):
        return False
    StoreLane(assoc)
    return True


def pdv_items(pdu: bytearray) -> list[tuple[int, int, memoryview]] | None:
    """(context ID, message control header, fragment) of each PDV item of a P-DATA-TF PDU (PS3.8
    9.3.5), or None when the item lengths do not add up (pynetdicom then reports it)."""
    items = []
    view = memoryview(pdu)
    offset, end = 6, len(pdu)
    while offset < end:
        if offset + 6 > end:
            return None
        (length,) = struct.unpack_from(">I", pdu, offset)
        if length < 2 or offset + 4 + length > end:
            return None
        items.append((pdu[offset + 4], pdu[offset + 5], view[offset + 6:offset + 4 + length]))
        offset += 4 + length
    return items if items else None


class StoreLane:
    """The DUL-thread side of one association (the listener's, or our C-GET's): see the module docstring."""

    def __init__(self, assoc: Any):
        self.assoc = assoc
        self.dul = assoc.dul
        self.kept: list[bytearray] = []  # PDUs of the message being assembled
        self.request: commands.StoreRequest | None = None
        self.context_id = 0
        self.fragments: list[memoryview] = []
        self.kept_bytes = 0   # data set bytes in `fragments`
        self.spool: Any = None  # storage.SpooledStore once the data set is written as it arrives
        self.served = 0       # C-STOREs answered here
        self.spooled = 0      # of which written as they arrived
        self.handed_over = 0  # P-DATA-TF PDUs given to pynetdicom
        self._storage_classes: dict[str, bool] = {}
        self.dul._read_pdu_data = self.read_pdu_data

    # --- reading (pynetdicom's DULServiceProvider._read_pdu_data, same events on the same errors) ---
    def read_pdu_data(self) -> None:
        dul = self.dul
        try:
            header = dul.socket.recv(6)
            if len(header) != 6:  # the peer closed the connection (pynetdicom: no log line either)
                self._drop_message()
                dul.event_queue.put("Evt17")
                return
            pdu_type, _, length = struct.unpack(">BBL", header)
            if pdu_type not in _PDU_TYPES:
                logger.error("Unknown PDU type received '0x%02X'", pdu_type)
                self._drop_message()
                dul.event_queue.put("Evt19")  # unrecognised PDU
                return
            if length > self._pdu_limit(pdu_type):
                self._abort_oversized(pdu_type, length)
                return
            timeout = getattr(self.assoc, "dimse_timeout", None)
            deadline = time.monotonic() + timeout if timeout else None
            # one buffer: the data set is written from it as it is; made whole only once data came
            pdu = connection.recv_growing(dul.socket, length, header, deadline)
            if len(pdu) != 6 + length:
                raise ConnectionError(f"{len(pdu)} of {6 + length} PDU bytes")
        except (OSError, TimeoutError) as error:  # ConnectionError is an OSError
            logger.error("Connection from %s closed before the entire PDU was received (%s)",
                         acceptor._peer(self.assoc), error)
            self._drop_message()
            dul.event_queue.put("Evt17")  # transport connection closed
            return
        if pdu_type == _P_DATA_TF and self._offer(pdu):
            return
        if self.spool is not None:  # its PDUs are gone: the message cannot go to pynetdicom any more
            self._give_up_spooled(pdu_type)
            if pdu_type == _P_DATA_TF:
                return
        self._hand_over_kept()
        self._hand_over(pdu)

    def _pdu_limit(self, pdu_type: int) -> int:
        """The largest PDU length we accept: the connection guard's (admission.ConnectionLimits, set
        through guard_reads: our announced maximum for P-DATA, PS3.8 9.3.1 "Maximum Length
        Received", a fixed ceiling for association control PDUs); without a guard the announced
        maximum, and UNGUARDED_PDU_SIZE at least for control PDUs."""
        guarded = connection.pdu_limit(self.assoc, pdu_type)  # admission's limits, through guard_reads
        if guarded is not None:
            return guarded
        local = self.assoc.acceptor if self.assoc.is_acceptor else self.assoc.requestor
        announced = getattr(local, "maximum_length", 0) or UNGUARDED_PDU_SIZE
        return announced if pdu_type == _P_DATA_TF else max(announced, UNGUARDED_PDU_SIZE)

    def _abort_oversized(self, pdu_type: int, length: int) -> None:
        """A-ABORT (service provider, invalid PDU parameter value) and close, without reading the PDU."""
        logger.error("PDU of type 0x%02X claiming %d bytes from %s, more than the %d we accept: aborting",
                     pdu_type, length, acceptor._peer(self.assoc), self._pdu_limit(pdu_type))
        self._drop_message()
        try:
            self.dul.socket.socket.sendall(struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, 0x02, 0x06))
        except OSError:
            pass
        connection.close_connection(self.assoc)
        self.dul.event_queue.put("Evt17")  # transport connection closed: pynetdicom ends the association

    def _hand_over(self, pdu: bytearray) -> None:
        """Decode and queue one PDU the way pynetdicom's own _read_pdu_data does."""
        dul = self.dul
        if pdu[0] == _P_DATA_TF:
            self.handed_over += 1
        try:
            decoded, event = dul._decode_pdu(pdu)
            dul.event_queue.put(event)
        except Exception as error:  # what pynetdicom does with an undecodable PDU
            logger.error("Unable to decode the received PDU data: %s", error)
            dul.event_queue.put("Evt19")
            return
        dul._recv_pdu.put(decoded)

    def _hand_over_kept(self) -> None:
        kept, self.kept = self.kept, []
        self._reset()
        for pdu in kept:
            self._hand_over(pdu)

    def _give_up_spooled(self, pdu_type: int) -> None:
        """A message being written as it arrived stopped being a plain C-STORE (another command,
        another context, data after its last fragment, bad PDV lengths: all against PS3.7/PS3.8),
        or an association PDU came in the middle of it. Its file is removed; a P-DATA is answered
        with A-ABORT (pynetdicom, which would have had it, cannot any more), anything else
        (A-ABORT, A-RELEASE-RQ) goes on to pynetdicom."""
        request = self.request
        logger.error("%s sent a PDU of type 0x%02X in the middle of the data set of %s, which was being "
                     "written as it arrived: the instance is dropped%s", acceptor._peer(self.assoc), pdu_type,
                     request.sop_instance if request else "?",
                     ", the association aborted" if pdu_type == _P_DATA_TF else "")
        self._drop_message()
        if pdu_type == _P_DATA_TF:
            try:  # A-ABORT, service provider, unexpected PDU parameter (PS3.8 9.3.8)
                self.dul.socket.socket.sendall(struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, 0x02, 0x05))
            except OSError:
                pass
            connection.close_connection(self.assoc)
            self.dul.event_queue.put("Evt17")

    def _drop_message(self) -> None:
        self.kept = []
        if self.spool is not None:
            self.spool.discard()
        self._reset()

    def _reset(self) -> None:
        self.request = None
        self.fragments = []
        self.kept_bytes = 0
        self.spool = None

    # --- assembling ---------------------------------------------------------------------------
    def _offer(self, pdu: bytearray) -> bool:
        """Keep or serve a P-DATA-TF PDU; False when pynetdicom must have it (and what was kept)."""
        if self.request is None and not self._pynetdicom_idle():
            return False
        items = pdv_items(pdu)
        if items is None:
            return False
        complete = False
        arrived: list[memoryview] = []
        for context_id, control, fragment in items:
            if complete:  # anything after the last data set fragment
                return False
            if self.request is None:
                if control & 0x03 != 0x03:  # a message must start with a whole command set
                    return False
                request = commands.parse_store_request(bytes(fragment))
                if request is None or not self._servable(context_id, request.sop_class):
                    return False
                self.request, self.context_id = request, context_id
            elif control & 0x01 or context_id != self.context_id:  # a command, or another context
                return False
            else:
                arrived.append(fragment)
                complete = bool(control & 0x02)
        if self.spool is not None:  # written now; the PDU is not kept
            self.spool.write(arrived)
        else:
            self.kept.append(pdu)
            self.fragments.extend(arrived)
            self.kept_bytes += sum(len(fragment) for fragment in arrived)
            if not complete and self.kept_bytes >= max(SPOOL_AFTER, SPOOL_FACTOR * self._pdu_limit(_P_DATA_TF)):
                self._start_spooling()
        if complete:
            self._serve()
        return True

    def _start_spooling(self) -> None:
        """Write what was kept of the data set to its file and let its PDUs go (SPOOL_AFTER)."""
        bound = self.assoc.get_handlers(evt.EVT_C_STORE)
        open_encoded = getattr(bound[0], "open_encoded", None) if bound else None
        if open_encoded is None:  # a handler without the entry: kept in memory as before
            return
        request = self.request
        assert request is not None
        transfer_syntax = str(self.assoc._accepted_cx[self.context_id].transfer_syntax[0])
        self.spool = open_encoded(request.sop_class, request.sop_instance, transfer_syntax, self.fragments)
        self.spooled += 1
        self.kept, self.fragments, self.kept_bytes = [], [], 0

    def _pynetdicom_idle(self) -> bool:
        """Nothing of this association's in pynetdicom's pipeline, and nobody watching its events."""
        assoc, dul = self.assoc, self.dul
        return (dul.event_queue.empty() and dul._recv_pdu.empty() and assoc.dimse.message is None
                and dul.state_machine.current_state == "Sta6" and assoc.is_established
                and not assoc._sent_release and not _config.STORE_RECV_CHUNKED_DATASET
                and not any(assoc.get_handlers(event) for event in _OBSERVED_EVENTS)
                and self._store_entry() is not None)

    def _store_entry(self) -> Any:
        bound = self.assoc.get_handlers(evt.EVT_C_STORE)  # (handler, args), (None, None) or []
        return getattr(bound[0], "store_encoded", None) if bound else None

    def _servable(self, context_id: int, sop_class: str) -> bool:
        """pynetdicom would store this request through EVT_C_STORE on this context: as an acceptor,
        with its Storage service class; as a requestor (C-GET), on a context whose SCP role was
        negotiated (its _c_store_scp answers anything else with 0x0122 itself)."""
        if context_id not in self.assoc._accepted_cx:
            return False
        if not self.assoc.is_acceptor:
            try:
                self.assoc._get_valid_context(sop_class, "", "scp", context_id=context_id)
            except ValueError:
                return False
            return True
        if sop_class not in self._storage_classes:
            extended = getattr(self.assoc.acceptor, "accepted_common_extended", {}) or {}
            self._storage_classes[sop_class] = sop_class not in extended and (
                _config.UNRESTRICTED_STORAGE_SERVICE or uid_to_service_class(sop_class) is StorageServiceClass)
        return self._storage_classes[sop_class]

    # --- serving ------------------------------------------------------------------------------
    def _serve(self) -> None:
        request, context_id, fragments, spool = self.request, self.context_id, self.fragments, self.spool
        self.kept = []
        self.spool = None  # finished below, not discarded
        self._reset()
        assert request is not None
        transfer_syntax = str(self.assoc._accepted_cx[context_id].transfer_syntax[0])
        try:  # the fragments as they are: a data set of several PDUs is never joined in memory
            if spool is not None:
                status = spool.finish()
            else:
                status = self._store_entry()(request.sop_class, request.sop_instance, transfer_syntax, fragments)
        except Exception:  # pynetdicom answers a failing handler with 0xC211
            logger.exception("Exception in the C-STORE handler for %s", request.sop_instance)
            status = 0xC211
        self.served += 1
        command = commands.encode_store_response(request.sop_class, request.message_id, status, request.sop_instance)
        limit = getattr(self.assoc.dimse, "maximum_pdu_size", 0)
        if command is None or (limit and len(command) + 12 > limit):
            self._respond_through_pynetdicom(request, context_id, status)
            return
        pdv_length = len(command) + 2
        self.dul.socket.send(struct.pack(">BBIIBB", _P_DATA_TF, 0, pdv_length + 4, pdv_length, context_id, 0x03)
                             + command)

    def _respond_through_pynetdicom(self, request: commands.StoreRequest, context_id: int, status: int) -> None:
        response = C_STORE()
        response.MessageIDBeingRespondedTo = request.message_id
        response.AffectedSOPClassUID = request.sop_class
        response.AffectedSOPInstanceUID = request.sop_instance
        response.Status = status
        self.assoc.dimse.send_msg(response, context_id)
