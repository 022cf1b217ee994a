"""Network commands: config, node, echo, listen, find, retrieve, send (thin shells over the logic)."""
from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import asdict
from typing import Any

import click

from ..errors import NetworkError
from . import pass_cli

logger = logging.getLogger(__name__)

LIMIT_KEYS = ("acse-timeout", "dimse-timeout", "network-timeout", "max-associations",
              "max-associations-per-host", "max-pdu-size")
TLS_KEYS = ("tls-cert", "tls-key", "tls-ca")
CONFIG_KEYS = ("ae-title", "port", "host", "allowed-callers", *LIMIT_KEYS, "fsync", *TLS_KEYS, "fastpath")


def _quiet_pynetdicom() -> None:
    """pynetdicom logs every refused connection as ERROR; our NetworkError already says it in one line."""
    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


def _progress_printer(label: str):
    """A progress callback printing at most twice a second on stderr."""
    last = [0.0]

    def progress(completed: int, remaining: int, failed: int, warning: int = 0) -> bool:
        now = time.monotonic()
        if now - last[0] >= 0.5 or remaining == 0:
            last[0] = now
            click.echo(f"{label}: {completed} completed, {remaining} remaining, {failed} failed"
                       + (f", {warning} warning" if warning else ""), err=True)
        return False

    return progress


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _security(node: Any) -> str:
    """What `node ls` says about a node's authentication and TLS (never the secret)."""
    if node.is_dicomweb:
        auth = f"{node.auth}" + (f" ({node.username})" if node.username else "") if node.auth else "none"
        if node.auth and node.secret_env:
            auth += f", secret from ${node.secret_env}"
        return auth + (", https" if node.url.startswith("https:") else "")
    return "tls" if node.tls else "none"


