"""DICOM networking on pynetdicom: the local listener (Storage SCP), and the SCU side (echo, find,
move, get, store) that talks to PACS nodes configured in the database settings.

Modules: `nodes` (local AE and remote node configuration), `sockets` (Nagle off),
`storage` (atomic write of received instances, indexing off the receive thread),
`sopclasses` (the storage SOP classes we accept), `listener` (the Storage SCP), `admission` (the listener's timeouts, connection and association
limits, PDU size), `scu` (the requests we make).
"""
from __future__ import annotations

from .nodes import NodeConfigError, add_node, get_node, list_nodes, remove_node, set_ae_title, set_port
from .listener import ListenerStatus, StorageListener
from .scu import FindResult, RetrieveSummary, SendSummary, echo, find, get, move, send
from . import service

__all__ = [
    "NodeConfigError", "add_node", "get_node", "list_nodes", "remove_node", "set_ae_title", "set_port",
    "ListenerStatus", "StorageListener",
    "FindResult", "RetrieveSummary", "SendSummary", "echo", "find", "get", "move", "send", "service",
]
