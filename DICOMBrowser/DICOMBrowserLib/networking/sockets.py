"""Turn Nagle's algorithm off on every association socket we own.

pynetdicom 3.0.4 never sets TCP_NODELAY. DICOM exchanges are small request/response pairs (a
C-STORE-RSP, an A-RELEASE, the last P-DATA fragment of a command), so with Nagle on each one can
wait for the peer's delayed ACK (~40 ms on Linux): 100 small instances took 35x longer.

The hook is pynetdicom's own EVT_CONN_OPEN notification: it fires on both sides as soon as
the TCP connection exists (requestor: after connect(); acceptor: after accept()) and before any
PDU is exchanged; the connected socket is an internal of the association, reached through
`fastpath.raw_socket` (one of the connection accessors, on with the fast path off too). So every
AE we create binds `nagle_off_handler` for EVT_CONN_OPEN; no subclassing needed.
DCMTK 3.6.7 tools set TCP_NODELAY only when TCP_NODELAY=1 is in their environment (`dcmtk_env`).

The same EVT_CONN_OPEN handlers also hand each association to the fast path (networking/fastpath):
the listener's get event-driven association and DUL loops (`fastpath.install_acceptor`), our
requestors an association loop without pynetdicom's pause race (`fastpath.install_requestor`;
that race lost C-STORE responses of `send` now and then). With the fast path off (switched off,
or a pynetdicom it was not verified on) both keep pynetdicom's own loops untouched.
"""
from __future__ import annotations

import logging
import os
import socket

from pynetdicom import evt

from . import fastpath

logger = logging.getLogger(__name__)


def set_nodelay(sock: socket.socket | None) -> bool:
    """Set TCP_NODELAY on a socket; False when it is not a TCP socket (or already closed)."""
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return True
    except OSError as error:
        logger.debug("TCP_NODELAY not set: %s", error)
        return False


def _nagle_off(assoc: object) -> None:
    try:
        set_nodelay(fastpath.raw_socket(assoc))
    except fastpath.InternalsError as error:  # speed only; the listener and C-GET refuse to start on it
        logger.warning("TCP_NODELAY not set: %s", error)


def nagle_off_handler(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler of our requestors: TCP_NODELAY on the connection's socket, and the
    association loop without pynetdicom's pause race (fastpath.install_requestor). Never raises."""
    _nagle_off(event.assoc)
    if getattr(event.assoc, "is_requestor", False):
        fastpath.install_requestor(event.assoc)


def acceptor_handler(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler for the listener: Nagle off, and event-driven association and DUL loops
    (fastpath.install_acceptor) when the fast path is on. Never raises."""
    _nagle_off(event.assoc)
    fastpath.install_acceptor(event.assoc)  # off: pynetdicom's own loops, untouched


NAGLE_OFF = (evt.EVT_CONN_OPEN, nagle_off_handler)
LISTENER_CONN_OPEN = (evt.EVT_CONN_OPEN, acceptor_handler)


def dcmtk_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for DCMTK tools with Nagle off (DCMTK reads TCP_NODELAY from the environment)."""
    env = dict(os.environ if base is None else base)
    env["TCP_NODELAY"] = "1"
    return env
