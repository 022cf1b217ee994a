"""The browser panel: patients / studies / series tables, thumbnails, loadables, and the actions.

Thin over DICOMBrowserLogic: every action is one call into the logic (import, delete, examine,
load, listener, query/retrieve, send, settings); this file only arranges widgets, runs slow
calls off the GUI thread and shows results and errors. Dialogs that ask the user something go
through `ask_*` methods so tests can answer them without a modal loop.

What runs where: examining, thumbnails and verdicts on a small pool (`JobRunner`); loading,
import and every network operation each on their own thread with progress and Cancel; the
patient table's pages on its model's own thread (models.PagedPatientModel). The GUI thread runs
only queries bounded by what one patient holds (its studies and series) and the O(1) poll of
the data version (docs/gui.md).
"""
from __future__ import annotations

import datetime
import logging
import time
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from ..errors import DICOMBrowserError
from .errorlog import ErrorLogPanel, browsing
from .importing import ImportDialog, ImportThread, summary_text
from .models import UID_ROLE, LoadableModel, PagedPatientModel, SeriesModel, StudyModel
from .state import gui_settings, recall, recall_bool, remember
from .verdict import details_text, geometry_verdict, readable_name
from .workers import BackgroundTask, JobRunner, NetworkTask, start_task, stop_tasks, when_done

__all__ = ["DICOMBrowserPanel", "ImportDialog", "ImportThread", "summary_text"]

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 128  # the cached PNGs; shown smaller (ICON_SIZE) to leave room for the tables
ICON_SIZE = 64
POLL_MS = 1500
#: modalities whose series hold no image to look at first (presentation states, reports, ...)
NON_IMAGE_MODALITIES = {"PR", "SR", "KO", "REG", "RTPLAN", "RTRECORD", "RTSTRUCT", "SEG", "DOC", "FID", "AU",
                        "ECG", "HD", "PLAN", "RWV", "OT_SR"}
DATE_CHOICES = ["Any date", "Today", "Last 7 days", "Last 30 days", "Last 12 months", "Range…"]


class _ModalityCombo(QtWidgets.QComboBox):
    """Lists the database's modalities when opened (not at every refresh: that query is not free)."""

    aboutToShow = QtCore.Signal()

    def showPopup(self) -> None:
        self.aboutToShow.emit()
        super().showPopup()


def _make_table(model: QtCore.QAbstractItemModel, name: str, multi: bool = False) -> QtWidgets.QTableView:
    """A sortable, row-selecting table with fixed row heights (no per-row measuring: fast at 10k)."""
    table = QtWidgets.QTableView()
    table.setObjectName(name)
    table.setModel(model)
    table.setSortingEnabled(True)
    table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection if multi
                           else QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
    table.verticalHeader().setDefaultSectionSize(21)
    header = table.horizontalHeader()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Interactive)
    header.setSectionsMovable(True)
    header.setHighlightSections(False)
    header.setMinimumSectionSize(28)
    table.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
    header.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
    header.customContextMenuRequested.connect(lambda position: _column_menu(table, position))
    return table


def _column_menu(table: QtWidgets.QTableView, position: QtCore.QPoint) -> None:
    """Right click on a header: show or hide columns (remembered with the widths)."""
    header = table.horizontalHeader()
    menu = QtWidgets.QMenu(table)
    model = table.model()
    for column in range(model.columnCount()):
        action = menu.addAction(str(model.headerData(column, QtCore.Qt.Orientation.Horizontal)))
        action.setCheckable(True)
        action.setChecked(not header.isSectionHidden(column))
        action.toggled.connect(lambda on, c=column: header.setSectionHidden(c, not on))
    menu.exec(header.mapToGlobal(position))


# Default column widths in characters of the table's font; the description column takes the rest.
# (column index -> characters); STRETCH names the column that fills the width; HIDDEN the ones a
# user turns on from the header's menu.
COLUMN_CHARS = {
    "patientTable": {1: 12, 2: 11, 3: 4, 4: 7},
    "studyTable": {0: 11, 2: 10, 3: 11, 4: 6, 5: 8},
    "seriesTable": {0: 6, 1: 8, 3: 9, 4: 8, 5: 15},
}
STRETCH = {"patientTable": 0, "studyTable": 1, "seriesTable": 2}
HIDDEN = {"patientTable": (), "studyTable": (3,), "seriesTable": (3,)}
DEFAULT_SORT = {"patientTable": (0, QtCore.Qt.SortOrder.AscendingOrder),
                "studyTable": (0, QtCore.Qt.SortOrder.DescendingOrder),  # newest first
                "seriesTable": (0, QtCore.Qt.SortOrder.AscendingOrder)}


