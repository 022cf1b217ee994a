"""The MRML side: a vtkMRMLDiffusionWeightedVolumeNode from a DWISeries, and back.

Frames in the node, as Slicer keeps them: IJK-to-RAS holds the geometry (image origin 0,
spacing 1 in the vtkImageData); the gradients are unit vectors in the *measurement frame* and the
measurement frame matrix maps them to RAS. We store the gradients in LPS (as DICOM gives them)
and set the measurement frame to diag(-1, -1, 1) (LPS -> RAS), exactly what Slicer has after
reading a NRRD DWI with space LPS and an identity measurement frame. b-values are per gradient.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..scene import matrix_to_array, new_scene, vtk_matrix  # noqa: F401  (new_scene: re-exported)
from .gradients import LPS_TO_RAS
from .series import DWISeries

logger = logging.getLogger(__name__)


def add_dwi_node(scene: Any, series: DWISeries, name: str | None = None) -> Any:
    """Add a vtkMRMLDiffusionWeightedVolumeNode (+ display node when available) holding `series`."""
    import slicer
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import vtkDoubleArray
    from vtkmodules.vtkCommonDataModel import vtkImageData

    n_volumes, nk, nj, ni = series.voxels.shape
    components = np.ascontiguousarray(np.transpose(series.voxels, (1, 2, 3, 0)))  # (k, j, i, gradient)
    image = vtkImageData()
    image.SetDimensions(ni, nj, nk)
    scalars = numpy_support.numpy_to_vtk(components.reshape(-1, n_volumes), deep=True)
    scalars.SetName("DWI")
    image.GetPointData().SetScalars(scalars)

    node = slicer.vtkMRMLDiffusionWeightedVolumeNode()
    node.SetName(name or series.name)
    node.SetIJKToRASMatrix(vtk_matrix(series.ijk_to_ras))
    node.SetAndObserveImageData(image)
    gradients = vtkDoubleArray()
    gradients.SetNumberOfComponents(3)
    for vector in series.gradients_lps:
        gradients.InsertNextTuple3(*(float(v) for v in vector))
    bvalues = vtkDoubleArray()
    for b in series.bvalues:
        bvalues.InsertNextValue(float(b))
    node.SetNumberOfGradients(n_volumes)
    node.SetDiffusionGradients(gradients)
    node.SetBValues(bvalues)
    frame = np.eye(4)
    frame[:3, :3] = LPS_TO_RAS
    node.SetMeasurementFrameMatrix(vtk_matrix(frame))
    # the same DICOM attributes and subject hierarchy place as the scalar volumes (scene module)
    if series.series_uid:
        node.SetAttribute("DICOM.seriesInstanceUID", series.series_uid)
    if series.instance_uids:
        node.SetAttribute("DICOM.instanceUIDs", " ".join(series.instance_uids))
    for key, attribute in (("StudyInstanceUID", "DICOM.studyInstanceUID"), ("PatientID", "DICOM.patientID"),
                           ("Modality", "DICOM.Modality"), ("FrameOfReferenceUID", "DICOM.FrameOfReferenceUID")):
        if series.identity.get(key):
            node.SetAttribute(attribute, series.identity[key])
    if series.warnings:
        node.SetAttribute("DICOM.DiffusionWarnings", "; ".join(series.warnings))
    scene.AddNode(node)
    if series.series_uid:
        from ..scene import add_to_subject_hierarchy

        add_to_subject_hierarchy(scene, node, series.series_uid, series.identity)
    try:
        display = slicer.vtkMRMLDiffusionWeightedVolumeDisplayNode()
        scene.AddNode(display)
        node.SetAndObserveDisplayNodeID(display.GetID())
    except (AttributeError, TypeError) as error:  # a display node is a convenience, not the data
        logger.debug("No DWI display node: %s", error)
    return node


def series_from_node(node: Any) -> DWISeries:
    """Back from a DWI node (ours or one Slicer read) to a DWISeries with gradients in LPS."""
    from vtkmodules.util import numpy_support

    image = node.GetImageData()
    ni, nj, nk = image.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    n_volumes = node.GetNumberOfGradients()
    voxels = np.transpose(scalars.reshape(nk, nj, ni, n_volumes), (3, 0, 1, 2)).copy()
    ijk_to_ras = np.eye(4)
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = matrix_to_array(matrix)
    frame = vtkMatrix4x4()
    node.GetMeasurementFrameMatrix(frame)
    to_ras = matrix_to_array(frame)[:3, :3]
    gradients = np.array([node.GetDiffusionGradient(i) for i in range(n_volumes)], dtype=float).reshape(n_volumes, 3)
    gradients_lps = (LPS_TO_RAS @ to_ras @ gradients.T).T
    bvalues = np.array([node.GetBValue(i) for i in range(n_volumes)], dtype=float)
    warnings = node.GetAttribute("DICOM.DiffusionWarnings")
    return DWISeries(voxels=voxels, ijk_to_ras=ijk_to_ras, bvalues=bvalues, gradients_lps=gradients_lps,
                     warnings=warnings.split("; ") if warnings else [], files=[], name=node.GetName() or "DWI",
                     series_uid=node.GetAttribute("DICOM.seriesInstanceUID") or "")
