"""TLS for DIMSE (PS3.15 B.1, the BCP 195 profiles): the listener's and our requestors' SSL contexts.

Why here, as contexts: pynetdicom takes an `ssl.SSLContext` for its server (`start_server(...,
ssl_context=)`) and one per association we request (`associate(..., tls_args=(context, name))`),
so TLS is a matter of building the right context from our settings and naming failures well.

- Listener: `config set tls-cert/tls-key` (PEM) make it speak TLS only; `tls-ca` makes it ask
  every caller for a certificate chaining to that CA (mutual TLS), else callers are not asked.
- Requestors: a node added with `--tls` is reached over TLS; its certificate must chain to the
  node's `--tls-ca` (else the database's tls-ca, else the system's CAs) and carry the node's
  host name (or `--tls-server-name`); we present the database's (or the node's) certificate.
- The listener's handshake happens on the association's own thread, at its first read, under
  the listener's timeouts (`LazyHandshakeContext`): pynetdicom wraps accepted sockets in its
  accept loop with the handshake done there, so one silent client held every other caller.
"""
from __future__ import annotations

import socket
import ssl
from typing import Any

from ..config import DatabaseSettings, RemoteNode
from ..errors import NetworkError

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2  # BCP 195 (RFC 9325): TLS 1.2 or later


class LazyHandshakeContext(ssl.SSLContext):
    """A server context whose sockets do their handshake at the first read (on the association's
    thread, with its socket timeout), not inside pynetdicom's accept loop."""

    def wrap_socket(self, sock: socket.socket, server_side: bool = False,  # type: ignore[override]
                    do_handshake_on_connect: bool = True, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return super().wrap_socket(sock, server_side, False, *args, **kwargs)


def _load_chain(context: ssl.SSLContext, cert: str, key: str, whose: str) -> None:
    try:
        context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as error:
        raise NetworkError(f"{whose}: cannot use certificate {cert} with key {key or '(in the same file)'}: "
                           f"{getattr(error, 'reason', None) or error}") from error


def _load_ca(context: ssl.SSLContext, ca: str, whose: str) -> None:
    try:
        context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as error:
        raise NetworkError(f"{whose}: cannot read the CA bundle {ca}: {error}") from error


def server_context(settings: DatabaseSettings) -> ssl.SSLContext | None:
    """The listener's context from the database's tls-cert/tls-key/tls-ca; None when not configured."""
    if not (settings.tls_cert and settings.tls_key):
        if settings.tls_cert or settings.tls_key:
            raise NetworkError("the listener's TLS needs both tls-cert and tls-key (`dicombrowser config set ...`)")
        return None
    context = LazyHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    _load_chain(context, settings.tls_cert, settings.tls_key, "listener")
    if settings.tls_ca:
        _load_ca(context, settings.tls_ca, "listener")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_args(node: RemoteNode) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's `tls_args` for a node with `tls` on (None otherwise): the peer's certificate
    verified and its name checked; ours presented when configured."""
    if not node.tls:
        return None
    # a node's CA bundle alone (a private PKI, as hospitals run), else the system's CAs
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the name
    context.minimum_version = MINIMUM_VERSION
    if node.tls_ca:
        _load_ca(context, node.tls_ca, f"node {node.name}")
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if node.tls_cert:
        _load_chain(context, node.tls_cert, node.tls_key, f"node {node.name}")
    return context, node.tls_server_name or node.host


def describe_failure(node: RemoteNode, timeout: float) -> str | None:
    """Why a TLS association failed, from one TLS handshake made after it did (None: not a TLS problem)."""
    args = client_args(node)
    if args is None:
        return None
    context, name = args
    try:
        with socket.create_connection((node.host, node.port), timeout=min(timeout, 5.0)) as raw:
            with context.wrap_socket(raw, server_hostname=name):
                return None
    except ssl.SSLCertVerificationError as error:
        return (f"its TLS certificate was not accepted: {error.verify_message} (check --tls-ca, and that the "
                f"certificate names {name!r})")
    except ssl.SSLError as error:
        return (f"the TLS handshake failed: {error.reason or error} (does the peer speak TLS on this port, "
                f"and does it accept our certificate?)")
    except (socket.timeout, TimeoutError):
        return "timed out in the TLS handshake (is the peer speaking plain DICOM on this port?)"
    except ConnectionResetError:
        return "the peer closed the connection during the TLS handshake (it may want our certificate)"
    except OSError:
        return None
