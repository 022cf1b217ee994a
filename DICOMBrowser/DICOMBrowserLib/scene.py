"""The MRML scene and its nodes: 3D Slicer's own data model, through `slicer-core`.

Volumes are what Slicer's DICOM plugins make: a `vtkMRMLScalarVolumeNode` whose vtkImageData
has origin 0 and spacing 1, the geometry (RAS, millimetres) living in the node's IJK-to-RAS
matrix; the DICOM identity in node attributes (`DICOM.instanceUIDs` space-separated,
`DICOM.seriesInstanceUID`, ...) and in subject hierarchy items patient / study / series whose
"DICOM" UIDs are PatientID, StudyInstanceUID and SeriesInstanceUID, as in Slicer's
`DICOMPlugin.addSeriesInSubjectHierarchy`. Saving follows Slicer: NRRD through the storage node,
`.mrml` scene files, `.mrb` bundles; NIfTI through SimpleITK for other tools.

Voxel arrays are numpy (k, j, i) = (slice, row, column), as `slicer.util.arrayFromVolume` gives.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import LoadError

logger = logging.getLogger(__name__)

#: identity keys (DICOM keywords) understood in `dicom_identity`
IDENTITY_KEYS = ("PatientName", "PatientID", "PatientSex", "PatientBirthDate", "PatientComments",
                 "StudyInstanceUID", "StudyDescription", "StudyDate", "StudyTime", "StudyID",
                 "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality", "FrameOfReferenceUID")


def _slicer():
    import slicer  # slicer-core; imported lazily because it loads all of VTK and MRML

    return slicer


def new_scene() -> Any:
    """An empty vtkMRMLScene with Slicer's default colour tables (needed by volume display nodes)."""
    slicer = _slicer()
    scene = slicer.vtkMRMLScene()
    # The logics add Slicer's colour tables and register the sequence browser node class; they
    # are detached at once so no logic keeps the scene alive (a scene is freed with its last
    # Python reference; logics needed later are made for the moment, see _SequencesLogic).
    for logic in (slicer.vtkMRMLColorLogic(), slicer.vtkSlicerSequencesLogic()):
        logic.SetMRMLScene(scene)
        logic.SetMRMLScene(None)
    return scene


class _SequencesLogic:
    """A Sequences logic attached to `scene` for the duration of a `with` block."""

    def __init__(self, scene: Any):
        self.scene = scene
        self.logic = _slicer().vtkSlicerSequencesLogic()

    def __enter__(self) -> Any:
        self.logic.SetMRMLScene(self.scene)
        return self.logic

    def __exit__(self, *exc: Any) -> None:
        self.logic.SetMRMLScene(None)


def vtk_matrix(array: np.ndarray) -> Any:
    """A 4x4 numpy array as a vtkMatrix4x4."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def matrix_to_array(matrix: Any) -> np.ndarray:
    """A vtkMatrix4x4 as a 4x4 float64 numpy array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def ijk_to_ras_of(node: Any) -> np.ndarray:
    """The node's IJK-to-RAS matrix (4x4, RAS mm)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix_to_array(matrix)


def image_data_from_array(voxels_kji: np.ndarray, copy: bool = False) -> Any:
    """vtkImageData (origin 0, spacing 1) over a (k, j, i) or (k, j, i, c) array.

    Without `copy` the image shares the array's memory (no second copy of a large volume; the
    VTK array keeps the numpy array alive): the caller must not modify the array afterwards.
    Non-contiguous or byte-swapped arrays are always copied.
    """
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    voxels = np.asarray(voxels_kji)
    if not voxels.dtype.isnative:
        voxels = voxels.astype(voxels.dtype.newbyteorder("="))
    if not voxels.flags.c_contiguous:
        voxels = np.ascontiguousarray(voxels)
    elif copy:
        voxels = voxels.copy()
    if voxels.ndim == 3:
        components = 1
    elif voxels.ndim == 4:
        components = voxels.shape[3]
    else:
        raise LoadError(f"voxel array must be 3D (k, j, i) or 4D (k, j, i, c), got shape {voxels.shape}")
    image = vtkImageData()
    image.SetDimensions(voxels.shape[2], voxels.shape[1], voxels.shape[0])
    flat = voxels.reshape(-1, components) if components > 1 else voxels.reshape(-1)
    vtk_array = numpy_support.numpy_to_vtk(flat, deep=False)  # keeps a reference to `flat`
    vtk_array.SetName("ImageScalars")
    image.GetPointData().SetScalars(vtk_array)
    return image


def array_from_volume(node: Any) -> np.ndarray:
    """A (k, j, i) numpy view of a volume node's voxels (what slicer.util.arrayFromVolume gives)."""
    from vtkmodules.util import numpy_support

    image = node.GetImageData()
    if image is None:
        raise LoadError(f"volume node {node.GetName()} has no image data")
    dims = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    components = image.GetNumberOfScalarComponents()
    shape = (dims[2], dims[1], dims[0]) + ((components,) if components > 1 else ())
    return array.reshape(shape)


