"""Who may hold the listener's connections, and for how long: timeouts, association limits, PDU size.

Why: pynetdicom gives every accepted connection two threads and counts it against
`maximum_associations` from the moment of accept(), before the peer has said anything. A peer that
connects and stays silent (or sends half a PDU) held a slot until the ACSE timeout, or forever
when its half PDU left the network thread blocked in recv(); sixteen of them locked every real
caller out. What this module does (event handlers and one socket option, bound by the listener):

- **Timeouts**, as DCMTK's storescp has them: `acse_timeout` (the A-ASSOCIATE-RQ must arrive
  within it, pynetdicom's ARTIM timer), `dimse_timeout` (once a PDU's header arrived, the rest must
  follow within it: each read waits at most that long, and the store lane gives up on a PDU
  not complete within it, see fastpath/_storelane.py) and `network_timeout` (an established association
  idle that long is aborted, pynetdicom's idle timer).
- **Connections that have not asked for an association yet** (no complete A-ASSOCIATE-RQ) are
  cheap to drop: when `max_associations` of them are open, a new connection closes the oldest
  one that has sent nothing (see `_idlest`). So idle or garbage connections can never keep a real caller out: a real storescu sends its
  request within milliseconds of connecting.
- **Associations** (an A-ASSOCIATE-RQ came in): at most `max_associations` in all and
  `max_associations_per_host` from one calling host; one over is rejected with A-ASSOCIATE-RJ
  "rejected-transient, local-limit-exceeded" (the reason pynetdicom itself uses), naming the host
  in the log. pynetdicom's own limit is set above ours (it also counts closing connections).
- **PDU size**: the store lane (and pynetdicom's own reader, through `guard_reads`) refuses a PDU
  whose header claims more than the maximum we announced (`max_pdu_size`) before reading it; the
  store lane answers with A-ABORT. Nothing is allocated from a claimed length: see fastpath/_storelane.py.
"""
from __future__ import annotations

import logging
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from pynetdicom import evt


logger = logging.getLogger(__name__)

# Largest P-DATA PDU we accept. Bigger PDUs mean fewer fragments to reassemble; DCMTK's storescu
# sends at most what we announce here (its own ceiling is 128 kB).
MAX_PDU_SIZE = 1 << 20

# PDUs other than P-DATA (association negotiation, release, abort) have no negotiated maximum; an
# A-ASSOCIATE-RQ proposing every storage class with every transfer syntax stays far below this.
MAX_CONTROL_PDU_SIZE = 1 << 20


# pynetdicom's own association limit, out of the way of ours (see ConnectionGuard.configure_ae)
PYNETDICOM_LIMIT = 100_000


class LimitError(ValueError):
    """A timeout or limit value that cannot be used; names the setting."""


