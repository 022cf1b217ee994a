"""Acquisition geometry of image stacks: sorting, checks, IJK-to-RAS, regularization.

Pure numpy, no Qt, no pydicom. Frames and units are part of every name or docstring:

- DICOM attributes (ImagePositionPatient, ImageOrientationPatient) are in the DICOM patient
  frame **LPS** (x to the patient's left, y to posterior, z to head), millimetres.
- Volume nodes want **RAS** (x right, y anterior, z head): ``ras = LPS_TO_RAS @ lps``.
- Voxel arrays are indexed ``[k, j, i]`` (slice, row, column); ``i`` runs along a row (the
  ImageOrientationPatient row cosines, PixelSpacing[1] apart), ``j`` down a column (column
  cosines, PixelSpacing[0] apart), ``k`` along the slice normal ``row x column``.

Tolerances (the same as 3D Slicer's scalar volume plugin; see docs/geometry.md):
``SPACING_TOLERANCE_MM`` for distances and spacings, ``ORIENTATION_TOLERANCE`` for direction
cosine components. Every check reports every offending slice, not only the first.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: distances (mm): slice gaps, in-plane offsets (tilt), duplicate positions, pixel spacing
SPACING_TOLERANCE_MM = 1e-2
#: direction cosine components (unitless): orientation equality between slices
ORIENTATION_TOLERANCE = 1e-6
#: direction cosine vectors must be unit length and orthogonal to within this (unitless)
ORTHONORMAL_TOLERANCE = 1e-3

#: 4x4 homogeneous matrix turning DICOM LPS coordinates into RAS (and back: it is its own inverse)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Finding kinds (stable strings: tests, the CLI and the docs refer to them)
MISSING_GEOMETRY = "missing_geometry"
INVALID_ORIENTATION = "invalid_orientation"
ORIENTATION_VARIES = "orientation_varies"
PIXEL_SPACING_VARIES = "pixel_spacing_varies"
SIZE_VARIES = "size_varies"
SINGLE_SLICE = "single_slice"
DUPLICATE_POSITIONS = "duplicate_positions"
NONUNIFORM_SPACING = "nonuniform_spacing"
MISSING_SLICES = "missing_slices"
GANTRY_TILT = "gantry_tilt"

#: kinds whose volume is misplaced unless regularized (resampled onto a regular grid)
REGULARIZABLE_KINDS = frozenset({NONUNIFORM_SPACING, MISSING_SLICES, GANTRY_TILT})


@dataclass(frozen=True)
class FrameGeometry:
    """Geometry of one 2D frame: a single-frame file, or one frame of a multi-frame file.

    ``position`` (ImagePositionPatient, centre of the first transmitted voxel) and
    ``orientation`` (row cosines then column cosines) are in LPS millimetres / unit vectors;
    ``pixel_spacing`` is DICOM order: (distance between rows, distance between columns) in mm.
    """

    path: str
    frame: int = 0
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, float, float, float, float, float] | None = None
    pixel_spacing: tuple[float, float] | None = None
    rows: int = 0
    columns: int = 0
    slice_thickness: float | None = None
    instance_number: int | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)  # grouping keys (echo, time, ...)

    @property
    def label(self) -> str:
        """How a message names this frame: the file, plus the frame number for multi-frame."""
        return self.path if self.frame == 0 and "frame" not in self.attributes else f"{self.path}#frame{self.frame + 1}"


@dataclass
class Finding:
    """One geometry problem: a stable `kind`, a sentence for the user, and the frames concerned."""

    kind: str
    message: str
    files: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


# --- parsing cached tag strings ---------------------------------------------------------------
#: text -> parse_numbers(text): a series repeats its orientation, spacing and (one per volume)
#: slice positions from file to file (a 546-file DTI has 32 positions); results are tuples
_PARSED: dict[str, tuple[float, ...] | None] = {}
_PARSED_KEPT = 100_000


def parse_numbers(text: str | None) -> tuple[float, ...] | None:
    """'1\\2.5\\3' (a cached multi-valued DS/IS string) -> (1.0, 2.5, 3.0); None if empty or bad."""
    if text is None:
        return None
    if type(text) is str:
        try:
            return _PARSED[text]
        except KeyError:
            pass
        if len(_PARSED) >= _PARSED_KEPT:
            _PARSED.clear()
        parsed = _PARSED[text] = _parse_numbers(text)
        return parsed
    return _parse_numbers(text)


def _parse_numbers(text: object) -> tuple[float, ...] | None:
    text = str(text).strip()
    if not text:
        return None
    try:
        return tuple(float(part) for part in text.replace(",", "\\").split("\\") if part.strip())
    except ValueError:
        return None


def _fixed(values: tuple[float, ...] | None, count: int) -> tuple[float, ...] | None:
    return tuple(values[:count]) if values is not None and len(values) >= count else None


def frame_geometry_from_values(path: str, values: Mapping[str, str], frame: int = 0,
                               attributes: Mapping[str, str] | None = None) -> FrameGeometry:
    """A FrameGeometry from tag strings keyed 'gggg,eeee' (the database tag cache format)."""
    def number(tag: str) -> float | None:
        parsed = parse_numbers(values.get(tag, ""))
        return parsed[0] if parsed else None

    rows = number("0028,0010")
    columns = number("0028,0011")
    instance = number("0020,0013")
    return FrameGeometry(
        path=str(path), frame=frame,
        position=_fixed(parse_numbers(values.get("0020,0032", "")), 3),
        orientation=_fixed(parse_numbers(values.get("0020,0037", "")), 6),
        pixel_spacing=_fixed(parse_numbers(values.get("0028,0030", "")), 2),
        rows=int(rows or 0), columns=int(columns or 0),
        slice_thickness=number("0018,0050"),
        instance_number=int(instance) if instance is not None else None,
        attributes=dict(attributes or {}),
    )


# --- directions and sorting ------------------------------------------------------------------------
def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit slice normal (LPS) = row cosines x column cosines; the direction of increasing k."""
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:6], dtype=float)
    normal = np.cross(row, col)
    norm = np.linalg.norm(normal)
    if norm == 0:
        raise ValueError(f"degenerate ImageOrientationPatient {list(orientation)}")
    return normal / norm


