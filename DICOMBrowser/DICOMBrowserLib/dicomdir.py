"""DICOMDIR media (CDs, DVDs, USB sticks): the files a DICOMDIR lists.

A DICOMDIR is an index, not an instance: importing one means importing the files its IMAGE (and
other leaf) records reference. Media written on other systems often differ in case from what the
DICOMDIR says (ISO 9660 upper case, mounted lower case), so components are matched case-insensitively.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from .errors import DICOMFileError

logger = logging.getLogger(__name__)

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


def is_dicomdir(path: str | os.PathLike) -> bool:
    """True for a file named DICOMDIR or whose meta says Media Storage Directory Storage."""
    path = Path(path)
    if path.name.upper() == "DICOMDIR":
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(132 + 256)
    except OSError:
        return False
    return head[128:132] == b"DICM" and MEDIA_STORAGE_DIRECTORY.encode() in head


def _resolve_case_insensitive(base: Path, parts: list[str]) -> Path | None:
    current = base
    for part in parts:
        candidate = current / part
        if candidate.exists():
            current = candidate
            continue
        try:
            matches = [entry for entry in os.listdir(current) if entry.upper() == part.upper()]
        except OSError:
            return None
        if not matches:
            return None
        current = current / matches[0]
    return current


def referenced_files(dicomdir_path: str | os.PathLike) -> list[Path]:
    """Existing files referenced by a DICOMDIR's records (missing ones are logged, not fatal)."""
    dicomdir_path = Path(dicomdir_path)
    try:
        ds = pydicom.dcmread(dicomdir_path, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        raise DICOMFileError(str(dicomdir_path), f"cannot read DICOMDIR: {error}") from error
    base = dicomdir_path.parent
    files: list[Path] = []
    for record in ds.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [str(p) for p in file_id] if isinstance(file_id, (list, pydicom.multival.MultiValue)) else [str(file_id)]
        parts = [p for part in parts for p in part.replace("\\", "/").split("/") if p]
        if any(p in (".", "..") for p in parts):
            logger.warning("%s: ignoring referenced file outside the medium: %s", dicomdir_path, parts)
            continue
        resolved = _resolve_case_insensitive(base, parts)
        if resolved is None or not resolved.is_file():
            logger.warning("%s: referenced file %s is missing", dicomdir_path, "/".join(parts))
            continue
        files.append(resolved)
    return files
