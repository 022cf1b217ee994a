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
- **PDU size**: the store lane (and pynetdicom's own reader, through `fastpath.guard_reads`) refuses a PDU
  whose header claims more than the maximum we announced (`max_pdu_size`) before reading it; the
  store lane answers with A-ABORT. Nothing is allocated from a claimed length: see fastpath/_storelane.py.

This module is the policy; it acts on an association only through the fast-path package's
connection accessors (`fastpath.raw_socket`, `guard_reads`, `close_connection`,
`reject_association`), which hold every reach into pynetdicom internals, run whether the fast
path is on or off, and raise `fastpath.InternalsError` on a pynetdicom without what they use
(`fastpath.check_connection_internals`, called by the listener and C-GET before they start).
"""
from __future__ import annotations

import logging
import select
import threading
import time
from dataclasses import dataclass
from typing import Any

from pynetdicom import evt

from . import fastpath


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
        address = getattr(event, "address", None) or ("?", 0)
        host = str(address[0])
        guard_connection(assoc, self.limits, host)
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
            fastpath.close_connection(victim.assoc)

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
            fastpath.reject_association(assoc, 0x02, 0x03, 0x02)

    def _on_close(self, event: Any) -> None:
        with self._lock:
            self._open.pop(id(event.assoc), None)


def _idlest(waiting: list[_Connection]) -> _Connection:
    """The connection to close for a new one: the oldest that has sent nothing yet. A real caller
    is not taken while a silent one is left: neither one whose A-ASSOCIATE-RQ is in its socket
    but not yet read (its association thread not yet scheduled while a flood of connections is
    being accepted), nor one whose reader has taken the request from the socket but not yet
    decoded it (no bytes pending then, and not yet `requested`: CI saw a storescu closed in that
    window when connections of a flood were accepted after it). Only when every waiting
    connection has spoken is the oldest taken."""
    by_age = sorted(waiting, key=lambda c: c.opened)
    for connection in by_age:
        if not fastpath.started_reading(connection.assoc) and not _has_pending_bytes(connection.assoc):
            return connection
    return by_age[0]


def _has_pending_bytes(assoc: Any) -> bool:
    """True when the peer sent something not read yet (or closed): poll, never read, so nothing
    is taken from the association's own reader."""
    sock = fastpath.raw_socket(assoc)
    if sock is None or sock.fileno() < 0:
        return False
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    try:
        return bool(poller.poll(0))
    except OSError:
        return False


def _closed(assoc: Any) -> bool:
    sock = fastpath.raw_socket(assoc)
    return sock is None or sock.fileno() < 0


def _host(assoc: Any) -> str:
    return str(getattr(getattr(assoc, "requestor", None), "address", "?"))


def guard_connection(assoc: Any, limits: ConnectionLimits, peer: str) -> None:
    """Every read and write of the connection waits at most dimse_timeout (pynetdicom leaves
    accepted sockets, and a requestor's once connected, blocking: a peer that stopped halfway
    through a PDU held the network thread forever), and its PDU reads are bounded in size and
    time (fastpath.guard_reads)."""
    sock = fastpath.raw_socket(assoc)
    if sock is not None:
        sock.settimeout(limits.dimse_timeout)
    fastpath.guard_reads(assoc, limits.pdu_limit, limits.dimse_timeout, peer)


def requestor_guard(limits: ConnectionLimits):
    """An EVT_CONN_OPEN handler for our own requestor associations that receive data (C-GET):
    what the listener's connections get in ConnectionGuard._on_open (guard_connection)."""

    def on_open(event: Any) -> None:
        peer = getattr(getattr(event.assoc, "acceptor", None), "address", "?")  # the peer we called
        guard_connection(event.assoc, limits, str(peer))

    return on_open
