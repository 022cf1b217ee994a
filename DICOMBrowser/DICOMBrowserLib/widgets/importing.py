"""Import from the browser: the thread that runs the indexer, the dialog, and the sentence a user reads.

The indexer takes files and folders (DICOMDIRs are followed by the indexer itself); a zip file
is unpacked here into a temporary folder whose files are then copied into the database, since
the temporary folder is gone after the import. The counts of patients/studies/series before and
after are taken in the thread too, so the summary says what was added in the words of the
tables ("2 patients, 3 studies, 5 series added"), and the browser can select the new data.
"""
from __future__ import annotations

import logging
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtWidgets

from ..errors import DICOMBrowserError

logger = logging.getLogger(__name__)

SUMMED = ("seen", "indexed", "updated", "unchanged", "duplicates", "relinked", "skipped", "elapsed")


def _merge(total: Any, part: Any) -> Any:
    if total is None:
        return part
    for name in SUMMED:
        setattr(total, name, getattr(total, name, 0) + getattr(part, name, 0))
    total.errors = list(total.errors) + list(part.errors)
    total.cancelled = bool(total.cancelled or part.cancelled)
    return total


class ImportThread(QtCore.QThread):
    """Runs logic.import_paths off the GUI thread; cancelling is the progress callback's return value.

    After `done`, `added` holds the increase of the database's counts (patients, studies,
    series, instances), `new_series` the series UIDs that were not there before, and
    `patient_rows` the patients query for the browser's table (run here, not in the GUI thread).
    """

    progressed = QtCore.Signal(int, int, str)  # done, total (-1 unknown), current path
    done = QtCore.Signal(object)  # ImportSummary
    failed = QtCore.Signal(str)

    def __init__(self, logic: Any, paths: list[str], copy: bool, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.logic = logic
        self.paths = [str(p) for p in paths]
        self.copy = copy
        self.cancel_requested = False
        self.added: dict[str, int] = {}
        self.new_series: list[str] = []
        self.patient_rows: list[dict] | None = None

    def _progress(self, done: int, total: int | None, current: str = "") -> bool:
        self.progressed.emit(int(done), -1 if total is None else int(total), str(current))
        return self.cancel_requested

    def _series_uids(self) -> set[str]:
        return {str(row["SeriesInstanceUID"]) for row in self.logic.database.series()}

    def run(self) -> None:
        try:
            database = self.logic.database
            before, series_before = database.counts(), self._series_uids()
            plain = [p for p in self.paths if not p.lower().endswith(".zip")]
            zips = [p for p in self.paths if p.lower().endswith(".zip")]
            summary = None
            if plain:
                summary = _merge(summary, self.logic.import_paths(plain, copy=self.copy, progress=self._progress))
            for archive in zips:
                if self.cancel_requested:
                    break
                with tempfile.TemporaryDirectory(prefix="dicombrowser-zip-") as folder:
                    with zipfile.ZipFile(archive) as opened:
                        opened.extractall(folder)
                    # the unpacked files vanish with the folder: the database keeps copies
                    summary = _merge(summary, self.logic.import_paths([folder], copy=True, progress=self._progress))
            after = database.counts()
            self.added = {name: int(after[name]) - int(before.get(name, 0)) for name in after}
            self.new_series = sorted(self._series_uids() - series_before)
            self.patient_rows = database.patients()  # the browser's longest query, done here
        except (DICOMBrowserError, OSError, zipfile.BadZipFile) as error:
            logger.error("Import of %s failed: %s", ", ".join(self.paths), error)
            self.failed.emit(str(error))
            return
        self.done.emit(summary)


_PLURALS = {"study": "studies", "series": "series"}


def _plural(count: int, word: str) -> str:
    return f"{count} {word if count == 1 else _PLURALS.get(word, word + 's')}"


def summary_text(summary: Any, added: dict[str, int] | None = None) -> str:
    """The ImportSummary as the sentence a user reads after an import.

    'Added 1 patient, 1 study, 1 series (93 files). 8 files were already in the database. 2 files
    are not DICOM.' With `added` (count increases) the first part speaks of patients/studies/series.
    """
    if summary is None:
        return "nothing imported"
    parts = []
    indexed = int(getattr(summary, "indexed", 0) or 0)
    if added and any(added.get(k, 0) > 0 for k in ("patients", "studies", "series")):
        what = [_plural(added[k], word) for k, word in (("patients", "patient"), ("studies", "study"),
                                                          ("series", "series")) if added.get(k, 0) > 0]
        parts.append(f"Added {', '.join(what)} ({_plural(indexed, 'file')}).")
    elif indexed:
        parts.append(f"Added {_plural(indexed, 'file')} to existing series.")
    else:
        parts.append("Nothing new added.")
    known = sum(int(getattr(summary, name, 0) or 0) for name in ("unchanged", "duplicates"))
    if known:
        parts.append(f"{_plural(known, 'file')} already in the database.")
    updated = int(getattr(summary, "updated", 0) or 0) + int(getattr(summary, "relinked", 0) or 0)
    if updated:
        parts.append(f"{_plural(updated, 'file')} updated.")
    skipped = int(getattr(summary, "skipped", 0) or 0)
    if skipped:
        parts.append(f"{_plural(skipped, 'file')} not DICOM (skipped).")
    errors = list(getattr(summary, "errors", []) or [])
    if errors:
        parts.append(f"{_plural(len(errors), 'file')} could not be read (see the error log).")
    text = " ".join(parts)
    if getattr(summary, "cancelled", False):
        text = "Cancelled. " + text
    return text


class ImportDialog(QtWidgets.QDialog):
    """Folders, files, zip archives or DICOMDIRs to import, plus the 'copy into database' option."""

    def __init__(self, parent: QtWidgets.QWidget | None = None, last_folder: str = ""):
        super().__init__(parent)
        self.setObjectName("importDialog")
        self.setWindowTitle("Import DICOM files")
        self.last_folder = last_folder
        self.path_list = QtWidgets.QListWidget()
        self.path_list.setObjectName("importPaths")
        add_folder = QtWidgets.QPushButton("Add folder…")
        add_folder.clicked.connect(self._add_folder)
        add_files = QtWidgets.QPushButton("Add files…")
        add_files.setToolTip("DICOM files, zip archives or a DICOMDIR")
        add_files.clicked.connect(self._add_files)
        remove = QtWidgets.QPushButton("Remove")
        remove.clicked.connect(lambda: self.path_list.takeItem(self.path_list.currentRow()))
        self.copy_box = QtWidgets.QCheckBox("Copy files into the database folder (for CDs, USB sticks, downloads)")
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok).setText("Import")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        row = QtWidgets.QHBoxLayout()
        for button in (add_folder, add_files, remove):
            row.addWidget(button)
        row.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(QtWidgets.QLabel("Folders are searched recursively; a DICOMDIR imports the files it lists; "
                                          "zip archives are unpacked. You can also drop them on the window."))
        layout.addWidget(self.path_list, 1)
        layout.addLayout(row)
        layout.addWidget(self.copy_box)
        layout.addWidget(buttons)
        self.resize(560, 300)

    def add_paths(self, paths: list[str]) -> None:
        for path in paths:
            if path and not self.path_list.findItems(path, QtCore.Qt.MatchFlag.MatchExactly):
                self.path_list.addItem(path)
                self.last_folder = str(Path(path).parent if Path(path).is_file() else path)

    def _add_folder(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder to import", self.last_folder)
        if folder:
            self.add_paths([folder])

    def _add_files(self) -> None:
        files, _ = QtWidgets.QFileDialog.getOpenFileNames(
            self, "Files to import", self.last_folder, "DICOM, zip, DICOMDIR (*);;Zip archives (*.zip)")
        self.add_paths(files)

    def paths(self) -> list[str]:
        return [self.path_list.item(row).text() for row in range(self.path_list.count())]

    def copy(self) -> bool:
        return self.copy_box.isChecked()
