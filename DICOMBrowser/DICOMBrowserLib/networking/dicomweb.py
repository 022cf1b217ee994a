"""DICOMweb nodes: find through QIDO-RS, retrieve through WADO-RS, send through STOW-RS.

Why: archives that outgrow one machine (an Orthanc or dcm4chee on a cluster, cloud archives) are
reached over HTTP(S), not DIMSE. The HTTP work (sessions, authentication, URL building, query
parameters, multipart encoding and decoding, retries on 429/503/504) is dicomweb-client's; this
module maps our commands onto it and returns the same plain values as the DIMSE side
(`scu.FindResult`, `scu.RetrieveSummary`, `scu.SendSummary`), so the CLI, the logic and the
browser do not care which kind of node they talk to.

- find: QIDO-RS at study, series or instance level with the DIMSE find's filters and return
  keys, paged (`limit`/`offset`) until a page comes back empty. A server that says it capped
  the answer (HTTP Warning 299, PS3.18 8.3.4.1), refuses the query as too large (413), or more
  matches than `max_results` make `FindResult.incomplete` say so, never a silent truncation.
  The patient level (QIDO-RS has none) is the studies grouped by Patient ID.
- retrieve: the instances of each study or series are listed first (QIDO-RS), those already
  in the database are skipped (an interrupted retrieve resumes where it stopped), and the rest
  are fetched by WADO-RS, in their stored transfer syntax (`*`), on several streams at once
  (one per series, a series that is only partly missing instance by instance). Each instance
  is written and indexed by `storage.ReceivedInstanceWriter`, exactly as a C-STORE received by
  the listener (atomic rename, UID checks, batched indexing).
- send: STOW-RS in batches (at most BATCH_FILES files or BATCH_BYTES per request); the
  server's Failed SOP Sequence names what it refused.
"""
from __future__ import annotations

import concurrent.futures
import io
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pydicom
from pydicom.dataset import Dataset

from ..config import DatabaseSettings, RemoteNode
from ..errors import NetworkError
from . import scu
from .nodes import secret_of
from .storage import ReceivedInstanceWriter, store_handler

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000          # QIDO-RS results asked for per request
MAX_RESULTS = 10000       # a find stops here and says the answer is incomplete
STREAMS = 4               # WADO-RS requests at once
BATCH_FILES = 50          # STOW-RS: instances per request ...
BATCH_BYTES = 64 << 20    # ... and bytes per request (whichever comes first)
ANY_SYNTAX = (("application/dicom", "*"),)  # as stored: no transcoding asked of the server

# QIDO-RS attribute for each filter of `find` (scu.FILTER_KEYWORDS); modality as in scu.build_query
_LEVEL_RESOURCE = {"study": "studies", "series": "series", "image": "instances"}


def _peer(node: RemoteNode) -> str:
    return f"{node.name} ({node.url})"


def _import_client() -> Any:
    try:
        from dicomweb_client.api import DICOMwebClient
    except ImportError as error:  # a dependency of the project; named if an install lacks it
        raise NetworkError(f"DICOMweb nodes need the dicomweb-client package ({error})") from error
    return DICOMwebClient


