"""Table models over database queries: rows cached once per query, filtered and sorted in memory.

Why not QStandardItemModel: with 10,000 patients it would build 10,000 x columns item objects
up front. These models keep the query's list of dicts, answer `data()` only for rows the view
paints, filter through a precomputed lower-case "haystack" per row, and expose rows to the
view in batches (`canFetchMore`/`fetchMore`) so the first paint never waits for all of them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from PySide6 import QtCore, QtGui

from .verdict import details_text, readable_name, series_label

logger = logging.getLogger(__name__)

UID_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1
ROW_ROLE = QtCore.Qt.ItemDataRole.UserRole + 2
SORT_ROLE = QtCore.Qt.ItemDataRole.UserRole + 3
BATCH = 1000


@dataclass(frozen=True)
class Column:
    """One column: its header, the row key it shows, and how to sort it."""

    header: str
    key: str
    numeric: bool = False
    searchable: bool = False
    blank: str = ""  # shown (greyed) when the value is empty, e.g. "(no name)"


def dicom_date(text: str) -> str:
    """'20260101' -> '2026-01-01' (display only; anything else is shown as stored)."""
    text = (text or "").strip()
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def person_name(text: str) -> str:
    """'Doe^John' -> 'Doe, John', as people read a name."""
    text = (text or "").split("=")[0]  # alphabetic group only; ideographic groups stay in the tooltip
    parts = [p for p in text.split("^") if p]
    if len(parts) >= 2:
        return f"{parts[0]}, {' '.join(parts[1:])}"
    return parts[0] if parts else ""


def _is_blank(value: Any) -> bool:
    """No value (None or only spaces); a number 0 is a value (series number 0 sorts first)."""
    return value is None or str(value).strip() == ""


def _number(value: Any) -> float:
    try:
        return float(str(value).split("\\")[0])
    except (TypeError, ValueError):
        return float("inf")


class RowTableModel(QtCore.QAbstractTableModel):
    """Rows from `fetch()` (a list of dicts), filtered by a text, sorted by a column."""

    formatters: dict[str, Callable[[str], str]] = {}

    def __init__(self, columns: list[Column], uid_key: str, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.columns = columns
        self.uid_key = uid_key
        self._fetch: Callable[[], list[dict]] | None = None
        self._rows: list[dict] = []
        self._haystacks: list[str] = []
        self._visible: list[int] = []  # indexes into _rows, filtered and sorted
        self._exposed = 0  # rows the view knows about (batches)
        self._filter = ""
        self._allowed: set[str] | None = None  # UIDs the side filters let through (None: all)
        self._sort: tuple[int, QtCore.Qt.SortOrder] | None = None
        self.decorations: dict[str, Any] = {}  # uid -> icon/colour for column 0
        self.tooltips: dict[str, str] = {}  # uid -> tooltip override

    # --- data source -----------------------------------------------------------------
    def set_source(self, fetch: Callable[[], list[dict]] | None) -> None:
        """Use a new query (e.g. studies of another patient) and reload."""
        self._fetch = fetch
        self.reload()

    def reload(self) -> None:
        """Run the query again (after an import, a delete, or a database change)."""
        rows = self._fetch() if self._fetch is not None else []
        searchable = [c.key for c in self.columns if c.searchable] or [c.key for c in self.columns]
        self.beginResetModel()
        self._rows = rows
        self._haystacks = [" ".join(str(row.get(k, "") or "") for k in searchable).lower().replace("^", " ")
                           for row in rows]
        self._apply()
        self.endResetModel()

    def set_filter(self, text: str) -> None:
        """Keep only rows whose searchable columns contain every word of `text` (case-insensitive)."""
        text = text.strip().lower().replace("^", " ")
        if text == self._filter:
            return
        self.beginResetModel()
        self._filter = text
        self._apply()
        self.endResetModel()

    def set_allowed(self, uids: set[str] | None) -> None:
        """Show only rows whose UID is in `uids` (the date/modality/description filters); None: all."""
        if uids is None and self._allowed is None:
            return
        self.beginResetModel()
        self._allowed = None if uids is None else set(uids)
        self._apply()
        self.endResetModel()

    def _apply(self) -> None:
        words = self._filter.split()
        if words:
            haystacks = self._haystacks
            visible = [i for i, h in enumerate(haystacks) if all(w in h for w in words)]
        else:
            visible = list(range(len(self._rows)))
        if self._allowed is not None:
            allowed, key_name = self._allowed, self.uid_key
            visible = [i for i in visible if str(self._rows[i].get(key_name, "")) in allowed]
        if self._sort is not None and 0 <= self._sort[0] < len(self.columns):
            column, order = self._sort
            # empty values (a nameless patient, a study without date) stay last in both directions
            key_name = self.columns[column].key
            filled = [i for i in visible if not _is_blank(self._rows[i].get(key_name))]
            empty = [i for i in visible if _is_blank(self._rows[i].get(key_name))]
            key = self._sort_key(self.columns[column])
            filled.sort(key=lambda i: key(self._rows[i]), reverse=order == QtCore.Qt.SortOrder.DescendingOrder)
            visible = filled + empty
        self._visible = visible
        self._exposed = min(len(visible), BATCH)

    def _sort_key(self, column: Column) -> Callable[[dict], Any]:
        if column.numeric:
            return lambda row: _number(row.get(column.key, ""))
        return lambda row: str(row.get(column.key, "") or "").lower()

    # --- access ------------------------------------------------------------------------
    @property
    def total_count(self) -> int:
        return len(self._rows)

    @property
    def filtered_count(self) -> int:
        return len(self._visible)

    def row_dict(self, row: int) -> dict:
        return self._rows[self._visible[row]]

    def uid(self, row: int) -> str:
        return str(self.row_dict(row).get(self.uid_key, ""))

    def row_of_uid(self, uid: str) -> int:
        """Row of a UID among the filtered rows, exposing more batches if needed; -1 if filtered out."""
        for position, index in enumerate(self._visible):
            if str(self._rows[index].get(self.uid_key, "")) == uid:
                while position >= self._exposed and self.canFetchMore(QtCore.QModelIndex()):
                    self.fetchMore(QtCore.QModelIndex())
                return position
        return -1

    def uids(self) -> list[str]:
        return [str(self._rows[i].get(self.uid_key, "")) for i in self._visible]

    # --- Qt model interface ------------------------------------------------------------------
    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else self._exposed

    def columnCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def canFetchMore(self, parent: QtCore.QModelIndex) -> bool:
        return not parent.isValid() and self._exposed < len(self._visible)

    def fetchMore(self, parent: QtCore.QModelIndex) -> None:
        if parent.isValid():
            return
        more = min(BATCH, len(self._visible) - self._exposed)
        if more <= 0:
            return
        self.beginInsertRows(QtCore.QModelIndex(), self._exposed, self._exposed + more - 1)
        self._exposed += more
        self.endInsertRows()

    def headerData(self, section: int, orientation: QtCore.Qt.Orientation, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        if orientation == QtCore.Qt.Orientation.Horizontal and role == QtCore.Qt.ItemDataRole.DisplayRole:
            return self.columns[section].header
        return None

    def display_text(self, row: dict, column: Column) -> str:
        value = row.get(column.key, "")
        value = "" if value is None else str(value)
        formatter = self.formatters.get(column.key)
        return formatter(value) if formatter else value

    def data(self, index: QtCore.QModelIndex, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= self._exposed:
            return None
        row = self.row_dict(index.row())
        column = self.columns[index.column()]
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            return self.display_text(row, column) or column.blank
        if role == QtCore.Qt.ItemDataRole.ForegroundRole and column.blank and not self.display_text(row, column):
            return QtGui.QBrush(QtGui.QColor(140, 140, 140))
        if role == QtCore.Qt.ItemDataRole.ToolTipRole:
            uid = str(row.get(self.uid_key, ""))
            return self.tooltips.get(uid) or f"{self.uid_key}: {uid}"
        if role == UID_ROLE:
            return str(row.get(self.uid_key, ""))
        if role == ROW_ROLE:
            return row
        if role == SORT_ROLE:
            return self._sort_key(column)(row)
        if role == QtCore.Qt.ItemDataRole.TextAlignmentRole and column.numeric:
            return int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        return None

    def sort(self, column: int, order: QtCore.Qt.SortOrder = QtCore.Qt.SortOrder.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        self._sort = (column, order) if column >= 0 else None
        self._apply()
        self.layoutChanged.emit()


class PatientModel(RowTableModel):
    formatters = {"PatientName": person_name, "PatientBirthDate": dicom_date}

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__([
            Column("Patient name", "PatientName", searchable=True, blank="(no name)"),
            Column("Patient ID", "PatientID", searchable=True),
            Column("Birth date", "PatientBirthDate"),
            Column("Sex", "PatientSex"),
            Column("Studies", "NumberOfStudies", numeric=True),
        ], uid_key="PatientUID", parent=parent)


class StudyModel(RowTableModel):
    formatters = {"StudyDate": dicom_date}

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__([
            Column("Study date", "StudyDate", searchable=True, blank="(no date)"),
            Column("Description", "StudyDescription", searchable=True, blank="(no description)"),
            Column("Modalities", "ModalitiesInStudy", searchable=True),
            Column("Accession", "AccessionNumber", searchable=True),
            Column("Series", "NumberOfSeries", numeric=True),
            Column("Instances", "NumberOfInstances", numeric=True),
        ], uid_key="StudyInstanceUID", parent=parent)


class SeriesModel(RowTableModel):
    """Series rows plus a geometry verdict column, filled in as verdicts arrive."""

    GEOMETRY_KEY = "_geometry"

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__([
            Column("#", "SeriesNumber", numeric=True),
            Column("Modality", "Modality", searchable=True),
            Column("Description", "SeriesDescription", searchable=True, blank="(no description)"),
            Column("Body part", "BodyPartExamined", searchable=True),
            Column("Instances", "NumberOfInstances", numeric=True),
            Column("Geometry", self.GEOMETRY_KEY),
        ], uid_key="SeriesInstanceUID", parent=parent)
        self.verdicts: dict[str, tuple[str, str, bool]] = {}  # uid -> (verdict, details, is_problem)

    def set_verdict(self, uid: str, verdict: str, details: str, problem: bool) -> None:
        self.verdicts[uid] = (verdict, details, problem)
        row = self.row_of_uid(uid)
        if row >= 0:
            column = len(self.columns) - 1
            index = self.index(row, column)
            self.dataChanged.emit(index, index)

    def data(self, index: QtCore.QModelIndex, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        column = self.columns[index.column()] if index.isValid() else None
        if column is not None and column.key == self.GEOMETRY_KEY and index.row() < self._exposed:
            uid = self.uid(index.row())
            verdict = self.verdicts.get(uid)
            if role == QtCore.Qt.ItemDataRole.DisplayRole:
                return verdict[0] if verdict else "…"
            if role == QtCore.Qt.ItemDataRole.ToolTipRole:
                return verdict[1] if verdict else "geometry not examined yet"
            if role == QtCore.Qt.ItemDataRole.ForegroundRole and verdict and verdict[2]:
                return QtGui.QBrush(QtGui.QColor(180, 60, 0))
        return super().data(index, role)


class LoadableModel(QtCore.QAbstractTableModel):
    """The loadables of the selected series: checkable, named as a user reads them, warnings highlighted.

    The plugin's own name, the plugin and its confidence are in the columns an advanced user
    shows (the browser hides them by default); the whole text is in the detail pane.
    """

    HEADERS = ["Load", "Loadable", "Series", "Warning", "Plugin", "Confidence"]
    ADVANCED = (4, 5)

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.loadables: list[Any] = []

    def set_loadables(self, loadables: list[Any]) -> None:
        self.beginResetModel()
        self.loadables = list(loadables)
        self.endResetModel()

    def selected(self) -> list[Any]:
        return [loadable for loadable in self.loadables if loadable.selected]

    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.loadables)

    def columnCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: QtCore.Qt.Orientation, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        if orientation == QtCore.Qt.Orientation.Horizontal and role == QtCore.Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def flags(self, index: QtCore.QModelIndex) -> QtCore.Qt.ItemFlag:
        flags = QtCore.Qt.ItemFlag.ItemIsEnabled | QtCore.Qt.ItemFlag.ItemIsSelectable
        if index.column() == 0:
            flags |= QtCore.Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def data(self, index: QtCore.QModelIndex, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        loadable = self.loadables[index.row()]
        column = index.column()
        if role == QtCore.Qt.ItemDataRole.CheckStateRole and column == 0:
            return QtCore.Qt.CheckState.Checked if loadable.selected else QtCore.Qt.CheckState.Unchecked
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            if column == 1:
                return readable_name(loadable)
            if column == 2:
                return series_label(loadable)
            if column == 3:
                return (loadable.warning or "").split(". ")[0]
            if column == 4:
                return loadable.plugin.replace("DICOM", "").replace("Plugin", "")
            if column == 5:
                return f"{float(loadable.confidence):.2f}"
            return ""
        if role == QtCore.Qt.ItemDataRole.ToolTipRole:
            return details_text(loadable, self.loadables)
        if role == QtCore.Qt.ItemDataRole.BackgroundRole and loadable.warning:
            return QtGui.QBrush(QtGui.QColor(255, 236, 179))
        return None

    def setData(self, index: QtCore.QModelIndex, value: Any, role: int = QtCore.Qt.ItemDataRole.EditRole) -> bool:
        if index.isValid() and index.column() == 0 and role == QtCore.Qt.ItemDataRole.CheckStateRole:
            checked = value in (QtCore.Qt.CheckState.Checked, QtCore.Qt.CheckState.Checked.value, 2, True)
            self.loadables[index.row()].selected = bool(checked)
            self.dataChanged.emit(index, index)
            return True
        return False
