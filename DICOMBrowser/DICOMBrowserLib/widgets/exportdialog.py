"""The Export dialog (the study's context menu: "Export to DICOM…"), as Slicer's export dialog.

Pick what to export (a loaded volume, 4D sequence, labelmap or segmentation of the browser's
scene, a file, or the whole scene as a data bundle), see the study's pre-filled patient/study
attributes and edit the series attributes (each edited or added row becomes a `--set`), choose
de-identification and where the objects go (database, folder, a configured node). A
segmentation node (e.g. the one our SEG plugin loads) shows its segments with their names,
colours and terms; a labelmap volume node shows its label values as segments, named and coloured
by its colour table (else "Segment N" without colour). Names and colours can be edited (each
change becomes a `--segment`), and the SEG refers to the series the node says it was drawn on.
The export runs on a BackgroundTask with a busy progress dialog; the GUI thread only collects the
choices (and, for a segmentation or labelmap node, copies its masks or voxels: the scene's VTK
objects are not read from another thread).
Every choice is one argument of the same logic call the CLI makes.
"""
from __future__ import annotations

import logging
from typing import Any

from PySide6 import QtCore, QtWidgets

from .workers import BackgroundTask, start_task

logger = logging.getLogger(__name__)

#: kind shown -> (what the logic exports, modality)
KINDS = {"CT image series": ("volume", "CT"), "MR image series": ("volume", "MR"),
         "Secondary capture (OT) series": ("volume", "OT"), "Segmentation (SEG)": ("seg", "SEG"),
         "Scene (data bundle)": ("scene", "")}
#: series attributes shown for editing (prefilled); others can be added as rows
SERIES_ROWS = ("SeriesDescription", "SeriesNumber", "BodyPartExamined", "ProtocolName")


