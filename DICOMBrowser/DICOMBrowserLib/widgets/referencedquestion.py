"""The browser's question under the "ask" referenced-series setting, asked without blocking.

A SEG or RT structure set refers to the image series it was drawn on (DICOMBrowserLib.referenced).
With the setting "ask", the browser asks whether to load those series too. A modal box would stop
the load (and every other part of the window) until the user answers; instead the object loads
at once on its own, and a small non-modal dialog beside it offers its series that are in the
database. "Load series" examines and loads their default readings (after a load under way
finishes); "Not now" or closing the dialog leaves them. Answering later, or never, is fine.
"""
from __future__ import annotations

import logging
from typing import Any

from PySide6 import QtCore, QtWidgets

from .verdict import readable_name

logger = logging.getLogger(__name__)


class ReferencedSeriesQuestion(QtWidgets.QDialog):
    """Non-modal: "<object> refers to N image series (M in the database). Load them too?"."""

    answered = QtCore.Signal(bool)  # True: load the series

    def __init__(self, parent: QtWidgets.QWidget | None, object_name: str, series_uids: list[str], referenced: int):
        super().__init__(parent)
        self.series_uids = list(series_uids)
        self.setWindowTitle("Referenced series")
        self.setModal(False)
        self.setWindowModality(QtCore.Qt.WindowModality.NonModal)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose, False)  # the panel keeps the last one
        layout = QtWidgets.QVBoxLayout(self)
        self.message = QtWidgets.QLabel(
            f"{object_name} refers to {referenced} image series ({len(series_uids)} in the database).\n"
            "Load them too?")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        buttons = QtWidgets.QDialogButtonBox(self)
        self.load_button = buttons.addButton("Load series", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.skip_button = buttons.addButton("Not now", QtWidgets.QDialogButtonBox.ButtonRole.RejectRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.finished.connect(lambda result: self.answered.emit(result == QtWidgets.QDialog.DialogCode.Accepted))


def ask_without_blocking(panel: Any, loadable: Any, in_database: int) -> bool:
    """The browser's answer for one object under "ask": False now (the object loads on its own),
    with the question shown beside the window; "Load series" then loads the referenced series
    that are in the database. `panel` is the DICOMBrowserPanel (its logic, load_defaults, loading,
    loadFinished); the dialog is kept in `panel.referenced_questions`."""
    uids = [uid for uid in loadable.referencedSeriesUIDs if panel.logic.database.level_of(uid)]
    if not uids:
        return False
    question = ReferencedSeriesQuestion(panel, readable_name(loadable), uids, len(loadable.referencedSeriesUIDs))
    question.answered.connect(lambda load: _load_when_free(panel, uids) if load else
                              logger.info("%s: referenced series not loaded (answered Not now)", loadable.name))
    if not hasattr(panel, "referenced_questions"):
        panel.referenced_questions = []
    panel.referenced_questions.append(question)
    question.show()
    return False


def _load_when_free(panel: Any, uids: list[str]) -> None:
    """Load the series' defaults now, or when the load under way has finished (one load at a time)."""
    if not panel.loading:
        panel.load_defaults(uids)
        return

    def after(_complete: bool) -> None:
        panel.loadFinished.disconnect(after)
        _load_when_free(panel, uids)

    panel.loadFinished.connect(after)
