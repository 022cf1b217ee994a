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
             retrieve: str = "move", *, replace: bool = True, tls: bool = False, tls_ca: str = "",
             tls_cert: str = "", tls_key: str = "", tls_server_name: str = "") -> RemoteNode:
    """Add (or replace) a remote DIMSE node; `tls` and the tls_* paths: see networking/tls.py."""
    name = (name or "").strip()
    if not name:
        raise NodeConfigError("a node needs a name")
    if retrieve not in RETRIEVE_METHODS:
        raise NodeConfigError(f"node {name}: retrieve method {retrieve!r} is not one of {', '.join(RETRIEVE_METHODS)}")
    if not host or any(c.isspace() for c in host):
        raise NodeConfigError(f"node {name}: host {host!r} is not valid")
    paths = {key: _existing_file(name, key, value) for key, value in
             (("tls_ca", tls_ca), ("tls_cert", tls_cert), ("tls_key", tls_key))}
    if bool(paths["tls_cert"]) != bool(paths["tls_key"]):
        raise NodeConfigError(f"node {name}: --tls-cert and --tls-key go together")
    node = RemoteNode(name=name, ae_title=validate_ae_title(ae_title), host=host,
                      port=validate_port(port), retrieve=retrieve, tls=bool(tls or any(paths.values())),
                      tls_server_name=(tls_server_name or "").strip(), **paths)
    return _save_node(folder, node, replace)


def _existing_file(name: str, what: str, path: str | None) -> str:
    """An absolute path to a readable file, or '' for none (a typo fails here, not at the first association)."""
    if not path:
        return ""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise NodeConfigError(f"{name}: {what.replace('_', '-')} {path!r} is not a file")
    return str(resolved)


AUTH_KINDS = ("", "basic", "bearer")


