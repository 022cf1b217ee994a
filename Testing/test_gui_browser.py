"""The browser panel driven as a user would, on Qt's offscreen platform (no VTK views here).

Story: an empty database; import real corpus folders through the Import action (the folder
dialog answered by the test); the patients appear; typing in the search box filters them;
selecting a study shows its series with geometry verdicts and thumbnails; selecting a series
shows its loadables; Load puts a volume in the scene; Delete (confirmed) removes a study from
the database while its files stay on disk. Modal dialogs are answered by patching, never shown.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("pytestqt")
QtWidgets = pytest.importorskip("PySide6.QtWidgets")
QtCore = pytest.importorskip("PySide6.QtCore")

from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic, DICOMBrowserWidget  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.widgets import browser as browser_module  # noqa: E402

pytestmark = pytest.mark.timeout(180)

CT_HEAD = "slicer_ct_head/Testing/Data/Input/CTHeadAxialDicom"
FAILING = "dicom2nifti/tests/data/failing"
CT_SERIES = "1.2.826.0.1.3680043.2.1125.1.65375240934815452318141136507497058"


@pytest.fixture
def logic(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # recent databases stay private
    logic = DICOMBrowserLogic(tmp_path / "db")
    yield logic
    logic.close()


@pytest.fixture
def panel(qtbot, logic):
    widget = DICOMBrowserWidget(logic)
    panel = widget.setup()
    qtbot.addWidget(panel)
    panel.messages = []
    panel.show_message = lambda title, text, error=False: panel.messages.append((title, text, error))
    panel.resize(900, 900)
    panel.show()
    yield panel
    widget.cleanup()


def wait_patients(qtbot, panel, patients=None):
    """Wait until the patient table's reads (on its thread) ended, with `patients` rows if given."""
    model = panel.patient_model
    qtbot.waitUntil(lambda: not model.busy and (patients is None or model.filtered_count == patients), timeout=30_000)


def import_through_action(qtbot, panel, monkeypatch, folder: Path, copy: bool = False):
    """Trigger the Import action; the dialog is answered with `folder` (and the copy option)."""
    def answer(dialog):
        dialog.add_paths([str(folder)])
        dialog.copy_box.setChecked(copy)
        return QtWidgets.QDialog.DialogCode.Accepted

    monkeypatch.setattr(browser_module.ImportDialog, "exec", answer)
    with qtbot.waitSignal(panel.importFinished, timeout=120_000) as blocker:
        panel.import_action.trigger()
    wait_patients(qtbot, panel)  # the table is read again on its thread after the import
    return blocker.args[0]


