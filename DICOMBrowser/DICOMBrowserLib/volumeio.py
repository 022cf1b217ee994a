"""Writing scalar volumes straight from the array that holds them: NIfTI-1 and NRRD.

Why our own writers: SimpleITK's NIfTI writer (the path `load --output` took) copied the volume
twice and needed a GetImageFromArray copy before that; nibabel's writer checks and may rescale.
Here the header is packed field by field as nifti1.h declares it (no NIfTI library imported on
the fast path; tests read it back with nibabel) and the voxel bytes are written from the (k, j, i) array as they are: its C order is
NIfTI's and NRRD's on-disk order (i fastest), so nothing is transposed or copied, and a .gz is
compressed slab by slab. `write_nifti_slabs` takes the frames as they are read instead (a
converter streaming a series from its files never holds the whole volume).

Frames: `ijk_to_ras` maps (i, j, k) voxel indices to RAS millimetres (NIfTI's frame, qform and
sform code 1, "scanner"); NRRD is written in LPS (`space: left-posterior-superior`), as Slicer's
NRRD writer does. Integer data keeps its dtype; `rescale=(slope, intercept)` goes into NIfTI's
scl_slope/scl_inter (the stored values, as dcm2niix writes them). NRRD has no scale fields, so
NRRD callers pass modality values.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .errors import DICOMBrowserError

#: bytes per write; a slab is compressed and written before the next is touched
SLAB_BYTES = 16 * 2**20
#: gzip level of .nii.gz and NRRD's gzip encoding (dcm2niix's and zlib's default)
GZIP_LEVEL = 6
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_NRRD_TYPES = {"int8": "int8", "uint8": "uint8", "int16": "int16", "uint16": "uint16", "int32": "int32",
               "uint32": "uint32", "int64": "int64", "uint64": "uint64", "float32": "float", "float64": "double"}


def output_format(path: str | os.PathLike) -> str:
    """'nii', 'nii.gz', 'nrrd', 'nhdr' or '' from a file name."""
    name = str(path).lower()
    for suffix in ("nii.gz", "nii", "nrrd", "nhdr"):
        if name.endswith("." + suffix):
            return suffix
    return ""


def _little_endian(voxels: np.ndarray) -> np.ndarray:
    if voxels.dtype.byteorder == ">" or (voxels.dtype.byteorder == "=" and np.little_endian is False):
        return voxels.astype(voxels.dtype.newbyteorder("<"))
    return voxels


def _slabs(voxels: np.ndarray) -> Iterable[memoryview]:
    """The voxel bytes in C order, a few MB at a time (views when the array is contiguous)."""
    flat_frames = voxels.reshape(-1, *voxels.shape[-2:]) if voxels.ndim >= 2 else voxels.reshape(1, -1)
    frame_bytes = max(flat_frames[0].nbytes, 1) if len(flat_frames) else 1
    step = max(1, SLAB_BYTES // frame_bytes)
    for start in range(0, len(flat_frames), step):
        slab = np.ascontiguousarray(flat_frames[start:start + step])  # no copy when already contiguous
        yield memoryview(slab).cast("B")


def _write_bytes(path: Path, header: bytes, voxels: "np.ndarray | Iterable[np.ndarray]", compress: bool) -> None:
    """Header then voxel bytes (an array, or its slabs in order as they are read); a partial file
    is removed when writing fails (no half-written output)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    slabs = _slabs(voxels) if isinstance(voxels, np.ndarray) else \
        (memoryview(np.ascontiguousarray(_little_endian(slab))).cast("B") for slab in voxels)
    try:
        if compress:
            with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as out:
                out.write(header)
                for slab in slabs:
                    out.write(slab)
        else:
            with open(path, "wb") as out:
                out.write(header)
                for slab in slabs:
                    out.write(slab)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


#: NIfTI-1 datatype codes
_NIFTI_TYPES = {"uint8": 2, "int16": 4, "int32": 8, "float32": 16, "float64": 64, "int8": 256, "uint16": 512,
                "uint32": 768, "int64": 1024, "uint64": 1280}
#: the 348-byte NIfTI-1 header, little endian, field by field as nifti1.h declares them
_NIFTI_LAYOUT = struct.Struct("<i10s18sihcc8h3fhhhh8ffffhcBffffii80s24shh3f3f4f4f4f16s4s")
NIFTI_MM_SEC = 2 | 8  # xyzt_units: millimetres and seconds


