"""Siemens mosaic images: one DICOM image holding all slices of a volume as tiles.

The tiles are laid out row by row on a square grid of ceil(sqrt(n)) tiles a side. The
ImagePositionPatient of a mosaic is the corner of the whole mosaic, not of a slice; the first
slice's corner is found by moving half the unused mosaic width/height along the row/column
directions. Slices follow the CSA SliceNormalVector (which may point against row x column).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pydicom

from ..errors import DICOMFileError
from . import csa

logger = logging.getLogger(__name__)


@dataclass
class MosaicLayout:
    """How to cut one mosaic into slices, and where slice 0 is (LPS, mm)."""

    count: int  # slices in the mosaic
    tiles_per_side: int
    rows: int  # of one slice
    columns: int
    first_position_lps: np.ndarray
    normal_lps: np.ndarray  # unit, the direction of increasing tile index


def is_mosaic(ds: pydicom.Dataset) -> bool:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "MOSAIC" in image_type


def mosaic_count(ds: pydicom.Dataset, csa_image: dict, ascconv: dict, source: str) -> int:
    """Slices in the mosaic: CSA NumberOfImagesInMosaic, else (0019,100a), else ASCCONV sSliceArray.lSize."""
    count = csa.first(csa_image, "NumberOfImagesInMosaic")
    if not count:
        element = ds.get((0x0019, 0x100A))
        if element is not None and not isinstance(element.value, bytes):
            count = int(element.value)
    if not count and ascconv.get("sSliceArray.lSize"):
        count = int(ascconv["sSliceArray.lSize"])
    if not count:
        raise DICOMFileError(source, "mosaic image without NumberOfImagesInMosaic or sSliceArray.lSize")
    return int(count)


def layout(ds: pydicom.Dataset, source: str, csa_image: dict | None = None, ascconv: dict | None = None) -> MosaicLayout:
    """The mosaic layout of one Siemens mosaic image, with the slice position correction."""
    csa_image = csa.image_header(ds, source) if csa_image is None else csa_image
    ascconv = csa.ascconv(ds, source) if ascconv is None else ascconv
    count = mosaic_count(ds, csa_image, ascconv, source)
    side = math.ceil(math.sqrt(count))
    rows, columns = int(ds.Rows) // side, int(ds.Columns) // side
    orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
    row_direction, column_direction = orientation[:3], orientation[3:]  # along a row / down a column
    spacing_between_rows, spacing_between_columns = (float(v) for v in ds.PixelSpacing)
    corner = np.array([float(v) for v in ds.ImagePositionPatient])
    first = (corner
             + row_direction * spacing_between_columns * (int(ds.Columns) - columns) / 2.0
             + column_direction * spacing_between_rows * (int(ds.Rows) - rows) / 2.0)
    normal = csa.first(csa_image, "SliceNormalVector")
    cross = np.cross(row_direction, column_direction)
    if normal is not None and len(csa_image.get("SliceNormalVector", [])) == 3:
        normal_vector = np.array(csa_image["SliceNormalVector"], dtype=float)
        normal_vector /= np.linalg.norm(normal_vector)
    else:
        # no CSA image header (anonymised): row x column, reversed when the protocol says the
        # images were numbered against the slice normal (sSliceArray.ucImageNumbSag/Cor/Tra)
        normal_vector = cross / np.linalg.norm(cross)
        reversed_numbering = any(_truthy(ascconv.get(f"sSliceArray.ucImageNumb{axis}", ""))
                                 for axis in ("Sag", "Cor", "Tra"))
        if reversed_numbering:
            # tiles run against the normal and the corrected position is that of the last tile
            # (checked against dcm2niix and dicom2nifti on dicom2nifti's Siemens DTI)
            first = first + normal_vector * _slice_spacing(ds) * (count - 1)
            normal_vector = -normal_vector
    return MosaicLayout(count, side, rows, columns, first, normal_vector)


def _slice_spacing(ds: pydicom.Dataset) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(ds.get(keyword) or 0)
        except (TypeError, ValueError):
            value = 0.0
        if value > 0:
            return value
    return 1.0


def _truthy(text: str) -> bool:
    try:
        return int(text, 0) != 0
    except ValueError:
        return False


def unpack(mosaic: np.ndarray, mosaic_layout: MosaicLayout) -> np.ndarray:
    """(rows*side, cols*side) mosaic -> (count, rows, cols) slices in tile order (a copy)."""
    side, rows, columns = mosaic_layout.tiles_per_side, mosaic_layout.rows, mosaic_layout.columns
    tiles = mosaic[: side * rows, : side * columns].reshape(side, rows, side, columns)
    tiles = tiles.transpose(0, 2, 1, 3).reshape(side * side, rows, columns)
    return np.ascontiguousarray(tiles[: mosaic_layout.count])
