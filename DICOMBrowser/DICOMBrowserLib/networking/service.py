"""What the logic's retrieve and send do: pick files or levels, open listeners, add up results.

Kept out of DICOMBrowser.py so the logic stays a facade and this can be tested with a database
and settings alone.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import pydicom

from ..config import DatabaseSettings, RemoteNode
from ..errors import NetworkError, NotFoundError
from . import scu
from .admission import ConnectionLimits
from .listener import StorageListener
from .storage import ReceivedInstanceWriter

logger = logging.getLogger(__name__)


def echo(settings: DatabaseSettings, node: RemoteNode, *, timeout: float = 10.0) -> float:
    """C-ECHO a DIMSE node, or one QIDO-RS request to a DICOMweb node; the round trip in seconds."""
    if node.is_dicomweb:
        from . import dicomweb

        return dicomweb.echo(node, timeout=timeout)
    return scu.echo(node, settings.ae_title, timeout=timeout)


def find(settings: DatabaseSettings, node: RemoteNode, level: str = "study",
         filters: dict[str, str | None] | None = None, *, model: str | None = None) -> scu.FindResult:
    """C-FIND, or QIDO-RS for a DICOMweb node (same levels, filters and result)."""
    if node.is_dicomweb:
        from . import dicomweb

        return dicomweb.find(node, level, filters)
    return scu.find(node, settings.ae_title, level, filters, model=model)


def send_files(settings: DatabaseSettings, node: RemoteNode, files: list[tuple[str, str, str]], *,
               timeout: float = 60.0, progress: Callable[[int, int, int], Any] | None = None) -> scu.SendSummary:
    """(path, SOP class, transfer syntax) files to a node: C-STORE, or STOW-RS for a DICOMweb node."""
    if node.is_dicomweb:
        from . import dicomweb

        return dicomweb.send(node, files, timeout=max(timeout, 120.0), progress=progress)
    return scu.send(node, settings.ae_title, files, timeout=timeout, progress=progress)


def retrieve(database: Any, settings: DatabaseSettings, node: RemoteNode, uids: list[str], *,
             level: str | None = None, method: str | None = None, listener: StorageListener | None = None,
             progress: scu.Progress | None = None, timeout: float = 120.0) -> scu.RetrieveSummary:
    """Retrieve studies/series into the database by C-MOVE (to our listener) or C-GET.

    `level` None asks the peer (C-FIND) whether each UID is a study or a series. For C-MOVE a
    listener is started for the duration unless `listener` (the running one) is given; the peer
    must know our AE title with our host and port.
    """
    if node.is_dicomweb:
        if method not in (None, "wado"):
            raise NetworkError(f"node {node.name} is a DICOMweb service: it retrieves by WADO-RS, not C-{method.upper()}")
        from . import dicomweb

        return dicomweb.retrieve(database, settings, node, uids, level=level, progress=progress, timeout=timeout)
    method = method or node.retrieve
    if method not in ("move", "get"):
        raise NetworkError(f"retrieve method {method!r} is not move or get")
    summary = scu.RetrieveSummary(method=method)
    targets = []
    for uid in uids:
        if level is None:
            targets.append((uid, *scu.resolve_level(node, settings.ae_title, uid, timeout=timeout)))
        else:
            targets.append((uid, level, None))
    if method == "get":
        writer = ReceivedInstanceWriter(database, fsync=settings.fsync)
        writer.start()
        try:
            for uid, uid_level, study_uid in targets:
                scu.get(node, settings.ae_title, uid, uid_level, writer, study_uid=study_uid, timeout=timeout,
                        progress=progress, summary=summary, limits=ConnectionLimits(**settings.listener_limits()))
        finally:
            writer.wait_indexed(timeout)
            writer.stop()
        summary.failed += writer.counters.write_failed + writer.counters.index_failed
        summary.errors.extend(writer.counters.errors)
        return summary
    own = listener is None or not listener.running
    if own:
        from .tls import server_context

        listener = StorageListener(database, ae_title=settings.ae_title, port=settings.port,
                                   host=settings.listen_host, allowed_callers=settings.allowed_callers,
                                   limits=ConnectionLimits(**settings.listener_limits()), fsync=settings.fsync,
                                   ssl_context=server_context(settings))
        listener.start()
    assert listener is not None
    before = listener.writer.counters.received
    failed_before = listener.writer.counters.write_failed + listener.writer.counters.index_failed
    try:
        for uid, uid_level, study_uid in targets:
            scu.move(node, settings.ae_title, uid, uid_level, listener.ae_title, study_uid=study_uid,
                     timeout=timeout, progress=progress, summary=summary)
        listener.wait_indexed(timeout)
    finally:
        if own:
            listener.stop()
    counters = listener.writer.counters
    summary.received = counters.received - before
    local_failures = counters.write_failed + counters.index_failed - failed_before
    if local_failures:
        summary.errors.append(f"{local_failures} received instance(s) could not be written or indexed")
    return summary


def files_to_send(database: Any, uids: list[str]) -> list[tuple[str, str, str]]:
    """(path, SOPClassUID, TransferSyntaxUID) for every instance under each UID (any level)."""
    files: dict[str, tuple[str, str, str]] = {}
    for uid in uids:
        level = database.level_of(uid)
        if level is None:
            raise NotFoundError(f"UID {uid} is not in the database {database.folder}")
        if level == "instance":
            path = database.file_for_instance(uid)
            if path:
                header = pydicom.dcmread(path, stop_before_pixels=True)
                files[uid] = (path, str(header.SOPClassUID), str(header.file_meta.TransferSyntaxUID))
            continue
        for series_uid in database.series_for_uid(uid):
            for row in database.instances(series_uid):
                files[row["SOPInstanceUID"]] = (str(row["FilePath"]), str(row["SOPClassUID"]),
                                                str(row.get("TransferSyntaxUID") or ""))
    missing = [path for path, _, _ in files.values() if not Path(path).is_file()]
    if missing:
        logger.warning("%d file(s) to send are missing on disk, e.g. %s", len(missing), missing[0])
    return list(files.values())


def send(database: Any, settings: DatabaseSettings, node: RemoteNode, uids: list[str], *,
         progress: Callable[[int, int, int], Any] | None = None, timeout: float = 60.0) -> scu.SendSummary:
    """C-STORE the patients/studies/series/instances named by `uids` from the database to `node`."""
    files = files_to_send(database, uids)
    present = [f for f in files if Path(f[0]).is_file()]
    summary = send_files(settings, node, present, timeout=timeout, progress=progress)
    summary.total = len(files)
    summary.failed.extend((path, "file missing on disk") for path, _, _ in files if not Path(path).is_file())
    return summary
