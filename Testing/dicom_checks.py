"""Checks shared by the export and de-identification tests: dciodvfy (dicom3tools) and volume comparison.

Not a test module: the helpers validate written objects with the standard's own rules as
dicom3tools encodes them, and compare volumes in patient space (a loader may number slices the
other way round; the voxels at each point must be the same).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


def require_dciodvfy() -> str:
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy (Debian dicom3tools) not installed; Utilities/setup.sh --test installs it")
    return tool


def dciodvfy(path: str | Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) that dciodvfy reports for one file."""
    run = subprocess.run([require_dciodvfy(), str(path)], capture_output=True, text=True, timeout=120)
    lines = (run.stdout + run.stderr).splitlines()
    return [l for l in lines if l.startswith("Error")], [l for l in lines if l.startswith("Warning")]


def assert_valid(paths, allowed_warnings: tuple[str, ...] = ()) -> set[str]:
    """Every file passes dciodvfy with 0 errors; returns the distinct warnings (for the docs)."""
    warnings: set[str] = set()
    for path in paths:
        errors, found = dciodvfy(path)
        assert not errors, f"{path}: dciodvfy errors: {errors}"
        warnings.update(found)
    return warnings


def same_volume(voxels_a: np.ndarray, ijk_to_ras_a: np.ndarray, voxels_b: np.ndarray, ijk_to_ras_b: np.ndarray,
                tolerance_mm: float = 1e-2, value_tolerance: float = 0.0) -> None:
    """Assert that b holds a's voxels at the same points (RAS mm), allowing axes numbered the other
    way round. Arrays are (k, j, i) or (t, k, j, i)."""
    transform = np.linalg.inv(ijk_to_ras_a) @ ijk_to_ras_b  # b's index -> a's index
    rotation = np.round(transform[:3, :3])
    assert np.allclose(np.abs(rotation), np.eye(3), atol=1e-3), f"axes differ: b->a index transform {transform[:3, :3]}"
    voxels = np.asarray(voxels_b)
    counts_ijk = voxels.shape[-1:-4:-1]  # (i, j, k) sizes
    flip = np.eye(4)
    for axis in range(3):
        if rotation[axis, axis] < 0:
            voxels = np.flip(voxels, axis=voxels.ndim - 1 - axis)
            flip[axis, axis] = -1.0
            flip[axis, 3] = counts_ijk[axis] - 1
    matrix_b = np.asarray(ijk_to_ras_b) @ flip  # b's matrix for the flipped numbering
    assert np.allclose(matrix_b, ijk_to_ras_a, atol=tolerance_mm), f"geometry differs:\n{matrix_b}\nvs\n{ijk_to_ras_a}"
    assert voxels.shape == np.asarray(voxels_a).shape, f"shape {voxels.shape} != {np.asarray(voxels_a).shape}"
    difference = np.max(np.abs(voxels.astype(np.float64) - np.asarray(voxels_a, dtype=np.float64)))
    assert difference <= value_tolerance, f"voxels differ by up to {difference}"


def volume_arrays(node):
    """(voxels, IJK-to-RAS) of a loaded volume or volume sequence node."""
    from DICOMBrowser.DICOMBrowserLib import scene

    if node.IsA("vtkMRMLSequenceNode"):
        return scene.sequence_array(node)
    return scene.array_from_volume(node), scene.ijk_to_ras_of(node)


def export_json(cli_runner, *args) -> dict:
    """`dicombrowser export ARGS... --json` through the CLI; its JSON summary."""
    import json

    result = cli_runner("export", *args, "--json")
    assert result.exit_code == 0, result.output + (repr(result.exception) if result.exception else "")
    return json.loads(result.output[result.output.index("{"):])