def reference_orientation(records: Sequence[FrameGeometry]) -> tuple[float, ...] | None:
    """The orientation of the first frame that has one (the stack's orientation)."""
    return next((r.orientation for r in records if r.orientation is not None), None)


def slice_distances(records: Sequence[FrameGeometry], normal: np.ndarray | None = None) -> np.ndarray:
    """Signed distance (mm) of each frame's position along the slice normal (NaN if unknown)."""
    if normal is None:
        orientation = reference_orientation(records)
        if orientation is None:
            return np.full(len(records), np.nan)
        normal = slice_normal(orientation)
    return np.array([float(np.dot(r.position, normal)) if r.position is not None else np.nan for r in records])


def sort_frames(records: Sequence[FrameGeometry]) -> list[FrameGeometry]:
    """Frames sorted by position along the slice normal (not by InstanceNumber).

    Stable, so repeated positions (time series) keep their given order; frames without a
    position or without any orientation fall back to InstanceNumber order, after the others.
    """
    records = list(records)
    orientation = reference_orientation(records)
    if orientation is None:
        return sorted(records, key=lambda r: (r.instance_number is None, r.instance_number or 0))
    try:
        distances = slice_distances(records, slice_normal(orientation))
    except ValueError:
        logger.warning("Degenerate orientation %s: frames kept in InstanceNumber order", orientation)
        return sorted(records, key=lambda r: (r.instance_number is None, r.instance_number or 0))
    placed = [(d, i) for i, d in enumerate(distances) if not math.isnan(d)]
    placed.sort()
    unplaced = sorted((i for i, d in enumerate(distances) if math.isnan(d)),
                      key=lambda i: (records[i].instance_number is None, records[i].instance_number or 0))
    return [records[i] for _, i in placed] + [records[i] for i in unplaced]


def position_groups(sorted_records: Sequence[FrameGeometry],
                    tolerance: float = SPACING_TOLERANCE_MM) -> list[list[FrameGeometry]]:
    """Consecutive frames (already sorted) sharing one position (within `tolerance` mm, LPS)."""
    groups: list[list[FrameGeometry]] = []
    for record in sorted_records:
        if (groups and record.position is not None and groups[-1][0].position is not None
                and np.linalg.norm(np.subtract(record.position, groups[-1][0].position)) <= tolerance):
            groups[-1].append(record)
        else:
            groups.append([record])
    return groups