def set_geometry(node: Any, ijk_to_ras: np.ndarray) -> None:
    """Origin, spacing and directions on the node from a 4x4 IJK-to-RAS matrix, as Slicer stores them."""
    matrix = np.asarray(ijk_to_ras, dtype=float)
    if matrix.shape != (4, 4):
        raise LoadError(f"IJK-to-RAS must be 4x4, got {matrix.shape}")
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise LoadError(f"IJK-to-RAS has a zero-length axis: {matrix[:3, :3].tolist()}")
    node.SetIJKToRASMatrix(vtk_matrix(matrix))


def _display_volume(scene: Any, node: Any, voxels: np.ndarray, window_level: tuple[float, float] | None) -> None:
    slicer = _slicer()
    display = scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    if window_level is not None:
        display.AutoWindowLevelOff()
        display.SetWindowLevel(float(window_level[0]), float(window_level[1]))
    else:
        display.AutoWindowLevelOn()
        if voxels.size:
            low, high = float(np.min(voxels)), float(np.max(voxels))
            display.SetWindowLevelMinMax(low, high)
    node.SetAndObserveDisplayNodeID(display.GetID())
    del slicer


def add_scalar_volume(scene: Any, voxels_kji: np.ndarray, ijk_to_ras: np.ndarray, name: str, *,
                      series_uid: str, instance_uids: Sequence[str],
                      window_level: tuple[float, float] | None = None,
                      dicom_identity: dict[str, str] | None = None) -> Any:
    """A vtkMRMLScalarVolumeNode (image origin 0, spacing 1; geometry in the IJK-to-RAS matrix).

    `voxels_kji` is (slices, rows, columns); `ijk_to_ras` maps (i=column, j=row, k=slice) to RAS mm.
    `window_level` is (window, level) from the files; None means automatic. `dicom_identity`
    holds DICOM keywords (see IDENTITY_KEYS) for node attributes and the subject hierarchy.
    """
    slicer = _slicer()
    voxels = np.asarray(voxels_kji)
    if voxels.ndim != 3:
        raise LoadError(f"series {series_uid}: scalar volume needs a (k, j, i) array, got shape {voxels.shape}")
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    set_geometry(node, ijk_to_ras)
    node.SetAndObserveImageData(image_data_from_array(voxels))
    _display_volume(scene, node, voxels, window_level)
    _set_dicom_attributes(node, series_uid, instance_uids, dicom_identity or {})
    add_to_subject_hierarchy(scene, node, series_uid, dicom_identity or {})
    del slicer
    return node


def add_vector_volume(scene: Any, voxels_kjic: np.ndarray, ijk_to_ras: np.ndarray, name: str, *,
                      series_uid: str, instance_uids: Sequence[str],
                      dicom_identity: dict[str, str] | None = None) -> Any:
    """A vtkMRMLVectorVolumeNode for colour images, as Slicer loads RGB DICOM (one voxel = c components).

    `voxels_kjic` is (slices, rows, columns, components), e.g. uint8 RGB; geometry, attributes and
    subject hierarchy exactly as `add_scalar_volume`. The display node shows the components as
    RGB colour. The node shares the array's memory: do not modify the array afterwards.
    """
    voxels = np.asarray(voxels_kjic)
    if voxels.ndim != 4 or voxels.shape[3] < 2:
        raise LoadError(f"series {series_uid}: vector volume needs a (k, j, i, components) array, got {voxels.shape}")
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", scene.GenerateUniqueName(name))
    set_geometry(node, ijk_to_ras)
    node.SetAndObserveImageData(image_data_from_array(voxels))
    display = scene.AddNewNodeByClass("vtkMRMLVectorVolumeDisplayNode")
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    if voxels.dtype != np.uint8 and voxels.size:  # e.g. 16-bit RGB: map the data range onto the display
        display.AutoWindowLevelOff()
        low, high = float(np.min(voxels)), float(np.max(voxels))
        display.SetWindowLevelMinMax(low, high)
    node.SetAndObserveDisplayNodeID(display.GetID())
    _set_dicom_attributes(node, series_uid, instance_uids, dicom_identity or {})
    add_to_subject_hierarchy(scene, node, series_uid, dicom_identity or {})
    return node


