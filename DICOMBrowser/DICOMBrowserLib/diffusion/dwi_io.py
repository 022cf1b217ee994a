"""Writers for DWI volumes: Slicer-style NRRD DWI and FSL-style NIfTI + .bval + .bvec.

NIfTI: laid out as dcm2niix lays it out, so files can be compared voxel for voxel: i along
the DICOM row direction, j *against* the DICOM column direction (rows flipped), k in our slice
order (classic slices: ascending along row x column; mosaics: tile order, which follows the
CSA SliceNormalVector and may point the other way); the 4th axis is the volume. qform = sform = the RAS affine (code 1, scanner). `.bvec` holds the
gradients in the FSL convention for that affine (see gradients.fsl_bvecs), `.bval` the b-values;
numbers are written with 6 significant digits, as dcm2niix does.

NRRD: Slicer's DWI layout: the gradient axis first ("kinds: list domain domain domain"),
space left-posterior-superior, measurement frame identity (vectors in LPS), DWMRI_b-value = the
largest b, DWMRI_gradient_NNNN = unit direction * sqrt(b / b_max). `.nrrd` is one file; `.nhdr`
is the same header with the voxels beside it in `<name>.raw.gz`. The gzip stream carries no time
stamp, so the same node always gives the same bytes.

These are the only DWI writers: `save_dwi`, `DICOMBrowserLogic.save_dwi` and
`scene.save_volume` (hence `dicombrowser load --output`) all end here for .nrrd, .nhdr, .nii and
.nii.gz.
"""
from __future__ import annotations

import gzip
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DICOMBrowserError, LoadError
from .gradients import LPS_TO_RAS, fsl_bvecs, from_nrrd_gradients, nrrd_gradients
from .series import DWISeries

logger = logging.getLogger(__name__)

_NRRD_TYPES = {np.dtype("int8"): "signed char", np.dtype("uint8"): "unsigned char", np.dtype("int16"): "short",
               np.dtype("uint16"): "unsigned short", np.dtype("int32"): "int", np.dtype("uint32"): "unsigned int",
               np.dtype("float32"): "float", np.dtype("float64"): "double"}


def _number(value: float) -> str:
    return f"{value:.6g}" if value != 0 else "0"


def _check(series: DWISeries) -> None:
    """Validate before writing anything (highdicom's lesson: fail before a bad file exists)."""
    n = series.voxels.shape[0]
    if series.voxels.ndim != 4 or n == 0:
        raise DICOMBrowserError(f"DWI '{series.name}': expected voxels (volumes, k, j, i), got {series.voxels.shape}")
    if series.bvalues.shape != (n,) or series.gradients_lps.shape != (n, 3):
        raise DICOMBrowserError(f"DWI '{series.name}': {n} volumes but {series.bvalues.shape} b-values and "
                                f"{series.gradients_lps.shape} gradients")


# --- NIfTI + bval + bvec ------------------------------------------------------------------
def sidecar_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """out.nii.gz / out.nii -> (out.bval, out.bvec)."""
    path = Path(path)
    stem = path.name[:-7] if path.name.endswith(".nii.gz") else path.stem
    return path.with_name(stem + ".bval"), path.with_name(stem + ".bvec")


