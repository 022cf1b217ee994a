"""Parametric maps (float or integer pixel data with a Real World Value Mapping) as volumes in their units.

highdicom reads the object (`hd.imread` + `get_volume`): frames placed by their plane positions,
the first Real World Value Mapping applied (slope/intercept or LUT), which is what makes stored
values a quantity (ADC in um2/s, Ktrans in /min, ...). The mapping's MeasurementUnitsCodeSequence
is the volume's unit. Coordinates: highdicom's affine maps (slice, row, column) to LPS mm; the
matrix returned here is IJK-to-RAS (i = column).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DICOMFileError, LoadError
from .geometry import LPS_TO_RAS

PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"


@dataclass
class QuantityVolume:
    """Values (k, j, i) float32 in `units` (UCUM code and meaning) and where they lie (RAS mm)."""

    values: np.ndarray
    ijk_to_ras: np.ndarray
    units_code: str
    units_meaning: str
    quantity: str  # the mapping's LUTExplanation or LUTLabel


def mapping_of(dataset: object) -> object | None:
    """The first Real World Value Mapping item (shared functional groups, first frame, or top level)."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = getattr(dataset, groups, None)
        if items:
            mapping = items[0].get("RealWorldValueMappingSequence")
            if mapping:
                return mapping[0]
    mapping = getattr(dataset, "RealWorldValueMappingSequence", None)
    return mapping[0] if mapping else None


def read_parametric_map(path: str) -> QuantityVolume:
    """The map's values in its real-world units on its own grid. Raises DICOMFileError / LoadError."""
    import highdicom as hd

    try:
        image = hd.imread(str(path))
    except (ValueError, AttributeError, KeyError, OSError) as error:
        raise DICOMFileError(str(path), f"not a readable parametric map: {error}") from error
    mapping = mapping_of(image)
    if mapping is None:
        raise DICOMFileError(str(path), "RealWorldValueMappingSequence is missing: the values have no units")
    try:
        volume = image.get_volume(apply_real_world_transform=True, dtype=np.float32, allow_missing_positions=True)
    except (ValueError, RuntimeError) as error:
        raise LoadError(f"{path}: frames do not form one regular 3D grid ({error})") from error
    values = np.asarray(volume.array, dtype=np.float32)
    if values.ndim != 3:
        raise LoadError(f"{path}: parametric map of shape {values.shape} is not one scalar volume")
    affine = np.asarray(volume.affine, dtype=float)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, 0], ijk_to_lps[:3, 1], ijk_to_lps[:3, 2] = affine[:3, 2], affine[:3, 1], affine[:3, 0]
    ijk_to_lps[:3, 3] = affine[:3, 3]
    units = mapping.get("MeasurementUnitsCodeSequence")
    code, meaning = (str(units[0].CodeValue), str(units[0].get("CodeMeaning", ""))) if units else ("1", "no units")
    quantity = str(mapping.get("LUTExplanation", "") or mapping.get("LUTLabel", "") or "")
    return QuantityVolume(np.ascontiguousarray(values), LPS_TO_RAS @ ijk_to_lps, code, meaning, quantity)
