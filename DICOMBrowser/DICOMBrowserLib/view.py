"""A standalone VTK viewer: axial, sagittal and coronal slices through a volume node's centre.

Slices are resampled in patient space (RAS) with vtkImageReslice from the node's IJK-to-RAS
matrix, so an oblique or flipped acquisition shows the way Slicer's slice views show it:
radiological convention (patient right on the screen's left in axial and coronal views),
anterior up in axial, superior up in sagittal and coronal, anterior to the screen's right in
sagittal. `show` opens an interactive window; `screenshot` renders the same off-screen to a PNG
(EGL or OSMesa when there is no display; no Qt involved).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LoadError

logger = logging.getLogger(__name__)

#: view name -> (screen x direction, screen y direction) in RAS
VIEW_AXES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "axial": ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "coronal": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
}
VIEW_ORDER = ("axial", "sagittal", "coronal")


def _volume_node(node: Any) -> Any:
    """The volume to show: the node itself, or the proxy / first volume of a sequence."""
    if node.IsA("vtkMRMLSequenceNode"):
        from .scene import sequence_proxy

        proxy = sequence_proxy(node.GetScene(), node) if node.GetScene() is not None else None
        return proxy if proxy is not None else node.GetNthDataNode(0)
    return node


def _window_level(node: Any, scalars: np.ndarray) -> tuple[float, float]:
    display = node.GetDisplayNode() if hasattr(node, "GetDisplayNode") else None
    if display is not None and display.GetWindow() > 0 and not display.GetAutoWindowLevel():
        return display.GetWindow(), display.GetLevel()
    if scalars.size == 0:
        return 1.0, 0.0
    low, high = np.percentile(scalars[:: max(1, scalars.size // 200_000)], [1, 99])
    return max(float(high - low), 1.0), float(low + high) / 2


def _corners_ras(ijk_to_ras: np.ndarray, dims: tuple[int, int, int]) -> np.ndarray:
    ijk = np.array([[i, j, k, 1.0] for i in (0, dims[0] - 1) for j in (0, dims[1] - 1) for k in (0, dims[2] - 1)])
    return (ijk_to_ras @ ijk.T).T[:, :3]


def reslice(node: Any, view: str, center_ras: np.ndarray | None = None, spacing: float | None = None) -> Any:
    """A 2D vtkImageData: the plane of `view` through `center_ras` (default: the volume centre), RAS mm."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    from vtkmodules.vtkImagingCore import vtkImageReslice

    from .scene import ijk_to_ras_of

    node = _volume_node(node)
    image = node.GetImageData()
    if image is None:
        raise LoadError(f"volume {node.GetName()} has no image data to show")
    ijk_to_ras = ijk_to_ras_of(node)
    dims = image.GetDimensions()
    corners = _corners_ras(ijk_to_ras, dims)
    center = corners.mean(axis=0) if center_ras is None else np.asarray(center_ras, dtype=float)
    x_axis, y_axis = (np.array(a) for a in VIEW_AXES[view])
    normal = np.cross(x_axis, y_axis)
    voxel_sizes = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    step = float(spacing or voxel_sizes.min())
    # output plane: (x, y) in mm along the screen axes, covering the volume's projected extent
    xs, ys = (corners - center) @ x_axis, (corners - center) @ y_axis
    nx, ny = int(np.ceil((xs.max() - xs.min()) / step)) + 1, int(np.ceil((ys.max() - ys.min()) / step)) + 1
    plane_to_ras = np.eye(4)
    plane_to_ras[:3, 0], plane_to_ras[:3, 1], plane_to_ras[:3, 2] = x_axis, y_axis, normal
    plane_to_ras[:3, 3] = center + xs.min() * x_axis + ys.min() * y_axis
    plane_to_ijk = np.linalg.inv(ijk_to_ras) @ plane_to_ras
    axes = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            axes.SetElement(r, c, float(plane_to_ijk[r, c]))
    # the plane matrix contains the mm step: output voxel (u, v) -> plane (u*step, v*step)
    filt = vtkImageReslice()
    filt.SetInputData(_first_component(image))
    filt.SetResliceAxes(axes)
    filt.SetOutputDimensionality(2)
    filt.SetOutputSpacing(step, step, 1.0)
    filt.SetOutputOrigin(0.0, 0.0, 0.0)
    filt.SetOutputExtent(0, nx - 1, 0, ny - 1, 0, 0)
    filt.SetInterpolationModeToLinear()
    filt.SetBackgroundLevel(float(np.min(_scalars(filt.GetInput()))) if image.GetNumberOfPoints() else 0.0)
    filt.Update()
    return filt.GetOutput()