class _Responses:
    """A requests response hook: remembers the Warning headers of the last responses (a server
    that caps a QIDO answer says so there, and dicomweb-client only logs it)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        warning = response.headers.get("Warning")
        if warning:
            with self._lock:
                self.warnings.append(warning)
        return response

    def take(self) -> list[str]:
        with self._lock:
            taken, self.warnings = self.warnings, []
        return taken


def client(node: RemoteNode, *, timeout: float = 60.0) -> Any:
    """A dicomweb-client for `node`: its prefixes, authentication, CA bundle and client certificate;
    `timeout` per read (connecting: at most 10 s); retries on 429/503/504 kept short."""
    session = _session()
    headers = {}
    if node.auth == "basic":
        session.auth = (node.username, secret_of(node))
    elif node.auth == "bearer":
        headers["Authorization"] = f"Bearer {secret_of(node)}"
    if node.tls_ca:
        session.verify = node.tls_ca
    if node.tls_cert:
        session.cert = (node.tls_cert, node.tls_key) if node.tls_key else node.tls_cert
    hook = _Responses()
    web = _import_client()(node.url, session=session, qido_url_prefix=node.qido_prefix or None,
                           wado_url_prefix=node.wado_prefix or None, stow_url_prefix=node.stow_prefix or None,
                           headers=headers or None, callback=hook, timeout=(min(timeout, 10.0), timeout))
    web.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=200)
    web.responses = hook
    return web


_LITERAL_IN_QUERY = re.compile(r"%(2A|3F)", re.IGNORECASE)


def _session() -> Any:
    """A requests session that sends the QIDO-RS wildcards `*` and `?` as themselves: requests
    percent-encodes them in query values, and Orthanc 1.10 with its DICOMweb plugin 1.7 does not
    decode them (Doe%2A matched nothing; Doe* matches). Both are allowed as they are in a URL
    query (RFC 3986), so a server that decodes gets the same value either way. (`^` cannot be
    helped: urllib3 encodes it again, and that Orthanc then matches no name holding it.)"""
    import requests

    class LiteralWildcardsSession(requests.Session):
        def send(self, request: Any, **kwargs: Any) -> Any:
            base, mark, query = (request.url or "").partition("?")
            if mark:
                request.url = base + mark + _LITERAL_IN_QUERY.sub(lambda m: chr(int(m.group(1), 16)), query)
            return super().send(request, **kwargs)

    return LiteralWildcardsSession()


class _Errors:
    """Turns requests' and dicomweb-client's exceptions into NetworkError naming the peer and what was asked."""

    def __init__(self, node: RemoteNode, what: str):
        self.node, self.what = node, what

    def __enter__(self) -> "_Errors":
        return self

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> bool:
        if error is None or isinstance(error, NetworkError):
            return False
        raise http_error(self.node, self.what, error) from error


def http_error(node: RemoteNode, what: str, error: BaseException) -> NetworkError:
    """A NetworkError for a failed request: refused, timed out, TLS, or the server's HTTP status."""
    import requests

    peer = _peer(node)
    if isinstance(error, requests.HTTPError) and error.response is not None:
        code = error.response.status_code
        reason = {401: "authentication required or refused (check --auth and the secret)",
                  403: "forbidden (the credentials lack the right)", 404: "not found (check the URL and prefixes)",
                  413: "the query matches more than the server will answer: narrow the filters"}.get(code, "")
        body = (error.response.text or "")[:200].strip().replace("\n", " ")
        return NetworkError(f"{peer}: {what} failed with HTTP {code} {error.response.reason}"
                            f"{': ' + reason if reason else ''}{' (' + body + ')' if body and not reason else ''}")
    if isinstance(error, requests.exceptions.SSLError):
        return NetworkError(f"{peer}: {what}: TLS failed ({error}); check the node's --tls-ca")
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return NetworkError(f"{peer}: {what}: timed out connecting (host down or a firewall drops the packets)")
    if isinstance(error, requests.exceptions.ConnectionError):
        return NetworkError(f"{peer}: {what}: cannot connect (is the server running, is the URL right?): {error}")
    if isinstance(error, requests.exceptions.Timeout):
        return NetworkError(f"{peer}: {what}: no answer within the timeout")
    if isinstance(error, (requests.RequestException, ValueError, KeyError)):
        return NetworkError(f"{peer}: {what}: {type(error).__name__}: {error}")
    return NetworkError(f"{peer}: {what}: unexpected {type(error).__name__}: {error}")


# --- QIDO-RS ------------------------------------------------------------------------------------
def _json_text(element: dict | None) -> str:
    """A DICOM JSON element (PS3.18 F.2) as the text a C-FIND match holds: values joined by '\\',
    person names by their alphabetic group."""
    if not element:
        return ""
    values = element.get("Value") or []
    texts = []
    for value in values:
        if isinstance(value, dict):
            value = value.get("Alphabetic", "")
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        texts.append(str(value))
    return "\\".join(texts)


