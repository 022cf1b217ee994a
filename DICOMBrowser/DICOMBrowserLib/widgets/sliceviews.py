"""Axial, sagittal, coronal and 3D views of a loaded volume node, in VTK inside Qt.

The volume keeps Slicer's convention (image origin 0, spacing 1, geometry in the node's
IJK-to-RAS matrix), so each view shows a `vtkImageActor` whose user matrix is IJK-to-RAS and
whose display extent is one slice of the IJK axis closest to the view's RAS axis. Cameras look
as in Slicer (radiological: patient right on screen left in axial and coronal views).
Window/level come from the node's display node (set from the DICOM by the loading plugin).

Only create these under a real display (X or Xvfb): `QVTKRenderWindowInteractor` cannot run on
Qt's offscreen platform (see GUI-TESTING.md); `views_supported()` says whether it can.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

logger = logging.getLogger(__name__)

#: view name -> (RAS axis shown as slice normal, direction of projection, view-up), RAS
VIEWS = {
    "Axial": (2, (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "Sagittal": (0, (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "Coronal": (1, (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
}
BACKGROUND = (0.0, 0.0, 0.0)


def views_supported() -> bool:
    """True when Qt runs on a platform that can host an OpenGL (VTK) widget."""
    app = QtGui.QGuiApplication.instance()
    return app is not None and QtGui.QGuiApplication.platformName() not in ("offscreen", "minimal", "")


def volume_of(node: Any, scene: Any = None) -> Any:
    """The scalar volume node to show for a loaded node (a sequence shows its proxy volume)."""
    if node is None:
        return None
    if node.IsA("vtkMRMLScalarVolumeNode"):
        return node
    if node.IsA("vtkMRMLSequenceNode") and scene is not None:
        from .. import scene as scene_module

        return scene_module.sequence_proxy(scene, node)
    return None


def ijk_to_ras_array(node: Any) -> np.ndarray:
    import vtkmodules.vtkCommonMath as vtk_math

    matrix = vtk_math.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_axis_for(ijk_to_ras: np.ndarray, ras_axis: int) -> int:
    """The IJK axis whose direction is closest to a RAS axis (oblique volumes show their nearest plane)."""
    directions = ijk_to_ras[:3, :3] / np.maximum(np.linalg.norm(ijk_to_ras[:3, :3], axis=0), 1e-12)
    return int(np.argmax(np.abs(directions[ras_axis, :])))


def display_image(node: Any) -> Any:
    """The node's image as one grey component: a DWI (one component per gradient) shows its first,
    usually the b=0 baseline; colour images keep their components."""
    image = node.GetImageData()
    components = image.GetNumberOfScalarComponents()
    if components in (1, 3, 4) and not node.IsA("vtkMRMLDiffusionWeightedVolumeNode"):
        return image
    import vtkmodules.vtkImagingCore as vtk_imaging

    extract = vtk_imaging.vtkImageExtractComponents()
    extract.SetInputData(image)
    extract.SetComponents(0)
    extract.Update()
    return extract.GetOutput()


def window_level_of(node: Any) -> tuple[float, float]:
    """(window, level) of the node's display node; the scalar range when it has none."""
    display = node.GetDisplayNode() if hasattr(node, "GetDisplayNode") else None
    if display is not None and hasattr(display, "GetWindow") and display.GetWindow() > 0:
        return float(display.GetWindow()), float(display.GetLevel())
    low, high = display_image(node).GetScalarRange()
    return max(high - low, 1.0), (high + low) / 2.0


