"""A whole scene as one DICOM object, the way 3D Slicer's data bundle plugin writes and reads it.

What Slicer does (Modules/Scripted/DICOMLib/DICOMExportScene.py and
DICOMPlugins/DICOMSlicerDataBundlePlugin.py, read 2026-12-03): the scene is written as a .mrb
(a zip: `<scene>/<scene>.mrml`, `<scene>/Data/...`); the first file of the reference series is
dumped with DCMTK, three private elements are appended, (CADB,0010) LO "3D Slicer <zip size>"
(the private creator, which carries the size because Slicer's reader takes it from there:
`creator.split(' ')[2]`), (CADB,1008) LO "<zip size>" and (CADB,1010) OB the zip, and img2dcm
makes a Secondary Capture (1.2.840.10008.5.1.4.1.1.7, a JPEG screenshot as the image, new
UIDs, SeriesDescription "Slicer Data Bundle"). Slicer's reader offers any single-file series
whose (CADB,0010) is not empty ("<description> - as Slicer Scene", confidence 0.9), then reads
the last <size> bytes of the file (<size> + 1 from the end when the size is odd, skipping the pad
byte): the zip must be the file's last element. It opens that with the application logic's
OpenSlicerDataBundle and puts the first scalar volume (else model, else markups) in the subject
hierarchy as the series.

Ours writes the same three elements, the zip last (nothing in our object has a higher tag), in a
Secondary Capture of the study whose image is the middle slice of the scene's first volume
(8-bit, window from its range), so a viewer that knows nothing of bundles shows what the scene is
about. We read the zip from the element (any transfer syntax, also when a PACS stored it as
implicit VR and the private VR is lost) with the size from the creator as Slicer does, (CADB,1008)
when the creator has none. Testing/test_scene_bundle_slicer.py writes a bundle with DCMTK's tools
exactly as DICOMExportScene does and loads it through our plugin, and reads ours the way Slicer's
plugin reads it.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ..errors import ExportError
from .study import StudyContext, now_date_time
from .volume import MANUFACTURER, SOP_CLASSES, ExportResult, _version

logger = logging.getLogger(__name__)

BUNDLE_GROUP = 0xCADB
CREATOR_PREFIX = "3D Slicer"
#: the tags Slicer's plugin declares: creator, size, data
CREATOR_TAG, SIZE_TAG, DATA_TAG = 0xCADB0010, 0xCADB1008, 0xCADB1010


def bundle_bytes(scene: Any) -> bytes:
    """The scene saved as a .mrb by Slicer's application logic (scene.save_bundle)."""
    from .. import scene as scenes

    with tempfile.TemporaryDirectory(prefix="dicombrowser-bundle-") as work:
        path = scenes.save_bundle(scene, Path(work) / "Scene.mrb")
        return path.read_bytes()


