"""The MRML scene and its nodes (stub: signatures fixed, implementation follows)."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def new_scene() -> Any:
    """An empty vtkMRMLScene."""
    raise NotImplementedError


def add_scalar_volume(scene: Any, voxels_kji: np.ndarray, ijk_to_ras: np.ndarray, name: str, *,
                      series_uid: str, instance_uids: list[str], window_level: tuple[float, float] | None = None,
                      dicom_identity: dict[str, str] | None = None) -> Any:
    """A vtkMRMLScalarVolumeNode (image origin 0, spacing 1; geometry in the IJK-to-RAS matrix)."""
    raise NotImplementedError


def add_volume_sequence(scene: Any, volumes_tkji: np.ndarray, ijk_to_ras: np.ndarray, name: str, *,
                        series_uid: str, instance_uids: list[str], index_values: list[float] | None = None,
                        index_name: str = "time", index_unit: str = "s",
                        window_level: tuple[float, float] | None = None,
                        dicom_identity: dict[str, str] | None = None) -> Any:
    """A vtkMRMLSequenceNode of scalar volumes (4D) plus a sequence browser; returns the sequence node."""
    raise NotImplementedError
