"""The storage SOP classes we receive (listener, C-GET): pynetdicom's, plus those pydicom's UID
dictionary names under the storage branch (1.2.840.10008.5.1.4.1.1.*) that pynetdicom 3.0 does
not know.

Why: pynetdicom accepts a presentation context, and serves a C-STORE, only for a SOP class it
registered with its Storage service class. Old archives still hold instances of retired classes
(Ultrasound Image Storage (Retired), 1.2.840.10008.5.1.4.1.1.6, in the corpus's TransferSyntaxes
files) and newer ones (DICOS, eddy current) that 3.0.4 lacks: Orthanc could not C-MOVE such an
instance to us ("Cannot transcode ... to one of [ ]") and the retrieve lost it. They are added
with pynetdicom's public `register_uid`, once per process; that only adds classes, nothing
pynetdicom already had changes.
"""
from __future__ import annotations

import logging
import threading

from pynetdicom import AllStoragePresentationContexts, register_uid
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

logger = logging.getLogger(__name__)

STORAGE_BRANCH = "1.2.840.10008.5.1.4.1.1."

_lock = threading.Lock()
_registered: list[str] = []


def _missing_from_pynetdicom() -> list[tuple[str, str]]:
    """(uid, keyword) of pydicom's storage SOP classes pynetdicom does not serve as storage."""
    try:  # pydicom's table of UIDs is a private module (the same in pydicom 2 and 3)
        from pydicom._uid_dict import UID_dictionary
    except ImportError:
        logger.warning("pydicom's UID dictionary not found: only pynetdicom's storage SOP classes are accepted")
        return []
    missing = []
    for uid, (_name, kind, _description, _retired, keyword) in UID_dictionary.items():
        if kind == "SOP Class" and uid.startswith(STORAGE_BRANCH) and keyword.isidentifier() \
                and uid_to_service_class(uid) is not StorageServiceClass:
            missing.append((uid, keyword))
    return missing


def storage_classes() -> list[str]:
    """Every storage SOP class UID we accept, pynetdicom's first; registers the others once."""
    with _lock:
        if not _registered:
            for uid, keyword in _missing_from_pynetdicom():
                register_uid(uid, keyword, StorageServiceClass)
                _registered.append(uid)
            logger.debug("Storage SOP classes added to pynetdicom's: %d", len(_registered))
        known = [context.abstract_syntax for context in AllStoragePresentationContexts]
        return known + [uid for uid in _registered if uid not in known]
