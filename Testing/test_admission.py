"""Which waiting connection the listener closes for a new one (networking/admission.py).

Found in CI: during a flood of 200 silent connections a real storescu was closed because its
A-ASSOCIATE-RQ was already in its socket but its association thread had not read it yet. The
guard is driven here with real connected sockets and the events pynetdicom gives it.
"""
from __future__ import annotations

import socket
from contextlib import ExitStack
from types import SimpleNamespace

from DICOMBrowser.DICOMBrowserLib.networking.admission import ConnectionGuard, ConnectionLimits


def _association(server_side: socket.socket) -> SimpleNamespace:
    """What the guard reads of a pynetdicom Association: its DUL's socket, and the DUL queue."""
    return SimpleNamespace(dul=SimpleNamespace(socket=SimpleNamespace(socket=server_side, recv=None),
                                               to_user_queue=None), is_established=False)


def _open(guard: ConnectionGuard, stack: ExitStack) -> tuple[SimpleNamespace, socket.socket]:
    ours, peer = socket.socketpair()
    stack.enter_context(ours)
    stack.enter_context(peer)
    assoc = _association(ours)
    guard._on_open(SimpleNamespace(assoc=assoc, address=("127.0.0.1", 0)))
    return assoc, peer


def test_a_caller_whose_request_is_waiting_unread_is_not_closed_for_a_silent_one():
    guard = ConnectionGuard(ConnectionLimits(max_associations=3))
    with ExitStack() as stack:
        caller, caller_peer = _open(guard, stack)
        caller_peer.sendall(b"\x01\x00\x00\x00\x00\x10")  # the start of its A-ASSOCIATE-RQ, unread
        silent = [_open(guard, stack) for _ in range(2)]
        _open(guard, stack)  # a fourth connection: one of the waiting ones must go
        assert guard.evicted == 1
        assert caller.dul.socket.socket.fileno() >= 0
        caller_peer.settimeout(0.5)
        caller_peer.sendall(b"more")  # still connected: the silent oldest was closed instead
        oldest_silent_peer = silent[0][1]
        oldest_silent_peer.settimeout(5)
        assert oldest_silent_peer.recv(1) == b""


def test_when_every_waiting_connection_sent_bytes_the_oldest_goes():
    guard = ConnectionGuard(ConnectionLimits(max_associations=2))
    with ExitStack() as stack:
        first_peer = _open(guard, stack)[1]
        first_peer.sendall(b"garbage")
        _open(guard, stack)[1].sendall(b"garbage")
        _open(guard, stack)
        assert guard.evicted == 1
        first_peer.settimeout(5)
        assert first_peer.recv(1) == b""


def test_a_caller_whose_request_is_being_read_is_not_closed_for_a_silent_one():
    """Found in CI as well: the caller's reader has taken its A-ASSOCIATE-RQ from the socket (no
    bytes pending) but not yet decoded it (not `requested`), and connections of the flood are
    accepted after it. The guarded recv says the peer spoke; a silent connection goes instead."""
    guard = ConnectionGuard(ConnectionLimits(max_associations=3))
    with ExitStack() as stack:
        caller, _ = _open(guard, stack)

        def recv(n: int) -> bytes:  # what guard_reads installs; called once bytes arrived
            return b""

        recv.reading = True  # type: ignore[attr-defined]
        caller.dul.socket.recv = recv
        silent = [_open(guard, stack) for _ in range(2)]
        _open(guard, stack)
        assert guard.evicted == 1
        assert caller.dul.socket.socket.fileno() >= 0
        silent[0][1].settimeout(5)
        assert silent[0][1].recv(1) == b""