def _match(result: dict, keys: list[str]) -> dict[str, str]:
    from pydicom.datadict import tag_for_keyword

    return {key: _json_text(result.get(f"{tag_for_keyword(key):08X}")) for key in keys}


def query_filters(level: str, filters: dict[str, str | None] | None) -> dict[str, str]:
    """QIDO-RS search parameters (keyword=value) for `find`'s filters: the DIMSE query's keys."""
    query = scu.build_query("study" if level == "patient" else level, filters, return_keys=[])
    parameters = {}
    for element in query:
        if element.keyword != "QueryRetrieveLevel" and element.value not in (None, ""):
            parameters[element.keyword] = str(element.value)
    return parameters


def _search(web: Any, level: str, parameters: dict[str, str], fields: list[str], *, offset: int,
            limit: int) -> list[dict]:
    search = {"study": web.search_for_studies, "series": web.search_for_series,
              "image": web.search_for_instances}[level]
    return search(search_filters=dict(parameters), fields=fields, offset=offset, limit=limit)


def search_all(node: RemoteNode, level: str, parameters: dict[str, str], fields: list[str], *,
               web: Any = None, page_size: int = PAGE_SIZE, max_results: int = MAX_RESULTS,
               timeout: float = 60.0) -> tuple[list[dict], str]:
    """Every QIDO-RS result at `level`, page by page; (results, why incomplete or '')."""
    import requests

    web = web or client(node, timeout=timeout)
    results: list[dict] = []
    notice = ""
    what = f"QIDO-RS search for {_LEVEL_RESOURCE[level]}"
    for _page in range(max_results + 1):  # bounded even for a server answering one result per page
        limit = min(page_size, max_results + 1 - len(results))
        try:
            with _Errors(node, what):
                try:
                    page = _search(web, level, parameters, fields, offset=len(results), limit=limit)
                except requests.HTTPError as error:
                    if error.response is None or error.response.status_code != 413:
                        raise
                    notice = f"{_peer(node)} refused the query as too large (HTTP 413): narrow the filters"
                    break
        finally:
            capped = [w.strip() for w in web.responses.take() if w.lstrip().startswith("299")]
        if not page:
            # a "more results" warning that the next page does not deliver: the server keeps them
            if capped:
                notice = f"the server capped the answer ({capped[-1]})"
            break
        # a capped page (Warning 299) or a short one is followed by the next page (offset)
        results.extend(page)
        if len(results) > max_results:
            del results[max_results:]
            notice = f"more than {max_results} matches; only the first {max_results} are kept (narrow the filters)"
            break
    return results, notice


def find(node: RemoteNode, level: str = "study", filters: dict[str, str | None] | None = None, *,
         page_size: int = PAGE_SIZE, max_results: int = MAX_RESULTS, timeout: float = 60.0) -> scu.FindResult:
    """QIDO-RS at patient (studies grouped by patient), study, series or image level."""
    if level not in scu.LEVELS:
        raise NetworkError(f"query level {level!r} is not one of {', '.join(scu.LEVELS)}")
    started = time.monotonic()
    search_level = "study" if level == "patient" else level
    keys = scu.FIND_KEYS[search_level]
    results, incomplete = search_all(node, search_level, query_filters(level, filters), list(keys),
                                     page_size=page_size, max_results=max_results, timeout=timeout)
    matches = [_match(result, keys) for result in results]
    if level == "patient":
        matches = _group_by_patient(matches)
    return scu.FindResult(level=level, matches=matches, status=0, elapsed=time.monotonic() - started,
                          incomplete=incomplete)