class SliceView(QtWidgets.QWidget):
    """One VTK slice view with a slider; mouse wheel and slider scroll through slices."""

    sliceChanged = QtCore.Signal(int)

    def __init__(self, name: str, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
        import vtkmodules.vtkInteractionStyle as vtk_style
        import vtkmodules.vtkRenderingCore as vtk_rendering
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL back-end)

        self.name = name
        self.ras_axis, self.projection, self.view_up = VIEWS[name]
        self.vtk_widget = QVTKRenderWindowInteractor(self)
        self.renderer = vtk_rendering.vtkRenderer()
        self.renderer.SetBackground(*BACKGROUND)
        self.vtk_widget.GetRenderWindow().AddRenderer(self.renderer)
        style = vtk_style.vtkInteractorStyleImage()
        style.AddObserver("MouseWheelForwardEvent", lambda *_: self.step(1))
        style.AddObserver("MouseWheelBackwardEvent", lambda *_: self.step(-1))
        self.vtk_widget.SetInteractorStyle(style)
        self.actor = vtk_rendering.vtkImageActor()
        self.actor.VisibilityOff()
        self.renderer.AddViewProp(self.actor)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setObjectName(f"{name.lower()}Slider")
        self.slider.valueChanged.connect(self.set_slice)
        self.label = QtWidgets.QLabel(name)
        self.label.setStyleSheet({"Axial": "background:#c05050", "Sagittal": "background:#c0b040",
                                  "Coronal": "background:#50a050"}[name] + "; color: white; padding: 1px 4px")
        top = QtWidgets.QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.label)
        top.addWidget(self.slider, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.setSpacing(1)
        layout.addLayout(top)
        layout.addWidget(self.vtk_widget, 1)
        self.node = None
        self.ijk_axis = 2
        self.extent = (0, 0, 0, 0, 0, 0)

    def show_volume(self, node: Any) -> None:
        """Show a scalar volume node at its middle slice with the DICOM window/level."""
        import vtkmodules.vtkCommonMath as vtk_math

        self.node = node
        image = display_image(node)
        ijk_to_ras = ijk_to_ras_array(node)
        self.ijk_axis = ijk_axis_for(ijk_to_ras, self.ras_axis)
        self.extent = tuple(image.GetExtent())
        matrix = vtk_math.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        self.actor.GetMapper().SetInputData(image)
        self.actor.SetUserMatrix(matrix)
        window, level = window_level_of(node)
        self.actor.GetProperty().SetColorWindow(window)
        self.actor.GetProperty().SetColorLevel(level)
        self.actor.GetProperty().SetInterpolationTypeToLinear()
        self.actor.VisibilityOn()
        low, high = self.extent[2 * self.ijk_axis], self.extent[2 * self.ijk_axis + 1]
        self.slider.blockSignals(True)
        self.slider.setRange(low, high)
        self.slider.setValue((low + high) // 2)
        self.slider.blockSignals(False)
        self._apply_slice((low + high) // 2)
        self.reset_camera()

    def reset_camera(self) -> None:
        camera = self.renderer.GetActiveCamera()
        camera.ParallelProjectionOn()
        bounds = self.actor.GetBounds()
        center = [(bounds[2 * a] + bounds[2 * a + 1]) / 2 for a in range(3)]
        camera.SetFocalPoint(*center)
        camera.SetPosition(*(c - 500.0 * p for c, p in zip(center, self.projection)))
        camera.SetViewUp(*self.view_up)
        self.renderer.ResetCamera()
        # fit the slice tightly: half the largest in-plane extent
        in_plane = [bounds[2 * a + 1] - bounds[2 * a] for a in range(3) if a != self.ras_axis]
        camera.SetParallelScale(max(max(in_plane) / 2.0, 1.0) * 1.05)
        self.render()

    def step(self, delta: int) -> None:
        self.slider.setValue(self.slider.value() + delta)

    def set_slice(self, index: int) -> None:
        if self.node is None:
            return
        self._apply_slice(index)
        self.render()
        self.sliceChanged.emit(index)

    def _apply_slice(self, index: int) -> None:
        extent = list(self.extent)
        extent[2 * self.ijk_axis] = extent[2 * self.ijk_axis + 1] = int(index)
        self.actor.SetDisplayExtent(*extent)
        self.label.setText(f"{self.name} {index + 1}/{self.extent[2 * self.ijk_axis + 1] + 1}")

    def current_slice(self) -> int:
        return int(self.slider.value())

    def render(self) -> None:
        self.vtk_widget.GetRenderWindow().Render()

    def close_vtk(self) -> None:
        """Release the OpenGL context before Qt destroys the window (avoids X errors at exit)."""
        self.vtk_widget.Finalize()


class ThreeDView(QtWidgets.QWidget):
    """The three orthogonal slices in 3D, with an outline of the volume."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
        import vtkmodules.vtkInteractionStyle as vtk_style
        import vtkmodules.vtkRenderingCore as vtk_rendering
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401

        self.vtk_widget = QVTKRenderWindowInteractor(self)
        self.renderer = vtk_rendering.vtkRenderer()
        self.renderer.SetBackground(0.1, 0.1, 0.25)
        self.renderer.SetBackground2(0.45, 0.45, 0.6)
        self.renderer.GradientBackgroundOn()
        self.vtk_widget.GetRenderWindow().AddRenderer(self.renderer)
        self.vtk_widget.SetInteractorStyle(vtk_style.vtkInteractorStyleTrackballCamera())
        self.actors = [vtk_rendering.vtkImageActor() for _ in range(3)]
        for actor in self.actors:
            actor.VisibilityOff()
            self.renderer.AddViewProp(actor)
        self.outline_actor = vtk_rendering.vtkActor()
        self.outline_actor.VisibilityOff()
        self.renderer.AddActor(self.outline_actor)
        label = QtWidgets.QLabel("3D")
        label.setStyleSheet("background:#5060c0; color: white; padding: 1px 4px")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.setSpacing(1)
        layout.addWidget(label)
        layout.addWidget(self.vtk_widget, 1)
        self.node = None

    def show_volume(self, node: Any, slices: dict[int, int] | None = None) -> None:
        """Show the slices (IJK axis -> index; middle by default) and the outline, camera from front-left."""
        import vtkmodules.vtkCommonMath as vtk_math
        import vtkmodules.vtkFiltersModeling as vtk_modeling
        import vtkmodules.vtkRenderingCore as vtk_rendering

        self.node = node
        image = display_image(node)
        matrix = vtk_math.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        window, level = window_level_of(node)
        extent = image.GetExtent()
        for axis, actor in enumerate(self.actors):
            actor.GetMapper().SetInputData(image)
            actor.SetUserMatrix(matrix)
            actor.GetProperty().SetColorWindow(window)
            actor.GetProperty().SetColorLevel(level)
            actor.VisibilityOn()
        self.set_slices(slices or {a: (extent[2 * a] + extent[2 * a + 1]) // 2 for a in range(3)})
        outline = vtk_modeling.vtkOutlineFilter()
        outline.SetInputData(image)
        mapper = vtk_rendering.vtkPolyDataMapper()
        mapper.SetInputConnection(outline.GetOutputPort())
        self.outline_actor.SetMapper(mapper)
        self.outline_actor.SetUserMatrix(matrix)
        self.outline_actor.GetProperty().SetColor(1.0, 1.0, 0.6)
        self.outline_actor.VisibilityOn()
        camera = self.renderer.GetActiveCamera()
        camera.SetFocalPoint(0, 0, 0)
        camera.SetPosition(-1.0, 2.0, 0.8)  # anterior, a little right and above (RAS)
        camera.SetViewUp(0, 0, 1)
        self.renderer.ResetCamera()
        self.render()

    def set_slices(self, slices: dict[int, int]) -> None:
        if self.node is None:
            return
        extent = self.node.GetImageData().GetExtent()
        for axis, index in slices.items():
            shown = list(extent)
            shown[2 * axis] = shown[2 * axis + 1] = int(index)
            self.actors[axis].SetDisplayExtent(*shown)

    def render(self) -> None:
        self.vtk_widget.GetRenderWindow().Render()

    def close_vtk(self) -> None:
        self.vtk_widget.Finalize()


class ViewArea(QtWidgets.QWidget):
    """2x2 layout: axial, 3D / coronal, sagittal (Slicer's four-up), kept in sync."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.slice_views = {name: SliceView(name) for name in VIEWS}
        self.three_d = ThreeDView()
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        grid.addWidget(self.slice_views["Axial"], 0, 0)
        grid.addWidget(self.three_d, 0, 1)
        grid.addWidget(self.slice_views["Coronal"], 1, 0)
        grid.addWidget(self.slice_views["Sagittal"], 1, 1)
        for view in self.slice_views.values():
            view.sliceChanged.connect(self._sync_3d)
        self.node = None

    def show_volume(self, node: Any) -> None:
        self.node = node
        for view in self.slice_views.values():
            view.show_volume(node)
        self.three_d.show_volume(node, self._slices())

    def _slices(self) -> dict[int, int]:
        return {view.ijk_axis: view.current_slice() for view in self.slice_views.values()}

    def _sync_3d(self, *_: Any) -> None:
        if self.node is not None:
            self.three_d.set_slices(self._slices())
            self.three_d.render()

    def render(self) -> None:
        for view in self.slice_views.values():
            view.render()
        self.three_d.render()

    def close_vtk(self) -> None:
        for view in self.slice_views.values():
            view.close_vtk()
        self.three_d.close_vtk()
