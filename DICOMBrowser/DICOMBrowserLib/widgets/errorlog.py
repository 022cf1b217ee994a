"""The error log panel: every WARNING+ log record of the application, with its details.

A logging.Handler can be called from any thread; it only emits a Qt signal, and the panel (in
the GUI thread) appends the row. So a failure in a worker, the listener or a plugin shows up
here instead of disappearing or crashing the interface.

Two things keep the log worth reading. Repeats of the same message (a network failure retried,
a finding logged by two plugins) become one row with a count. And the browser examines every
series it shows to fill the Geometry column: the findings a plugin logs then are facts about a
series merely looked at, already shown in that column, so warnings emitted while a thread is
`browsing()` are not listed (errors still are).
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import threading
from typing import Iterator

from PySide6 import QtCore, QtGui, QtWidgets

_browsing = threading.local()


@contextlib.contextmanager
def browsing() -> Iterator[None]:
    """Mark this thread's work as browsing: its warnings belong to the verdict column, not the log."""
    previous = getattr(_browsing, "active", False)
    _browsing.active = True
    try:
        yield
    finally:
        _browsing.active = previous


def is_browsing() -> bool:
    return bool(getattr(_browsing, "active", False))


class _Bridge(QtCore.QObject):
    record = QtCore.Signal(str, str, str, str)  # time, level, source, message


class QtLogHandler(logging.Handler):
    """Forwards records to the GUI thread through a queued signal."""

    def __init__(self, level: int = logging.WARNING):
        super().__init__(level)
        self.bridge = _Bridge()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR and is_browsing():
            return
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f"\n{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            when = datetime.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
            self.bridge.record.emit(when, record.levelname, record.name, message)
        except RuntimeError:  # the panel was deleted while the application shuts down
            pass


LEVELS = {"Warnings and errors": logging.WARNING, "Errors only": logging.ERROR}


class ErrorLogPanel(QtWidgets.QWidget):
    """A table of log records (time, level, count, source, message), a level filter, and the
    selected record's full text in a detail pane with Copy."""

    MAX_ROWS = 2000
    COLUMNS = ["Time", "Level", "Count", "Source", "Message"]

    def __init__(self, parent: QtWidgets.QWidget | None = None, level: int = logging.WARNING):
        super().__init__(parent)
        self.table = QtWidgets.QTableWidget(0, len(self.COLUMNS), self)
        self.table.setObjectName("errorLogTable")
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        for column, width in enumerate((60, 70, 45, 160)):
            self.table.setColumnWidth(column, width)
        self.table.itemSelectionChanged.connect(self._show_detail)
        self.detail = QtWidgets.QPlainTextEdit(self)
        self.detail.setObjectName("errorLogDetail")
        self.detail.setReadOnly(True)
        self.detail.setPlaceholderText("Select a row to read the whole message")
        self.level_combo = QtWidgets.QComboBox(self)
        self.level_combo.setObjectName("errorLogLevel")
        self.level_combo.addItems(list(LEVELS))
        self.level_combo.currentIndexChanged.connect(self._apply_level)
        copy = QtWidgets.QPushButton("Copy", self)
        copy.setToolTip("Copy the selected records (or all shown) to the clipboard")
        copy.clicked.connect(self.copy_to_clipboard)
        clear = QtWidgets.QPushButton("Clear", self)
        clear.clicked.connect(self.clear)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("Show:"))
        row.addWidget(self.level_combo)
        row.addStretch(1)
        row.addWidget(copy)
        row.addWidget(clear)
        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.table)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(splitter, 1)
        self._rows_by_key: dict[tuple[str, str, str], int] = {}
        self.handler = QtLogHandler(level)
        self.handler.bridge.record.connect(self.add_record)

    def install(self, logger_name: str = "") -> None:
        """Attach to a logger (the root logger by default: every module's records)."""
        logging.getLogger(logger_name).addHandler(self.handler)

    def uninstall(self, logger_name: str = "") -> None:
        logging.getLogger(logger_name).removeHandler(self.handler)

    def clear(self) -> None:
        self.table.setRowCount(0)
        self._rows_by_key.clear()
        self.detail.clear()

    def add_record(self, when: str, level: str, source: str, message: str) -> None:
        """Append a record, or count a repeat of one already listed (same level, source, text)."""
        key = (level, source, message)
        row = self._rows_by_key.get(key)
        if row is not None and row < self.table.rowCount():
            count = int(self.table.item(row, 2).text() or 1) + 1
            self.table.item(row, 2).setText(str(count))
            self.table.item(row, 0).setText(when)
            return
        if self.table.rowCount() >= self.MAX_ROWS:
            self.table.removeRow(0)
            self._rows_by_key = {k: r - 1 for k, r in self._rows_by_key.items() if r > 0}
        row = self.table.rowCount()
        self.table.insertRow(row)
        for column, text in enumerate((when, level, "1", source, message.splitlines()[0] if message else "")):
            item = QtWidgets.QTableWidgetItem(text)
            item.setToolTip(message)
            if level in ("ERROR", "CRITICAL"):
                item.setForeground(QtGui.QBrush(QtGui.QColor(200, 0, 0)))
            self.table.setItem(row, column, item)
        self._rows_by_key[key] = row
        self.table.setRowHidden(row, self._hidden(level))
        self.table.scrollToBottom()

    def _hidden(self, level: str) -> bool:
        threshold = LEVELS.get(self.level_combo.currentText(), logging.WARNING)
        return logging.getLevelName(level) < threshold if isinstance(logging.getLevelName(level), int) else False

    def _apply_level(self) -> None:
        for row in range(self.table.rowCount()):
            self.table.setRowHidden(row, self._hidden(self.table.item(row, 1).text()))

    def _record_text(self, row: int) -> str:
        cells = [self.table.item(row, c).text() for c in range(4)]
        count = f" (x{cells[2]})" if cells[2] not in ("", "1") else ""
        return f"{cells[0]} {cells[1]} {cells[3]}{count}: {self.table.item(row, 4).toolTip()}"

    def _show_detail(self) -> None:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        self.detail.setPlainText("\n\n".join(self._record_text(row) for row in rows))

    def copy_to_clipboard(self) -> str:
        """The selected records, or every shown one, as text on the clipboard; returns the text."""
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()}) or [
            row for row in range(self.table.rowCount()) if not self.table.isRowHidden(row)]
        text = "\n".join(self._record_text(row) for row in rows)
        QtWidgets.QApplication.clipboard().setText(text)
        return text

    def visible_count(self) -> int:
        return sum(1 for row in range(self.table.rowCount()) if not self.table.isRowHidden(row))

    def messages(self) -> list[str]:
        """Full messages listed (for tests and 'copy to clipboard')."""
        return [self.table.item(r, 4).toolTip() for r in range(self.table.rowCount())]
