"""Association and DUL loops for the listener (and our requestors) that wake on events instead of polling.

Why: pynetdicom 3.0's association loop (`Association._run_reactor`) sleeps a hard-coded 1 ms
before each look at its DIMSE message queue, and its DUL thread sleeps `_run_loop_delay` after
every iteration that found nothing; even time.sleep(0) costs ~70 us here (timer slack). A
Storage SCU sends the next C-STORE only after our response, so every instance paid those sleeps.

What `install(assoc)` does to one acceptor association (from the listener's EVT_CONN_OPEN
handler, before the association's threads start):

- association loop: `_message_driven_reactor`, the same checks in the same order (pause
  checkpoint, serve one message, peer release, abort, DUL alive, network timeout), asleep on an
  event that every message put on `dimse.msg_queue` and every ACSE indication put on
  `dul.to_user_queue` sets (`_wake_on_put`), at most IDLE_WAIT;
- DUL thread: `_event_driven_dul_loop` as its `run` (pynetdicom's loop without the sleep), whose
  only wait is in `_DULWaker.is_transport_event`: select() on the socket plus a wake-up socket
  pair that `send_pdu` writes to after queueing, at most DUL_WAIT. A readable socket is read at
  once (pynetdicom's `socket.ready` would select again); the pair is closed with the connection.
  The socket's `recv` fills one buffer with `recv_into` (pynetdicom reads 4 kB per call);
- storelane.install: plain C-STOREs served on the DUL thread (see _storelane.py);
- for what still reaches pynetdicom's DIMSE layer: plain C-STORE responses encoded directly
  (`encode_store_response`: implicit VR little endian, PS3.7 9.3.1.2 / E.1, elements in tag
  order, the bytes pynetdicom would send; Testing/test_network_failures.py compares them), and
  plain C-STORE-RQ command sets parsed directly (`parse_store_request`: exactly the elements
  (0000,0000), 0002, 0100, 0110, 0700, 0800, 1000, optionally 1030/1031, UIDs of digits and dots)
  into pynetdicom's own C_STORE_RQ class (`_ParsedStoreRequest`, primitive built through the
  same setters; anything else through pynetdicom's decoder, compared in the same tests);
- pynetdicom's "standard" log-line handlers are unbound (public `Association.unbind`) when the
  `pynetdicom` logger is not enabled for INFO: they format every PDU and DIMSE message otherwise.

Our requestor associations (send, find, retrieve) get `install_requestor`: the same association
loop, woken also when a send_*() pauses it (it clears `_reactor_checkpoint`, see
`_also_wake_on_clear`), the select-waiting DUL (their DUL thread already runs: it made the
connection, so its loop stays pynetdicom's with a zero delay) and the log handlers unbound.

It relies on pynetdicom internals (`_run_reactor`, `_serve_request`, `_reactor_checkpoint`,
`_is_paused`, `dimse.msg_queue`, the DUL's queues, timers and state machine): `install` checks
they exist and that pynetdicom is 3.0.x (the version it was written against and tested with)
and otherwise leaves pynetdicom's own loops in place (slower, still correct).
"""
from __future__ import annotations

import copy
import logging
import queue
import select
import socket
import ssl
import threading
import time
import types
import weakref
from typing import Any

import pynetdicom
from pynetdicom import _config, evt
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import decode as dimse_decode
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext

from . import _commands as commands
from ._connection import recv_growing
from ._commands import StoreRequest, encode_store_response

logger = logging.getLogger(__name__)

# How long one wait for a DIMSE message lasts before the loop looks at release/abort/timeouts.
# pynetdicom's own loop sleeps 1 ms per iteration; idle CPU use is the same. (Requestors.)
MESSAGE_WAIT = 0.001

# Longest wait of an acceptor's association loop: the DUL wakes it for every DIMSE message and
# every ACSE indication (release, abort) it queues, so this only bounds how late the loop sees
# its network timeout or a dead DUL thread.
IDLE_WAIT = 0.05

# Longest wait of the DUL thread in select(); also how often it looks at its ARTIM timer and kill flag.
DUL_WAIT = 0.005

_REQUIRED = ("_run_reactor", "_serve_request", "_reactor_checkpoint", "_is_paused", "_kill", "dimse", "dul", "acse")


