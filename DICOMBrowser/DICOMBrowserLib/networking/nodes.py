"""The local AE and the remote nodes, stored in the database's settings.json (config.DatabaseSettings).

Validation happens here, once, so the CLI, the GUI and the tests reject the same bad input with
the same message instead of writing settings a PACS would refuse later.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..config import DatabaseSettings, RemoteNode
from ..errors import NetworkError, NotFoundError

logger = logging.getLogger(__name__)

RETRIEVE_METHODS = ("move", "get")


class NodeConfigError(NetworkError):
    """An AE title, port or node definition is not valid; names the value."""


def validate_ae_title(ae_title: str) -> str:
    """AE titles are 1-16 characters of the default repertoire, no backslash or control characters."""
    title = (ae_title or "").strip()
    if not title or len(title) > 16:
        raise NodeConfigError(f"AE title {ae_title!r} must be 1 to 16 characters")
    if "\\" in title or any(ord(c) < 32 or ord(c) > 126 for c in title):
        raise NodeConfigError(f"AE title {ae_title!r} may not contain backslashes or control/non-ASCII characters")
    return title


def validate_port(port: int | str) -> int:
    try:
        value = int(port)
    except (TypeError, ValueError):
        raise NodeConfigError(f"port {port!r} is not a number") from None
    if not 1 <= value <= 65535:
        raise NodeConfigError(f"port {value} is outside 1-65535")
    return value


def set_ae_title(folder: Path, ae_title: str) -> DatabaseSettings:
    """Set the local AE title (ours, used as calling AE and by the listener)."""
    settings = DatabaseSettings.load(folder)
    settings.ae_title = validate_ae_title(ae_title)
    settings.save(folder)
    return settings


def set_port(folder: Path, port: int | str) -> DatabaseSettings:
    """Set the listener's port (default 11112: 104 needs root)."""
    settings = DatabaseSettings.load(folder)
    settings.port = validate_port(port)
    settings.save(folder)
    return settings


def set_allowed_callers(folder: Path, ae_titles: list[str]) -> DatabaseSettings:
    """Restrict the listener to these calling AE titles (empty list: accept any)."""
    settings = DatabaseSettings.load(folder)
    settings.allowed_callers = [validate_ae_title(t) for t in ae_titles]
    settings.save(folder)
    return settings


def add_node(folder: Path, name: str, ae_title: str, host: str, port: int | str,
             retrieve: str = "move", *, replace: bool = True) -> RemoteNode:
    """Add (or replace) a remote node."""
    name = (name or "").strip()
    if not name:
        raise NodeConfigError("a node needs a name")
    if retrieve not in RETRIEVE_METHODS:
        raise NodeConfigError(f"node {name}: retrieve method {retrieve!r} is not one of {', '.join(RETRIEVE_METHODS)}")
    if not host or any(c.isspace() for c in host):
        raise NodeConfigError(f"node {name}: host {host!r} is not valid")
    node = RemoteNode(name=name, ae_title=validate_ae_title(ae_title), host=host,
                      port=validate_port(port), retrieve=retrieve)
    settings = DatabaseSettings.load(folder)
    if name in settings.nodes and not replace:
        raise NodeConfigError(f"node {name} already exists")
    settings.nodes[name] = node
    settings.save(folder)
    logger.info("Node %s: %s@%s:%d (retrieve by C-%s)", name, node.ae_title, host, node.port, retrieve.upper())
    return node


def remove_node(folder: Path, name: str) -> RemoteNode:
    settings = DatabaseSettings.load(folder)
    if name not in settings.nodes:
        raise NotFoundError(f"no node named {name!r} (known: {', '.join(sorted(settings.nodes)) or 'none'})")
    node = settings.nodes.pop(name)
    settings.save(folder)
    return node


def get_node(folder: Path, name: str) -> RemoteNode:
    settings = DatabaseSettings.load(folder)
    try:
        return settings.nodes[name]
    except KeyError:
        raise NotFoundError(f"no node named {name!r} (known: {', '.join(sorted(settings.nodes)) or 'none'}); "
                            f"add it with `dicombrowser node add {name} --ae-title AE --host H --port P`") from None


def list_nodes(folder: Path) -> list[RemoteNode]:
    return [node for _, node in sorted(DatabaseSettings.load(folder).nodes.items())]


def set_listen_host(folder: Path, host: str) -> DatabaseSettings:
    """The interface the listener binds: 0.0.0.0 (all, for a PACS to reach us) or 127.0.0.1 (local only)."""
    host = (host or "").strip()
    if not host or any(c.isspace() for c in host):
        raise NodeConfigError(f"listener host {host!r} is not valid")
    settings = DatabaseSettings.load(folder)
    settings.listen_host = host
    settings.save(folder)
    return settings


def set_listener_limit(folder: Path, name: str, value: str | float | int) -> DatabaseSettings:
    """Set one of the listener's timeouts or limits (config.LISTENER_LIMIT_FIELDS, '-' or '_'),
    validated as the listener will use it (admission.ConnectionLimits)."""
    import dataclasses

    from ..config import LISTENER_LIMIT_FIELDS
    from .admission import ConnectionLimits, LimitError

    field_name = name.replace("-", "_")
    if field_name not in LISTENER_LIMIT_FIELDS:
        raise NodeConfigError(f"{name!r} is not a listener setting ({', '.join(LISTENER_LIMIT_FIELDS)})")
    settings = DatabaseSettings.load(folder)
    kind = float if field_name.endswith("timeout") else int
    try:
        number = kind(value)
        ConnectionLimits(**{**settings.listener_limits(), field_name: number})
    except (TypeError, ValueError) as error:
        message = str(error) if isinstance(error, LimitError) else \
            f"{name} {value!r} is not {'a number of seconds' if kind is float else 'a whole number'}"
        raise NodeConfigError(message) from None
    settings = dataclasses.replace(settings, **{field_name: number})
    settings.save(folder)
    return settings


def set_fsync(folder: Path, value: str | bool) -> DatabaseSettings:
    """Turn the fsync of received instances on or off ('on'/'off', also true/false, yes/no, 1/0)."""
    import dataclasses

    text = str(value).strip().lower()
    if text in ("on", "true", "yes", "1"):
        enabled = True
    elif text in ("off", "false", "no", "0"):
        enabled = False
    else:
        raise NodeConfigError(f"fsync {value!r} must be on or off")
    settings = dataclasses.replace(DatabaseSettings.load(folder), fsync=enabled)
    settings.save(folder)
    return settings