def _quaternion(affine: np.ndarray) -> tuple[tuple[float, float, float], float, list[float]]:
    """(quatern b, c, d), qfac and the voxel sizes of an affine, as nifti1_io's nifti_mat44_to_quatern."""
    columns = np.array(affine[:3, :3], dtype=float)
    sizes = np.linalg.norm(columns, axis=0)
    sizes[sizes == 0] = 1.0
    rotation = columns / sizes
    u, _, vt = np.linalg.svd(rotation)  # nearest orthogonal matrix (our matrices already are)
    rotation = u @ vt
    qfac = 1.0
    if np.linalg.det(rotation) < 0:
        qfac = -1.0
        rotation[:, 2] = -rotation[:, 2]
    r = rotation
    a = r[0, 0] + r[1, 1] + r[2, 2] + 1.0
    if a > 0.5:
        a = 0.5 * np.sqrt(a)
        b, c, d = 0.25 * (r[2, 1] - r[1, 2]) / a, 0.25 * (r[0, 2] - r[2, 0]) / a, 0.25 * (r[1, 0] - r[0, 1]) / a
    else:
        xd, yd, zd = 1.0 + r[0, 0] - (r[1, 1] + r[2, 2]), 1.0 + r[1, 1] - (r[0, 0] + r[2, 2]), \
            1.0 + r[2, 2] - (r[0, 0] + r[1, 1])
        if xd > 1.0:
            b = 0.5 * np.sqrt(xd)
            c, d, a = 0.25 * (r[0, 1] + r[1, 0]) / b, 0.25 * (r[0, 2] + r[2, 0]) / b, 0.25 * (r[2, 1] - r[1, 2]) / b
        elif yd > 1.0:
            c = 0.5 * np.sqrt(yd)
            b, d, a = 0.25 * (r[0, 1] + r[1, 0]) / c, 0.25 * (r[1, 2] + r[2, 1]) / c, 0.25 * (r[0, 2] - r[2, 0]) / c
        else:
            d = 0.5 * np.sqrt(zd)
            b, c, a = 0.25 * (r[0, 2] + r[2, 0]) / d, 0.25 * (r[1, 2] + r[2, 1]) / d, 0.25 * (r[1, 0] - r[0, 1]) / d
        if a < 0:
            b, c, d = -b, -c, -d
    return (float(b), float(c), float(d)), qfac, [float(v) for v in sizes]


def nifti_header(shape_ijk: Sequence[int], dtype: np.dtype, ijk_to_ras: np.ndarray,
                 rescale: tuple[float, float] | None = None, repetition_time: float | None = None,
                 description: str = "") -> bytes:
    """The 348-byte NIfTI-1 header (+ 4 bytes: no extensions) for data of `shape_ijk` (3D or 4D, i
    fastest): the RAS affine in qform (quaternion) and sform, both code 1; mm and seconds;
    scl_slope/scl_inter from `rescale`; TR in pixdim[4] for 4D. Written by hand (nifti1.h) so
    the fast path imports no NIfTI library; tests read it back with nibabel."""
    dtype = np.dtype(dtype)
    code = _NIFTI_TYPES.get(dtype.name)
    if code is None:
        raise DICOMBrowserError(f"no NIfTI data type for voxels of {dtype}")
    affine = np.asarray(ijk_to_ras, dtype=float)
    (qb, qc, qd), qfac, sizes = _quaternion(affine)
    dims = [len(shape_ijk), *[int(n) for n in shape_ijk]] + [1] * (7 - len(shape_ijk))
    pixdim = [qfac, *sizes, float(repetition_time or 1.0) if len(shape_ijk) > 3 else 1.0, 1.0, 1.0, 1.0]
    slope, intercept = (float(rescale[0]), float(rescale[1])) if rescale is not None else (1.0, 0.0)
    header = _NIFTI_LAYOUT.pack(
        348, b"", b"", 0, 0, b"r", b"\0", *dims, 0.0, 0.0, 0.0, 0, code, dtype.itemsize * 8, 0, *pixdim,
        352.0, slope, intercept, 0, b"\0", NIFTI_MM_SEC, 0.0, 0.0, 0.0, 0.0, 0, 0,
        description.encode("ascii", "replace")[:79], b"", 1, 1, qb, qc, qd, *affine[:3, 3],
        *affine[0, :4], *affine[1, :4], *affine[2, :4], b"", b"n+1\0")
    return header + b"\0\0\0\0"


def write_nifti(path: str | os.PathLike, voxels: np.ndarray, ijk_to_ras: np.ndarray, *,
                rescale: tuple[float, float] | None = None, repetition_time: float | None = None,
                description: str = "") -> Path:
    """Write (k, j, i) or (t, k, j, i) voxels as .nii or .nii.gz (by the name); returns the path."""
    path = Path(path)
    if voxels.ndim not in (3, 4):
        raise DICOMBrowserError(f"{path}: NIfTI needs 3D or 4D voxels, got shape {voxels.shape}")
    voxels = _little_endian(voxels)
    header = nifti_header(voxels.shape[::-1], voxels.dtype, ijk_to_ras, rescale, repetition_time, description)
    _write_bytes(path, header, voxels, compress=str(path).lower().endswith(".gz"))
    return path


