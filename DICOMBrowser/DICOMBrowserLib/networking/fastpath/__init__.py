"""Everything that reaches into pynetdicom internals: the fast DIMSE path behind one switch, and
the connection guards' accessors, both verified on the versions of one table (VERIFIED).

Why one boundary: the receive and send speed we measured (docs/networking.md) comes from
replacing parts of pynetdicom 3.0 (its DUL and association loops, its C-STORE decoding and
encoding, its PDU reads), and the listener's protection (admission.py: timeouts, PDU size,
connection limits) needs its association's socket, reader and queues. Those parts are private
and change between releases. So the rest of the code reaches them only through this interface.

The fast path (speed; off means pynetdicom's own path, still correct, slower):

- `install_server(server)`: the listener's server (its supported contexts copied cheaply);
- `install_acceptor(assoc)`: a listener association (event-driven loops, the store lane);
- `install_requestor(assoc)`: one of our requestor associations (the race-free association
  loop; the store lane for a C-GET);
- `send_as_stored(assoc, path, message_id)` / `resume(assoc)`: a C-STORE of a file as stored;
- `enabled()` and `reason()`: whether it is on, and why (not).

It is off when the installed pynetdicom is not one of VERIFIED (logged once as a WARNING, shown
by `config show`), when DICOMBROWSER_FASTPATH=0 is in the environment, or when the database's
`fastpath` setting is off (`config set fastpath off`; applied with `apply_settings`).

The connection accessors (protection; on whatever the switch says, `_connection`):

- `check_connection_internals()`: raises InternalsError naming what the installed pynetdicom
  lacks (the listener and C-GET call it before they start), warns once on a version off
  VERIFIED that has it all;
- `raw_socket(assoc)`, `guard_reads(assoc, pdu_limit, timeout, peer)`,
  `close_connection(assoc)`, `reject_association(assoc, result, source, diagnostic)`: each
  raises InternalsError rather than doing nothing when what it needs is not there.

The modules doing the work are this package's private `_acceptor` (association and DUL loops,
PDU reads, the server's context copy), `_storelane` (C-STOREs served on the DUL thread),
`_storesend` (C-STORE of a file as stored), `_commands` (C-STORE command sets) and `_connection`
(the accessors above, and the bounded PDU reads both paths use); docs/networking.md says what
each replaces. Nothing outside this package imports them (the tests that check them do).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any

import pynetdicom

from ._connection import (InternalsError, check_connection_internals, close_connection, guard_reads,
                          raw_socket, reject_association, started_reading)

__all__ = ["ENVIRONMENT", "VERIFIED", "InternalsError", "apply_settings", "check_connection_internals",
           "close_connection", "enabled", "guard_reads", "install_acceptor", "install_requestor", "install_server",
           "raw_socket", "reason", "reject_association", "resume", "send_as_stored", "started_reading", "status"]

logger = logging.getLogger(__name__)

ENVIRONMENT = "DICOMBROWSER_FASTPATH"

# pynetdicom releases the fast path and the connection accessors were checked against: the whole
# network suite passed with the fast path on and off (.ci/run runs both; the hostile-peer tests
# exercise the accessors on both), and bench_network.py measured it. Add a version here only
# after doing the same; any other version runs pynetdicom's own path, and the accessors warn.
VERIFIED: dict[str, str] = {
    "3.0.4": "2026-12-03: network tests on both paths, benchmarks/bench_network.py",
}

_lock = threading.Lock()
_setting = True  # the database's `fastpath` setting, last applied
_warned: set[str] = set()


def apply_settings(settings: Any) -> None:
    """Follow a database's `fastpath` setting (process-wide: associations opened from now on)."""
    global _setting
    with _lock:
        _setting = bool(getattr(settings, "fastpath", True))


def _environment_off() -> bool:
    return os.environ.get(ENVIRONMENT, "").strip().lower() in ("0", "off", "no", "false")


def reason(setting: bool | None = None) -> str:
    """Why the fast path is off, or what it runs on when it is on."""
    version = pynetdicom.__version__
    if _environment_off():
        return f"off: {ENVIRONMENT}={os.environ.get(ENVIRONMENT)}"
    if not (_setting if setting is None else setting):
        return "off: the database's fastpath setting is off"
    if version not in VERIFIED:
        return (f"off: pynetdicom {version} is not one it was verified on ({', '.join(VERIFIED)}); "
                f"pynetdicom's own (slower) path is used")
    return f"on: pynetdicom {version} (verified)"


def enabled(setting: bool | None = None) -> bool:
    """True when associations get the fast path; a pynetdicom version off the table is logged once."""
    why = reason(setting)
    on = why.startswith("on")
    if not on and "not one it was verified on" in why and why not in _warned:
        _warned.add(why)
        logger.warning("Fast DIMSE path %s", why)
    return on


def status(settings: Any) -> tuple[bool, str]:
    """(on, why) for a database's settings (`config show`)."""
    setting = bool(getattr(settings, "fastpath", True))
    return enabled(setting), reason(setting)


def install_server(server: Any) -> bool:
    """The listener's server: its supported contexts deep-copied cheaply for each association; False: untouched."""
    if not enabled():
        return False
    from . import _acceptor

    _acceptor.share_syntaxes_on_copy(server)
    return True


def install_acceptor(assoc: Any) -> bool:
    """Event-driven loops and the store lane on a listener association; False: pynetdicom's path."""
    if not enabled():
        return False
    from . import _acceptor

    return _acceptor.install(assoc)


def install_requestor(assoc: Any) -> bool:
    """The race-free association loop (and the store lane for a C-GET) on our requestor; False: pynetdicom's."""
    if not enabled():
        return False
    from . import _acceptor

    return _acceptor.install_requestor(assoc)


def send_as_stored(assoc: Any, path: str, message_id: int) -> Any:
    """C-STORE a Part 10 file as stored (_storesend); None: not sent, the caller uses send_c_store."""
    if not enabled():
        return None
    from . import _storesend

    return _storesend.send_as_stored(assoc, path, message_id)


def resume(assoc: Any) -> None:
    """Let an association loop parked by send_as_stored run again (a no-op otherwise)."""
    from . import _storesend

    _storesend.resume(assoc)
