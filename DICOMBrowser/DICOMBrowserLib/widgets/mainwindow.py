"""The standalone host: the browser as a module panel, four views, and a data panel.

`dicombrowser gui` opens this window. Under a real display (X, Xvfb) the view area holds VTK
views; on Qt's offscreen platform (headless tests) it holds a placeholder, because VTK cannot
render inside Qt there, and everything else works the same. The window's size, dock layout and
the browser's columns are remembered between runs (widgets/state.py); folders and files dropped
anywhere on the window are imported.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from .browser import DICOMBrowserPanel
from .sliceviews import views_supported, volume_of
from .state import gui_settings

logger = logging.getLogger(__name__)


def describe_volume(node: Any) -> str:
    """'name  (512x512x93, 0.49x0.49x1.25 mm)' for the data panel."""
    try:
        dims = node.GetImageData().GetDimensions()
        spacing = node.GetSpacing()
        return (f"{node.GetName()}  ({'x'.join(str(d) for d in dims)}, "
                f"{'x'.join(f'{s:.3g}' for s in spacing)} mm)")
    except AttributeError:
        return str(node.GetName()) if hasattr(node, "GetName") else str(node)


class DICOMBrowserMainWindow(QtWidgets.QMainWindow):
    """Module panel (left), views (centre), loaded data (right); Help > Run self-test."""

    selfTestFinished = QtCore.Signal(bool)  # True when every self-test passed

    def __init__(self, logic: Any, with_views: bool | None = None, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("DICOMBrowserMainWindow")
        self.setWindowTitle("DICOM Browser")
        self.logic = logic
        self.browser = DICOMBrowserPanel(logic)
        self.browser.nodesLoaded.connect(self.show_nodes)
        self.browser.statusChanged.connect(lambda text: self.statusBar().showMessage(text))
        self.setAcceptDrops(True)
        module_dock = QtWidgets.QDockWidget("DICOM", self)
        module_dock.setObjectName("moduleDock")
        module_dock.setWidget(self.browser)
        module_dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, module_dock)
        self.module_dock = module_dock
        # the browser keeps the full height; the data panel sits under the views only
        self.setCorner(QtCore.Qt.Corner.BottomLeftCorner, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)

        self.with_views = views_supported() if with_views is None else with_views
        if self.with_views:
            from .sliceviews import ViewArea

            self.views: Any = ViewArea()
            self.setCentralWidget(self.views)
        else:
            self.views = None
            placeholder = QtWidgets.QLabel("Slice views need a display (run under X or xvfb-run);\n"
                                           "on Qt's offscreen platform VTK cannot render inside Qt.")
            placeholder.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
            self.setCentralWidget(placeholder)

        self.data_list = QtWidgets.QListWidget()
        self.data_list.setObjectName("dataList")
        self.data_list.currentRowChanged.connect(self._data_selected)
        self.data_list.setMinimumHeight(0)
        data_dock = QtWidgets.QDockWidget("Data", self)
        data_dock.setObjectName("dataDock")
        data_dock.setWidget(self.data_list)
        # closable (View > Data panel brings it back): the views get the height
        data_dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, data_dock)
        self.data_dock = data_dock
        self.nodes: list[Any] = []
        self._build_menus()
        self.statusBar().showMessage(f"Database: {logic.database.folder}")
        self.setMinimumSize(800, 520)
        self.resize(1280, 1000)
        self._place_docks()
        self.restore_window_state()

    def _place_docks(self) -> None:
        """The browser takes about half the width (its tables must show their key columns), the
        data panel a few lines."""
        width = max(560, int(self.width() * 0.48))
        self.resizeDocks([self.module_dock], [width], QtCore.Qt.Orientation.Horizontal)
        self.resizeDocks([self.data_dock], [80], QtCore.Qt.Orientation.Vertical)

    def resize_for_screenshot(self, width: int, height: int) -> None:
        """Resize and lay the docks out again as for a first start at that size."""
        self.resize(width, height)
        self._place_docks()

    def restore_window_state(self) -> None:
        settings = gui_settings()
        geometry = settings.value("window/geometry")
        state = settings.value("window/state")
        if isinstance(geometry, QtCore.QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        if isinstance(state, QtCore.QByteArray) and not state.isEmpty():
            self.restoreState(state)

    def save_window_state(self) -> None:
        if getattr(self, "_forget_layout", False):
            return
        settings = gui_settings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState())
        settings.sync()

    # drops anywhere on the window import, as on the browser panel
    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        self.browser.dragEnterEvent(event)

    def dragMoveEvent(self, event: QtGui.QDragMoveEvent) -> None:
        self.browser.dragMoveEvent(event)

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        self.browser.dropEvent(event)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction("&Import DICOM files…", lambda: self.browser.import_folder(), QtGui.QKeySequence("Ctrl+I"))
        file_menu.addAction("&Open database…", lambda: self.browser.switch_database(None))
        file_menu.addAction("Save &screenshot…", self._ask_screenshot)
        file_menu.addSeparator()
        file_menu.addAction("&Quit", self.close, QtGui.QKeySequence.StandardKey.Quit)
        view_menu = self.menuBar().addMenu("&View")
        self.data_action = self.data_dock.toggleViewAction()
        self.data_action.setText("&Data panel")
        view_menu.addAction(self.data_action)
        view_menu.addAction(self.browser.thumbnails_action)
        view_menu.addAction("DICOM &metadata of the selection…", self.browser.show_metadata_of_selection)
        view_menu.addSeparator()
        view_menu.addAction("&Reset layout", self.reset_layout)
        help_menu = self.menuBar().addMenu("&Help")
        self.self_test_action = help_menu.addAction("Run &self-test", self.run_self_test)
        help_menu.addAction("&About", self._about)

    # --- data ------------------------------------------------------------------------------------
    def show_nodes(self, nodes: list) -> None:
        """List loaded nodes and show the first volume in the views."""
        scene = getattr(self.logic, "gui_scene", None)
        for node in nodes:
            self.nodes.append(node)
            self.data_list.addItem(describe_volume(volume_of(node, scene) or node))
        volume = next((volume_of(node, scene) for node in nodes if volume_of(node, scene) is not None), None)
        if volume is not None:
            self.show_volume(volume)
            self.data_list.blockSignals(True)
            self.data_list.setCurrentRow(len(self.nodes) - len(nodes))
            self.data_list.blockSignals(False)

    def show_volume(self, node: Any) -> None:
        self.statusBar().showMessage(f"Showing {describe_volume(node)}")
        if self.views is not None:
            self.views.show_volume(node)

    def _data_selected(self, row: int) -> None:
        if 0 <= row < len(self.nodes):
            volume = volume_of(self.nodes[row], getattr(self.logic, "gui_scene", None))
            if volume is not None:
                self.show_volume(volume)

    # --- help -------------------------------------------------------------------------------------
    def run_self_test(self) -> Any:
        """Run DICOMBrowserTest (import sample data, load, check geometry) on a thread; the results
        are shown when it ends (`selfTestFinished`, `self_test_results`)."""
        from DICOMBrowser.DICOMBrowser import DICOMBrowserTest

        from .workers import BackgroundTask, start_task, when_done

        self.self_test_action.setEnabled(False)
        self.statusBar().showMessage("Running the self-test…")
        task = BackgroundTask("Self-test", lambda _task: DICOMBrowserTest().runTest())
        when_done(task, self, lambda done: self._self_test_done(done.result or []),
                  lambda done, message: self._self_test_done([("runTest", False, message)]))
        self._self_test_task = task
        return start_task(task)

    def _self_test_done(self, results: list[tuple[str, bool, str]]) -> None:
        self.self_test_action.setEnabled(True)
        self.self_test_results = results
        passed = sum(1 for _, ok, _ in results if ok)
        text = "\n".join(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + message if message else ''}"
                         for name, ok, message in results)
        for name, ok, message in results:
            if not ok:
                logger.error("Self-test %s failed: %s", name, message)
        title = f"Self-test: {passed} of {len(results)} passed"
        self.show_report(title, text, error=passed < len(results))
        self.statusBar().showMessage(title)
        self.selfTestFinished.emit(passed == len(results))

    def show_report(self, title: str, text: str, error: bool = False) -> None:
        """A result the user asked for, in a box (tests replace this method)."""
        box = QtWidgets.QMessageBox.warning if error else QtWidgets.QMessageBox.information
        box(self, title, text)

    def _about(self) -> None:
        from DICOMBrowser.DICOMBrowser import DICOMBrowser

        QtWidgets.QMessageBox.about(self, DICOMBrowser.title, f"{DICOMBrowser.helpText}\n\n{DICOMBrowser.acknowledgementText}")

    # --- screenshot ---------------------------------------------------------------------------------
    def _ask_screenshot(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save screenshot", "screenshot.png", "PNG (*.png)")
        if path:
            self.save_screenshot(path)

    def save_screenshot(self, path: str | Path) -> Path:
        """The whole window as PNG. With VTK views the screen is grabbed (widget.grab() misses GL content)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        QtWidgets.QApplication.processEvents()
        if self.views is not None:
            self.views.render()
            QtWidgets.QApplication.processEvents()
            screen = self.screen() or QtGui.QGuiApplication.primaryScreen()
            pixmap = screen.grabWindow(self.winId())
        else:
            pixmap = self.grab()
        if pixmap.isNull() or not pixmap.save(str(path), "PNG"):
            from ..errors import DICOMBrowserError

            raise DICOMBrowserError(f"{path}: could not save the screenshot")
        logger.info("Screenshot saved to %s (%dx%d)", path, pixmap.width(), pixmap.height())
        return path

    def reset_layout(self) -> None:
        """Forget the remembered window and column layout; the default one is used from the next start."""
        settings = gui_settings()
        for group in ("window", "browser"):
            settings.remove(group)
        settings.sync()
        self._forget_layout = True
        self.browser.forget_layout = True
        self.data_dock.show()
        self.browser.thumbnails_action.setChecked(True)
        self._place_docks()
        self.statusBar().showMessage("The default layout is used from the next start")

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.save_window_state()
        self.browser.shutdown()
        if self.views is not None:
            self.views.close_vtk()
        super().closeEvent(event)