def _set_dicom_attributes(node: Any, series_uid: str, instance_uids: Sequence[str], identity: dict[str, str]) -> None:
    node.SetAttribute("DICOM.instanceUIDs", " ".join(instance_uids))
    node.SetAttribute("DICOM.seriesInstanceUID", series_uid)
    for key, attribute in (("StudyInstanceUID", "DICOM.studyInstanceUID"), ("PatientID", "DICOM.patientID"),
                           ("Modality", "DICOM.Modality"), ("FrameOfReferenceUID", "DICOM.FrameOfReferenceUID")):
        if identity.get(key):
            node.SetAttribute(attribute, str(identity[key]))


def add_to_subject_hierarchy(scene: Any, node: Any, series_uid: str, identity: dict[str, str]) -> int:
    """Place `node` under patient / study items keyed by DICOM UIDs, as Slicer's DICOM plugins do.

    Returns the series item id. Items are reused when a patient or study is already present.
    """
    slicer = _slicer()
    constants = slicer.vtkMRMLSubjectHierarchyConstants
    uid_name = constants.GetDICOMUIDName()
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    series_item = hierarchy.GetItemByDataNode(node)
    if not series_item:
        series_item = hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
    hierarchy.SetItemUID(series_item, uid_name, series_uid)
    if identity.get("Modality"):
        hierarchy.SetItemAttribute(series_item, constants.GetDICOMSeriesModalityAttributeName(), identity["Modality"])
    if identity.get("SeriesNumber"):
        hierarchy.SetItemAttribute(series_item, constants.GetDICOMSeriesNumberAttributeName(), str(identity["SeriesNumber"]))

    patient_id = identity.get("PatientID") or identity.get("PatientName") or "Anonymous"
    patient_item = hierarchy.GetItemByUID(uid_name, patient_id)
    if not patient_item:
        patient_item = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), identity.get("PatientName") or patient_id)
        hierarchy.SetItemUID(patient_item, uid_name, patient_id)
        for key, attribute in (("PatientName", constants.GetDICOMPatientNameAttributeName()),
                               ("PatientID", constants.GetDICOMPatientIDAttributeName()),
                               ("PatientSex", constants.GetDICOMPatientSexAttributeName()),
                               ("PatientBirthDate", constants.GetDICOMPatientBirthDateAttributeName()),
                               ("PatientComments", constants.GetDICOMPatientCommentsAttributeName())):
            if identity.get(key):
                hierarchy.SetItemAttribute(patient_item, attribute, str(identity[key]))

    study_uid = identity.get("StudyInstanceUID")
    parent = patient_item
    if study_uid:
        study_item = hierarchy.GetItemByUID(uid_name, study_uid)
        if not study_item:
            study_name = identity.get("StudyDescription") or f"Study {identity.get('StudyDate', '')}".strip()
            study_item = hierarchy.CreateStudyItem(patient_item, study_name or "Study")
            hierarchy.SetItemUID(study_item, uid_name, study_uid)
            for key, attribute in (("StudyInstanceUID", constants.GetDICOMStudyInstanceUIDAttributeName()),
                                   ("StudyDescription", constants.GetDICOMStudyDescriptionAttributeName()),
                                   ("StudyDate", constants.GetDICOMStudyDateAttributeName()),
                                   ("StudyTime", constants.GetDICOMStudyTimeAttributeName()),
                                   ("StudyID", constants.GetDICOMStudyIDAttributeName())):
                if identity.get(key):
                    hierarchy.SetItemAttribute(study_item, attribute, str(identity[key]))
        parent = study_item
    hierarchy.SetItemParent(series_item, parent)
    return series_item


