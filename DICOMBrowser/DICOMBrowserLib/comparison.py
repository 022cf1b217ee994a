"""Differential comparison with dcm2niix: the same series through our loading and through dcm2niix.

Why: a reference implementation run on real data finds what our own tests cannot imagine. The
comparison looks only at files a user gets (our `load --output x.nii.gz`, with x.bval/x.bvec for
DWI, against dcm2niix's NIfTI and FSL sidecars), so it checks the whole path, writer included.

Frames and conventions:
- Both NIfTI affines map voxel indices to RAS millimetres. dcm2niix may store the voxel axes in
  another order or direction than we do, so `grid_mapping` finds the signed axis permutation and
  integer shift that take our voxel (i, j, k) to theirs; everything else is compared after it.
- Voxels are compared in physical units: nibabel's `get_fdata` applies scl_slope/scl_inter on
  both sides.
- .bval/.bvec are compared as written (FSL layout: one row per axis, vectors in the image frame).
  Our writer claims dcm2niix's layout, so they must agree without any mapping; when they differ
  only by the grid's axis permutation/flip the verdict says so.

One verdict per series (`SeriesVerdict`): ok only when every dcm2niix output of the series has a
counterpart among our outputs and equals it within the tolerances below.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .errors import DICOMBrowserError

logger = logging.getLogger(__name__)

#: translation and voxel-corner positions (mm)
AFFINE_TOLERANCE_MM = 1e-2
#: unit direction cosines (dimensionless)
DIRECTION_TOLERANCE = 1e-3
#: b-values (s/mm^2) and gradient vector components
GRADIENT_TOLERANCE = 1e-3
#: physical voxel values: |ours - theirs| <= atol + rtol * |theirs| (float32 outputs on one side)
VOXEL_ATOL = 1e-3
VOXEL_RTOL = 1e-5
#: seconds one dcm2niix run may take
DCM2NIIX_TIMEOUT = 300

#: dcm2niix's file-name suffixes for the several outputs of one series (echo, phase, field map,
#: derived and tilt-corrected images, per-instance splits); used when a series has one output
_SUFFIX = re.compile(r"((?:_(?:e\d+|ph|real|imaginary|fieldmaphz|ADC|TRACEW|Eq_\d+|Tilt_\d+|i\d{5}|MoCo))+)$")


class ComparisonError(DICOMBrowserError):
    """Two outputs cannot be compared (grids unrelated, files unreadable) or dcm2niix cannot run."""


# --- outputs -----------------------------------------------------------------------------------
@dataclass
class NiftiOutput:
    """One NIfTI file, its FSL sidecars when present, and what it stands for.

    `suffix` is dcm2niix's file-name suffix ("_e1", "_ph", "_fieldmaphz", "" for the plain
    output) or, for ours, the loadable's `extra["suffix"]`; None when unknown.
    """

    path: Path
    label: str = ""
    suffix: str | None = None
    bval: Path | None = None
    bvec: Path | None = None

    @classmethod
    def at(cls, path: str | os.PathLike, label: str | None = None, suffix: str | None = None) -> "NiftiOutput":
        """The NIfTI at `path`, with x.bval / x.bvec beside it when they exist."""
        path = Path(path)
        stem = nifti_stem(path)
        bval, bvec = path.with_name(stem + ".bval"), path.with_name(stem + ".bvec")
        return cls(path=path, label=label if label is not None else stem, suffix=suffix,
                   bval=bval if bval.exists() else None, bvec=bvec if bvec.exists() else None)


def nifti_stem(path: str | os.PathLike) -> str:
    """File name without .nii or .nii.gz."""
    name = Path(path).name
    for ending in (".nii.gz", ".nii"):
        if name.lower().endswith(ending):
            return name[: -len(ending)]
    return Path(path).stem


def dcm2niix_suffixes(stems: Sequence[str], series_description: str = "") -> list[str]:
    """dcm2niix's suffix of each output file stem of one series ("" for the plain output).

    Several outputs share the series' base name, so the suffix is what follows their common
    prefix (cut back to an underscore). A single output's base ends with the series description
    (as dcm2niix writes it, other characters replaced by "_") when the name pattern holds it;
    otherwise only the suffixes dcm2niix is known to write are recognised.
    """
    if len(stems) > 1:
        prefix = os.path.commonprefix(list(stems))
        if not all(s == prefix or s[len(prefix)] == "_" for s in stems):
            prefix = prefix[: prefix.rfind("_")] if "_" in prefix else ""
        return [s[len(prefix):] for s in stems]
    stem = stems[0]
    written = re.sub(r"[^A-Za-z0-9_.-]", "_", series_description.strip())
    if written and written in stem:
        rest = stem[stem.rindex(written) + len(written):]
        if rest == "" or _SUFFIX.fullmatch(rest):
            return [rest]
    found = _SUFFIX.search(stem)
    return [found.group(1) if found else ""]


# --- grids -------------------------------------------------------------------------------------
@dataclass
class GridMapping:
    """Our voxel (i, j, k) -> the reference's: axis `axes[c]` of theirs holds our axis c, with
    `signs[c]`; `start[r]` is the first reference index our grid covers along their axis r."""

    axes: tuple[int, int, int]
    signs: tuple[int, int, int]
    start: tuple[int, int, int]
    #: |difference| of the snapped reference affine from ours
    translation_mm: float
    corners_mm: float
    direction: float

    def describe(self) -> str:
        """E.g. "+x -y +z": where our i, j, k point in the reference's voxel axes."""
        return " ".join(("+" if s > 0 else "-") + "xyz"[a] for a, s in zip(self.axes, self.signs))

    @property
    def identity(self) -> bool:
        return self.axes == (0, 1, 2) and self.signs == (1, 1, 1)

    def affine_ok(self) -> bool:
        return (self.translation_mm <= AFFINE_TOLERANCE_MM and self.corners_mm <= AFFINE_TOLERANCE_MM
                and self.direction <= DIRECTION_TOLERANCE)


