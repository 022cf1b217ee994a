"""The Export dialog: given a series loaded in the browser's scene, when the user opens "Export
to DICOM…" on its study, edits the series description, ticks de-identification or not, and
presses Export, then the new series is in the database (the export ran on a thread). Given a
SEG loaded by our SEG plugin, the dialog lists its segments (names, colours, terms), exports the
node as a new SEG, and our plugin reads back the same segments."""
from __future__ import annotations

import os

import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("pytestqt")
pytest.importorskip("PySide6.QtWidgets")

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from PySide6 import QtCore  # noqa: E402

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


def test_export_dialog_writes_one_enhanced_object_when_ticked(qtbot, logic_with_loaded_series, tmp_path):
    """Ticking "One enhanced multi-frame object" exports the loaded 5-slice volume as one Legacy
    Converted Enhanced CT object of 5 frames; the box is off for kinds that have no such form."""
    from DICOMBrowser.DICOMBrowserLib.widgets.exportdialog import ExportDialog

    logic, source = logic_with_loaded_series
    dialog = ExportDialog(logic, source.StudyInstanceUID)
    qtbot.addWidget(dialog)
    dialog.kind_combo.setCurrentText("Secondary capture (OT) series")
    assert not dialog.enhanced_box.isEnabled()
    dialog.kind_combo.setCurrentText("CT image series")
    dialog.enhanced_box.setChecked(True)
    dialog.folder_edit.setText(str(tmp_path / "enhanced"))
    with qtbot.waitSignal(dialog.exportFinished, timeout=60000) as finished:
        dialog.start_export()
    assert finished.args == [True], dialog.last_error
    [written] = [pydicom.dcmread(p, stop_before_pixels=True) for p in (tmp_path / "enhanced").iterdir()]
    assert written.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2.2" and int(written.NumberOfFrames) == 5
    assert written.FrameOfReferenceUID == source.FrameOfReferenceUID


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


SEGMENTATIONS = "dcmqi_seg/data/segmentations"