def add_volume_sequence(scene: Any, volumes_tkji: np.ndarray, ijk_to_ras: np.ndarray, name: str, *,
                        series_uid: str, instance_uids: Sequence[str], index_values: Sequence[float] | None = None,
                        index_name: str = "time", index_unit: str = "s",
                        window_level: tuple[float, float] | None = None,
                        dicom_identity: dict[str, str] | None = None) -> Any:
    """A 4D volume as Slicer's Sequences module holds it: a vtkMRMLSequenceNode of scalar volumes.

    Also adds a vtkMRMLSequenceBrowserNode and its proxy volume (the volume shown at the current
    index), placed in the subject hierarchy like a 3D series. Returns the sequence node; the
    proxy is `sequence_proxy(scene, sequence)`.
    """
    slicer = _slicer()
    volumes = np.asarray(volumes_tkji)
    if volumes.ndim != 4:
        raise LoadError(f"series {series_uid}: volume sequence needs a (t, k, j, i) array, got {volumes.shape}")
    count = volumes.shape[0]
    index_values = list(index_values) if index_values is not None else list(range(count))
    if len(index_values) != count:
        raise LoadError(f"series {series_uid}: {len(index_values)} index values for {count} volumes")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(name))
    sequence.SetIndexName(index_name)
    sequence.SetIndexUnit(index_unit)
    sequence.SetIndexType(sequence.NumericIndex)
    # the data nodes live in the sequence's internal scene, not in `scene`
    for t in range(count):
        frame = slicer.vtkMRMLScalarVolumeNode()
        frame.SetName(f"{name} [{t}]")
        set_geometry(frame, ijk_to_ras)
        frame.SetAndObserveImageData(image_data_from_array(volumes[t]))
        sequence.SetDataNodeAtValue(frame, f"{index_values[t]:g}")
    sequence.SetAttribute("DICOM.instanceUIDs", " ".join(instance_uids))
    sequence.SetAttribute("DICOM.seriesInstanceUID", series_uid)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(f"{name} browser"))
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    with _SequencesLogic(scene) as logic:
        logic.UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    if proxy is not None:
        proxy.SetName(scene.GenerateUniqueName(name))
        if proxy.GetDisplayNode() is None:
            _display_volume(scene, proxy, volumes[0], window_level)
        _set_dicom_attributes(proxy, series_uid, instance_uids, dicom_identity or {})
        add_to_subject_hierarchy(scene, proxy, series_uid, dicom_identity or {})
    return sequence


def sequence_proxy(scene: Any, sequence: Any) -> Any:
    """The proxy volume node a sequence browser shows for `sequence` (None if no browser)."""
    browsers = scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
    for index in range(browsers.GetNumberOfItems()):
        browser = browsers.GetItemAsObject(index)
        if browser.IsSynchronizedSequenceNode(sequence.GetID(), True):
            return browser.GetProxyNode(sequence)
    return None


def sequence_array(sequence: Any) -> tuple[np.ndarray, np.ndarray]:
    """(t, k, j, i) voxels and the common IJK-to-RAS of a volume sequence."""
    count = sequence.GetNumberOfDataNodes()
    if count == 0:
        raise LoadError(f"sequence {sequence.GetName()} is empty")
    arrays = [array_from_volume(sequence.GetNthDataNode(t)) for t in range(count)]
    return np.stack(arrays), ijk_to_ras_of(sequence.GetNthDataNode(0))


# --- saving --------------------------------------------------------------------------------
def save_volume(node: Any, path: str | os.PathLike) -> Path:
    """Write a volume (or a volume sequence) as NRRD (.nrrd/.nhdr, Slicer's storage node),
    NIfTI (.nii/.nii.gz, via SimpleITK), or a whole-scene `.mrml` / `.mrb` around it.

    A diffusion-weighted volume node goes to the diffusion package's writers for all four
    volume formats (NRRD DWI; NIfTI + .bval/.bvec as dcm2niix writes them), so a DWI file is
    the same whichever entry point wrote it (this, `DICOMBrowserLogic.save_dwi`, `save_dwi`)."""
    path = Path(path).expanduser().resolve()  # the MRML writers resolve relative names against their own roots
    suffix = "".join(path.suffixes[-2:]).lower() if path.name.lower().endswith(".nii.gz") else path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (node.IsA("vtkMRMLVolumeNode") or node.IsA("vtkMRMLSequenceNode")) and suffix not in (".mrml", ".mrb"):
        formats = {"vtkMRMLSegmentationNode": "Slicer's .seg.nrrd (segment names, colours and overlaps kept)",
                   "vtkMRMLTableNode": ".tsv or .csv"}
        kind = next((f for c, f in formats.items() if node.IsA(c)), None)
        raise LoadError(f"{path}: {node.GetName()} is a {node.GetClassName()}, not a volume: write it "
                        + (f"as {kind}, or " if kind else "") + "in a .mrb/.mrml scene")
    if node.IsA("vtkMRMLDiffusionWeightedVolumeNode") and suffix in (".nrrd", ".nhdr", ".nii", ".nii.gz"):
        from .diffusion.dwi_io import save_dwi

        return save_dwi(node, path)[0]
    if node.IsA("vtkMRMLSequenceNode"):
        if suffix in (".nii", ".nii.gz"):
            return _save_sequence_nifti(node, path)
        if suffix in (".nrrd", ".seq.nrrd"):
            return _save_sequence_nrrd(node, path)
    elif suffix in (".nrrd", ".nhdr"):
        return _save_with_storage_node(node, path)
    elif suffix in (".nii", ".nii.gz") and _is_rgb_volume(node):
        return _save_rgb_nifti(node, path)
    elif suffix in (".nii", ".nii.gz"):
        return _save_nifti(node, path)
    if suffix in (".mrml", ".mrb") and node.GetScene() is None:
        raise LoadError(f"{path}: node {node.GetName()} is in no scene (keep a reference to the scene it was loaded into)")
    if suffix == ".mrml":
        return save_scene(node.GetScene(), path)
    if suffix == ".mrb":
        return save_bundle(node.GetScene(), path)
    raise LoadError(f"{path}: unknown output format (use .nrrd, .nii, .nii.gz, .mrml or .mrb)")