def register(cli: click.Group) -> None:
    """Add the network commands to the `dicombrowser` group."""

    @cli.group("config")
    def config_group() -> None:
        """Local network settings of this database (AE title, port, listener host, allowed callers)."""

    @config_group.command("set")
    @click.argument("key", type=click.Choice(CONFIG_KEYS))
    @click.argument("value")
    @pass_cli
    def config_set(state, key: str, value: str) -> None:
        """Set KEY to VALUE: ae-title, port, host (listener interface), allowed-callers (comma list, '' = any);
        the listener's acse-timeout, dimse-timeout, network-timeout (seconds, default 30),
        max-associations (16), max-associations-per-host (8), max-pdu-size (bytes, 1048576);
        fsync on|off (received instances flushed to disk before they are acknowledged; default off);
        tls-cert, tls-key (PEM files: the listener speaks TLS only when both are set, and our
        requestors present them to nodes added with --tls), tls-ca (CA bundle peers are checked
        against; '' clears any of them); fastpath on|off (our faster DIMSE receive/send path;
        off: pynetdicom's own; DICOMBROWSER_FASTPATH=0 turns it off too)."""
        from ..networking import nodes

        folder = state.logic().database_folder
        if key in LIMIT_KEYS:
            nodes.set_listener_limit(folder, key, value)
        elif key == "fsync":
            value = "on" if nodes.set_fsync(folder, value).fsync else "off"
        elif key in TLS_KEYS:
            value = getattr(nodes.set_tls(folder, key, value), key.replace("-", "_")) or "(none)"
        elif key == "fastpath":
            value = "on" if nodes.set_fastpath(folder, value).fastpath else "off"
        elif key == "ae-title":
            settings = nodes.set_ae_title(folder, value)
        elif key == "port":
            settings = nodes.set_port(folder, value)
        elif key == "host":
            settings = nodes.set_listen_host(folder, value)
        else:
            settings = nodes.set_allowed_callers(folder, [v for v in value.split(",") if v.strip()])
        click.echo(f"{key} = {value if key != 'allowed-callers' else ','.join(settings.allowed_callers) or '(any)'}")

    @config_group.command("show")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @pass_cli
    def config_show(state, as_json: bool) -> None:
        """Show the local AE title, port, listener host, allowed callers and nodes."""
        from ..networking import fastpath, nodes

        settings = state.logic().settings
        data = asdict(settings)
        data["nodes"] = {name: nodes.public_dict(node) for name, node in settings.nodes.items()}
        active, why = fastpath.status(settings)
        data["fastpath_active"], data["fastpath_reason"] = active, why
        if as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=True))
            return
        click.echo(f"ae-title: {settings.ae_title}\nport: {settings.port}\nhost: {settings.listen_host}\n"
                   f"allowed-callers: {', '.join(settings.allowed_callers) or '(any)'}\nnodes: {len(settings.nodes)}")
        for key in LIMIT_KEYS:
            click.echo(f"{key}: {getattr(settings, key.replace('-', '_'))}")
        click.echo(f"fsync: {'on' if settings.fsync else 'off'}")
        for key in TLS_KEYS:
            click.echo(f"{key}: {getattr(settings, key.replace('-', '_')) or '(none)'}")
        click.echo(f"fastpath: {'on' if active else 'OFF'} ({why})")

    @cli.group("node")
    def node_group() -> None:
        """Remote DICOM nodes (PACS) of this database."""

    @node_group.command("add")
    @click.argument("name")
    @click.option("--ae-title", help="DIMSE: the node's AE title (called AE).")
    @click.option("--host", help="DIMSE: host name or IP address.")
    @click.option("--port", type=int, help="DIMSE: DICOM port.")
    @click.option("--retrieve", type=click.Choice(["move", "get"]), default="move", show_default=True,
                  help="DIMSE: C-MOVE to our listener, or C-GET (no listener needed).")
    @click.option("--tls", is_flag=True, help="DIMSE over TLS (certificate and key: config set tls-cert/tls-key).")
    @click.option("--tls-ca", help="CA bundle (PEM) the node's certificate must chain to (default: tls-ca setting; "
                                   "DICOMweb: the system's).")
    @click.option("--tls-cert", help="Our certificate (PEM) for this node (default: the tls-cert setting).")
    @click.option("--tls-key", help="Our private key (PEM) for this node (default: the tls-key setting).")
    @click.option("--tls-server-name", help="The name the node's certificate must carry (default: --host).")
    @click.option("--url", help="DICOMweb: the service's base URL (e.g. http://pacs:8042/dicom-web).")
    @click.option("--auth", type=click.Choice(["basic", "bearer"]), help="DICOMweb: HTTP authentication.")
    @click.option("--username", help="DICOMweb: user name for --auth basic.")
    @click.option("--secret", help="DICOMweb: password (basic) or token (bearer), stored in the database settings.")
    @click.option("--secret-env", help="DICOMweb: environment variable holding the secret (read at use, not stored).")
    @click.option("--qido-prefix", help="DICOMweb: path prefix of QIDO-RS under the URL.")
    @click.option("--wado-prefix", help="DICOMweb: path prefix of WADO-RS under the URL.")
    @click.option("--stow-prefix", help="DICOMweb: path prefix of STOW-RS under the URL.")
    @pass_cli
    def node_add(state, name: str, ae_title: str | None, host: str | None, port: int | None, retrieve: str,
                 tls: bool, tls_ca: str | None, tls_cert: str | None, tls_key: str | None,
                 tls_server_name: str | None, url: str | None, **web: str | None) -> None:
        """Add or replace node NAME: a DIMSE peer (--ae-title, --host, --port) or a DICOMweb service (--url)."""
        from ..networking import nodes

        folder = state.logic().database_folder
        if url:
            if ae_title or host or port:
                raise click.UsageError("a node is DIMSE (--ae-title/--host/--port) or DICOMweb (--url), not both")
            node = nodes.add_dicomweb_node(folder, name, url, tls_ca=tls_ca or "", tls_cert=tls_cert or "",
                                           tls_key=tls_key or "", **{k: v or "" for k, v in web.items()})
        else:
            if not (ae_title and host and port):
                raise click.UsageError("a DIMSE node needs --ae-title, --host and --port (or --url for DICOMweb)")
            if any(web.values()):
                raise click.UsageError("--auth, --username, --secret and the prefixes are for DICOMweb nodes (--url)")
            node = nodes.add_node(folder, name, ae_title, host, port, retrieve, tls=tls, tls_ca=tls_ca or "",
                                  tls_cert=tls_cert or "", tls_key=tls_key or "", tls_server_name=tls_server_name or "")
        click.echo(f"{node.name}: {nodes.describe(node)}")

    @node_group.command("ls")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @pass_cli
    def node_ls(state, as_json: bool) -> None:
        """List the configured nodes."""
        from ..networking import nodes

        listed = nodes.list_nodes(state.logic().database_folder)
        if as_json:  # secrets as '***'
            click.echo(json.dumps([nodes.public_dict(n) for n in listed], indent=2))
        elif listed:
            rows = [{"name": n.name, "kind": "dicomweb" if n.is_dicomweb else "dimse",
                     "address": n.url if n.is_dicomweb else f"{n.ae_title}@{n.host}:{n.port}",
                     "retrieve": n.retrieve, "security": _security(n)} for n in listed]
            click.echo(_table(rows, ["name", "kind", "address", "retrieve", "security"]))
        else:
            click.echo("no nodes; add one with `dicombrowser node add NAME --ae-title AE --host H --port P`")

    @node_group.command("rm")
    @click.argument("name")
    @pass_cli
    def node_rm(state, name: str) -> None:
        """Remove node NAME."""
        from ..networking import nodes

        nodes.remove_node(state.logic().database_folder, name)
        click.echo(f"removed {name}")

    @cli.command("echo")
    @click.argument("node")
    @pass_cli
    def echo_command(state, node: str) -> None:
        """C-ECHO NODE (a DICOMweb node: one QIDO-RS request): is it there and does it accept us?"""
        _quiet_pynetdicom()
        logic = state.logic()
        seconds = logic.echo(node)
        verb = "QIDO-RS" if logic.node(node).is_dicomweb else "C-ECHO"
        click.echo(f"{node}: {verb} succeeded in {seconds * 1000:.0f} ms")

    @cli.command("listen")
    @click.option("--port", type=int, default=None, help="Port (default: the database's setting, 11112).")
    @click.option("--ae-title", default=None, help="Our AE title (default: the database's setting).")
    @click.option("--host", default=None, help="Interface to bind (default: the database's setting, all).")
    @click.option("--acse-timeout", type=float, default=None,
                  help="Seconds a new connection has to send its association request (default: setting, 30).")
    @click.option("--dimse-timeout", type=float, default=None,
                  help="Seconds a PDU, once started, has to arrive whole (default: setting, 30).")
    @click.option("--network-timeout", type=float, default=None,
                  help="Seconds an association may stay idle before it is aborted (default: setting, 30).")
    @click.option("--max-associations", type=int, default=None, help="Associations at once (default: setting, 16).")
    @click.option("--max-associations-per-host", type=int, default=None,
                  help="Associations at once from one host (default: setting, 8).")
    @click.option("--max-pdu-size", type=int, default=None,
                  help="Largest P-DATA PDU we announce and accept, bytes (default: setting, 1048576).")
    @click.option("--fsync/--no-fsync", default=None,
                  help="Flush each received instance to disk before acknowledging it (default: setting, off).")
    @click.option("--duration", type=float, default=None, hidden=True, help="Stop after this many seconds.")
    @pass_cli
    def listen_command(state, port: int | None, ae_title: str | None, host: str | None,
                       duration: float | None, fsync: bool | None, **overrides: float | int | None) -> None:
        """Receive instances into the database until Ctrl-C or SIGTERM."""
        from ..networking.admission import ConnectionLimits, LimitError

        _quiet_pynetdicom()
        logic = state.logic()
        try:
            limits = ConnectionLimits(**{**logic.settings.listener_limits(),
                                         **{k: v for k, v in overrides.items() if v is not None}})
        except LimitError as error:
            raise click.BadParameter(str(error)) from None
        stop = threading.Event()
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[signum] = signal.signal(signum, lambda *_: stop.set())
            except ValueError:  # not the main thread (e.g. a test runner): rely on --duration
                pass
        try:
            fsync = logic.settings.fsync if fsync is None else fsync
            status = logic.start_listener(port=port, ae_title=ae_title, host=host, limits=limits, fsync=fsync)
            click.echo(f"Listening as {status.ae_title} on {status.host}:{status.port}, storing into "
                       f"{logic.database_folder}{' (fsync on)' if fsync else ''}; timeouts ACSE "
                       f"{limits.acse_timeout:g} s, DIMSE "
                       f"{limits.dimse_timeout:g} s, idle {limits.network_timeout:g} s; at most "
                       f"{limits.max_associations} associations ({limits.max_associations_per_host} per host); "
                       f"Ctrl-C to stop", err=True)
            started = time.monotonic()
            shown = -1
            while not stop.wait(0.5):
                current = logic.listener_status()
                if current.indexed + current.failed != shown:
                    shown = current.indexed + current.failed
                    if shown:
                        click.echo(f"received {current.received}, indexed {current.indexed}, "
                                   f"failed {current.failed}", err=True)
                if duration is not None and time.monotonic() - started >= duration:
                    break
        finally:
            final = logic.stop_listener()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if final is not None:
            click.echo(f"Stopped: {final.received} received ({final.received_bytes / 1e6:.1f} MB), "
                       f"{final.indexed} indexed, {final.failed} failed, "
                       f"{len(final.rejected_callers)} association(s) rejected")

    @cli.command("find")
    @click.argument("node")
    @click.option("--level", type=click.Choice(["patient", "study", "series"]), default="study", show_default=True)
    @click.option("--model", type=click.Choice(["patient", "study"]), default=None,
                  help="Query model: Patient Root or Study Root (default: patient root at patient level).")
    @click.option("--patient-name", help="Patient name, wildcards * and ? allowed (e.g. 'Doe*').")
    @click.option("--patient-id")
    @click.option("--study-date", help="YYYYMMDD, or a range YYYYMMDD-YYYYMMDD (either end may be open).")
    @click.option("--modality")
    @click.option("--accession-number")
    @click.option("--study-description", help="Wildcards allowed.")
    @click.option("--study-uid", help="Restrict to one study (e.g. its series).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of objects keyed by DICOM keywords).")
    @pass_cli
    def find_command(state, node: str, level: str, model: str | None, as_json: bool, **filters: str | None) -> None:
        """C-FIND (DICOMweb: QIDO-RS, paged) on NODE at patient, study or series level."""
        _quiet_pynetdicom()
        from ..networking.scu import FIND_KEYS

        result = state.logic().find(node, level, filters, model=model)
        if as_json:
            click.echo(json.dumps(result.matches, indent=2))
        else:
            click.echo(_table(result.matches, FIND_KEYS[level]))
            click.echo(f"{len(result.matches)} {level} match(es) in {result.elapsed * 1000:.0f} ms", err=True)
        if result.incomplete:
            click.echo(f"warning: the answer of {node} is incomplete: {result.incomplete}", err=True)

    @cli.command("retrieve")
    @click.argument("node")
    @click.argument("uids", nargs=-1, required=True)
    @click.option("--level", type=click.Choice(["study", "series"]), default=None,
                  help="Level of the UIDs (default: ask the node).")
    @click.option("--method", type=click.Choice(["move", "get"]), default=None,
                  help="Override the node's retrieve method.")
    @pass_cli
    def retrieve_command(state, node: str, uids: tuple[str, ...], level: str | None, method: str | None) -> None:
        """Retrieve studies or series from NODE into the database (C-MOVE, C-GET, or WADO-RS for a DICOMweb
        node: what the database already holds is skipped, so an interrupted retrieve resumes)."""
        _quiet_pynetdicom()
        summary = state.logic().retrieve(node, list(uids), level=level, method=method,
                                         progress=_progress_printer("retrieve"))
        how = "WADO-RS" if summary.method == "wado" else f"C-{summary.method.upper()}"
        click.echo(f"Retrieved by {how}: {summary.completed} completed, {summary.failed} failed, "
                   f"{summary.warning} warning; {summary.received} instance(s) stored in the database "
                   f"in {summary.elapsed:.1f} s" + (f"; {summary.skipped} already there" if summary.skipped else ""))
        for error in summary.errors:
            click.echo(f"error: {error}", err=True)
        if summary.failed or summary.errors:
            raise NetworkError(f"retrieve from {node} incomplete: {summary.failed} failed, "
                               f"{len(summary.errors)} error(s)")

    from .export_commands import deidentify_options, deidentify_settings

    @cli.command("send")
    @click.argument("node")
    @click.argument("uids", nargs=-1, required=True)
    @click.option("--deidentify", is_flag=True, help="Send de-identified copies (PS3.15 Basic Profile; see export).")
    @deidentify_options
    @pass_cli
    def send_command(state, node: str, uids: tuple[str, ...], deidentify: bool, **deid) -> None:
        """Send patients, studies or series (any UID in the database) to NODE with C-STORE (DICOMweb: STOW-RS)."""
        _quiet_pynetdicom()
        printer = _progress_printer("send")

        def progress(done: int, total: int, failed: int) -> bool:
            return printer(done, total - done, failed)

        if deidentify:  # copies de-identified in a temporary folder, then sent; the database is unchanged
            settings = deidentify_settings(True, *(deid[k] for k in ("deid_key", "deid_retain", "deid_keep_private",
                                                                     "deid_patient_id", "deid_patient_name",
                                                                     "deid_allow_burned_in")))
            summary = state.logic().send_deidentified(node, list(uids), settings)
        else:
            summary = state.logic().send(node, list(uids), progress=progress)
        click.echo(f"Sent {summary.sent} of {summary.total} instance(s) ({summary.sent_bytes / 1e6:.1f} MB) in "
                   f"{summary.elapsed:.1f} s; {len(summary.failed)} failed, {summary.converted} decompressed "
                   f"for the peer")
        for path, reason in summary.failed[:20]:
            click.echo(f"failed: {path}: {reason}", err=True)
        if summary.failed:
            raise NetworkError(f"send to {node}: {len(summary.failed)} of {summary.total} instance(s) failed")
