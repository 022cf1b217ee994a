"""DICOMBrowserLib.comparison on small NIfTI files written here: the measuring tool of the dcm2niix
differential test must itself see every kind of difference it claims to see, and none that is
only a different storage order of the same grid."""
from __future__ import annotations

import json

import nibabel
import numpy as np
import pytest

from DICOMBrowser.DICOMBrowserLib import comparison
from DICOMBrowser.DICOMBrowserLib.comparison import NiftiOutput

AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -120], [0, 0, 3.0, -60], [0, 0, 0, 1]])


def volume(shape=(6, 5, 4), volumes: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1000, size=shape if volumes is None else (*shape, volumes)).astype(np.int16)


def write(path, data, affine, slope=None, inter=0.0, bvals=None, bvecs=None) -> NiftiOutput:
    image = nibabel.Nifti1Image(data, affine)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    nibabel.save(image, str(path))
    if bvals is not None:
        stem = comparison.nifti_stem(path)
        (path.parent / f"{stem}.bval").write_text(" ".join(str(b) for b in bvals) + "\n")
        (path.parent / f"{stem}.bvec").write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in bvecs) + "\n")
    return NiftiOutput.at(path)


def flipped_y(data, affine):
    """The same image stored with the y axis reversed (dcm2niix's habit against ours)."""
    flip = np.eye(4)
    flip[1, 1] = -1
    flip[1, 3] = data.shape[1] - 1
    return np.flip(data, 1).copy(), affine @ flip


def test_the_same_grid_stored_in_another_axis_order_is_equal(tmp_path):
    data = volume()
    ours = write(tmp_path / "ours.nii.gz", data, AFFINE)
    swapped = np.eye(4)[[2, 0, 1, 3]]  # their x = our k, y = i, z = j ... as a voxel permutation
    theirs_data = np.transpose(data, (2, 0, 1))
    theirs = write(tmp_path / "ref.nii", theirs_data, AFFINE @ swapped.T)
    result = comparison.compare_outputs(ours, theirs)
    assert result.ok, result.reasons
    assert result.max_abs_voxel_difference == 0 and result.shape_ours == result.shape_reference
    assert "voxel axes stored differently" in result.notes[0]
    data2, affine2 = flipped_y(data, AFFINE)
    assert comparison.compare_outputs(ours, write(tmp_path / "flip.nii", data2, affine2)).ok


def test_physical_values_apply_the_scaling_on_both_sides(tmp_path):
    data = volume()
    ours = write(tmp_path / "ours.nii.gz", (data * 0.5 - 10).astype(np.float32), AFFINE)
    theirs = write(tmp_path / "ref.nii", data, AFFINE, slope=0.5, inter=-10)
    assert comparison.compare_outputs(ours, theirs).ok
    other = write(tmp_path / "other.nii", data, AFFINE, slope=2.0, inter=0.0)
    result = comparison.compare_outputs(ours, other)
    assert not result.ok and "ours = 0.25 x dcm2niix -10" in result.reasons[0]


def test_one_voxel_off_is_a_difference(tmp_path):
    data = volume()
    changed = data.copy()
    changed[1, 2, 3] += 1
    result = comparison.compare_outputs(write(tmp_path / "a.nii", changed, AFFINE), write(tmp_path / "b.nii", data, AFFINE))
    assert not result.ok and result.differing_voxels == 1 and result.max_abs_voxel_difference == 1
    assert result.reasons == ["voxels differ: 1 of 120, max |difference| 1"]


@pytest.mark.parametrize(("change", "expected"), [
    ((0, 3, 0.02), "affine differs: origin 0.02 mm"),  # 2e-2 mm > 1e-2
    ((2, 2, 3.01), "corners 0.03 mm"),  # slice spacing 3.01 instead of 3: the far corner moves 3 x 0.01
])
def test_affine_tolerances(tmp_path, change, expected):
    data = volume()
    moved = AFFINE.copy()
    row, column, value = change
    moved[row, column] = moved[row, column] + value if column == 3 else value
    result = comparison.compare_outputs(write(tmp_path / "a.nii", data, moved), write(tmp_path / "b.nii", data, AFFINE))
    assert not result.ok and expected in result.reasons[0]
    within = AFFINE.copy()
    within[0, 3] += 0.005
    assert comparison.compare_outputs(write(tmp_path / "c.nii", data, within), write(tmp_path / "b.nii", data, AFFINE)).ok


def test_direction_tolerance(tmp_path):
    data = volume()
    angle = 2e-3  # radians: direction cosines move by about 2e-3 > 1e-3
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    result = comparison.compare_outputs(write(tmp_path / "a.nii", data, rotation @ AFFINE),
                                        write(tmp_path / "b.nii", data, AFFINE))
    assert any(reason.startswith("direction cosines differ by 0.002") for reason in result.reasons)