def nifti_layout(series: DWISeries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(array (i, j, k, volume), RAS affine, bvecs) in dcm2niix's layout (stored values when
    `series.rescale` is set); the array is a view, nothing is copied."""
    voxels = series.voxels[:, :, ::-1, :]  # flip rows: j now runs against the column direction
    affine = series.ijk_to_ras.copy()
    n_rows = series.voxels.shape[2]
    affine[:3, 3] = affine[:3, 3] + affine[:3, 1] * (n_rows - 1)
    affine[:3, 1] = -affine[:3, 1]
    array = np.transpose(voxels, (3, 2, 1, 0))  # (volume, k, j, i) -> (i, j, k, volume)
    return array, affine, fsl_bvecs(series.gradients_lps, affine)


def write_fsl(series: DWISeries, path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """Write out.nii(.gz) + out.bval + out.bvec; returns the three paths.

    The image is `nifti_layout`'s, written by `volumeio.write_nifti` (qform = sform = the affine,
    code 1; mm and seconds; `series.rescale` into scl_slope/scl_inter) slab by slab from the
    row-flipped view: no transposed copy of the volume, and no NIfTI library imported."""
    from ..volumeio import write_nifti

    _check(series)
    path = Path(path)
    array, affine, bvecs = nifti_layout(series)
    bval_path, bvec_path = sidecar_paths(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # write_nifti takes (volume, k, j, i), whose C order is NIfTI's (i, j, k, volume) on disk:
    # the layout's transpose, a view of the row-flipped voxels
    write_nifti(path, array.T, affine, rescale=series.rescale)
    bval_path.write_text(" ".join(_number(b) for b in series.bvalues) + "\n")
    bvec_path.write_text("".join(" ".join(_number(v) for v in bvecs[:, axis]) + "\n" for axis in range(3)))
    logger.info("Wrote %s (+ %s, %s): %d volumes", path, bval_path.name, bvec_path.name, len(series.bvalues))
    return path, bval_path, bvec_path


def read_fsl(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(array (i, j, k, volume) with scaling applied, RAS affine, bvals, bvecs (n, 3)) of a NIfTI + sidecars."""
    import nibabel

    image = nibabel.load(str(path))
    bval_path, bvec_path = sidecar_paths(path)
    bvals = np.loadtxt(bval_path, ndmin=1)
    bvecs = np.loadtxt(bvec_path, ndmin=2)
    if bvecs.shape[0] == 3 and bvecs.shape[1] != 3:
        bvecs = bvecs.T
    elif bvecs.shape == (3, 3):
        bvecs = bvecs.T  # rows are axes in FSL files
    return np.asanyarray(image.dataobj), image.affine, bvals, bvecs