def _first_component(image: Any) -> Any:
    """The image itself, or its first component (a diffusion or vector volume shows its first volume)."""
    if image.GetNumberOfScalarComponents() == 1:
        return image
    from vtkmodules.vtkImagingCore import vtkImageExtractComponents

    extract = vtkImageExtractComponents()
    extract.SetInputData(image)
    extract.SetComponents(0)
    extract.Update()
    return extract.GetOutput()


def _scalars(image: Any) -> np.ndarray:
    from vtkmodules.util import numpy_support

    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())


def build_render_window(node: Any, size: tuple[int, int] = (900, 300), offscreen: bool = False) -> Any:
    """A vtkRenderWindow with three viewports (axial | sagittal | coronal) showing `node`."""
    from vtkmodules.vtkImagingColor import vtkImageMapToWindowLevelColors
    from vtkmodules.vtkRenderingCore import vtkImageActor, vtkRenderer, vtkRenderWindow, vtkTextActor
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL back-end)
    import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text)

    volume = _volume_node(node)
    window, level = _window_level(volume, _scalars(_first_component(volume.GetImageData())))
    render_window = vtkRenderWindow()
    if offscreen:
        render_window.SetOffScreenRendering(1)
    render_window.SetSize(*size)
    render_window.SetWindowName(f"DICOMBrowser: {volume.GetName()}")
    for index, view in enumerate(VIEW_ORDER):
        plane = reslice(volume, view)
        colors = vtkImageMapToWindowLevelColors()
        colors.SetInputData(plane)
        colors.SetWindow(window)
        colors.SetLevel(level)
        colors.SetOutputFormatToLuminance()
        colors.Update()
        actor = vtkImageActor()
        actor.GetMapper().SetInputConnection(colors.GetOutputPort())
        actor.InterpolateOff()
        renderer = vtkRenderer()
        renderer.SetViewport(index / 3, 0.0, (index + 1) / 3, 1.0)
        renderer.SetBackground(0.0, 0.0, 0.0)
        renderer.AddActor(actor)
        label = vtkTextActor()
        label.SetInput(view)
        label.GetTextProperty().SetFontSize(14)
        label.GetTextProperty().SetColor(1.0, 1.0, 0.2)
        label.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        label.SetPosition(0.02, 0.02)
        renderer.AddViewProp(label)
        renderer.ResetCamera()
        camera = renderer.GetActiveCamera()
        camera.ParallelProjectionOn()
        bounds = plane.GetBounds()
        camera.SetParallelScale(max((bounds[3] - bounds[2]) / 2, (bounds[1] - bounds[0]) / 2 * 3 * size[1] / size[0]) * 1.02)
        render_window.AddRenderer(renderer)
    return render_window


def screenshot(node: Any, path: str | os.PathLike, size: tuple[int, int] = (900, 300)) -> Path:
    """Render the three slice views off-screen and write them to a PNG."""
    from vtkmodules.vtkIOImage import vtkPNGWriter
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    path = Path(path).expanduser().resolve()  # the MRML writers resolve relative names against their own roots
    path.parent.mkdir(parents=True, exist_ok=True)
    render_window = build_render_window(node, size=size, offscreen=True)
    try:
        render_window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(render_window)
        grab.ReadFrontBufferOff()
        grab.Update()
        writer = vtkPNGWriter()
        writer.SetFileName(str(path))
        writer.SetInputConnection(grab.GetOutputPort())
        writer.Write()
    finally:
        render_window.Finalize()
    if not path.exists() or path.stat().st_size == 0:
        raise LoadError(f"{path}: off-screen rendering produced no image")
    return path


def show(node: Any, size: tuple[int, int] = (1200, 400), close_after: float | None = None) -> None:
    """Open an interactive window (needs a display); returns when the user closes it, or after
    `close_after` seconds (for scripted demos and tests)."""
    from vtkmodules.vtkCommonCore import vtkCommand
    from vtkmodules.vtkInteractionStyle import vtkInteractorStyleImage
    from vtkmodules.vtkRenderingCore import vtkRenderWindowInteractor

    render_window = build_render_window(node, size=size)
    interactor = vtkRenderWindowInteractor()
    interactor.SetRenderWindow(render_window)
    interactor.SetInteractorStyle(vtkInteractorStyleImage())
    interactor.Initialize()
    if close_after is not None:
        interactor.AddObserver(vtkCommand.TimerEvent, lambda caller, event: caller.TerminateApp())
        interactor.CreateOneShotTimer(max(1, int(close_after * 1000)))
    render_window.Render()
    interactor.Start()
    render_window.Finalize()
