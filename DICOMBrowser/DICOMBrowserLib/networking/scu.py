"""The requests we make to a remote node: C-ECHO, C-FIND, C-MOVE, C-GET and C-STORE.

Every function takes a `RemoteNode` and our calling AE title, opens one association with
timeouts, and returns plain values (lists of dicts, summaries with counts and statuses). A
failure to associate raises `NetworkError` saying which peer and why: refused (nothing listens),
unreachable, timed out, rejected (with the peer's reason, e.g. wrong called AE title) or aborted.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (HTJ2K, JPEG2000, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         HTJ2KLossless, HTJ2KLosslessRPCL, ImplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit,
                         JPEGExtended12Bit, JPEGLossless, JPEGLSLossless, JPEGLSNearLossless, JPEGLosslessSV1,
                         RLELossless)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, _config, build_role, evt
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (PatientRootQueryRetrieveInformationModelFind,
                                  PatientRootQueryRetrieveInformationModelGet,
                                  PatientRootQueryRetrieveInformationModelMove,
                                  StudyRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelGet,
                                  StudyRootQueryRetrieveInformationModelMove, Verification)

from .. import headerscan
from ..config import RemoteNode
from ..errors import NetworkError
from . import admission, fastpath, sopclasses
from .admission import ConnectionLimits
from .sockets import NAGLE_OFF
from .storage import ReceivedInstanceWriter, store_handler

logger = logging.getLogger(__name__)

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
LEVELS = ("patient", "study", "series", "image")
MAX_PDU_SIZE = 1 << 20

# Returned keys per level (also the table columns of `dicombrowser find`).
FIND_KEYS: dict[str, list[str]] = {
    "patient": ["PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                "NumberOfPatientRelatedStudies"],
    "study": ["PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription",
              "AccessionNumber", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances"],
    "series": ["PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "Modality",
               "SeriesDescription", "NumberOfSeriesRelatedInstances"],
    "image": ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"],
}
# Filters a user can give (CLI option name == key here) -> DICOM keyword
FILTER_KEYWORDS = {
    "patient_name": "PatientName",
    "patient_id": "PatientID",
    "study_date": "StudyDate",
    "modality": "Modality",
    "accession_number": "AccessionNumber",
    "study_description": "StudyDescription",
    "study_uid": "StudyInstanceUID",
    "series_uid": "SeriesInstanceUID",
}


@dataclass
class FindResult:
    """Matches of one C-FIND, each a dict keyword -> string (tagreader.format_value, by headerscan.dataset_values)."""

    level: str
    matches: list[dict[str, str]]
    status: int
    elapsed: float
    incomplete: str = ""  # why the answer is known to lack matches (DICOMweb paging, caps), '' when whole


@dataclass
class RetrieveSummary:
    """Sub-operation counts of a C-MOVE or C-GET (per the peer's final response)."""

    method: str
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    status: int = 0
    received: int = 0      # instances that reached our database
    skipped: int = 0       # already in the database, not asked for again (WADO-RS resume)
    failed_uids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.errors and self.status in (0x0000, 0xB000)


@dataclass
class SendSummary:
    """Result of sending files with C-STORE."""

    total: int = 0
    sent: int = 0
    warning: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    converted: int = 0  # sent after falling back to an uncompressed transfer syntax
    elapsed: float = 0.0
    sent_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and self.sent == self.total


Progress = Callable[[int, int, int, int], Any]  # (completed, remaining, failed, warning) -> truthy to cancel


def make_ae(calling_ae: str, *, timeout: float = 30.0) -> AE:
    """An AE for one request: bounded timeouts everywhere, 1 MB PDUs."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = min(timeout, 10.0)
    ae.maximum_pdu_size = MAX_PDU_SIZE
    return ae


def _peer(node: RemoteNode) -> str:
    return f"{node.name} ({node.ae_title}@{node.host}:{node.port}{', TLS' if node.tls else ''})"


def _classify_connect_failure(node: RemoteNode, timeout: float) -> str:
    """Why TCP did not work: probe once, only after the association already failed."""
    try:
        with socket.create_connection((node.host, node.port), timeout=min(timeout, 5.0)):
            return "the connection opened but the association failed (the peer closed it or sent no answer)"
    except ConnectionRefusedError:
        return "connection refused: nothing is listening there (is the peer running, is the port right?)"
    except socket.timeout:
        return "timed out connecting (host down or a firewall drops the packets)"
    except socket.gaierror as error:
        return f"unknown host {node.host!r} ({error.strerror})"
    except OSError as error:
        return f"unreachable: {error.strerror or error}"


def associate(ae: AE, node: RemoteNode, *, timeout: float = 30.0, ext_neg: list | None = None,
              evt_handlers: list | None = None, max_pdu: int = MAX_PDU_SIZE):
    """Open an association or raise NetworkError naming the peer and the reason."""
    answers: list[Any] = []

    def remember_acse(event: Any) -> None:
        answers.append(event.primitive)

    handlers = [NAGLE_OFF, (evt.EVT_ACSE_RECV, remember_acse), *(evt_handlers or [])]
    from . import tls

    started = time.monotonic()
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, ext_neg=ext_neg,
                         evt_handlers=handlers, max_pdu=max_pdu, tls_args=tls.client_args(node))
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        reason = next((f"{p.result_str}, {p.source_str}: {p.reason_str}" for p in answers
                       if getattr(p, "result", None) in (1, 2)), "no reason given")
        hint = " (check the node's AE title, and that the peer knows our AE title " \
               f"{ae.ae_title} if it checks callers)"
        raise NetworkError(f"{_peer(node)} rejected the association: {reason}{hint}")
    if time.monotonic() - started >= ae.acse_timeout - 0.5 and not answers:
        raise NetworkError(f"{_peer(node)} timed out: no answer to the association request within "
                           f"{ae.acse_timeout:.0f} s")
    tls_failure = tls.describe_failure(node, timeout) if node.tls else None
    if tls_failure:
        raise NetworkError(f"{_peer(node)}: {tls_failure}")
    if answers:
        raise NetworkError(f"{_peer(node)} aborted the association request "
                           f"(no presentation context accepted, or the peer refused the request)")
    raise NetworkError(f"{_peer(node)}: {_classify_connect_failure(node, timeout)}")


@contextlib.contextmanager
def pynetdicom_settings(**values: Any) -> Iterator[None]:
    """pynetdicom's process-wide `_config` values set for one request and put back after it, so
    a program that imports us keeps its own."""
    previous = {name: getattr(_config, name) for name in values}
    for name, value in values.items():
        setattr(_config, name, value)
    try:
        yield
    finally:
        for name, value in previous.items():
            setattr(_config, name, value)


def _identifiers_unlogged(function: Callable[..., Any]) -> Callable[..., Any]:
    """pynetdicom formats every C-FIND/C-GET/C-MOVE response identifier into log lines (two thirds
    of a C-FIND's client time) unless told not to; only worth it when someone reads its INFO log.
    A fast-path setting: with the fast path off, pynetdicom's setting is left alone."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {"LOG_RESPONSE_IDENTIFIERS": logging.getLogger("pynetdicom").isEnabledFor(logging.INFO)} \
            if fastpath.enabled() else {}
        with pynetdicom_settings(**values):
            return function(*args, **kwargs)
    return wrapper


def _release(assoc: Any) -> None:
    if assoc.is_established:
        assoc.release()


def echo(node: RemoteNode, calling_ae: str, *, timeout: float = 10.0) -> float:
    """C-ECHO; returns the round trip in seconds, raises NetworkError otherwise."""
    ae = make_ae(calling_ae, timeout=timeout)
    ae.add_requested_context(Verification)
    started = time.monotonic()
    assoc = associate(ae, node, timeout=timeout)
    try:
        status = assoc.send_c_echo()
    finally:
        _release(assoc)
    if not status or "Status" not in status:
        raise NetworkError(f"{_peer(node)} did not answer the C-ECHO (timed out or aborted)")
    if status.Status != 0x0000:
        raise NetworkError(f"{_peer(node)} answered the C-ECHO with status 0x{status.Status:04X}")
    return time.monotonic() - started


def build_query(level: str, filters: dict[str, str | None] | None = None,
                return_keys: Iterable[str] | None = None) -> Dataset:
    """A C-FIND identifier: the level's return keys (empty) plus the filters as matching keys.

    Patient name and description accept DICOM wildcards (* and ?); a study date is 'YYYYMMDD',
    'YYYYMMDD-YYYYMMDD', '-YYYYMMDD' or 'YYYYMMDD-'. Modality filters ModalitiesInStudy at study
    level and Modality at series level.
    """
    if level not in LEVELS:
        raise NetworkError(f"query level {level!r} is not one of {', '.join(LEVELS)}")
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE" if level == "image" else level.upper()
    for keyword in return_keys or FIND_KEYS[level]:
        setattr(ds, keyword, "")
    for key, value in (filters or {}).items():
        if value in (None, ""):
            continue
        keyword = FILTER_KEYWORDS.get(key, key)
        if keyword == "Modality" and level in ("study", "patient"):
            keyword = "ModalitiesInStudy"
        setattr(ds, keyword, str(value))
    return ds


@_identifiers_unlogged
def find(node: RemoteNode, calling_ae: str, level: str = "study", filters: dict[str, str | None] | None = None,
         *, model: str | None = None, timeout: float = 30.0) -> FindResult:
    """C-FIND at patient/study/series/image level; Patient Root for patients, else Study Root."""
    model = model or ("patient" if level == "patient" else "study")
    if model == "study" and level == "patient":
        raise NetworkError("the Study Root model has no patient level; use --model patient")
    model_uid = (PatientRootQueryRetrieveInformationModelFind if model == "patient"
                 else StudyRootQueryRetrieveInformationModelFind)
    query = build_query(level, filters)
    ae = make_ae(calling_ae, timeout=timeout)
    ae.add_requested_context(model_uid)
    started = time.monotonic()
    assoc = associate(ae, node, timeout=timeout)
    matches: list[dict[str, str]] = []
    final = -1
    try:
        for status, identifier in assoc.send_c_find(query, model_uid):
            if not status or "Status" not in status:
                raise NetworkError(f"{_peer(node)}: C-FIND got no answer (timed out or aborted) after "
                                   f"{len(matches)} matches")
            final = int(status.Status)
            if final in (0xFF00, 0xFF01) and identifier is not None:
                keys = FIND_KEYS[level]
                matches.append(dict(zip(keys, headerscan.dataset_values(identifier, keys))))
            elif final != 0x0000:
                raise NetworkError(f"{_peer(node)}: C-FIND failed with status 0x{final:04X}")
    finally:
        _release(assoc)
    return FindResult(level=level, matches=matches, status=final, elapsed=time.monotonic() - started)


def _retrieve_identifier(level: str, uid: str, study_uid: str | None = None) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE" if level == "image" else level.upper()
    if level == "study":
        ds.StudyInstanceUID = uid
    elif level == "series":
        ds.StudyInstanceUID = study_uid or ""
        ds.SeriesInstanceUID = uid
        if not study_uid:
            del ds.StudyInstanceUID
    elif level == "patient":
        ds.PatientID = uid
    else:
        raise NetworkError(f"retrieve level {level!r} is not patient, study or series")
    return ds


def resolve_level(node: RemoteNode, calling_ae: str, uid: str, *, timeout: float = 30.0) -> tuple[str, str | None]:
    """Is `uid` a study or a series on the peer? Returns (level, study_uid) via C-FIND."""
    found = find(node, calling_ae, "study", {"study_uid": uid}, timeout=timeout)
    if found.matches:
        return "study", uid
    found = find(node, calling_ae, "series", {"series_uid": uid}, timeout=timeout)
    if found.matches:
        return "series", found.matches[0].get("StudyInstanceUID") or None
    raise NetworkError(f"{_peer(node)} has no study or series with UID {uid}")


def _track(summary: RetrieveSummary, status: Dataset, progress: Progress | None) -> bool:
    """Update counts from one C-MOVE/C-GET response; True when the caller asked to cancel.

    Counts only grow: a final Failure or Warning response may leave them out or give fewer than
    a pending response already reported (Orthanc's 0xC000 after a failed sub-operation says 0
    completed although the instances before it arrived), so the larger is kept."""
    summary.status = int(status.Status)
    for attribute, keyword in (("completed", "NumberOfCompletedSuboperations"),
                               ("failed", "NumberOfFailedSuboperations"),
                               ("warning", "NumberOfWarningSuboperations")):
        setattr(summary, attribute, max(getattr(summary, attribute), int(status.get(keyword, 0) or 0)))
    summary.remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
    if progress is not None:
        return bool(progress(summary.completed, summary.remaining, summary.failed, summary.warning))
    return False


def _final_check(node: RemoteNode, summary: RetrieveSummary, uid: str, identifier: Dataset | None) -> None:
    if summary.status in (0x0000, 0xB000, 0xFE00):
        if summary.status == 0xB000 and identifier is not None and "FailedSOPInstanceUIDList" in identifier:
            failed = identifier.FailedSOPInstanceUIDList
            summary.failed_uids.extend([failed] if isinstance(failed, str) else list(failed))
        return
    summary.errors.append(f"{_peer(node)}: C-{summary.method.upper()} of {uid} ended with status "
                          f"0x{summary.status:04X}")


@_identifiers_unlogged
def move(node: RemoteNode, calling_ae: str, uid: str, level: str, destination_ae: str, *,
         study_uid: str | None = None, model: str = "study", timeout: float = 60.0,
         progress: Progress | None = None, summary: RetrieveSummary | None = None) -> RetrieveSummary:
    """C-MOVE a study or series to `destination_ae` (our listener, which the peer must know)."""
    model_uid = (PatientRootQueryRetrieveInformationModelMove if model == "patient"
                 else StudyRootQueryRetrieveInformationModelMove)
    summary = summary or RetrieveSummary(method="move")
    ae = make_ae(calling_ae, timeout=timeout)
    ae.add_requested_context(model_uid)
    started = time.monotonic()
    assoc = associate(ae, node, timeout=timeout)
    responses = assoc.send_c_move(_retrieve_identifier(level, uid, study_uid), destination_ae, model_uid)
    _follow_retrieve(assoc, responses, node, uid, "C-MOVE", summary, progress)
    summary.elapsed += time.monotonic() - started
    if summary.status == 0xA801:
        summary.errors.append(f"{_peer(node)} does not know the move destination {destination_ae}: "
                              f"register AE {destination_ae} (our host and listener port) on the peer")
    return summary


def _follow_retrieve(assoc, responses, node: RemoteNode, uid: str, verb: str, summary: RetrieveSummary,
                     progress: Progress | None) -> None:
    """Track a C-MOVE/C-GET's pending responses into `summary` (counts add to what earlier UIDs
    of the same retrieve left there), abort on cancel, release the association."""
    base = (summary.completed, summary.failed, summary.warning)
    summary.completed = summary.failed = summary.warning = 0  # this UID's counts, added to base below
    try:
        last_identifier = None
        for status, identifier in responses:
            if not status or "Status" not in status:
                summary.errors.append(f"{_peer(node)}: {verb} of {uid} got no answer (timed out or aborted)")
                break
            last_identifier = identifier
            if _track(summary, status, progress):
                assoc.abort()
                summary.errors.append("cancelled")
                break
        _final_check(node, summary, uid, last_identifier)
    finally:
        _release(assoc)
    summary.completed += base[0]
    summary.failed += base[1]
    summary.warning += base[2]


# Transfer syntaxes a C-GET proposes in a context each, those archives store most first: a peer
# that cannot transcode (Orthanc without a JPEG 2000 codec in DCMTK) then finds the syntax an
# instance is stored in and sends it as it is; the ones a budget leaves out share a last context.
RETRIEVE_SYNTAXES = [JPEG2000Lossless, JPEG2000, JPEGLosslessSV1, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless,
                     JPEGLSLossless, JPEGLSNearLossless, RLELossless, DeflatedExplicitVRLittleEndian,
                     ExplicitVRBigEndian, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K]
RETRIEVE_SYNTAXES += [ts for ts in ALL_TRANSFER_SYNTAXES if ts not in RETRIEVE_SYNTAXES and ts not in UNCOMPRESSED]
MAX_CONTEXTS = 128  # presentation context IDs are the odd numbers 1-255 (PS3.8 9.3.2.2)
AVAILABLE_TRANSFER_SYNTAX = 0x00083002  # Available Transfer Syntax UID, instance level (PS3.4 C.6.1.1.5)


def stored_classes(node: RemoteNode, calling_ae: str, uid: str, level: str, study_uid: str | None = None, *,
                   timeout: float = 30.0) -> dict[str, list[str]]:
    """The storage SOP classes a study or series holds on the peer, each with the transfer syntaxes
    its instances are stored in when the peer says ([] when it does not); {} when the peer says nothing.

    One association, Study Root C-FIND: SOP Classes in Study (one answer; for a series, of its
    study); else, at instance level, SOP Class UID and Available Transfer Syntax UID (one answer per
    instance; Orthanc leaves both empty unless it reads its files on find). A peer refusing
    the query gets {}, and the retrieve the contexts of `get_contexts`."""
    classes: dict[str, set[str]] = {}
    ae = make_ae(calling_ae, timeout=timeout)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = associate(ae, node, timeout=timeout)

    def answers(query: Dataset) -> Iterator[Dataset]:
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            if status and status.get("Status") in (0xFF00, 0xFF01) and identifier is not None:
                yield identifier

    def values(identifier: Dataset, keyword_or_tag: Any) -> list[str]:
        value = identifier.get(keyword_or_tag)
        value = getattr(value, "value", value)
        if not value:
            return []
        return [str(v).strip() for v in ([value] if isinstance(value, str) else value) if str(v).strip()]

    try:
        if level == "series" and not study_uid:
            query = build_query("series", {"series_uid": uid}, ["StudyInstanceUID"])
            study_uid = next((str(i.StudyInstanceUID) for i in answers(query) if i.get("StudyInstanceUID")), None)
        if level == "study" or study_uid:
            query = build_query("study", {"study_uid": study_uid or uid}, ["SOPClassesInStudy"])
            for identifier in answers(query):
                for sop_class in values(identifier, "SOPClassesInStudy"):
                    classes.setdefault(sop_class, set())
        if not classes and level in ("study", "series"):
            query = build_query("image", {"study_uid": study_uid or (uid if level == "study" else None),
                                          "series_uid": uid if level == "series" else None},
                                ["SOPInstanceUID", "SOPClassUID"])
            query.add_new(AVAILABLE_TRANSFER_SYNTAX, "UI", "")
            for identifier in answers(query):
                for sop_class in values(identifier, "SOPClassUID"):
                    classes.setdefault(sop_class, set()).update(values(identifier, AVAILABLE_TRANSFER_SYNTAX))
    finally:
        _release(assoc)
    return {sop_class: sorted(syntaxes) for sop_class, syntaxes in classes.items()}


def get_contexts(model_uid: str = StudyRootQueryRetrieveInformationModelGet,
                 classes: dict[str, list[str]] | None = None) -> list:
    """Requested contexts for a C-GET: the query model, then the storage classes we accept as SCP.

    With the classes the study holds (`stored_classes`), each gets an uncompressed context
    (explicit and implicit VR little endian, which any peer converts between) and a context per
    compressed syntax: the instances it stores in (when the peer said), else RETRIEVE_SYNTAXES in
    their order. A peer accepts one transfer syntax per context, so only separate contexts let
    it send each instance as stored; one context with every syntax made it pick uncompressed and
    transcode, which fails where it has no codec (JPEG 2000 in Orthanc's C-GET). The 127
    contexts left by the model are shared out one by one across the classes; a class whose
    share is shorter than its list gets the rest of its syntaxes in its last context.
    Without classes: every storage class pynetdicom knows, one context each with every syntax
    (uncompressed first), as many as fit: the peer may have to transcode."""
    contexts = [build_context(model_uid)]
    budget = MAX_CONTEXTS - len(contexts)
    if not classes:
        ordered = UNCOMPRESSED + [ts for ts in ALL_TRANSFER_SYNTAXES if ts not in UNCOMPRESSED]
        for context in StoragePresentationContexts[:budget]:
            contexts.append(build_context(context.abstract_syntax, ordered))
        return contexts
    if len(classes) > budget:
        logger.warning("The study holds %d SOP classes; a C-GET can propose %d: instances of %s are not asked for",
                       len(classes), budget, ", ".join(list(classes)[budget:]))
    groups: dict[str, list[list[str]]] = {}
    for sop_class, stored in list(classes.items())[:budget]:
        compressed = [ts for ts in (stored or RETRIEVE_SYNTAXES) if ts not in UNCOMPRESSED]
        groups[sop_class] = [list(UNCOMPRESSED)] + [[ts] for ts in compressed]
    shares = dict.fromkeys(groups, 1)
    left = budget - len(groups)
    while left > 0:
        grown = False
        for sop_class, share in shares.items():
            if left > 0 and share < len(groups[sop_class]):
                shares[sop_class] += 1
                left -= 1
                grown = True
        if not grown:
            break
    for sop_class, wanted in groups.items():
        share = shares[sop_class]
        kept = wanted[:share - 1] + [[ts for group in wanted[share - 1:] for ts in group]]
        contexts.extend(build_context(sop_class, syntaxes) for syntaxes in kept)
    return contexts


@_identifiers_unlogged
def get(node: RemoteNode, calling_ae: str, uid: str, level: str, writer: ReceivedInstanceWriter, *,
        study_uid: str | None = None, model: str = "study", timeout: float = 60.0,
        progress: Progress | None = None, summary: RetrieveSummary | None = None,
        limits: ConnectionLimits | None = None) -> RetrieveSummary:
    """C-GET a study or series on one association; instances are written and indexed by `writer`.

    A C-FIND first asks which SOP classes it holds (`stored_classes`), so that the contexts
    proposed (`get_contexts`) let the peer send every instance in the syntax it is stored in.

    `limits` (the listener's settings, admission.ConnectionLimits): the peer sends us C-STOREs
    here as it would to our listener, so the association gets the listener's timeouts (ACSE,
    DIMSE, idle), its PDU size, a socket read timeout of dimse_timeout and the same bounded PDU
    reads (admission.guard_connection): a PACS that stops halfway through a PDU or claims a huge
    one cannot hold the retrieve. Without `limits`, every timeout is `timeout`."""
    model_uid = (PatientRootQueryRetrieveInformationModelGet if model == "patient"
                 else StudyRootQueryRetrieveInformationModelGet)
    summary = summary or RetrieveSummary(method="get")
    fastpath.check_connection_internals()  # the guard below reaches into pynetdicom: never unguarded
    limits = limits or ConnectionLimits(acse_timeout=timeout, dimse_timeout=timeout, network_timeout=timeout)
    ae = make_ae(calling_ae, timeout=timeout)
    ae.acse_timeout, ae.dimse_timeout = limits.acse_timeout, limits.dimse_timeout
    ae.network_timeout, ae.maximum_pdu_size = limits.network_timeout, limits.max_pdu_size
    sopclasses.storage_classes()  # pynetdicom serves C-STOREs of the retired classes too
    started = time.monotonic()
    classes: dict[str, list[str]] = {}
    if level in ("study", "series"):
        try:
            classes = stored_classes(node, calling_ae, uid, level, study_uid, timeout=limits.acse_timeout)
        except NetworkError as error:  # a peer without C-FIND still gets its C-GET
            logger.warning("%s: SOP classes of %s not known (%s); proposing every storage class", _peer(node), uid, error)
    contexts = get_contexts(model_uid, classes)
    ae.requested_contexts = contexts
    roles = [build_role(sop_class, scp_role=True) for sop_class in dict.fromkeys(cx.abstract_syntax
                                                                                  for cx in contexts[1:])]
    received_before = writer.counters.received
    assoc = associate(ae, node, timeout=limits.acse_timeout, ext_neg=roles, max_pdu=limits.max_pdu_size,
                      evt_handlers=[(evt.EVT_C_STORE, store_handler(writer)),
                                    (evt.EVT_CONN_OPEN, admission.requestor_guard(limits))])
    responses = assoc.send_c_get(_retrieve_identifier(level, uid, study_uid), model_uid)
    completed_before = summary.completed
    _follow_retrieve(assoc, responses, node, uid, "C-GET", summary, progress)
    received = writer.counters.received - received_before
    summary.received += received
    # what we stored are completed sub-operations, whatever the peer's final count says
    summary.completed = max(summary.completed, completed_before + received)
    summary.elapsed += time.monotonic() - started
    return summary


def _store_contexts(files: list[tuple[str, str, str]]) -> list:
    """One context per (SOP class, the files' own transfer syntax), plus one uncompressed fallback per class.

    Separate contexts, not one context with several syntaxes: the peer accepts one syntax per
    context, so a combined context would force a conversion on every file in the other syntaxes.
    That holds for the uncompressed syntaxes too: in the fallback context peers pick implicit VR,
    and every explicit VR file was decoded and re-encoded on the way (3x slower, bytes changed).
    """
    pairs = list(dict.fromkeys((sop_class, ts if ts in ALL_TRANSFER_SYNTAXES else "") for _, sop_class, ts in files))
    contexts = []
    for sop_class, ts in pairs:
        # Deflated files are inflated and sent uncompressed: streaming them as stored hung storescp
        if ts and ts != DeflatedExplicitVRLittleEndian:
            contexts.append(build_context(sop_class, [ts]))
    for sop_class in dict.fromkeys(sop_class for sop_class, _ in pairs):
        contexts.append(build_context(sop_class, list(UNCOMPRESSED)))
    return contexts


def _context_groups(files: list[tuple[str, str, str]], limit: int = 120) -> list[list[tuple[str, str, str]]]:
    """Split files so that each association needs at most `limit` presentation contexts."""
    groups: list[list[tuple[str, str, str]]] = []
    current: list[tuple[str, str, str]] = []
    for sop_class in dict.fromkeys(f[1] for f in files):
        members = [f for f in files if f[1] == sop_class]
        if current and len(_store_contexts(current + members)) > limit:
            groups.append(current)
            current = []
        current.extend(members)
    if current:
        groups.append(current)
    return groups


def _fallback_dataset(path: str) -> Dataset:
    """Read a file and, if compressed, decompress it so it can go in an uncompressed context."""
    ds = pydicom.dcmread(path, force=True)  # files without a meta header are valid in a database too
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        meta_keyword = "MediaStorage" + keyword
        if meta_keyword not in ds.file_meta and keyword in ds:
            setattr(ds.file_meta, meta_keyword, getattr(ds, keyword))
    ts = ds.file_meta.TransferSyntaxUID
    if ts.is_compressed or ts in (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian):
        if ts.is_compressed:
            ds.decompress(generate_instance_uid=False)  # same instance, other encoding
        else:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def send(node: RemoteNode, calling_ae: str, files: list[tuple[str, str, str]], *, timeout: float = 60.0,
         progress: Callable[[int, int, int], Any] | None = None) -> SendSummary:
    """C-STORE files, given as (path, SOPClassUID, TransferSyntaxUID) triples.

    Each file goes in its own transfer syntax when the peer accepts it (sent as stored, streamed
    from disk, no decode); otherwise it is decompressed and sent uncompressed. Files of more SOP
    classes than fit one association (128 contexts) go over several associations.
    `progress(done, total, failed)` returns truthy to cancel.
    """
    summary = SendSummary(total=len(files))
    started = time.monotonic()
    # Send files as they are on disk, without decoding: pynetdicom's chunked mode streams the file
    # after its meta header (a process-wide switch: set for this send, put back after it)
    with pynetdicom_settings(STORE_SEND_CHUNKED_DATASET=True):
        _send_batches(node, calling_ae, files, summary, timeout, progress)
    summary.elapsed = time.monotonic() - started
    return summary


#: failures that say nothing about the instance itself: the association went away (a peer
#: restarting, a dropped connection, or pynetdicom 3.0.4's own race that can lose a C-STORE
#: response when its association loop is not ours); those files are sent again
RETRYABLE_FAILURES = ("no answer from", "association lost")

#: associations one batch may take in all: the files a lost association did not confirm go again
#: on a new one as long as the last one confirmed something (on pynetdicom's own path its race
#: lost a response twice in one send of 2,000 small files), at most this many times
MAX_SEND_ASSOCIATIONS = 10


def _send_batches(node: RemoteNode, calling_ae: str, files: list[tuple[str, str, str]], summary: SendSummary,
                  timeout: float, progress: Callable[[int, int, int], Any] | None) -> None:
    for batch in _context_groups(files):
        sent_before = summary.sent
        _send_batch(node, calling_ae, batch, summary, timeout, progress)
        in_batch = {item[0] for item in batch}  # an earlier batch's failures stay as they are
        for attempt in range(2, MAX_SEND_ASSOCIATIONS + 1):
            retry = {path for path, reason in summary.failed
                     if path in in_batch and reason.startswith(RETRYABLE_FAILURES)}
            again = [item for item in batch if item[0] in retry]
            # the first retry always (a C-STORE of the same instance again is harmless), later ones
            # only after an association that confirmed at least one file: a peer that drops every
            # association at once is not called ten times
            if not again or (attempt > 2 and summary.sent == sent_before):
                break
            logger.warning("%s: sending %d file(s) again on a new association (the last one was lost)",
                           _peer(node), len(again))
            summary.failed = [(path, reason) for path, reason in summary.failed if path not in retry]
            sent_before = summary.sent
            try:
                _send_batch(node, calling_ae, again, summary, timeout, progress)
            except NetworkError as error:
                summary.failed.extend((path, f"sent again, but: {error}") for path, _, _ in again)
                break
        if len(summary.failed) >= summary.total:
            break


def _send_batch(node: RemoteNode, calling_ae: str, batch: list[tuple[str, str, str]], summary: SendSummary,
                timeout: float, progress: Callable[[int, int, int], Any] | None) -> None:
    """One association for `batch`; failures (with their reasons) go to `summary.failed`."""
    ae = make_ae(calling_ae, timeout=timeout)
    ae.requested_contexts = _store_contexts(batch)
    assoc = associate(ae, node, timeout=timeout)
    try:
        for index, (path, _sop_class, _ts) in enumerate(batch):
            reason = _store_one(assoc, node, path, summary, message_id=index % 0xFFFF + 1)
            if reason is not None:
                summary.failed.append((path, reason))
                if not assoc.is_established:
                    remaining = batch[index + 1:]
                    summary.failed.extend((p, "association lost before sending") for p, _, _ in remaining)
                    logger.error("%s: association lost after %d of %d files", _peer(node), index + 1, len(batch))
                    break
            if progress is not None and progress(summary.sent + len(summary.failed), summary.total,
                                                 len(summary.failed)):
                summary.failed.extend((p, "cancelled") for p, _, _ in batch[index + 1:])
                break
    finally:
        fastpath.resume(assoc)  # the direct sends leave the association loop parked
        _release(assoc)


def _store_one(assoc: Any, node: RemoteNode, path: str, summary: SendSummary, message_id: int = 1) -> str | None:
    """Send one file; None on success (or warning), else the reason."""
    if not assoc.is_established:
        return "association lost"
    try:
        status = fastpath.send_as_stored(assoc, path, message_id)
        if status is None:  # not a file the direct path was written for
            status = assoc.send_c_store(Path(path), msg_id=message_id)
    except (ValueError, InvalidDicomError):
        # no context accepted in the file's own transfer syntax: decompress and go uncompressed
        try:
            status = assoc.send_c_store(_fallback_dataset(path))
            summary.converted += 1
        except (ValueError, AttributeError, NotImplementedError, RuntimeError, OSError) as error:
            return f"peer accepted no transfer syntax we can send it in: {error}"
    except (AttributeError, OSError, RuntimeError) as error:
        if not assoc.is_established:
            # the peer went away between our check above and the send (pynetdicom raises
            # RuntimeError then): the instance is fine, it goes again on a new association
            return f"association lost while sending: {error}"
        return f"could not send: {error}"
    if not status or "Status" not in status:
        return f"no answer from {_peer(node)} (timed out or aborted)"
    code = int(status.Status)
    if code == 0x0000:
        summary.sent += 1
        summary.sent_bytes += Path(path).stat().st_size
        return None
    if code in (0xB000, 0xB006, 0xB007):
        summary.sent += 1
        summary.warning += 1
        return None
    return f"{_peer(node)} answered status 0x{code:04X}"