def add_dicomweb_node(folder: Path, name: str, url: str, *, auth: str = "", username: str = "",
                      secret: str = "", secret_env: str = "", qido_prefix: str = "", wado_prefix: str = "",
                      stow_prefix: str = "", tls_ca: str = "", tls_cert: str = "", tls_key: str = "",
                      replace: bool = True) -> RemoteNode:
    """Add (or replace) a DICOMweb node: QIDO-RS, WADO-RS and STOW-RS under `url` (+ the prefixes).

    `auth` basic takes `username` and a password, bearer a token; the secret is stored in the
    database's settings.json (never printed by `node ls`) unless `secret_env` names an
    environment variable to read it from when the node is used."""
    from urllib.parse import urlparse

    name = (name or "").strip()
    if not name:
        raise NodeConfigError("a node needs a name")
    parsed = urlparse((url or "").strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise NodeConfigError(f"node {name}: URL {url!r} is not an http:// or https:// address")
    auth = (auth or "").strip().lower()
    if auth not in AUTH_KINDS:
        raise NodeConfigError(f"node {name}: auth {auth!r} is not basic or bearer")
    if auth == "basic" and not username:
        raise NodeConfigError(f"node {name}: basic authentication needs --username")
    if auth and not (secret or secret_env):
        raise NodeConfigError(f"node {name}: {auth} authentication needs a "
                              f"{'password' if auth == 'basic' else 'token'} (--secret or --secret-env)")
    if not auth and (secret or username):
        raise NodeConfigError(f"node {name}: a username or secret needs --auth basic or bearer")
    prefixes = {}
    for key, value in (("qido_prefix", qido_prefix), ("wado_prefix", wado_prefix), ("stow_prefix", stow_prefix)):
        value = (value or "").strip().strip("/")
        if any(c.isspace() for c in value):
            raise NodeConfigError(f"node {name}: {key.replace('_', '-')} {value!r} is not a URL path")
        prefixes[key] = value
    paths = {key: _existing_file(name, key, value) for key, value in
             (("tls_ca", tls_ca), ("tls_cert", tls_cert), ("tls_key", tls_key))}
    node = RemoteNode(name=name, url=url.strip().rstrip("/"), retrieve="wado", auth=auth, username=username or "",
                      secret=secret or "", secret_env=secret_env or "", **prefixes, **paths)
    return _save_node(folder, node, replace)


def _save_node(folder: Path, node: RemoteNode, replace: bool) -> RemoteNode:
    name = node.name
    settings = DatabaseSettings.load(folder)
    if name in settings.nodes and not replace:
        raise NodeConfigError(f"node {name} already exists")
    settings.nodes[name] = node
    settings.save(folder)
    logger.info("Node %s: %s", name, describe(node))
    return node


def describe(node: RemoteNode) -> str:
    """One line for logs and `node ls`, without secrets."""
    if node.is_dicomweb:
        auth = f", {node.auth} auth" + (f" as {node.username}" if node.username else "") if node.auth else ""
        return f"DICOMweb {node.url}{auth}"
    return f"{node.ae_title}@{node.host}:{node.port} (retrieve by C-{node.retrieve.upper()}{', TLS' if node.tls else ''})"


def public_dict(node: RemoteNode) -> dict:
    """The node as a dict for printing: a stored secret shows as '***' (JSON output, `config show`)."""
    import dataclasses

    data = dataclasses.asdict(node)
    if data.get("secret"):
        data["secret"] = "***"
    data["kind"] = "dicomweb" if node.is_dicomweb else "dimse"
    return data


def secret_of(node: RemoteNode) -> str:
    """The node's password or token: from its environment variable when it names one, else stored."""
    import os

    if node.secret_env:
        value = os.environ.get(node.secret_env)
        if value is None:
            raise NodeConfigError(f"node {node.name}: the environment variable {node.secret_env} "
                                  f"(its {node.auth} secret) is not set")
        return value
    return node.secret


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
        return with_tls_defaults(settings.nodes[name], settings)
    except KeyError:
        raise NotFoundError(f"no node named {name!r} (known: {', '.join(sorted(settings.nodes)) or 'none'}); "
                            f"add it with `dicombrowser node add {name} --ae-title AE --host H --port P`") from None


def with_tls_defaults(node: RemoteNode, settings: DatabaseSettings) -> RemoteNode:
    """A TLS node's CA, certificate and key, each from the database's tls-* settings when the node
    names none (one certificate for the listener and for our requestors, as DCMTK tools use)."""
    import dataclasses

    if not node.tls or node.is_dicomweb:
        return node
    return dataclasses.replace(node, tls_ca=node.tls_ca or settings.tls_ca,
                               tls_cert=node.tls_cert or settings.tls_cert,
                               tls_key=node.tls_key or (settings.tls_key if not node.tls_cert else ""))


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


def set_tls(folder: Path, key: str, path: str) -> DatabaseSettings:
    """Set tls-cert, tls-key or tls-ca ('' clears it) of this database (networking/tls.py)."""
    import dataclasses

    field_name = key.replace("-", "_")
    if field_name not in ("tls_cert", "tls_key", "tls_ca"):
        raise NodeConfigError(f"{key!r} is not tls-cert, tls-key or tls-ca")
    value = _existing_file("config", field_name, path.strip()) if path and path.strip() else ""
    settings = dataclasses.replace(DatabaseSettings.load(folder), **{field_name: value})
    settings.save(folder)
    return settings


def set_fastpath(folder: Path, value: str | bool) -> DatabaseSettings:
    """Turn the fast DIMSE path (networking/fastpath) on or off for this database."""
    import dataclasses

    text = str(value).strip().lower()
    if text not in ("on", "off", "true", "false", "yes", "no", "1", "0"):
        raise NodeConfigError(f"fastpath {value!r} must be on or off")
    settings = dataclasses.replace(DatabaseSettings.load(folder), fastpath=text in ("on", "true", "yes", "1"))
    settings.save(folder)
    return settings