def test_import_filter_examine_load_delete(qtbot, panel, logic, corpus, monkeypatch):
    assert panel.patient_model.total_count == 0

    # import two real folders through the action: the rows appear
    summary = import_through_action(qtbot, panel, monkeypatch, corpus / CT_HEAD)
    assert summary.indexed == 93
    summary = import_through_action(qtbot, panel, monkeypatch, corpus / FAILING)
    assert summary.indexed == 8
    assert panel.patient_model.total_count == 2 == len(logic.database.patients())
    # the summary speaks of what was added, in the status line, not in a modal box
    assert panel.status_message.startswith("Import: Added 1 patient, 2 studies, 2 series (8 files)"), \
        panel.status_message
    assert not panel.messages
    assert "2 of 2 patients" in panel.count_label.text()

    # filter as you type (case-insensitive, on name or ID)
    qtbot.keyClicks(panel.search, "austr")
    wait_patients(qtbot, panel, 1)
    assert panel.patient_model.row_dict(0)["PatientName"] == "Austrialian"
    assert "1 of 2 patients" in panel.count_label.text()
    selected = panel.current_patient_uid()
    panel.search.clear()
    wait_patients(qtbot, panel, 2)
    assert panel.current_patient_uid() == selected  # clearing the search keeps the patient

    # sortable: a click on the name header sorts ascending, a second click descending
    panel.patient_table.sortByColumn(0, QtCore.Qt.SortOrder.AscendingOrder)
    wait_patients(qtbot, panel)
    names = [panel.patient_model.row_dict(r)["PatientName"] for r in range(2)]
    assert names == sorted(names, key=str.lower)
    panel.patient_table.sortByColumn(0, QtCore.Qt.SortOrder.DescendingOrder)
    wait_patients(qtbot, panel)
    assert [panel.patient_model.row_dict(r)["PatientName"] for r in range(2)] == names[::-1]
    qtbot.keyClicks(panel.search, "8775070")  # by patient ID
    wait_patients(qtbot, panel, 1)

    # a single match is selected: its study and series follow, loadables and a thumbnail arrive
    assert panel.current_patient_uid() == panel.patient_model.uid(0)
    assert panel.selected_series_uids() == [CT_SERIES]
    qtbot.waitUntil(lambda: bool(panel.loadable_model.loadables), timeout=60_000)
    qtbot.waitUntil(lambda: CT_SERIES in panel.series_model.verdicts, timeout=60_000)
    assert panel.series_model.verdicts[CT_SERIES][0] == "regular"
    loadables = panel.loadable_model.loadables
    assert [l.plugin for l in loadables if l.selected] == ["DICOMScalarVolumePlugin"]
    assert panel.load_button.isEnabled()
    thumbnail = logic.database.folder / "thumbnails" / f"{CT_SERIES}.png"
    qtbot.waitUntil(thumbnail.exists, timeout=60_000)
    qtbot.waitUntil(lambda: not panel.thumbnail_item(CT_SERIES).icon().isNull(), timeout=10_000)
    from PIL import Image

    with Image.open(thumbnail) as image:
        assert max(image.size) == 128 and image.getextrema()[1] > 100  # a real, not blank, image

    # Load (on a thread): a volume node of the CT's size appears in the scene
    with qtbot.waitSignal(panel.nodesLoaded, timeout=60_000) as loaded:
        qtbot.mouseClick(panel.load_button, QtCore.Qt.MouseButton.LeftButton)
    nodes = loaded.args[0]
    assert len(nodes) == 1 and nodes[0].IsA("vtkMRMLScalarVolumeNode")
    assert nodes[0].GetImageData().GetDimensions() == (64, 64, 93)
    assert logic.gui_scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 1

    # delete a study from the context menu's action: confirmation says files stay; they do
    files = logic.database.files_for_series(CT_SERIES)
    study_uid = panel.current_study_uid()
    questions = []
    panel.ask_confirmation = lambda title, text: questions.append(text) or True

    def choose_delete(menu, position):  # the context menu, answered with its Delete entry
        next(a for a in menu.actions() if a.text().startswith("Delete")).trigger()

    panel.exec_menu = choose_delete
    row = panel.study_model.row_of_uid(study_uid)
    with qtbot.waitSignal(panel.deleteFinished, timeout=30_000):
        panel.study_table.customContextMenuRequested.emit(
            panel.study_table.visualRect(panel.study_model.index(row, 0)).center())
    assert len(questions) == 1
    assert "files on disk are kept" in questions[0]
    assert logic.database.level_of(study_uid) is None
    assert all(Path(f).exists() for f in files)
    panel.search.clear()
    wait_patients(qtbot, panel)
    assert panel.patient_model.total_count == 1


def test_geometry_verdicts_name_the_offending_files(qtbot, panel, logic, corpus, monkeypatch):
    import_through_action(qtbot, panel, monkeypatch, corpus / FAILING)
    panel.patient_table.selectRow(0)
    verdicts = {}
    for row in range(panel.study_model.filtered_count):
        panel.study_table.selectRow(row)
        for uid in panel.series_model.uids():
            qtbot.waitUntil(lambda u=uid: u in panel.series_model.verdicts, timeout=60_000)
            verdicts[uid] = panel.series_model.verdicts[uid]
            # the verdict is in the series table's Geometry column, the files in its tooltip
            series_row = panel.series_model.row_of_uid(uid)
            index = panel.series_model.index(series_row, len(panel.series_model.columns) - 1)
            assert panel.series_model.data(index) == verdicts[uid][0]
    texts = sorted(v[0] for v in verdicts.values())
    assert any("missing slices" in t for t in texts), texts
    assert any("tilt" in t for t in texts), texts
    missing = next(v for v in verdicts.values() if "missing slices" in v[0])
    assert missing[2] is True and ".dcm" in missing[1]  # a problem, with file names in the tooltip


