"""The DICOM listener: a Storage SCP (every storage SOP class, retired ones included: `sopclasses`;
every transfer syntax, so a C-MOVE's instances come as stored) plus Verification, running on
pynetdicom's server thread so the GUI and the CLI share one implementation.

Received instances go through `storage.ReceivedInstanceWriter` (atomic write, indexing on its
own thread). A port in use is found by binding it: we never look for, or stop, whoever holds it.
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import Verification

from ..errors import NetworkError
from . import admission, fastpath, sopclasses
from .admission import ConnectionGuard, ConnectionLimits
from .nodes import validate_ae_title, validate_port
from .sockets import LISTENER_CONN_OPEN
from .storage import ReceivedInstanceWriter, store_handler

logger = logging.getLogger(__name__)

MAX_PDU_SIZE = admission.MAX_PDU_SIZE
LISTEN_BACKLOG = 128


@dataclass
class ListenerStatus:
    """A snapshot for the GUI's status line and `listen`'s summary."""

    running: bool
    ae_title: str
    port: int
    host: str
    received: int = 0
    received_bytes: int = 0
    indexed: int = 0
    failed: int = 0
    pending: int = 0
    rejected_callers: list[str] = field(default_factory=list)
    associations: int = 0
    connections: int = 0  # open now (with or without an association)
    evicted: int = 0  # connections closed because they sent no association request while others waited
    refused: list[str] = field(default_factory=list)  # "host: reason" of associations over a limit
    recovered: int = 0  # files acknowledged by an earlier run but not indexed, indexed at start


def check_port_free(host: str, port: int) -> None:
    """Raise NetworkError naming the port if it cannot be bound (in use, or privileged)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # same as pynetdicom's server
        try:
            probe.bind((host, port))
        except OSError as error:
            raise NetworkError(_bind_message(host, port, error)) from error


def _bind_message(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use by another program; stop that program or "
                f"choose another port (`dicombrowser listen --port N` or `dicombrowser config set port N`)")
    if error.errno == errno.EACCES:
        return (f"port {port} on {host} needs administrator rights (ports below 1024 are privileged); "
                f"use a port above 1024 such as 11112")
    return f"cannot listen on {host}:{port}: {error.strerror or error}"