def _save_with_storage_node(node: Any, path: Path) -> Path:
    storage = node.GetStorageNode()
    if storage is None:
        storage = node.CreateDefaultStorageNode()
        if storage is None:  # the factory needs a scene: make the class Slicer would choose
            slicer = _slicer()
            diffusion = node.IsA("vtkMRMLDiffusionWeightedVolumeNode") or node.IsA("vtkMRMLDiffusionTensorVolumeNode")
            storage = slicer.vtkMRMLNRRDStorageNode() if diffusion else slicer.vtkMRMLVolumeArchetypeStorageNode()
        if node.GetScene() is not None:  # a node whose scene is gone can still be written
            node.GetScene().AddNode(storage)
            node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    storage.SetUseCompression(True)
    if not storage.WriteData(node):
        raise LoadError(f"{path}: Slicer's storage node could not write {node.GetName()}")
    return path


def _save_sequence_nrrd(sequence: Any, path: Path) -> Path:
    slicer = _slicer()
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    if sequence.GetScene() is not None:
        sequence.GetScene().AddNode(storage)
        sequence.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.WriteData(sequence):
        raise LoadError(f"{path}: Slicer's volume sequence storage node could not write {sequence.GetName()}")
    return path


def _save_nifti(node: Any, path: Path) -> Path:
    """The node's array written as it is (volumeio: one NIfTI writer for nodes and the converter)."""
    from .volumeio import write_nifti

    voxels = array_from_volume(node)
    if voxels.ndim == 4:  # components (e.g. diffusion gradients) become NIfTI's 4th dimension
        voxels = np.moveaxis(voxels, 3, 0)
    return write_nifti(path, voxels, ijk_to_ras_of(node))


def _is_rgb_volume(node: Any) -> bool:
    """A colour volume: a vector volume of 3 uint8 components (what add_vector_volume makes of RGB DICOM)."""
    image = node.GetImageData() if node.IsA("vtkMRMLVectorVolumeNode") else None
    if image is None or image.GetNumberOfScalarComponents() != 3:
        return False
    from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR

    return image.GetScalarType() == VTK_UNSIGNED_CHAR


def _save_rgb_nifti(node: Any, path: Path) -> Path:
    """RGB as NIfTI's RGB24 (3D, one colour per voxel), as dcm2niix writes colour DICOM; RAS affine."""
    import nibabel

    voxels = array_from_volume(node)  # (k, j, i, 3) uint8
    rgb = np.ascontiguousarray(np.transpose(voxels, (2, 1, 0, 3))).view(
        np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]))[..., 0]
    image = nibabel.Nifti1Image(rgb, ijk_to_ras_of(node))
    image.header.set_xyzt_units("mm")
    image.set_qform(ijk_to_ras_of(node), code=1)
    image.set_sform(ijk_to_ras_of(node), code=1)
    nibabel.save(image, str(path))
    return path


def _save_sequence_nifti(sequence: Any, path: Path) -> Path:
    from .volumeio import write_nifti

    voxels, ijk_to_ras = sequence_array(sequence)
    return write_nifti(path, voxels, ijk_to_ras)