@dataclass(frozen=True)
class ConnectionLimits:
    """Timeouts (seconds) and limits of the listener; defaults drop a stalled peer within 30 s."""

    acse_timeout: float = 30.0
    dimse_timeout: float = 30.0
    network_timeout: float = 30.0
    max_associations: int = 16
    max_associations_per_host: int = 8
    max_pdu_size: int = MAX_PDU_SIZE

    def __post_init__(self) -> None:
        for name in ("acse_timeout", "dimse_timeout", "network_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value <= 86400:
                raise LimitError(f"{name.replace('_', '-')} {value!r} must be a number of seconds in (0, 86400]")
        for name in ("max_associations", "max_associations_per_host"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 1000:
                raise LimitError(f"{name.replace('_', '-')} {value!r} must be a whole number from 1 to 1000")
        if not isinstance(self.max_pdu_size, int) or not 4096 <= self.max_pdu_size <= (1 << 26):
            raise LimitError(f"max-pdu-size {self.max_pdu_size!r} must be from 4096 to {1 << 26} bytes")

    def pdu_limit(self, pdu_type: int) -> int:
        """Largest PDU length (the header's length field) accepted for this PDU type."""
        return self.max_pdu_size if pdu_type == 0x04 else max(self.max_pdu_size, MAX_CONTROL_PDU_SIZE)


@dataclass
class _Connection:
    assoc: Any
    host: str
    opened: float
    requested: bool = False


def raw_socket(assoc: Any) -> socket.socket | None:
    return getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)


def drop_connection(assoc: Any) -> None:
    """Close a connection from outside its threads: shutdown() wakes a DUL thread waiting in
    select or recv (it sees the peer gone), and an association thread still waiting for the
    A-ASSOCIATE-RQ is woken too instead of sleeping out its ACSE timeout."""
    sock = raw_socket(assoc)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass
    dul = getattr(assoc, "dul", None)
    to_user = getattr(dul, "to_user_queue", None)
    if to_user is not None and not getattr(assoc, "is_established", False):
        to_user.put(None)  # what receive_pdu returns on its ACSE timeout: the thread ends


class ConnectionGuard:
    """The listener's bookkeeping of open connections; see the module docstring."""

    def __init__(self, limits: ConnectionLimits):
        self.limits = limits
        self._lock = threading.Lock()
        self._open: dict[int, _Connection] = {}
        self.evicted = 0   # connections closed before they asked for an association
        self.refused: list[str] = []  # "host: reason" of associations rejected for a limit
        self._last_eviction_log = -1e9

    def handlers(self) -> list[tuple[Any, Any]]:
        return [(evt.EVT_CONN_OPEN, self._on_open), (evt.EVT_REQUESTED, self._on_requested),
                (evt.EVT_CONN_CLOSE, self._on_close)]

    def configure_ae(self, ae: Any) -> None:
        """pynetdicom's own timeouts and limit. Its limit is set out of the way: it counts every
        connection whose threads are still alive (garbage that it answered with an A-ABORT stays
        alive until the ACSE timeout), which refused real callers we had room for; ours counts
        associations, and connections waiting for a request are bounded by eviction."""
        ae.acse_timeout = self.limits.acse_timeout
        ae.dimse_timeout = self.limits.dimse_timeout
        ae.network_timeout = self.limits.network_timeout
        ae.maximum_associations = PYNETDICOM_LIMIT
        ae.maximum_pdu_size = self.limits.max_pdu_size

    @property
    def connections(self) -> int:
        with self._lock:
            self._prune()
            return len(self._open)

    def _prune(self) -> None:
        for key in [k for k, c in self._open.items() if _closed(c.assoc)]:
            del self._open[key]

    def _on_open(self, event: Any) -> None:
        assoc = event.assoc
        sock = raw_socket(assoc)
        if sock is not None:
            # every read and write waits at most this long: a peer that stops halfway through a
            # PDU cannot hold the network thread (pynetdicom leaves accepted sockets blocking)
            sock.settimeout(self.limits.dimse_timeout)
        guard_reads(assoc, self.limits)
        address = getattr(event, "address", None) or ("?", 0)
        host = str(address[0])
        victim = None
        with self._lock:
            self._prune()
            waiting = [c for c in self._open.values() if not c.requested]
            if len(waiting) >= self.limits.max_associations:
                victim = _idlest(waiting)
                del self._open[id(victim.assoc)]
                self.evicted += 1
            self._open[id(assoc)] = _Connection(assoc, host, time.monotonic())
        if victim is not None:
            now = time.monotonic()
            if now - self._last_eviction_log >= 10:  # a flood would otherwise log a line per connection
                self._last_eviction_log = now
                logger.warning("Closing a connection from %s that sent no association request in %.1f s: "
                               "%d connections without one are open and a new one from %s came in "
                               "(%d closed so far)", victim.host, now - victim.opened,
                               self.limits.max_associations, host, self.evicted)
            drop_connection(victim.assoc)

    def _on_requested(self, event: Any) -> None:
        assoc = event.assoc
        with self._lock:
            self._prune()
            mine = self._open.get(id(assoc))
            if mine is None:  # opened before we were bound, or evicted meanwhile
                mine = self._open[id(assoc)] = _Connection(assoc, _host(assoc), time.monotonic())
            associations = [c for c in self._open.values() if c.requested]
            same_host = sum(1 for c in associations if c.host == mine.host)
            reason = ""
            if len(associations) >= self.limits.max_associations:
                reason = f"{len(associations)} associations open (max-associations {self.limits.max_associations})"
            elif same_host >= self.limits.max_associations_per_host:
                reason = (f"{same_host} associations open from this host "
                          f"(max-associations-per-host {self.limits.max_associations_per_host})")
            if reason:
                del self._open[id(assoc)]
                self.refused.append(f"{mine.host}: {reason}")
                del self.refused[:-100]
            else:
                mine.requested = True
        if reason:
            logger.warning("Rejecting the association from %s: %s", mine.host, reason)
            # rejected-transient, service provider (presentation), local-limit-exceeded; pynetdicom
            # skips its own negotiation when a handler of EVT_REQUESTED rejected
            assoc.acse.send_reject(0x02, 0x03, 0x02)
            assoc.kill()

    def _on_close(self, event: Any) -> None:
        with self._lock:
            self._open.pop(id(event.assoc), None)


def _idlest(waiting: list[_Connection]) -> _Connection:
    """The connection to close for a new one: the oldest that has sent nothing yet. A real caller
    whose A-ASSOCIATE-RQ is already in its socket but not yet read (its association thread not
    yet scheduled while a flood of connections is being accepted) is not taken while a silent
    one is left; only when every waiting connection has bytes pending is the oldest taken."""
    by_age = sorted(waiting, key=lambda c: c.opened)
    for connection in by_age:
        if not _has_pending_bytes(connection.assoc):
            return connection
    return by_age[0]


def _has_pending_bytes(assoc: Any) -> bool:
    """True when the peer sent something not read yet (or closed): poll, never read, so nothing
    is taken from the association's own reader."""
    sock = raw_socket(assoc)
    if sock is None or sock.fileno() < 0:
        return False
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    try:
        return bool(poller.poll(0))
    except OSError:
        return False


def _closed(assoc: Any) -> bool:
    sock = raw_socket(assoc)
    return sock is None or sock.fileno() < 0


def _host(assoc: Any) -> str:
    return str(getattr(getattr(assoc, "requestor", None), "address", "?"))


def requestor_guard(limits: ConnectionLimits):
    """An EVT_CONN_OPEN handler for our own requestor associations that receive data (C-GET):
    what the listener's connections get in ConnectionGuard._on_open. pynetdicom leaves a
    requestor's socket blocking once connected, so a peer stopping halfway through a PDU held
    the network thread until the association was aborted from outside."""

    def on_open(event: Any) -> None:
        sock = raw_socket(event.assoc)
        if sock is not None:
            sock.settimeout(limits.dimse_timeout)
        guard_reads(event.assoc, limits)

    return on_open


def guard_reads(assoc: Any, limits: ConnectionLimits) -> None:
    """The connection's `recv(n)`, which pynetdicom's own PDU reader calls with the claimed PDU
    length (the store lane reads only headers through it): a length above our limits is refused
    before any byte is read (the connection is then closed, "Evt17"); the bytes are read into a
    buffer that grows as they arrive (recv_growing), and the whole read must finish
    within dimse_timeout, so a peer trickling a byte at a time is stopped too."""
    association_socket = getattr(getattr(assoc, "dul", None), "socket", None)
    if association_socket is None or getattr(association_socket.recv, "_guarded", False) \
            or not hasattr(association_socket, "socket"):
        return
    largest = max(limits.pdu_limit(0x04), limits.pdu_limit(0x01))

    def guarded_recv(nr_bytes: int) -> bytearray:
        if nr_bytes > largest:
            raise ConnectionError(f"PDU of {nr_bytes} bytes announced by {_host(assoc)}, more than the "
                                  f"{largest} we accept")
        return recv_growing(association_socket, nr_bytes, deadline=time.monotonic() + limits.dimse_timeout)

    guarded_recv._guarded = True  # type: ignore[attr-defined]
    association_socket.recv = guarded_recv


def recv_into(association_socket: Any, view: memoryview, deadline: float | None = None) -> int:
    """Fill `view` from an AssociationSocket's socket; fewer bytes only when the peer closed.
    Socket errors and timeouts are raised, as pynetdicom's AssociationSocket.recv raises them;
    TimeoutError also once `deadline` (time.monotonic()) passed between two reads (each read
    waits at most the socket's own timeout, so a trickling peer is stopped too)."""
    received, wanted = 0, len(view)
    while received < wanted:
        if deadline is not None and received and time.monotonic() > deadline:
            raise TimeoutError(f"{received} of {wanted} bytes arrived in the time allowed for one PDU")
        count = association_socket.socket.recv_into(view[received:], wanted - received)
        if not count:
            break
        received += count
    return received


# Bytes read before a buffer is made for the whole of a claimed length: a peer must send this much
# before its claim (already capped at the PDU limit) costs us more memory.
FIRST_READ = 1 << 16


def recv_growing(association_socket: Any, wanted: int, head: bytes = b"",
                 deadline: float | None = None) -> bytearray:
    """`head` + `wanted` bytes from the socket, in one buffer that is made for the whole only once
    FIRST_READ bytes actually arrived (never allocated from a claimed length alone); shorter only
    if the peer closed."""
    first = min(wanted, FIRST_READ)
    buffer = bytearray(len(head) + first)
    buffer[:len(head)] = head
    with memoryview(buffer) as view:
        received = recv_into(association_socket, view[len(head):], deadline)
    if received < first or first == wanted:
        del buffer[len(head) + received:]
        return buffer
    buffer.extend(bytes(wanted - first))
    with memoryview(buffer) as view:
        received += recv_into(association_socket, view[len(head) + first:], deadline)
    del buffer[len(head) + received:]
    return buffer