class StorageListener:
    """Start/stop a Storage + Verification SCP writing into `database`; safe to start from a GUI."""

    def __init__(self, database: Any, *, ae_title: str = "DICOMBROWSER", port: int = 11112,
                 host: str = "0.0.0.0", allowed_callers: list[str] | None = None,
                 fsync: bool = False, on_indexed: Callable[[str, str], Any] | None = None,
                 require_called_aet: bool = True, limits: ConnectionLimits | None = None,
                 network_timeout: float | None = None, maximum_pdu_size: int | None = None,
                 ssl_context: Any = None):
        self.database = database
        self.ae_title = validate_ae_title(ae_title)
        self.port = validate_port(port)
        self.host = host
        self.allowed_callers = [validate_ae_title(a) for a in (allowed_callers or [])]
        self.require_called_aet = require_called_aet
        self.ssl_context = ssl_context  # tls.server_context(settings): TLS only when given
        limits = limits or ConnectionLimits()
        if network_timeout is not None or maximum_pdu_size is not None:  # the older keyword arguments
            limits = dataclasses.replace(limits, network_timeout=network_timeout or limits.network_timeout,
                                         max_pdu_size=maximum_pdu_size or limits.max_pdu_size)
        self.limits = limits
        self.guard = ConnectionGuard(limits)
        self.recovered = 0  # files an earlier listener left unindexed, indexed at start
        self.partial_removed = 0  # its temporary files removed at start
        self.writer = ReceivedInstanceWriter(database, fsync=fsync, on_indexed=on_indexed)
        self._server: Any = None
        self._rejected: list[str] = []
        self._associations = 0
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._server is not None

    def _make_ae(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        self.guard.configure_ae(ae)
        # every transfer syntax in every storage context: a C-MOVE's sender proposes the syntax
        # an instance is stored in, and we take it as it is (no transcoding asked of it)
        for sop_class in sopclasses.storage_classes():
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        ae.require_called_aet = self.require_called_aet
        if self.allowed_callers:
            ae.require_calling_aet = list(self.allowed_callers)
        return ae

    def start(self) -> ListenerStatus:
        """Bind and serve in the background; NetworkError names the port if it cannot be bound."""
        if self._server is not None:
            return self.status()
        # the connection guards reach into pynetdicom: on one without what they use, no listener
        # rather than one whose connections are unguarded (fastpath.InternalsError names it)
        fastpath.check_connection_internals()
        self._recover()
        ae = self._make_ae()
        handlers = [
            LISTENER_CONN_OPEN,
            (evt.EVT_C_STORE, store_handler(self.writer)),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_ESTABLISHED, self._on_established),
            *self.guard.handlers(),  # after LISTENER_CONN_OPEN: it guards the reader installed there
        ]
        try:
            server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers,
                                     ssl_context=self.ssl_context)
        except OSError as error:
            raise NetworkError(_bind_message(self.host, self.port, error)) from error
        fastpath.install_server(server)
        # socketserver's backlog of 5: a burst of connections (a flood, or a C-MOVE opening one
        # association per series) overflowed it and each dropped SYN cost its caller a 1 s retry
        server.socket.listen(LISTEN_BACKLOG)
        self.writer.start()
        self._server = server
        logger.info("Listening as %s on %s:%d%s, writing into %s", self.ae_title, self.host, self.port,
                    " (TLS)" if self.ssl_context is not None else "", self.writer.images_folder)
        return self.status()

    def _recover(self) -> None:
        """Before serving: index what an earlier listener acknowledged but did not index (killed,
        crashed, disk full) and remove its temporary files (indexer.reconcile)."""
        if not hasattr(self.database, "folder_leftovers"):
            return
        from ..errors import DICOMBrowserError
        from ..indexer import reconcile

        try:
            summary = reconcile(self.database)
        except (DICOMBrowserError, OSError) as error:  # the listener still starts; `db verify` reports the rest
            logger.error("Could not reconcile the database folder %s before listening: %s",
                         self.database.folder, error)
            return
        self.recovered, self.partial_removed = summary.indexed, summary.partial_removed

    def stop(self, wait_indexed: float = 60.0) -> ListenerStatus:
        """Stop accepting, end open associations, index what was received, and return the final status."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self.writer.wait_indexed(wait_indexed)
            self.writer.stop()
            logger.info("Listener %s on port %d stopped", self.ae_title, self.port)
        return self.status()

    def wait_indexed(self, timeout: float = 60.0) -> bool:
        return self.writer.wait_indexed(timeout)

    def wait_for(self, count: int, timeout: float = 60.0) -> bool:
        """Block until `count` instances were indexed or failed (tests, retrieve by C-MOVE)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.writer.counters
            if c.indexed + c.index_failed + c.write_failed >= count:
                return True
            time.sleep(0.02)
        return False

    def status(self) -> ListenerStatus:
        c = self.writer.counters
        with self._lock:
            rejected = list(self._rejected)
            associations = self._associations
        return ListenerStatus(running=self.running, ae_title=self.ae_title, port=self.port, host=self.host,
                              received=c.received, received_bytes=c.received_bytes, indexed=c.indexed,
                              failed=c.write_failed + c.index_failed, pending=self.writer.pending,
                              rejected_callers=rejected, associations=associations,
                              connections=self.guard.connections, evicted=self.guard.evicted,
                              refused=list(self.guard.refused), recovered=self.recovered)

    def _on_rejected(self, event: Any) -> None:
        calling = _calling_ae(event)
        with self._lock:
            self._rejected.append(calling)
        logger.warning("Rejected association from %s at %s:%s (calling AE not allowed or called AE wrong; "
                       "allowed callers: %s)", calling, event.assoc.requestor.address,
                       event.assoc.requestor.port, ", ".join(self.allowed_callers) or "any")

    def _on_established(self, event: Any) -> None:
        with self._lock:
            self._associations += 1
        logger.debug("Association from %s accepted", _calling_ae(event))

    def __enter__(self) -> "StorageListener":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _calling_ae(event: Any) -> str:
    title = getattr(event.assoc.requestor, "ae_title", "") or ""
    return title.strip() if isinstance(title, str) else title.decode("ascii", "replace").strip()