def _unit_columns(affine: np.ndarray) -> np.ndarray:
    columns = np.asarray(affine, dtype=float)[:3, :3]
    return columns / np.linalg.norm(columns, axis=0)


def grid_mapping(ours_affine: np.ndarray, ours_shape: Sequence[int], reference_affine: np.ndarray) -> GridMapping:
    """The signed axis permutation and integer shift from our voxel grid to the reference's.

    Each of our axes is paired with the reference axis most nearly parallel to it (so a grid
    with a wrong spacing still maps, and the affine numbers say by how much); raises
    ComparisonError when no such one-to-one pairing exists (e.g. a different slice orientation).
    """
    ours_affine = np.asarray(ours_affine, dtype=float)
    reference_affine = np.asarray(reference_affine, dtype=float)
    cosines = _unit_columns(reference_affine).T @ _unit_columns(ours_affine)  # [their axis, our axis]
    axes = tuple(int(np.argmax(np.abs(cosines[:, c]))) for c in range(3))
    if sorted(axes) != [0, 1, 2] or min(abs(cosines[axes[c], c]) for c in range(3)) < 0.5:
        raise ComparisonError(f"voxel axes are not a permutation of the reference's (cosines {np.round(cosines, 3).tolist()})")
    signs = tuple(int(np.sign(cosines[axes[c], c])) for c in range(3))
    origin = (np.linalg.inv(reference_affine) @ ours_affine[:, 3])[:3]
    shift = np.round(origin)
    snapped = np.zeros((4, 4))
    snapped[3, 3] = 1.0
    for c in range(3):
        snapped[axes[c], c] = signs[c]
    snapped[:3, 3] = shift
    theirs = reference_affine @ snapped  # their affine expressed on our voxel indices
    size = [max(int(n), 1) for n in ours_shape[:3]]
    corners = np.array([[i, j, k, 1.0] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)]).T
    start = [0, 0, 0]
    for c in range(3):
        first, last = shift[axes[c]], shift[axes[c]] + signs[c] * (size[c] - 1)
        start[axes[c]] = int(min(first, last))
    return GridMapping(
        axes=axes, signs=signs, start=tuple(start),
        translation_mm=float(np.max(np.abs(theirs[:3, 3] - ours_affine[:3, 3]))),
        corners_mm=float(np.max(np.linalg.norm((theirs @ corners - ours_affine @ corners)[:3], axis=0))),
        direction=float(np.max(np.abs(_unit_columns(theirs) - _unit_columns(ours_affine)))))


def to_reference_order(array_ijk: np.ndarray, mapping: GridMapping) -> np.ndarray:
    """Our array in NIfTI order (i, j, k[, t]) re-indexed to the reference's (x, y, z[, t]),
    starting at `mapping.start` of the reference grid."""
    order = [0, 0, 0]
    for c in range(3):
        order[mapping.axes[c]] = c
    array = np.transpose(array_ijk, (*order, *range(3, array_ijk.ndim)))
    for c in range(3):
        if mapping.signs[c] < 0:
            array = np.flip(array, mapping.axes[c])
    return array