def supported(assoc: Any, acceptor: bool = True) -> bool:
    """True when `assoc` looks like the pynetdicom 3.0 acceptor (or requestor) this loop was written for."""
    from . import VERIFIED

    if pynetdicom.__version__ not in VERIFIED:
        return False
    if not all(hasattr(assoc, name) for name in _REQUIRED):
        return False
    if not acceptor:
        return isinstance(getattr(assoc.dimse, "msg_queue", None), queue.Queue) and getattr(assoc, "is_requestor", False)
    if not _dul_supported(assoc.dul):
        return False
    return isinstance(getattr(assoc.dimse, "msg_queue", None), queue.Queue) and getattr(assoc, "is_acceptor", False)


def _dul_supported(dul: Any) -> bool:
    return all(hasattr(dul, name) for name in ("_is_transport_event", "send_pdu", "_run_loop_delay", "socket",
                                               "event_queue", "to_provider_queue", "to_user_queue",
                                               "state_machine", "_kill_thread"))


def install(assoc: Any) -> bool:
    """Use the message-driven loop for this acceptor association; False (and pynetdicom's loop) if unsupported."""
    if not supported(assoc):
        logger.debug("pynetdicom %s: keeping its own association loop", pynetdicom.__version__)
        return False
    assoc._run_reactor = types.MethodType(_message_driven_reactor, assoc)
    _wake_on_put(assoc, assoc.dimse.msg_queue, assoc.dul.to_user_queue)
    _DULWaker(assoc.dul)
    if callable(getattr(assoc.dimse, "send_msg", None)):
        assoc.dimse.send_msg = _DirectStoreResponses(assoc, assoc.dimse.send_msg)
    if callable(getattr(assoc.dimse, "receive_primitive", None)) and hasattr(assoc.dimse, "message"):
        assoc.dimse.receive_primitive = _ParsedStoreRequests(assoc.dimse, assoc.dimse.receive_primitive)
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
        _unbind_standard_logging(assoc)
    from . import _storelane as storelane  # it builds on this module's parser and encoder

    storelane.install(assoc)
    return True


def store_response_command(primitive: C_STORE) -> bytes | None:
    """The encoded command set of a plain C-STORE-RSP primitive, or None when it carries anything else."""
    if getattr(primitive, "ErrorComment", None) or getattr(primitive, "OffendingElement", None):
        return None
    return encode_store_response(primitive.AffectedSOPClassUID, primitive.MessageIDBeingRespondedTo,
                                 primitive.Status, primitive.AffectedSOPInstanceUID)


class _DirectStoreResponses:
    """`dimse.send_msg` of one acceptor: plain C-STORE responses encoded directly, the rest by pynetdicom."""

    def __init__(self, assoc: Any, send_msg: Any):
        self.assoc = assoc
        self.send_msg = send_msg

    def __call__(self, primitive: Any, context_id: int) -> None:
        if type(primitive) is C_STORE and primitive.MessageIDBeingRespondedTo is not None \
                and not self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
            command = store_response_command(primitive)
            limit = self.assoc.dimse.maximum_pdu_size
            if command is not None and (not limit or len(command) + 12 <= limit):
                pdata = P_DATA()
                pdata.presentation_data_value_list.append((context_id, b"\x03" + command))  # last command fragment
                self.assoc.dul.send_pdu(pdata)
                return
        self.send_msg(primitive, context_id)


class _ParsedStoreRequest(C_STORE_RQ):
    """pynetdicom's C_STORE_RQ message whose command set was parsed by parse_store_request."""

    parsed: StoreRequest

    @property
    def command_set(self) -> Any:
        """pynetdicom's own decode of the command set, made only when someone asks for it."""
        if self.__dict__.get("command_set") is None:
            self.__dict__["command_set"] = dimse_decode(self.encoded_command_set, True, True)
        return self.__dict__["command_set"]

    @command_set.setter
    def command_set(self, value: Any) -> None:
        self.__dict__["command_set"] = value

    def message_to_primitive(self) -> Any:
        """The C_STORE primitive pynetdicom would build, through the same setters."""
        try:
            parsed = self.parsed
            primitive = C_STORE()
            primitive.AffectedSOPClassUID = parsed.sop_class
            primitive.MessageID = parsed.message_id
            primitive.Priority = parsed.priority
            primitive.AffectedSOPInstanceUID = parsed.sop_instance
            if parsed.move_originator is not None:
                primitive.MoveOriginatorApplicationEntityTitle = parsed.move_originator
            if parsed.move_originator_id is not None:
                primitive.MoveOriginatorMessageID = parsed.move_originator_id
            primitive.DataSet = self.data_set
        except (ValueError, TypeError) as error:  # pynetdicom's path reports it as it always does
            logger.debug("Parsed C-STORE request rejected by pynetdicom (%s); decoding it the usual way", error)
            return C_STORE_RQ.message_to_primitive(self)
        primitive._context_id = self.context_id
        primitive._dataset_path = self._data_set_path
        primitive._dataset_file = self._data_set_file
        return primitive