def nominal_slice_spacing(sorted_records: Sequence[FrameGeometry],
                          tolerance: float = SPACING_TOLERANCE_MM) -> float | None:
    """The usual distance (mm) between neighbouring distinct positions along the normal.

    The most common gap (the gap with the most others within `tolerance` of it; the smaller one
    on a tie), so missing slices and odd gaps do not change it; None when fewer than two
    distinct positions.
    """
    distances = slice_distances(sorted_records)
    distances = distances[~np.isnan(distances)]
    gaps = np.diff(distances)
    gaps = gaps[gaps > tolerance]
    if gaps.size == 0:
        return None
    neighbours = (np.abs(gaps[:, None] - gaps[None, :]) <= tolerance).sum(axis=1)
    best = float(np.min(gaps[neighbours == neighbours.max()]))
    near = np.sort(gaps[np.abs(gaps - best) <= tolerance])
    # the median, as np.median computes it, without the numpy.ma import np.median pays (15 ms)
    middle = near.size // 2
    return float(near[middle]) if near.size % 2 else float((near[middle - 1] + near[middle]) / 2)


# --- checks -----------------------------------------------------------------------------------
def check_geometry(sorted_records: Sequence[FrameGeometry], *,
                   spacing_tolerance: float = SPACING_TOLERANCE_MM,
                   orientation_tolerance: float = ORIENTATION_TOLERANCE,
                   expect_repeats: int = 1) -> list[Finding]:
    """Every geometry problem of a stack of frames sorted by `sort_frames`.

    Checks: missing position/orientation/spacing, invalid (non-orthonormal) orientation,
    orientation or pixel spacing or size varying between frames, a single slice, duplicate
    positions, non-uniform slice spacing and missing slices (every gap reported), gantry/detector
    tilt (positions not stacked along the normal of row x column). `expect_repeats` > 1 says the
    stack is a time series with that many frames at each position (then repeats are expected).
    Distances in mm (LPS), tolerances as documented in docs/geometry.md.
    """
    records = list(sorted_records)
    findings: list[Finding] = []
    if not records:
        return findings

    missing = [r.label for r in records if r.position is None or r.orientation is None or r.pixel_spacing is None]
    if missing:
        findings.append(Finding(MISSING_GEOMETRY,
                                f"{len(missing)} of {len(records)} frames lack ImagePositionPatient, "
                                f"ImageOrientationPatient or PixelSpacing: the volume's placement is a guess",
                                missing))
    placed = [r for r in records if r.position is not None and r.orientation is not None]
    if not placed:
        return findings

    reference = np.asarray(placed[0].orientation, dtype=float)
    row, col = reference[:3], reference[3:]
    if (abs(np.linalg.norm(row) - 1) > ORTHONORMAL_TOLERANCE or abs(np.linalg.norm(col) - 1) > ORTHONORMAL_TOLERANCE
            or abs(float(np.dot(row, col))) > ORTHONORMAL_TOLERANCE):
        findings.append(Finding(INVALID_ORIENTATION,
                                f"ImageOrientationPatient {reference.tolist()} is not two orthogonal unit vectors",
                                [placed[0].label]))
        if np.linalg.norm(np.cross(row, col)) < ORTHONORMAL_TOLERANCE:
            return findings  # no slice normal: nothing below can be measured

    varying = [r.label for r in placed
               if np.max(np.abs(np.asarray(r.orientation, dtype=float) - reference)) > orientation_tolerance]
    if varying:
        worst = max(float(np.max(np.abs(np.asarray(r.orientation) - reference))) for r in placed)
        findings.append(Finding(ORIENTATION_VARIES,
                                f"orientation differs from the first frame's in {len(varying)} frames "
                                f"(largest component difference {worst:.3g} > {orientation_tolerance:g})",
                                varying, {"max_difference": worst}))

    spaced = [r for r in placed if r.pixel_spacing is not None]
    if spaced:
        first_spacing = np.asarray(spaced[0].pixel_spacing)
        odd = [r.label for r in spaced if np.max(np.abs(np.asarray(r.pixel_spacing) - first_spacing)) > spacing_tolerance]
        if odd:
            findings.append(Finding(PIXEL_SPACING_VARIES,
                                    f"PixelSpacing differs from {first_spacing.tolist()} mm in {len(odd)} frames", odd))
    sizes = {(r.rows, r.columns) for r in records}
    if len(sizes) > 1:
        first = (records[0].rows, records[0].columns)
        findings.append(Finding(SIZE_VARIES, f"frames have different sizes {sorted(sizes)} (rows, columns)",
                                [r.label for r in records if (r.rows, r.columns) != first]))

    groups = position_groups(placed, spacing_tolerance)
    if len(groups) == 1:
        if len(placed) == 1:
            findings.append(Finding(SINGLE_SLICE, "a single slice: the slice spacing is taken from SliceThickness "
                                                  "(or 1 mm)", [placed[0].label]))
        elif expect_repeats <= 1:
            findings.append(Finding(DUPLICATE_POSITIONS, f"all {len(placed)} frames share one position",
                                    [r.label for r in placed]))
        return findings

    if expect_repeats <= 1:
        duplicates = [g for g in groups if len(g) > 1]
        if duplicates:
            findings.append(Finding(DUPLICATE_POSITIONS,
                                    f"{sum(len(g) for g in duplicates)} frames share {len(duplicates)} positions "
                                    f"(e.g. {np.round(duplicates[0][0].position, 3).tolist()} mm LPS)",
                                    [r.label for g in duplicates for r in g],
                                    {"positions": [list(g[0].position) for g in duplicates]}))
    else:
        uneven = [g for g in groups if len(g) != expect_repeats]
        if uneven:
            findings.append(Finding(DUPLICATE_POSITIONS,
                                    f"{len(uneven)} positions do not have {expect_repeats} frames each",
                                    [r.label for g in uneven for r in g]))

    heads = [g[0] for g in groups]
    normal = slice_normal(reference)
    distances = slice_distances(heads, normal)
    gaps = np.diff(distances)
    nominal = nominal_slice_spacing(heads, spacing_tolerance)
    if nominal is not None:
        irregular, missing_slices = [], []
        for index, gap in enumerate(gaps):
            if abs(gap - nominal) <= spacing_tolerance:
                continue
            ratio = gap / nominal
            entry = {"index": index, "gap": float(gap), "files": [heads[index].label, heads[index + 1].label]}
            if round(ratio) >= 2 and abs(gap - round(ratio) * nominal) <= spacing_tolerance * round(ratio):
                entry["missing"] = int(round(ratio)) - 1
                missing_slices.append(entry)
            else:
                irregular.append(entry)
        if missing_slices:
            count = sum(e["missing"] for e in missing_slices)
            where = "; ".join(f"{e['gap']:.3f} mm after slice {e['index'] + 1} ({e['missing']} missing)"
                              for e in missing_slices)
            findings.append(Finding(MISSING_SLICES,
                                    f"{count} slices missing (spacing {nominal:.4g} mm): {where}",
                                    sorted({f for e in missing_slices for f in e["files"]}),
                                    {"gaps": missing_slices, "nominal_spacing": nominal}))
        if irregular:
            where = "; ".join(f"{e['gap']:.4g} mm between slices {e['index'] + 1} and {e['index'] + 2}"
                              for e in irregular)
            findings.append(Finding(NONUNIFORM_SPACING,
                                    f"non-uniform slice spacing: {len(irregular)} gaps differ from {nominal:.4g} mm "
                                    f"by more than {spacing_tolerance:g} mm: {where}",
                                    sorted({f for e in irregular for f in e["files"]}),
                                    {"gaps": irregular, "nominal_spacing": nominal}))

    # tilt: in-plane offset of each position from the line through the first along the normal
    origin = np.asarray(heads[0].position, dtype=float)
    offsets = np.array([np.asarray(r.position, dtype=float) - origin for r in heads])
    in_plane = offsets - np.outer(offsets @ normal, normal)
    in_plane_norm = np.linalg.norm(in_plane, axis=1)
    tilted = [heads[i].label for i in np.nonzero(in_plane_norm > spacing_tolerance)[0]]
    if tilted:
        span = offsets[-1] @ normal
        angle = math.degrees(math.atan2(float(in_plane_norm[-1]), abs(float(span)))) if span else float("nan")
        findings.append(Finding(GANTRY_TILT,
                                f"gantry/detector tilt: slice positions are not stacked along the image normal "
                                f"(about {angle:.2f} degrees; in-plane shift up to {in_plane_norm.max():.3f} mm "
                                f"in {len(tilted)} slices)",
                                tilted, {"angle_degrees": angle, "max_shift_mm": float(in_plane_norm.max())}))
    return findings


