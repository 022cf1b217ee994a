"""Sample data: generated DICOM series with known truth, and pydicom's bundled real files.

One generator for the demo, the tests and the benchmarks, so "the truth" of a generated data set
is computed one way. Geometry arguments are in the DICOM patient frame (LPS, millimetres).
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

SOP_CLASS_BY_MODALITY = {"CT": CTImageStorage, "MR": MRImageStorage}
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def pydicom_sample_folder() -> Path:
    """pydicom's bundled test files (real images of many kinds, some deliberately broken)."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm")).parent


def regular_positions(count: int, spacing: float = 1.0, origin: Sequence[float] = (0.0, 0.0, 0.0),
                      orientation: Sequence[float] = AXIAL) -> list[tuple[float, float, float]]:
    """Slice positions (LPS mm) along the normal of `orientation`, `spacing` mm apart."""
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:], dtype=float)
    normal = np.cross(row, col)
    start = np.asarray(origin, dtype=float)
    return [tuple(float(v) for v in start + i * spacing * normal) for i in range(count)]


def default_pixels(index: int, rows: int, columns: int) -> np.ndarray:
    """A ramp that encodes the slice index, so tests can check slice order from voxel values."""
    yy, xx = np.mgrid[0:rows, 0:columns]
    return (index * 100 + (xx + 2 * yy) % 97).astype(np.int16)


def head_phantom(count: int) -> Callable[[int, int, int], np.ndarray]:
    """Stored values (HU + 1024) of an ellipsoid 'head': skull, brain, ventricles and a lesion.

    Asymmetric on purpose (the lesion is on the patient's left, anterior), so a flipped axis
    shows in a screenshot.
    """
    def pixels(index: int, rows: int, columns: int) -> np.ndarray:
        z = (index + 0.5) / count * 2 - 1
        y, x = np.mgrid[0:rows, 0:columns]
        x = (x + 0.5) / columns * 2 - 1  # +x: patient left (LPS)
        y = (y + 0.5) / rows * 2 - 1     # +y: patient posterior
        hu = np.full((rows, columns), -1000.0)
        outer = (x / 0.8) ** 2 + (y / 0.95) ** 2 + (z / 0.95) ** 2
        inner = (x / 0.72) ** 2 + (y / 0.87) ** 2 + (z / 0.87) ** 2
        hu[outer <= 1] = 1000.0
        hu[inner <= 1] = 35.0
        hu[((x - 0.12) / 0.08) ** 2 + (y / 0.3) ** 2 + (z / 0.3) ** 2 <= 1] = 5.0
        hu[((x + 0.12) / 0.08) ** 2 + (y / 0.3) ** 2 + (z / 0.3) ** 2 <= 1] = 5.0
        hu[((x - 0.35) / 0.12) ** 2 + ((y + 0.4) / 0.12) ** 2 + (z / 0.2) ** 2 <= 1] = 80.0
        return (hu + 1024).astype(np.int16)

    return pixels


def make_dataset(*, patient_name: str = "Sample^Patient", patient_id: str = "SAMPLE1",
                 study_uid: str, series_uid: str, sop_uid: str | None = None,
                 modality: str = "CT", series_number: int = 1, instance_number: int = 1,
                 position: Sequence[float] = (0.0, 0.0, 0.0), orientation: Sequence[float] = AXIAL,
                 pixel_spacing: Sequence[float] = (1.0, 1.0), slice_thickness: float = 1.0,
                 pixels: np.ndarray | None = None, rescale: tuple[float, float] | None = (1.0, -1024.0),
                 study_date: str = "20260101", study_description: str = "Generated study",
                 series_description: str = "Generated series", specific_character_set: str | None = None,
                 frame_of_reference_uid: str | None = None,
                 extra: dict | None = None) -> Dataset:
    """One single-frame image instance with the attributes the database and plugins need."""
    pixels = default_pixels(instance_number - 1, 16, 16) if pixels is None else pixels
    sop_class = SOP_CLASS_BY_MODALITY.get(modality, CTImageStorage)
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    if specific_character_set:
        ds.SpecificCharacterSet = specific_character_set
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.StudyID = "1"
    ds.StudyDate = study_date
    ds.StudyTime = "120000"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study_description
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.Modality = modality
    ds.BodyPartExamined = "HEAD"
    # One frame of reference per study unless given: slices of a series must share it.
    ds.FrameOfReferenceUID = frame_of_reference_uid or generate_uid(entropy_srcs=[study_uid, "frame-of-reference"])
    ds.InstanceNumber = instance_number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [f"{v:.6g}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6g}" for v in orientation]
    ds.PixelSpacing = [f"{v:.6g}" for v in pixel_spacing]
    ds.SliceThickness = f"{slice_thickness:.6g}"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if rescale is not None:
        ds.RescaleSlope = f"{rescale[0]:.6g}"
        ds.RescaleIntercept = f"{rescale[1]:.6g}"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    return ds


def write_series(folder: str | Path, *, positions: Iterable[Sequence[float]] | None = None,
                 count: int = 10, spacing: float = 1.0, orientation: Sequence[float] = AXIAL,
                 orientations: Sequence[Sequence[float]] | None = None,
                 rows: int = 16, columns: int = 16,
                 pixels: Callable[[int, int, int], np.ndarray] = default_pixels,
                 study_uid: str | None = None, series_uid: str | None = None,
                 file_name: str = "IM{index:04d}.dcm", shuffle_instance_numbers: bool = False,
                 **attributes) -> list[Path]:
    """Write one series, a file per slice; returns the paths in slice order.

    `positions` (LPS mm) overrides the regular `count` x `spacing` stack; `orientations` gives a
    per-slice orientation (for mixed-orientation tests). Other keyword arguments go to
    `make_dataset` (patient, modality, rescale, character set, `extra` attributes, ...).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    positions = list(positions) if positions is not None else regular_positions(count, spacing, orientation=orientation)
    order = list(range(len(positions)))
    if shuffle_instance_numbers:
        order = list(np.random.default_rng(0).permutation(len(positions)))
    paths = []
    for index, position in enumerate(positions):
        ds = make_dataset(study_uid=study_uid, series_uid=series_uid, position=position,
                          orientation=(orientations[index] if orientations else orientation),
                          instance_number=int(order[index]) + 1,
                          pixels=pixels(index, rows, columns), **attributes)
        path = folder / file_name.format(index=index)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_many(folder: str | Path, patients: int = 200, studies: int = 2, series: int = 5,
               instances: int = 10, rows: int = 8, columns: int = 8) -> int:
    """The import benchmark's data set: patients x studies x series x instances small files."""
    folder = Path(folder)
    written = 0
    today = datetime.date(2026, 1, 1)
    for p in range(patients):
        for s in range(studies):
            study_uid = generate_uid()
            for r in range(series):
                write_series(folder / f"P{p:04d}" / f"S{s}" / f"R{r}", count=instances, rows=rows, columns=columns,
                             study_uid=study_uid, patient_id=f"PAT{p:05d}", patient_name=f"Patient^{p:05d}",
                             series_number=r + 1, study_date=(today - datetime.timedelta(days=p + s)).strftime("%Y%m%d"))
                written += instances
    return written
