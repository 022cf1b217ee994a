"""The Export dialog: given a series loaded in the browser's scene, when the user opens "Export
to DICOM…" on its study, edits the series description, ticks de-identification or not, and
presses Export, then the new series is in the database (the export ran on a thread)."""
from __future__ import annotations

import os

import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("pytestqt")
pytest.importorskip("PySide6.QtWidgets")

import pydicom  # noqa: E402

from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic  # noqa: E402


@pytest.fixture
def logic_with_loaded_series(tmp_path, series_factory):
    files = series_factory(count=5, rows=12, columns=10, patient_id="GUIEXP", patient_name="Gui^Export")
    logic = DICOMBrowserLogic(tmp_path / "db")
    logic.import_paths([files[0].parent])
    logic.load_into_scene(logic.examine_uids([pydicom.dcmread(files[0]).SeriesInstanceUID]))
    yield logic, pydicom.dcmread(files[0])
    logic.close()


def test_export_dialog_exports_the_loaded_volume_into_the_study(qtbot, logic_with_loaded_series, tmp_path):
    from DICOMBrowser.DICOMBrowserLib.widgets.exportdialog import ExportDialog

    logic, source = logic_with_loaded_series
    dialog = ExportDialog(logic, source.StudyInstanceUID)
    qtbot.addWidget(dialog)
    assert dialog.source_combo.count() == 2  # the loaded volume and the whole scene
    keywords = [dialog.tags.item(r, 0).text() for r in range(dialog.tags.rowCount())]
    assert "PatientName" in keywords and "StudyInstanceUID" in keywords
    dialog.set_tag("SeriesDescription", "From the dialog")
    dialog.set_tag("BodyPartExamined", "HEAD")
    dialog.folder_edit.setText(str(tmp_path / "out"))
    dialog.grab().save(str(tmp_path / "export-dialog.png"))
    with qtbot.waitSignal(dialog.exportFinished, timeout=60000) as finished:
        dialog.start_export()
    assert finished.args == [True], dialog.last_error
    result = dialog.last_result
    rows = {s["SeriesInstanceUID"]: s for s in logic.series(source.StudyInstanceUID)}
    assert result.series_uid in rows and rows[result.series_uid]["SeriesDescription"] == "From the dialog"
    assert len(list((tmp_path / "out").iterdir())) == 5
    written = pydicom.dcmread(next((tmp_path / "out").iterdir()))
    assert written.BodyPartExamined == "HEAD" and written.FrameOfReferenceUID == source.FrameOfReferenceUID


def test_export_dialog_without_a_destination_shows_the_error_and_writes_nothing(qtbot, logic_with_loaded_series):
    from DICOMBrowser.DICOMBrowserLib.widgets.exportdialog import ExportDialog

    logic, source = logic_with_loaded_series
    dialog = ExportDialog(logic, source.StudyInstanceUID)
    qtbot.addWidget(dialog)
    dialog.deidentify_box.setChecked(True)
    dialog.source_combo.setCurrentIndex(0)
    dialog.kind_combo.setCurrentText("MR image series")
    dialog.to_database.setChecked(False)  # and no folder, no node: nowhere to go
    with qtbot.waitSignal(dialog.exportFinished, timeout=60000) as finished:
        dialog.start_export()
    assert finished.args == [False] and "say where" in dialog.status.text()
    assert len(logic.series()) == 1


def test_study_context_menu_opens_the_export_dialog(qtbot, logic_with_loaded_series, monkeypatch, tmp_path):
    """The browser's study context menu has "Export to DICOM…", which opens the dialog on that study."""
    from DICOMBrowser.DICOMBrowser import DICOMBrowserWidget

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    logic, source = logic_with_loaded_series
    panel = DICOMBrowserWidget(logic).setup()
    qtbot.addWidget(panel)
    panel.refresh_all()
    qtbot.waitUntil(lambda: panel.study_model.rowCount() > 0 or panel.patient_model.rowCount() > 0, timeout=10000)
    if panel.study_model.rowCount() == 0:  # studies show for the selected patient
        panel.patient_table.selectRow(0)
        qtbot.waitUntil(lambda: panel.study_model.rowCount() > 0, timeout=10000)
    opened = []

    def choose_export(menu, position):
        next(a for a in menu.actions() if a.text().startswith("Export to DICOM")).trigger()

    panel.exec_menu = choose_export
    original = panel.open_export_dialog
    panel.open_export_dialog = lambda uid: opened.append(original(uid))
    row = panel.study_model.row_of_uid(source.StudyInstanceUID)
    panel.study_table.customContextMenuRequested.emit(
        panel.study_table.visualRect(panel.study_model.index(row, 0)).center())
    assert len(opened) == 1 and opened[0].study_uid == source.StudyInstanceUID
    opened[0].close()
    panel.shutdown()
