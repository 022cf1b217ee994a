"""Mosaic images: one DICOM image holding all slices of a volume as tiles, laid out row by row.

Siemens ("MOSAIC" in ImageType): a square grid of ceil(sqrt(n)) tiles a side. The
ImagePositionPatient of a mosaic is the corner of the whole mosaic, not of a slice; the first
slice's corner is found by moving half the unused mosaic width/height along the row/column
directions. Slices follow the CSA SliceNormalVector (which may point against row x column).

UIH ("VFRAME" in ImageType, UIH's "GRID" format): (0065,1050) gives the slice count n; the grid
has ceil(sqrt(n)) tiles across and ceil(n / that) down (UIH's description, dcm2niix's UIH page),
so 20 slices of 64 x 64 make a 320 x 256 image. There is no top-level ImagePositionPatient: the
sequence (0065,1051) holds one item per tile, in tile order, with that slice's
ImagePositionPatient.
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
    tiles_across: int  # tiles in one row of the grid
    rows: int  # of one slice
    columns: int
    first_position_lps: np.ndarray
    normal_lps: np.ndarray  # unit, the direction of increasing tile index
    #: distance between slice origins (mm) when the file gives every slice's position (UIH);
    #: None: the slice spacing of the header (SpacingBetweenSlices, else SliceThickness)
    slice_spacing: float | None = None


def is_mosaic(ds: pydicom.Dataset) -> bool:
    """A Siemens mosaic (any vendor's file that says MOSAIC in its ImageType)."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "MOSAIC" in image_type


def is_uih_grid(ds: pydicom.Dataset) -> bool:
    """A UIH grid image: VFRAME in ImageType and a slice count in (0065,1050)."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "VFRAME" in image_type and ds.get((0x0065, 0x1050)) is not None


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


def uih_layout(ds: pydicom.Dataset, source: str) -> MosaicLayout:
    """The layout of one UIH grid image; slice 0 at the first (0065,1051) item's position, the
    slice axis from the first to the last item (they are in tile order)."""
    try:
        count = int(float(ds[0x0065, 0x1050].value))
    except (KeyError, TypeError, ValueError) as error:
        raise DICOMFileError(source, f"UIH grid image without a slice count (0065,1050): {error}") from error
    items = ds.get((0x0065, 0x1051))
    positions = []
    for item in (items.value if items is not None else None) or []:
        position = item.get("ImagePositionPatient")
        if position is not None and len(position) == 3:
            positions.append(np.array([float(v) for v in position]))
    if count < 1 or len(positions) != count:
        raise DICOMFileError(source, f"UIH grid image: {len(positions)} slice positions in (0065,1051) "
                                     f"for {count} slices in (0065,1050)")
    across = math.ceil(math.sqrt(count))
    down = math.ceil(count / across)
    rows, columns = int(ds.Rows) // down, int(ds.Columns) // across
    if rows * down != int(ds.Rows) or columns * across != int(ds.Columns):
        raise DICOMFileError(source, f"UIH grid image of {ds.Rows} x {ds.Columns} cannot hold {count} slices "
                                     f"as {down} x {across} tiles")
    orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
    normal = np.cross(orientation[:3], orientation[3:])
    spacing = None
    if count > 1:
        step = (positions[-1] - positions[0]) / (count - 1)
        spacing = float(np.linalg.norm(step))
        if spacing > 0:
            normal = step / spacing
    return MosaicLayout(count, across, rows, columns, positions[0], normal / np.linalg.norm(normal), spacing)


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
    """(rows*down, cols*across) mosaic -> (count, rows, cols) slices in tile order (a copy)."""
    across, rows, columns = mosaic_layout.tiles_across, mosaic_layout.rows, mosaic_layout.columns
    down = math.ceil(mosaic_layout.count / across)
    tiles = mosaic[: down * rows, : across * columns].reshape(down, rows, across, columns)
    tiles = tiles.transpose(0, 2, 1, 3).reshape(down * across, rows, columns)
    return np.ascontiguousarray(tiles[: mosaic_layout.count])
