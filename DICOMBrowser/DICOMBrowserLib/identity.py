"""Reading a whole DICOM object and the identity its nodes carry (patient, study, series).

The non-image plugins (SEG, RT, SR, parametric maps, PET SUV) read their objects whole with
pydicom: their meaning is in nested sequences that no tag cache holds. This module is the one
place that reads them, so every such error names the file the same way.
"""
from __future__ import annotations

from typing import Any

from .errors import DICOMFileError
from .scene import IDENTITY_KEYS


def read_dataset(path: str, stop_before_pixels: bool = False) -> Any:
    """The pydicom Dataset of `path` (files without a preamble are accepted); DICOMFileError names the file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError) as error:
        raise DICOMFileError(str(path), f"cannot be read as DICOM: {error}") from error


def identity_of(dataset: Any) -> dict[str, str]:
    """The `scene.IDENTITY_KEYS` values of a dataset (for node attributes and subject hierarchy)."""
    found = {}
    for key in IDENTITY_KEYS:
        value = dataset.get(key, "")
        found[key] = "" if value is None else str(value)
    return found


def required(dataset: Any, keyword: str, path: str, why: str = "") -> Any:
    """`dataset.keyword`, or DICOMFileError naming the file and the missing attribute (and why it is needed)."""
    value = dataset.get(keyword, None)
    if value is None or (isinstance(value, (str, bytes)) and not str(value).strip()):
        raise DICOMFileError(str(path), f"{keyword} is missing" + (f": {why}" if why else ""))
    return value


def ijk_to_ras_of_plane(position_lps: Any, orientation: Any, pixel_spacing: Any,
                        slice_step_lps: Any) -> Any:
    """IJK-to-RAS (4x4, mm) of a regular stack: first voxel centre `position_lps` (LPS mm),
    ImageOrientationPatient (row then column cosines), PixelSpacing (row spacing, column spacing,
    mm) and the LPS vector from one slice to the next (its length is the slice spacing)."""
    import numpy as np

    from .geometry import LPS_TO_RAS

    row = np.asarray([float(v) for v in orientation[:3]])
    column = np.asarray([float(v) for v in orientation[3:6]])
    matrix = np.eye(4)
    matrix[:3, 0] = row * float(pixel_spacing[1])
    matrix[:3, 1] = column * float(pixel_spacing[0])
    matrix[:3, 2] = np.asarray(slice_step_lps, dtype=float)
    matrix[:3, 3] = [float(v) for v in position_lps]
    return LPS_TO_RAS @ matrix