def findings_text(findings: Iterable[Finding]) -> str:
    """All findings as one warning text for a loadable (one sentence per finding)."""
    return " ".join(f"{f.message}." if not f.message.endswith(".") else f.message for f in findings)


# --- IJK to RAS ---------------------------------------------------------------------------------------
def ijk_to_lps(sorted_records: Sequence[FrameGeometry], slice_spacing: float | None = None) -> np.ndarray:
    """4x4 matrix from voxel (i, j, k, 1) to LPS mm, for frames sorted by `sort_frames`.

    Origin: the first frame's position; i along the row cosines times PixelSpacing[1]; j along
    the column cosines times PixelSpacing[0]; k along the unit normal times `slice_spacing`
    (default: the nominal spacing between distinct positions, else SliceThickness, else 1 mm).
    Orthogonal by construction, as Slicer's: irregular stacks are placed approximately, which
    `check_geometry` reports and `regularize` corrects.
    """
    first = next((r for r in sorted_records if r.position is not None and r.orientation is not None), None)
    orientation = first.orientation if first is not None else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    position = first.position if first is not None else (0.0, 0.0, 0.0)
    spacing = next((r.pixel_spacing for r in sorted_records if r.pixel_spacing is not None), (1.0, 1.0))
    if slice_spacing is None:
        slice_spacing = nominal_slice_spacing(sorted_records)
    if slice_spacing is None:
        slice_spacing = next((r.slice_thickness for r in sorted_records if r.slice_thickness), None) or 1.0
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:6], dtype=float)
    matrix = np.eye(4)
    matrix[:3, 0] = row * float(spacing[1])
    matrix[:3, 1] = col * float(spacing[0])
    matrix[:3, 2] = slice_normal(orientation) * float(slice_spacing)
    matrix[:3, 3] = np.asarray(position, dtype=float)
    return matrix


