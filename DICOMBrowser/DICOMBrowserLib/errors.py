"""Project exceptions: each names the file, UID or peer it is about, so a one-line CLI error says enough."""
from __future__ import annotations


class DICOMBrowserError(Exception):
    """Base class: everything the CLI turns into a one-line error and exit code 1."""


class DatabaseError(DICOMBrowserError):
    """The database folder is missing, corrupt, locked or of an unknown schema version."""


class SchemaVersionError(DatabaseError):
    """The database was written by a schema we do not know; we refuse rather than damage it."""


class NotFoundError(DICOMBrowserError):
    """A UID, node or file asked for is not in the database or configuration."""


class DICOMFileError(DICOMBrowserError):
    """A file that claims to be DICOM cannot be read; the message names the file and the reason."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class LoadError(DICOMBrowserError):
    """A loadable could not be turned into a node."""


class NetworkError(DICOMBrowserError):
    """A DICOM peer refused, timed out, aborted, or a port could not be bound; names the peer/port."""


class ExportError(DICOMBrowserError):
    """An export would produce an invalid object; raised before anything is written."""