def test_cancelled_import_reports_and_keeps_what_was_done(qtbot, panel, logic, corpus):
    total = sum(1 for p in corpus.rglob("*") if p.is_file())  # over a thousand files: cancel comes first
    with qtbot.waitSignal(panel.importFinished, timeout=120_000) as finished:
        thread = panel.import_folder(str(corpus), copy=False)
        panel.cancel_import()  # as if Cancel was pressed at once
    summary = finished.args[0]
    assert thread.cancel_requested and summary is not None
    assert summary.cancelled
    assert summary.indexed < total / 2
    assert panel.import_status.startswith("Cancelled"), panel.import_status
    wait_patients(qtbot, panel)
    assert panel.patient_model.total_count == len(logic.database.patients())  # what was done is shown


def test_copy_import_and_error_log(qtbot, panel, logic, corpus, monkeypatch):
    """Copy into the database; unreadable files become error-log rows that name the file."""
    summary = import_through_action(qtbot, panel, monkeypatch, corpus / "orthanc_tests", copy=True)
    assert summary.indexed > 0
    assert any(Path(f).is_relative_to(logic.database.folder) for f in logic.database.files_for_uid(
        logic.database.patients()[0]["PatientUID"]))
    logging.getLogger("DICOMBrowser.test").error("Peer PACS@127.0.0.1:4242 refused the association")
    qtbot.waitUntil(lambda: panel.error_log.table.rowCount() > 0, timeout=5000)
    messages = panel.error_log.messages()
    assert any("PACS@127.0.0.1:4242" in m for m in messages)
    if summary.errors:
        assert any(Path(summary.errors[0][0]).name in m for m in messages)
    assert "Error log (" in panel.bottom_tabs.tabText(1)


def test_settings_dialog_saves_nodes_and_rejects_bad_port(qtbot, logic):
    from DICOMBrowser.DICOMBrowserLib.config import RemoteNode
    from DICOMBrowser.DICOMBrowserLib.widgets.dialogs import SettingsDialog

    dialog = SettingsDialog(logic)
    qtbot.addWidget(dialog)
    dialog.ae_title.setText("MYBROWSER")
    dialog.port.setValue(11999)
    dialog.add_node_row(RemoteNode("orthanc", "ORTHANC", "127.0.0.1", 4242, "get"))
    dialog.accept()
    settings = logic.settings
    assert settings.ae_title == "MYBROWSER" and settings.port == 11999
    assert settings.nodes["orthanc"].port == 4242 and settings.nodes["orthanc"].retrieve == "get"

    dialog = SettingsDialog(logic)
    qtbot.addWidget(dialog)
    assert dialog.nodes.rowCount() == 1
    dialog.nodes.item(0, 3).setText("99999")
    dialog.accept()
    assert "port" in dialog.message.text() and "99999" in dialog.message.text()
    assert logic.settings.nodes["orthanc"].port == 4242  # not saved

    # the retrieve method is a choice, not free text
    dialog.nodes.item(0, 3).setText("4242")
    method = dialog.nodes.cellWidget(0, 4)
    assert [method.itemText(i) for i in range(method.count())] == ["C-GET", "C-MOVE"]
    method.setCurrentText("C-MOVE")
    dialog.accept()
    assert logic.settings.nodes["orthanc"].retrieve == "move"


def test_database_switcher_lists_recent_databases(qtbot, panel, logic, tmp_path, series_factory):
    first = str(logic.database.folder)
    series_factory("one", count=3, patient_name="Switch^One", patient_id="SW1")
    panel.logic.import_paths([tmp_path / "one"])
    panel.refresh_all()
    wait_patients(qtbot, panel, 1)
    panel.switch_database(str(tmp_path / "other-db"))
    wait_patients(qtbot, panel)
    assert str(logic.database.folder) == str((tmp_path / "other-db").resolve())
    assert panel.patient_model.total_count == 0
    items = [panel.database_combo.itemData(i) for i in range(panel.database_combo.count())]
    assert items[0] == str((tmp_path / "other-db").resolve()) and first in items
    panel._database_chosen(items.index(first))
    wait_patients(qtbot, panel)
    assert panel.patient_model.total_count == 1