def in_reference_order(voxels_kji: np.ndarray, ijk_to_ras: np.ndarray, reference_affine: np.ndarray,
                       reference_shape: tuple[int, ...] | None = None):
    """Our voxels as read by a plugin ((k, j, i), or (t, k, j, i) for 4D) re-indexed to a NIfTI
    reference's (x, y, z[, t]) order; raises ComparisonError unless the grids coincide within
    1e-2 mm. With `reference_shape`, a reference grid larger than ours is allowed and the pair
    (ours, slices of the reference that our grid covers) is returned.
    """
    array = np.moveaxis(voxels_kji, 0, -1) if voxels_kji.ndim == 4 else voxels_kji  # time last, as NIfTI
    array = np.transpose(array, (2, 1, 0, *range(3, array.ndim)))  # (i, j, k[, t])
    mapping = grid_mapping(ijk_to_ras, array.shape[:3], reference_affine)
    if not mapping.affine_ok():
        raise ComparisonError(f"affines differ: translation {mapping.translation_mm:.4g} mm, corners "
                              f"{mapping.corners_mm:.4g} mm, directions {mapping.direction:.4g}")
    array = to_reference_order(array, mapping)
    if reference_shape is None:
        if mapping.start != (0, 0, 0):
            raise ComparisonError(f"our grid starts at reference voxel {mapping.start}, not at its origin")
        return array
    return array, tuple(slice(s, s + n) for s, n in zip(mapping.start, array.shape[:3]))