def test_a_3d_output_against_a_4d_reference_names_the_volumes(tmp_path):
    data = volume(volumes=3)
    result = comparison.compare_outputs(write(tmp_path / "a.nii", data[..., 0], AFFINE), write(tmp_path / "b.nii", data, AFFINE))
    assert not result.ok and result.reasons[0] == "volumes differ: ours 6x5x4, dcm2niix 6x5x4x3"
    assert result.differing_voxels == 0  # the first volume is the same


def test_colour_images_compare_by_channel(tmp_path):
    rgb_dtype = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
    channels = volume().astype(np.uint8)
    rgb = np.zeros(channels.shape, dtype=rgb_dtype)
    rgb["R"], rgb["G"], rgb["B"] = channels, channels // 2, 255 - channels
    ours, theirs = write(tmp_path / "a.nii", rgb, AFFINE), write(tmp_path / "b.nii", rgb.copy(), AFFINE)
    assert comparison.compare_outputs(ours, theirs).ok
    rgb["G"][0, 0, 0] += 1
    result = comparison.compare_outputs(ours, write(tmp_path / "c.nii", rgb, AFFINE))
    assert result.reasons == ["voxels differ: 1 of 360, max |difference| 1"]


def test_unrelated_grids_are_reported_not_raised(tmp_path):
    data = volume()
    oblique = AFFINE.copy()
    oblique[:3, :3] = np.array([[1, 1, 0], [-1, 1, 0], [0, 0, 1]]) / np.sqrt(2) @ np.diag([2.0, 2.0, 3.0])
    result = comparison.compare_outputs(write(tmp_path / "a.nii", data, oblique), write(tmp_path / "b.nii", data, AFFINE))
    assert not result.ok and result.reasons[0].startswith("grids unrelated")


DIRECTIONS = np.array([[0, 1, 0, 0.6], [0, 0, 1, 0.8], [0, 0, 0, 0]], dtype=float)  # FSL rows x, y, z


def test_bval_bvec_compared_as_written(tmp_path):
    data = volume(volumes=4)
    ours = write(tmp_path / "ours.nii", data, AFFINE, bvals=[0, 1000, 1000, 1000], bvecs=DIRECTIONS)
    same = write(tmp_path / "same.nii", data, AFFINE, bvals=[0, 1000, 1000, 1000], bvecs=DIRECTIONS)
    result = comparison.compare_outputs(ours, same)
    assert result.ok and result.bval_max_difference == 0 and result.bvec_max_difference == 0
    other = DIRECTIONS.copy()
    other[0, 0] = 0.577  # a b = 0 volume's direction means nothing: a note, not a difference
    other[2, 3] = 0.002  # 2e-3 > 1e-3
    result = comparison.compare_outputs(ours, write(tmp_path / "other.nii", data, AFFINE, bvals=[0, 1000, 1000, 1000],
                                                    bvecs=other))
    assert result.reasons == ["bvecs differ by up to 0.002"]
    assert result.bval_max_difference == 0 and "b = 0 volumes differ (ignored)" in result.notes[0]
    bad_bvals = write(tmp_path / "bvals.nii", data, AFFINE, bvals=[0, 1000, 1000, 1001], bvecs=DIRECTIONS)
    assert comparison.compare_outputs(ours, bad_bvals).reasons == ["b-values differ by up to 1"]


def test_bvecs_that_differ_by_the_grid_flip_say_so(tmp_path):
    data = volume(volumes=4)
    ours = write(tmp_path / "ours.nii", data, AFFINE, bvals=[0, 1000, 1000, 1000], bvecs=DIRECTIONS)
    flipped, affine = flipped_y(data, AFFINE)
    their_bvecs = DIRECTIONS * np.array([[1], [-1], [1]])  # the same vectors in the flipped voxel frame
    result = comparison.compare_outputs(ours, write(tmp_path / "ref.nii", flipped, affine, bvals=[0, 1000, 1000, 1000],
                                                    bvecs=their_bvecs))
    assert result.reasons == ["bvecs differ by up to 2 (only by the grid's axis permutation/flip +x -y +z: "
                              "vectors in our voxel frame)"]
    missing = comparison.compare_outputs(write(tmp_path / "plain.nii", data, AFFINE), ours)
    assert missing.reasons == ["dcm2niix wrote .bval/.bvec, ours has none (not loaded as DWI)"]


def test_in_reference_order_takes_plugin_arrays():
    """(k, j, i) and (t, k, j, i) arrays as plugins read them, against a NIfTI affine."""
    data_ijk = volume(volumes=2)
    data_tkji = np.transpose(data_ijk, (3, 2, 1, 0))
    flipped, affine = flipped_y(data_ijk, AFFINE)
    assert np.array_equal(comparison.in_reference_order(data_tkji, AFFINE, affine), flipped)
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.5
    with pytest.raises(comparison.ComparisonError, match="affines differ"):
        comparison.in_reference_order(data_tkji, shifted, AFFINE)
    larger = AFFINE.copy()
    larger[:3, 3] -= AFFINE[:3, :3] @ [0, 2, 0]  # a reference grid starting two rows earlier
    ours, region = comparison.in_reference_order(data_tkji, AFFINE, larger, (6, 9, 4))
    assert region[1] == slice(2, 7) and np.array_equal(ours, data_ijk)