@pytest.mark.network
def test_listener_toggle_receives_and_refreshes(qtbot, panel, logic, free_port, series_factory, tmp_path):
    from DICOMBrowser.DICOMBrowserLib.networking import scu

    settings = logic.settings
    settings.port = free_port
    settings.listen_host = "127.0.0.1"
    logic.save_settings(settings)
    assert panel.listener_button.isEnabled()
    panel.listener_button.setChecked(True)
    try:
        assert "listening" in panel.listener_status.text() and str(free_port) in panel.listener_status.text()
        files = series_factory("sent", count=3, patient_name="Listener^Test", patient_id="LISTEN1")
        from DICOMBrowser.DICOMBrowserLib.config import RemoteNode

        node = RemoteNode("self", settings.ae_title, "127.0.0.1", free_port)
        from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

        summary = scu.send(node, "SENDER", [(str(f), CTImageStorage, ExplicitVRLittleEndian) for f in files],
                           timeout=30)
        assert summary.sent == 3, summary
        # the browser notices the new patient by polling, without a click
        qtbot.waitUntil(lambda: panel.patient_model.total_count == 1, timeout=30_000)
    finally:
        panel.listener_button.setChecked(False)
    assert "off" in panel.listener_status.text()


def test_self_test_from_help_menu(qtbot, logic):
    from DICOMBrowser.DICOMBrowserLib.widgets.mainwindow import DICOMBrowserMainWindow

    window = DICOMBrowserMainWindow(logic, with_views=False)
    qtbot.addWidget(window)
    shown = []
    window.show_report = lambda title, text, error=False: shown.append((title, text, error))
    with qtbot.waitSignal(window.selfTestFinished, timeout=120_000) as finished:
        window.self_test_action.trigger()
        assert not window.self_test_action.isEnabled()  # runs on a thread
    assert finished.args == [True]
    results = window.self_test_results
    assert results and all(ok for _, ok, _ in results), results
    assert shown[-1][0].startswith(f"Self-test: {len(results)} of {len(results)} passed")
    window.close()


def test_models_keep_python_references(qtbot):
    """Qt calling our models must not lose references (PySide6 6.12.0 did, and the interpreter aborted)."""
    import gc
    import sys

    from DICOMBrowser.DICOMBrowserLib.widgets.models import PatientModel

    model = PatientModel()
    rows = [{"PatientUID": str(i), "PatientName": f"Doe^{i}", "PatientID": str(i)} for i in range(10)]
    model.set_source(lambda: rows)
    proxy = QtCore.QIdentityProxyModel()  # C++ calls our Python overrides, as a view does
    proxy.setSourceModel(model)
    gc.collect()
    before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(2000):
        proxy.data(proxy.index(0, 0), QtCore.Qt.ItemDataRole.DecorationRole)  # returns None
        proxy.headerData(0, QtCore.Qt.Orientation.Vertical)  # returns None
        proxy.canFetchMore(QtCore.QModelIndex())  # returns a bool
    gc.collect()
    after = sys.getrefcount(None), sys.getrefcount(True)
    assert after[0] >= before[0] - 50 and after[1] >= before[1] - 50, (before, after)


def test_host_window_lists_loaded_volumes_without_views(qtbot, logic, series_factory, tmp_path):
    """Offscreen Qt: no VTK views (a placeholder), but loading fills the data panel."""
    from DICOMBrowser.DICOMBrowserLib.widgets.mainwindow import DICOMBrowserMainWindow

    series_factory("ct", count=6, rows=16, columns=12, patient_name="Host^Window", patient_id="HOST1")
    logic.import_paths([tmp_path / "ct"])
    window = DICOMBrowserMainWindow(logic)
    qtbot.addWidget(window)
    assert window.views is None  # never a QVTKRenderWindowInteractor under offscreen Qt
    window.browser.show_message = lambda *args, **kwargs: None
    series_uid = logic.database.series()[0]["SeriesInstanceUID"]
    nodes = window.browser.load_uid(series_uid)
    assert len(nodes) == 1 and window.data_list.count() == 1
    assert "(12x16x6," in window.data_list.item(0).text()
    shot = window.save_screenshot(tmp_path / "offscreen.png")
    assert shot.stat().st_size > 1000
    window.close()
