"""Background work for the browser: thumbnails, verdicts, examinations, loading and network, off the GUI thread.

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


class BackgroundTask(QtCore.QThread):
    """One long operation (loading, C-ECHO, C-FIND, retrieve, send) on its own thread, so the window never freezes.

    `work(task)` runs in the thread and calls the same DICOMBrowserLogic method the GUI called
    before; the logic's progress callback is `task.report`, whose return value (the cancel flag)
    is what the logic reads to stop. The result or the error message waits in `result`/`error`
    (set before the signal is emitted); the signals carry only ints and strings, no Python objects
    (see the module docstring). A failure is logged here once, with the operation's name (the
    error log shows it) unless `log_failures` is False, and sent as `failed(message)`.
    """

    progressed = QtCore.Signal(int, int, int, int)  # completed, remaining, failed, warning
    noted = QtCore.Signal(str)  # a status line from the work ("study 2 of 3")
    succeeded = QtCore.Signal()
    failed = QtCore.Signal(str)

    def __init__(self, name: str, work: Callable[["BackgroundTask"], Any], cancellable: bool = False,
                 log_failures: bool = True):
        super().__init__()
        self.setObjectName(name)
        self.name = name
        self.work = work
        self.cancellable = cancellable
        self.log_failures = log_failures  # False when the receiver logs the failure itself
        self.result: Any = None
        self.error: str | None = None
        self._cancel = threading.Event()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Ask the work to stop at its next progress callback (only work whose logic call supports it)."""
        self._cancel.set()

    def report(self, completed: int, remaining: int, failed: int = 0, warning: int = 0) -> bool:
        """The progress callback handed to the logic; returns True when the user cancelled."""
        self.progressed.emit(int(completed or 0), int(remaining or 0), int(failed or 0), int(warning or 0))
        return self._cancel.is_set()

    def note(self, text: str) -> None:
        self.noted.emit(str(text))

    def run(self) -> None:
        try:
            self.result = self.work(self)
        except (DICOMBrowserError, OSError, ValueError, RuntimeError, KeyError) as error:
            self.error = str(error) or type(error).__name__
            if self.log_failures:
                logger.error("%s failed: %s", self.name, self.error)
            self.failed.emit(self.error)
            return
        except Exception as error:  # noqa: BLE001 - the thread's edge: an unexpected bug is reported, not lost
            self.error = f"{type(error).__name__}: {error}"
            logger.exception("%s failed unexpectedly", self.name)
            self.failed.emit(self.error)
            return
        self.succeeded.emit()


#: the name the network dialogs and their tests know
NetworkTask = BackgroundTask


class _TaskKeeper(QtCore.QObject):
    """Keeps running tasks alive until their thread has ended, then lets them go (in the GUI thread).

    A QThread deleted while it runs aborts the process, and a dialog closed during a slow C-FIND
    must not wait for its timeout; so nobody but the keeper has to hold a task.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tasks: set[BackgroundTask] = set()

    def add(self, task: BackgroundTask) -> None:
        self.tasks.add(task)
        task.finished.connect(self.forget)

    def forget(self) -> None:
        task = self.sender()
        if isinstance(task, BackgroundTask):
            task.wait(5000)  # `finished` is sent just before the thread really ends
            self.tasks.discard(task)


_keeper: _TaskKeeper | None = None


def start_task(task: BackgroundTask) -> BackgroundTask:
    """Start a task (from the GUI thread); it stays alive until its thread ended, whoever started it."""
    global _keeper
    if _keeper is None:
        _keeper = _TaskKeeper()
    _keeper.add(task)
    task.start()
    return task


def running_tasks() -> list[BackgroundTask]:
    return [task for task in (_keeper.tasks if _keeper else ()) if task.isRunning()]


def stop_tasks(msecs: int = 30000) -> bool:
    """Cancel every running background task and wait for them (the application is closing); True if all ended."""
    tasks = running_tasks()
    for task in tasks:
        task.cancel()
    deadline = QtCore.QDeadlineTimer(msecs)
    return all(task.wait(deadline) for task in tasks)


class _Relay(QtCore.QObject):
    """Calls back in the GUI thread with the task that ended.

    A Python lambda connected straight to a task's signal has no receiver object, so Qt runs it
    in the emitting (worker) thread; a slot of this QObject, which lives in the GUI thread, is
    queued there instead.
    """

    def __init__(self, task: BackgroundTask, succeeded: Callable[[BackgroundTask], Any],
                 failed: Callable[[BackgroundTask, str], Any] | None, parent: QtCore.QObject):
        super().__init__(parent)
        self.task = task
        self._succeeded = succeeded
        self._failed = failed
        task.succeeded.connect(self.on_succeeded)
        task.failed.connect(self.on_failed)

    @QtCore.Slot()
    def on_succeeded(self) -> None:
        self._succeeded(self.task)
        self.deleteLater()

    @QtCore.Slot(str)
    def on_failed(self, message: str) -> None:
        if self._failed is not None:
            self._failed(self.task, message)
        self.deleteLater()


def when_done(task: BackgroundTask, context: QtCore.QObject, succeeded: Callable[[BackgroundTask], Any],
              failed: Callable[[BackgroundTask, str], Any] | None = None) -> None:
    """Call `succeeded(task)` or `failed(task, message)` in the GUI thread when the task ends
    (create it in the GUI thread, before starting the task; `context` owns the relay)."""
    _Relay(task, succeeded, failed, context)
