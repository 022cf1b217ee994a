"""Diffusion MRI from DICOM: vendor tags, Siemens CSA and mosaics, gradient frames, DWI writers.

    plan_dwi(files) -> DWIPlan         headers only: volumes, b-values, gradients (LPS), warnings
    read_dwi(files) -> DWISeries       plus the voxels (volumes, k, j, i) and IJK-to-RAS
    add_dwi_node(scene, series)        a vtkMRMLDiffusionWeightedVolumeNode
    save_dwi(node_or_series, path)     .nrrd (Slicer NRRD DWI) or .nii/.nii.gz (+ .bval/.bvec)
"""
from .series import DWIPlan, DWISeries, plan_dwi, read_dwi
from .dwi_io import save_dwi, write_fsl, write_nrrd, read_nrrd, read_fsl

__all__ = ["DWIPlan", "DWISeries", "plan_dwi", "read_dwi", "save_dwi", "write_fsl", "write_nrrd",
           "read_nrrd", "read_fsl"]
