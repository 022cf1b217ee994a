"""Gradient frames and the conventions of each output.

Frames, stated once:
- LPS: the DICOM patient frame (x to the patient's Left, y Posterior, z Superior). Every vendor
  reader in `vendors` converts its vectors into LPS; `DWISeries.gradients_lps` holds them.
- RAS: Slicer's world frame, RAS = diag(-1, -1, 1) @ LPS.
- FSL / dcm2niix bvec: the vector's components along the NIfTI *voxel axes* (i, j, k) of the file
  written beside it, with the first component negated when the NIfTI affine has a positive
  determinant (FSL's radiological voxel convention). This is how dcm2niix writes .bvec.
- NRRD DWI (Slicer): vectors in the "measurement frame" of the header; we write space
  left-posterior-superior, measurement frame identity (so vectors are LPS), each vector scaled by
  sqrt(b / b_max) and DWMRI_b-value = b_max.
"""
from __future__ import annotations

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def lps_to_ras(vectors: np.ndarray) -> np.ndarray:
    """(n, 3) vectors from LPS to RAS (and back: the map is its own inverse)."""
    return np.asarray(vectors, dtype=float) @ LPS_TO_RAS


ras_to_lps = lps_to_ras


def _axes(affine: np.ndarray) -> np.ndarray:
    """Orthonormal voxel axes (columns) of a 4x4 affine: i and j as given, k along i x j with the
    sign of the affine's k column (as dcm2niix rotates vectors: by the slice normal, not by the
    slice-to-slice step, which may be slightly oblique or tilted)."""
    matrix = np.asarray(affine, dtype=float)[:3, :3]
    i = matrix[:, 0] / np.linalg.norm(matrix[:, 0])
    j = matrix[:, 1] - np.dot(matrix[:, 1], i) * i
    j /= np.linalg.norm(j)
    k = np.cross(i, j)
    if np.dot(k, matrix[:, 2]) < 0:
        k = -k
    return np.column_stack([i, j, k])


def fsl_bvecs(gradients_lps: np.ndarray, nifti_affine_ras: np.ndarray) -> np.ndarray:
    """World (LPS) unit vectors -> FSL/dcm2niix bvecs (n, 3) for a NIfTI with this RAS affine."""
    axes = _axes(nifti_affine_ras)
    vectors = lps_to_ras(gradients_lps) @ axes  # components along the voxel axes
    if np.linalg.det(axes) > 0:
        vectors[:, 0] = -vectors[:, 0]
    return _renormalize(vectors)


def world_from_fsl_bvecs(bvecs: np.ndarray, nifti_affine_ras: np.ndarray) -> np.ndarray:
    """FSL bvecs (n, 3) of a NIfTI with this RAS affine -> LPS unit vectors (the inverse of fsl_bvecs)."""
    axes = _axes(nifti_affine_ras)
    vectors = np.array(bvecs, dtype=float, copy=True)
    if np.linalg.det(axes) > 0:
        vectors[:, 0] = -vectors[:, 0]
    return _renormalize(ras_to_lps(vectors @ axes.T))


def _renormalize(vectors: np.ndarray) -> np.ndarray:
    """Unit length for non-zero vectors (a skewed affine must not change a direction's length)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.where(norms > 1e-6, vectors / np.where(norms > 1e-6, norms, 1.0), 0.0)


def nrrd_gradients(gradients: np.ndarray, bvalues: np.ndarray) -> tuple[float, np.ndarray]:
    """(b_max, vectors scaled by sqrt(b / b_max)): how Slicer's NRRD encodes several b-values."""
    bvalues = np.asarray(bvalues, dtype=float)
    b_max = float(bvalues.max()) if bvalues.size else 0.0
    if b_max <= 0:
        return 0.0, np.zeros_like(np.asarray(gradients, dtype=float))
    scale = np.sqrt(np.clip(bvalues, 0, None) / b_max)[:, None]
    return b_max, np.asarray(gradients, dtype=float) * scale


def from_nrrd_gradients(b_max: float, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of nrrd_gradients: (b-values, unit vectors) from DWMRI_b-value and scaled vectors."""
    vectors = np.asarray(vectors, dtype=float)
    norms = np.linalg.norm(vectors, axis=1)
    bvalues = b_max * norms ** 2
    return bvalues, _renormalize(vectors)