def ijk_to_ras(sorted_records: Sequence[FrameGeometry], slice_spacing: float | None = None) -> np.ndarray:
    """4x4 matrix from voxel (i, j, k, 1) to RAS mm (see `ijk_to_lps`)."""
    return LPS_TO_RAS @ ijk_to_lps(sorted_records, slice_spacing)


# --- regularization -------------------------------------------------------------------------------
@dataclass
class RegularGrid:
    """Where each slice of a regular grid lies between the acquired slices.

    ``ijk_to_ras``: the grid's 4x4 (RAS mm). ``source_distances``: the acquired slices' distances
    along the normal (mm); ``source_shifts``: their in-plane offsets from the grid, in voxels
    (di, dj). ``slice_spacing`` mm, ``slice_count``.
    """

    ijk_to_ras: np.ndarray
    slice_spacing: float
    slice_count: int
    source_distances: np.ndarray
    source_shifts: np.ndarray


def regular_grid(sorted_records: Sequence[FrameGeometry], slice_spacing: float | None = None) -> RegularGrid:
    """The regular, orthogonal grid that covers an irregular stack (one frame per position)."""
    records = [r for r in sorted_records if r.position is not None]
    if len(records) < 2:
        raise ValueError("regularization needs at least two positioned slices")
    spacing = slice_spacing or nominal_slice_spacing(records)
    if not spacing:
        raise ValueError("regularization needs at least two distinct slice positions")
    lps = ijk_to_lps(records, spacing)
    origin = lps[:3, 3]
    row_step, col_step, normal = lps[:3, 0], lps[:3, 1], slice_normal(records[0].orientation)
    offsets = np.array([np.asarray(r.position, dtype=float) - origin for r in records])
    distances = offsets @ normal
    shifts = np.stack([offsets @ row_step / (row_step @ row_step), offsets @ col_step / (col_step @ col_step)], axis=1)
    # whole steps only: the grid never reaches beyond the last acquired slice
    count = int(math.floor((distances[-1] - distances[0] + SPACING_TOLERANCE_MM) / spacing)) + 1
    return RegularGrid(LPS_TO_RAS @ lps, float(spacing), count, distances, shifts)