def write_nifti_slabs(path: str | os.PathLike, shape: Sequence[int], dtype: np.dtype, slabs: Iterable[np.ndarray],
                      ijk_to_ras: np.ndarray, *, rescale: tuple[float, float] | None = None,
                      repetition_time: float | None = None, description: str = "") -> Path:
    """`write_nifti` for voxels that arrive a slab at a time (frames of (k, j, i) or (t, k, j, i)
    `shape`, in C order): each slab is written before the next is read, so the volume is never
    held whole. The bytes must add up to `shape`; a short or long stream is an error and leaves
    no file."""
    path = Path(path)
    if len(shape) not in (3, 4):
        raise DICOMBrowserError(f"{path}: NIfTI needs 3D or 4D voxels, got shape {tuple(shape)}")
    dtype = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)
    header = nifti_header(tuple(shape)[::-1], dtype, ijk_to_ras, rescale, repetition_time, description)
    expected = int(np.prod(shape)) * dtype.itemsize
    written = [0]

    def counted() -> Iterator[np.ndarray]:
        for slab in slabs:
            written[0] += slab.nbytes
            if written[0] > expected:
                raise DICOMBrowserError(f"{path}: more voxel data than the {tuple(shape)} volume holds")
            yield slab
        if written[0] != expected:
            raise DICOMBrowserError(f"{path}: {written[0]} bytes of voxels for a {tuple(shape)} volume "
                                    f"of {expected} bytes")

    _write_bytes(path, header, counted(), compress=str(path).lower().endswith(".gz"))
    return path


def write_nrrd(path: str | os.PathLike, voxels: np.ndarray, ijk_to_ras: np.ndarray, *, compress: bool = True) -> Path:
    """Write (k, j, i) voxels (modality values) as a NRRD in LPS, or (t, k, j, i) with the volume
    as the slowest axis (`kinds: domain domain domain list`); gzip encoding by default."""
    path = Path(path)
    if voxels.ndim not in (3, 4):
        raise DICOMBrowserError(f"{path}: NRRD needs 3D or 4D voxels, got shape {voxels.shape}")
    type_name = _NRRD_TYPES.get(np.dtype(voxels.dtype).name)
    if type_name is None:
        raise DICOMBrowserError(f"{path}: no NRRD type for voxels of {voxels.dtype}")
    voxels = _little_endian(voxels)
    lps = LPS_FROM_RAS @ np.asarray(ijk_to_ras, dtype=float)

    def vector(values) -> str:
        return "(" + ",".join(f"{float(v):.17g}" for v in values) + ")"

    directions = " ".join(vector(lps[:3, axis]) for axis in range(3))
    sizes = " ".join(str(n) for n in voxels.shape[::-1])
    four = voxels.ndim == 4
    lines = ["NRRD0004", "# written by DICOMBrowser (volumeio.write_nrrd)", f"type: {type_name}",
             f"dimension: {voxels.ndim}", "space: left-posterior-superior", f"sizes: {sizes}",
             f"space directions: {directions}" + (" none" if four else ""),
             "kinds: domain domain domain" + (" list" if four else ""), "endian: little",
             f"encoding: {'gzip' if compress else 'raw'}", f"space origin: {vector(lps[:3, 3])}"]
    header = ("\n".join(lines) + "\n\n").encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not compress:
        _write_bytes(path, header, voxels, compress=False)
        return path
    try:  # NRRD's gzip encoding: a gzip stream after the header
        with open(path, "wb") as out:
            out.write(header)
            compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
            for slab in _slabs(voxels):
                out.write(compressor.compress(slab))
            out.write(compressor.flush())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def write_volume(path: str | os.PathLike, voxels: np.ndarray, ijk_to_ras: np.ndarray, *,
                 rescale: tuple[float, float] | None = None, repetition_time: float | None = None) -> Path:
    """By extension: .nii / .nii.gz (stored values + scl fields) or .nrrd (modality values: a
    `rescale` is applied first, into float32 unless it is the identity)."""
    kind = output_format(path)
    if kind in ("nii", "nii.gz"):
        return write_nifti(path, voxels, ijk_to_ras, rescale=rescale, repetition_time=repetition_time)
    if kind == "nrrd":
        if rescale is not None and tuple(rescale) != (1.0, 0.0):
            voxels = modality_values(voxels, rescale)
        return write_nrrd(path, voxels, ijk_to_ras)
    raise DICOMBrowserError(f"{path}: unknown volume format (use .nii, .nii.gz or .nrrd)")


def modality_values(voxels: np.ndarray, rescale: tuple[float, float]) -> np.ndarray:
    """slope * stored + intercept without a float64 copy (int16 kept when that is exact)."""
    from .pixelreader import apply_rescale

    flat = voxels.reshape(-1, *voxels.shape[-2:])
    return apply_rescale(flat, rescale[0], rescale[1]).reshape(voxels.shape)
