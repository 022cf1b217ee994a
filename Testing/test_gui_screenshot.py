"""The host window with VTK slice views, under a real X display (run under xvfb-run, Mesa).

A real CT from the corpus is imported and loaded; the screenshot of the whole window is saved
(copied to $DICOMBROWSER_ARTIFACTS when set) and checked to be non-trivial: each slice view
shows an image with contrast, not a black or uniform pane. Pixels differ between Mesa drivers,
so only statistics with generous tolerances are compared, never hashes.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.x11, pytest.mark.slow, pytest.mark.timeout(300)]

CT_HEAD = "slicer_ct_head/Testing/Data/Input/CTHeadAxialDicom"
CT_SERIES = "1.2.826.0.1.3680043.2.1125.1.65375240934815452318141136507497058"


def needs_x_display():
    if not os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM", "xcb") != "xcb":
        pytest.skip("needs an X display without QT_QPA_PLATFORM override (run under xvfb-run)")


def keep_artifact(path: Path) -> None:
    folder = os.environ.get("DICOMBROWSER_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


def pane_statistics(image, rect) -> tuple[float, int]:
    """(standard deviation of grey values, number of distinct grey levels) in a rectangle."""
    import numpy as np

    x, y, w, h = rect
    pane = np.asarray(image.convert("L"))[y + 4:y + h - 4, x + 4:x + w - 4]
    return float(pane.std()), int(len(np.unique(pane)))


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    """The remembered layout goes to a temporary folder, also for the CLI in a subprocess."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def test_window_with_loaded_ct_renders_every_view(qtbot, tmp_path, corpus):
    needs_x_display()
    from PIL import Image
    from PySide6 import QtCore

    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic
    from DICOMBrowser.DICOMBrowserLib.widgets.mainwindow import DICOMBrowserMainWindow

    logic = DICOMBrowserLogic(tmp_path / "db")
    logic.import_paths([corpus / CT_HEAD])
    window = DICOMBrowserMainWindow(logic)
    qtbot.addWidget(window)
    assert window.views is not None, "VTK views were not created although a display is there"
    window.resize(1280, 1000)
    window.show()
    qtbot.waitExposed(window)
    nodes = window.browser.load_uid(CT_SERIES)
    assert len(nodes) == 1 and window.data_list.count() == 1
    axial = window.views.slice_views["Axial"]
    assert axial.slider.maximum() == 92 and axial.current_slice() == 46

    # scrolling moves through slices and keeps the 3D view in step
    axial.step(5)
    assert axial.current_slice() == 51
    qtbot.wait(300)
    path = window.save_screenshot(tmp_path / "dicombrowser-window.png")
    keep_artifact(path)

    image = Image.open(path)
    assert image.size[0] >= 1000 and image.size[1] >= 800
    for name, view in [*window.views.slice_views.items(), ("3D", window.views.three_d)]:
        widget = view.vtk_widget
        top_left = widget.mapTo(window, QtCore.QPoint(0, 0))
        ratio = image.size[0] / window.width()
        rect = (int(top_left.x() * ratio), int(top_left.y() * ratio),
                int(widget.width() * ratio), int(widget.height() * ratio))
        std, levels = pane_statistics(image, rect)
        assert std > 15 and levels > 30, f"{name} view looks blank: std {std:.1f}, {levels} grey levels in {rect}"
    window.close()
    logic.close()


def test_cli_screenshot_mode(tmp_path, corpus):
    """`dicombrowser gui --load UID --screenshot FILE` exits by itself and writes a real picture."""
    needs_x_display()
    from PIL import Image

    database = tmp_path / "db"
    command = [sys.executable, "-m", "DICOMBrowser", "--database", str(database)]
    subprocess.run([*command, "import", str(corpus / CT_HEAD)], check=True, timeout=120,
                   capture_output=True)
    shot = tmp_path / "cli-window.png"
    result = subprocess.run([*command, "gui", "--load", CT_SERIES, "--screenshot", str(shot)],
                            timeout=180, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Loaded 1 node" in result.stderr
    keep_artifact(shot)
    image = Image.open(shot)
    assert image.size == (1280, 1000)
    # the right-hand view area holds the slices: plenty of grey levels, not a blank pane
    std, levels = pane_statistics(image, (image.size[0] // 2, 40, image.size[0] // 2 - 10, image.size[1] // 2))
    assert std > 15 and levels > 30


def grab(window, path: Path) -> Path:
    """The window as the screen shows it (VTK panes included), saved and kept as an artifact."""
    from PySide6 import QtGui, QtWidgets

    QtWidgets.QApplication.processEvents()
    screen = window.screen() or QtGui.QGuiApplication.primaryScreen()
    pixmap = screen.grabWindow(window.winId())
    assert pixmap.save(str(path), "PNG")
    keep_artifact(path)
    return path


@pytest.mark.parametrize("size", [(1280, 800), (1024, 700)])
def test_main_screens_at_laptop_sizes(qtbot, tmp_path, corpus, size):
    """The screens of docs/: the browser with a CT loaded (views filled, tables without horizontal
    scrolling) at 1280x800 and 1024x700, and the tag viewer; named screenshot-<what>-<size>.png."""
    needs_x_display()
    from PIL import Image

    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic
    from DICOMBrowser.DICOMBrowserLib.widgets.mainwindow import DICOMBrowserMainWindow

    logic = DICOMBrowserLogic(tmp_path / "db")
    logic.import_paths([corpus / CT_HEAD, corpus / "dicom2nifti/tests/data/failing", corpus / "dcmqi_seg",
                        corpus / "philips_dwi/In/cl"])
    window = DICOMBrowserMainWindow(logic)
    qtbot.addWidget(window)
    window.resize_for_screenshot(*size)
    window.show()
    qtbot.waitExposed(window)
    panel = window.browser
    panel.show_message = lambda *args, **kwargs: None
    panel.reveal_study_of(CT_SERIES)
    with qtbot.waitSignal(panel.nodesLoaded, timeout=120_000):
        panel.load_defaults([CT_SERIES])
    qtbot.waitUntil(lambda: CT_SERIES in panel.series_model.verdicts, timeout=60_000)
    qtbot.waitUntil(lambda: bool(panel.loadable_model.loadables), timeout=60_000)
    panel.jobs.wait(30_000)
    qtbot.wait(300)
    if window.views is not None:
        window.views.render()
    label = f"{size[0]}x{size[1]}"
    shot = grab(window, tmp_path / f"screenshot-{label}.png")
    image = Image.open(shot)
    assert image.size == size, image.size
    for table in panel.tables:
        assert not table.horizontalScrollBar().isVisible(), table.objectName()
        assert table.viewport().height() >= 2 * 21, f"{table.objectName()} shows fewer than two rows"

    dialog = panel.show_metadata("1.3.46.670589.11.45190.5.0.6424.2021100515345467861")  # the Philips DWI
    dialog.resize(min(900, size[0] - 100), min(600, size[1] - 100))
    with qtbot.waitSignal(dialog.loaded, timeout=30_000):
        dialog.instance.setValue(2)
    dialog.search.setText("diffusion")  # private elements and sequences, matches shown with their parents
    qtbot.wait(200)
    grab(dialog, tmp_path / f"screenshot-metadata-{label}.png")
    dialog.close()
    window.close()
    logic.close()