def _preview(scene: Any) -> np.ndarray:
    """The middle axial slice of the scene's first scalar volume as uint8, else a grey square."""
    from .. import scene as scenes

    volumes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    for index in range(volumes.GetNumberOfItems()):
        node = volumes.GetItemAsObject(index)
        if node.GetImageData() is None:
            continue
        voxels = scenes.array_from_volume(node)
        if voxels.ndim != 3 or voxels.size == 0:
            continue
        plane = voxels[voxels.shape[0] // 2].astype(np.float64)
        low, high = float(plane.min()), float(plane.max())
        scaled = (plane - low) / (high - low) * 255 if high > low else np.zeros_like(plane)
        return np.ascontiguousarray(scaled.round().astype(np.uint8))
    return np.full((64, 64), 128, dtype=np.uint8)


def build_scene_object(scene: Any, study: StudyContext, series_description: str = "Slicer Data Bundle",
                       series_number: int | None = None) -> ExportResult:
    """The Secondary Capture object carrying the scene (in memory; nothing written)."""
    data = bundle_bytes(scene)
    if not data:
        raise ExportError(f"study {study.study_uid}: the scene saved to an empty bundle")
    pixels = _preview(scene)
    date, time = now_date_time()
    ds = Dataset()
    ds.update(study.header)
    if "SpecificCharacterSet" not in ds:
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SOP_CLASSES["OT"]
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.Modality = "OT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number if series_number is not None else study.next_series_number()
    ds.SeriesDescription = series_description[:64]
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.Laterality = ""
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = _version()
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, time
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    ds.add_new(CREATOR_TAG, "LO", f"{CREATOR_PREFIX} {len(data)}")
    ds.add_new(SIZE_TAG, "LO", str(len(data)))
    ds.add_new(DATA_TAG, "OB", data)
    last = max(int(tag) for tag in ds.keys())
    if last != DATA_TAG:  # Slicer's reader reads the zip from the end of the file
        raise ExportError(f"study {study.study_uid}: element {last:08X} would follow the scene bundle (CADB,1010)")
    result = ExportResult(study.study_uid, str(ds.SeriesInstanceUID), SOP_CLASSES["OT"], "", False, datasets=[ds])
    result.notes.append(f"scene bundle of {len(data)} bytes")
    return result


def export_scene(database: Any, scene: Any, study_uid: str, series_description: str = "Slicer Data Bundle",
                 output_dir: str | os.PathLike | None = None, to_database: bool = False, send: Any = None,
                 deidentify: Any = None) -> ExportResult:
    """Build the scene object, then write/import/send it like a volume export."""
    from .destinations import deliver
    from .study import study_context

    if deidentify is not None:
        raise ExportError("a scene bundle cannot be de-identified: the scene's own files inside it keep their "
                          "names and values (export the volumes with --deidentify instead)")
    study = study_context(database, study_uid)
    result = build_scene_object(scene, study, series_description)
    return deliver(database, result, output_dir=output_dir, to_database=to_database, send=send, prefix="SCENE_")


def bundle_size(creator: str, size_text: str = "") -> int | None:
    """The zip's size as Slicer's reader finds it: the third word of the private creator
    ("3D Slicer <size>"); else (CADB,1008); None when neither is a number."""
    words = creator.split(" ")
    for text in (words[2] if len(words) > 2 else "", size_text):
        if text.strip().isdigit():
            return int(text.strip())
    return None


def bundle_from_file(path: str | os.PathLike) -> bytes | None:
    """The .mrb bytes a scene object carries (None when the file is not one)."""
    import pydicom

    ds = pydicom.dcmread(path, force=True)
    creator = ds.get(CREATOR_TAG)
    if creator is None or DATA_TAG not in ds:
        return None
    creator_text = creator.value.decode("latin-1") if isinstance(creator.value, bytes) else str(creator.value)
    if not creator_text.startswith(CREATOR_PREFIX):
        return None
    data = bytes(ds[DATA_TAG].value)  # OB, or UN bytes when the file lost the private VR (implicit VR)
    size_value = ds[SIZE_TAG].value if SIZE_TAG in ds else ""
    size = bundle_size(creator_text.strip(), size_value.decode("latin-1") if isinstance(size_value, bytes)
                       else str(size_value))
    if size is not None and size <= len(data):
        data = data[:size]  # OB values are padded to an even length
    return data


def import_bundle(scene: Any, data: bytes, label: str) -> list[Any]:
    """Add the nodes of a .mrb (bytes) to `scene`; returns the added storable nodes. LoadError names `label`."""
    import shutil
    import zipfile

    from ..errors import LoadError

    work = Path(tempfile.mkdtemp(prefix="dicombrowser-bundle-"))
    try:
        archive_path = work / "bundle.mrb"
        archive_path.write_bytes(data)
        try:
            with zipfile.ZipFile(archive_path) as archive:
                archive.extractall(work / "x")
        except zipfile.BadZipFile as error:
            raise LoadError(f"{label}: the scene bundle is not a valid zip: {error}") from error
        mrml = next((work / "x").rglob("*.mrml"), None)
        if mrml is None:
            raise LoadError(f"{label}: no .mrml scene inside the bundle")
        before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
        scene.SetURL(str(mrml))
        if not scene.Import():
            raise LoadError(f"{label}: Slicer could not import the bundled scene")
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        return [n for n in added if n.GetID() not in before and n.IsA("vtkMRMLStorableNode")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
