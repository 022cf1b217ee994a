"""'View DICOM metadata': every element of an instance, read from its file, as a searchable tree.

The database caches a few tags per instance; a user checking a header wants all of them, with
sequences, private tags and the file meta information. The file is read on a BackgroundTask
into plain rows (`tag_rows`, no Qt), so a large multi-frame file never freezes the window;
values bigger than READ_LIMIT (pixel data) are not read, only their length is shown.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from .workers import BackgroundTask, start_task, when_done

logger = logging.getLogger(__name__)

READ_LIMIT = 64 * 1024
MAX_VALUE_CHARS = 4000
BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW"}


def _value_text(element: Any) -> str:
    value = element.value
    if element.VR in BINARY_VRS or isinstance(value, (bytes, bytearray)):
        size = len(value) if value is not None else 0
        return f"<{size} bytes>"
    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + f"… ({len(text)} characters)"


def _row(tag: Any, name: str, keyword: str, vr: str, value: str, private: bool = False,
         children: list | None = None) -> dict:
    return {"tag": f"({tag.group:04X},{tag.element:04X})" if hasattr(tag, "group") else str(tag), "name": name,
            "keyword": keyword, "vr": vr, "value": value, "private": private, "children": children or []}


def dataset_rows(dataset: Any) -> list[dict]:
    """The elements of a (pydicom) data set as nested plain rows; sequences hold one row per item."""
    rows = []
    for tag in dataset.keys():
        raw = dataset.get_item(tag)
        vr = str(getattr(raw, "VR", "") or "")
        if getattr(raw, "value", 0) is None and int(getattr(raw, "length", 0) or 0) > 0:  # deferred: not read
            rows.append(_row(tag, "", "", vr, f"<{raw.length} bytes, not read>", tag.is_private))
            continue
        try:
            element = dataset[tag]
        except (ValueError, TypeError, KeyError, AttributeError, NotImplementedError) as error:
            rows.append(_row(tag, "", "", vr, f"<unreadable: {error}>", tag.is_private))
            continue
        name = element.name
        if element.VR == "SQ":
            items = [_row(f"Item {number}", f"Item {number}", "", "", f"{len(item)} elements",
                          children=dataset_rows(item))
                     for number, item in enumerate(element.value or [], 1)]
            rows.append(_row(tag, name, element.keyword, "SQ", f"{len(items)} item(s)", tag.is_private, items))
        else:
            rows.append(_row(tag, name, element.keyword, element.VR, _value_text(element), tag.is_private))
    return rows


def tag_rows(path: str) -> list[dict]:
    """Every element of one DICOM file (file meta information first), without reading pixel data."""
    import pydicom

    dataset = pydicom.dcmread(path, defer_size=READ_LIMIT, force=True)
    rows = []
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and len(meta):
        rows.append(_row("File meta information", "File meta information", "", "", f"{len(meta)} elements",
                         children=dataset_rows(meta)))
    rows.extend(dataset_rows(dataset))
    return rows


def _matches(row: dict, words: list[str]) -> bool:
    text = " ".join((row["tag"], row["name"], row["keyword"], row["vr"], row["value"])).lower()
    return all(word in text for word in words)


class MetadataDialog(QtWidgets.QDialog):
    """Tag tree of one instance at a time (a spin box steps through the series); search and copy."""

    loaded = QtCore.Signal(int)  # number of top-level rows, after each file is read (-1 on failure)

    COLUMNS = ["Tag", "Name", "VR", "Value"]

    def __init__(self, files: list[str], parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("metadataDialog")
        self.setWindowTitle("DICOM metadata")
        self.setWindowFlag(QtCore.Qt.WindowType.WindowMaximizeButtonHint, True)
        self.files = list(files)
        self.rows: list[dict] = []
        self.task: BackgroundTask | None = None
        self.instance = QtWidgets.QSpinBox()
        self.instance.setObjectName("metadataInstance")
        self.instance.setRange(1, max(1, len(self.files)))
        self.instance.setSuffix(f" of {len(self.files)}")
        self.instance.valueChanged.connect(lambda value: self.read(value - 1))
        self.file_label = QtWidgets.QLabel()
        self.file_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.file_label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.search = QtWidgets.QLineEdit()
        self.search.setObjectName("metadataSearch")
        self.search.setPlaceholderText("Search tag, keyword or value… (e.g. 0020,0032 or Spacing)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.apply_search)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setObjectName("metadataTree")
        self.tree.setColumnCount(len(self.COLUMNS))
        self.tree.setHeaderLabels(self.COLUMNS)
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        for column, width in enumerate((150, 260, 40)):
            self.tree.setColumnWidth(column, width)
        copy = QtGui.QShortcut(QtGui.QKeySequence(QtGui.QKeySequence.StandardKey.Copy), self.tree)
        copy.activated.connect(self.copy_selected)
        copy_button = QtWidgets.QPushButton("Copy")
        copy_button.setToolTip("Copy the selected elements (tag, name, value) [Ctrl+C]")
        copy_button.clicked.connect(self.copy_selected)
        self.message = QtWidgets.QLabel()
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.close)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("Instance:"))
        top.addWidget(self.instance)
        top.addWidget(self.file_label, 1)
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(self.message, 1)
        bottom.addWidget(copy_button)
        bottom.addWidget(close)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.search)
        layout.addWidget(self.tree, 1)
        layout.addLayout(bottom)
        self.resize(900, 640)
        self.read(0)

    def read(self, index: int) -> BackgroundTask | None:
        """Read file `index` on a thread; `loaded` says when the tree is filled."""
        if not 0 <= index < len(self.files):
            return None
        path = self.files[index]
        self.file_label.setText(os.path.basename(path))
        self.file_label.setToolTip(path)
        self.message.setText("Reading…")
        task = BackgroundTask(f"Read tags of {path}", lambda _task: tag_rows(path), log_failures=False)
        when_done(task, self, self._read_done, lambda done, message: self._read_failed(done, message))
        self.task = task
        return start_task(task)

    def _read_done(self, task: BackgroundTask) -> None:
        if task is not self.task:  # the user stepped on meanwhile
            return
        self.rows = list(task.result or [])
        self.tree.clear()
        self._add_rows(self.tree.invisibleRootItem(), self.rows)
        self.apply_search(self.search.text())
        self.message.setText(f"{self._count(self.rows)} elements")
        self.loaded.emit(len(self.rows))

    def _read_failed(self, task: BackgroundTask, message: str) -> None:
        if task is not self.task:
            return
        self.tree.clear()
        self.message.setText(f"Cannot read the file: {message}")
        self.loaded.emit(-1)

    def _count(self, rows: list[dict]) -> int:
        return sum(1 + self._count(row["children"]) for row in rows)

    def _add_rows(self, parent: QtWidgets.QTreeWidgetItem, rows: list[dict]) -> None:
        grey = QtGui.QBrush(QtGui.QColor(110, 110, 160))
        for row in rows:
            item = QtWidgets.QTreeWidgetItem(parent, [row["tag"], row["name"] or row["keyword"], row["vr"],
                                                      row["value"].replace("\n", " ")])
            item.setData(0, QtCore.Qt.ItemDataRole.UserRole, row)
            item.setToolTip(3, row["value"][:2000])
            if row["private"]:
                for column in range(len(self.COLUMNS)):
                    item.setForeground(column, grey)
            if row["children"]:
                self._add_rows(item, row["children"])

    def apply_search(self, text: str) -> int:
        """Show elements matching every word (in tag, name, keyword, VR or value) and their parents;
        returns how many match."""
        words = text.strip().lower().replace("(", "").replace(")", "").split()
        matched = 0

        def visit(item: QtWidgets.QTreeWidgetItem) -> bool:
            nonlocal matched
            row = item.data(0, QtCore.Qt.ItemDataRole.UserRole)
            own = bool(words) and row is not None and _matches(
                {**row, "tag": row["tag"].replace("(", "").replace(")", "")}, words)
            matched += int(own)
            child_hit = False
            for index in range(item.childCount()):
                child_hit = visit(item.child(index)) or child_hit
            shown = not words or own or child_hit
            item.setHidden(not shown)
            if words and child_hit:
                item.setExpanded(True)
            return own or child_hit

        root = self.tree.invisibleRootItem()
        for index in range(root.childCount()):
            visit(root.child(index))
        if words:
            self.message.setText(f"{matched} matching elements")
        return matched

    def visible_rows(self) -> list[dict]:
        """The rows shown now (tests and copy)."""
        shown = []
        iterator = QtWidgets.QTreeWidgetItemIterator(self.tree)
        while iterator.value():
            item = iterator.value()
            if not item.isHidden():
                shown.append(item.data(0, QtCore.Qt.ItemDataRole.UserRole))
            iterator += 1
        return shown

    def copy_selected(self, value_only: bool = False) -> str:
        items = self.tree.selectedItems()
        rows = [item.data(0, QtCore.Qt.ItemDataRole.UserRole) for item in items]
        if value_only:
            text = "\n".join(row["value"] for row in rows)
        else:
            text = "\n".join(f"{row['tag']}\t{row['name'] or row['keyword']}\t{row['vr']}\t{row['value']}" for row in rows)
        QtWidgets.QApplication.clipboard().setText(text)
        return text

    def _context_menu(self, position: QtCore.QPoint) -> None:
        menu = QtWidgets.QMenu(self)
        menu.addAction("Copy value", lambda: self.copy_selected(value_only=True))
        menu.addAction("Copy element", self.copy_selected)
        menu.addSeparator()
        menu.addAction("Expand all", self.tree.expandAll)
        menu.addAction("Collapse all", self.tree.collapseAll)
        menu.exec(self.tree.viewport().mapToGlobal(position))