def _shift_slice(plane: np.ndarray, di: float, dj: float, fill: float) -> np.ndarray:
    """Bilinear resampling of a (rows, cols) plane at (j - dj, i - di): content moves by (+di, +dj) voxels."""
    rows, cols = plane.shape
    out = plane.astype(np.float32, copy=False)
    if abs(dj) > 1e-6:
        src = np.arange(rows) - dj
        low = np.floor(src).astype(int)
        frac = (src - low).astype(np.float32)[:, None]
        valid = (src >= -1e-6) & (src <= rows - 1 + 1e-6)
        a = out[np.clip(low, 0, rows - 1)]
        b = out[np.clip(low + 1, 0, rows - 1)]
        out = np.where(valid[:, None], a * (1 - frac) + b * frac, np.float32(fill))
    if abs(di) > 1e-6:
        src = np.arange(cols) - di
        low = np.floor(src).astype(int)
        frac = (src - low).astype(np.float32)[None, :]
        valid = (src >= -1e-6) & (src <= cols - 1 + 1e-6)
        a = out[:, np.clip(low, 0, cols - 1)]
        b = out[:, np.clip(low + 1, 0, cols - 1)]
        out = np.where(valid[None, :], a * (1 - frac) + b * frac, np.float32(fill))
    return out


def regularize(voxels_kji: np.ndarray, sorted_records: Sequence[FrameGeometry],
               slice_spacing: float | None = None, fill: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Resample an irregular stack onto a regular orthogonal grid; returns (voxels_kji float32, ijk_to_ras).

    Each grid slice is linearly interpolated, along the normal, between the two acquired slices
    around it, after shifting those in-plane (bilinear) onto the grid (this undoes gantry tilt).
    Missing slices are interpolated; acquired slices that fall on the grid are copied unchanged.
    Voxels the acquisition did not cover get `fill` (default: the data minimum). Pure numpy.
    """
    grid = regular_grid(sorted_records, slice_spacing)
    if voxels_kji.shape[0] != len(grid.source_distances):
        raise ValueError(f"{voxels_kji.shape[0]} slices of voxels for {len(grid.source_distances)} positions")
    fill_value = float(np.min(voxels_kji)) if fill is None else float(fill)
    shifted: dict[int, np.ndarray] = {}

    def source(index: int) -> np.ndarray:
        if index not in shifted:
            di, dj = grid.source_shifts[index]
            shifted[index] = _shift_slice(voxels_kji[index], float(di), float(dj), fill_value)
        return shifted[index]

    out = np.empty((grid.slice_count, *voxels_kji.shape[1:]), dtype=np.float32)
    distances = grid.source_distances
    for k in range(grid.slice_count):
        d = distances[0] + k * grid.slice_spacing
        upper = int(np.searchsorted(distances, d - SPACING_TOLERANCE_MM, side="left"))
        upper = min(max(upper, 0), len(distances) - 1)
        lower = max(upper - 1, 0)
        for stale in [i for i in shifted if i < lower]:
            del shifted[stale]  # keeps memory to two shifted planes beyond the output
        if abs(distances[upper] - d) <= SPACING_TOLERANCE_MM or upper == 0:
            out[k] = source(upper)
            continue
        weight = np.float32((d - distances[lower]) / (distances[upper] - distances[lower]))
        out[k] = source(lower) * (1 - weight) + source(upper) * weight
    return out, grid.ijk_to_ras


# --- comparing affines ----------------------------------------------------------------------------
def affine_max_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference (mm for translations, mm/voxel for the 3x3) between two 4x4s."""
    return float(np.max(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))))


def corner_points(ijk_to_any: np.ndarray, shape_kji: Sequence[int]) -> np.ndarray:
    """World coordinates (same frame as the matrix) of the 8 corner voxel centres of a volume."""
    k, j, i = (int(n) - 1 for n in shape_kji[:3])
    corners = np.array([[x, y, z, 1.0] for x in (0, i) for y in (0, j) for z in (0, k)])
    return (np.asarray(ijk_to_any) @ corners.T).T[:, :3]
