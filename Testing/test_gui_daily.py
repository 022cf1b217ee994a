"""The browser as a daily tool, driven as a user would on Qt's offscreen platform (issue 16).

Stories on real corpus data: a 546-file Philips DWI loads on a thread while a timer in the GUI
thread keeps ticking, and Cancel drops it; double-click and Enter load a series' defaults;
Delete and Ctrl+F act on what has the focus; tables sort with nameless patients last and the
newest study first, fit 1280x800 without horizontal scrolling and remember widths and sort;
loadables read as words with the whole warning in a detail pane; for the Philips patient the
DWI (not the presentation state) is selected; the date/modality/description filters narrow the
tables; the tag viewer shows sequences and private tags read from the file; folders, zip
archives and DICOMDIRs dropped on the window are imported with a summary in the status bar;
the error log counts repeats, filters by level and stays free of findings of browsed series.
"""
from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("pytestqt")
QtWidgets = pytest.importorskip("PySide6.QtWidgets")
QtCore = pytest.importorskip("PySide6.QtCore")
QtGui = pytest.importorskip("PySide6.QtGui")

from gui_ticks import TickRecorder  # noqa: E402

from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic, DICOMBrowserWidget  # noqa: E402

pytestmark = pytest.mark.timeout(300)

CT_HEAD = "slicer_ct_head/Testing/Data/Input/CTHeadAxialDicom"
CT_SERIES = "1.2.826.0.1.3680043.2.1125.1.65375240934815452318141136507497058"
PHILIPS = "philips_dwi/In/cl"
PHILIPS_DWI_SERIES = "1.3.46.670589.11.45190.5.0.6424.2021100515345467861"
FAILING = "dicom2nifti/tests/data/failing"