class _ParsedStoreRequests:
    """`dimse.receive_primitive` of one acceptor: a plain C-STORE-RQ command set parsed directly."""

    def __init__(self, dimse: Any, receive_primitive: Any):
        self.dimse = dimse
        self.receive_primitive = receive_primitive

    def __call__(self, primitive: Any) -> None:
        dimse = self.dimse
        if dimse.message is None and primitive.__class__ is P_DATA and not _config.STORE_RECV_CHUNKED_DATASET:
            pdvs = primitive.presentation_data_value_list
            if pdvs and len(pdvs[0][1]) > 1 and pdvs[0][1][0] & 3 == 3 \
                    and not any(data[0] & 1 for _cid, data in pdvs[1:]):
                context_id, data = pdvs[0]
                parsed = commands.parse_store_request(bytes(data[1:]))
                if parsed is not None:
                    message = DIMSEMessage()
                    message.encoded_command_set.write(data[1:])
                    message.context_id = context_id
                    message.__class__ = _ParsedStoreRequest
                    message.__dict__["command_set"] = None  # decoded by pynetdicom if someone asks
                    message.parsed = parsed
                    dimse.message = message
                    # pynetdicom goes on with the data set fragments (in this P-DATA or the next ones)
                    rest = P_DATA()
                    rest.presentation_data_value_list.extend(pdvs[1:])  # as received (no re-validation)
                    self.receive_primitive(rest)
                    return
        self.receive_primitive(primitive)


def _wake_on_put(assoc: Any, *queues: queue.Queue) -> None:
    """Give `assoc` a `_wakeup` event that is set after every put on `queues` (an instance
    attribute `put` wrapping the queue's own), so its loop sleeps until there is something to do."""
    wakeup = threading.Event()

    def wrap(put: Any) -> Any:
        def put_and_wake(*args: Any, **kwargs: Any) -> None:
            put(*args, **kwargs)
            wakeup.set()
        return put_and_wake

    for waited_on in queues:
        waited_on.put = wrap(waited_on.put)
    assoc._wakeup = wakeup


def _also_wake_on_clear(event: threading.Event, wakeup: threading.Event) -> None:
    clear = event.clear

    def clear_and_wake() -> None:
        clear()
        wakeup.set()

    event.clear = clear_and_wake  # type: ignore[method-assign]


def install_requestor(assoc: Any) -> bool:
    """For our own requestor associations (send, find, retrieve): only the association loop, for its
    race-free pause (the DUL thread and logging stay pynetdicom's). False if unsupported.

    pynetdicom's send_c_store() pauses the loop (clears `_reactor_checkpoint`, waits for
    `_is_paused`) and then reads the response itself; its loop could pass the checkpoint, lose the
    GIL, and then take that response off the queue anyway: the C-STORE then waited dimse_timeout
    for an answer that had arrived ("no answer", ~1 in 5 runs of test_send_to_storescp under load).
    Our loop re-checks the checkpoint after clearing `_is_paused`, which closes that window."""
    if not supported(assoc, acceptor=False):
        return False
    assoc._run_reactor = types.MethodType(_message_driven_reactor, assoc)
    if _dul_supported(assoc.dul) and isinstance(getattr(assoc, "_reactor_checkpoint", None), threading.Event):
        # woken by messages, ACSE indications and by a send_*() pausing it (clearing the
        # checkpoint): the pause no longer waits for the loop's next 1 ms poll (every C-STORE did)
        _wake_on_put(assoc, assoc.dimse.msg_queue, assoc.dul.to_user_queue)
        _also_wake_on_clear(assoc._reactor_checkpoint, assoc._wakeup)
        # the DUL thread is already running (it made the connection): waiting in select instead of
        # sleeping 1 ms whenever an iteration found nothing, which capped a C-FIND at ~1 result per ms
        _DULWaker(assoc.dul)
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
        _unbind_standard_logging(assoc)  # ~0.2 ms per received PDU (a C-FIND match each)
    bound = assoc.get_handlers(evt.EVT_C_STORE)  # (handler, args), (None, None) or []
    if bound and getattr(bound[0], "store_encoded", None) is not None:  # a C-GET: the peer sends C-STOREs
        from . import _storelane as storelane

        storelane.install(assoc)
    return True


