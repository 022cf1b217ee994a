"""Series thumbnails: window/level and scaling of one image, cached as PNG in the database folder.

GUI-free on purpose: the browser's worker threads call `series_thumbnail`, and so can a CLI or a
test without Qt. A thumbnail is made from the middle instance (by InstanceNumber) of a series,
and the middle frame of a multi-frame instance, because the middle is the most representative.
Cache: `<database>/thumbnails/<SeriesInstanceUID>.png`, rewritten only when missing or forced.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DICOMFileError, NotFoundError

logger = logging.getLogger(__name__)

THUMBNAIL_FOLDER = "thumbnails"
DEFAULT_SIZE = 128


def auto_window(pixels: np.ndarray) -> tuple[float, float]:
    """(center, width) spanning the 1st..99th percentile: robust to a few extreme pixels."""
    finite = pixels[np.isfinite(pixels)] if pixels.dtype.kind == "f" else pixels
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [1.0, 99.0])
    if high <= low:
        low, high = float(finite.min()), float(finite.max())
    width = max(float(high - low), 1.0)
    return float(low) + width / 2.0, width


def window_to_uint8(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map [center - width/2, center + width/2] linearly to 0..255 (DICOM linear VOI, simplified)."""
    width = max(float(width), 1e-6)
    low = float(center) - width / 2.0
    scaled = (pixels.astype(np.float32) - np.float32(low)) * np.float32(255.0 / width)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def scale_to_fit(image: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Shrink (never enlarge beyond `size`) keeping the aspect ratio; area averaging avoids aliasing."""
    from PIL import Image

    rows, columns = image.shape[:2]
    factor = size / max(rows, columns)
    new_size = (max(1, round(columns * factor)), max(1, round(rows * factor)))
    pil = Image.fromarray(image)
    resample = Image.Resampling.BOX if factor < 1 else Image.Resampling.BILINEAR
    return np.asarray(pil.resize(new_size, resample))


def _first_number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, bytes, int, float)) and hasattr(value, "__getitem__"):
        value = value[0] if len(value) else None  # multi-valued: the first value is the default
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def image_from_file(path: str | os.PathLike, size: int = DEFAULT_SIZE) -> np.ndarray:
    """A display-ready uint8 image (grey or RGB) of the middle frame of one DICOM file."""
    import pydicom

    path = str(path)
    try:
        ds = pydicom.dcmread(path, force=True)
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            raise DICOMFileError(path, "no pixel data to make a thumbnail from")
        from pydicom.pixels import pixel_array

        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        # YBR colour is converted to RGB by pydicom (raw=False)
        pixels = pixel_array(ds, index=frames // 2 if frames > 1 else None)
    except DICOMFileError:
        raise
    except (ValueError, TypeError, AttributeError, RuntimeError, NotImplementedError, OSError) as error:
        raise DICOMFileError(path, f"cannot decode pixels for a thumbnail: {error}") from error

    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if samples > 1 or pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        image = pixels if pixels.dtype == np.uint8 else window_to_uint8(pixels, *auto_window(pixels))
        return scale_to_fit(np.ascontiguousarray(image[..., :3]), size)

    if pixels.ndim == 3:  # a multi-frame read returned every frame after all
        pixels = pixels[pixels.shape[0] // 2]
    slope = _first_number(getattr(ds, "RescaleSlope", None)) or 1.0
    intercept = _first_number(getattr(ds, "RescaleIntercept", None)) or 0.0
    values = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    center = _first_number(ds.get("WindowCenter"))
    width = _first_number(ds.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        center, width = auto_window(values)
    image = window_to_uint8(values, center, width)
    if photometric == "MONOCHROME1":
        image = 255 - image
    return scale_to_fit(image, size)


def thumbnail_path(database_folder: str | os.PathLike, series_uid: str) -> Path:
    """Where the cached PNG of a series lives."""
    return Path(database_folder) / THUMBNAIL_FOLDER / f"{series_uid}.png"


def middle_file(database: Any, series_uid: str) -> str:
    """The file of the middle instance of a series (ordered by InstanceNumber, then path)."""
    instances = database.instances(series_uid)
    if not instances:
        raise NotFoundError(f"series {series_uid}: no instances in database {database.folder}")

    def order(row: dict) -> tuple[float, str]:
        number = _first_number(row.get("InstanceNumber"))
        return (number if number is not None else float("inf"), str(row.get("FilePath", "")))

    instances = sorted(instances, key=order)
    return str(instances[len(instances) // 2]["FilePath"])


def write_png(image: np.ndarray, path: Path) -> Path:
    """Write atomically, so a reader never sees half a PNG written by another worker."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(image)}.tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def series_thumbnail(database: Any, series_uid: str, size: int = DEFAULT_SIZE, force: bool = False) -> Path:
    """The cached thumbnail PNG of a series, made from its middle instance when missing."""
    path = thumbnail_path(database.folder, series_uid)
    if path.exists() and not force:
        return path
    source = middle_file(database, series_uid)
    image = image_from_file(source, size)
    write_png(image, path)
    logger.debug("Thumbnail of series %s from %s -> %s", series_uid, source, path)
    return path