def _group_by_patient(studies: list[dict[str, str]]) -> list[dict[str, str]]:
    patients: dict[tuple[str, str], dict[str, str]] = {}
    for study in studies:
        key = (study.get("PatientID", ""), study.get("PatientName", ""))
        row = patients.setdefault(key, {"PatientName": key[1], "PatientID": key[0], "PatientBirthDate": "",
                                        "PatientSex": "", "NumberOfPatientRelatedStudies": "0"})
        row["NumberOfPatientRelatedStudies"] = str(int(row["NumberOfPatientRelatedStudies"]) + 1)
    return list(patients.values())


def echo(node: RemoteNode, *, timeout: float = 10.0) -> float:
    """A QIDO-RS request for one study: the DICOMweb counterpart of C-ECHO (reachable, authorised)."""
    web = client(node, timeout=timeout)
    started = time.monotonic()
    with _Errors(node, "QIDO-RS search for studies"):
        web.search_for_studies(limit=1, fields=["StudyInstanceUID"])
    return time.monotonic() - started


# --- WADO-RS ------------------------------------------------------------------------------------
@dataclass
class _Task:
    """One WADO-RS request: a whole series, or the listed instances of it one by one."""

    study_uid: str
    series_uid: str
    instances: list[str] | None  # None: the whole series in one multipart response
    listed: list[str] | None = None  # the series' instances (to share a whole series out over streams)


def resolve(node: RemoteNode, uid: str, web: Any, level: str | None = None) -> tuple[str, str, str | None]:
    """(level, study UID, series UID or None) of `uid` on the server (QIDO-RS: study, then series)."""
    if level in (None, "study"):
        found, _ = search_all(node, "study", {"StudyInstanceUID": uid}, ["StudyInstanceUID"], web=web, max_results=1)
        if found or level == "study":
            return "study", uid, None
    found, _ = search_all(node, "series", {"SeriesInstanceUID": uid}, ["StudyInstanceUID", "SeriesInstanceUID"],
                          web=web, max_results=1)
    if not found:
        raise NetworkError(f"{_peer(node)} has no study or series with UID {uid}")
    study_uid = _json_text(found[0].get("0020000D"))
    if not study_uid:
        raise NetworkError(f"{_peer(node)}: series {uid} came without its Study Instance UID")
    return "series", study_uid, uid


def plan(node: RemoteNode, database: Any, study_uid: str, series_uid: str | None, web: Any,
         ) -> tuple[list[_Task], int, int]:
    """The requests that fetch what the database lacks of a study or series: (tasks, instances
    on the server, instances already here)."""
    parameters = {"StudyInstanceUID": study_uid}
    if series_uid:
        parameters["SeriesInstanceUID"] = series_uid
    listed, incomplete = search_all(node, "image", parameters, ["SeriesInstanceUID", "SOPInstanceUID"], web=web,
                                    max_results=1_000_000)
    if incomplete:
        raise NetworkError(f"{_peer(node)}: the instance list of {series_uid or study_uid} is incomplete "
                           f"({incomplete}); retrieving part of it would look complete")
    by_series: dict[str, list[str]] = {}
    for result in listed:
        by_series.setdefault(_json_text(result.get("0020000E")), []).append(_json_text(result.get("00080018")))
    tasks, present = [], 0
    for series, instances in by_series.items():
        missing = [uid for uid in instances if not _have(database, uid)]
        present += len(instances) - len(missing)
        if len(missing) == len(instances):
            tasks.append(_Task(study_uid, series, None, instances))
        elif missing:
            tasks.append(_Task(study_uid, series, missing))
    return tasks, len(listed), present


def _have(database: Any, sop_uid: str) -> bool:
    path = database.file_for_instance(sop_uid)
    return bool(path) and Path(path).is_file()