# --- NRRD --------------------------------------------------------------------------------
def write_nrrd(series: DWISeries, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write a Slicer-style NRRD DWI, gzip-compressed by default: one file for .nrrd; for .nhdr
    the header, with the voxels in `<name>.raw.gz` (or `.raw`) beside it."""
    _check(series)
    if series.rescale is not None:  # NRRD has no scale fields: write modality values
        from dataclasses import replace

        from ..volumeio import modality_values

        series = replace(series, voxels=modality_values(series.voxels, series.rescale), rescale=None)
    path = Path(path)
    detached = path.suffix.lower() == ".nhdr"
    data_path = path.with_name(path.stem + (".raw.gz" if compress else ".raw")) if detached else None
    dtype = series.voxels.dtype
    if dtype not in _NRRD_TYPES:
        raise DICOMBrowserError(f"DWI '{series.name}': no NRRD type for voxel type {dtype}")
    ijk_to_lps = series.ijk_to_ras.copy()
    ijk_to_lps[:3, :] = LPS_TO_RAS @ ijk_to_lps[:3, :]
    n_volumes, nk, nj, ni = series.voxels.shape
    b_max, scaled = nrrd_gradients(series.gradients_lps, series.bvalues)

    def vector(v: np.ndarray) -> str:
        return "(" + ",".join(repr(float(x)) for x in v) + ")"

    lines = [
        "NRRD0005",
        "# Complete NRRD file format specification at:",
        "# http://teem.sourceforge.net/nrrd/format.html",
        f"type: {_NRRD_TYPES[dtype]}",
        "dimension: 4",
        "space: left-posterior-superior",
        f"sizes: {n_volumes} {ni} {nj} {nk}",
        "space directions: none " + " ".join(vector(ijk_to_lps[:3, axis]) for axis in range(3)),
        "kinds: list domain domain domain",
        "endian: little",
        f"encoding: {'gzip' if compress else 'raw'}",
        "space origin: " + vector(ijk_to_lps[:3, 3]),
        *([f"data file: {data_path.name}"] if detached else []),
        "measurement frame: (1,0,0) (0,1,0) (0,0,1)",
        "modality:=DWMRI",
        f"DWMRI_b-value:={_number(b_max)}",
    ]
    lines += [f"DWMRI_gradient_{index:04d}:= {' '.join(format(c, '.10g') for c in v)}" for index, v in enumerate(scaled)]
    data = np.ascontiguousarray(np.transpose(series.voxels, (1, 2, 3, 0))).astype(dtype.newbyteorder("<"), copy=False)
    payload = data.tobytes()
    if compress:
        payload = gzip.compress(payload, compresslevel=1, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("\n".join(lines) + "\n\n").encode("ascii")
    if detached:
        data_path.write_bytes(payload)
        path.write_bytes(header[:-1])  # a detached header ends with its last field's newline
    else:
        with open(path, "wb") as handle:
            handle.write(header)
            handle.write(payload)
    logger.info("Wrote %s: %d gradients, b max %s", path, n_volumes, _number(b_max))
    return path


def read_nrrd(path: str | os.PathLike) -> DWISeries:
    """Read back a NRRD DWI written by us or Slicer (.nrrd, or .nhdr with its data file; raw or
    gzip; gradient axis first)."""
    raw = Path(path).read_bytes()
    header_end = raw.find(b"\n\n")
    if header_end < 0 and b"data file:" in raw:
        header_end = len(raw)  # a detached header may end without a blank line
    if header_end < 0:
        raise LoadError(f"{path}: no NRRD header end")
    fields: dict[str, str] = {}
    keys: dict[str, str] = {}
    for line in raw[:header_end].decode("latin-1").splitlines()[1:]:
        if line.startswith("#"):
            continue
        if ":=" in line:
            key, value = line.split(":=", 1)
            keys[key.strip()] = value.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    dtype = {v: k for k, v in _NRRD_TYPES.items()}[fields["type"]]
    sizes = [int(s) for s in fields["sizes"].split()]
    kinds = fields.get("kinds", "").split()
    if kinds and kinds[0] not in ("list", "vector"):
        raise LoadError(f"{path}: gradient axis not first (kinds {kinds})")
    payload = raw[header_end + 2:]
    if "data file" in fields:
        payload = (Path(path).parent / fields["data file"]).read_bytes()
    if fields.get("encoding") in ("gzip", "gz"):
        payload = gzip.decompress(payload)
    big = fields.get("endian", "little") == "big"
    data = np.frombuffer(payload, dtype=dtype.newbyteorder(">" if big else "<"))
    data = data.reshape(sizes[::-1])  # (k, j, i, volume)
    vectors = [np.array([float(x) for x in re.findall(r"[-+0-9.eE]+", part)])
               for part in re.findall(r"\(([^)]*)\)", fields["space directions"])]
    origin = np.array([float(x) for x in re.findall(r"[-+0-9.eE]+", fields["space origin"])])
    ijk_to_lps = np.eye(4)
    for axis in range(3):
        ijk_to_lps[:3, axis] = vectors[axis]
    ijk_to_lps[:3, 3] = origin
    space = fields.get("space", "left-posterior-superior")
    to_lps = np.eye(3) if space in ("left-posterior-superior", "LPS") else LPS_TO_RAS
    ijk_to_lps[:3, :] = to_lps @ ijk_to_lps[:3, :]
    frame = np.eye(3)
    if "measurement frame" in fields:
        columns = [np.array([float(x) for x in part.split(",")])
                   for part in re.findall(r"\(([^)]*)\)", fields["measurement frame"])]
        frame = np.array(columns).T  # NRRD lists the frame's column vectors
    count = sizes[0]
    scaled = np.array([[float(x) for x in keys[f"DWMRI_gradient_{i:04d}"].split()] for i in range(count)])
    bvalues, gradients = from_nrrd_gradients(float(keys.get("DWMRI_b-value", 0)), scaled)
    gradients = (to_lps @ frame @ gradients.T).T
    ijk_to_ras = ijk_to_lps.copy()
    ijk_to_ras[:3, :] = LPS_TO_RAS @ ijk_to_ras[:3, :]
    return DWISeries(voxels=np.transpose(data, (3, 0, 1, 2)), ijk_to_ras=ijk_to_ras, bvalues=bvalues,
                     gradients_lps=gradients, warnings=[], files=[str(path)], name=Path(path).stem)


# --- by extension ------------------------------------------------------------------------
#: the extensions save_dwi writes
DWI_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz")


def save_dwi(node_or_series: Any, path: str | os.PathLike) -> list[Path]:
    """Write a DWI node (vtkMRMLDiffusionWeightedVolumeNode) or DWISeries by extension:
    .nrrd -> NRRD DWI; .nhdr -> NRRD header + .raw.gz; .nii/.nii.gz -> NIfTI + .bval + .bvec.
    Returns the files written, the one named by `path` first."""
    name = str(path).lower()
    if not name.endswith(DWI_SUFFIXES):
        raise DICOMBrowserError(f"{path}: unknown DWI output format (use .nrrd, .nhdr, .nii or .nii.gz)")
    series = node_or_series
    if not isinstance(series, DWISeries):
        from .node import series_from_node

        series = series_from_node(node_or_series)
    if name.endswith(".nhdr"):
        header = write_nrrd(series, path)
        return [header, header.with_name(header.stem + ".raw.gz")]
    if name.endswith(".nrrd"):
        return [write_nrrd(series, path)]
    return list(write_fsl(series, path))