class ExportDialog(QtWidgets.QDialog):
    """Export into `study_uid`; `exportFinished(ok)` after the task ended; `last_result` holds the ExportResult."""

    exportFinished = QtCore.Signal(bool)

    def __init__(self, logic: Any, study_uid: str, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        from ..export.study import study_context

        self.setObjectName("exportDialog")
        self.setWindowTitle("Export to DICOM")
        self.logic = logic
        self.study_uid = study_uid
        self.study = study_context(logic.database, study_uid)
        self.last_result: Any = None
        self.last_error: str | None = None
        self.task: BackgroundTask | None = None

        self.source_combo = QtWidgets.QComboBox(objectName="exportSource")
        self._fill_sources()
        self.file_button = QtWidgets.QPushButton("File…", objectName="exportFile")
        self.file_button.clicked.connect(self.choose_file)
        self.kind_combo = QtWidgets.QComboBox(objectName="exportKind")
        self.kind_combo.addItems(list(KINDS))
        self.source_combo.currentIndexChanged.connect(self._source_changed)
        self.reference_combo = QtWidgets.QComboBox(objectName="exportReference")
        for row in logic.database.series(study_uid):
            self.reference_combo.addItem(f"{row.get('SeriesNumber', '')} {row.get('SeriesDescription', '')} "
                                         f"({row.get('Modality', '')})", row["SeriesInstanceUID"])
        self.enhanced_box = QtWidgets.QCheckBox("One enhanced multi-frame object (CT, MR)", objectName="exportEnhanced")
        self.kind_combo.currentTextChanged.connect(self._kind_changed)
        # a segmentation node's segments: name (editable, with its colour), colour R,G,B (editable), terms
        self.segment_table = QtWidgets.QTableWidget(0, 3, objectName="exportSegments")
        self.segment_table.setHorizontalHeaderLabels(["Segment", "Colour (R,G,B)", "Category / type"])
        self.segment_table.horizontalHeader().setStretchLastSection(True)
        self.segment_table.verticalHeader().setVisible(False)
        self.segment_table.setWordWrap(False)
        self.segment_table.setMaximumHeight(140)  # about four segments; the attribute table keeps its room
        self.segment_table.itemChanged.connect(self._segment_edited)
        self._segment_infos: list[Any] = []  # SegmentInfo of each row, as the node describes them
        self._shown_segments: list[tuple[str, Any]] = []  # (name, colour) of each row as first shown

        self.tags = QtWidgets.QTableWidget(0, 2, objectName="exportTags")
        self.tags.setHorizontalHeaderLabels(["Attribute", "Value"])
        self.tags.horizontalHeader().setStretchLastSection(True)
        self._fill_tags()
        self.tags.resizeColumnToContents(0)
        add_row = QtWidgets.QPushButton("Add attribute", objectName="exportAddTag")
        add_row.clicked.connect(lambda: self.add_tag_row("", ""))

        self.deidentify_box = QtWidgets.QGroupBox("De-identify (PS3.15 Basic Profile)", objectName="exportDeidentify")
        self.deidentify_box.setCheckable(True)
        self.deidentify_box.setChecked(False)
        self.key_edit = QtWidgets.QLineEdit(objectName="exportKey")
        self.key_edit.setPlaceholderText("project key (same key, same new UIDs)")
        self.option_boxes: dict[str, QtWidgets.QCheckBox] = {}
        deid_layout = QtWidgets.QFormLayout(self.deidentify_box)
        deid_layout.addRow("Key", self.key_edit)
        from ..deidprofile import EXCLUSIVE_OPTIONS, OPTION_LABELS, PROFILE_OPTIONS

        options_grid = QtWidgets.QGridLayout()  # two columns: the seven options in four rows
        for index, name in enumerate(PROFILE_OPTIONS):
            box = QtWidgets.QCheckBox(OPTION_LABELS[name], objectName=f"exportRetain-{name}")
            box.setToolTip(f"PS3.15 Annex E option, DCM {PROFILE_OPTIONS[name]} (--retain {name})")
            self.option_boxes[name] = box
            options_grid.addWidget(box, index // 2, index % 2)
        deid_layout.addRow(options_grid)
        for group in EXCLUSIVE_OPTIONS:  # ticking one unticks the others
            for name in group:
                self.option_boxes[name].toggled.connect(
                    lambda on, name=name, group=group: on and [self.option_boxes[o].setChecked(False)
                                                               for o in group if o != name])

        self.to_database = QtWidgets.QCheckBox("Into this database", objectName="exportToDatabase")
        self.to_database.setChecked(True)
        self.folder_edit = QtWidgets.QLineEdit(objectName="exportFolder")
        self.folder_edit.setPlaceholderText("folder (optional)")
        self.node_combo = QtWidgets.QComboBox(objectName="exportNode")
        self.node_combo.addItem("(do not send)", None)
        for name in sorted(logic.settings.nodes):
            self.node_combo.addItem(name, name)

        form = QtWidgets.QFormLayout()
        source_row = QtWidgets.QHBoxLayout()
        source_row.addWidget(self.source_combo, 1)
        source_row.addWidget(self.file_button)
        form.addRow("Export", source_row)
        form.addRow("As", self.kind_combo)
        form.addRow("", self.enhanced_box)
        form.addRow("Drawn on (SEG)", self.reference_combo)
        form.addRow("Segments", self.segment_table)
        self.segments_label = form.labelForField(self.segment_table)
        destinations = QtWidgets.QFormLayout()
        destinations.addRow(self.to_database)
        destinations.addRow("Folder", self.folder_edit)
        destinations.addRow("Send to", self.node_combo)
        self.buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                                  | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.start_export)
        self.buttons.rejected.connect(self.reject)
        self.status = QtWidgets.QLabel("", objectName="exportStatus")
        self.status.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        header = self.study.header
        layout.addWidget(QtWidgets.QLabel(f"<b>Study</b> {header.get('StudyDescription', '')} "
                                          f"{header.get('StudyDate', '')} — {header.get('PatientName', '')}"))
        layout.addLayout(form)
        layout.addWidget(QtWidgets.QLabel("<b>Attributes</b> (patient and study from the study; series ones editable)"))
        layout.addWidget(self.tags, 1)
        layout.addWidget(add_row)
        layout.addWidget(self.deidentify_box)
        layout.addWidget(QtWidgets.QLabel("<b>Destination</b>"))
        layout.addLayout(destinations)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.resize(640, 720)
        self._source_changed()
        self._kind_changed()

    # --- filling ------------------------------------------------------------------------------
    def _fill_sources(self) -> None:
        scene = self.logic.gui_scene
        for class_name in ("vtkMRMLSequenceNode", "vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode"):
            nodes = scene.GetNodesByClass(class_name)
            for index in range(nodes.GetNumberOfItems()):
                node = nodes.GetItemAsObject(index)
                if class_name == "vtkMRMLScalarVolumeNode" and node.GetImageData() is None:
                    continue
                if class_name == "vtkMRMLSegmentationNode":
                    if node.GetSegmentation().GetNumberOfSegments() == 0:
                        continue
                    self.source_combo.addItem(f"{node.GetName()} (segmentation)", node.GetID())
                    continue
                if node.IsA("vtkMRMLLabelMapVolumeNode"):
                    self.source_combo.addItem(f"{node.GetName()} (labelmap)", node.GetID())
                    continue
                self.source_combo.addItem(node.GetName(), node.GetID())
        self.source_combo.addItem("Whole scene (data bundle)", "scene")

    def _fill_tags(self) -> None:
        for element in self.study.header:
            if element.VR == "SQ" or element.keyword == "SpecificCharacterSet":
                continue
            row = self.add_tag_row(element.keyword, str(element.value))
            for column in range(2):  # patient/study rows are the study's: shown, not edited
                item = self.tags.item(row, column)
                item.setFlags(item.flags() & ~QtCore.Qt.ItemFlag.ItemIsEditable)
        for keyword in SERIES_ROWS:
            self.add_tag_row(keyword, "")
        self._editable_start = self.tags.rowCount() - len(SERIES_ROWS)

    def add_tag_row(self, keyword: str, value: str) -> int:
        row = self.tags.rowCount()
        self.tags.insertRow(row)
        self.tags.setItem(row, 0, QtWidgets.QTableWidgetItem(keyword))
        self.tags.setItem(row, 1, QtWidgets.QTableWidgetItem(value))
        return row

    def set_tag(self, keyword: str, value: str) -> None:
        """Set an editable row's value (adds the row when missing); what typing in the table does."""
        for row in range(getattr(self, "_editable_start", 0), self.tags.rowCount()):
            if self.tags.item(row, 0).text() == keyword:
                self.tags.item(row, 1).setText(value)
                return
        self.add_tag_row(keyword, value)

    def _source_changed(self, *args: Any) -> None:
        data = self.source_combo.currentData()
        node = None
        if data == "scene":
            self.kind_combo.setCurrentText("Scene (data bundle)")
        elif data and isinstance(data, str) and not data.startswith("file:"):
            node = self.logic.gui_scene.GetNodeByID(data)
            if node is not None and (node.IsA("vtkMRMLLabelMapVolumeNode") or node.IsA("vtkMRMLSegmentationNode")):
                self.kind_combo.setCurrentText("Segmentation (SEG)")
            elif node is not None:
                modality = node.GetAttribute("DICOM.Modality") or ""
                self.kind_combo.setCurrentText("MR image series" if modality == "MR" else "CT image series")
        has_segments = node is not None and (node.IsA("vtkMRMLSegmentationNode") or node.IsA("vtkMRMLLabelMapVolumeNode"))
        self._show_segments(node if has_segments else None)

    def _kind_changed(self, *args: Any) -> None:
        modality = KINDS[self.kind_combo.currentText()][1]
        self.enhanced_box.setEnabled(modality in ("CT", "MR"))
        if modality not in ("CT", "MR"):
            self.enhanced_box.setChecked(False)

    def _show_segments(self, node: Any) -> None:
        """Fill the segment table from a segmentation or labelmap node (hidden for other sources)
        and choose the series the node was drawn on as the SEG's reference when the study has it."""
        from ..export.segmentation import describe_segments

        if node is None:
            self._segment_infos = []
        elif node.IsA("vtkMRMLLabelMapVolumeNode"):
            self._segment_infos = labelmap_segments(node).segments
        else:
            self._segment_infos = describe_segments(node)
        self._shown_segments = [(info.name or f"Segment {info.label}", info.color) for info in self._segment_infos]
        self.segment_table.blockSignals(True)
        self.segment_table.setRowCount(0)
        for info, (shown_name, _) in zip(self._segment_infos, self._shown_segments):
            row = self.segment_table.rowCount()
            self.segment_table.insertRow(row)
            name = QtWidgets.QTableWidgetItem(shown_name)
            name.setData(QtCore.Qt.ItemDataRole.UserRole, info.label)  # the segment ID or label value
            colour = QtWidgets.QTableWidgetItem(",".join(str(c) for c in info.color) if info.color else "")
            terms = QtWidgets.QTableWidgetItem(
                f"{info.category[2]} / {info.type[2]}" if info.category and info.type else "Tissue / Tissue (default)")
            terms.setFlags(terms.flags() & ~QtCore.Qt.ItemFlag.ItemIsEditable)
            for column, item in enumerate((name, colour, terms)):
                self.segment_table.setItem(row, column, item)
            self._paint_swatch(row)
        self.segment_table.resizeColumnsToContents()
        self.segment_table.blockSignals(False)
        visible = node is not None
        self.segment_table.setVisible(visible)
        if self.segments_label is not None:
            self.segments_label.setVisible(visible)
        if node is not None:
            for uid in (node.GetAttribute("DICOM.referencedSeriesUIDs") or "").split():
                index = self.reference_combo.findData(uid)
                if index >= 0:
                    self.reference_combo.setCurrentIndex(index)
                    break

    def _paint_swatch(self, row: int) -> None:
        """The segment's colour as the name cell's icon (left as it was while the text is not R,G,B)."""
        from PySide6 import QtGui

        try:
            color = _parse_color(self.segment_table.item(row, 1).text())
        except ValueError:
            return
        if color is not None:
            self.segment_table.item(row, 0).setData(QtCore.Qt.ItemDataRole.DecorationRole, QtGui.QColor(*color))

    def _segment_edited(self, item: QtWidgets.QTableWidgetItem) -> None:
        if item.column() == 1:
            self.segment_table.blockSignals(True)
            self._paint_swatch(item.row())
            self.segment_table.blockSignals(False)
        self.segment_table.resizeColumnToContents(item.column())

    def segment_overrides(self) -> list:
        """SegmentInfo overrides (the CLI's --segment) for the names and colours the user changed;
        ValueError names the segment whose colour is not R,G,B in 0-255."""
        from ..export.segmentation import SegmentInfo

        overrides = []
        for row, (info, (shown_name, shown_color)) in enumerate(zip(self._segment_infos, self._shown_segments)):
            name = self.segment_table.item(row, 0).text().strip()
            try:
                color = _parse_color(self.segment_table.item(row, 1).text())
            except ValueError as error:
                raise ValueError(f"segment {shown_name!r}: {error}") from error
            changed_name = name if name and name != shown_name else ""
            changed_color = color if color is not None and color != shown_color else None
            if changed_name or changed_color:
                overrides.append(SegmentInfo(info.label, changed_name, changed_color))
        return overrides

    def choose_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Volume, labelmap or scene", "", "Volumes and scenes (*.nrrd *.nhdr *.nii *.nii.gz *.mrb *.mrml)")
        if path:
            self.source_combo.addItem(path, f"file:{path}")
            self.source_combo.setCurrentIndex(self.source_combo.count() - 1)

    # --- choices -> logic ---------------------------------------------------------------------
    def overrides(self) -> dict[str, str]:
        """The series rows the user filled (SeriesDescription and SeriesNumber go to their own options)."""
        values = {}
        for row in range(self._editable_start, self.tags.rowCount()):
            keyword = self.tags.item(row, 0).text().strip()
            value = self.tags.item(row, 1).text()
            if keyword and value != "":
                values[keyword] = value
        return values

    def deidentify_options(self):
        if not self.deidentify_box.isChecked():
            return None
        from ..deidentify import DeidentifyOptions

        return DeidentifyOptions(key=self.key_edit.text().strip() or None,
                                 options={name for name, box in self.option_boxes.items() if box.isChecked()})

    def export_call(self):
        """A function of no arguments doing the chosen export through the logic (run on the task)."""
        from ..export import VolumeExportOptions

        what, modality = KINDS[self.kind_combo.currentText()]
        data = self.source_combo.currentData()
        scene = self.logic.gui_scene
        source: Any = data[5:] if isinstance(data, str) and data.startswith("file:") else (
            scene if data == "scene" else scene.GetNodeByID(data))
        overrides = self.overrides()
        description = overrides.pop("SeriesDescription", "")
        number = overrides.pop("SeriesNumber", None)
        destinations = {"output_dir": self.folder_edit.text().strip() or None,
                        "to_database": self.to_database.isChecked(), "send_to": self.node_combo.currentData()}
        deidentify = self.deidentify_options()
        logic, study_uid = self.logic, self.study_uid
        if what == "scene" or data == "scene":
            return lambda: logic.export_scene(source, study_uid, series_description=description or "Slicer Data Bundle",
                                              **destinations)
        if what == "seg":
            reference = self.reference_combo.currentData()
            segments = self.segment_overrides() if self._segment_infos else []
            if hasattr(source, "IsA") and source.IsA("vtkMRMLSegmentationNode"):
                from ..export.segmentation import segments_from_node

                # masks copied here, in the GUI thread that owns the scene; the task gets numpy arrays
                source = segments_from_node(source)
            elif hasattr(source, "IsA") and source.IsA("vtkMRMLLabelMapVolumeNode"):
                source = labelmap_segments(source)  # voxels copied here too, names and colours from its table
            return lambda: logic.export_segmentation(source, study_uid, reference, segments=segments,
                                                     series_description=description, deidentify=deidentify,
                                                     **destinations)
        options = VolumeExportOptions(modality=modality, series_description=description,
                                      series_number=int(number) if number else None, overrides=overrides,
                                      enhanced=self.enhanced_box.isChecked() and modality in ("CT", "MR"))
        return lambda: logic.export_volume(source, study_uid, options, deidentify=deidentify, **destinations)

    def start_export(self) -> BackgroundTask | None:
        """Run the export on a thread with a busy progress dialog; the dialog closes when it succeeded."""
        from ..errors import DICOMBrowserError

        try:
            call = self.export_call()
        except (ValueError, KeyError, DICOMBrowserError) as error:
            self.status.setText(f"Cannot export: {error}")
            return None
        self.buttons.setEnabled(False)
        self.status.setText("Exporting…")
        self.progress = QtWidgets.QProgressDialog("Exporting…", None, 0, 0, self)
        self.progress.setObjectName("exportProgress")
        self.progress.setMinimumDuration(300)
        self.task = BackgroundTask("Export to DICOM", lambda task: call())
        self.task.succeeded.connect(self._succeeded)
        self.task.failed.connect(self._failed)
        return start_task(self.task)

    def _succeeded(self) -> None:
        self.progress.close()
        self.last_result = self.task.result
        result = self.last_result
        self.status.setText(f"Exported series {result.series_uid} ({len(result.datasets)} objects)"
                            + (f"; notes: {'; '.join(result.notes)}" if result.notes else ""))
        self.buttons.setEnabled(True)
        self.exportFinished.emit(True)
        self.accept()

    def _failed(self, message: str) -> None:
        self.progress.close()
        self.last_error = message
        self.status.setText(f"Export failed: {message}")
        self.buttons.setEnabled(True)
        self.exportFinished.emit(False)


def labelmap_segments(node: Any) -> Any:
    """A labelmap volume node as a SegmentationSource (its voxels copied): each non-zero value one
    segment, named and coloured by the colour table of the node's display node where the table
    has that value (Slicer's labelmaps carry one); else unnamed ("Segment N") and without colour."""
    from ..export.segmentation import segments_from_labelmap
    from ..export.volume import volume_from_node

    source = segments_from_labelmap(volume_from_node(node))
    display = node.GetDisplayNode()
    table = display.GetColorNode() if display is not None else None
    if table is None:
        return source
    for info in source.segments:
        label = int(info.label)
        if label >= table.GetNumberOfColors() or not table.GetColorDefined(label):
            continue
        info.name = table.GetColorName(label) or ""
        rgba = [0.0, 0.0, 0.0, 0.0]
        if table.GetColor(label, rgba):
            info.color = tuple(int(round(c * 255)) for c in rgba[:3])
    return source


def _parse_color(text: str) -> tuple[int, int, int] | None:
    """'R,G,B' (0-255) as a tuple; None for an empty cell; ValueError otherwise."""
    if not text.strip():
        return None
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise ValueError(f"colour {text!r} is not R,G,B with values 0-255")
    return values  # type: ignore[return-value]
