"""Dialogs of the browser: settings (local AE, port, remote nodes), query/retrieve, node choice.

They edit `config.DatabaseSettings` through the logic and call the logic's networking methods
on a `NetworkTask` thread (C-ECHO, C-FIND, retrieve), so a slow or dead peer never freezes the
window: the buttons that would start another operation are disabled meanwhile, progress comes
back as signals, and a failure (refused association, timeout, bad port) is shown in the dialog
and logged with the peer, never raised into Qt's event loop. Closing a dialog cancels its
retrieve and leaves a running C-ECHO/C-FIND to end on its own (the logic has no cancel for them).
"""
from __future__ import annotations

import logging
from typing import Any

from PySide6 import QtCore, QtWidgets

from ..config import DatabaseSettings, RemoteNode
from ..errors import DICOMBrowserError
from .workers import NetworkTask, start_task

logger = logging.getLogger(__name__)


def _detach(task: NetworkTask | None) -> None:
    """Stop listening to a task whose dialog goes away; cancel it if its logic call can be cancelled."""
    if task is None or not task.isRunning():
        return
    for signal in (task.progressed, task.noted, task.succeeded, task.failed):
        try:
            signal.disconnect()
        except (RuntimeError, TypeError):  # nothing connected
            pass
    if task.cancellable:
        task.cancel()


NODE_COLUMNS = ["Name", "AE title", "Host", "Port", "Retrieve"]


class SettingsDialog(QtWidgets.QDialog):
    """Local AE title and port, allowed callers, and the table of remote nodes."""

    echoFinished = QtCore.Signal(bool)  # True when the node answered

    def __init__(self, logic: Any, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("DICOM network settings")
        self.logic = logic
        settings = logic.settings
        self.ae_title = QtWidgets.QLineEdit(settings.ae_title)
        self.ae_title.setMaxLength(16)
        self.port = QtWidgets.QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(int(settings.port))
        self.callers = QtWidgets.QLineEdit(", ".join(settings.allowed_callers))
        self.callers.setPlaceholderText("empty: accept any calling AE title")
        form = QtWidgets.QFormLayout()
        form.addRow("Local AE title:", self.ae_title)
        form.addRow("Listener port:", self.port)
        form.addRow("Allowed callers:", self.callers)

        self.nodes = QtWidgets.QTableWidget(0, len(NODE_COLUMNS))
        self.nodes.setObjectName("nodeTable")
        self.nodes.setHorizontalHeaderLabels(NODE_COLUMNS)
        self.nodes.horizontalHeader().setStretchLastSection(True)
        for node in settings.nodes.values():
            self.add_node_row(node)
        add = QtWidgets.QPushButton("Add node")
        add.clicked.connect(lambda: self.add_node_row(RemoteNode("PACS", "PACS", "127.0.0.1", 104)))
        remove = QtWidgets.QPushButton("Remove node")
        remove.clicked.connect(lambda: self.nodes.removeRow(self.nodes.currentRow()))
        self.echo_button = QtWidgets.QPushButton("Verify (C-ECHO)")
        self.echo_button.clicked.connect(self.echo_current)
        self.echo_button.setEnabled(callable(getattr(logic, "echo", None)))
        self.echo_task: NetworkTask | None = None
        self.echo_node = ""
        self.echo_running = False
        self.message = QtWidgets.QLabel()
        self.message.setObjectName("settingsMessage")
        self.message.setWordWrap(True)
        buttons_row = QtWidgets.QHBoxLayout()
        for button in (add, remove, self.echo_button):
            buttons_row.addWidget(button)
        buttons_row.addStretch(1)

        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Save
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QtWidgets.QLabel("Remote nodes:"))
        layout.addWidget(self.nodes)
        layout.addLayout(buttons_row)
        layout.addWidget(self.message)
        layout.addWidget(buttons)
        self.resize(640, 420)

    def add_node_row(self, node: RemoteNode) -> None:
        row = self.nodes.rowCount()
        self.nodes.insertRow(row)
        for column, value in enumerate((node.name, node.ae_title, node.host, str(node.port), node.retrieve)):
            self.nodes.setItem(row, column, QtWidgets.QTableWidgetItem(value))

    def settings_from_form(self) -> DatabaseSettings:
        """The settings as edited; raises ValueError naming the bad field."""
        settings = self.logic.settings
        ae_title = self.ae_title.text().strip()
        if not ae_title or len(ae_title) > 16 or "\\" in ae_title:
            raise ValueError(f"local AE title {ae_title!r} must be 1-16 characters without a backslash")
        settings.ae_title = ae_title
        settings.port = int(self.port.value())
        settings.allowed_callers = [c.strip() for c in self.callers.text().split(",") if c.strip()]
        nodes: dict[str, RemoteNode] = {}
        for row in range(self.nodes.rowCount()):
            values = [(self.nodes.item(row, c).text().strip() if self.nodes.item(row, c) else "")
                      for c in range(len(NODE_COLUMNS))]
            name, ae, host, port, retrieve = values
            if not name:
                continue
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"node {name}: port {port!r} is not a number between 1 and 65535")
            if retrieve not in ("move", "get"):
                raise ValueError(f"node {name}: retrieve must be 'move' or 'get', not {retrieve!r}")
            nodes[name] = RemoteNode(name=name, ae_title=ae or name, host=host or "127.0.0.1",
                                     port=int(port), retrieve=retrieve)
        settings.nodes = nodes
        return settings

    def accept(self) -> None:
        try:
            self.logic.save_settings(self.settings_from_form())
        except (ValueError, DICOMBrowserError, OSError) as error:
            self.message.setText(f"Not saved: {error}")
            logger.warning("Settings not saved: %s", error)
            return
        super().accept()

    def echo_current(self) -> NetworkTask | None:
        """C-ECHO the selected node on a thread; the answer (or the failure) goes to the message line."""
        row = self.nodes.currentRow()
        if row < 0:
            self.message.setText("Select a node first")
            return None
        if self.echo_running:  # not echo_task.isRunning(): the thread lingers after its answer
            return self.echo_task
        name = self.nodes.item(row, 0).text()
        try:
            self.logic.save_settings(self.settings_from_form())
        except (ValueError, DICOMBrowserError, OSError) as error:
            self.message.setText(f"C-ECHO to {name} not sent: {error}")
            logger.warning("C-ECHO to %s not sent: %s", name, error)
            return None
        logic = self.logic
        task = NetworkTask(f"C-ECHO to {name}", lambda _task: logic.echo(name))
        task.succeeded.connect(self._echo_done)
        task.failed.connect(self._echo_failed)
        self.echo_task, self.echo_node = task, name
        self.echo_running = True
        self.echo_button.setEnabled(False)
        self.message.setText(f"C-ECHO to {name}…")
        return start_task(task)

    def _echo_done(self) -> None:
        elapsed = self.echo_task.result if self.echo_task is not None else None
        self.echo_running = False
        self.echo_button.setEnabled(True)
        self.message.setText(f"C-ECHO to {self.echo_node}: OK"
                             + (f" ({float(elapsed) * 1000:.0f} ms)" if elapsed else ""))
        self.echoFinished.emit(True)

    def _echo_failed(self, message: str) -> None:
        self.echo_running = False
        self.echo_button.setEnabled(True)
        self.message.setText(f"C-ECHO to {self.echo_node} failed: {message}")
        self.echoFinished.emit(False)

    def done(self, result: int) -> None:
        _detach(self.echo_task)
        super().done(result)


