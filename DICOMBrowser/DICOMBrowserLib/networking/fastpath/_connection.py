"""The connection guards' reach into a pynetdicom association: its socket, its PDU reads, waking
and closing it, rejecting it. admission.py decides (timeouts, limits, which connection goes);
this module is how those decisions reach pynetdicom, through the package's interface
(`fastpath.raw_socket`, `guard_reads`, `close_connection`, `reject_association`,
`check_connection_internals`).

Unlike the rest of the package these run with the fast path on and off: they are protection,
not speed. So they cannot simply step aside on a pynetdicom they do not know. What they use of
pynetdicom 3.0 (checked by `check_connection_internals`, covered by the package's VERIFIED table):

- `Association.dul.socket` (the AssociationSocket) and its `.socket` (the connected socket):
  read timeouts, TCP_NODELAY, shutdown, polling for pending bytes;
- `AssociationSocket.recv(n)`, which pynetdicom's PDU reader calls with a PDU's claimed length:
  replaced by a bounded read (`guard_reads`);
- `Association.dul.to_user_queue`: a None put on it is what `receive_pdu` returns when the ACSE
  timeout passed, so an association thread waiting for the A-ASSOCIATE-RQ ends at once;
- `Association.acse.send_reject(result, source, diagnostic)` and `Association.kill()`.

On a pynetdicom without them `check_connection_internals` raises InternalsError naming what is
missing (the listener and C-GET call it before they start: no unguarded connection is served),
and the accessors raise it too; on one that has them but is not in VERIFIED it warns once.
The PDU read helpers (`recv_into`, `recv_growing`) are shared with the store lane.
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import Any, Callable

import pynetdicom

from ...errors import NetworkError

logger = logging.getLogger(__name__)


class InternalsError(NetworkError):
    """The installed pynetdicom lacks an internal the connection guards use; names it."""


_lock = threading.Lock()
_checked: set[str] = set()  # pynetdicom versions whose internals were found


def _error(what: str) -> InternalsError:
    from . import VERIFIED

    return InternalsError(f"pynetdicom {pynetdicom.__version__} lacks {what}, which the listener's connection "
                          f"guards (timeouts, PDU size, connection limits) use; they are verified on pynetdicom "
                          f"{', '.join(VERIFIED)} (pyproject.toml's pin)")


def missing_internals() -> list[str]:
    """What the guards use that the installed pynetdicom lacks ([] when it has it all), found on a
    throw-away acceptor Association and AssociationSocket (no thread started, nothing sent)."""
    from pynetdicom import AE
    from pynetdicom.association import Association
    from pynetdicom.transport import AssociationSocket

    missing: list[str] = []
    assoc = Association(AE(), "acceptor")
    dul = getattr(assoc, "dul", None)
    if dul is None:
        return ["Association.dul"]
    if not hasattr(dul, "socket"):
        missing.append("DULServiceProvider.socket")
    if not isinstance(getattr(dul, "to_user_queue", None), queue.Queue):
        missing.append("DULServiceProvider.to_user_queue (a queue.Queue)")
    if not callable(getattr(getattr(assoc, "acse", None), "send_reject", None)):
        missing.append("Association.acse.send_reject")
    if not callable(getattr(assoc, "kill", None)):
        missing.append("Association.kill")
    ours, peer = socket.socketpair()
    try:
        wrapped = AssociationSocket(assoc, client_socket=ours)
        if getattr(wrapped, "socket", None) is not ours:
            missing.append("AssociationSocket.socket")
        if not callable(getattr(wrapped, "recv", None)):
            missing.append("AssociationSocket.recv")
    except Exception as error:  # any other constructor is a pynetdicom we do not know
        missing.append(f"AssociationSocket(assoc, client_socket=...) ({error})")
    finally:
        ours.close()
        peer.close()
    return missing


def check_connection_internals() -> None:
    """Raise InternalsError unless the installed pynetdicom has what the connection guards use;
    on a version off the VERIFIED table that has it, warn once. Checked once per version."""
    from . import VERIFIED

    version = pynetdicom.__version__
    with _lock:
        if version in _checked:
            return
        missing = missing_internals()
        if missing:
            raise _error(", ".join(missing))
        _checked.add(version)
    if version not in VERIFIED:
        logger.warning("pynetdicom %s is not one the connection guards were verified on (%s): the internals they "
                       "use were found, but run the network tests (hostile peers) before relying on them",
                       version, ", ".join(VERIFIED))


def _association_socket(assoc: Any) -> Any:
    """The association's AssociationSocket (None before it has one); InternalsError without a DUL."""
    try:
        return assoc.dul.socket
    except AttributeError:
        raise _error("Association.dul.socket") from None


