"""Dialogs of the browser: settings (local AE, port, remote nodes), query/retrieve, node choice.

They edit `config.DatabaseSettings` through the logic and call the logic's networking methods;
a failure (refused association, timeout, bad port) is shown in the dialog and logged with the
peer, never raised into Qt's event loop.
"""
from __future__ import annotations

import logging
from typing import Any

from PySide6 import QtCore, QtWidgets

from ..config import DatabaseSettings, RemoteNode
from ..errors import DICOMBrowserError

logger = logging.getLogger(__name__)

NODE_COLUMNS = ["Name", "AE title", "Host", "Port", "Retrieve"]


class SettingsDialog(QtWidgets.QDialog):
    """Local AE title and port, allowed callers, and the table of remote nodes."""

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
        self.message = QtWidgets.QLabel()
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

    def echo_current(self) -> None:
        row = self.nodes.currentRow()
        if row < 0:
            self.message.setText("Select a node first")
            return
        name = self.nodes.item(row, 0).text()
        try:
            self.logic.save_settings(self.settings_from_form())
            elapsed = self.logic.echo(name)
        except (ValueError, DICOMBrowserError) as error:
            self.message.setText(f"C-ECHO to {name} failed: {error}")
            logger.warning("C-ECHO to %s failed: %s", name, error)
            return
        self.message.setText(f"C-ECHO to {name}: OK" + (f" ({float(elapsed) * 1000:.0f} ms)" if elapsed else ""))


def choose_node(logic: Any, parent: QtWidgets.QWidget | None, title: str) -> str | None:
    """Name of a configured remote node picked by the user, or None."""
    names = sorted(logic.settings.nodes)
    if not names:
        QtWidgets.QMessageBox.information(parent, title, "No remote node configured: add one in Settings.")
        return None
    name, ok = QtWidgets.QInputDialog.getItem(parent, title, "Remote node:", names, 0, False)
    return name if ok and name else None


class QueryRetrieveDialog(QtWidgets.QDialog):
    """C-FIND at study level with filters, a results table, and retrieve of the selected studies."""

    FILTERS = [("PatientName", "Patient name (wildcards * ?)"), ("PatientID", "Patient ID"),
               ("StudyDate", "Study date (YYYYMMDD or range A-B)"), ("Modality", "Modality"),
               ("StudyDescription", "Study description")]
    RESULT_COLUMNS = ["PatientName", "PatientID", "StudyDate", "StudyDescription", "ModalitiesInStudy",
                      "StudyInstanceUID"]

    retrieved = QtCore.Signal(object)

    def __init__(self, logic: Any, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("queryRetrieveDialog")
        self.setWindowTitle("Query and retrieve")
        self.logic = logic
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
        self.results = QtWidgets.QTableWidget(0, len(self.RESULT_COLUMNS))
        self.results.setObjectName("queryResults")
        self.results.setHorizontalHeaderLabels(self.RESULT_COLUMNS)
        self.results.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.results.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results.horizontalHeader().setStretchLastSection(True)
        self.results.setSortingEnabled(True)
        self.message = QtWidgets.QLabel()
        self.message.setWordWrap(True)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.query_button)
        row.addWidget(self.retrieve_button)
        row.addStretch(1)
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

    def run_query(self) -> list[dict]:
        node = self.node_combo.currentText()
        if not node:
            return []
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            result = self.logic.find(node, level="study", filters=self.filters())
        except DICOMBrowserError as error:
            self.message.setText(f"Query of {node} failed: {error}")
            logger.error("Query of %s failed: %s", node, error)
            return []
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
        matches = list(getattr(result, "matches", result))
        self.results.setSortingEnabled(False)
        self.results.setRowCount(len(matches))
        for r, match in enumerate(matches):
            for c, key in enumerate(self.RESULT_COLUMNS):
                self.results.setItem(r, c, QtWidgets.QTableWidgetItem(str(match.get(key, ""))))
        self.results.setSortingEnabled(True)
        self.results.resizeColumnsToContents()
        self.retrieve_button.setEnabled(bool(matches))
        self.message.setText(f"{len(matches)} studies on {node}")
        return matches

    def selected_study_uids(self) -> list[str]:
        column = self.RESULT_COLUMNS.index("StudyInstanceUID")
        rows = sorted({index.row() for index in self.results.selectionModel().selectedRows()})
        return [self.results.item(r, column).text() for r in rows if self.results.item(r, column)]

    def retrieve_selected(self) -> list[Any]:
        node = self.node_combo.currentText()
        uids = self.selected_study_uids()
        if not uids:
            self.message.setText("Select one or more studies to retrieve")
            return []
        summaries = []
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            for uid in uids:
                try:
                    summaries.append(self.logic.retrieve(node, [uid], level="study"))
                except DICOMBrowserError as error:
                    logger.error("Retrieve of study %s from %s failed: %s", uid, node, error)
                    self.message.setText(f"Retrieve of {uid} from {node} failed: {error}")
                    continue
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
        if summaries:
            received = sum(int(getattr(s, "received", 0) or getattr(s, "completed", 0) or 0) for s in summaries)
            self.message.setText(f"Retrieved {len(summaries)} of {len(uids)} studies from {node} "
                                 f"({received} instances)")
            self.retrieved.emit(summaries)
        return summaries