_LOGGING_EVENTS = (evt.EVT_DIMSE_RECV, evt.EVT_DIMSE_SENT, evt.EVT_PDU_RECV, evt.EVT_PDU_SENT)


def _unbind_standard_logging(assoc: Any) -> None:
    """Unbind pynetdicom's own log-line handlers (module pynetdicom._handlers) from one association."""
    for event in _LOGGING_EVENTS:
        for handler, _args in list(assoc.get_handlers(event)):
            if getattr(handler, "__module__", "") == "pynetdicom._handlers":
                assoc.unbind(event, handler)


class _DULWaker:
    """Makes one DUL thread wait in select() on its socket and a wake-up pair instead of sleeping."""

    def __init__(self, dul: Any):
        self.dul = dul
        self.wake_read, self.wake_write = socket.socketpair()
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        self._is_transport_event = dul._is_transport_event
        self._send_pdu = dul.send_pdu
        dul._is_transport_event = self.is_transport_event
        dul.send_pdu = self.send_pdu
        dul._run_loop_delay = 0
        if not _config.PASS_CONTEXTVARS and hasattr(dul, "_idle_timer") and hasattr(dul, "artim_timer") \
                and not dul.is_alive():  # an acceptor's: its thread has not started yet
            dul.run = types.MethodType(_event_driven_dul_loop, dul)
        if callable(getattr(dul.socket, "recv", None)):
            dul.socket.recv = types.MethodType(_recv_exact, dul.socket)
        # the pair lives as long as the DUL object; closed when it is collected or its thread ends
        self._finalizer = weakref.finalize(dul, _close_pair, self.wake_read, self.wake_write)

    def send_pdu(self, primitive: Any) -> None:
        self._send_pdu(primitive)  # queued first, then the wake-up: select cannot miss it
        try:
            self.wake_write.send(b"\0")
        except (BlockingIOError, OSError):  # pair full (a wake-up is pending anyway) or closed
            pass

    def is_transport_event(self) -> bool:
        dul = self.dul
        if dul.event_queue.empty() and dul.to_provider_queue.empty():
            if self._wait() and dul.state_machine.current_state != "Sta13" and dul.socket._is_connected:
                # what pynetdicom's _is_transport_event does once its socket.ready says "readable"
                # (select just said so; not asking again saves a system call per PDU)
                dul._read_pdu_data()
                return True
        result = self._is_transport_event()
        if dul._kill_thread:
            self._finalizer()
        return result

    def _wait(self) -> bool:
        """Until the socket is readable, a primitive is queued for sending, or DUL_WAIT passed;
        True when the (plain, not TLS) socket is readable."""
        raw = getattr(self.dul.socket, "socket", None)
        if isinstance(raw, ssl.SSLSocket) and raw.fileno() >= 0 and raw.pending():
            # TLS: bytes the SSL object already decrypted and buffered are invisible to select() on
            # the socket; waiting there would hold them (up to DUL_WAIT each time, or until the peer
            # sends more). pynetdicom's own check (socket.ready) reads them at once.
            return False
        if raw is None or raw.fileno() < 0:
            self._finalizer()  # connection closed: no more wake-ups needed
            time.sleep(DUL_WAIT)  # as pynetdicom would, until the DUL stops; never spin
            return False
        try:
            readable, _, _ = select.select([raw, self.wake_read], [], [], DUL_WAIT)
        except (OSError, ValueError):  # closed meanwhile: pynetdicom's own check reports it
            return False
        if self.wake_read in readable:
            self._drain()
        return raw in readable and not isinstance(raw, ssl.SSLSocket)

    def _drain(self) -> None:
        try:
            while self.wake_read.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass


def _recv_exact(self: Any, nr_bytes: int) -> bytearray:
    """AssociationSocket.recv: `nr_bytes` from the socket (fewer only if the peer closed), into one buffer."""
    return recv_growing(self, nr_bytes)


def _close_pair(*sockets: socket.socket) -> None:
    for sock in sockets:
        sock.close()