def raw_socket(assoc: Any) -> socket.socket | None:
    """The association's connected socket (an ssl.SSLSocket with TLS); None before it connected
    or once pynetdicom closed it."""
    association_socket = _association_socket(assoc)
    if association_socket is None:
        return None
    try:
        return association_socket.socket
    except AttributeError:
        raise _error("AssociationSocket.socket") from None


def close_connection(assoc: Any) -> None:
    """Close a connection from outside its threads: shutdown() wakes a DUL thread waiting in
    select or recv (it sees the peer gone), and an association thread still waiting for the
    A-ASSOCIATE-RQ is woken too instead of sleeping out its ACSE timeout."""
    sock = raw_socket(assoc)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass
    if not getattr(assoc, "is_established", False):
        try:
            to_user = assoc.dul.to_user_queue
        except AttributeError:
            raise _error("DULServiceProvider.to_user_queue") from None
        if to_user is not None:
            to_user.put(None)  # what receive_pdu returns on its ACSE timeout: the thread ends


def reject_association(assoc: Any, result: int, source: int, diagnostic: int) -> None:
    """Answer an A-ASSOCIATE-RQ with A-ASSOCIATE-RJ (PS3.8 9.3.4) and end the association; from
    an EVT_REQUESTED handler (pynetdicom then skips its own negotiation)."""
    try:
        send_reject = assoc.acse.send_reject
    except AttributeError:
        raise _error("Association.acse.send_reject") from None
    send_reject(result, source, diagnostic)
    assoc.kill()


def guard_reads(assoc: Any, pdu_limit: Callable[[int], int], timeout: float, peer: str = "the peer") -> None:
    """Bound the association's `recv(n)`, which pynetdicom's own PDU reader calls with the claimed
    PDU length (the store lane reads only headers through it, and asks `pdu_limit` here): a
    length above `pdu_limit(pdu_type)` for every type is refused before any byte is read
    (ConnectionError: pynetdicom then closes the connection, Evt17); the bytes are read into a
    buffer that grows as they arrive (recv_growing), and the whole read must finish within
    `timeout` seconds, so a peer trickling a byte at a time is stopped too. Once per
    association; a no-op before it has a socket."""
    association_socket = _association_socket(assoc)
    if association_socket is None or getattr(getattr(association_socket, "recv", None), "pdu_limit", None):
        return
    if not hasattr(association_socket, "socket"):
        raise _error("AssociationSocket.socket")
    largest = max(pdu_limit(0x04), pdu_limit(0x01))

    def guarded_recv(nr_bytes: int) -> bytearray:
        guarded_recv.reading = True  # type: ignore[attr-defined]  # the peer spoke: see started_reading
        if nr_bytes > largest:
            raise ConnectionError(f"PDU of {nr_bytes} bytes announced by {peer}, more than the {largest} we accept")
        return recv_growing(association_socket, nr_bytes, deadline=time.monotonic() + timeout)

    guarded_recv.pdu_limit = pdu_limit  # type: ignore[attr-defined]
    guarded_recv.reading = False  # type: ignore[attr-defined]
    association_socket.recv = guarded_recv


def started_reading(assoc: Any) -> bool:
    """Whether the association's reader has begun reading a PDU (guard_reads' recv was called:
    pynetdicom and the store lane call it only once bytes arrived). A caller whose
    A-ASSOCIATE-RQ has been taken from its socket but not yet decoded shows no pending bytes and
    is not yet `requested`: this tells it from a silent connection. False without a guard."""
    recv = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "recv", None)
    return bool(getattr(recv, "reading", False))


def pdu_limit(assoc: Any, pdu_type: int) -> int | None:
    """The largest PDU length of `pdu_type` that guard_reads allows on this association; None
    when it has no guard."""
    limit = getattr(getattr(getattr(getattr(assoc, "dul", None), "socket", None), "recv", None), "pdu_limit", None)
    return limit(pdu_type) if limit else None


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

