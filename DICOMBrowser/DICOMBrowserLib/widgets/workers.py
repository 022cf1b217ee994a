"""Background work for the browser: thumbnails and geometry verdicts, off the GUI thread.

Each job is a QRunnable on a private QThreadPool; results come back through a QObject's signals,
which Qt delivers in the GUI thread. A job that fails reports the failure as a signal (and a
log record for the error panel) instead of raising in a worker thread.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from PySide6 import QtCore

from ..errors import DICOMBrowserError

logger = logging.getLogger(__name__)


class JobSignals(QtCore.QObject):
    """finished(key, result) or failed(key, message); key identifies the job (e.g. a series UID)."""

    finished = QtCore.Signal(str, object)
    failed = QtCore.Signal(str, str)


class FunctionJob(QtCore.QRunnable):
    """Run `function()` in a pool thread and report through `signals`."""

    def __init__(self, key: str, function: Callable[[], Any], signals: JobSignals):
        super().__init__()
        self.key = key
        self.function = function
        self.signals = signals
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            result = self.function()
        except (DICOMBrowserError, OSError, ValueError, RuntimeError, KeyError) as error:
            logger.warning("Background job %s failed: %s", self.key, error)
            self.signals.failed.emit(self.key, str(error))
            return
        self.signals.finished.emit(self.key, result)


class JobRunner(QtCore.QObject):
    """A small pool (2 threads: the machine is shared) with de-duplication of pending keys."""

    finished = QtCore.Signal(str, object)
    failed = QtCore.Signal(str, str)

    def __init__(self, max_threads: int = 2, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.pool = QtCore.QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self.signals = JobSignals()
        self.signals.finished.connect(self._finished)
        self.signals.failed.connect(self._failed)
        self.pending: set[str] = set()

    def submit(self, key: str, function: Callable[[], Any]) -> bool:
        """Queue a job unless one with the same key is already waiting; True if queued."""
        if key in self.pending:
            return False
        self.pending.add(key)
        self.pool.start(FunctionJob(key, function, self.signals))
        return True

    def _finished(self, key: str, result: Any) -> None:
        self.pending.discard(key)
        self.finished.emit(key, result)

    def _failed(self, key: str, message: str) -> None:
        self.pending.discard(key)
        self.failed.emit(key, message)

    def clear(self) -> None:
        """Drop queued jobs (e.g. the user picked another study); running ones finish."""
        self.pool.clear()
        self.pending.clear()

    def wait(self, msecs: int = 10000) -> bool:
        return self.pool.waitForDone(msecs)
