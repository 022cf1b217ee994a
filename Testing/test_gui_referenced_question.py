"""The browser's "ask" for referenced series, answered without blocking (pytest-qt, offscreen).

Story: dcmqi's liver SEG and the 3 CT slices it was drawn on are in the database; the setting is
"ask". The user loads the SEG in the browser: it loads at once (the load finishes while the
question is still open, so nothing waited for an answer), and a non-modal question offers the CT
series. "Load series" loads the CT too; with "Not now" it stays out of the scene.
"""
from __future__ import annotations

import os

import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("pytestqt")
QtWidgets = pytest.importorskip("PySide6.QtWidgets")

from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic, DICOMBrowserWidget  # noqa: E402

pytestmark = pytest.mark.timeout(180)

SEGMENTATIONS = "dcmqi_seg/data/segmentations"


@pytest.fixture
def logic(tmp_path, monkeypatch, corpus):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DICOMBROWSER_LOAD_REFERENCED", "ask")
    logic = DICOMBrowserLogic(tmp_path / "db")
    logic.import_paths([corpus / SEGMENTATIONS / "ct-3slice", corpus / SEGMENTATIONS / "liver.dcm"])
    yield logic
    logic.close()


@pytest.fixture
def panel(qtbot, logic):
    widget = DICOMBrowserWidget(logic)
    panel = widget.setup()
    qtbot.addWidget(panel)
    panel.show_message = lambda title, text, error=False: None
    panel.show()
    yield panel
    widget.cleanup()


def _seg_loadable(logic, corpus):
    import pydicom

    seg_uid = str(pydicom.dcmread(corpus / SEGMENTATIONS / "liver.dcm", stop_before_pixels=True).SeriesInstanceUID)
    (seg,) = [l for l in logic.examine_uids([seg_uid]) if l.selected]
    assert seg.plugin == "DICOMSegmentationPlugin" and seg.referencedSeriesUIDs
    return seg


def _volumes_of(logic, series_uid):
    nodes = logic.gui_scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())
            if nodes.GetItemAsObject(i).GetAttribute("DICOM.seriesInstanceUID") == series_uid]


def test_loading_a_seg_asks_without_blocking_and_loads_the_series_on_yes(qtbot, panel, logic, corpus):
    seg = _seg_loadable(logic, corpus)
    (ct_uid,) = seg.referencedSeriesUIDs
    with qtbot.waitSignal(panel.loadFinished, timeout=120_000) as finished:
        panel.start_load([seg])
    assert finished.args == [True]
    (question,) = panel.referenced_questions
    assert question.isVisible() and not question.isModal()  # still open: the SEG did not wait for it
    assert "refers to 1 image series (1 in the database)" in question.message.text()
    assert logic.gui_scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 1
    assert not _volumes_of(logic, ct_uid)

    with qtbot.waitSignal(panel.loadFinished, timeout=120_000):
        question.load_button.click()
    assert not question.isVisible()
    (ct,) = _volumes_of(logic, ct_uid)
    assert ct.GetImageData().GetDimensions()[2] == 3  # the 3 CT slices the SEG was drawn on


def test_not_now_leaves_the_series_out(qtbot, panel, logic, corpus):
    seg = _seg_loadable(logic, corpus)
    with qtbot.waitSignal(panel.loadFinished, timeout=120_000):
        panel.start_load([seg])
    (question,) = panel.referenced_questions
    question.skip_button.click()
    qtbot.wait(200)
    assert not panel.loading and not _volumes_of(logic, seg.referencedSeriesUIDs[0])
