"""The browser panel: patients / studies / series tables, thumbnails, loadables, and the actions.

Thin over DICOMBrowserLogic: every action is one call into the logic (import, delete, examine,
load, listener, query/retrieve, send, settings); this file only arranges widgets, runs slow
calls off the GUI thread and shows results and errors. Dialogs that ask the user something go
through `ask_*` methods so tests can answer them without a modal loop.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from ..errors import DICOMBrowserError
from .errorlog import ErrorLogPanel
from .verdict import geometry_verdict
from .models import UID_ROLE, LoadableModel, PatientModel, SeriesModel, StudyModel
from .workers import JobRunner, NetworkTask, start_task, stop_tasks

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 128
POLL_MS = 1500


def _make_table(model: QtCore.QAbstractItemModel, name: str, multi: bool = False) -> QtWidgets.QTableView:
    """A sortable, row-selecting table with fixed row heights (no per-row measuring: fast at 10k)."""
    table = QtWidgets.QTableView()
    table.setObjectName(name)
    table.setModel(model)
    table.setSortingEnabled(True)
    table.sortByColumn(-1, QtCore.Qt.SortOrder.AscendingOrder)
    table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection if multi
                           else QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
    table.verticalHeader().setDefaultSectionSize(22)
    table.horizontalHeader().setStretchLastSection(True)
    table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Interactive)
    table.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
    return table


class ImportThread(QtCore.QThread):
    """Runs logic.import_paths off the GUI thread; cancelling is the progress callback's return value."""

    progressed = QtCore.Signal(int, int, str)  # done, total (-1 unknown), current path
    done = QtCore.Signal(object)  # ImportSummary
    failed = QtCore.Signal(str)

    def __init__(self, logic: Any, paths: list[str], copy: bool, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.logic = logic
        self.paths = paths
        self.copy = copy
        self.cancel_requested = False

    def _progress(self, done: int, total: int | None, current: str = "") -> bool:
        self.progressed.emit(int(done), -1 if total is None else int(total), str(current))
        return self.cancel_requested

    def run(self) -> None:
        try:
            summary = self.logic.import_paths(self.paths, copy=self.copy, progress=self._progress)
        except (DICOMBrowserError, OSError) as error:
            logger.error("Import of %s failed: %s", ", ".join(self.paths), error)
            self.failed.emit(str(error))
            return
        self.done.emit(summary)


def summary_text(summary: Any) -> str:
    """The ImportSummary as the sentence a user reads after an import."""
    fields = ("seen", "indexed", "updated", "unchanged", "duplicates", "relinked", "skipped")
    parts = [f"{name}: {getattr(summary, name)}" for name in fields if getattr(summary, name, 0)]
    errors = list(getattr(summary, "errors", []) or [])
    text = ", ".join(parts) or "nothing imported"
    if getattr(summary, "cancelled", False):
        text = "Cancelled. " + text
    if errors:
        text += f"\n{len(errors)} errors (details in the error log), e.g.\n" + "\n".join(
            f"{path}: {reason}" for path, reason in errors[:5])
    elapsed = getattr(summary, "elapsed", None)
    if elapsed:
        text += f"\n({elapsed:.1f} s)"
    return text


class DICOMBrowserPanel(QtWidgets.QWidget):
    """The whole browser as one widget (Slicer's DICOM module panel)."""

    importFinished = QtCore.Signal(object)  # ImportSummary, or None after a failure
    loadablesChanged = QtCore.Signal()
    nodesLoaded = QtCore.Signal(list)
    thumbnailReady = QtCore.Signal(str)  # series UID
    verdictReady = QtCore.Signal(str)  # series UID
    sendFinished = QtCore.Signal(bool)  # True when every instance was sent

    def __init__(self, logic: Any, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("DICOMBrowserPanel")
        self.logic = logic
        self.jobs = JobRunner(max_threads=2, parent=self)
        self.jobs.finished.connect(self._job_finished)
        self.jobs.failed.connect(self._job_failed)
        self._import_thread: ImportThread | None = None
        self._progress_dialog: QtWidgets.QProgressDialog | None = None
        self._data_version: int | None = None
        self._counts: dict | None = None
        self._examined_key: str | None = None
        self.last_import_summary: Any = None
        self.last_nodes: list = []
        self._send_task: NetworkTask | None = None
        self._send_node = ""
        self._send_progress_dialog: QtWidgets.QProgressDialog | None = None
        self.last_send_summary: Any = None
        self.last_send_progress: tuple[int, int, int, int] | None = None
        self.network_busy = False
        self._build()
        self.error_log.install()
        self.refresh_all()
        self.poll_timer = QtCore.QTimer(self)
        self.poll_timer.setInterval(POLL_MS)
        self.poll_timer.timeout.connect(self.poll_database)
        self.poll_timer.start()

    # --- construction ------------------------------------------------------------------------
    def _build(self) -> None:
        self.patient_model = PatientModel(self)
        self.study_model = StudyModel(self)
        self.series_model = SeriesModel(self)
        self.loadable_model = LoadableModel(self)

        # database row: switcher + actions
        self.database_combo = QtWidgets.QComboBox()
        self.database_combo.setObjectName("databaseCombo")
        self.database_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.database_combo.setMinimumContentsLength(30)
        self.database_combo.setToolTip("Database folder (recently used databases)")
        self.database_combo.activated.connect(self._database_chosen)
        open_database = QtWidgets.QPushButton("Open…")
        open_database.setToolTip("Open or create a database in another folder")
        open_database.clicked.connect(lambda: self.switch_database(None))
        self.listener_button = QtWidgets.QPushButton("Listener")
        self.listener_button.setObjectName("listenerButton")
        self.listener_button.setCheckable(True)
        self.listener_button.toggled.connect(self.set_listener)
        self.listener_status = QtWidgets.QLabel("listener off")
        self.listener_status.setObjectName("listenerStatus")

        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("Database:"))
        top.addWidget(self.database_combo, 1)
        top.addWidget(open_database)
        top.addSpacing(12)
        top.addWidget(self.listener_button)
        top.addWidget(self.listener_status)

        self.toolbar = QtWidgets.QToolBar()
        self.toolbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.import_action = self.toolbar.addAction("Import…", lambda: self.import_folder())
        self.import_action.setToolTip("Import a folder (recursively) into the database")
        self.query_action = self.toolbar.addAction("Query/Retrieve…", self.open_query_dialog)
        self.send_action = self.toolbar.addAction("Send…", self.send_selected)
        self.settings_action = self.toolbar.addAction("Settings…", self.open_settings)
        self.delete_action = self.toolbar.addAction("Delete", self.delete_selected)
        self.delete_action.setToolTip("Remove the selected item from the database (files on disk are kept)")
        self.refresh_action = self.toolbar.addAction("Refresh", self.refresh_all)

        self.search = QtWidgets.QLineEdit()
        self.search.setObjectName("searchBox")
        self.search.setPlaceholderText("Search patients by name or ID…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.set_filter)
        self.count_label = QtWidgets.QLabel()
        search_row = QtWidgets.QHBoxLayout()
        search_row.addWidget(self.search, 1)
        search_row.addWidget(self.count_label)

        self.patient_table = _make_table(self.patient_model, "patientTable")
        self.study_table = _make_table(self.study_model, "studyTable")
        self.series_table = _make_table(self.series_model, "seriesTable", multi=True)
        for table in (self.patient_table, self.study_table, self.series_table):
            table.customContextMenuRequested.connect(lambda pos, t=table: self._context_menu(t, pos))
        self.patient_table.selectionModel().selectionChanged.connect(self._patient_selected)
        self.study_table.selectionModel().selectionChanged.connect(self._study_selected)
        self.series_table.selectionModel().selectionChanged.connect(self._series_selected)

        self.thumbnails = QtWidgets.QListWidget()
        self.thumbnails.setObjectName("thumbnailList")
        self.thumbnails.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.thumbnails.setIconSize(QtCore.QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.thumbnails.setGridSize(QtCore.QSize(THUMBNAIL_SIZE + 24, THUMBNAIL_SIZE + 40))
        self.thumbnails.setResizeMode(QtWidgets.QListView.ResizeMode.Adjust)
        self.thumbnails.setMovement(QtWidgets.QListView.Movement.Static)
        self.thumbnails.setWrapping(False)
        self.thumbnails.setFlow(QtWidgets.QListView.Flow.LeftToRight)
        self.thumbnails.setFixedHeight(THUMBNAIL_SIZE + 60)
        self.thumbnails.itemClicked.connect(self._thumbnail_clicked)
        self._placeholder_icon = self._blank_icon()

        self.loadable_table = QtWidgets.QTableView()
        self.loadable_table.setObjectName("loadableTable")
        self.loadable_table.setModel(self.loadable_model)
        self.loadable_table.verticalHeader().setVisible(False)
        self.loadable_table.horizontalHeader().setStretchLastSection(True)
        self.loadable_table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.load_button = QtWidgets.QPushButton("Load")
        self.load_button.setObjectName("loadButton")
        self.load_button.setToolTip("Load the checked loadables into the scene")
        self.load_button.clicked.connect(self.load_selected)
        self.load_status = QtWidgets.QLabel()
        load_row = QtWidgets.QHBoxLayout()
        load_row.addWidget(self.load_status, 1)
        load_row.addWidget(self.load_button)
        loadables_box = QtWidgets.QWidget()
        loadables_layout = QtWidgets.QVBoxLayout(loadables_box)
        loadables_layout.setContentsMargins(0, 0, 0, 0)
        loadables_layout.addWidget(self.loadable_table)
        loadables_layout.addLayout(load_row)

        self.error_log = ErrorLogPanel()
        self.bottom_tabs = QtWidgets.QTabWidget()
        self.bottom_tabs.addTab(loadables_box, "Loadables")
        self.bottom_tabs.addTab(self.error_log, "Error log")
        self.error_log.handler.bridge.record.connect(self._error_logged)

        upper = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        upper.addWidget(self.patient_table)
        upper.addWidget(self.study_table)
        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        splitter.setObjectName("browserSplitter")
        splitter.addWidget(upper)
        splitter.addWidget(self.series_table)
        splitter.addWidget(self.thumbnails)
        splitter.addWidget(self.bottom_tabs)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setStretchFactor(3, 2)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.toolbar)
        layout.addLayout(search_row)
        layout.addWidget(splitter, 1)
        self._update_network_actions()

    def _blank_icon(self) -> QtGui.QIcon:
        pixmap = QtGui.QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        pixmap.fill(QtGui.QColor(40, 40, 40))
        return QtGui.QIcon(pixmap)

    # --- helpers ---------------------------------------------------------------------------------
    def ask_confirmation(self, title: str, text: str) -> bool:
        """Yes/No question (tests replace this method)."""
        answer = QtWidgets.QMessageBox.question(self, title, text)
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def show_message(self, title: str, text: str, error: bool = False) -> None:
        """Tell the user something; errors also go to the error log."""
        if error:
            logger.error("%s: %s", title, text)
        self.status_message = f"{title}: {text}"
        box = QtWidgets.QMessageBox.warning if error else QtWidgets.QMessageBox.information
        box(self, title, text)

    def ask_directory(self, title: str) -> str | None:
        """A folder chosen by the user, or None (tests replace this method)."""
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, title)
        return folder or None

    def _has_logic(self, *names: str) -> bool:
        return all(callable(getattr(self.logic, name, None)) for name in names)

    def _update_network_actions(self) -> None:
        """Disable what the logic cannot do yet, and say why in the tooltip."""
        wanted = {
            self.query_action: ("find", "retrieve"),
            self.send_action: ("send",),
        }
        for action, names in wanted.items():
            available = self._has_logic(*names)
            action.setEnabled(available and not self.network_busy)  # a send is running
            if not available:
                action.setToolTip(f"Not available: DICOMBrowserLogic has no {', '.join(names)} yet")
        listener = self._has_logic("start_listener", "stop_listener")
        self.listener_button.setEnabled(listener)
        if not listener:
            self.listener_button.setToolTip("Not available: DICOMBrowserLogic has no start_listener/stop_listener yet")
        else:
            self.listener_button.setToolTip("Start or stop the DICOM listener (Storage SCP) of this database")

    # --- refresh -----------------------------------------------------------------------------------
    def refresh_all(self) -> None:
        """Re-run every query (after an import, a delete, a database switch, or a listener delivery)."""
        database = self.logic.database
        selected_patient = self.current_patient_uid()
        selected_study = self.current_study_uid()
        selected_series = self.selected_series_uids()
        self.patient_model.set_source(lambda: database.patients())
        self._update_database_combo()
        self._update_count()
        self._data_version = self._safe_data_version()
        self._counts = self._safe_counts()
        if selected_patient:
            self.select_uid(self.patient_table, selected_patient)
        if selected_study:
            self.select_uid(self.study_table, selected_study)
        if selected_series:
            for uid in selected_series:
                self.select_uid(self.series_table, uid, add=True)

    def _safe_data_version(self) -> int | None:
        try:
            return int(self.logic.database.data_version())
        except (DICOMBrowserError, AttributeError) as error:
            logger.debug("data_version unavailable: %s", error)
            return None

    def _safe_counts(self) -> dict | None:
        try:
            return dict(self.logic.database.counts())
        except (DICOMBrowserError, AttributeError) as error:
            logger.debug("counts unavailable: %s", error)
            return None

    def poll_database(self) -> None:
        """Pick up changes made by other connections (the listener, the CLI) without a button.

        Any commit changes the version (caching an examination too), so the tables are queried
        again only when the counts of patients/studies/series/instances changed as well.
        """
        if self.listener_button.isChecked() and self._has_logic("listener_status"):
            self.listener_status.setText(self._listener_text(self.logic.listener_status(), True))
        version = self._safe_data_version()
        if version is None or version == self._data_version:
            return
        self._data_version = version
        counts = self._safe_counts()
        if counts != self._counts:
            logger.info("Database changed (%s -> %s): refreshing", self._counts, counts)
            self.refresh_all()

    def _update_count(self) -> None:
        model = self.patient_model
        self.count_label.setText(f"{model.filtered_count} of {model.total_count} patients")

    def set_filter(self, text: str) -> None:
        """Filter patients as the user types (in memory over cached rows; see models.py)."""
        self.patient_model.set_filter(text)
        self._update_count()
        if self.patient_model.filtered_count == 1:
            self.patient_table.selectRow(0)
        else:  # the reset model dropped the selection: do not keep showing a hidden patient's studies
            self._patient_selected()

    # --- selection -------------------------------------------------------------------------------
    @staticmethod
    def _selected_uids(table: QtWidgets.QTableView) -> list[str]:
        rows = sorted({index.row() for index in table.selectionModel().selectedRows()})
        model = table.model()
        return [model.uid(row) for row in rows]

    def current_patient_uid(self) -> str | None:
        uids = self._selected_uids(self.patient_table)
        return uids[0] if uids else None

    def current_study_uid(self) -> str | None:
        uids = self._selected_uids(self.study_table)
        return uids[0] if uids else None

    def selected_series_uids(self) -> list[str]:
        return self._selected_uids(self.series_table)

    def select_uid(self, table: QtWidgets.QTableView, uid: str, add: bool = False) -> bool:
        """Select the row of a UID in a table (True if it is shown)."""
        row = table.model().row_of_uid(uid)
        if row < 0:
            return False
        flags = QtCore.QItemSelectionModel.SelectionFlag.Rows
        flags |= (QtCore.QItemSelectionModel.SelectionFlag.Select if add
                  else QtCore.QItemSelectionModel.SelectionFlag.ClearAndSelect)
        table.selectionModel().select(table.model().index(row, 0), flags)
        table.scrollTo(table.model().index(row, 0))
        return True

    def _patient_selected(self, *args: Any) -> None:
        uid = self.current_patient_uid()
        database = self.logic.database
        self.study_model.set_source((lambda: database.studies(uid)) if uid else None)
        if self.study_model.filtered_count == 1:
            self.study_table.selectRow(0)
        else:
            self._study_selected()

    def _study_selected(self, *args: Any) -> None:
        uid = self.current_study_uid()
        database = self.logic.database
        self.jobs.clear()
        self.series_model.set_source((lambda: database.series(uid)) if uid else None)
        self._fill_thumbnails()
        for series_uid in self.series_model.uids():
            if series_uid not in self.series_model.verdicts and self._has_logic("examine_uids"):
                self.jobs.submit(f"verdict:{series_uid}",
                                 lambda s=series_uid: geometry_verdict(self.logic.examine_uids([s])))
        if self.series_model.filtered_count >= 1 and not self.selected_series_uids():
            self.series_table.selectRow(0)
        else:
            self._series_selected()

    def _series_selected(self, *args: Any) -> None:
        uids = self.selected_series_uids()
        for row in range(self.thumbnails.count()):
            item = self.thumbnails.item(row)
            item.setSelected(item.data(UID_ROLE) in uids)
        self.examine_series(uids)

    # --- thumbnails --------------------------------------------------------------------------------
    def _fill_thumbnails(self) -> None:
        from .. import thumbnails

        self.thumbnails.clear()
        folder = self.logic.database.folder
        for row in range(self.series_model.filtered_count):
            info = self.series_model.row_dict(row)
            uid = str(info.get("SeriesInstanceUID", ""))
            text = f"{info.get('SeriesNumber', '')} {info.get('Modality', '')}\n{info.get('SeriesDescription', '')}"
            item = QtWidgets.QListWidgetItem(self._placeholder_icon, text.strip())
            item.setData(UID_ROLE, uid)
            item.setToolTip(f"{info.get('SeriesDescription', '')}\n{info.get('NumberOfInstances', '')} instances\n{uid}")
            self.thumbnails.addItem(item)
            cached = thumbnails.thumbnail_path(folder, uid)
            if cached.exists():
                item.setIcon(QtGui.QIcon(str(cached)))
            else:
                database = self.logic.database
                # a series without pixels (SR, RTSTRUCT) has no thumbnail: a fact, not an error
                self.jobs.submit(f"thumb:{uid}", lambda u=uid, d=database: thumbnails.series_thumbnail(d, u, THUMBNAIL_SIZE),
                                 failure_level=logging.INFO)

    def _thumbnail_clicked(self, item: QtWidgets.QListWidgetItem) -> None:
        self.select_uid(self.series_table, item.data(UID_ROLE))

    def thumbnail_item(self, series_uid: str) -> QtWidgets.QListWidgetItem | None:
        for row in range(self.thumbnails.count()):
            if self.thumbnails.item(row).data(UID_ROLE) == series_uid:
                return self.thumbnails.item(row)
        return None

    def _job_finished(self, key: str, result: Any) -> None:
        kind, _, uid = key.partition(":")
        if kind == "thumb":
            item = self.thumbnail_item(uid)
            if item is not None:
                item.setIcon(QtGui.QIcon(str(result)))
            self.thumbnailReady.emit(uid)
        elif kind == "verdict":
            verdict, details, problem = result
            self.series_model.set_verdict(uid, verdict, details, problem)
            self.verdictReady.emit(uid)
        elif kind == "examine":
            if key == self._examined_key:
                self._show_loadables(result)

    def _job_failed(self, key: str, message: str) -> None:
        kind, _, uid = key.partition(":")
        if kind == "thumb":
            item = self.thumbnail_item(uid)
            if item is not None:
                item.setToolTip(item.toolTip() + f"\nno thumbnail: {message}")
            self.thumbnailReady.emit(uid)
        elif kind == "verdict":
            self.series_model.set_verdict(uid, "?", f"geometry not examined: {message}", True)
            self.verdictReady.emit(uid)
        elif kind == "examine" and key == self._examined_key:
            logger.error("Examining series %s failed: %s", uid, message)
            self._show_loadables([])

    # --- loadables and loading --------------------------------------------------------------------
    def examine_series(self, series_uids: list[str]) -> None:
        """Ask the plugins for loadables of the selected series (in the background)."""
        self.loadable_model.set_loadables([])
        if not series_uids:
            self._examined_key = None
            self.load_button.setEnabled(False)
            self.load_status.setText("")
            self.loadablesChanged.emit()
            return
        if not self._has_logic("examine_uids"):
            self.load_button.setEnabled(False)
            self.load_status.setText("Loading is not available: DICOMBrowserLogic has no examine_uids() yet")
            self.loadablesChanged.emit()
            return
        key = "examine:" + ",".join(series_uids)
        self._examined_key = key
        self.load_status.setText("Examining…")
        self.load_button.setEnabled(False)
        self.jobs.submit(key, lambda: self.logic.examine_uids(series_uids))

    def _show_loadables(self, loadables: list) -> None:
        self.loadable_model.set_loadables(loadables)
        self.loadable_table.resizeColumnsToContents()
        warnings = sum(1 for loadable in loadables if loadable.warning)
        self.load_status.setText(f"{len(loadables)} loadables" + (f", {warnings} with warnings" if warnings else ""))
        self.load_button.setEnabled(bool(loadables))
        self.loadablesChanged.emit()

    def load_selected(self) -> list:
        """Load the checked loadables into the logic's scene; returns the nodes created."""
        loadables = self.loadable_model.selected()
        if not loadables:
            self.show_message("Load", "No loadable is checked.")
            return []
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        started = time.perf_counter()
        try:
            nodes = list(self.logic.load_into_scene(loadables) or [])
        except DICOMBrowserError as error:
            logger.error("Loading %s failed: %s", ", ".join(l.name for l in loadables), error)
            self.show_message("Load failed", str(error), error=True)
            return []
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
        self.last_nodes = nodes
        self.load_status.setText(f"Loaded {len(nodes)} node(s) in {time.perf_counter() - started:.1f} s")
        self.nodesLoaded.emit(nodes)
        return nodes

    def reveal_uid(self, uid: str) -> list[str]:
        """Select the patient, study and series of a UID of any level; returns its series UIDs."""
        database = self.logic.database
        series_uids = database.series_for_uid(uid)
        if not series_uids:
            from ..errors import NotFoundError

            raise NotFoundError(f"{uid}: no such UID in the database {database.folder}")
        rows = database.series(SeriesInstanceUID=series_uids[0])
        if rows:
            self.search.clear()
            self.select_uid(self.patient_table, str(rows[0]["PatientUID"]))
            self.select_uid(self.study_table, str(rows[0]["StudyInstanceUID"]))
            self.series_table.clearSelection()
            for number, series_uid in enumerate(series_uids):
                self.select_uid(self.series_table, series_uid, add=number > 0)
        return series_uids

    def load_uid(self, uid: str) -> list:
        """Examine a UID's series now (not in the background) and load the default loadables."""
        series_uids = self.reveal_uid(uid)
        self.jobs.wait()
        self._examined_key = None
        self._show_loadables(self.logic.examine_uids(series_uids))
        return self.load_selected()

    # --- import ---------------------------------------------------------------------------------
    def import_folder(self, folder: str | None = None, copy: bool | None = None) -> ImportThread | None:
        """Import a folder: ask for it (and for 'copy into database') unless given; runs in the background."""
        if self._import_thread is not None and self._import_thread.isRunning():
            self.show_message("Import", "An import is already running.")
            return None
        if folder is None:
            dialog = ImportDialog(self)
            if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted or not dialog.folder():
                return None
            folder, copy = dialog.folder(), dialog.copy()
        thread = ImportThread(self.logic, [str(folder)], bool(copy), self)
        progress = QtWidgets.QProgressDialog(f"Importing {folder}…", "Cancel", 0, 0, self)
        progress.setObjectName("importProgress")
        progress.setWindowTitle("Import")
        progress.setWindowModality(QtCore.Qt.WindowModality.WindowModal)
        progress.setMinimumDuration(300)
        progress.canceled.connect(self.cancel_import)
        thread.progressed.connect(self._import_progress)
        thread.done.connect(self._import_done)
        thread.failed.connect(self._import_failed)
        thread.finished.connect(progress.reset)
        self._import_thread = thread
        self._progress_dialog = progress
        thread.start()
        return thread

    def cancel_import(self) -> None:
        if self._import_thread is not None:
            self._import_thread.cancel_requested = True

    def _import_progress(self, done: int, total: int, current: str) -> None:
        progress = self._progress_dialog
        if progress is None:
            return
        if total > 0:
            progress.setMaximum(total)
            progress.setValue(min(done, total))
        progress.setLabelText(f"Importing {done}{'' if total < 0 else f' of {total}'} files\n{Path(current).name}")

    def _import_done(self, summary: Any) -> None:
        cancelled = bool(self._import_thread and self._import_thread.cancel_requested)
        self.last_import_summary = summary
        for path, reason in list(getattr(summary, "errors", []) or []):
            logger.warning("Import: %s: %s", path, reason)
        self.refresh_all()
        text = summary_text(summary)
        if cancelled and not text.startswith("Cancelled"):
            text = "Cancelled. " + text
        self.import_status = text
        self.importFinished.emit(summary)
        self.show_message("Import finished", text)

    def _import_failed(self, message: str) -> None:
        self.import_status = message
        self.importFinished.emit(None)
        self.show_message("Import failed", message, error=True)

    # --- delete ------------------------------------------------------------------------------------
    def _context_menu(self, table: QtWidgets.QTableView, position: QtCore.QPoint) -> None:
        index = table.indexAt(position)
        if not index.isValid():
            return
        uid = table.model().uid(index.row())
        menu = QtWidgets.QMenu(self)
        menu.addAction("Delete from database…", lambda: self.delete_uids([uid]))
        if table is self.series_table:
            menu.addAction("Load", self.load_selected)
        self.exec_menu(menu, table.viewport().mapToGlobal(position))

    def exec_menu(self, menu: QtWidgets.QMenu, position: QtCore.QPoint) -> None:
        """Show a context menu and run the chosen action (tests replace this method)."""
        menu.exec(position)

    def delete_selected(self) -> None:
        """Delete the most specific selection: series if any, else the study, else the patient."""
        uids = self.selected_series_uids() or [u for u in (self.current_study_uid(),) if u] \
            or [u for u in (self.current_patient_uid(),) if u]
        if uids:
            self.delete_uids(uids)

    def delete_uids(self, uids: list[str]) -> bool:
        """Remove items from the database after confirmation; files on disk are kept."""
        database = self.logic.database
        levels = {database.level_of(uid) or "item" for uid in uids}
        what = f"{len(uids)} {'/'.join(sorted(levels))}{'s' if len(uids) > 1 else ''}"
        text = (f"Remove {what} from the database?\n\nThe files on disk are kept; "
                f"only the database entries (and copies made by 'copy into database') are removed.")
        if not self.ask_confirmation("Delete from database", text):
            return False
        for uid in uids:
            try:
                self.logic.delete(uid)
            except DICOMBrowserError as error:
                logger.error("Deleting %s failed: %s", uid, error)
        self.refresh_all()
        self._patient_selected()
        return True

    # --- database switching ---------------------------------------------------------------------
    def _update_database_combo(self) -> None:
        from .. import config

        current = str(self.logic.database.folder)
        folders = [current] + [str(p) for p in config.recent_databases() if str(p) != current]
        self.database_combo.blockSignals(True)
        self.database_combo.clear()
        for folder in folders:
            self.database_combo.addItem(folder, folder)
        self.database_combo.setCurrentIndex(0)
        self.database_combo.blockSignals(False)

    def _database_chosen(self, index: int) -> None:
        folder = self.database_combo.itemData(index)
        if folder and folder != str(self.logic.database.folder):
            self.switch_database(folder)

    def switch_database(self, folder: str | None) -> None:
        """Close this database and open another (asks for the folder when None)."""
        if folder is None:
            folder = self.ask_directory("Open or create a DICOM database folder")
            if not folder:
                return
        if self._has_logic("stop_listener") and self.listener_button.isChecked():
            self.listener_button.setChecked(False)
        self.jobs.clear()
        self.jobs.wait()
        try:
            self.logic.switch_database(folder)
            self.logic.database  # open now so an error shows here
        except DICOMBrowserError as error:
            self.show_message("Cannot open database", f"{folder}: {error}", error=True)
            return
        self.series_model.verdicts.clear()
        self.loadable_model.set_loadables([])
        self.refresh_all()
        self._patient_selected()

    # --- network and settings ------------------------------------------------------------------
    def set_listener(self, on: bool) -> None:
        """Start or stop the listener; the status label says what happened."""
        try:
            status = self.logic.start_listener() if on else self.logic.stop_listener()
        except DICOMBrowserError as error:
            self.listener_button.blockSignals(True)
            self.listener_button.setChecked(False)
            self.listener_button.blockSignals(False)
            self.listener_status.setText("listener off (failed)")
            self.show_message("Listener", str(error), error=True)
            return
        self.listener_status.setText(self._listener_text(status, on))

    @staticmethod
    def _listener_text(status: Any, on: bool) -> str:
        if status is None:
            return "listening" if on else "listener off"
        running = getattr(status, "running", on)
        if not running:
            return "listener off"
        ae = getattr(status, "ae_title", "")
        port = getattr(status, "port", "")
        received = getattr(status, "received", None)
        text = f"listening as {ae} on port {port}"
        return text + (f", {received} received" if received is not None else "")

    def open_settings(self) -> None:
        from .dialogs import SettingsDialog

        dialog = SettingsDialog(self.logic, self)
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted:
            self._update_network_actions()

    def open_query_dialog(self) -> None:
        from .dialogs import QueryRetrieveDialog

        dialog = QueryRetrieveDialog(self.logic, self)
        dialog.retrieved.connect(lambda *_: self.refresh_all())
        dialog.exec()

    def send_selected(self) -> NetworkTask | None:
        """Send the selected series (or study, or patient) to a configured node, on a thread.

        A progress dialog counts the instances (sent / remaining / failed) and its Cancel stops
        the send after the current file; Send and Query/Retrieve stay disabled until it ends.
        `sendFinished(ok)` says when; the summary is in `last_send_summary`.
        """
        from .dialogs import choose_node

        if self.network_busy:  # not _send_task.isRunning(): the thread lingers after its result
            self.show_message("Send", "A send is already running.")
            return None
        uids = self.selected_series_uids() or [u for u in (self.current_study_uid(), self.current_patient_uid()) if u][:1]
        if not uids:
            self.show_message("Send", "Select a patient, study or series first.")
            return None
        node = choose_node(self.logic, self, "Send to")
        if node is None:
            return None
        logic = self.logic

        def work(task: NetworkTask) -> Any:
            return logic.send(node, uids, progress=lambda done, total, failed: task.report(
                done - failed, total - done, failed))

        task = NetworkTask(f"Send to {node}", work, cancellable=True, log_failures=False)
        progress = QtWidgets.QProgressDialog(f"Sending to {node}…", "Cancel", 0, 0, self)
        progress.setObjectName("sendProgress")
        progress.setWindowTitle("Send")
        progress.setWindowModality(QtCore.Qt.WindowModality.NonModal)
        progress.setAutoClose(False)
        progress.setAutoReset(False)
        progress.setMinimumDuration(300)
        progress.canceled.connect(task.cancel)
        task.progressed.connect(self._send_progress)
        task.succeeded.connect(self._send_done)
        task.failed.connect(self._send_failed)
        self._send_task, self._send_node, self._send_progress_dialog = task, node, progress
        self.last_send_progress = None
        self._set_network_busy(True)
        return start_task(task)

    def _set_network_busy(self, busy: bool) -> None:
        """No second send or query while a send runs (the listener and browsing stay usable)."""
        self.network_busy = busy
        if busy:
            self.send_action.setEnabled(False)
            self.query_action.setEnabled(False)
        else:
            self._update_network_actions()

    def _send_progress(self, completed: int, remaining: int, failed: int, warning: int) -> None:
        self.last_send_progress = (completed, remaining, failed, warning)
        progress = self._send_progress_dialog
        if progress is None:
            return
        total = completed + failed + remaining
        progress.setMaximum(max(total, 1))
        progress.setValue(completed + failed)
        progress.setLabelText(f"Sending to {self._send_node}: {completed} sent, {remaining} remaining, {failed} failed")

    def _send_finished(self) -> None:
        if self._send_progress_dialog is not None:
            self._send_progress_dialog.canceled.disconnect()
            self._send_progress_dialog.reset()
            self._send_progress_dialog.deleteLater()
            self._send_progress_dialog = None
        self._set_network_busy(False)

    def _send_done(self) -> None:
        task, node = self._send_task, self._send_node
        summary = task.result if task is not None else None
        cancelled = bool(task is not None and task.cancel_requested)
        self._send_finished()
        self.last_send_summary = summary
        failures = list(getattr(summary, "failed", []) or [])
        text = (f"to {node}: {getattr(summary, 'sent', 0)} of {getattr(summary, 'total', 0)} instances sent"
                + (f", {len(failures)} failed" if failures else "")
                + (f" ({summary.elapsed:.1f} s)" if getattr(summary, "elapsed", None) else ""))
        real_failures = [(path, reason) for path, reason in failures if reason != "cancelled"]
        for path, reason in real_failures[:20]:
            logger.warning("Send to %s: %s: %s", node, path, reason)
        if real_failures:
            text += "\n" + "\n".join(f"{path}: {reason}" for path, reason in real_failures[:5])
        if cancelled:
            self.show_message("Send cancelled", text)
        else:
            self.show_message("Send" if not real_failures else "Send failed", text, error=bool(real_failures))
        self.sendFinished.emit(not real_failures and not cancelled)

    def _send_failed(self, message: str) -> None:
        self._send_finished()
        self.last_send_summary = None
        self.show_message("Send failed", f"to {self._send_node}: {message}", error=True)
        self.sendFinished.emit(False)

    def _error_logged(self, when: str, level: str, source: str, message: str) -> None:
        index = self.bottom_tabs.indexOf(self.error_log)
        self.bottom_tabs.setTabText(index, f"Error log ({self.error_log.table.rowCount()})")

    # --- shutdown ---------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop timers, workers and the import; detach the log handler (the window is closing)."""
        self.poll_timer.stop()
        self.cancel_import()
        if self._import_thread is not None:
            self._import_thread.wait(30000)
        self.jobs.clear()
        self.jobs.wait(30000)
        if not stop_tasks(30000):
            logger.warning("A network operation did not end within 30 s of closing the browser")
        self.error_log.uninstall()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)


class ImportDialog(QtWidgets.QDialog):
    """Folder chooser plus the 'copy into database' option."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Import DICOM files")
        self.path_edit = QtWidgets.QLineEdit()
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.copy_box = QtWidgets.QCheckBox("Copy files into the database folder (for CDs, USB sticks, downloads)")
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(QtWidgets.QLabel("Folder to import (searched recursively):"))
        layout.addLayout(row)
        layout.addWidget(self.copy_box)
        layout.addWidget(buttons)

    def _browse(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder to import")
        if folder:
            self.path_edit.setText(folder)

    def folder(self) -> str:
        return self.path_edit.text().strip()

    def copy(self) -> bool:
        return self.copy_box.isChecked()
