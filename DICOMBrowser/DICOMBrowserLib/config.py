"""Where databases live and what each one is configured with.

A database is a folder. Which folder: `--database DIR`, else $DICOMBROWSER_DATABASE, else a
per-user default. Settings that belong to a database (local AE title, port, remote nodes) are
kept in `settings.json` inside that folder so they travel with it; the list of recently used
databases is per user.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

DATABASE_ENV = "DICOMBROWSER_DATABASE"
SETTINGS_FILE = "settings.json"
MAX_RECENT = 10
LISTENER_LIMIT_FIELDS = ("acse_timeout", "dimse_timeout", "network_timeout", "max_associations",
                         "max_associations_per_host", "max_pdu_size")


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dicombrowser"


def user_config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dicombrowser" / "config.json"


def default_database_folder() -> Path:
    return user_data_dir() / "Database"


def resolve_database_folder(explicit: str | os.PathLike | None = None) -> Path:
    """The database folder to use: explicit argument, then the environment, then the default."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(DATABASE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return default_database_folder()


@dataclass
class RemoteNode:
    """A PACS or other DICOM peer, as the user configured it."""

    name: str
    ae_title: str = ""
    host: str = ""
    port: int = 0
    retrieve: str = "move"  # "move" (C-MOVE to our listener) or "get" (C-GET); "wado" for DICOMweb
    # DIMSE over TLS (networking/tls.py): this node's CA bundle, our certificate and key for it
    # (else the database's tls_* settings), the name its certificate must carry ('' = host)
    tls: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_server_name: str = ""
    # A DICOMweb service (networking/dicomweb.py) when `url` is set: QIDO/WADO/STOW-RS prefixes
    # ('' = the service's root), auth "" / "basic" (username + secret) / "bearer" (secret = token);
    # `secret_env` names an environment variable read at use time instead of a stored secret
    url: str = ""
    qido_prefix: str = ""
    wado_prefix: str = ""
    stow_prefix: str = ""
    auth: str = ""
    username: str = ""
    secret: str = ""
    secret_env: str = ""

    @property
    def is_dicomweb(self) -> bool:
        return bool(self.url)


@dataclass
class DatabaseSettings:
    """Per-database settings, stored as JSON beside the SQLite files."""

    ae_title: str = "DICOMBROWSER"
    port: int = 11112
    nodes: dict[str, RemoteNode] = field(default_factory=dict)
    allowed_callers: list[str] = field(default_factory=list)  # empty: accept any calling AE
    listen_host: str = "0.0.0.0"  # interface the listener binds; 127.0.0.1 keeps it local
    # the listener's timeouts (seconds) and limits, see networking/admission.py (ConnectionLimits)
    acse_timeout: float = 30.0
    dimse_timeout: float = 30.0
    network_timeout: float = 30.0
    max_associations: int = 16
    max_associations_per_host: int = 8
    max_pdu_size: int = 1 << 20
    # received instances (listener, C-GET) flushed to disk before Success: see docs/networking.md
    fsync: bool = False
    # TLS for DIMSE (networking/tls.py): the listener's certificate and key (both set: it speaks
    # TLS only), the CA bundle that callers' certificates are checked against ('' = not asked for),
    # and the defaults our requestors present to nodes with `tls` on
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    # DICOMBROWSER_FASTPATH=0 overrides (networking/fastpath): pynetdicom's own DIMSE path when off
    fastpath: bool = True

    def listener_limits(self) -> dict[str, float | int]:
        """The keyword arguments of networking.admission.ConnectionLimits."""
        return {name: getattr(self, name) for name in LISTENER_LIMIT_FIELDS}

    @classmethod
    def load(cls, folder: Path) -> "DatabaseSettings":
        path = Path(folder) / SETTINGS_FILE
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text(encoding="utf-8"))
        known_node = RemoteNode.__dataclass_fields__
        nodes = {name: RemoteNode(**{k: v for k, v in node.items() if k in known_node})
                 for name, node in raw.pop("nodes", {}).items()}
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(nodes=nodes, **known)

    def save(self, folder: Path) -> None:
        path = Path(folder) / SETTINGS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)


def recent_databases() -> list[Path]:
    path = user_config_file()
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [Path(p) for p in raw.get("recent_databases", [])]


def remember_database(folder: Path) -> None:
    """Put a database first in the user's recent list (for the browser's database switcher)."""
    path = user_config_file()
    try:
        raw = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        raw = {}
    folder_str = str(Path(folder).resolve())
    recent = [p for p in raw.get("recent_databases", []) if p != folder_str]
    raw["recent_databases"] = [folder_str, *recent][:MAX_RECENT]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(raw, indent=2), encoding="utf-8")
    except OSError:
        pass  # a read-only home must not stop the user from working
