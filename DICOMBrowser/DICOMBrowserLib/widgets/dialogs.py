"""Dialogs of the browser: settings (local AE, port, remote nodes), query/retrieve, node choice.

They edit `config.DatabaseSettings` through the logic and call the logic's networking methods
on a `NetworkTask` thread (C-ECHO, C-FIND, retrieve), so a slow or dead peer never freezes the
window: the buttons that would start another operation are disabled meanwhile, progress comes
back as signals, and a failure (refused association, timeout, bad port) is shown in the dialog
and logged with the peer, never raised into Qt's event loop. Closing a dialog cancels its
retrieve and leaves a running C-ECHO/C-FIND to end on its own (the logic has no cancel for them).
"""
from __future__ import annotations

import dataclasses

import logging
from typing import Any

from PySide6 import QtCore, QtWidgets

from ..config import DatabaseSettings, RemoteNode
from ..errors import DICOMBrowserError
from .models import dicom_date, person_name
from .state import recall, remember
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


NODE_COLUMNS = ["Name", "AE title", "Host", "Port", "Retrieve by"]
RETRIEVE_METHODS = {"get": "C-GET", "move": "C-MOVE"}


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
        # a DICOMweb node shows its URL; it is edited with `dicombrowser node add` and kept as it is
        shown = (node.name, "DICOMweb", node.url, "") if node.is_dicomweb else \
            (node.name, node.ae_title, node.host, str(node.port))
        for column, value in enumerate(shown):
            self.nodes.setItem(row, column, QtWidgets.QTableWidgetItem(value))
        method = QtWidgets.QComboBox()
        for key, label in RETRIEVE_METHODS.items():
            method.addItem(label, key)
        method.setCurrentIndex(max(0, method.findData(node.retrieve)))
        method.setToolTip("C-GET: the node sends the images on the same connection (no listener needed);\n"
                          "C-MOVE: the node connects back to our listener (the node must know our AE title and port)")
        self.nodes.setCellWidget(row, len(NODE_COLUMNS) - 1, method)

    def retrieve_method(self, row: int) -> str:
        widget = self.nodes.cellWidget(row, len(NODE_COLUMNS) - 1)
        if isinstance(widget, QtWidgets.QComboBox):
            return str(widget.currentData())
        item = self.nodes.item(row, len(NODE_COLUMNS) - 1)
        return item.text().strip() if item else "get"

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
        before = dict(settings.nodes)
        for row in range(self.nodes.rowCount()):
            values = [(self.nodes.item(row, c).text().strip() if self.nodes.item(row, c) else "")
                      for c in range(len(NODE_COLUMNS) - 1)]
            name, ae, host, port = values
            retrieve = self.retrieve_method(row)
            if not name:
                continue
            if name in before and before[name].is_dicomweb:  # not editable here: kept whole
                nodes[name] = before[name]
                continue
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"node {name}: port {port!r} is not a number between 1 and 65535")
            if retrieve not in ("move", "get"):
                raise ValueError(f"node {name}: retrieve must be 'move' or 'get', not {retrieve!r}")
            edited = dict(name=name, ae_title=ae or name, host=host or "127.0.0.1", port=int(port), retrieve=retrieve)
            # a node's TLS settings are not in the table: kept from before
            nodes[name] = dataclasses.replace(before[name], **edited) if name in before else RemoteNode(**edited)
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


def node_names(logic: Any) -> list[str]:
    """Configured nodes, the one used last first (the alphabetically first may be an offline one)."""
    names = sorted(logic.settings.nodes)
    last = str(recall("network/lastNode", "") or "")
    return ([last] if last in names else []) + [name for name in names if name != last]


def node_label(node: Any) -> str:
    return f"{node.name}  ({node.ae_title} at {node.host}:{node.port}, retrieve by {RETRIEVE_METHODS.get(node.retrieve, node.retrieve)})"