@pytest.fixture
def logic(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # remembered layout stays private
    logic = DICOMBrowserLogic(tmp_path / "db")
    yield logic
    logic.close()


def make_panel(qtbot, logic, size=(900, 900)):
    widget = DICOMBrowserWidget(logic)
    panel = widget.setup()
    qtbot.addWidget(panel)
    panel.messages = []
    panel.show_message = lambda title, text, error=False: panel.messages.append((title, text, error))
    panel.resize(*size)
    panel.show()
    qtbot.waitExposed(panel)
    return widget, panel


def wait_patients(qtbot, panel, patients=None):
    """Wait until the patient table's reads (on its thread) ended, with `patients` rows if given."""
    model = panel.patient_model
    qtbot.waitUntil(lambda: not model.busy and (patients is None or model.filtered_count == patients), timeout=30_000)


@pytest.fixture
def panel(qtbot, logic):
    widget, panel = make_panel(qtbot, logic)
    yield panel
    widget.cleanup()


def row_center(table, row: int, column: int = 1) -> QtCore.QPoint:
    return table.visualRect(table.model().index(row, column)).center()


def double_click(qtbot, table, row: int, column: int = 1) -> None:
    """A user's double-click: press-release, then the second press (QTest's double-click alone
    does not set the item view's pressed index, so Qt would not report it)."""
    position = row_center(table, row, column)
    qtbot.mouseClick(table.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=position)
    qtbot.mouseDClick(table.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=position)


def volume_nodes(logic, kind: str = "vtkMRMLVolumeNode") -> int:
    return logic.gui_scene.GetNodesByClass(kind).GetNumberOfItems()


# --- loading on a thread -------------------------------------------------------------------------
@pytest.mark.slow
def test_large_load_and_import_keep_the_window_responsive_and_cancel(qtbot, panel, logic, corpus):
    # import through the browser: the indexer runs in a thread, the GUI timer keeps ticking
    ticks = TickRecorder(lambda: panel._import_thread is not None and panel._import_thread.isRunning())
    with qtbot.waitSignal(panel.importFinished, timeout=180_000) as finished:
        panel.import_paths([str(corpus / PHILIPS)])
    ticks.stop()
    assert finished.args[0].indexed >= 546
    print(f"import: {ticks.busy_ticks()} ticks while busy in {ticks.stopped - ticks.started:.2f} s, "
          f"longest gap {ticks.longest_gap() * 1000:.0f} ms")
    assert ticks.responsive(), f"the GUI thread was blocked during the import ({ticks.busy_ticks()} ticks)"
    # the new data is selected (once the table is read again on its thread), and the first image
    # series (the DWI, not the presentation state)
    wait_patients(qtbot, panel)
    assert panel.selected_series_uids() == [PHILIPS_DWI_SERIES]

    # double-click the DWI series: its default (one DWI node of 17 volumes) loads on a thread
    row = panel.series_model.row_of_uid(PHILIPS_DWI_SERIES)
    ticks = TickRecorder(lambda: panel.loading)
    with qtbot.waitSignal(panel.loadFinished, timeout=180_000) as finished:
        double_click(qtbot, panel.series_table, row)
        assert panel.loading and panel.load_cancel.isVisible() and not panel.load_button.isEnabled()
    ticks.stop()
    print(f"DWI load: {ticks.busy_ticks()} ticks while busy in {ticks.stopped - ticks.started:.2f} s, "
          f"longest gap {ticks.longest_gap() * 1000:.0f} ms")
    assert finished.args == [True], panel.messages
    assert ticks.responsive(), f"the GUI thread was blocked during the load ({ticks.busy_ticks()} ticks)"
    assert [n.GetClassName() for n in panel.last_nodes] == ["vtkMRMLDiffusionWeightedVolumeNode"]
    assert volume_nodes(logic, "vtkMRMLDiffusionWeightedVolumeNode") == 1
    assert not panel.loading and not panel.load_cancel.isVisible()

    # Cancel while it reads: the volume being read is dropped, nothing is added
    with qtbot.waitSignal(panel.loadFinished, timeout=180_000) as finished:
        panel.load_defaults([PHILIPS_DWI_SERIES])
        qtbot.mouseClick(panel.load_cancel, QtCore.Qt.MouseButton.LeftButton)
    assert finished.args == [False]
    assert volume_nodes(logic, "vtkMRMLDiffusionWeightedVolumeNode") == 1
    assert panel.load_status.text().startswith("Cancelled")


def test_double_click_and_enter_load_defaults(qtbot, panel, logic, corpus):
    logic.import_paths([corpus / CT_HEAD])
    panel.refresh_all()
    wait_patients(qtbot, panel)
    panel.patient_table.selectRow(0)
    assert panel.selected_series_uids() == [CT_SERIES]

    # Enter on the study loads the study's defaults
    panel.study_table.setFocus()
    with qtbot.waitSignal(panel.nodesLoaded, timeout=60_000) as loaded:
        qtbot.keyClick(panel.study_table, QtCore.Qt.Key.Key_Return)
    assert [n.GetImageData().GetDimensions() for n in loaded.args[0]] == [(64, 64, 93)]

    # a double-click on the patient row loads the patient's
    with qtbot.waitSignal(panel.nodesLoaded, timeout=60_000):
        double_click(qtbot, panel.patient_table, 0)
    assert volume_nodes(logic, "vtkMRMLScalarVolumeNode") == 2

    # in the loadables: a double-click loads that one loadable only
    qtbot.waitUntil(lambda: bool(panel.loadable_model.loadables), timeout=60_000)
    with qtbot.waitSignal(panel.nodesLoaded, timeout=60_000) as loaded:
        double_click(qtbot, panel.loadable_table, 0)
    assert len(loaded.args[0]) == 1
    assert "Loaded 1 node" in panel.status_message


def test_delete_key_and_ctrl_f(qtbot, panel, logic, corpus):
    logic.import_paths([corpus / FAILING])
    panel.refresh_all()
    wait_patients(qtbot, panel)
    panel.activateWindow()
    qtbot.waitUntil(lambda: panel.isActiveWindow(), timeout=5000)
    questions = []
    panel.ask_confirmation = lambda title, text: questions.append(text) or True

    # Ctrl+F puts the cursor in the search box, with its text selected for typing over
    panel.search.setText("dicom")
    panel.patient_table.setFocus()
    qtbot.keyClick(panel.patient_table, QtCore.Qt.Key.Key_F, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert panel.search.hasFocus() and panel.search.selectedText() == "dicom"

    # Delete in the study table removes the focused study (not the whole patient)
    panel.patient_table.selectRow(0)
    studies_before = panel.study_model.total_count
    assert studies_before == 2
    panel.study_table.setFocus()
    study_uid = panel.current_study_uid()
    with qtbot.waitSignal(panel.deleteFinished, timeout=30_000) as deleted:
        qtbot.keyClick(panel.study_table, QtCore.Qt.Key.Key_Delete)
    assert deleted.args == [1]
    assert len(questions) == 1 and "1 study" in questions[0] and "files on disk are kept" in questions[0]
    assert logic.database.level_of(study_uid) is None
    assert len(logic.database.studies()) == 1


# --- tables: sort, layout, remembered state ------------------------------------------------------------
def test_sorting_layout_and_remembered_columns(qtbot, logic, corpus):
    from DICOMBrowser.DICOMBrowserLib.widgets.mainwindow import DICOMBrowserMainWindow

    logic.import_paths([corpus / "orthanc_tests", corpus / FAILING])
    window = DICOMBrowserMainWindow(logic, with_views=False)
    qtbot.addWidget(window)
    window.resize_for_screenshot(1280, 800)
    window.show()
    qtbot.waitExposed(window)
    panel = window.browser
    wait_patients(qtbot, panel)
    model = panel.patient_model
    names = [model.row_dict(r)["PatientName"] for r in range(model.filtered_count)]
    filled = [n for n in names if n.strip()]
    assert filled and len(filled) < len(names)  # the corpus has nameless patients
    # names ascending, blanks last; in the database's order (its index: case folded for A-Z only,
    # other letters by code point), which is what lets the table read a page instead of sorting all
    ascii_fold = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    assert names[:len(filled)] == sorted(filled, key=lambda name: name.translate(ascii_fold))
    first_blank = model.index(len(filled), 0)
    assert model.data(first_blank) == "(no name)"

    # the patient with five studies: newest first, studies without a date last
    row = next(r for r in range(model.filtered_count) if model.row_dict(r)["NumberOfStudies"] >= 3)
    panel.patient_table.selectRow(row)
    dates = [panel.study_model.row_dict(r)["StudyDate"] or "" for r in range(panel.study_model.filtered_count)]
    dated = [d for d in dates if d]
    assert dates[:len(dated)] == sorted(dated, reverse=True), dates
    assert panel.current_study_uid() == panel.study_model.uid(0)  # the newest is selected

    # at 1280x800 every key column shows, none needs a horizontal scroll bar
    for table in panel.tables:
        header = table.horizontalHeader()
        assert not table.horizontalScrollBar().isVisible(), table.objectName()
        assert header.length() <= table.viewport().width() + 1, table.objectName()
        shown = [table.model().headerData(c, QtCore.Qt.Orientation.Horizontal) for c in range(header.count())
                 if not header.isSectionHidden(c)]
        assert len(shown) >= 5, shown
        assert all(header.sectionSize(c) >= 28 for c in range(header.count()) if not header.isSectionHidden(c))
    assert window.minimumHeight() <= 520 and window.minimumWidth() <= 800

    # a long listener status does not widen the panel (it is cut; the tooltip has it all)
    width = window.module_dock.width()
    panel._set_listener_text("listening as A_VERY_LONG_AE_TITLE on port 11112, 123456 received, "
                             "last from SOME-MODALITY-WITH-A-LONG-NAME")
    QtWidgets.QApplication.processEvents()
    assert window.module_dock.width() == width
    assert "SOME-MODALITY" in panel.listener_status.toolTip()

    # the user sorts patients by ID and widens a column; both come back in the next session
    panel.patient_table.sortByColumn(1, QtCore.Qt.SortOrder.DescendingOrder)
    wait_patients(qtbot, panel)
    panel.study_table.setColumnWidth(2, 140)
    window.data_dock.hide()  # the Data panel and the thumbnails fold away for more room
    window.data_action.setChecked(False)
    panel.thumbnails_action.setChecked(False)
    assert not panel.thumbnails.isVisible()
    window.close()

    window = DICOMBrowserMainWindow(logic, with_views=False)
    qtbot.addWidget(window)
    window.show()
    panel = window.browser
    wait_patients(qtbot, panel)
    header = panel.patient_table.horizontalHeader()
    assert (header.sortIndicatorSection(), header.sortIndicatorOrder()) == (1, QtCore.Qt.SortOrder.DescendingOrder)
    ids = [panel.patient_model.row_dict(r)["PatientID"] for r in range(panel.patient_model.filtered_count)]
    filled = [i for i in ids if i]
    assert ids[:len(filled)] == sorted(filled, reverse=True)  # IDs are codes: compared exactly, as indexed
    assert panel.study_table.columnWidth(2) == 140
    assert not window.data_dock.isVisible() and not panel.thumbnails.isVisible()

    # View > Reset layout: the next start has the defaults again
    window.reset_layout()
    window.close()
    window = DICOMBrowserMainWindow(logic, with_views=False)
    qtbot.addWidget(window)
    window.show()
    header = window.browser.patient_table.horizontalHeader()
    assert (header.sortIndicatorSection(), header.sortIndicatorOrder()) == (0, QtCore.Qt.SortOrder.AscendingOrder)
    assert window.data_dock.isVisible() and window.browser.thumbnails.isVisible()
    window.close()


# --- loadables and the first series ------------------------------------------------------------------
def test_loadables_read_as_words_with_full_warnings(qtbot, panel, logic, corpus):
    logic.import_paths([corpus / FAILING])
    panel.refresh_all()
    wait_patients(qtbot, panel)
    panel.patient_table.selectRow(0)
    found = None
    for row in range(panel.study_model.filtered_count):
        panel.study_table.selectRow(row)
        qtbot.waitUntil(lambda: bool(panel.loadable_model.loadables), timeout=60_000)
        names = [panel.loadable_model.data(panel.loadable_model.index(r, 1))
                 for r in range(panel.loadable_model.rowCount())]
        if any("regularized" in n for n in names) and any("acquisition" in n for n in names):
            found = names
            break
    assert found, "no series with a missing slice found"
    assert found[0].startswith("Volume: 4 slices, 512x512")  # the default first, in words
    assert any(n.endswith("acquisition 4 only") for n in found)
    assert not any("[" in n for n in found)  # no plugin-internal brackets
    # confidence and plugin only in the advanced view
    assert panel.loadable_table.isColumnHidden(5) and panel.loadable_table.isColumnHidden(4)
    panel.advanced_box.setChecked(True)
    assert not panel.loadable_table.isColumnHidden(5)
    # the detail pane: the whole warning and what to do about it
    panel.loadable_table.selectRow(0)
    detail = panel.loadable_detail.toPlainText()
    loadable = panel.loadable_model.loadables[0]
    assert loadable.warning and loadable.warning in detail
    assert "Load the 'regularized' variant" in detail


def test_philips_first_series_is_the_dwi_with_its_verdict(qtbot, panel, logic, corpus):
    logic.import_paths([corpus / PHILIPS])
    panel.refresh_all()
    wait_patients(qtbot, panel)
    panel.patient_table.selectRow(0)
    rows = [panel.series_model.row_dict(r) for r in range(panel.series_model.filtered_count)]
    # by series number (0 is a number, not a blank): the presentation state and Philips' private
    # one-file "MR" come first, yet the DWI volume is what is selected
    assert [(r["SeriesNumber"], r["Modality"]) for r in rows][-1] == (701, "MR")
    assert sorted(r["Modality"] for r in rows[:2]) == ["MR", "PR"]
    assert panel.selected_series_uids() == [PHILIPS_DWI_SERIES]
    qtbot.waitUntil(lambda: PHILIPS_DWI_SERIES in panel.series_model.verdicts, timeout=120_000)
    assert panel.series_model.verdicts[PHILIPS_DWI_SERIES][0] == "DWI (17 volumes)"
    qtbot.waitUntil(lambda: bool(panel.loadable_model.loadables), timeout=120_000)
    first = panel.loadable_model.data(panel.loadable_model.index(0, 1))
    assert first == "DWI: 17 volumes" and panel.loadable_model.loadables[0].selected


# --- filters ----------------------------------------------------------------------------------------
def test_date_modality_and_description_filters(qtbot, panel, logic, corpus):
    logic.import_paths([corpus / FAILING, corpus / CT_HEAD, corpus / "dcmqi_seg"])
    panel.refresh_all()
    wait_patients(qtbot, panel)
    total = panel.patient_model.total_count
    studies = logic.database.studies()
    dated = sorted({s["StudyDate"] for s in studies if s["StudyDate"]})
    assert len(dated) >= 2

    # a date range holding only the oldest date (the studies and series are read on a thread)
    with qtbot.waitSignal(panel.filtersApplied, timeout=30_000):
        panel.set_date_range(dated[0], dated[0])
    expected = {s["PatientUID"] for s in studies if s["StudyDate"] == dated[0]}
    assert {panel.patient_model.uid(r) for r in range(panel.patient_model.filtered_count)} == expected
    assert f"{len(expected)} of {total} patients" in panel.count_label.text()
    panel.date_filter.setCurrentIndex(0)  # any date
    wait_patients(qtbot, panel, total)

    # modality SEG: the patients with a segmentation; their studies; only the SEG series
    panel.modality_filter.showPopup()  # the list is filled when opened
    qtbot.waitUntil(lambda: panel.modality_filter.findData("SEG") > 0, timeout=30_000)
    panel.modality_filter.hidePopup()
    index = panel.modality_filter.findData("SEG")
    with qtbot.waitSignal(panel.filtersApplied, timeout=30_000):
        panel.modality_filter.setCurrentIndex(index)
    seg_patients = {s["PatientUID"] for s in logic.database.series(Modality="SEG")}
    assert {panel.patient_model.uid(r) for r in range(panel.patient_model.filtered_count)} == seg_patients
    panel.patient_table.selectRow(0)
    assert {panel.series_model.row_dict(r)["Modality"] for r in range(panel.series_model.filtered_count)} == {"SEG"}
    with qtbot.waitSignal(panel.filtersApplied, timeout=30_000):
        panel.modality_filter.setCurrentIndex(0)

    # a word of a series description
    qtbot.keyClicks(panel.description_filter, "liver")
    wait_patients(qtbot, panel)
    matching = {s["PatientUID"] for s in logic.database.series() if "liver" in (s["SeriesDescription"] or "").lower()}
    matching |= {s["PatientUID"] for s in studies if "liver" in (s["StudyDescription"] or "").lower()}
    assert matching and {panel.patient_model.uid(r) for r in range(panel.patient_model.filtered_count)} == matching
    panel.description_filter.clear()
    wait_patients(qtbot, panel, total)


# --- the tag viewer -------------------------------------------------------------------------------------
def test_metadata_viewer_from_the_context_menu(qtbot, panel, logic, corpus):
    logic.import_paths([corpus / PHILIPS])
    panel.refresh_all()
    wait_patients(qtbot, panel)
    panel.patient_table.selectRow(0)
    row = panel.series_model.row_of_uid(PHILIPS_DWI_SERIES)

    def choose(menu, position):
        next(a for a in menu.actions() if a.text().startswith("View DICOM metadata")).trigger()

    panel.exec_menu = choose
    panel.series_table.customContextMenuRequested.emit(row_center(panel.series_table, row))
    dialog = panel.metadata_dialog  # deletes itself when closed
    assert not dialog.isModal() and dialog.isVisible()
    qtbot.waitUntil(lambda: bool(dialog.rows), timeout=30_000)
    assert dialog.instance.maximum() == len(logic.database.files_for_series(PHILIPS_DWI_SERIES)) > 500
    rows = dialog.rows
    assert rows[0]["tag"] == "File meta information" and rows[0]["children"]
    assert any(r["private"] for r in rows), "no private element shown"
    sequences = [r for r in rows if r["vr"] == "SQ" and r["children"]]
    assert sequences and sequences[0]["children"][0]["children"], "sequence items have no elements"

    # search by tag and by keyword; copy the value
    dialog.search.setText("0010,0010")
    assert dialog.message.text() == "1 matching elements"
    shown = [r for r in dialog.visible_rows() if r and r["tag"] == "(0010,0010)"]
    assert shown and shown[0]["value"] == "PSM"
    qtbot.keyClicks(dialog.search, "x")  # "0010,0010x": nothing
    assert not [r for r in dialog.visible_rows() if r and r["tag"].startswith("(")]
    dialog.search.setText("echo time")  # words of a name, case-insensitive; private names too
    names = [r["name"] for r in dialog.visible_rows() if r and r["tag"].startswith("(")]
    assert "[Diffusion Echo Time]" in names and all("echo time" in n.lower() for n in names), names
    item = next(i for i in dialog.tree.findItems("(0010,0010)", QtCore.Qt.MatchFlag.MatchRecursive, 0))
    dialog.search.clear()
    dialog.tree.setCurrentItem(item)
    assert dialog.copy_selected(value_only=True) == "PSM"
    assert QtWidgets.QApplication.clipboard().text() == "PSM"
    # step to another instance: the tree is read again from that file
    with qtbot.waitSignal(dialog.loaded, timeout=30_000):
        dialog.instance.setValue(2)
    assert dialog.file_label.toolTip() == dialog.files[1]
    pixel = next(r for r in dialog.rows if r["tag"] == "(7FE0,0010)")  # an image: its pixel data, as a size
    assert pixel["value"].endswith("bytes>")
    dialog.close()


# --- drag and drop import -------------------------------------------------------------------------------
def drop(widget, paths: list[Path]) -> bool:
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(p)) for p in paths])
    position = QtCore.QPointF(widget.width() / 2, widget.height() / 2)
    enter = QtGui.QDragEnterEvent(position.toPoint(), QtCore.Qt.DropAction.CopyAction, mime,
                                  QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    event = QtGui.QDropEvent(position, QtCore.Qt.DropAction.CopyAction, mime,
                             QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(widget, event)
    return True


def test_drop_folders_zip_and_dicomdir_on_the_window(qtbot, logic, corpus, tmp_path):
    from DICOMBrowser.DICOMBrowserLib.widgets.mainwindow import DICOMBrowserMainWindow

    window = DICOMBrowserMainWindow(logic, with_views=False)
    qtbot.addWidget(window)
    window.show()
    panel = window.browser
    panel.show_message = lambda title, text, error=False: None

    # a zip archive of the CT head and a folder, dropped together
    archive = tmp_path / "ct.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((corpus / CT_HEAD).iterdir()):
            zipped.write(path, f"ct/{path.name}")
    with qtbot.waitSignal(panel.importFinished, timeout=120_000):
        assert drop(window, [archive, corpus / FAILING])
    assert len(logic.database.instances()) == 93 + 8
    text = window.statusBar().currentMessage()
    assert text.startswith("Import: Added 2 patients, 3 studies, 3 series (101 files)."), text
    # the zip's files were copied into the database (its temporary folder is gone)
    ct_files = logic.database.files_for_series(CT_SERIES)
    assert len(ct_files) == 93 and all(Path(f).is_relative_to(logic.database.folder) for f in ct_files)

    # a DICOMDIR dropped on the browser panel: the files it lists
    with qtbot.waitSignal(panel.importFinished, timeout=180_000):
        assert drop(panel, [corpus / PHILIPS / "DICOMDIR"])
    assert "Added 1 patient" in panel.status_message and "546 files" in panel.status_message or \
        "Added 1 patient" in panel.status_message, panel.status_message
    wait_patients(qtbot, panel)
    assert panel.series_model.row_of_uid(PHILIPS_DWI_SERIES) >= 0  # the new data is shown
    # dropping the same again adds nothing and says so
    with qtbot.waitSignal(panel.importFinished, timeout=180_000):
        drop(panel, [corpus / FAILING])
    assert "Nothing new added. 8 files already in the database." in panel.status_message
    # text that is not a file is refused
    mime = QtCore.QMimeData()
    mime.setText("hello")
    enter = QtGui.QDragEnterEvent(QtCore.QPoint(5, 5), QtCore.Qt.DropAction.CopyAction, mime,
                                  QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(panel, enter)
    assert not enter.isAccepted()
    window.close()


# --- the error log -------------------------------------------------------------------------------------------
def test_error_log_counts_repeats_filters_and_ignores_browsing(qtbot, panel, logic, corpus):
    logic.import_paths([corpus / FAILING])
    panel.refresh_all()
    wait_patients(qtbot, panel)
    # browse every series: findings go to the Geometry column, not to the log
    panel.patient_table.selectRow(0)
    for row in range(panel.study_model.filtered_count):
        panel.study_table.selectRow(row)
        for uid in panel.series_model.uids():
            qtbot.waitUntil(lambda u=uid: u in panel.series_model.verdicts, timeout=60_000)
    verdicts = " ".join(v[0] for v in panel.series_model.verdicts.values())
    assert "missing slices" in verdicts and "tilt" in verdicts
    qtbot.wait(200)
    assert not any("missing" in m or "tilt" in m for m in panel.error_log.messages()), panel.error_log.messages()

    log = panel.error_log
    source = logging.getLogger("DICOMBrowser.test")
    for _ in range(3):
        source.error("Peer PACS@127.0.0.1:4242 refused the association")
    source.warning("Node offline; will retry\nsecond line of detail")
    qtbot.waitUntil(lambda: log.table.rowCount() == 2, timeout=5000)
    assert log.table.item(0, 2).text() == "3"  # one row, counted
    assert "Error log (2)" in panel.bottom_tabs.tabText(1)
    log.level_combo.setCurrentText("Errors only")
    assert log.visible_count() == 1
    log.level_combo.setCurrentText("Warnings and errors")
    log.table.selectRow(1)
    assert "second line of detail" in log.detail.toPlainText()
    text = log.copy_to_clipboard()
    assert "Node offline" in text and QtWidgets.QApplication.clipboard().text() == text


def test_changes_made_elsewhere_are_queried_on_a_thread(qtbot, panel, logic, corpus, tmp_path):
    """The CLI (another connection) imports; the browser's poll notices and re-reads the patients
    on a thread, keeping the selected patient."""
    logic.import_paths([corpus / CT_HEAD])
    panel.refresh_all()
    wait_patients(qtbot, panel)
    panel.patient_table.selectRow(0)
    selected = panel.current_patient_uid()
    other = DICOMBrowserLogic(logic.database.folder)  # as `dicombrowser import` would
    try:
        other.import_paths([corpus / FAILING])
    finally:
        other.close()
    panel.poll_database()
    assert panel.patient_model.busy  # the loaded rows are read again on the model's thread
    qtbot.waitUntil(lambda: panel.patient_model.total_count == 2, timeout=30_000)
    assert panel.current_patient_uid() == selected


# --- a large database: pages on a thread, the GUI thread free ------------------------------------------
WRITER = """
import sys, time
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from DICOMBrowser.DICOMBrowserLib.database import DATABASE_TAGS as tag, DICOMDatabase, InstanceRecord
database = DICOMDatabase(sys.argv[1])
for n in range(int(sys.argv[2])):
    study = f"1.2.826.0.1.3680043.9.7778.{n}"
    values = {tag["PatientName"]: f"Aaron^W{n:04d}", tag["PatientID"]: f"W{n:04d}",
              tag["StudyInstanceUID"]: study, tag["StudyDate"]: "20260101", tag["SeriesInstanceUID"]: study + ".1",
              tag["SeriesNumber"]: "1", tag["Modality"]: "CT", tag["SOPInstanceUID"]: study + ".1.1",
              tag["SOPClassUID"]: CTImageStorage, tag["InstanceNumber"]: "1"}
    database.store_instances([InstanceRecord(path=f"/arriving/{n}.dcm", size=1000, mtime_ns=0, values=values,
                                             transfer_syntax=ExplicitVRLittleEndian)])
    time.sleep(0.05)
database.close()
"""


@pytest.mark.slow
def test_large_database_opens_scrolls_and_follows_a_writer_without_blocking(qtbot, tmp_path, monkeypatch):
    """20,000 patients (stored through the database's own path, as bench_gui.py does): the browser
    opens with one page, scrolling reads the next, and while another process stores a patient
    every 50 ms the poll re-reads the loaded rows on the model's thread; a 20 ms timer in the GUI
    thread keeps ticking throughout and no patients query runs on the GUI thread."""
    import subprocess
    import sys
    import threading

    from DICOMBrowser.DICOMBrowserLib import database as database_module
    from DICOMBrowser.DICOMBrowserLib.widgets import browser as browser_module
    from DICOMBrowser.DICOMBrowserLib.widgets import models as models_module

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_gui import build_database

    folder = tmp_path / "large"
    build_database(folder, 20000, series_per_patient=1, instances_per_series=1)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(browser_module, "POLL_MS", 200)
    on_gui_thread = []
    page = database_module.patient_page

    def recorded_page(*args, **kwargs):
        on_gui_thread.append(threading.current_thread() is threading.main_thread())
        return page(*args, **kwargs)

    monkeypatch.setattr(database_module, "patient_page", recorded_page)
    monkeypatch.setattr(database_module.DICOMDatabase, "patients",
                        lambda *a, **k: pytest.fail("the whole patients query ran"))
    logic = DICOMBrowserLogic(folder)
    ticks = TickRecorder(lambda: True)
    try:
        widget, panel = make_panel(qtbot, logic)
        model = panel.patient_model
        wait_patients(qtbot, panel)
        first = model.filtered_count
        assert model.total_count == 20000 and models_module.PAGE <= first < 20000 and not model.complete
        assert f"{first}+ of 20000 patients" in panel.count_label.text()
        assert model.row_dict(0)["PatientName"].startswith("Anderson^")

        # the user scrolls to the end of what is loaded: the next page is read on the thread
        panel.patient_table.scrollToBottom()
        qtbot.waitUntil(lambda: model.filtered_count >= first + models_module.PAGE, timeout=30_000)
        panel.patient_table.selectRow(3)
        selected = panel.current_patient_uid()

        # another process stores 40 new patients ("Aaron^...", the first names of the list)
        reads = model.reads
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), "40"],
                                  cwd=Path(__file__).resolve().parents[1])
        try:
            qtbot.waitUntil(lambda: writer.poll() is not None, timeout=120_000)
        finally:
            writer.kill()
        assert writer.returncode == 0
        qtbot.waitUntil(lambda: model.total_count == 20040 and not model.busy, timeout=30_000)
        wait_patients(qtbot, panel)
        assert model.reads > reads  # re-read after commits, not only once
        assert [model.row_dict(r)["PatientName"] for r in (0, 39, 40)] == ["Aaron^W0000", "Aaron^W0039",
                                                                          "Anderson^P00008"]
        assert panel.current_patient_uid() == selected  # the selection survived the re-reads
        widget.cleanup()
    finally:
        ticks.stop()
        logic.close()
    print(f"{len(ticks.ticks)} ticks, longest gap {ticks.longest_gap() * 1000:.0f} ms, "
          f"{model.reads} reads, {len(on_gui_thread)} pages")
    assert on_gui_thread and not any(on_gui_thread), "a patients page was read on the GUI thread"
    assert len(ticks.ticks) >= 20