def choose_node(logic: Any, parent: QtWidgets.QWidget | None, title: str) -> str | None:
    """Name of a configured remote node picked by the user, or None."""
    names = sorted(logic.settings.nodes)
    if not names:
        QtWidgets.QMessageBox.information(parent, title, "No remote node configured: add one in Settings.")
        return None
    name, ok = QtWidgets.QInputDialog.getItem(parent, title, "Remote node:", names, 0, False)
    return name if ok and name else None


class QueryRetrieveDialog(QtWidgets.QDialog):
    """C-FIND at study level with filters, a results table, and retrieve of the selected studies.

    Query and retrieve run on a NetworkTask: `queryFinished(n)` (n matches, -1 on failure) and
    `retrieveFinished(n)` (studies retrieved without error) say when; `matches`, `summaries` and
    `last_progress` (completed, remaining, failed, warning) hold what came back.
    """

    FILTERS = [("PatientName", "Patient name (wildcards * ?)"), ("PatientID", "Patient ID"),
               ("StudyDate", "Study date (YYYYMMDD or range A-B)"), ("Modality", "Modality"),
               ("StudyDescription", "Study description")]
    RESULT_COLUMNS = ["PatientName", "PatientID", "StudyDate", "StudyDescription", "ModalitiesInStudy",
                      "StudyInstanceUID"]

    retrieved = QtCore.Signal(object)  # the RetrieveSummary list, after a retrieve that fetched something
    queryFinished = QtCore.Signal(int)
    retrieveFinished = QtCore.Signal(int)

    def __init__(self, logic: Any, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("queryRetrieveDialog")
        self.setWindowTitle("Query and retrieve")
        self.logic = logic
        self.task: NetworkTask | None = None
        self.matches: list[dict] = []
        self.summaries: list[Any] = []
        self.last_progress: tuple[int, int, int, int] | None = None
        self._step = ""
        self._busy = False
        self._node = ""
        self._uids: list[str] = []
        self.node_combo = QtWidgets.QComboBox()
        self.node_combo.addItems(sorted(logic.settings.nodes))
        self.filter_edits: dict[str, QtWidgets.QLineEdit] = {}
        form = QtWidgets.QFormLayout()
        form.addRow("Node:", self.node_combo)
        for key, label in self.FILTERS:
            edit = QtWidgets.QLineEdit()
            edit.returnPressed.connect(self.run_query)
            self.filter_edits[key] = edit
            form.addRow(label + ":", edit)
        self.query_button = QtWidgets.QPushButton("Query")
        self.query_button.clicked.connect(self.run_query)
        self.retrieve_button = QtWidgets.QPushButton("Retrieve selected")
        self.retrieve_button.clicked.connect(self.retrieve_selected)
        self.retrieve_button.setEnabled(False)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelNetworkButton")
        self.cancel_button.setToolTip("Stop the retrieve (what arrived so far stays in the database)")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setObjectName("networkProgress")
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.results = QtWidgets.QTableWidget(0, len(self.RESULT_COLUMNS))
        self.results.setObjectName("queryResults")
        self.results.setHorizontalHeaderLabels(self.RESULT_COLUMNS)
        self.results.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.results.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results.horizontalHeader().setStretchLastSection(True)
        self.results.setSortingEnabled(True)
        self.message = QtWidgets.QLabel()
        self.message.setObjectName("queryMessage")
        self.message.setWordWrap(True)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.query_button)
        row.addWidget(self.retrieve_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.accept)
        row.addWidget(close)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.message)
        self.resize(820, 560)
        if not self.node_combo.count():
            self.message.setText("No remote node configured: add one in Settings.")
            self.query_button.setEnabled(False)

    def filters(self) -> dict[str, str]:
        return {key: edit.text().strip() for key, edit in self.filter_edits.items() if edit.text().strip()}

    def busy(self) -> bool:
        """An operation was started and its result has not been shown yet.

        Not `task.isRunning()`: the thread still runs for a moment after its result arrived.
        """
        return self._busy

    def _set_busy(self, busy: bool, cancellable: bool = False) -> None:
        """While an operation runs nothing else can start; Cancel only when the logic can stop it."""
        self._busy = busy
        self.query_button.setEnabled(not busy and bool(self.node_combo.count()))
        self.retrieve_button.setEnabled(not busy and self.results.rowCount() > 0)
        self.node_combo.setEnabled(not busy)
        for edit in self.filter_edits.values():
            edit.setReadOnly(busy)
        self.cancel_button.setEnabled(busy and cancellable)
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)  # busy indicator until the first counts arrive
            self.progress.setFormat("")

    def _start(self, task: NetworkTask) -> NetworkTask:
        self.task = task
        self.last_progress = None
        self._step = ""
        task.progressed.connect(self._progressed)
        task.noted.connect(self._noted)
        self._set_busy(True, task.cancellable)
        return start_task(task)

    def cancel(self) -> None:
        if self.busy() and self.task is not None and self.task.cancellable:
            self.task.cancel()
            self.cancel_button.setEnabled(False)
            self.message.setText("Cancelling…")

    # --- query -------------------------------------------------------------------------------------
    def run_query(self) -> NetworkTask | None:
        """Start a study-level C-FIND with the filters; `queryFinished` tells when the table is filled."""
        node = self.node_combo.currentText()
        if not node or self.busy():
            return None
        logic, filters = self.logic, self.filters()
        task = NetworkTask(f"Query of {node}", lambda _task: logic.find(node, level="study", filters=filters))
        task.succeeded.connect(self._query_done)
        task.failed.connect(self._query_failed)
        self._node = node
        self.message.setText(f"Querying {node}…")
        return self._start(task)

    def _query_done(self) -> None:
        result = self.task.result if self.task is not None else None
        matches = list(getattr(result, "matches", result) or [])
        self.matches = matches
        self.results.setSortingEnabled(False)
        self.results.setRowCount(len(matches))
        for r, match in enumerate(matches):
            for c, key in enumerate(self.RESULT_COLUMNS):
                self.results.setItem(r, c, QtWidgets.QTableWidgetItem(str(match.get(key, ""))))
        self.results.setSortingEnabled(True)
        self.results.resizeColumnsToContents()
        self._set_busy(False)
        self.message.setText(f"{len(matches)} studies on {self._node}")
        self.queryFinished.emit(len(matches))

    def _query_failed(self, message: str) -> None:
        self.matches = []
        self._set_busy(False)
        self.message.setText(f"Query of {self._node} failed: {message}")
        self.queryFinished.emit(-1)

    # --- retrieve ---------------------------------------------------------------------------------
    def selected_study_uids(self) -> list[str]:
        column = self.RESULT_COLUMNS.index("StudyInstanceUID")
        rows = sorted({index.row() for index in self.results.selectionModel().selectedRows()})
        return [self.results.item(r, column).text() for r in rows if self.results.item(r, column)]

    def retrieve_selected(self) -> NetworkTask | None:
        """Retrieve the selected studies one by one on a thread, with progress and Cancel."""
        node = self.node_combo.currentText()
        uids = self.selected_study_uids()
        if not uids:
            self.message.setText("Select one or more studies to retrieve")
            return None
        if not node or self.busy():
            return None
        logic = self.logic

        def work(task: NetworkTask) -> list[tuple[str, Any, str | None]]:
            outcomes: list[tuple[str, Any, str | None]] = []
            for number, uid in enumerate(uids, 1):
                if task.cancel_requested:
                    break
                task.note(f"study {number} of {len(uids)}")
                try:
                    outcomes.append((uid, logic.retrieve(node, [uid], level="study", progress=task.report), None))
                except DICOMBrowserError as error:
                    logger.error("Retrieve of study %s from %s failed: %s", uid, node, error)
                    outcomes.append((uid, None, str(error)))
            return outcomes

        task = NetworkTask(f"Retrieve from {node}", work, cancellable=True)
        task.succeeded.connect(self._retrieve_done)
        task.failed.connect(self._retrieve_failed)
        self._node, self._uids = node, uids
        self.message.setText(f"Retrieving {len(uids)} studies from {node}…")
        return self._start(task)

    def _noted(self, text: str) -> None:
        self._step = text

    def _progressed(self, completed: int, remaining: int, failed: int, warning: int) -> None:
        self.last_progress = (completed, remaining, failed, warning)
        done = completed + failed + warning
        total = done + remaining
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setFormat("%v of %m")
        step = f"{self._step}: " if self._step and len(self._uids) > 1 else ""
        self.message.setText(f"Retrieving from {self._node}, {step}{completed} completed, {remaining} remaining, "
                             f"{failed} failed" + (f", {warning} with warnings" if warning else ""))

    def _retrieve_done(self) -> None:
        outcomes = list(self.task.result or []) if self.task is not None else []
        cancelled = bool(self.task is not None and self.task.cancel_requested)
        node, wanted = self._node, len(self._uids)
        summaries = [summary for _, summary, _ in outcomes if summary is not None]
        good = [s for s in summaries if getattr(s, "ok", True)]
        lines = []
        for uid, summary, error in outcomes:
            if error is not None:
                lines.append(f"Retrieve of {uid} from {node} failed: {error}")
            elif not getattr(summary, "ok", True):
                problems = "; ".join(getattr(summary, "errors", []) or []) or f"{summary.failed} failed"
                lines.append(f"Retrieve of {uid} from {node}: {problems}")
                if not (cancelled and problems == "cancelled"):
                    logger.error("Retrieve of study %s from %s: %s", uid, node, problems)
        received = sum(int(getattr(s, "received", 0) or getattr(s, "completed", 0) or 0) for s in summaries)
        text = f"Retrieved {len(good)} of {wanted} studies from {node} ({received} instances)"
        if cancelled:
            text = "Cancelled. " + text
        self.summaries = summaries
        self._set_busy(False)
        self.message.setText("\n".join([text] + lines[:5]))
        if summaries:
            self.retrieved.emit(summaries)
        self.retrieveFinished.emit(len(good))

    def _retrieve_failed(self, message: str) -> None:
        self.summaries = []
        self._set_busy(False)
        self.message.setText(f"Retrieve from {self._node} failed: {message}")
        self.retrieveFinished.emit(-1)

    def done(self, result: int) -> None:
        """Closing the dialog cancels its retrieve; a running C-FIND ends on its own (timeouts)."""
        _detach(self.task)
        super().done(result)