class DICOMBrowserPanel(QtWidgets.QWidget):
    """The whole browser as one widget (Slicer's DICOM module panel)."""

    importFinished = QtCore.Signal(object)  # ImportSummary, or None after a failure
    loadablesChanged = QtCore.Signal()
    nodesLoaded = QtCore.Signal(list)
    loadFinished = QtCore.Signal(bool)  # True when everything asked for was loaded
    thumbnailReady = QtCore.Signal(str)  # series UID
    verdictReady = QtCore.Signal(str)  # series UID
    sendFinished = QtCore.Signal(bool)  # True when every instance was sent
    statusChanged = QtCore.Signal(str)  # a line for the host's status bar
    deleteFinished = QtCore.Signal(int)  # items removed
    filtersApplied = QtCore.Signal()  # the date/modality/description filters are in effect
    patientsShown = QtCore.Signal()  # a page of patients arrived (first, further or re-read) and the selection is set

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
        self._examined_key: str | None = None
        # (patient, study, series UIDs) to select once the patient's row is loaded
        self._wanted: tuple[str | None, str | None, list[str]] | None = None
        self._filters_pending = False
        self._allowed_series: set[str] | None = None  # series of the selected patient the filters keep
        self.last_import_summary: Any = None
        self.import_status = ""
        self.status_message = ""
        self.last_nodes: list = []
        self.load_task: BackgroundTask | None = None
        self.loading = False
        self._send_task: NetworkTask | None = None
        self._send_node = ""
        self._send_progress_dialog: QtWidgets.QProgressDialog | None = None
        self._query_dialog: Any = None
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
        self.patient_model = PagedPatientModel(self)
        self.patient_model.modelAboutToBeReset.connect(self._remember_selection)
        self.patient_model.pagesRead.connect(self._patients_read)
        self.patient_model.sortRefused.connect(self._sort_refused)
        self.patient_model.dataChanged.connect(self._patient_rows_changed)
        self.study_model = StudyModel(self)
        self.series_model = SeriesModel(self)
        self.loadable_model = LoadableModel(self)
        self.setAcceptDrops(True)

        # database row: switcher + listener
        self.database_combo = QtWidgets.QComboBox()
        self.database_combo.setObjectName("databaseCombo")
        self.database_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.database_combo.setMinimumContentsLength(16)
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
        # a long status must not widen the panel (and squeeze the views): it is cut, the tooltip has it all
        self.listener_status.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.listener_status.setMinimumWidth(60)

        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("Database:"))
        top.addWidget(self.database_combo, 3)
        top.addWidget(open_database)
        top.addSpacing(8)
        top.addWidget(self.listener_button)
        top.addWidget(self.listener_status, 2)

        self.toolbar = QtWidgets.QToolBar()
        self.toolbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.import_action = self.toolbar.addAction("Import…", lambda: self.import_folder())
        self.import_action.setToolTip("Import folders, files, zip archives or a DICOMDIR (or drop them on the window)")
        self.query_action = self.toolbar.addAction("Query/Retrieve…", self.open_query_dialog)
        self.send_action = self.toolbar.addAction("Send…", self.send_selected)
        self.settings_action = self.toolbar.addAction("Settings…", self.open_settings)
        self.metadata_action = self.toolbar.addAction("Metadata…", self.show_metadata_of_selection)
        self.metadata_action.setToolTip("View the DICOM tags of the selected series (read from the files)")
        self.delete_action = self.toolbar.addAction("Delete", self.delete_selected)
        self.delete_action.setToolTip("Remove the selected item from the database (files on disk are kept) [Del]")
        self.refresh_action = self.toolbar.addAction("Refresh", self.refresh_all)
        self.refresh_action.setShortcut(QtGui.QKeySequence(QtGui.QKeySequence.StandardKey.Refresh))
        # in the host's View menu (and the splitter handle collapses the strip too)
        self.thumbnails_action = QtGui.QAction("&Thumbnails", self)
        self.thumbnails_action.setCheckable(True)
        self.thumbnails_action.setToolTip("Show or hide the thumbnail strip")

        self.search = QtWidgets.QLineEdit()
        self.search.setObjectName("searchBox")
        self.search.setPlaceholderText("Search patients by name or ID… (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.set_filter)
        self.count_label = QtWidgets.QLabel()
        self.date_filter = QtWidgets.QComboBox()
        self.date_filter.setObjectName("dateFilter")
        self.date_filter.addItems(DATE_CHOICES)
        self.date_filter.setToolTip("Study date")
        today = QtCore.QDate.currentDate()
        self.date_from = QtWidgets.QDateEdit(today.addYears(-1))
        self.date_to = QtWidgets.QDateEdit(today)
        for edit in (self.date_from, self.date_to):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setVisible(False)
            edit.dateChanged.connect(self.apply_filters)
        self.date_filter.currentIndexChanged.connect(self._date_choice_changed)
        self.modality_filter = _ModalityCombo()
        self.modality_filter.setObjectName("modalityFilter")
        self.modality_filter.addItem("Any modality", "")
        self.modality_filter.setToolTip("Studies with a series of this modality")
        self.modality_filter.currentIndexChanged.connect(self.apply_filters)
        self.modality_filter.aboutToShow.connect(self.update_modalities)
        self.description_filter = QtWidgets.QLineEdit()
        self.description_filter.setObjectName("descriptionFilter")
        self.description_filter.setPlaceholderText("Study/series description…")
        self.description_filter.setClearButtonEnabled(True)
        self.description_filter.textChanged.connect(self.apply_filters)
        search_row = QtWidgets.QHBoxLayout()
        search_row.addWidget(self.search, 1)
        search_row.addWidget(self.count_label)
        filter_row = QtWidgets.QHBoxLayout()
        filter_row.addWidget(self.date_filter)
        filter_row.addWidget(self.date_from)
        filter_row.addWidget(self.date_to)
        filter_row.addWidget(self.modality_filter)
        filter_row.addWidget(self.description_filter, 1)

        self.patient_table = _make_table(self.patient_model, "patientTable")
        self.study_table = _make_table(self.study_model, "studyTable")
        self.series_table = _make_table(self.series_model, "seriesTable", multi=True)
        self.tables = (self.patient_table, self.study_table, self.series_table)
        for table in self.tables:
            table.customContextMenuRequested.connect(lambda pos, t=table: self._context_menu(t, pos))
            table.activated.connect(lambda index, t=table: self._activated(t, index))
        self.patient_table.selectionModel().selectionChanged.connect(self._patient_selected)
        self.study_table.selectionModel().selectionChanged.connect(self._study_selected)
        self.series_table.selectionModel().selectionChanged.connect(self._series_selected)

        self.thumbnails = QtWidgets.QListWidget()
        self.thumbnails.setObjectName("thumbnailList")
        self.thumbnails.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.thumbnails.setIconSize(QtCore.QSize(ICON_SIZE, ICON_SIZE))
        self.thumbnails.setGridSize(QtCore.QSize(ICON_SIZE + 36, ICON_SIZE + 36))
        self.thumbnails.setResizeMode(QtWidgets.QListView.ResizeMode.Adjust)
        self.thumbnails.setMovement(QtWidgets.QListView.Movement.Static)
        self.thumbnails.setWrapping(False)
        self.thumbnails.setFlow(QtWidgets.QListView.Flow.LeftToRight)
        self.thumbnails.setMinimumHeight(0)
        self.thumbnails.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.thumbnails.itemClicked.connect(self._thumbnail_clicked)
        self.thumbnails.itemActivated.connect(lambda item: self.load_defaults([item.data(UID_ROLE)]))
        self._placeholder_icon = self._blank_icon()
        self.thumbnails_action.toggled.connect(self.thumbnails.setVisible)

        self.loadable_table = QtWidgets.QTableView()
        self.loadable_table.setObjectName("loadableTable")
        self.loadable_table.setModel(self.loadable_model)
        self.loadable_table.verticalHeader().setVisible(False)
        self.loadable_table.verticalHeader().setDefaultSectionSize(21)
        self.loadable_table.horizontalHeader().setStretchLastSection(True)
        self.loadable_table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.loadable_table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.loadable_table.setWordWrap(False)
        self.loadable_table.setColumnWidth(0, 44)
        self.loadable_table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.loadable_table.selectionModel().selectionChanged.connect(self._loadable_chosen)
        self.loadable_table.activated.connect(self._loadable_activated)
        self.loadable_detail = QtWidgets.QPlainTextEdit()
        self.loadable_detail.setObjectName("loadableDetail")
        self.loadable_detail.setReadOnly(True)
        self.loadable_detail.setPlaceholderText("Select a loadable to read its details and warnings in full")
        self.advanced_box = QtWidgets.QCheckBox("Plugin and confidence")
        self.advanced_box.setObjectName("advancedLoadables")
        self.advanced_box.setToolTip("Show which plugin offers each loadable and how confident it is")
        self.advanced_box.toggled.connect(self._show_advanced)
        self.load_button = QtWidgets.QPushButton("Load")
        self.load_button.setObjectName("loadButton")
        self.load_button.setToolTip("Load the checked loadables into the scene (double-click or Enter on a row "
                                    "of the tables loads its defaults)")
        self.load_button.clicked.connect(self.load_selected)
        self.load_status = QtWidgets.QLabel()
        self.load_status.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.load_progress = QtWidgets.QProgressBar()
        self.load_progress.setObjectName("loadProgress")
        self.load_progress.setVisible(False)
        self.load_progress.setMaximumWidth(160)
        self.load_cancel = QtWidgets.QPushButton("Cancel")
        self.load_cancel.setObjectName("loadCancel")
        self.load_cancel.setToolTip("Stop loading after the volume being read; it is not added")
        self.load_cancel.setVisible(False)
        self.load_cancel.clicked.connect(self.cancel_load)
        load_row = QtWidgets.QHBoxLayout()
        load_row.addWidget(self.load_status, 1)
        load_row.addWidget(self.load_progress)
        load_row.addWidget(self.load_cancel)
        load_row.addWidget(self.advanced_box)
        load_row.addWidget(self.load_button)
        loadable_split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        loadable_split.setObjectName("loadableSplitter")
        loadable_split.addWidget(self.loadable_table)
        loadable_split.addWidget(self.loadable_detail)
        loadable_split.setStretchFactor(0, 3)
        loadable_split.setStretchFactor(1, 2)
        loadables_box = QtWidgets.QWidget()
        loadables_layout = QtWidgets.QVBoxLayout(loadables_box)
        loadables_layout.setContentsMargins(0, 0, 0, 0)
        loadables_layout.addWidget(loadable_split, 1)
        loadables_layout.addLayout(load_row)
        self.loadables_box = loadables_box

        self.error_log = ErrorLogPanel()
        self.bottom_tabs = QtWidgets.QTabWidget()
        self.bottom_tabs.addTab(loadables_box, "Loadables")
        self.bottom_tabs.addTab(self.error_log, "Error log")
        self.error_log.handler.bridge.record.connect(self._error_logged)

        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        self.splitter.setObjectName("browserSplitter")
        for widget in (self.patient_table, self.study_table, self.series_table, self.thumbnails, self.bottom_tabs):
            # a set (non-zero) minimum replaces the widget's own larger hint: the window can shrink
            widget.setMinimumHeight(24)
            self.splitter.addWidget(widget)
        self.splitter.setChildrenCollapsible(True)
        for index, stretch in enumerate((3, 2, 3, 0, 3)):  # the strip keeps its height; View hides it
            self.splitter.setStretchFactor(index, stretch)
        self.splitter.setSizes([150, 95, 130, ICON_SIZE + 40, 170])

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.toolbar)
        layout.addLayout(search_row)
        layout.addLayout(filter_row)
        layout.addWidget(self.splitter, 1)

        delete = QtGui.QShortcut(QtGui.QKeySequence(QtGui.QKeySequence.StandardKey.Delete), self)
        delete.setContext(QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut)
        delete.activated.connect(self.delete_selected)
        find = QtGui.QShortcut(QtGui.QKeySequence(QtGui.QKeySequence.StandardKey.Find), self)
        find.setContext(QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut)
        find.activated.connect(self.focus_search)
        self.shortcuts = {"delete": delete, "find": find}
        self._setup_columns()
        self.restore_state()
        self._update_network_actions()

    def _setup_columns(self) -> None:
        """Default widths from the font, the description column stretching, the default sort."""
        metrics = self.fontMetrics()
        for table in self.tables:
            name = table.objectName()
            header = table.horizontalHeader()
            for column, chars in COLUMN_CHARS[name].items():
                table.setColumnWidth(column, metrics.horizontalAdvance("0") * chars + 14)
            header.setSectionResizeMode(STRETCH[name], QtWidgets.QHeaderView.ResizeMode.Stretch)
            for column in HIDDEN[name]:
                header.setSectionHidden(column, True)
            column, order = DEFAULT_SORT[name]
            table.sortByColumn(column, order)

    def _blank_icon(self) -> QtGui.QIcon:
        pixmap = QtGui.QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        pixmap.fill(QtGui.QColor(40, 40, 40))
        return QtGui.QIcon(pixmap)

    # --- remembered layout -------------------------------------------------------------------------
    def restore_state(self) -> None:
        """Column widths, order, visibility and sort of each table, the splitter, the thumbnails."""
        settings = gui_settings()
        for table in self.tables:
            state = settings.value(f"browser/{table.objectName()}/header")
            if isinstance(state, QtCore.QByteArray) and not state.isEmpty():
                header = table.horizontalHeader()
                if header.restoreState(state):
                    table.sortByColumn(header.sortIndicatorSection(), header.sortIndicatorOrder())
        splitter = settings.value("browser/splitter")
        if isinstance(splitter, QtCore.QByteArray) and not splitter.isEmpty():
            self.splitter.restoreState(splitter)
        self.thumbnails_action.setChecked(recall_bool("browser/thumbnails", True))
        self.thumbnails.setVisible(self.thumbnails_action.isChecked())
        self.advanced_box.setChecked(recall_bool("browser/advancedLoadables", False))
        self._show_advanced(self.advanced_box.isChecked())

    def save_state(self) -> None:
        if getattr(self, "forget_layout", False):  # View > Reset layout
            return
        settings = gui_settings()
        for table in self.tables:
            settings.setValue(f"browser/{table.objectName()}/header", table.horizontalHeader().saveState())
        settings.setValue("browser/splitter", self.splitter.saveState())
        settings.setValue("browser/thumbnails", self.thumbnails_action.isChecked())
        settings.setValue("browser/advancedLoadables", self.advanced_box.isChecked())
        settings.sync()

    # --- helpers ---------------------------------------------------------------------------------
    def ask_confirmation(self, title: str, text: str) -> bool:
        """Yes/No question (tests replace this method)."""
        answer = QtWidgets.QMessageBox.question(self, title, text)
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def show_message(self, title: str, text: str, error: bool = False) -> None:
        """Tell the user something: errors in a box (and the error log), the rest in the status bar."""
        self.set_status(f"{title}: {text}")
        if error:
            logger.error("%s: %s", title, text)
            QtWidgets.QMessageBox.warning(self, title, text)

    def set_status(self, text: str) -> None:
        """A line for the host's status bar (`statusChanged`); kept in `status_message`."""
        self.status_message = text
        self.statusChanged.emit(text.replace("\n", " "))

    def ask_directory(self, title: str) -> str | None:
        """A folder chosen by the user, or None (tests replace this method)."""
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, title)
        return folder or None

    def focus_search(self) -> None:
        self.search.setFocus(QtCore.Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

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
        """Show what the database holds now (after an import, a delete, a database switch, Refresh):
        the loaded pages of patients are re-read on the model's thread and applied where they
        changed, keeping the selection; another database starts from its first page."""
        database = self.logic.database
        self._update_database_combo()
        self._data_version = self._safe_data_version()
        if self.patient_model.database is not database:
            self._wanted = None
            self.patient_model.set_database(database)
        else:
            self.patient_model.refresh()
        self._reload_patient_children()

    def refresh_in_background(self) -> None:
        """A change made elsewhere (a retrieve, the listener, the CLI): the same as `refresh_all`,
        whose reads already run on a thread."""
        self.refresh_all()

    def _safe_data_version(self) -> int | None:
        try:
            return int(self.logic.database.data_version())
        except (DICOMBrowserError, AttributeError) as error:
            logger.debug("data_version unavailable: %s", error)
            return None

    def poll_database(self) -> None:
        """Pick up changes made by other connections (the listener, the CLI) without a button.

        The data version is one row (O(1)); when it changed, the loaded patient rows are read
        again on the model's thread (bounded by what is loaded) and nothing moves unless they
        differ (an examination cached by this browser commits too).
        """
        if self.listener_button.isChecked() and self._has_logic("listener_status"):
            self._set_listener_text(self._listener_text(self.logic.listener_status(), True))
        version = self._safe_data_version()
        if version is None or version == self._data_version:
            return
        self._data_version = version
        self.patient_model.refresh()

    def _remember_selection(self) -> None:
        """The patient table is about to be replaced: keep what was selected, to select it again."""
        if self._wanted is None:
            self._wanted = (self.current_patient_uid(), self.current_study_uid(), self.selected_series_uids())

    def _patients_read(self) -> None:
        """A read of patients ended: select what is wanted (a reset dropped it, or a reveal asked)."""
        self._update_count()
        wanted, self._wanted = self._wanted, None
        if wanted is not None and not self._restore_selection(wanted):
            return  # its row is being read
        if self.patient_model.busy:  # another read follows (a keystroke while this one ran)
            return
        if self._filters_pending:
            self._filters_pending = False
            self.filtersApplied.emit()
        self.patientsShown.emit()

    def _restore_selection(self, wanted: tuple[str | None, str | None, list[str]]) -> bool:
        """Select a patient (and a study and series of it); False while its row is being read."""
        patient, study, series = wanted
        model = self.patient_model
        if patient and self.select_uid(self.patient_table, patient):
            self._select_study_and_series(study, series)
            return True
        if patient and not model.complete and not model.busy:
            self._wanted = wanted
            model.find(patient)
            return False
        if patient and model.busy:  # a page is on its way; try again when it arrives
            self._wanted = wanted
            return False
        if model.filtered_count == 1:
            self.patient_table.selectRow(0)
        else:  # the patient is filtered out: do not keep showing its studies
            self.patient_table.clearSelection()
            self._patient_selected()
        return True

    def _select_patient_then(self, patient: str, study: str | None, series: list[str]) -> None:
        """Select now when the patient's row is loaded, else once it is (a query may be under way)."""
        if self.patient_model.busy:
            self._wanted = (patient, study, series)
        else:
            self._restore_selection((patient, study, series))

    def _patient_rows_changed(self, top: QtCore.QModelIndex, bottom: QtCore.QModelIndex, *args: Any) -> None:
        """A re-read changed the selected patient's row (a new series arrived): its tables follow."""
        patient = self.current_patient_uid()
        if patient and top.row() <= self.patient_model.row_of_uid(patient) <= bottom.row():
            self._reload_patient_children()

    def _reload_patient_children(self) -> None:
        """Read the selected patient's studies and series again, keeping the selected ones."""
        study, series = self.current_study_uid(), self.selected_series_uids()
        if not self.current_patient_uid():
            return
        self._patient_selected()
        self._select_study_and_series(study, series)

    def _select_study_and_series(self, study: str | None, series: list[str]) -> None:
        """Under the selected patient: select this study and these series (where still shown)."""
        if study:
            self.select_uid(self.study_table, study)
        if series:
            self.series_table.clearSelection()
            for number, uid in enumerate(series):
                self.select_uid(self.series_table, uid, add=number > 0)

    def _sort_refused(self, key: str) -> None:
        header = next((c.header for c in self.patient_model.columns if c.key == key), key)
        self.set_status(f"Sorting {self.patient_model.total_count} patients by {header.lower()} is not offered "
                        "(only name and ID are read in order from the database); sorted by name")
        self.patient_table.horizontalHeader().setSortIndicator(0, QtCore.Qt.SortOrder.AscendingOrder)

    def _update_count(self) -> None:
        model = self.patient_model
        more = "" if model.complete else "+"
        self.count_label.setText(f"{model.filtered_count}{more} of {model.total_count} patients")

    def set_filter(self, text: str) -> None:
        """Filter patients as the user types (the words go to the patients query, on the thread).

        The selected patient stays selected while it still matches (clearing the box keeps it).
        """
        self._wanted = (self.current_patient_uid(), self.current_study_uid(), self.selected_series_uids())
        self.patient_model.set_filter(text)
        if not self.patient_model.busy:  # the same words: nothing to read
            self._wanted = None

    # --- filters: study date, modality, description --------------------------------------------------
    def _date_choice_changed(self) -> None:
        custom = self.date_filter.currentText() == "Range…"
        self.date_from.setVisible(custom)
        self.date_to.setVisible(custom)
        self.apply_filters()

    def date_range(self) -> tuple[str, str] | None:
        """The study date filter as (from, to) DICOM dates, inclusive; None for any date."""
        choice = self.date_filter.currentText()
        today = datetime.date.today()
        days = {"Today": 0, "Last 7 days": 7, "Last 30 days": 30, "Last 12 months": 365}
        if choice in days:
            return (today - datetime.timedelta(days=days[choice])).strftime("%Y%m%d"), today.strftime("%Y%m%d")
        if choice == "Range…":
            return self.date_from.date().toString("yyyyMMdd"), self.date_to.date().toString("yyyyMMdd")
        return None

    def set_date_range(self, start: str, end: str) -> None:
        """Filter studies from `start` to `end` (YYYYMMDD, inclusive), as the Range… fields do."""
        for edit, text in ((self.date_from, start), (self.date_to, end)):
            edit.blockSignals(True)
            edit.setDate(QtCore.QDate.fromString(text, "yyyyMMdd"))
            edit.blockSignals(False)
        self.date_filter.setCurrentText("Range…")
        self.apply_filters()

    def update_modalities(self) -> None:
        """Fill the modality filter with the modalities in the database (keeping the choice); one
        index seek per modality (database.modalities), not a read of every series."""
        from ..database import modalities

        current = self.modality_filter.currentData() or ""
        try:
            found = modalities(self.logic.database)
        except (DICOMBrowserError, AttributeError) as error:
            logger.debug("modalities unavailable: %s", error)
            return
        self.modality_filter.blockSignals(True)
        self.modality_filter.clear()
        self.modality_filter.addItem("Any modality", "")
        for modality in found:
            self.modality_filter.addItem(modality, modality)
        position = self.modality_filter.findData(current)
        self.modality_filter.setCurrentIndex(max(position, 0))
        self.modality_filter.blockSignals(False)

    def filters_active(self) -> bool:
        return bool(self.date_range() or self.modality_filter.currentData() or self.description_filter.text().strip())

    def _filter_values(self) -> tuple[tuple[str, str] | None, str, list[str]]:
        return (self.date_range(), self.modality_filter.currentData() or "",
                self.description_filter.text().strip().lower().split())

    def apply_filters(self) -> None:
        """Keep the patients, studies and series that match the date, modality and description filters.

        Patients: in the patients query (on the model's thread; `filtersApplied` when its first
        page is shown). Studies and series: those of the selected patient, checked when it is selected.
        """
        dates, modality, words = self._filter_values()
        self._wanted = (self.current_patient_uid(), self.current_study_uid(), self.selected_series_uids())
        self._filters_pending = True
        self.patient_model.set_query(date_from=dates[0] if dates else "", date_to=dates[1] if dates else "",
                                     modality=modality, description_words=tuple(words))
        if not self.patient_model.busy:  # nothing changed in the query
            self._wanted = None
            self._filters_pending = False
            self._reload_patient_children()
            self.filtersApplied.emit()

    # --- selection -------------------------------------------------------------------------------
    @staticmethod
    def _selected_uids(table: QtWidgets.QTableView) -> list[str]:
        rows = sorted({index.row() for index in table.selectionModel().selectedRows()})
        model = table.model()
        return [model.uid(row) for row in rows if row < model.filtered_count]

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
        if not add:
            table.selectionModel().setCurrentIndex(table.model().index(row, 0),
                                                   QtCore.QItemSelectionModel.SelectionFlag.NoUpdate)
        table.scrollTo(table.model().index(row, 0))
        return True

    def _patient_selected(self, *args: Any) -> None:
        uid = self.current_patient_uid()
        database = self.logic.database
        # bounded by the patient: its studies, and for the filters its series (one query each)
        allowed_studies = self._allowed_series = None
        if uid and self.filters_active():
            allowed_studies, self._allowed_series = filtered_uids(
                database.studies(uid), database.series(PatientUID=uid), *self._filter_values())
        self.study_model.set_allowed(allowed_studies)
        self.study_model.set_source((lambda: database.studies(uid)) if uid else None)
        if self.study_model.filtered_count >= 1:
            self.study_table.selectRow(0)  # the newest study (studies are sorted newest first)
        else:
            self._study_selected()

    def first_image_row(self) -> int:
        """Row of the series to show first: the first image series (not a presentation state,
        report, SEG, ...) with more than one frame, i.e. a volume; else the first image series.

        Scanners put single-image series (Philips' private "0 MR" object, a scout) before the
        volume a user came for; series numbers alone would pick those.
        """
        model = self.series_model
        images = [row for row in range(model.filtered_count)
                  if str(model.row_dict(row).get("Modality") or "").upper() not in NON_IMAGE_MODALITIES]
        for row in images:
            info = model.row_dict(row)
            if int(info.get("NumberOfFrames") or info.get("NumberOfInstances") or 0) > 1:
                return row
        return images[0] if images else 0

    def _study_selected(self, *args: Any) -> None:
        uid = self.current_study_uid()
        database = self.logic.database
        self.jobs.clear()
        self.series_model.set_allowed(self._allowed_series)
        self.series_model.set_source((lambda: database.series(uid)) if uid else None)
        self._fill_thumbnails()
        logic = self.logic
        for series_uid in self.series_model.uids():
            if series_uid not in self.series_model.verdicts and self._has_logic("examine_uids"):
                self.jobs.submit(f"verdict:{series_uid}", lambda s=series_uid: _browse_verdict(logic, s))
        if self.series_model.filtered_count >= 1 and not self.selected_series_uids():
            self.select_uid(self.series_table, self.series_model.uid(self.first_image_row()))
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

    # --- loadables ------------------------------------------------------------------------------------
    def examine_series(self, series_uids: list[str]) -> None:
        """Ask the plugins for loadables of the selected series (in the background)."""
        self.loadable_model.set_loadables([])
        self.loadable_detail.clear()
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
        logic = self.logic

        def examine() -> list:
            with browsing():  # findings go to the Geometry column and the detail pane, not the log
                return logic.examine_uids(series_uids)

        self.jobs.submit(key, examine)

    def _show_loadables(self, loadables: list) -> None:
        # what the plugins chose comes first, then the alternatives, most confident first
        loadables = sorted(loadables, key=lambda l: (not l.selected, -float(l.confidence)))
        self.loadable_model.set_loadables(loadables)
        self.loadable_table.resizeColumnsToContents()
        self.loadable_table.setColumnWidth(1, min(self.loadable_table.columnWidth(1), 260))
        self.loadable_table.setColumnWidth(2, min(self.loadable_table.columnWidth(2), 120))
        self._show_advanced(self.advanced_box.isChecked())
        warnings = sum(1 for loadable in loadables if loadable.warning)
        self.load_status.setText(f"{len(loadables)} loadables" + (f", {warnings} with warnings" if warnings else ""))
        self.load_button.setEnabled(bool(loadables) and not self.loading)
        first = next((row for row, loadable in enumerate(loadables) if loadable.selected), 0 if loadables else -1)
        if first >= 0:
            self.loadable_table.selectRow(first)
        self.loadablesChanged.emit()

    def _show_advanced(self, on: bool) -> None:
        for column in LoadableModel.ADVANCED:
            self.loadable_table.setColumnHidden(column, not on)

    def _loadable_chosen(self, *args: Any) -> None:
        rows = self.loadable_table.selectionModel().selectedRows()
        loadables = self.loadable_model.loadables
        if rows and rows[0].row() < len(loadables):
            self.loadable_detail.setPlainText(details_text(loadables[rows[0].row()], loadables))
        else:
            self.loadable_detail.clear()

    def _loadable_activated(self, index: QtCore.QModelIndex) -> None:
        if index.isValid() and index.column() != 0:  # column 0 is the checkbox
            self.start_load([self.loadable_model.loadables[index.row()]])

    # --- loading (on a thread, with progress and Cancel) -------------------------------------------------
    def _activated(self, table: QtWidgets.QTableView, index: QtCore.QModelIndex) -> None:
        """Double-click or Enter on a patient, study or series: load its default loadables."""
        if not index.isValid():
            return
        uid = table.model().uid(index.row())
        if table is self.series_table:
            uids = self.selected_series_uids() or [uid]
        else:
            uids = [uid]
        self.load_defaults(uids)

    def load_selected(self) -> BackgroundTask | None:
        """Load the checked loadables on a thread; `nodesLoaded`/`loadFinished` say when."""
        loadables = self.loadable_model.selected()
        if not loadables:
            self.show_message("Load", "No loadable is checked.")
            return None
        return self.start_load(loadables)

    def load_defaults(self, uids: list[str]) -> BackgroundTask | None:
        """Examine patients/studies/series and load what the plugins select by default, on a thread."""
        uids = [u for u in uids if u]
        return self.start_load(None, uids) if uids else None

    def start_load(self, loadables: list | None, uids: list[str] | None = None) -> BackgroundTask | None:
        """Load `loadables` (or the defaults of `uids`, examined first on a thread) one by one on a thread.

        The progress bar counts loadables; Cancel stops before the next one, and a loadable
        whose reading was under way when Cancel was pressed is removed again, so a cancelled load
        adds only complete, wanted volumes. An object that refers to image series (SEG, RT
        structure set) under the "ask" setting asks here, in the GUI thread, before its load starts.
        """
        if self.loading:
            self.set_status("A load is already running (Cancel it first).")
            return None
        self._load_started = time.perf_counter()
        if loadables is None:
            return self._examine_then_load(list(uids or []))
        return self._run_load(list(loadables))

    def _examine_then_load(self, uids: list[str]) -> BackgroundTask:
        logic = self.logic

        def work(task: BackgroundTask) -> list:
            task.note("Examining…")
            with browsing():
                return [loadable for loadable in logic.examine_uids(uids) if loadable.selected]

        task = BackgroundTask("Examine for loading", work, cancellable=True, log_failures=False)
        task.noted.connect(self.load_status.setText)
        when_done(task, self, lambda done: self._examined_for_load(done, uids),
                  lambda done, message: self._load_failed(message) if done is self.load_task else None)
        self.load_task = task
        self._set_loading(True)
        self.bottom_tabs.setCurrentWidget(self.loadables_box)
        return start_task(task)

    def _examined_for_load(self, task: BackgroundTask, uids: list[str]) -> None:
        if task is not self.load_task:
            return
        self._set_loading(False)
        if task.cancel_requested:
            self.load_status.setText("Cancelled before loading")
            self.loadFinished.emit(False)
            return
        chosen = list(task.result or [])
        if not chosen:
            self._load_failed("no loadable is selected by default for " + ", ".join(uids)
                              + " (select the series and check one)")
            return
        self._run_load(chosen)

    def ask_referenced(self, loadable: Any, in_database: int) -> bool:
        """Load the image series an object refers to as well? Asked without blocking: the object loads
        now, a non-modal question offers the series (widgets/referencedquestion.py; tests replace this)."""
        from .referencedquestion import ask_without_blocking
        return ask_without_blocking(self, loadable, in_database)

    def _settle_referenced(self, loadables: list) -> list:
        """Copies of the loadables with the user's answer for those whose policy is "ask"."""
        import dataclasses

        from ..referenced import policy_of

        settled = []
        for loadable in loadables:
            if getattr(loadable, "referencedSeriesUIDs", None) and policy_of(loadable) == "ask":
                present = sum(1 for uid in loadable.referencedSeriesUIDs if self.logic.database.level_of(uid))
                answer = "always" if present and self.ask_referenced(loadable, present) else "never"
                loadable = dataclasses.replace(loadable, extra={**loadable.extra, "load_referenced": answer})
            settled.append(loadable)
        return settled

    def _run_load(self, loadables: list) -> BackgroundTask:
        logic = self.logic
        chosen = self._settle_referenced(loadables)

        def work(task: BackgroundTask) -> tuple[list, list]:
            kept: list = []
            discarded: list = []
            for number, loadable in enumerate(chosen):
                if task.report(number, len(chosen) - number):
                    break
                task.note(f"Loading {readable_name(loadable)} ({number + 1} of {len(chosen)})")
                nodes = list(logic.load_into_scene([loadable]) or [])
                (discarded if task.cancel_requested else kept).extend(nodes)
            task.report(len(kept), 0)
            return kept, discarded

        task = BackgroundTask("Load", work, cancellable=True, log_failures=False)
        task.progressed.connect(self._load_progress)
        task.noted.connect(self.load_status.setText)
        task.succeeded.connect(self._load_done)
        task.failed.connect(self._load_failed)
        self.load_task = task
        self._set_loading(True)
        self.load_status.setText("Loading…")
        self.bottom_tabs.setCurrentWidget(self.loadables_box)
        return start_task(task)

    def _set_loading(self, busy: bool) -> None:
        self.loading = busy
        self.load_progress.setVisible(busy)
        self.load_cancel.setVisible(busy)
        self.load_cancel.setEnabled(busy)
        self.load_button.setEnabled(not busy and bool(self.loadable_model.loadables))
        if busy:
            self.load_progress.setRange(0, 0)

    def cancel_load(self) -> None:
        if self.loading and self.load_task is not None:
            self.load_task.cancel()
            self.load_cancel.setEnabled(False)
            self.load_status.setText("Cancelling after the volume being read…")

    def _load_progress(self, completed: int, remaining: int, failed: int, warning: int) -> None:
        total = completed + remaining
        if total > 1:
            self.load_progress.setRange(0, total)
            self.load_progress.setValue(completed)

    def _load_done(self) -> None:
        task = self.load_task
        kept, discarded = task.result if task is not None and task.result else ([], [])
        cancelled = bool(task is not None and task.cancel_requested)
        scene = getattr(self.logic, "gui_scene", None)
        for node in discarded:
            if scene is not None:
                scene.RemoveNode(node)
        self._set_loading(False)
        self.last_nodes = kept
        elapsed = time.perf_counter() - self._load_started
        text = f"Loaded {len(kept)} node(s) in {elapsed:.1f} s"
        if cancelled:
            text = f"Cancelled: {len(kept)} node(s) loaded, the one being read was dropped"
        self.load_status.setText(text)
        self.set_status(text + (": " + ", ".join(n.GetName() for n in kept[:4]) if kept else ""))
        if kept:
            self.nodesLoaded.emit(kept)
        self.loadFinished.emit(not cancelled)

    def _load_failed(self, message: str) -> None:
        self._set_loading(False)
        self.load_status.setText("Load failed")
        self.show_message("Load failed", message, error=True)
        self.loadFinished.emit(False)

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
            self.description_filter.clear()
            self.date_filter.setCurrentIndex(0)
            self.modality_filter.setCurrentIndex(0)
            self._select_patient_then(str(rows[0]["PatientUID"]), str(rows[0]["StudyInstanceUID"]), series_uids)
        return series_uids

    def reveal_study_of(self, series_uid: str) -> None:
        """Select the patient and study of a series; the study's first image series follows."""
        rows = self.logic.database.series(SeriesInstanceUID=series_uid)
        if not rows:
            return
        self.search.clear()
        self.description_filter.clear()
        self.date_filter.setCurrentIndex(0)
        self.modality_filter.setCurrentIndex(0)
        # the study's first image series follows its selection (_study_selected)
        self._select_patient_then(str(rows[0]["PatientUID"]), str(rows[0]["StudyInstanceUID"]), [])

    def load_uid(self, uid: str) -> list:
        """Examine a UID's series and load the default loadables now, in this thread (the CLI's
        `gui --load` and scripts; the window's own actions load on a thread)."""
        series_uids = self.reveal_uid(uid)
        self.jobs.wait()
        self._examined_key = None
        self._show_loadables(self.logic.examine_uids(series_uids))
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

    # --- metadata ----------------------------------------------------------------------------------------
    def show_metadata(self, uid: str) -> Any:
        """A non-modal tag viewer for the instances of a UID (any level), read from the files."""
        from .metadata import MetadataDialog

        files = self.logic.files_for_uid(uid)
        if not files:
            self.show_message("DICOM metadata", f"{uid}: no files in the database")
            return None
        dialog = MetadataDialog(files, self)
        dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.metadata_dialog = dialog
        return dialog

    def show_metadata_of_selection(self) -> Any:
        uid = next(iter(self.selected_series_uids()), None) or self.current_study_uid() or self.current_patient_uid()
        if not uid:
            self.show_message("DICOM metadata", "Select a series first.")
            return None
        return self.show_metadata(uid)

    # --- import ---------------------------------------------------------------------------------
    def import_folder(self, folder: str | None = None, copy: bool | None = None) -> ImportThread | None:
        """Import a folder (asks for folders/files unless given); runs in the background."""
        if folder is None:
            dialog = ImportDialog(self, str(recall("import/lastFolder", "")))
            dialog.copy_box.setChecked(recall_bool("import/copy", False))
            if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted or not dialog.paths():
                return None
            remember("import/lastFolder", dialog.last_folder)
            remember("import/copy", dialog.copy())
            return self.import_paths(dialog.paths(), dialog.copy())
        return self.import_paths([str(folder)], bool(copy))

    def import_paths(self, paths: list[str], copy: bool = False) -> ImportThread | None:
        """Import folders, files, zip archives and DICOMDIRs on a thread with progress and Cancel."""
        if self._import_thread is not None and self._import_thread.isRunning():
            self.show_message("Import", "An import is already running.")
            return None
        thread = ImportThread(self.logic, [str(p) for p in paths], bool(copy), self)
        what = Path(paths[0]).name + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")
        progress = QtWidgets.QProgressDialog(f"Importing {what}…", "Cancel", 0, 0, self)
        progress.setObjectName("importProgress")
        progress.setWindowTitle("Import")
        progress.setWindowModality(QtCore.Qt.WindowModality.NonModal)
        progress.setMinimumDuration(300)
        progress.canceled.connect(self.cancel_import)
        thread.progressed.connect(self._import_progress)
        thread.done.connect(self._import_done)
        thread.failed.connect(self._import_failed)
        thread.finished.connect(progress.reset)
        self._import_thread = thread
        self._progress_dialog = progress
        self.set_status(f"Importing {what}…")
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
        thread = self._import_thread
        cancelled = bool(thread and thread.cancel_requested)
        self.last_import_summary = summary
        for path, reason in list(getattr(summary, "errors", []) or []):
            logger.warning("Import: %s: %s", path, reason)
        self.refresh_all()
        text = summary_text(summary, thread.added if thread else None)
        if cancelled and not text.startswith("Cancelled"):
            text = "Cancelled. " + text
        self.import_status = text
        if thread is not None and thread.new_series:  # show what arrived
            self.reveal_study_of(thread.new_series[0])
        self.set_status("Import: " + text)
        self.importFinished.emit(summary)

    def _import_failed(self, message: str) -> None:
        self.import_status = message
        self.importFinished.emit(None)
        self.show_message("Import failed", message, error=True)

    # drag and drop of folders, files, zip archives, DICOMDIRs
    @staticmethod
    def dropped_paths(mime: QtCore.QMimeData) -> list[str]:
        return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if self.dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QtGui.QDragMoveEvent) -> None:
        if self.dropped_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        paths = self.dropped_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.import_paths(paths, recall_bool("import/copy", False))

    # --- context menu and delete ------------------------------------------------------------------------
    def _context_menu(self, table: QtWidgets.QTableView, position: QtCore.QPoint) -> None:
        index = table.indexAt(position)
        if not index.isValid():
            return
        uid = table.model().uid(index.row())
        uids = self.selected_series_uids() if table is self.series_table and uid in self.selected_series_uids() else [uid]
        menu = QtWidgets.QMenu(self)
        menu.addAction("Load", lambda: self.load_defaults(uids))
        menu.addAction("View DICOM metadata…", lambda: self.show_metadata(uid))
        send = menu.addAction("Send…", lambda: self.send_uids(uids))
        send.setEnabled(self.send_action.isEnabled())
        if table is self.study_table:
            menu.addAction("Export to DICOM…", lambda: self.open_export_dialog(uid))
        menu.addSeparator()
        menu.addAction("Delete from database…", lambda: self.delete_uids(uids))
        self.exec_menu(menu, table.viewport().mapToGlobal(position))

    def open_export_dialog(self, study_uid: str) -> QtWidgets.QDialog:
        """Export a loaded node, a file or the scene into `study_uid` (widgets.exportdialog); non-modal."""
        from .exportdialog import ExportDialog

        dialog = ExportDialog(self.logic, study_uid, self)
        dialog.exportFinished.connect(lambda ok: self.refresh_all() if ok else None)
        dialog.show()
        return dialog

    def exec_menu(self, menu: QtWidgets.QMenu, position: QtCore.QPoint) -> None:
        """Show a context menu and run the chosen action (tests replace this method)."""
        menu.exec(position)

    def delete_selected(self) -> None:
        """Delete what the user points at: the focused table's selection, else the most specific one."""
        focus = QtWidgets.QApplication.focusWidget()
        if focus is self.patient_table and self.current_patient_uid():
            uids = [self.current_patient_uid()]
        elif focus is self.study_table and self.current_study_uid():
            uids = [self.current_study_uid()]
        else:
            uids = self.selected_series_uids() or [u for u in (self.current_study_uid(),) if u] \
                or [u for u in (self.current_patient_uid(),) if u]
        if uids:
            self.delete_uids(uids)

    def delete_uids(self, uids: list[str]) -> BackgroundTask | None:
        """Remove items from the database after confirmation, on a thread (a large patient takes
        a while); files on disk are kept. `deleteFinished(n)` says when, with the number removed."""
        database = self.logic.database
        levels = {database.level_of(uid) or "item" for uid in uids}
        what = f"{len(uids)} {'/'.join(sorted(levels))}{'s' if len(uids) > 1 and levels != {'series'} else ''}"
        text = (f"Remove {what} from the database?\n\nThe files on disk are kept; "
                f"only the database entries (and copies made by 'copy into database') are removed.")
        if not self.ask_confirmation("Delete from database", text):
            return None
        logic = self.logic

        def work(_task: BackgroundTask) -> int:
            removed = 0
            for uid in uids:
                try:
                    logic.delete(uid)
                    removed += 1
                except DICOMBrowserError as error:
                    logger.error("Deleting %s failed: %s", uid, error)
            return removed

        task = BackgroundTask(f"Delete {what}", work)
        when_done(task, self, lambda done: self._deleted(done, what), lambda done, message: self._deleted(done, what))
        self.delete_action.setEnabled(False)
        self.set_status(f"Removing {what} from the database…")
        return start_task(task)

    def _deleted(self, task: BackgroundTask, what: str) -> None:
        self.delete_action.setEnabled(True)
        removed = int(task.result or 0)
        self.refresh_all()
        self.set_status(f"Removed {what} from the database" if removed else f"Nothing removed ({what})")
        self.deleteFinished.emit(removed)

    # --- database switching ---------------------------------------------------------------------
    def _update_database_combo(self) -> None:
        from .. import config

        current = str(self.logic.database.folder)
        folders = [current] + [str(p) for p in config.recent_databases() if str(p) != current]
        self.database_combo.blockSignals(True)
        self.database_combo.clear()
        for folder in folders:
            self.database_combo.addItem(folder, folder)
            self.database_combo.setItemData(self.database_combo.count() - 1, folder, QtCore.Qt.ItemDataRole.ToolTipRole)
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
        self.patient_model.jobs.clear()  # no page read of the database being closed
        self.patient_model.jobs.wait()
        try:
            self.logic.switch_database(folder)
            self.logic.database  # open now so an error shows here
        except DICOMBrowserError as error:
            self.show_message("Cannot open database", f"{folder}: {error}", error=True)
            return
        self.series_model.verdicts.clear()
        self.loadable_model.set_loadables([])
        self.patient_table.clearSelection()
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
            self._set_listener_text("listener off (failed)")
            self.show_message("Listener", str(error), error=True)
            return
        self._set_listener_text(self._listener_text(status, on))

    def _set_listener_text(self, text: str) -> None:
        self.listener_status.setText(text)
        self.listener_status.setToolTip(text)

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

    def open_query_dialog(self) -> Any:
        """The Query/Retrieve window (non-modal: the browser stays usable while it is open)."""
        from .dialogs import QueryRetrieveDialog

        if self._query_dialog is None:
            dialog = QueryRetrieveDialog(self.logic, self)
            dialog.retrieved.connect(lambda *_: self.refresh_in_background())
            dialog.finished.connect(self._query_dialog_closed)
            self._query_dialog = dialog
        self._query_dialog.show()
        self._query_dialog.raise_()
        self._query_dialog.activateWindow()
        return self._query_dialog

    def _query_dialog_closed(self) -> None:
        self._query_dialog = None

    def send_selected(self) -> NetworkTask | None:
        """Send the selected series (or study, or patient) to a configured node, on a thread."""
        uids = self.selected_series_uids() or [u for u in (self.current_study_uid(), self.current_patient_uid()) if u][:1]
        return self.send_uids(uids)

    def ask_send_target(self, uids: list[str]) -> str | None:
        """The node to send to, chosen in a dialog that says what goes where (tests replace this)."""
        from .dialogs import SendDialog

        if not self.logic.settings.nodes:
            self.show_message("Send", "No remote node configured: add one in Settings.")
            return None
        dialog = SendDialog(self.logic, uids, self)
        if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
            return None
        return dialog.node_name()

    def send_uids(self, uids: list[str]) -> NetworkTask | None:
        """Send patients/studies/series to a node on a thread.

        A progress dialog counts the instances (sent / remaining / failed) and its Cancel stops
        the send after the current file; Send and Query/Retrieve stay disabled until it ends.
        `sendFinished(ok)` says when; the summary is in `last_send_summary`.
        """
        if self.network_busy:  # not _send_task.isRunning(): the thread lingers after its result
            self.show_message("Send", "A send is already running.")
            return None
        if not uids:
            self.show_message("Send", "Select a patient, study or series first.")
            return None
        node = self.ask_send_target(uids)
        if node is None:
            return None
        remember("network/lastNode", node)
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
        self.set_status(f"Sending to {node}…")
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
        """Remember the layout; stop timers, workers, the import and loads; detach the log handler."""
        if getattr(self, "_shut_down", False):
            return
        self._shut_down = True
        self.save_state()
        self.poll_timer.stop()
        self.cancel_import()
        self.cancel_load()
        if self._import_thread is not None:
            self._import_thread.wait(30000)
        self.jobs.clear()
        self.jobs.wait(30000)
        self.patient_model.jobs.clear()
        self.patient_model.jobs.wait(30000)
        if not stop_tasks(30000):
            logger.warning("A background operation did not end within 30 s of closing the browser")
        self.error_log.uninstall()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)