def test_suffixes_of_dcm2niix_outputs():
    assert comparison.dcm2niix_suffixes(["2_gre_field_magph_e1", "2_gre_field_magph_e2"]) == ["_e1", "_e2"]
    assert comparison.dcm2niix_suffixes(["GE_6_B0", "GE_6_B0_fieldmaphz"]) == ["", "_fieldmaphz"]
    assert comparison.dcm2niix_suffixes(["x_e1", "x_e2_ph"]) == ["_e1", "_e2_ph"]
    # one output: the description (as dcm2niix writes it) ends the base name
    assert comparison.dcm2niix_suffixes(["4_gre_field_ph_e2_ph"], "gre_field_ph") == ["_e2_ph"]
    assert comparison.dcm2niix_suffixes(["6_REST1_w_SMS_PF7-8"], "REST1 w SMS PF7-8") == [""]
    assert comparison.dcm2niix_suffixes(["1_Ax_DWI_TENSOR_R2"]) == [""]
    assert comparison.dcm2niix_suffixes(["2__Eq_1"]) == ["_Eq_1"]


def test_outputs_pair_by_suffix_else_by_closest_values(tmp_path):
    echo1, echo2 = volume(seed=1), volume(seed=2)
    references = [write(tmp_path / "ref_e1.nii", echo1, AFFINE), write(tmp_path / "ref_e2.nii", echo2, AFFINE)]
    references[0].suffix, references[1].suffix = "_e1", "_e2"
    unnamed = [write(tmp_path / "ours_a.nii.gz", echo2, AFFINE), write(tmp_path / "ours_b.nii.gz", echo1, AFFINE)]
    pairs, left = comparison.match_outputs(unnamed, references)
    assert [c.ours for _, c in pairs] == ["ours_b", "ours_a"] and all(c.ok for _, c in pairs) and not left
    # a suffix our loadable carries decides, even against the values
    unnamed[0].suffix, unnamed[1].suffix = "_e1", "_e2"
    pairs, _ = comparison.match_outputs(unnamed, references)
    assert [c.ours for _, c in pairs] == ["ours_a", "ours_b"] and not any(c.ok for _, c in pairs)


def test_series_verdicts(tmp_path):
    data = volume()
    ours = write(tmp_path / "ours.nii.gz", data, AFFINE)
    ref = write(tmp_path / "ref.nii", data, AFFINE)
    extra = write(tmp_path / "ref_ph.nii", data + 1, AFFINE)
    verdict = comparison.verdict_for_series("#3 test", [ours], [ref])
    assert verdict.ok and verdict.line().startswith("OK   #3 test  (ref: 6x5x4, max |dv| 0")
    verdict = comparison.verdict_for_series("#3 test", [ours], [ref, extra])
    assert not verdict.ok and verdict.reasons == ["dcm2niix's ref_ph has no counterpart among our outputs"]
    assert verdict.line() == "DIFF #3 test: dcm2niix's ref_ph has no counterpart among our outputs"
    none = comparison.verdict_for_series("#4 ps", [], [], why_no_output="no loadable selected by default")
    assert none.ok and none.notes[0].startswith("no volume on either side")
    missing = comparison.verdict_for_series("#5", [], [ref], why_no_output="no loadable selected by default")
    assert missing.reasons == ["no loadable selected by default (dcm2niix wrote ref)"]
    assert json.loads(json.dumps(verdict.to_json()))["outputs"][0]["reference"] == "ref"


def test_stored_references_found_through_their_sidecars(tmp_path):
    data = volume()
    for stem, number, description in [("Si_2_gre_e1", 2, "gre"), ("Si_2_gre_e2", 2, "gre"), ("GE_2_epi", 2, "epi RT"),
                                       ("json_only", 2, "gre")]:
        (tmp_path / f"{stem}.json").write_text(json.dumps({"SeriesNumber": number, "SeriesDescription": description}))
        if stem != "json_only":
            write(tmp_path / f"{stem}.nii", data, AFFINE)
    found = comparison.stored_references(tmp_path, 2, "gre")
    assert [(r.label, r.suffix) for r in found] == [("Si_2_gre_e1", "_e1"), ("Si_2_gre_e2", "_e2")]
    assert [r.label for r in comparison.stored_references(tmp_path, "2", "epi RT")] == ["GE_2_epi"]
    assert comparison.stored_references(tmp_path, 3, "gre") == []
