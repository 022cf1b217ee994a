"""The error log panel: every WARNING+ log record of the application, with its details.

A logging.Handler can be called from any thread; it only emits a Qt signal, and the panel (in
the GUI thread) appends the row. So a failure in a worker, the listener or a plugin shows up
here instead of disappearing or crashing the interface.
"""
from __future__ import annotations

import datetime
import logging

from PySide6 import QtCore, QtGui, QtWidgets


class _Bridge(QtCore.QObject):
    record = QtCore.Signal(str, str, str, str)  # time, level, source, message


class QtLogHandler(logging.Handler):
    """Forwards records to the GUI thread through a queued signal."""

    def __init__(self, level: int = logging.WARNING):
        super().__init__(level)
        self.bridge = _Bridge()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f"\n{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            when = datetime.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
            self.bridge.record.emit(when, record.levelname, record.name, message)
        except RuntimeError:  # the panel was deleted while the application shuts down
            pass


class ErrorLogPanel(QtWidgets.QWidget):
    """A table of log records (time, level, source, message); the full text in the tooltip."""

    MAX_ROWS = 2000

    def __init__(self, parent: QtWidgets.QWidget | None = None, level: int = logging.WARNING):
        super().__init__(parent)
        self.table = QtWidgets.QTableWidget(0, 4, self)
        self.table.setObjectName("errorLogTable")
        self.table.setHorizontalHeaderLabels(["Time", "Level", "Source", "Message"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        clear = QtWidgets.QPushButton("Clear", self)
        clear.clicked.connect(lambda: self.table.setRowCount(0))
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(clear, 0, QtCore.Qt.AlignmentFlag.AlignRight)
        self.handler = QtLogHandler(level)
        self.handler.bridge.record.connect(self.add_record)

    def install(self, logger_name: str = "") -> None:
        """Attach to a logger (the root logger by default: every module's records)."""
        logging.getLogger(logger_name).addHandler(self.handler)

    def uninstall(self, logger_name: str = "") -> None:
        logging.getLogger(logger_name).removeHandler(self.handler)

    def add_record(self, when: str, level: str, source: str, message: str) -> None:
        if self.table.rowCount() >= self.MAX_ROWS:
            self.table.removeRow(0)
        row = self.table.rowCount()
        self.table.insertRow(row)
        for column, text in enumerate((when, level, source, message.splitlines()[0] if message else "")):
            item = QtWidgets.QTableWidgetItem(text)
            item.setToolTip(message)
            if level in ("ERROR", "CRITICAL"):
                item.setForeground(QtGui.QBrush(QtGui.QColor(200, 0, 0)))
            self.table.setItem(row, column, item)
        self.table.scrollToBottom()

    def messages(self) -> list[str]:
        """Full messages shown (for tests and 'copy to clipboard')."""
        return [self.table.item(r, 3).toolTip() for r in range(self.table.rowCount())]