def _split(tasks: list[_Task], streams: int, split_series: bool = False) -> list[_Task]:
    """The requests the streams share: a missing series in one multipart response (the streams
    work on several series at once), a series only partly missing instance by instance in
    `streams` lists. `split_series` shares whole series out instance by instance too: measured
    slower against Orthanc on two cores (benchmarks/bench_dicomweb.py, docs/networking.md)."""
    out: list[_Task] = []
    for task in tasks:
        if task.instances is None and split_series and task.listed:
            task = _Task(task.study_uid, task.series_uid, list(task.listed))
        if task.instances is None or len(task.instances) <= 1:
            out.append(task)
            continue
        size = max(1, -(-len(task.instances) // streams))
        out.extend(_Task(task.study_uid, task.series_uid, task.instances[i:i + size])
                   for i in range(0, len(task.instances), size))
    return out


def _datasets(web: Any, task: _Task) -> Iterator[Dataset]:
    if task.instances is None:
        yield from web.iter_series(task.study_uid, task.series_uid, media_types=ANY_SYNTAX)
        return
    for sop_uid in task.instances:
        yield web.retrieve_instance(task.study_uid, task.series_uid, sop_uid, media_types=ANY_SYNTAX)


def _encoded(ds: Dataset) -> tuple[str, str, str, memoryview]:
    """(SOP class, SOP instance, transfer syntax, data set bytes) of a received instance: pydicom
    writes the elements it read back unchanged (pixel data included), after a file meta we drop."""
    from .. import headerscan

    meta = ds.file_meta
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=False)
    data = buffer.getbuffer()
    found = headerscan.file_meta(bytes(data[:4096]) if len(data) > 4096 else bytes(data))
    offset = found[1] if found else 0
    sop_class = str(meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID", ""))
    sop_instance = str(meta.get("MediaStorageSOPInstanceUID") or ds.get("SOPInstanceUID", ""))
    return sop_class, sop_instance, str(meta.TransferSyntaxUID), data[offset:]


def _fetch(node: RemoteNode, web: Any, task: _Task, store: Callable[..., int], counted: Callable[[int, int], bool],
           cancelled: threading.Event) -> None:
    what = f"WADO-RS retrieve of series {task.series_uid}"
    with _Errors(node, what):
        for ds in _datasets(web, task):
            if cancelled.is_set():
                return
            sop_class, sop_instance, syntax, data = _encoded(ds)
            status = store(sop_class, sop_instance, syntax, data)
            if counted(status, len(data)):
                cancelled.set()
                return


def retrieve(database: Any, settings: DatabaseSettings, node: RemoteNode, uids: Iterable[str], *,
             level: str | None = None, streams: int = STREAMS, progress: scu.Progress | None = None,
             timeout: float = 120.0, split_series: bool = False) -> scu.RetrieveSummary:
    """WADO-RS studies or series into the database, resuming: what it already holds is not fetched."""
    summary = scu.RetrieveSummary(method="wado")
    started = time.monotonic()
    web = client(node, timeout=timeout)
    tasks: list[_Task] = []
    total = 0
    for uid in uids:
        uid_level, study_uid, series_uid = resolve(node, uid, web, level)
        found, on_server, present = plan(node, database, study_uid, series_uid, web)
        logger.info("%s: %s %s holds %d instance(s), %d already in the database", _peer(node), uid_level, uid,
                    on_server, present)
        tasks.extend(found)
        total += on_server - present
        summary.remaining = total
        summary.skipped += present
    writer = ReceivedInstanceWriter(database, fsync=settings.fsync)
    store = store_handler(writer).store_encoded
    lock = threading.Lock()
    cancelled = threading.Event()

    def counted(status: int, size: int) -> bool:
        with lock:
            if status == 0x0000:
                summary.completed += 1
            else:
                summary.failed += 1
            summary.remaining = max(0, total - summary.completed - summary.failed)
            if progress is not None:
                return bool(progress(summary.completed, summary.remaining, summary.failed, 0))
        return False

    writer.start()
    try:
        work = _split(tasks, max(1, streams), split_series)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, streams),
                                                   thread_name_prefix="dicombrowser-wado") as pool:
            futures = [pool.submit(_fetch, node, web, task, store, counted, cancelled) for task in work]
            for future in concurrent.futures.as_completed(futures):
                error = future.exception()
                if error is not None:
                    summary.errors.append(str(error))
        if cancelled.is_set():
            summary.errors.append("cancelled")
    finally:
        writer.wait_indexed(timeout)
        writer.stop()
    summary.received = writer.counters.indexed
    summary.failed += writer.counters.index_failed
    summary.errors.extend(writer.counters.errors)
    summary.remaining = max(0, total - summary.completed - summary.failed)
    if summary.remaining and not summary.errors:
        summary.errors.append(f"{_peer(node)} sent {summary.completed} of the {total} instance(s) it listed")
    summary.elapsed = time.monotonic() - started
    return summary


