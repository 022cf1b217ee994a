"""Background work for the browser: thumbnails, geometry verdicts and examinations, off the GUI thread.

Each job is a QRunnable on a private QThreadPool. Its result waits in a locked mailbox and only
the job's key (a str) comes back through a queued signal, which Qt delivers in the GUI thread:
Python objects never go through Qt's marshalling across threads (PySide6 6.12.0 lost references
there and the interpreter aborted; pyproject pins <6.12). A job that fails is reported as a
failure for its key plus a log record for the error panel, never raised in a worker thread.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from PySide6 import QtCore

from ..errors import DICOMBrowserError

logger = logging.getLogger(__name__)


class JobSignals(QtCore.QObject):
    """done(key) when a job ended; its result or error waits in the runner's mailbox."""

    done = QtCore.Signal(str)


class FunctionJob(QtCore.QRunnable):
    """Run `function()` in a pool thread; put (ok, result-or-message) in the mailbox, signal the key."""

    def __init__(self, key: str, function: Callable[[], Any], signals: JobSignals,
                 mailbox: dict[str, tuple[bool, Any]], lock: threading.Lock, failure_level: int = logging.WARNING):
        super().__init__()
        self.key = key
        self.function = function
        self.signals = signals
        self.mailbox = mailbox
        self.lock = lock
        self.failure_level = failure_level
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            outcome = (True, self.function())
        except (DICOMBrowserError, OSError, ValueError, RuntimeError, KeyError) as error:
            logger.log(self.failure_level, "Background job %s failed: %s", self.key, error)
            outcome = (False, str(error))
        with self.lock:
            self.mailbox[self.key] = outcome
        self.signals.done.emit(self.key)


class JobRunner(QtCore.QObject):
    """A small pool (2 threads: the machine is shared) with de-duplication of pending keys."""

    finished = QtCore.Signal(str, object)
    failed = QtCore.Signal(str, str)

    def __init__(self, max_threads: int = 2, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.pool = QtCore.QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self.signals = JobSignals()
        self.signals.done.connect(self._done)
        self.pending: set[str] = set()
        self._mailbox: dict[str, tuple[bool, Any]] = {}
        self._lock = threading.Lock()

    def submit(self, key: str, function: Callable[[], Any], failure_level: int = logging.WARNING) -> bool:
        """Queue a job unless one with the same key is already waiting; True if queued.

        `failure_level`: how loudly a failure is logged (the error log shows WARNING and up).
        """
        if key in self.pending:
            return False
        self.pending.add(key)
        self.pool.start(FunctionJob(key, function, self.signals, self._mailbox, self._lock, failure_level))
        return True

    def _done(self, key: str) -> None:
        with self._lock:
            outcome = self._mailbox.pop(key, None)
        self.pending.discard(key)
        if outcome is None:
            return
        ok, value = outcome
        if ok:
            self.finished.emit(key, value)
        else:
            self.failed.emit(key, str(value))

    def clear(self) -> None:
        """Drop queued jobs (e.g. the user picked another study); running ones finish."""
        self.pool.clear()
        self.pending.clear()

    def wait(self, msecs: int = 10000) -> bool:
        return self.pool.waitForDone(msecs)