def _event_driven_dul_loop(self: Any) -> None:
    """The DUL loop of pynetdicom 3.0 (DULServiceProvider.run_reactor) without its sleep; `self` is
    the DULServiceProvider, whose `_is_transport_event` (_DULWaker) waits in select instead.

    pynetdicom sleeps `_run_loop_delay` before every iteration that follows one without an event;
    time.sleep(0) still costs ~70 us here (the kernel's timer slack), and since the store lane
    (_storelane.py) serves P-DATA without queueing an event, that was ~140 us per small instance."""
    self._idle_timer.start()
    assoc = self.assoc
    while True:
        if not assoc._dul_ready.is_set():
            assoc._dul_ready.set()  # lets the association loop start
        if self._kill_thread:
            break
        # the ARTIM timer first, so that its event is queued ahead of anything else this iteration
        if self.artim_timer.expired:
            self.event_queue.put("Evt18")
        try:
            # one outgoing primitive or one incoming PDU per iteration, as pynetdicom does
            if self._process_recv_primitive():
                pass
            elif self._is_transport_event():
                self._idle_timer.restart()
        except Exception as exc:  # what pynetdicom does: abort outside the state machine, stop both loops
            logger.error("Exception in the DUL loop, aborting the association")
            logger.exception(exc)
            abort_pdu = A_ABORT_RQ()
            abort_pdu.source = 0x02
            abort_pdu.reason_diagnostic = 0x00
            self.socket.send(abort_pdu.encode())
            assoc.is_aborted = True
            assoc.is_established = False
            assoc._kill = True
            self._kill_thread = True
            return
        try:
            event = self.event_queue.get(block=False)
        except queue.Empty:
            continue  # the next _is_transport_event waits in select: no spinning
        self.state_machine.do_action(event)


def _message_driven_reactor(self: Any) -> None:
    """The acceptor loop of pynetdicom 3.0 (Association._run_reactor), waiting on the message
    queue instead of sleeping; `self` is the Association."""
    self._is_paused = False
    while not self._kill:
        # a send_*() from a handler pauses the loop so that it can read the replies itself
        self._is_paused = True
        self._reactor_checkpoint.wait()
        self._is_paused = False
        if not self._reactor_checkpoint.is_set():
            # A send_*() cleared the checkpoint after wait() returned and saw _is_paused still True:
            # it now reads the next message itself, so we must not take it (pynetdicom 3.0's own
            # loop has this window; it lost C-STORE responses of our requestor, see install_requestor).
            continue

        wakeup = getattr(self, "_wakeup", None)
        try:
            if wakeup is None:  # a requestor: wait on the message queue itself
                context_id, message = self.dimse.msg_queue.get(timeout=MESSAGE_WAIT)
            else:
                context_id, message = self.dimse.msg_queue.get_nowait()
        except queue.Empty:
            context_id, message = None, None
            if wakeup is not None:  # set by every DIMSE message and every ACSE indication queued
                wakeup.wait(IDLE_WAIT)
                wakeup.clear()  # a message put meanwhile is still in the queue: taken next time round
        if message:
            self._serve_request(message, context_id)

        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            logger.debug("Association released by the peer")
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return

        if self.acse.is_aborted():
            logger.debug("Association aborted%s", " (A-P-ABORT)" if self.acse.is_aborted("a-p-abort") else "")
            self.dul.receive_pdu(wait=False)  # so that EVT_ACSE_RECV fires for the abort
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return

        if not self.dul.is_alive():
            self.kill()
            return

        if self.dul.idle_timer_expired():
            logger.error("Network timeout reached on the association with %s", _peer(self))
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
            self.kill()
            return


def _peer(assoc: Any) -> str:
    requestor = getattr(assoc, "requestor", None)
    return f"{getattr(requestor, 'ae_title', '?')} at {getattr(requestor, 'address', '?')}:{getattr(requestor, 'port', '?')}"


class _SharedSyntaxesContext(PresentationContext):
    """A supported presentation context whose deep copy shares its UIDs (immutable strings).

    pynetdicom deep-copies the server's supported contexts for every association it accepts;
    for all storage SOP classes with every transfer syntax (171 x 45 UIDs), pydicom re-validating
    each copied UID made that 45 ms per association (a C-MOVE opens one per series)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> "_SharedSyntaxesContext":
        duplicate = copy.copy(self)
        duplicate._transfer_syntax = list(self._transfer_syntax)
        return duplicate


def share_syntaxes_on_copy(server: Any) -> None:
    """Give the server's supported contexts the cheap deep copy when they are plain PresentationContexts
    whose attributes are all immutable but the transfer syntax list (pynetdicom 3.0's)."""
    for context in getattr(server, "contexts", None) or []:
        if type(context) is PresentationContext and all(
                isinstance(value, (str, int, bool, type(None))) or name == "_transfer_syntax"
                for name, value in vars(context).items()):
            context.__class__ = _SharedSyntaxesContext