# --- STOW-RS ------------------------------------------------------------------------------------
def _batches(files: list[tuple[str, str, str]]) -> Iterator[list[tuple[str, str, str]]]:
    batch: list[tuple[str, str, str]] = []
    size = 0
    for entry in files:
        length = Path(entry[0]).stat().st_size
        if batch and (len(batch) >= BATCH_FILES or size + length > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += length
    if batch:
        yield batch


def _failures(response: Dataset | None) -> dict[str, str]:
    """SOP Instance UID -> reason, from a STOW-RS response's Failed SOP Sequence (PS3.18 10.5.3)."""
    failed: dict[str, str] = {}
    for item in (response or Dataset()).get("FailedSOPSequence", []):
        reason = item.get("FailureReason")
        failed[str(item.get("ReferencedSOPInstanceUID", ""))] = f"refused (failure reason 0x{int(reason):04X})" \
            if reason is not None else "refused"
    return failed


def send(node: RemoteNode, files: list[tuple[str, str, str]], *, timeout: float = 120.0,
         progress: Callable[[int, int, int], Any] | None = None) -> scu.SendSummary:
    """STOW-RS files given as (path, SOPClassUID, TransferSyntaxUID), in batches; the files go as stored."""
    import requests

    summary = scu.SendSummary(total=len(files))
    started = time.monotonic()
    web = client(node, timeout=timeout)
    for batch in _batches(files):
        datasets, uids = [], {}
        for path, _sop_class, _syntax in batch:
            try:
                ds = pydicom.dcmread(path, force=True)
            except (OSError, ValueError, pydicom.errors.InvalidDicomError) as error:
                summary.failed.append((path, f"not readable: {error}"))
                continue
            uids[path] = str(ds.get("SOPInstanceUID", ""))
            datasets.append(ds)
        response: Dataset | None = None
        try:
            response = web.store_instances(datasets)
        except requests.HTTPError as error:
            # 409: some instances were refused; the body says which (when it is DICOM JSON)
            body = None
            if error.response is not None and error.response.status_code in (202, 409):
                try:
                    body = Dataset.from_json(error.response.json())
                except (ValueError, TypeError, KeyError):
                    body = None
            if body is None:
                failure = http_error(node, "STOW-RS store", error)
                summary.failed.extend((path, str(failure)) for path in uids)
                if error.response is not None and error.response.status_code in (401, 403, 404):
                    summary.failed.extend((p, "not sent after the error above") for p, _, _ in
                                          files[files.index(batch[-1]) + 1:])
                    break
                continue
            response = body
        except Exception as error:  # noqa: BLE001 - connection errors become the batch's failure, named
            failure = http_error(node, "STOW-RS store", error)
            summary.failed.extend((path, str(failure)) for path in uids)
            continue
        refused = _failures(response)
        for path, sop_uid in uids.items():
            if sop_uid in refused:
                summary.failed.append((path, f"{_peer(node)} {refused[sop_uid]}"))
            else:
                summary.sent += 1
                summary.sent_bytes += Path(path).stat().st_size
        if progress is not None and progress(summary.sent + len(summary.failed), summary.total, len(summary.failed)):
            break
    summary.elapsed = time.monotonic() - started
    return summary