def describe_uids(logic: Any, uids: list[str]) -> list[str]:
    """One line per patient/study/series UID, as a user recognises it (for the Send dialog)."""
    from .models import dicom_date, person_name

    database = logic.database
    lines = []
    for uid in uids:
        level = database.level_of(uid)
        if level == "series":
            row = (database.series(SeriesInstanceUID=uid) or [{}])[0]
            lines.append(f"Series {row.get('SeriesNumber', '')} {row.get('Modality', '')} "
                         f"'{row.get('SeriesDescription') or '(no description)'}', {row.get('NumberOfInstances', 0)} "
                         f"instances, of {person_name(str(row.get('PatientName') or '')) or '(no name)'}")
        elif level == "study":
            row = (database.studies(StudyInstanceUID=uid) or [{}])[0]
            lines.append(f"Study of {dicom_date(str(row.get('StudyDate') or '')) or '(no date)'} "
                         f"'{row.get('StudyDescription') or '(no description)'}', {row.get('NumberOfSeries', 0)} series, "
                         f"{row.get('NumberOfInstances', 0)} instances, of "
                         f"{person_name(str(row.get('PatientName') or '')) or '(no name)'}")
        elif level == "patient":
            row = (database.patients(PatientUID=uid) or [{}])[0]
            lines.append(f"Patient {person_name(str(row.get('PatientName') or '')) or '(no name)'} "
                         f"(ID {row.get('PatientID', '')}), {row.get('NumberOfStudies', 0)} studies, "
                         f"{row.get('NumberOfInstances', 0)} instances")
        else:
            lines.append(uid)
    return lines


class SendDialog(QtWidgets.QDialog):
    """'Send what to which node': the items named as in the tables, the node with its address."""

    def __init__(self, logic: Any, uids: list[str], parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("sendDialog")
        self.setWindowTitle("Send to a DICOM node")
        self.logic = logic
        self.what = describe_uids(logic, uids)
        nodes = logic.settings.nodes
        self.node_combo = QtWidgets.QComboBox()
        self.node_combo.setObjectName("sendNode")
        for name in node_names(logic):
            self.node_combo.addItem(node_label(nodes[name]), name)
        what = QtWidgets.QLabel("\n".join(self.what))
        what.setObjectName("sendWhat")
        what.setWordWrap(True)
        what.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok).setText("Send")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(QtWidgets.QLabel("<b>Send</b>"))
        layout.addWidget(what)
        layout.addWidget(QtWidgets.QLabel("<b>to</b>"))
        layout.addWidget(self.node_combo)
        layout.addWidget(buttons)
        self.resize(560, 200)

    def node_name(self) -> str | None:
        return self.node_combo.currentData() or None


def _local_instances(logic: Any, level: str, uid: str) -> int | None:
    """Instances of a study/series already in our database (None when it is not there at all)."""
    rows = (logic.studies(StudyInstanceUID=uid) if level == "study" else logic.series(SeriesInstanceUID=uid))
    return int(rows[0].get("NumberOfInstances") or 0) if rows else None


def _remote_count(match: dict, level: str) -> int | None:
    key = "NumberOfStudyRelatedInstances" if level == "study" else "NumberOfSeriesRelatedInstances"
    try:
        return int(str(match.get(key, "")).strip())
    except ValueError:
        return None


def in_database_text(local: int | None, remote: int | None) -> str:
    """'yes', 'partly (16 of 93)', or '' for the 'In database' column."""
    if local is None:
        return ""
    if remote is not None and local < remote:
        return f"partly ({local} of {remote})"
    return "yes"


