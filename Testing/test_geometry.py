"""Geometry: sorting, every check, IJK-to-RAS and regularization, on generated stacks with known
truth and on the real series of the corpus (which must not false-alarm, or must warn)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from DICOMBrowser.DICOMBrowserLib import geometry, multiframe
from DICOMBrowser.DICOMBrowserLib.geometry import FrameGeometry
from DICOMBrowser.DICOMBrowserLib.tagreader import file_value

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
GEOMETRY_TAGS = ["0028,0010", "0028,0011", "0020,0032", "0020,0037", "0028,0030", "0018,0050", "0020,0013"]


def stack(positions, orientation=AXIAL, spacing=(1.0, 1.0), rows=16, columns=16, orientations=None):
    return [FrameGeometry(path=f"f{i:03d}.dcm", position=tuple(map(float, p)),
                          orientation=tuple(orientations[i]) if orientations else orientation,
                          pixel_spacing=spacing, rows=rows, columns=columns, instance_number=i + 1)
            for i, p in enumerate(positions)]


def kinds(findings):
    return sorted(f.kind for f in findings)


def records_of(files):
    return [geometry.frame_geometry_from_values(str(f), {t: file_value(str(f), t) for t in GEOMETRY_TAGS})
            for f in files]


def dicom_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() not in
                  (".nii", ".gz", ".json", ".bval", ".bvec", ".txt", ".md", ".nrrd") and "licen" not in p.name.lower())


# --- a regular stack ---------------------------------------------------------------------------------
def test_regular_stack_has_no_findings_and_the_expected_ijk_to_ras():
    records = stack([(10, 20, 30 + 2.5 * k) for k in range(8)], spacing=(0.7, 0.9))
    shuffled = [records[i] for i in (3, 0, 7, 5, 1, 6, 2, 4)]
    ordered = geometry.sort_frames(shuffled)
    assert [r.path for r in ordered] == [r.path for r in records]
    assert geometry.check_geometry(ordered) == []
    matrix = geometry.ijk_to_ras(ordered)
    # i along +x LPS (= -x RAS) by column spacing 0.9; j along +y LPS by row spacing 0.7; k along +z
    expected = np.array([[-0.9, 0, 0, -10], [0, -0.7, 0, -20], [0, 0, 2.5, 30], [0, 0, 0, 1]])
    assert np.allclose(matrix, expected)


def test_sorting_uses_position_along_the_normal_not_instance_number(series_factory):
    files = series_factory(count=6, spacing=2.0, shuffle_instance_numbers=True)
    records = records_of(reversed(files))
    ordered = geometry.sort_frames(records)
    assert [r.path for r in ordered] == [str(f) for f in files]
    assert [r.instance_number for r in ordered] != sorted(r.instance_number for r in ordered)


def test_oblique_stack_ijk_to_ras_columns_follow_orientation():
    angle = math.radians(20)
    orientation = (1.0, 0.0, 0.0, 0.0, math.cos(angle), math.sin(angle))
    normal = geometry.slice_normal(orientation)
    records = stack([tuple(np.array([1.0, 2.0, 3.0]) + 3.0 * k * normal) for k in range(5)], orientation=orientation)
    assert geometry.check_geometry(geometry.sort_frames(records)) == []
    lps = geometry.ijk_to_lps(records)
    assert np.allclose(lps[:3, 2], 3.0 * normal)
    assert np.allclose(geometry.LPS_TO_RAS @ lps, geometry.ijk_to_ras(records))
    # each slice's position is where the matrix puts voxel (0, 0, k)
    for k, record in enumerate(records):
        assert np.allclose((lps @ [0, 0, k, 1])[:3], record.position)


# --- each defect ------------------------------------------------------------------------------
def test_nonuniform_spacing_reports_every_gap():
    z = [0, 1, 2, 3.5, 4.5, 5.5, 7.25, 8.25]
    findings = geometry.check_geometry(stack([(0, 0, v) for v in z]))
    assert kinds(findings) == [geometry.NONUNIFORM_SPACING]
    gaps = findings[0].details["gaps"]
    assert [round(g["gap"], 3) for g in gaps] == [1.5, 1.75]
    assert findings[0].details["nominal_spacing"] == pytest.approx(1.0)
    assert set(findings[0].files) == {"f002.dcm", "f003.dcm", "f005.dcm", "f006.dcm"}


def test_missing_slices_are_counted_at_every_gap():
    z = [0, 2, 4, 8, 10, 16]  # one missing after 4, two after 10
    findings = geometry.check_geometry(stack([(0, 0, v) for v in z]))
    assert kinds(findings) == [geometry.MISSING_SLICES]
    assert [g["missing"] for g in findings[0].details["gaps"]] == [1, 2]
    assert "3 slices missing" in findings[0].message


def test_gantry_tilt_is_detected_with_its_angle():
    tilt = math.radians(12)
    positions = [(0, 5 * k * math.tan(tilt), 5 * k) for k in range(10)]
    findings = geometry.check_geometry(stack(positions))
    assert kinds(findings) == [geometry.GANTRY_TILT]
    assert findings[0].details["angle_degrees"] == pytest.approx(12, abs=0.01)
    assert len(findings[0].files) == 9


def test_orientation_varying_between_files():
    orientations = [AXIAL] * 5
    orientations[3] = (1.0, 0.0, 0.0, 0.0, 0.99995, 0.0099998)
    findings = geometry.check_geometry(stack([(0, 0, k) for k in range(5)], orientations=orientations))
    assert geometry.ORIENTATION_VARIES in kinds(findings)
    varying = next(f for f in findings if f.kind == geometry.ORIENTATION_VARIES)
    assert varying.files == ["f003.dcm"]


def test_duplicate_positions_single_slice_missing_geometry_and_sizes():
    dup = geometry.check_geometry(stack([(0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 2)]))
    assert kinds(dup) == [geometry.DUPLICATE_POSITIONS]
    assert sorted(dup[0].files) == ["f001.dcm", "f002.dcm"]
    assert kinds(geometry.check_geometry(stack([(0, 0, 0)]))) == [geometry.SINGLE_SLICE]
    records = stack([(0, 0, k) for k in range(4)])
    records[2] = FrameGeometry(path="f002.dcm", position=None, orientation=AXIAL, pixel_spacing=(1, 1), rows=16, columns=16)
    missing = geometry.check_geometry(geometry.sort_frames(records))
    assert geometry.MISSING_GEOMETRY in kinds(missing)
    assert next(f for f in missing if f.kind == geometry.MISSING_GEOMETRY).files == ["f002.dcm"]
    sizes = stack([(0, 0, k) for k in range(3)])
    sizes[1] = FrameGeometry(path="f001.dcm", position=(0, 0, 1), orientation=AXIAL, pixel_spacing=(1, 1), rows=8, columns=16)
    assert geometry.SIZE_VARIES in kinds(geometry.check_geometry(sizes))
    bad = stack([(0, 0, k) for k in range(3)], orientation=(1, 0, 0, 1, 0, 0))
    assert kinds(geometry.check_geometry(geometry.sort_frames(bad))) == [geometry.INVALID_ORIENTATION]


def test_tolerances_separate_rounding_noise_from_defects():
    rng = np.random.default_rng(1)
    noisy = [(rng.uniform(-0.004, 0.004), rng.uniform(-0.004, 0.004), k + rng.uniform(-0.004, 0.004)) for k in range(20)]
    assert geometry.check_geometry(stack(noisy)) == []
    shifted = [(0, 0, float(k)) for k in range(20)]
    shifted[10] = (0, 0, 10.05)
    assert kinds(geometry.check_geometry(stack(shifted))) == [geometry.NONUNIFORM_SPACING]


def test_time_series_positions_repeat_without_duplicate_warning():
    positions = [(0, 0, k) for k in range(5) for _ in range(3)]
    ordered = geometry.sort_frames(stack(positions))
    groups = geometry.position_groups(ordered)
    assert [len(g) for g in groups] == [3] * 5
    assert geometry.check_geometry(ordered, expect_repeats=3) == []
    assert kinds(geometry.check_geometry(ordered)) == [geometry.DUPLICATE_POSITIONS]


# --- regularization against ground truth -----------------------------------------------------------
def world_ramp(records, rows, columns):
    """Voxels whose value is linear in LPS position: 2*y + 10*z + x (exact under linear interpolation)."""
    planes = []
    for record in records:
        x0, y0, z0 = record.position
        yy, xx = np.mgrid[0:rows, 0:columns]
        planes.append(xx + x0 + 2 * (yy + y0) + 10 * z0)
    return np.asarray(planes, dtype=np.float32)


def test_regularize_nonuniform_spacing_matches_truth():
    z = [0, 1, 2, 3.5, 4.5, 5.5, 7.0]
    records = stack([(0, 0, v) for v in z])
    voxels, matrix = geometry.regularize(world_ramp(records, 16, 16), records)
    assert voxels.shape == (8, 16, 16)
    truth = world_ramp(stack([(0, 0, k) for k in range(8)]), 16, 16)
    assert np.allclose(voxels, truth, atol=1e-4)
    assert np.allclose(matrix[:3, 2], [0, 0, 1])


def test_regularize_missing_slice_copies_acquired_slices_and_interpolates_the_gap():
    z = [0, 2, 4, 8, 10]
    records = stack([(0, 0, v) for v in z])
    source = world_ramp(records, 16, 16)
    voxels, _ = geometry.regularize(source, records)
    assert voxels.shape[0] == 6
    for index, k in enumerate((0, 1, 2, 4, 5)):
        assert np.array_equal(voxels[k], source[index])
    assert np.allclose(voxels[3], (source[2] + source[3]) / 2)


def test_regularize_gantry_tilt_undoes_the_in_plane_shift():
    records = stack([(0, 0.5 * k, 3.0 * k) for k in range(6)], rows=24, columns=8)
    voxels, matrix = geometry.regularize(world_ramp(records, 24, 8), records)
    truth = world_ramp(stack([(0, 0, 3.0 * k) for k in range(6)], rows=24, columns=8), 24, 8)
    # slice k was acquired 0.5*k mm further along +y: the grid's first rows were not acquired there
    assert np.allclose(voxels[:, 3:], truth[:, 3:], atol=1e-3)
    assert np.allclose(matrix, geometry.ijk_to_ras(records[:1], 3.0))
    assert np.all(voxels[5, :2] == voxels.min())  # not acquired: filled, not invented


def test_regularize_generated_series_files(series_factory):
    positions = [(0.0, 0.0, z) for z in (0, 1, 2, 3, 5, 6, 7)]
    files = series_factory(positions=positions)
    records = geometry.sort_frames(records_of(files))
    assert kinds(geometry.check_geometry(records)) == [geometry.MISSING_SLICES]
    grid = geometry.regular_grid(records)
    assert grid.slice_count == 8 and grid.slice_spacing == pytest.approx(1.0)


# --- multi-frame ---------------------------------------------------------------------------------------
def test_enhanced_mr_per_frame_geometry(corpus):
    path = corpus / "enhanced_multiframe" / "In" / "Philips" / "IM_0027_fMAP.dcm"
    frames = multiframe.frame_geometries(str(path))
    assert len(frames) == 64
    types = {f.attributes["frame_type"] for f in frames}
    assert types == {"ORIGINAL\\PRIMARY\\T1\\M", "ORIGINAL\\PRIMARY\\T1\\FIELD_MAP"}
    for frame_type in types:
        stack_ = geometry.sort_frames([f for f in frames if f.attributes["frame_type"] == frame_type])
        assert len(stack_) == 32
        assert geometry.check_geometry(stack_) == []
        assert geometry.nominal_slice_spacing(stack_) == pytest.approx(4.0, abs=1e-3)
    assert frames[0].label.endswith("#frame1")


def test_enhanced_multiframe_time_series_repeats_positions(corpus):
    folder = corpus / "enhanced_multiframe" / "In" / "Siemens" / "XA10"
    frames = [f for path in sorted(folder.glob("*.dcm")) for f in multiframe.frame_geometries(str(path))]
    ordered = geometry.sort_frames(frames)
    assert [len(g) for g in geometry.position_groups(ordered)] == [4] * 6
    assert geometry.check_geometry(ordered, expect_repeats=4) == []


def test_legacy_multiframe_uses_grid_frame_offsets(pydicom_file):
    frames = multiframe.frame_geometries(str(pydicom_file("rtdose.dcm")))
    assert len(frames) > 1
    distances = geometry.slice_distances(geometry.sort_frames(frames))
    assert np.all(np.diff(distances) > 0)


# --- the real corpus: warn on the defective series, no false alarms on the regular ones ------------
FAILING = "dicom2nifti/tests/data/failing"


@pytest.mark.parametrize("folder, expected", [
    (f"{FAILING}/gantrytilting/001", geometry.GANTRY_TILT),
    (f"{FAILING}/sliceincrement/001", geometry.MISSING_SLICES),
])
def test_real_defective_series_warn(corpus, folder, expected):
    records = geometry.sort_frames(records_of(dicom_files(corpus / folder)))
    assert kinds(geometry.check_geometry(records)) == [expected]


@pytest.mark.parametrize("folder", [
    "slicer_ct_head", "ge_t1", "dicom2nifti/tests/data/hitachi/anatomical/001",
])
def test_real_regular_series_do_not_false_alarm(corpus, folder):
    records = geometry.sort_frames(records_of(dicom_files(corpus / folder)))
    assert len(records) > 3
    assert geometry.check_geometry(records) == []


def test_real_mosaic_files_each_hold_one_position(corpus):
    """Siemens mosaics: 2 volumes per series folder, same position (a time series, not a defect)."""
    for folder in sorted((corpus / "siemens_mosaic_orientation" / "In" / "Orientation").glob("*/*")):
        records = geometry.sort_frames(records_of(dicom_files(folder)))
        assert [len(g) for g in geometry.position_groups(records)] == [len(records)], folder
        findings = geometry.check_geometry(records, expect_repeats=len(records))
        assert kinds(findings) in ([], [geometry.SINGLE_SLICE]), (folder, findings)


def test_tilt_and_a_missing_slice_together_are_both_reported_and_regularized():
    positions = [(0, 0.5 * k, 2.0 * k) for k in (0, 1, 2, 3, 5, 6, 7)]  # slice 4 missing, and tilted
    records = stack(positions, rows=24, columns=8)
    assert kinds(geometry.check_geometry(records)) == [geometry.GANTRY_TILT, geometry.MISSING_SLICES]
    voxels, _ = geometry.regularize(world_ramp(records, 24, 8), records)
    truth = world_ramp(stack([(0, 0, 2.0 * k) for k in range(8)], rows=24, columns=8), 24, 8)
    assert np.allclose(voxels[:, 4:], truth[:, 4:], atol=1e-3)


@pytest.mark.parametrize("seed", range(6))
def test_nominal_slice_spacing_is_np_median_of_the_common_gaps(seed):
    """The spacing takes the median of the gaps near the most common one by hand (np.median imports
    numpy.ma, 15 ms of every convert): exactly np.median's value, odd and even counts."""
    rng = np.random.default_rng(seed)
    gaps = 2.5 + rng.uniform(-0.004, 0.004, size=7 + seed)
    positions = np.concatenate([[0.0], np.cumsum(gaps)])
    records = geometry.sort_frames(stack([(0.0, 0.0, float(z)) for z in positions]))
    near = np.diff(geometry.slice_distances(records))
    assert geometry.nominal_slice_spacing(records) == float(np.median(near))