def _browse_verdict(logic: Any, series_uid: str) -> tuple[str, str, bool]:
    """The Geometry column's verdict of one series (in a pool thread; findings stay out of the log)."""
    with browsing():
        return geometry_verdict(logic.examine_uids([series_uid]))



def filtered_uids(studies: list[dict], series: list[dict], dates: tuple[str, str] | None, modality: str,
                  words: list[str]) -> tuple[set[str], set[str]]:
    """The studies and series the date/modality/description filters keep (of one patient): a study
    in the date range with a series of the modality, whose description (or a series' one) holds
    every word; the series kept are those of the modality (and, unless the study's description
    matched, with the words)."""
    series_by_study: dict[str, list[dict]] = {}
    for row in series:
        series_by_study.setdefault(str(row.get("StudyInstanceUID")), []).append(row)
    allowed_studies: set[str] = set()
    allowed_series: set[str] = set()
    for study in studies:
        uid = str(study.get("StudyInstanceUID"))
        date = str(study.get("StudyDate") or "")
        if dates and not (date and dates[0] <= date[:8] <= dates[1]):
            continue
        candidates = series_by_study.get(uid, [])
        if modality:
            candidates = [row for row in candidates if str(row.get("Modality") or "").upper() == modality.upper()]
            if not candidates:
                continue
        if words:
            study_text = str(study.get("StudyDescription") or "").lower()
            if not all(word in study_text for word in words):
                candidates = [row for row in candidates
                              if all(word in str(row.get("SeriesDescription") or "").lower() for word in words)]
                if not candidates:
                    continue
        allowed_studies.add(uid)
        allowed_series.update(str(row.get("SeriesInstanceUID")) for row in candidates)
    return allowed_studies, allowed_series