class QueryRetrieveDialog(QtWidgets.QDialog):
    """C-FIND of studies with filters, the series of a study on demand, and retrieve of either.

    Non-modal (the browser stays usable). Query and retrieve run on a NetworkTask:
    `queryFinished(n)` (n matches, -1 on failure) and `retrieveFinished(n)` (items retrieved
    without error) say when; `matches`, `series_matches`, `summaries` and `last_progress`
    (completed, remaining, failed, warning) hold what came back. The "In database" column says
    which studies/series are already here, wholly or partly.
    """

    FILTERS = [("PatientName", "Patient name (wildcards * ?)"), ("PatientID", "Patient ID"),
               ("StudyDate", "Study date (YYYYMMDD or range A-B)"), ("Modality", "Modality"),
               ("StudyDescription", "Study description")]
    # (key in the C-FIND answer, header); the UID column is hidden
    STUDY_COLUMNS = [("PatientName", "Patient name"), ("PatientID", "Patient ID"), ("StudyDate", "Study date"),
                     ("StudyDescription", "Description"), ("ModalitiesInStudy", "Modalities"),
                     ("NumberOfStudyRelatedInstances", "Instances"), ("_in_database", "In database"),
                     ("StudyInstanceUID", "Study UID")]
    SERIES_COLUMNS = [("SeriesNumber", "#"), ("Modality", "Modality"), ("SeriesDescription", "Description"),
                      ("NumberOfSeriesRelatedInstances", "Instances"), ("_in_database", "In database"),
                      ("SeriesInstanceUID", "Series UID")]
    RESULT_COLUMNS = [key for key, _ in STUDY_COLUMNS]
    FORMAT = {"PatientName": person_name, "StudyDate": dicom_date}

    retrieved = QtCore.Signal(object)  # the RetrieveSummary list, after a retrieve that fetched something
    queryFinished = QtCore.Signal(int)
    seriesFinished = QtCore.Signal(int)
    retrieveFinished = QtCore.Signal(int)

    def __init__(self, logic: Any, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("queryRetrieveDialog")
        self.setWindowTitle("Query and retrieve")
        self.setModal(False)
        self.logic = logic
        self.task: NetworkTask | None = None
        self.matches: list[dict] = []
        self.series_matches: list[dict] = []
        self.summaries: list[Any] = []
        self.last_progress: tuple[int, int, int, int] | None = None
        self._step = ""
        self._busy = False
        self._node = ""
        self._uids: list[str] = []
        self._level = "study"
        self._series_study = ""
        self.node_combo = QtWidgets.QComboBox()
        self.node_combo.setObjectName("queryNode")
        nodes = logic.settings.nodes
        for name in node_names(logic):
            self.node_combo.addItem(name, name)
            self.node_combo.setItemData(self.node_combo.count() - 1, node_label(nodes[name]),
                                        QtCore.Qt.ItemDataRole.ToolTipRole)
        self.filter_edits: dict[str, QtWidgets.QLineEdit] = {}
        form = QtWidgets.QFormLayout()
        form.addRow("Node:", self.node_combo)
        for key, label in self.FILTERS:
            edit = QtWidgets.QLineEdit()
            edit.returnPressed.connect(self.run_query)
            self.filter_edits[key] = edit
            form.addRow(label + ":", edit)
        self.query_button = QtWidgets.QPushButton("Query")
        self.query_button.setDefault(True)
        self.query_button.clicked.connect(self.run_query)
        self.series_button = QtWidgets.QPushButton("Show series")
        self.series_button.setToolTip("List the series of the selected study (or double-click the study)")
        self.series_button.clicked.connect(self.query_series)
        self.series_button.setEnabled(False)
        self.retrieve_button = QtWidgets.QPushButton("Retrieve selected")
        self.retrieve_button.setToolTip("Retrieve the selected series, or else the selected studies")
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
        self.results = self._results_table("queryResults", self.STUDY_COLUMNS)
        self.results.itemSelectionChanged.connect(self._update_buttons)
        self.results.itemDoubleClicked.connect(lambda *_: self.query_series())
        self.series_results = self._results_table("seriesResults", self.SERIES_COLUMNS)
        self.series_results.itemSelectionChanged.connect(self._update_buttons)
        self.series_label = QtWidgets.QLabel("Series (double-click a study to list them):")
        self.message = QtWidgets.QLabel()
        self.message.setObjectName("queryMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.query_button)
        row.addWidget(self.series_button)
        row.addWidget(self.retrieve_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.accept)
        row.addWidget(close)
        series_box = QtWidgets.QWidget()
        series_layout = QtWidgets.QVBoxLayout(series_box)
        series_layout.setContentsMargins(0, 0, 0, 0)
        series_layout.addWidget(self.series_label)
        series_layout.addWidget(self.series_results)
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        split.addWidget(self.results)
        split.addWidget(series_box)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row)
        layout.addWidget(split, 1)
        layout.addWidget(self.message)
        self.resize(900, 640)
        if not self.node_combo.count():
            self.message.setText("No remote node configured: add one in Settings.")
            self.query_button.setEnabled(False)

    def _results_table(self, name: str, columns: list[tuple[str, str]]) -> QtWidgets.QTableWidget:
        table = QtWidgets.QTableWidget(0, len(columns))
        table.setObjectName(name)
        table.setHorizontalHeaderLabels([header for _, header in columns])
        table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        table.horizontalHeader().setStretchLastSection(False)
        table.verticalHeader().setVisible(False)
        table.verticalHeader().setDefaultSectionSize(21)
        table.setSortingEnabled(True)
        table.setColumnHidden(len(columns) - 1, True)  # the UID: for the code, not for reading
        description = next(c for c, (key, _) in enumerate(columns) if key.endswith("Description"))
        table.horizontalHeader().setSectionResizeMode(description, QtWidgets.QHeaderView.ResizeMode.Stretch)
        return table

    def filters(self) -> dict[str, str]:
        return {key: edit.text().strip() for key, edit in self.filter_edits.items() if edit.text().strip()}

    def busy(self) -> bool:
        """An operation was started and its result has not been shown yet.

        Not `task.isRunning()`: the thread still runs for a moment after its result arrived.
        """
        return self._busy

    def _update_buttons(self) -> None:
        busy = self._busy
        self.query_button.setEnabled(not busy and bool(self.node_combo.count()))
        self.series_button.setEnabled(not busy and bool(self.selected_study_uids()))
        self.retrieve_button.setEnabled(not busy and (self.results.rowCount() > 0 or self.series_results.rowCount() > 0))

    def _set_busy(self, busy: bool, cancellable: bool = False) -> None:
        """While an operation runs nothing else can start; Cancel only when the logic can stop it."""
        self._busy = busy
        self._update_buttons()
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

    def _fill(self, table: QtWidgets.QTableWidget, columns: list[tuple[str, str]], matches: list[dict]) -> None:
        table.setSortingEnabled(False)
        table.setRowCount(len(matches))
        for r, match in enumerate(matches):
            for c, (key, _) in enumerate(columns):
                value = str(match.get(key, "") or "")
                formatter = self.FORMAT.get(key)
                item = QtWidgets.QTableWidgetItem(formatter(value) if formatter else value)
                item.setToolTip(value)
                table.setItem(r, c, item)
        table.setSortingEnabled(True)
        table.resizeColumnsToContents()
        for c in range(table.columnCount()):
            table.setColumnWidth(c, min(table.columnWidth(c), 260))
        table.horizontalHeader().setSectionResizeMode(
            next(c for c, (key, _) in enumerate(columns) if key.endswith("Description")),
            QtWidgets.QHeaderView.ResizeMode.Stretch)

    # --- query -------------------------------------------------------------------------------------
    def run_query(self) -> NetworkTask | None:
        """Start a study-level C-FIND with the filters; `queryFinished` tells when the table is filled."""
        node = self.node_combo.currentData() or self.node_combo.currentText()
        if not node or self.busy():
            return None
        logic, filters = self.logic, self.filters()

        def work(_task: NetworkTask) -> list[dict]:
            result = logic.find(node, level="study", filters=filters)
            matches = [dict(match) for match in (getattr(result, "matches", result) or [])]
            for match in matches:  # in this thread: a query of our database per match
                uid = str(match.get("StudyInstanceUID", ""))
                match["_in_database"] = in_database_text(_local_instances(logic, "study", uid),
                                                         _remote_count(match, "study"))
            return matches

        task = NetworkTask(f"Query of {node}", work)
        task.succeeded.connect(self._query_done)
        task.failed.connect(self._query_failed)
        self._node = node
        remember("network/lastNode", node)
        self.message.setText(f"Querying {node}…")
        return self._start(task)

    def _query_done(self) -> None:
        self.matches = list(self.task.result or []) if self.task is not None else []
        self._fill(self.results, self.STUDY_COLUMNS, self.matches)
        self.series_results.setRowCount(0)
        self.series_matches = []
        self._set_busy(False)
        here = sum(1 for match in self.matches if match.get("_in_database"))
        self.message.setText(f"{len(self.matches)} studies on {self._node}"
                             + (f", {here} already in the database" if here else ""))
        self.queryFinished.emit(len(self.matches))

    def _query_failed(self, message: str) -> None:
        self.matches = []
        self._set_busy(False)
        self.message.setText(f"Query of {self._node} failed: {message}")
        self.queryFinished.emit(-1)

    def query_series(self) -> NetworkTask | None:
        """List the series of the (first) selected study: a series-level C-FIND."""
        uids = self.selected_study_uids()
        node = self.node_combo.currentData() or self.node_combo.currentText()
        if not uids or not node or self.busy():
            return None
        study_uid, logic = uids[0], self.logic

        def work(_task: NetworkTask) -> list[dict]:
            result = logic.find(node, level="series", filters={"StudyInstanceUID": study_uid})
            matches = [dict(match) for match in (getattr(result, "matches", result) or [])]
            for match in matches:
                match["_in_database"] = in_database_text(
                    _local_instances(logic, "series", str(match.get("SeriesInstanceUID", ""))),
                    _remote_count(match, "series"))
            return sorted(matches, key=lambda m: _series_number(m.get("SeriesNumber")))

        task = NetworkTask(f"Series query of {node}", work)
        task.succeeded.connect(self._series_done)
        task.failed.connect(self._series_failed)
        self._node, self._series_study = node, study_uid
        self.message.setText(f"Listing the series of the study on {node}…")
        return self._start(task)

    def _series_done(self) -> None:
        self.series_matches = list(self.task.result or []) if self.task is not None else []
        self._fill(self.series_results, self.SERIES_COLUMNS, self.series_matches)
        self._set_busy(False)
        study = next((m for m in self.matches if m.get("StudyInstanceUID") == self._series_study), {})
        self.series_label.setText(f"Series of {person_name(str(study.get('PatientName') or ''))}, "
                                  f"{dicom_date(str(study.get('StudyDate') or ''))} "
                                  f"{study.get('StudyDescription') or ''}: select some to retrieve only those")
        self.message.setText(f"{len(self.series_matches)} series in the study")
        self.seriesFinished.emit(len(self.series_matches))

    def _series_failed(self, message: str) -> None:
        self.series_matches = []
        self._set_busy(False)
        self.message.setText(f"Series query of {self._node} failed: {message}")
        self.seriesFinished.emit(-1)

    # --- retrieve ---------------------------------------------------------------------------------
    @staticmethod
    def _selected(table: QtWidgets.QTableWidget) -> list[str]:
        column = table.columnCount() - 1
        rows = sorted({index.row() for index in table.selectionModel().selectedRows()})
        return [table.item(r, column).text() for r in rows if table.item(r, column)]

    def selected_study_uids(self) -> list[str]:
        return self._selected(self.results)

    def selected_series_uids(self) -> list[str]:
        return self._selected(self.series_results)

    def retrieve_selected(self) -> NetworkTask | None:
        """Retrieve the selected series (or else studies) one by one on a thread, with progress and Cancel."""
        node = self.node_combo.currentData() or self.node_combo.currentText()
        level, uids = "series", self.selected_series_uids()
        if not uids:
            level, uids = "study", self.selected_study_uids()
        if not uids:
            self.message.setText("Select one or more studies (or series) to retrieve")
            return None
        if not node or self.busy():
            return None
        logic = self.logic

        def work(task: NetworkTask) -> list[tuple[str, Any, str | None]]:
            outcomes: list[tuple[str, Any, str | None]] = []
            for number, uid in enumerate(uids, 1):
                if task.cancel_requested:
                    break
                task.note(f"{level} {number} of {len(uids)}")
                try:
                    outcomes.append((uid, logic.retrieve(node, [uid], level=level, progress=task.report), None))
                except DICOMBrowserError as error:
                    logger.error("Retrieve of %s %s from %s failed: %s", level, uid, node, error)
                    outcomes.append((uid, None, str(error)))
            return outcomes

        task = NetworkTask(f"Retrieve from {node}", work, cancellable=True)
        task.succeeded.connect(self._retrieve_done)
        task.failed.connect(self._retrieve_failed)
        self._node, self._uids, self._level = node, uids, level
        remember("network/lastNode", node)
        self.message.setText(f"Retrieving {_count_text(len(uids), level)} from {node}…")
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
        node, wanted, level = self._node, len(self._uids), self._level
        summaries = [summary for _, summary, _ in outcomes if summary is not None]
        good = [s for s in summaries if getattr(s, "ok", True)]
        lines = []
        for uid, summary, error in outcomes:
            if error is not None:
                lines.append(f"Retrieve of {uid} from {node} failed: {error}")
            elif not getattr(summary, "ok", True):
                problems = "; ".join(getattr(summary, "errors", []) or []) or _status_text(summary)
                lines.append(f"{level.capitalize()} {uid}: {problems}")
                if not (cancelled and problems == "cancelled"):
                    logger.error("Retrieve of %s %s from %s: %s", level, uid, node, problems)
        received = sum(int(getattr(s, "received", 0) or getattr(s, "completed", 0) or 0) for s in summaries)
        failed = sum(int(getattr(s, "failed", 0) or 0) for s in summaries)
        if len(good) == wanted:
            text = f"Retrieved {len(good)} of {_count_text(wanted, level)} from {node} ({received} instances)"
        else:  # say what did arrive: a partial retrieve is not nothing
            text = (f"Retrieved {len(good)} of {_count_text(wanted, level)} completely from {node}; "
                    f"{received} instances arrived" + (f", {failed} failed" if failed else "")
                    + (" (what arrived is in the database)" if received else ""))
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


def _series_number(value: Any) -> float:
    try:
        return float(str(value))
    except ValueError:
        return float("inf")


def _count_text(count: int, level: str) -> str:
    return f"{count} {level if count == 1 or level == 'series' else 'studies'}"


#: final C-MOVE/C-GET statuses a user can act on (PS3.4 C.4.2.1.5 / C.4.3.1.4)
STATUS_TEXT = {0xA701: "the node is out of resources", 0xA702: "the node could not do the sub-operations",
               0xA801: "the node does not know our AE title as a move destination",
               0xA900: "the request did not match the node's information model",
               0xB000: "some instances failed or had warnings"}


def _status_text(summary: Any) -> str:
    status = int(getattr(summary, "status", 0) or 0)
    failed = int(getattr(summary, "failed", 0) or 0)
    meaning = STATUS_TEXT.get(status) or ("the node could not process the request" if status & 0xF000 == 0xC000 else "")
    text = f"{failed} instances failed" if failed else "incomplete"
    return text + (f"; status 0x{status:04X}" + (f": {meaning}" if meaning else "") if status else "")