def _lps_image_to_ras(image) -> np.ndarray:
    from DICOMBrowser.DICOMBrowserLib.geometry import LPS_TO_RAS

    matrix = np.eye(4)
    matrix[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ matrix


def _dice(a, b) -> float:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _seg_node_loaded_by_our_plugin(logic, series_uid, scene):
    report = logic.examine([series_uid])
    chosen = logic.choose_loadables(report.loadables)
    assert [loadable.plugin for loadable in chosen] == ["DICOMSegmentationPlugin"], chosen
    nodes = logic.load(chosen, scene, report=report, referenced="never")
    return next(n for n in nodes if n.IsA("vtkMRMLSegmentationNode"))


def _export_segmentation_through_the_dialog(qtbot, logic, seg_node, study_uid, tmp_path, edit=None):
    """Open the dialog on the study, pick the segmentation node, optionally edit the segment table,
    press Export (the task runs on a thread); returns (dialog, table rows shown before editing)."""
    from DICOMBrowser.DICOMBrowserLib.widgets.exportdialog import ExportDialog

    dialog = ExportDialog(logic, study_uid)
    qtbot.addWidget(dialog)
    index = dialog.source_combo.findData(seg_node.GetID())
    assert index >= 0, [dialog.source_combo.itemText(i) for i in range(dialog.source_combo.count())]
    dialog.source_combo.setCurrentIndex(index)
    assert dialog.kind_combo.currentText() == "Segmentation (SEG)"
    assert not dialog.segment_table.isHidden() and not dialog.enhanced_box.isEnabled()
    table = dialog.segment_table
    shown = [(table.item(r, 0).text(), table.item(r, 1).text(), table.item(r, 2).text(),
              table.item(r, 0).data(QtCore.Qt.ItemDataRole.DecorationRole)) for r in range(table.rowCount())]
    if edit is not None:
        edit(table)
    dialog.set_tag("SeriesDescription", "SEG from the dialog")
    dialog.grab().save(str(tmp_path / "export-dialog-seg.png"))
    with qtbot.waitSignal(dialog.exportFinished, timeout=120000) as finished:
        dialog.start_export()
    assert finished.args == [True], dialog.last_error
    return dialog, shown


def test_export_dialog_writes_dcmqi_liver_seg_node_as_a_new_seg(qtbot, corpus, tmp_path):
    """Given dcmqi's liver SEG and its 3 CT slices in a database, and the SEG loaded into the
    browser's scene by our SEG plugin, when the user picks the segmentation node in the Export
    dialog (its segment shown by name and colour), renames it and changes its colour, and exports
    into the database, then the new SEG passes dciodvfy, refers to the CT series, and our SEG
    plugin reads it back with the new name and colour and the same voxels (Dice 1.0 with
    dcmqi's liver_seg.nrrd)."""
    import highdicom as hd
    import SimpleITK as sitk

    from dicom_checks import assert_valid, require_dciodvfy
    from DICOMBrowser.DICOMBrowserLib import scene as scenes
    from DICOMBrowser.DICOMBrowserLib.segmentation import segment_arrays

    require_dciodvfy()
    folder = corpus / SEGMENTATIONS
    original = pydicom.dcmread(folder / "liver.dcm", stop_before_pixels=True)
    ct = pydicom.dcmread(folder / "ct-3slice" / "01.dcm", stop_before_pixels=True)
    logic = DICOMBrowserLogic(tmp_path / "db")
    try:
        logic.import_paths([folder / "ct-3slice", folder / "liver.dcm"])
        seg_node = _seg_node_loaded_by_our_plugin(logic, str(original.SeriesInstanceUID), logic.gui_scene)
        [segment_colour] = [tuple(seg_node.GetSegmentation().GetNthSegment(0).GetColor())]
        rgb = tuple(int(round(c * 255)) for c in segment_colour)

        def rename_and_recolour(table):
            table.item(0, 0).setText("Liver (reviewed)")  # what typing into the cell does
            table.item(0, 1).setText("200,90,40")

        dialog, shown = _export_segmentation_through_the_dialog(qtbot, logic, seg_node, ct.StudyInstanceUID,
                                                                tmp_path, edit=rename_and_recolour)
        [(name, colour_text, terms, swatch)] = shown
        assert name == "Liver" and colour_text == ",".join(map(str, rgb))
        assert (swatch.red(), swatch.green(), swatch.blue()) == rgb
        assert terms.endswith("/ Liver"), terms
        assert dialog.reference_combo.currentData() == ct.SeriesInstanceUID  # from the node's references
        result = dialog.last_result
        files = logic.files_for_uid(result.series_uid)
        assert result.imported and len(files) == 1
        warnings = assert_valid(files)
        assert all("Retired Person Name" in w for w in warnings), warnings  # the CT's own PatientName
        seg = hd.seg.segread(files[0])
        assert seg.SeriesDescription == "SEG from the dialog" and seg.StudyInstanceUID == ct.StudyInstanceUID
        assert {item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence} == {ct.SeriesInstanceUID}

        dialog.segment_table.item(0, 1).setText("300,0,0")  # a colour no SEG can hold: refused before any work
        assert dialog.start_export() is None and "colour '300,0,0'" in dialog.status.text()
        assert len(logic.series(ct.StudyInstanceUID)) == 3  # CT, dcmqi's SEG, ours

        node = _seg_node_loaded_by_our_plugin(logic, result.series_uid, scenes.new_scene())
        segment = node.GetSegmentation().GetNthSegment(0)
        assert node.GetSegmentation().GetNumberOfSegments() == 1 and segment.GetName() == "Liver (reviewed)"
        assert np.allclose(np.array(segment.GetColor()) * 255, [200, 90, 40], atol=1.0)  # CIELab there and back
        # dcmqi's SNOMED RT codes (SRT T-D0050 Tissue, T-62000 Liver) as PS3.16's SNOMED CT ones
        assert "SRT^T-62000^Liver" in seg_node.GetSegmentation().GetNthSegment(0).GetTerminology()
        assert segment.GetTerminology().split("~")[1:3] == ["SCT^85756007^Tissue", "SCT^10200004^Liver"]
        reference = sitk.ReadImage(str(folder / "liver_seg.nrrd"))
        voxels = sitk.GetArrayFromImage(reference)
        grid = _lps_image_to_ras(reference)
        assert _dice(segment_arrays(node, grid, voxels.shape)["Liver (reviewed)"], voxels == 1) == 1.0
    finally:
        logic.close()


@pytest.mark.slow
def test_export_dialog_keeps_overlapping_segments_of_a_loaded_seg(qtbot, corpus, tmp_path):
    """dcmqi's partial_overlaps SEG (5 segments in 3 overlapping layers) loaded by our plugin and
    exported from the dialog unedited: all 5 segments listed with their colours; read back by our
    plugin, each has Dice 1.0 with dcmqi's reference labelmaps and the original's colour."""
    import SimpleITK as sitk

    from dicom_checks import assert_valid, require_dciodvfy
    from DICOMBrowser.DICOMBrowserLib import scene as scenes
    from DICOMBrowser.DICOMBrowserLib.segmentation import segment_arrays

    require_dciodvfy()
    folder = corpus / SEGMENTATIONS
    references = {"partial_overlaps-1.nrrd": {1: "GREEN", 4: "LIGHT_BLUE", 5: "DARK_BLUE"},
                  "partial_overlaps-2.nrrd": {2: "ORANGE"}, "partial_overlaps-3.nrrd": {3: "PURPLE"}}
    original = pydicom.dcmread(folder / "partial_overlaps.dcm", stop_before_pixels=True)
    ct = pydicom.dcmread(folder / "ct-3slice" / "01.dcm", stop_before_pixels=True)
    logic = DICOMBrowserLogic(tmp_path / "db")
    try:
        logic.import_paths([folder / "ct-3slice", folder / "partial_overlaps.dcm"])
        seg_node = _seg_node_loaded_by_our_plugin(logic, str(original.SeriesInstanceUID), logic.gui_scene)
        segmentation = seg_node.GetSegmentation()
        colours = {segmentation.GetNthSegment(i).GetName(): segmentation.GetNthSegment(i).GetColor()
                   for i in range(segmentation.GetNumberOfSegments())}
        dialog, shown = _export_segmentation_through_the_dialog(qtbot, logic, seg_node, ct.StudyInstanceUID, tmp_path)
        assert {row[0] for row in shown} == set(colours) and len(shown) == 5
        for name, colour_text, _, _ in shown:
            assert colour_text == ",".join(str(int(round(c * 255))) for c in colours[name])
        files = logic.files_for_uid(dialog.last_result.series_uid)
        assert all("Retired Person Name" in w for w in assert_valid(files))

        node = _seg_node_loaded_by_our_plugin(logic, dialog.last_result.series_uid, scenes.new_scene())
        loaded = node.GetSegmentation()
        assert loaded.GetNumberOfSegments() == 5
        for index in range(5):
            segment = loaded.GetNthSegment(index)
            assert np.allclose(segment.GetColor(), colours[segment.GetName()], atol=1.0 / 255), segment.GetName()
        for reference_name, labels in references.items():
            reference = sitk.ReadImage(str(folder / reference_name))
            voxels = sitk.GetArrayFromImage(reference)
            masks = segment_arrays(node, _lps_image_to_ras(reference), voxels.shape)
            for label, name in labels.items():
                assert _dice(masks[name], voxels == label) == 1.0, (reference_name, name)
    finally:
        logic.close()


def _labelmap_node(scene, path, names_and_colours=None):
    """A labelmap volume node of `path` (a labelmap NRRD) in `scene`, as Slicer holds one: a display
    node whose colour table names and colours the label values given."""
    import SimpleITK as sitk
    import slicer

    from DICOMBrowser.DICOMBrowserLib import scene as scenes

    image = sitk.ReadImage(str(path))
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", path.name.split(".")[0])
    scenes.set_geometry(node, _lps_image_to_ras(image))
    node.SetAndObserveImageData(scenes.image_data_from_array(sitk.GetArrayFromImage(image).astype(np.int16), copy=True))
    display = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeDisplayNode")
    if names_and_colours:
        table = slicer.vtkMRMLColorTableNode()
        table.SetTypeToUser()
        table.SetNumberOfColors(max(names_and_colours) + 1)
        for value, (name, rgb) in names_and_colours.items():
            table.SetColor(value, name, *(c / 255 for c in rgb), 1.0)
        scene.AddNode(table)
        display.SetAndObserveColorNodeID(table.GetID())
    node.SetAndObserveDisplayNodeID(display.GetID())
    return node


def test_export_dialog_lists_a_labelmaps_values_as_segments_and_exports_them_as_seg(qtbot, corpus, tmp_path):
    """Given dcmqi's CT slices in a database and a labelmap (partial_overlaps-1.nrrd: values 1, 4, 5)
    in the browser's scene with a colour table naming and colouring its values, when the user picks
    the labelmap in the Export dialog, then its values are listed as segments with the table's names
    and colours; after renaming one and recolouring another, the SEG exported into the database
    passes dciodvfy and our SEG plugin reads back three segments with those names and colours, each
    with Dice 1.0 against its value in the labelmap. A labelmap without a colour table is listed as
    "Segment N" without colour."""
    import SimpleITK as sitk

    from dicom_checks import assert_valid, require_dciodvfy
    from DICOMBrowser.DICOMBrowserLib import scene as scenes
    from DICOMBrowser.DICOMBrowserLib.segmentation import segment_arrays
    from DICOMBrowser.DICOMBrowserLib.widgets.exportdialog import ExportDialog

    require_dciodvfy()
    folder = corpus / SEGMENTATIONS
    ct = pydicom.dcmread(folder / "ct-3slice" / "01.dcm", stop_before_pixels=True)
    table = {1: ("Green part", (0, 200, 0)), 4: ("Light blue part", (120, 180, 255)), 5: ("Dark blue part", (0, 0, 140))}
    logic = DICOMBrowserLogic(tmp_path / "db")
    try:
        logic.import_paths([folder / "ct-3slice"])
        labelmap = _labelmap_node(logic.gui_scene, folder / "partial_overlaps-1.nrrd", table)
        plain = _labelmap_node(logic.gui_scene, folder / "partial_overlaps-2.nrrd")
        dialog = ExportDialog(logic, ct.StudyInstanceUID)
        qtbot.addWidget(dialog)
        assert dialog.source_combo.findText(f"{plain.GetName()} (labelmap)") >= 0
        dialog.source_combo.setCurrentIndex(dialog.source_combo.findData(plain.GetID()))
        assert dialog.kind_combo.currentText() == "Segmentation (SEG)" and not dialog.segment_table.isHidden()
        segments = dialog.segment_table
        assert [(segments.item(r, 0).text(), segments.item(r, 1).text()) for r in range(segments.rowCount())] == [
            ("Segment 2", "")]
        dialog.source_combo.setCurrentIndex(dialog.source_combo.findData(labelmap.GetID()))
        assert dialog.source_combo.currentText() == f"{labelmap.GetName()} (labelmap)"
        shown = [(segments.item(r, 0).text(), segments.item(r, 1).text(), segments.item(r, 2).text(),
                  segments.item(r, 0).data(QtCore.Qt.ItemDataRole.DecorationRole)) for r in range(segments.rowCount())]
        assert [(name, colour) for name, colour, _, _ in shown] == [
            (name, ",".join(map(str, rgb))) for name, rgb in table.values()]
        assert all(terms == "Tissue / Tissue (default)" for _, _, terms, _ in shown)
        swatch = shown[0][3]
        assert (swatch.red(), swatch.green(), swatch.blue()) == table[1][1]
        segments.item(1, 0).setText("Kidney cortex")  # what typing into the cells does
        segments.item(2, 1).setText("10,20,30")
        dialog.reference_combo.setCurrentIndex(dialog.reference_combo.findData(ct.SeriesInstanceUID))
        dialog.set_tag("SeriesDescription", "Labelmap from the dialog")
        dialog.grab().save(str(tmp_path / "export-dialog-labelmap.png"))
        with qtbot.waitSignal(dialog.exportFinished, timeout=120000) as finished:
            dialog.start_export()
        assert finished.args == [True], dialog.last_error
        files = logic.files_for_uid(dialog.last_result.series_uid)
        assert len(files) == 1
        assert all("Retired Person Name" in w for w in assert_valid(files))  # the CT's own PatientName
        assert pydicom.dcmread(files[0], stop_before_pixels=True).SeriesDescription == "Labelmap from the dialog"

        node = _seg_node_loaded_by_our_plugin(logic, dialog.last_result.series_uid, scenes.new_scene())
        loaded = node.GetSegmentation()
        read_back = {loaded.GetNthSegment(i).GetName(): loaded.GetNthSegment(i).GetColor()
                     for i in range(loaded.GetNumberOfSegments())}
        expected = {"Green part": (1, table[1][1]), "Kidney cortex": (4, table[4][1]), "Dark blue part": (5, (10, 20, 30))}
        assert set(read_back) == set(expected)
        reference = sitk.ReadImage(str(folder / "partial_overlaps-1.nrrd"))
        voxels = sitk.GetArrayFromImage(reference)
        masks = segment_arrays(node, _lps_image_to_ras(reference), voxels.shape)
        for name, (value, rgb) in expected.items():
            assert np.allclose(np.array(read_back[name]) * 255, rgb, atol=1.0), name  # CIELab there and back
            assert _dice(masks[name], voxels == value) == 1.0, name
    finally:
        logic.close()


def test_export_dialog_offers_the_standards_options_and_keeps_the_date_options_apart(qtbot, logic_with_loaded_series):
    """The de-identification box lists every option we implement (PS3.15's names); ticking "full
    dates" unticks "dates, shifted" (the two exclude each other), and the ticked ones are the
    options the export gets."""
    from DICOMBrowser.DICOMBrowserLib.deidprofile import PROFILE_OPTIONS
    from DICOMBrowser.DICOMBrowserLib.widgets.exportdialog import ExportDialog

    logic, source = logic_with_loaded_series
    dialog = ExportDialog(logic, source.StudyInstanceUID)
    qtbot.addWidget(dialog)
    assert set(dialog.option_boxes) == set(PROFILE_OPTIONS)
    dialog.deidentify_box.setChecked(True)
    dialog.option_boxes["dates"].setChecked(True)
    dialog.option_boxes["descriptors"].setChecked(True)
    dialog.option_boxes["full-dates"].setChecked(True)
    assert not dialog.option_boxes["dates"].isChecked()
    assert dialog.deidentify_options().options == {"full-dates", "descriptors"}
    dialog.option_boxes["dates"].setChecked(True)
    assert dialog.deidentify_options().options == {"dates", "descriptors"}