# --- one output against one reference ------------------------------------------------------------
@dataclass
class OutputComparison:
    """One of our NIfTI outputs against one dcm2niix output: the numbers and what differs."""

    ours: str
    reference: str
    ok: bool = False
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    shape_ours: list[int] = field(default_factory=list)  # in the reference's axis order
    shape_reference: list[int] = field(default_factory=list)
    axis_mapping: str | None = None
    translation_difference_mm: float | None = None
    corner_difference_mm: float | None = None
    direction_difference: float | None = None
    max_abs_voxel_difference: float | None = None
    differing_voxels: int | None = None
    compared_voxels: int | None = None
    bval_max_difference: float | None = None
    bvec_max_difference: float | None = None

    def score(self) -> tuple:
        """Higher is a better pairing: equal first, then same grid, then closest voxels."""
        grid = self.corner_difference_mm is not None and self.corner_difference_mm <= AFFINE_TOLERANCE_MM
        same_shape = self.shape_ours == self.shape_reference
        voxels = -(self.max_abs_voxel_difference if self.max_abs_voxel_difference is not None else np.inf)
        return (self.ok, grid and same_shape, grid, same_shape, voxels)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _shape4(shape: Sequence[int]) -> list[int]:
    """(x, y, z, t) with t = 1 for a 3D image; extra trailing singleton dimensions dropped."""
    shape = list(shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape.pop()
    return shape + [1] * (4 - len(shape)) if len(shape) < 4 else shape


def _read_table(path: Path | None, rows: int) -> np.ndarray | None:
    if path is None:
        return None
    values = np.loadtxt(path, ndmin=2, dtype=float)
    if rows == 1:
        return values.ravel()
    return values if values.shape[0] == 3 else values.T  # FSL: one row per axis


class _Images:
    """Loaded NIfTI files, each read once while outputs are paired and compared."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[Any, np.ndarray]] = {}

    def get(self, path: Path) -> tuple[Any, np.ndarray]:
        if path not in self._cache:
            import nibabel

            try:
                image = nibabel.load(str(path))
                fields = image.get_data_dtype().names
                if fields:  # RGB24 (colour, as both writers store it): channels last, compared as volumes
                    stored = np.asarray(image.dataobj)
                    data = np.stack([stored[name] for name in fields], axis=-1).astype(np.float64)
                else:
                    data = np.asarray(image.get_fdata(dtype=np.float64))
            except Exception as error:  # a file we cannot read is a verdict, not a crash
                raise ComparisonError(f"{path}: cannot read ({type(error).__name__}: {error})") from error
            self._cache[path] = (image, data)
        return self._cache[path]


def compare_outputs(ours: NiftiOutput, reference: NiftiOutput, images: _Images | None = None) -> OutputComparison:
    """Our NIfTI (+ sidecars) against dcm2niix's: grid mapping, affine, shape, voxels, bval/bvec."""
    images = images or _Images()
    result = OutputComparison(ours=ours.label, reference=reference.label)
    try:
        our_image, our_data = images.get(ours.path)
        their_image, their_data = images.get(reference.path)
    except ComparisonError as error:
        result.reasons.append(str(error))
        return result
    our_data = our_data.reshape(_shape4(our_data.shape)) if our_data.ndim <= 4 else our_data
    their_data = their_data.reshape(_shape4(their_data.shape)) if their_data.ndim <= 4 else their_data
    result.shape_reference = list(their_data.shape)
    try:
        mapping = grid_mapping(our_image.affine, our_data.shape[:3], their_image.affine)
    except ComparisonError as error:
        result.shape_ours = list(our_data.shape)
        result.reasons.append(f"grids unrelated: {error}")
        _compare_gradients(ours, reference, None, result)
        return result
    result.axis_mapping = mapping.describe()
    result.translation_difference_mm = mapping.translation_mm
    result.corner_difference_mm = mapping.corners_mm
    result.direction_difference = mapping.direction
    aligned = to_reference_order(our_data, mapping)
    result.shape_ours = list(aligned.shape)
    if mapping.direction > DIRECTION_TOLERANCE:
        result.reasons.append(f"direction cosines differ by {mapping.direction:.3g} (> {DIRECTION_TOLERANCE})")
    if mapping.translation_mm > AFFINE_TOLERANCE_MM or mapping.corners_mm > AFFINE_TOLERANCE_MM:
        spacing_ours = np.linalg.norm(np.asarray(our_image.affine)[:3, :3], axis=0)
        spacing_theirs = np.linalg.norm(np.asarray(their_image.affine)[:3, :3], axis=0)[list(mapping.axes)]
        result.reasons.append(
            f"affine differs: origin {mapping.translation_mm:.3g} mm, corners {mapping.corners_mm:.3g} mm "
            f"(spacing ours {_numbers(spacing_ours)}, dcm2niix {_numbers(spacing_theirs)} mm)")
    if result.shape_ours != result.shape_reference:
        what = "volumes" if result.shape_ours[:3] == result.shape_reference[:3] else "shape"
        result.reasons.append(f"{what} differ: ours {_dims(result.shape_ours)}, dcm2niix {_dims(result.shape_reference)}")
    elif mapping.start != (0, 0, 0):
        result.reasons.append(f"grid shifted by {list(mapping.start)} voxels")
    _compare_voxels(aligned, their_data, mapping, result)
    _compare_gradients(ours, reference, mapping, result)
    if not mapping.identity:
        result.notes.append(f"voxel axes stored differently (ours -> dcm2niix: {mapping.describe()})")
    result.ok = not result.reasons
    return result


def _compare_voxels(aligned: np.ndarray, theirs: np.ndarray, mapping: GridMapping, result: OutputComparison) -> None:
    """Physical values on the region both grids cover (all of it when the grids are equal)."""
    if aligned.ndim != theirs.ndim:
        result.reasons.append(f"dimensions differ: ours {aligned.ndim}D, dcm2niix {theirs.ndim}D")
        return
    ours_region, theirs_region = [], []
    for r in range(3):
        low = max(mapping.start[r], 0)
        high = min(mapping.start[r] + aligned.shape[r], theirs.shape[r])
        if high <= low:
            result.reasons.append("grids do not overlap")
            return
        ours_region.append(slice(low - mapping.start[r], high - mapping.start[r]))
        theirs_region.append(slice(low, high))
    extra = [slice(0, min(a, b)) for a, b in zip(aligned.shape[3:], theirs.shape[3:])]
    ours_values = aligned[tuple(ours_region + extra)]
    their_values = theirs[tuple(theirs_region + extra)]
    difference = np.abs(ours_values - their_values)
    differing = difference > VOXEL_ATOL + VOXEL_RTOL * np.abs(their_values)
    result.max_abs_voxel_difference = float(difference.max()) if difference.size else 0.0
    result.differing_voxels = int(np.count_nonzero(differing))
    result.compared_voxels = int(difference.size)
    if result.differing_voxels:
        partial = "" if ours_values.shape == theirs.shape == aligned.shape else " (on the common region)"
        result.reasons.append(
            f"voxels differ{partial}: {result.differing_voxels} of {result.compared_voxels}, "
            f"max |difference| {result.max_abs_voxel_difference:.4g}{_linear_relation(ours_values, their_values)}")


def _linear_relation(ours: np.ndarray, theirs: np.ndarray) -> str:
    """" (ours = a x dcm2niix + b)" when a rescale explains the difference (another slope or
    intercept, e.g. Philips display against precise values), else ""."""
    if ours.size < 2 or np.ptp(theirs) == 0:
        return ""
    design = np.stack([theirs.ravel(), np.ones(theirs.size)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(design, ours.ravel(), rcond=None)
    residual = np.abs(design @ [slope, intercept] - ours.ravel())
    if np.all(residual <= VOXEL_ATOL + VOXEL_RTOL * np.abs(ours.ravel()) + 1e-6 * np.abs(ours).max()):
        offset = f" {intercept:+.6g}" if abs(intercept) > 1e-6 * max(np.abs(ours).max(), 1.0) else ""
        return f" (ours = {slope:.6g} x dcm2niix{offset}: another rescale slope/intercept)"
    return ""


def _compare_gradients(ours: NiftiOutput, reference: NiftiOutput, mapping: GridMapping | None,
                       result: OutputComparison) -> None:
    if reference.bval is None and reference.bvec is None:
        if ours.bval is not None or ours.bvec is not None:
            result.notes.append("ours has .bval/.bvec, dcm2niix wrote none")
        return
    if ours.bval is None or ours.bvec is None:
        result.reasons.append("dcm2niix wrote .bval/.bvec, ours has none (not loaded as DWI)")
        return
    try:
        bvals_ours, bvals_theirs = _read_table(ours.bval, 1), _read_table(reference.bval, 1)
        bvecs_ours, bvecs_theirs = _read_table(ours.bvec, 3), _read_table(reference.bvec, 3)
    except ValueError as error:
        result.reasons.append(f"unreadable .bval/.bvec: {error}")
        return
    if bvals_ours is not None and bvals_theirs is not None:
        if bvals_ours.shape != bvals_theirs.shape:
            result.reasons.append(f"{len(bvals_ours)} b-values, dcm2niix {len(bvals_theirs)}")
        else:
            result.bval_max_difference = float(np.max(np.abs(bvals_ours - bvals_theirs), initial=0.0))
            if result.bval_max_difference > GRADIENT_TOLERANCE:
                result.reasons.append(f"b-values differ by up to {result.bval_max_difference:.4g}")
    if bvecs_ours is None or bvecs_theirs is None:
        return
    if bvecs_ours.shape != bvecs_theirs.shape:
        result.reasons.append(f"bvec shape {list(bvecs_ours.shape)}, dcm2niix {list(bvecs_theirs.shape)}")
        return
    # the direction of a b = 0 volume means nothing (FSL and dcm2niix's users ignore it)
    weighted = np.ones(bvecs_theirs.shape[1], dtype=bool)
    if bvals_theirs is not None and bvals_theirs.shape == (bvecs_theirs.shape[1],):
        weighted = bvals_theirs != 0
    difference = np.abs(bvecs_ours - bvecs_theirs)
    result.bvec_max_difference = float(np.max(difference[:, weighted], initial=0.0))
    if np.max(difference[:, ~weighted], initial=0.0) > GRADIENT_TOLERANCE:
        result.notes.append(f"bvecs of b = 0 volumes differ (ignored): ours {_numbers(bvecs_ours[:, ~weighted][:, 0])}, "
                            f"dcm2niix {_numbers(bvecs_theirs[:, ~weighted][:, 0])}")
    if result.bvec_max_difference <= GRADIENT_TOLERANCE:
        return
    bvecs_ours, bvecs_theirs = bvecs_ours[:, weighted], bvecs_theirs[:, weighted]
    explanation = ""
    if mapping is not None and not mapping.identity:
        mapped = np.zeros_like(bvecs_ours)
        for c in range(3):
            mapped[mapping.axes[c]] = mapping.signs[c] * bvecs_ours[c]
        if np.max(np.abs(mapped - bvecs_theirs)) <= GRADIENT_TOLERANCE:
            explanation = f" (only by the grid's axis permutation/flip {mapping.describe()}: vectors in our voxel frame)"
    if not explanation:
        antipodal = np.minimum(np.abs(bvecs_ours - bvecs_theirs), np.abs(bvecs_ours + bvecs_theirs)).max(axis=0)
        if np.all(antipodal <= GRADIENT_TOLERANCE):
            explanation = " (equal up to the sign of whole vectors)"
    result.reasons.append(f"bvecs differ by up to {result.bvec_max_difference:.4g}{explanation}")


def _numbers(values: Iterable[float]) -> str:
    return "x".join(f"{v:.4g}" for v in values)


def _dims(shape: Sequence[int]) -> str:
    shape = list(shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    return "x".join(str(n) for n in shape)


# --- pairing a series' outputs ---------------------------------------------------------------------
def match_outputs(ours: Sequence[NiftiOutput], references: Sequence[NiftiOutput],
                  images: _Images | None = None) -> tuple[list[tuple[NiftiOutput, OutputComparison | None]], list[NiftiOutput]]:
    """Pair each dcm2niix output of one series with one of ours.

    First by equal suffix where ours carries one (`loadable.extra["suffix"]`), then by the best
    comparison (equal, else same grid, else closest voxels) among the rest; a pair whose known
    suffixes differ gets a note. Returns ([(reference, comparison or None when nothing of ours
    is left)], our outputs left unpaired).
    """
    images = images or _Images()
    pairs: dict[int, OutputComparison] = {}
    free = list(range(len(ours)))
    for r, reference in enumerate(references):
        same = [o for o in free if ours[o].suffix is not None and ours[o].suffix == reference.suffix]
        if same:
            pairs[r] = compare_outputs(ours[same[0]], reference, images)
            free.remove(same[0])
    candidates = [(compare_outputs(ours[o], references[r], images), r, o)
                  for r in range(len(references)) if r not in pairs for o in free]
    candidates.sort(key=lambda item: item[0].score(), reverse=True)
    for comparison, r, o in candidates:
        if r not in pairs and o in free:
            if ours[o].suffix is not None and references[r].suffix is not None:
                comparison.notes.append(f"named {ours[o].suffix or 'without suffix'!s}, "
                                        f"dcm2niix {references[r].suffix or 'without suffix'!s}")
            pairs[r] = comparison
            free.remove(o)
    return [(reference, pairs.get(r)) for r, reference in enumerate(references)], [ours[o] for o in free]


@dataclass
class SeriesVerdict:
    """The verdict on one series: ok, why not, and the numbers of every compared output."""

    series: str
    series_uid: str = ""
    ok: bool = False
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reference_source: str = ""  # "dcm2niix <version> (live)" or where the stored references are
    references: list[str] = field(default_factory=list)  # dcm2niix's outputs for the series
    outputs: list[OutputComparison] = field(default_factory=list)

    def line(self) -> str:
        """One line for people: "OK   <series>  (numbers)" or "DIFF <series>: reasons"."""
        if self.ok:
            details = "; ".join(_summary(c) for c in self.outputs) or "; ".join(self.notes)
            return f"OK   {self.series}  ({details})"
        return f"DIFF {self.series}: " + "; ".join(self.reasons)

    def to_json(self) -> dict[str, Any]:
        """The shape `dicombrowser compare --json` prints (a contract: keep the keys)."""
        return {"series": self.series, "series_uid": self.series_uid, "ok": self.ok, "reasons": list(self.reasons),
                "notes": list(self.notes), "reference_source": self.reference_source,
                "references": list(self.references), "outputs": [c.to_json() for c in self.outputs]}


def _summary(comparison: OutputComparison) -> str:
    parts = [f"{comparison.reference}: {_dims(comparison.shape_reference)}",
             f"max |dv| {comparison.max_abs_voxel_difference:.3g}" if comparison.max_abs_voxel_difference is not None else "",
             f"corners {comparison.corner_difference_mm:.2g} mm" if comparison.corner_difference_mm is not None else ""]
    if comparison.bvec_max_difference is not None:
        parts.append(f"bvec {comparison.bvec_max_difference:.2g}")
    return ", ".join(p for p in parts if p)


def verdict_for_series(series: str, ours: Sequence[NiftiOutput], references: Sequence[NiftiOutput], *,
                       series_uid: str = "", why_no_output: str = "", reasons: Sequence[str] = (),
                       notes: Sequence[str] = (), reference_source: str = "") -> SeriesVerdict:
    """Pair and compare one series' outputs.

    `why_no_output` says why `ours` is empty (e.g. no default loadable); `reasons` are failures
    found before comparing (a loadable that failed to load), `notes` remarks that do not fail
    the series. Neither side giving a volume (e.g. a presentation state) is agreement.
    """
    verdict = SeriesVerdict(series=series, series_uid=series_uid, reasons=list(reasons), notes=list(notes),
                            reference_source=reference_source, references=[r.label for r in references])
    if not references:
        if ours:
            verdict.reasons.append(f"dcm2niix wrote no NIfTI; ours: {', '.join(o.label for o in ours)}")
        else:
            verdict.notes.insert(0, "no volume on either side: dcm2niix wrote nothing"
                                 + (f"; ours: {why_no_output}" if why_no_output else ""))
        verdict.ok = not verdict.reasons
        return verdict
    if not ours:
        written = ", ".join(r.label for r in references)
        verdict.reasons.append(f"{why_no_output or 'nothing of ours to compare'} (dcm2niix wrote {written})")
        return verdict
    images = _Images()
    pairs, unpaired = match_outputs(ours, references, images)
    several = len(references) > 1
    for reference, comparison in pairs:
        name = f"{reference.label}: " if several else ""
        if comparison is None:
            verdict.reasons.append(f"dcm2niix's {reference.label} has no counterpart among our outputs")
            continue
        verdict.outputs.append(comparison)
        verdict.reasons.extend(name + reason for reason in comparison.reasons)
        verdict.notes.extend(name + note for note in comparison.notes)
    for output in unpaired:
        verdict.notes.append(f"ours {output.label} has no dcm2niix counterpart")
    verdict.ok = not verdict.reasons
    return verdict


# --- dcm2niix ------------------------------------------------------------------------------------------
def dcm2niix_executable() -> str:
    """The dcm2niix on PATH; ComparisonError with how to get it otherwise."""
    found = shutil.which("dcm2niix")
    if found is None:
        raise ComparisonError("dcm2niix is not on PATH (Debian/Ubuntu: apt-get install dcm2niix; "
                              "or https://github.com/rordenlab/dcm2niix/releases)")
    return found


@functools.lru_cache(maxsize=4)
def dcm2niix_version(executable: str | None = None) -> str:
    """dcm2niix's version string, e.g. "v1.0.20220720"."""
    completed = subprocess.run([executable or dcm2niix_executable(), "--version"], capture_output=True,
                               text=True, timeout=30, check=False)
    found = re.search(r"v\d+\.\d+\.\d+\w*", completed.stdout + completed.stderr)
    return found.group(0) if found else "unknown version"


@dataclass
class Dcm2niixRun:
    """What one live dcm2niix run wrote, and its log for when it wrote nothing."""

    outputs: list[NiftiOutput]
    returncode: int
    log: str


def run_dcm2niix(files: Sequence[str | os.PathLike], output_dir: str | os.PathLike, series_description: str = "",
                 timeout: float = DCM2NIIX_TIMEOUT, executable: str | None = None) -> Dcm2niixRun:
    """dcm2niix on exactly these files (a folder of symlinks to them, so files of other series
    beside them are not converted): `-b y -z n -f %s_%d`. Returns its outputs with their
    suffixes (the series description helps to find a single output's)."""
    executable = executable or dcm2niix_executable()
    output_dir = Path(output_dir)
    links = output_dir / "input"
    converted = output_dir / "nifti"
    links.mkdir(parents=True, exist_ok=True)
    converted.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(files):
        # numbered names: series may hold equal file names from different folders
        (links / f"{index:06d}_{Path(path).name}").symlink_to(Path(path).resolve())
    try:
        completed = subprocess.run([executable, "-b", "y", "-z", "n", "-o", str(converted), "-f", "%s_%d", str(links)],
                                   capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise ComparisonError(f"dcm2niix took longer than {timeout:.0f} s on {len(files)} files") from error
    found = sorted(p for p in converted.iterdir() if p.name.endswith((".nii", ".nii.gz")))
    stems = [nifti_stem(p) for p in found]
    suffixes = dcm2niix_suffixes(stems, series_description) if found else []
    outputs = [NiftiOutput.at(p, suffix=s) for p, s in zip(found, suffixes)]
    return Dcm2niixRun(outputs=outputs, returncode=completed.returncode,
                       log=(completed.stdout + completed.stderr).strip())


def stored_references(ref_dir: str | os.PathLike, series_number: int | str | None, series_description: str,
                      series_uid: str = "") -> list[NiftiOutput]:
    """dcm2niix outputs stored in `ref_dir` that belong to one series, found through their JSON
    sidecars: SeriesInstanceUID when the sidecar has it (newer dcm2niix), else SeriesNumber and
    SeriesDescription. Sidecars without a NIfTI beside them (inputs absent) are left out."""
    ref_dir = Path(ref_dir)
    stems = []
    for sidecar in sorted(ref_dir.glob("*.json")):
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            logger.warning("Ignoring unreadable dcm2niix sidecar %s: %s", sidecar, error)
            continue
        if meta.get("SeriesInstanceUID") and series_uid:
            if meta["SeriesInstanceUID"] != series_uid:
                continue
        elif (str(meta.get("SeriesNumber", "")) != str(series_number if series_number is not None else "")
              or (meta.get("SeriesDescription") or "").strip() != (series_description or "").strip()):
            continue
        nifti = [p for p in (sidecar.with_suffix(".nii"), sidecar.with_suffix(".nii.gz")) if p.exists()]
        if nifti:
            stems.append((sidecar.stem, nifti[0]))
    suffixes = dcm2niix_suffixes([s for s, _ in stems], series_description) if stems else []
    return [NiftiOutput.at(path, suffix=suffix) for (_, path), suffix in zip(stems, suffixes)]


# --- the whole path for one series: examine, load defaults, write, compare -------------------------
@dataclass
class SeriesIdentity:
    """What names a series in a verdict: its number, description and UID."""

    number: str = ""
    description: str = ""
    uid: str = ""

    @property
    def label(self) -> str:
        return f"#{self.number} {self.description}".strip()

    @classmethod
    def of_files(cls, files: Sequence[str]) -> "SeriesIdentity":
        """From the first file of the series that pydicom can read."""
        import pydicom
        from pydicom.errors import InvalidDicomError

        for path in files:
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True,
                                         specific_tags=["SeriesNumber", "SeriesDescription", "SeriesInstanceUID"])
            except (InvalidDicomError, OSError, ValueError) as error:  # damaged: the next file names it
                logger.debug("Cannot read the series identity from %s: %s", path, error)
                continue
            number = header.get("SeriesNumber")
            return cls(number="" if number is None else str(number),
                       description=str(header.get("SeriesDescription", "") or "").strip(),
                       uid=str(header.get("SeriesInstanceUID", "") or ""))
        return cls(description=Path(files[0]).parent.name if files else "?")


def compare_series_with_dcm2niix(database: Any, files: Sequence[str], work_dir: str | os.PathLike,
                                 label: str | None = None) -> SeriesVerdict:
    """One series through our default loading (examine -> defaults -> load -> NIfTI, as
    `dicombrowser load --output x.nii.gz` does) and through dcm2niix run live; the verdict."""
    from . import loading
    from . import scene as scenes

    work_dir = Path(work_dir)
    identity = SeriesIdentity.of_files(files)
    executable = dcm2niix_executable()
    reasons: list[str] = []
    notes: list[str] = []
    why_no_output = ""
    ours: list[NiftiOutput] = []
    report = loading.examine(database, [list(files)])
    for plugin, reason in report.errors:
        notes.append(f"plugin {plugin} failed to examine: {reason}")
    chosen = [loadable for loadable in report.loadables if loadable.selected]
    if not chosen:
        offered = ", ".join(loadable.name for loadable in report.loadables) or "nothing"
        why_no_output = f"no loadable selected by default (examine offers: {offered})"
    else:
        scene = scenes.new_scene()
        try:
            for index, loadable in enumerate(chosen):
                try:
                    [node] = loading.load_loadables([loadable], scene, database, report=report)
                except DICOMBrowserError as error:
                    reasons.append(f"loading {loadable.name!r} failed: {error}")
                    continue
                if not (node.IsA("vtkMRMLVolumeNode") or node.IsA("vtkMRMLSequenceNode")):
                    reasons.append(f"our default {loadable.name!r} is a {node.GetClassName()}, not a volume to "
                                   "compare with dcm2niix's")
                    continue
                try:
                    path = scenes.save_volume(node, work_dir / "ours" / f"loadable{index}.nii.gz")
                except Exception as error:  # a writer's bug on one node is this series' verdict, not the end of the run
                    logger.exception("Writing %s as NIfTI failed", loadable.name)
                    reasons.append(f"writing {loadable.name!r} ({node.GetClassName()}) as NIfTI failed: "
                                   f"{type(error).__name__}: {error}")
                    continue
                ours.append(NiftiOutput.at(path, label=loadable.name, suffix=loadable.extra.get("suffix")))
        finally:
            scenes.close_scene(scene)
    run = run_dcm2niix(files, work_dir / "dcm2niix", identity.description, executable=executable)
    if not run.outputs and run.returncode:
        notes.append(f"dcm2niix exit {run.returncode}: {run.log.splitlines()[-1] if run.log else ''}")
    return verdict_for_series(label or identity.label, ours, run.outputs, series_uid=identity.uid,
                              why_no_output=why_no_output, reasons=reasons, notes=notes,
                              reference_source=f"dcm2niix {dcm2niix_version(executable)} (live)")


def compare_with_dcm2niix(database: Any, file_lists: Sequence[Sequence[str]],
                          progress: Callable[[int, int, str], Any] | None = None) -> list[SeriesVerdict]:
    """A verdict for every series (file list); temporary files are removed afterwards."""
    dcm2niix_executable()  # fail before any work when it is missing
    verdicts = []
    for index, files in enumerate(file_lists):
        if progress is not None and progress(index, len(file_lists), str(Path(files[0]).parent)):
            break
        with tempfile.TemporaryDirectory(prefix="dicombrowser-compare-") as work:
            verdicts.append(compare_series_with_dcm2niix(database, files, work))
    return verdicts