def save_scene(scene: Any, path: str | os.PathLike) -> Path:
    """Write every storable node next to `path` (NRRD) and the scene as a `.mrml` file."""
    path = Path(path).expanduser().resolve()  # the MRML writers resolve relative names against their own roots
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.SetRootDirectory(str(path.parent))
    nodes = scene.GetNodesByClass("vtkMRMLStorableNode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if node.IsA("vtkMRMLSequenceNode"):
            file_name = _safe_file_name(node.GetName()) + ".seq.nrrd"
            _save_sequence_nrrd(node, path.parent / file_name)
        elif node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is not None:
            file_name = _safe_file_name(node.GetName()) + ".nrrd"
            _save_with_storage_node(node, path.parent / file_name)
        elif node.IsA("vtkMRMLVolumeNode") or _is_sequence_proxy(scene, node) or not node.GetSaveWithScene():
            continue  # an empty volume, the proxy of a sequence written above, a built-in colour table
        else:  # segmentations (.seg.nrrd), tables (.tsv), markups (.mrk.json): each node's own storage
            file_name = _save_with_default_storage(scene, node, path.parent)
            if file_name is None:
                continue
        node.GetStorageNode().SetFileName(file_name)
    scene.SetURL(str(path))
    if not scene.Commit(str(path)):
        raise LoadError(f"{path}: could not write the MRML scene")
    return path


def _save_with_default_storage(scene: Any, node: Any, folder: Path) -> str | None:
    """Write a non-volume node (segmentation, table, markups) through the storage node Slicer
    would give it, beside the scene; returns the file name, None when the node has no storage."""
    storage = node.GetStorageNode() or node.CreateDefaultStorageNode()
    if storage is None:
        logger.info("%s: no storage node, not written with the scene", node.GetName())
        return None
    if storage.GetScene() is None:
        scene.AddNode(storage)
        node.SetAndObserveStorageNodeID(storage.GetID())
    file_name = _safe_file_name(node.GetName()) + "." + (storage.GetDefaultWriteFileExtension() or "dat")
    storage.SetFileName(str(folder / file_name))
    if not storage.WriteData(node):
        raise LoadError(f"{folder / file_name}: Slicer's {storage.GetClassName()} could not write {node.GetName()}")
    return file_name


def _is_sequence_proxy(scene: Any, node: Any) -> bool:
    browsers = scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
    for index in range(browsers.GetNumberOfItems()):
        if browsers.GetItemAsObject(index).IsProxyNode(node.GetID()):
            return True
    return False


def _safe_file_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return keep or "volume"


def save_bundle(scene: Any, path: str | os.PathLike) -> Path:
    """A Slicer data bundle (`.mrb`): the scene and its data saved by Slicer's application logic, zipped."""
    slicer = _slicer()
    path = Path(path).expanduser().resolve()  # the MRML writers resolve relative names against their own roots
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dicombrowser-mrb-") as work:
        bundle_dir = Path(work) / path.stem
        bundle_dir.mkdir()
        logic = slicer.vtkMRMLApplicationLogic()
        logic.SetMRMLScene(scene)
        if not logic.SaveSceneToSlicerDataBundleDirectory(str(bundle_dir), None):
            raise LoadError(f"{path}: Slicer's application logic could not save the data bundle")
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(bundle_dir.rglob("*")):
                archive.write(file, file.relative_to(Path(work)))
    return path


def load_scene(path: str | os.PathLike) -> Any:
    """Read a `.mrml` scene (or a `.mrb` bundle, unzipped to a temporary folder) into a new scene."""
    path = Path(path).expanduser().resolve()  # the MRML writers resolve relative names against their own roots
    scene = new_scene()
    work = None
    try:
        if path.suffix.lower() == ".mrb":
            work = Path(tempfile.mkdtemp(prefix="dicombrowser-mrb-"))
            with zipfile.ZipFile(path) as archive:
                archive.extractall(work)
            mrml = next(work.rglob("*.mrml"), None)
            if mrml is None:
                raise LoadError(f"{path}: no .mrml scene inside the bundle")
            path = mrml
        scene.SetURL(str(path))
        if not scene.Import():
            raise LoadError(f"{path}: could not read the MRML scene")
    finally:
        if work is not None:  # the storage nodes have read their files into memory by now
            shutil.rmtree(work, ignore_errors=True)
    return scene


def close_scene(scene: Any) -> None:
    """Remove every node of a scene now (dropping the last reference frees it too)."""
    scene.Clear(1)
