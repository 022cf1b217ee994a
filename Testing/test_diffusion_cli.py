"""Diffusion series through the user's own commands: `import FOLDER`, `ls --level series --json`,
`examine UID --json`, `load UID --output dwi.nii.gz` (which writes dwi.bval / dwi.bvec beside it),
compared with dcm2niix's stored references and with dcm2niix run live on the same files.

Covers every way a scanner writes a DWI series that the corpus holds or that real corpus files
can be turned into: UIH grid (VFRAME) images, Canon/Toshiba b = 0 images without any diffusion
tag, Siemens XA enhanced (one multi-frame file per volume), GE and Philips classic slices, and a
Philips enhanced file.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
from DICOMBrowser.DICOMBrowserLib.diffusion import read_dwi
from DICOMPlugins.DICOMDiffusionVolumePlugin import DICOMDiffusionVolumePlugin

nib = pytest.importorskip("nibabel")

UIH_FOLDER = ("fmri_timeseries", "In", "UIH", "R002", "12_dti_tra_dir16_PA_rot")
UIH_REFERENCE = ("fmri_timeseries", "Ref", "UIH_dti_tra_dir16_PA_rot_12")


# --- helpers: the CLI and dcm2niix -----------------------------------------------------------
def dcm2niix(folder: Path, out: Path) -> Path:
    """dcm2niix (Debian package) on a folder; the path of its one .nii output (base name "ref")."""
    exe = shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix not installed (Debian package dcm2niix)")
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([exe, "-o", str(out), "-f", "ref", "-z", "n", str(folder)], check=True, capture_output=True,
                   timeout=120)
    return out / "ref.nii"


def import_series(cli_runner, folder: Path) -> list[dict]:
    """`import FOLDER` then `ls --level series --json`: the MR image series (more than one frame)."""
    result = cli_runner("import", str(folder))
    assert result.exit_code == 0, result.output
    listing = cli_runner("ls", "--level", "series", "--json")
    assert listing.exit_code == 0, listing.output
    rows = json.loads(listing.output[listing.output.index("["):])
    return [row for row in rows if row["Modality"] == "MR" and row["NumberOfFrames"] > 1]


def examine_default(cli_runner, series_uid: str) -> dict:
    """`examine UID --json`: the one loadable selected by default."""
    result = cli_runner("examine", series_uid, "--json")
    assert result.exit_code == 0, result.output
    loadables = json.loads(result.output[result.output.index("["):])
    selected = [loadable for loadable in loadables if loadable["selected"]]
    assert len(selected) == 1, loadables
    return selected[0]


def load_nifti(cli_runner, series_uid: str, output: Path) -> dict:
    """`load UID --output x.nii.gz --json`; what the command reports it loaded."""
    result = cli_runner("load", series_uid, "--output", str(output), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["loaded"][0]["class"] == "vtkMRMLDiffusionWeightedVolumeNode"
    return report["loaded"][0]


def sidecars(base: Path) -> tuple[list[str], np.ndarray]:
    """(the .bval file's numbers as written, the .bvec as (n, 3))."""
    bvals = Path(str(base) + ".bval").read_text().split()
    bvecs = np.loadtxt(str(base) + ".bvec", ndmin=2).T
    return bvals, bvecs


def assert_same_dwi(ours_nifti: Path, reference_nifti: Path, reference_base: Path | None = None,
                    stored_voxels: bool = True) -> None:
    """Voxels equal (stored values), affine within 1e-2 mm, b-values as dcm2niix writes them (6
    significant digits), vectors within 1e-3 where b > 0 (for b = 0, dcm2niix writes Philips's
    raw vector unrotated; any vector is valid there)."""
    ours, reference = nib.load(str(ours_nifti)), nib.load(str(reference_nifti))
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours.affine, reference.affine, atol=1e-2)
    if stored_voxels:
        assert ours.get_data_dtype() == reference.get_data_dtype()
        np.testing.assert_array_equal(np.asanyarray(ours.dataobj), np.asanyarray(reference.dataobj))
    if reference_base is None:
        reference_base = reference_nifti.with_suffix("")
    our_bvals, our_bvecs = sidecars(Path(str(ours_nifti)[: -len(".nii.gz")]))
    ref_bvals, ref_bvecs = sidecars(reference_base)
    assert our_bvals == ref_bvals
    weighted = np.array([float(b) for b in ref_bvals]) > 0
    np.testing.assert_allclose(our_bvecs[weighted], ref_bvecs[weighted], atol=1e-3)


# --- UIH grid (VFRAME) DTI --------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_uih_grid_dti_loads_as_dwi_like_dcm2niix(cli_runner, corpus, tmp_path):
    """17 UIH grid images (20 tiles of 64 x 64 in 320 x 256, positions only in 0065,1051) load by
    default as one 64 x 64 x 20 x 17 DWI equal to dcm2niix's reference and to dcm2niix run live."""
    folder = corpus.joinpath(*UIH_FOLDER)
    series = import_series(cli_runner, folder)
    assert [(row["NumberOfInstances"], row["SeriesDescription"]) for row in series] == \
        [(17, "dti_tra_dir16_PA_rot_SaveBySlc")]
    uid = series[0]["SeriesInstanceUID"]
    default = examine_default(cli_runner, uid)
    assert default["plugin"] == "DICOMDiffusionVolumePlugin" and len(default["files"]) == 17
    assert "17 volumes, 16 weighted" in default["tooltip"] and default["warning"] == ""
    output = tmp_path / "uih.nii.gz"
    load_nifti(cli_runner, uid, output)
    reference = corpus.joinpath(*UIH_REFERENCE)
    image = nib.load(str(output))
    assert image.shape == (64, 64, 20, 17) and image.get_data_dtype() == np.uint16
    assert_same_dwi(output, Path(str(reference) + ".nii.gz"), reference)
    bvals, _ = sidecars(tmp_path / "uih")
    assert bvals[:2] == ["1.25126", "929.75"]  # b = 0 reports its imaging gradients' b, as dcm2niix keeps it
    assert_same_dwi(output, dcm2niix(folder, tmp_path / "live"))


def test_uih_gradients_are_along_the_image_axes(corpus):
    """(0065,1037) is along row, column and row x column: the vectors in LPS are the rotated ones,
    and the 25-degree in-plane rotation of this series tells the two readings apart."""
    files = sorted(corpus.joinpath(*UIH_FOLDER).iterdir())
    series = read_dwi(files)
    header = pydicom.dcmread(str(files[1]), stop_before_pixels=True)
    row, column = (np.array([float(v) for v in header.ImageOrientationPatient[i:i + 3]]) for i in (0, 3))
    along_image = np.array([float(v) for v in header[0x0065, 0x1037].value])
    np.testing.assert_allclose(series.gradients_lps[1],
                               along_image @ np.array([row, column, np.cross(row, column)]), atol=1e-9)
    assert np.linalg.norm(series.gradients_lps[1] - along_image) > 0.2
    np.testing.assert_array_equal(series.gradients_lps[0], 0.0)  # b = 0: no direction, yet not a trace image
    assert series.ijk_to_ras[2, 2] == pytest.approx(4.198, abs=1e-3)  # slices 4.2 mm apart, from 0065,1051


# --- Canon/Toshiba: b = 0 images without diffusion tags -----------------------------------------
def canon_like(ge_files: list[Path], folder: Path, b0_volumes: tuple[int, ...] = (0,),
               b0_numbered_last: bool = False) -> np.ndarray:
    """Copies of the real GE DWI as Canon/Toshiba writes DTI: the standard macro in an MR Diffusion
    Sequence (0018,9117) on the weighted images only; the b = 0 images carry no diffusion tag.
    Returns the b-values the copies encode, one per GE volume."""
    truth = read_dwi(ge_files)
    folder.mkdir(parents=True)
    bvalues = truth.bvalues.copy()
    for index, path in enumerate(ge_files):
        volume = index // 2  # the GE files are volume by volume, two slices each
        ds = pydicom.dcmread(str(path))
        for tag in [(0x0043, 0x1039), (0x0019, 0x10BB), (0x0019, 0x10BC), (0x0019, 0x10BD), (0x0018, 0x9087)]:
            if tag in ds:
                del ds[tag]
        ds.Manufacturer = "TOSHIBA"
        if volume in b0_volumes:
            bvalues[volume] = 0.0
            if b0_numbered_last:
                ds.InstanceNumber = 100 + index
        else:
            item = pydicom.Dataset()
            item.DiffusionBValue = float(truth.bvalues[volume])
            item.DiffusionDirectionality = "DIRECTIONAL"
            direction = pydicom.Dataset()
            direction.DiffusionGradientOrientation = [float(v) for v in truth.gradients_lps[volume]]
            item.DiffusionGradientDirectionSequence = [direction]
            ds.MRDiffusionSequence = [item]
        ds.save_as(str(folder / path.name))
    return bvalues


@pytest.mark.timeout(300)
@pytest.mark.parametrize("b0_numbered_last", [False, True], ids=["b0-first", "b0-numbered-last"])
def test_canon_b0_images_without_diffusion_tags_are_b0_volumes(cli_runner, ge_files, tmp_path, b0_numbered_last):
    """All 7 volumes load (not 6), the b = 0 one where dcm2niix puts it (acquisition order: first,
    or last when its images are numbered last), and the warning says what was assumed."""
    folder = tmp_path / "canon"
    canon_like(ge_files, folder, b0_numbered_last=b0_numbered_last)
    series = import_series(cli_runner, folder)
    assert len(series) == 1 and series[0]["NumberOfInstances"] == 14
    uid = series[0]["SeriesInstanceUID"]
    default = examine_default(cli_runner, uid)
    assert default["plugin"] == "DICOMDiffusionVolumePlugin" and len(default["files"]) == 14
    assert "2 image(s) without diffusion information read as b = 0" in default["warning"]
    output = tmp_path / "canon.nii.gz"
    load_nifti(cli_runner, uid, output)
    bvals, _ = sidecars(tmp_path / "canon")
    assert bvals == (["1000"] * 6 + ["0"] if b0_numbered_last else ["0"] + ["1000"] * 6)
    assert_same_dwi(output, dcm2niix(folder, tmp_path / "live"))


@pytest.mark.timeout(120)
def test_examine_finds_canon_dwi_when_every_probe_is_a_b0_image(ge_files, tmp_path):
    """Examine looks at the first, middle and last file first; when all three are b = 0 images
    without diffusion tags, it probes the other volumes at that slice position, with and without
    a database."""
    folder = tmp_path / "canon"
    bvalues = canon_like(ge_files, folder, b0_volumes=(0, 3))
    copies = sorted(folder.iterdir(), key=lambda p: int(p.name.split(".")[-1]))
    b0 = [copies[i] for i in (0, 1, 6, 7)]  # volumes 0 and 3, two slices each
    weighted = [p for p in copies if p not in b0]
    order = [str(p) for p in [b0[0], *weighted[:6], b0[1], *weighted[6:], b0[2], b0[3]]]
    assert {order[0], order[len(order) // 2], order[-1]} <= {str(p) for p in b0}
    database = DICOMDatabase(tmp_path / "db")
    try:
        from DICOMBrowser.DICOMBrowserLib import indexer

        indexer.import_paths(database, [str(folder)])
        for plugin in (DICOMDiffusionVolumePlugin(), DICOMDiffusionVolumePlugin(database)):
            loadables = plugin.examine([order])
            assert len(loadables) == 1
            np.testing.assert_array_equal(loadables[0].extra["plan"].bvalues, bvalues)
    finally:
        database.close()
    assert DICOMDiffusionVolumePlugin().examine([[str(p) for p in b0]]) == []  # b = 0 images alone: not DWI


# --- Siemens XA enhanced: one multi-frame file per volume -------------------------------------
@pytest.mark.timeout(300)
def test_siemens_xa_enhanced_dwi_with_an_untagged_b0_file(cli_runner, corpus, tmp_path):
    """The four XA10 enhanced files (one 6-frame volume each) with per-frame MR Diffusion Sequences
    on three of them: 4 volumes in InstanceNumber order, the untagged one b = 0. Voxels and
    geometry equal dcm2niix run live; dcm2niix 1.0.20220720 writes no .bval for these files, so
    the encodings are checked against the ones written into them."""
    directions = {2: (1.0, 0.0, 0.0), 3: (0.0, 0.6, 0.8), 4: (0.48, -0.6, 0.64)}
    folder = tmp_path / "xa"
    folder.mkdir()
    for source in sorted(corpus.joinpath("enhanced_multiframe", "In", "Siemens", "XA10").iterdir()):
        ds = pydicom.dcmread(str(source))
        direction = directions.get(int(ds.InstanceNumber))
        if direction is not None:
            for frame in ds.PerFrameFunctionalGroupsSequence:
                item = pydicom.Dataset()
                item.DiffusionBValue = 1000.0
                item.DiffusionDirectionality = "DIRECTIONAL"
                gradient = pydicom.Dataset()
                gradient.DiffusionGradientOrientation = list(direction)
                item.DiffusionGradientDirectionSequence = [gradient]
                frame.MRDiffusionSequence = [item]
        ds.save_as(str(folder / f"volume{5 - int(ds.InstanceNumber)}.dcm"))  # file names against the order
    series = import_series(cli_runner, folder)
    uid = series[0]["SeriesInstanceUID"]
    default = examine_default(cli_runner, uid)
    assert default["plugin"] == "DICOMDiffusionVolumePlugin"
    assert "6 image(s) without diffusion information read as b = 0" in default["warning"]
    output = tmp_path / "xa.nii.gz"
    load_nifti(cli_runner, uid, output)
    live = nib.load(str(dcm2niix(folder, tmp_path / "live")))
    ours = nib.load(str(output))
    assert ours.shape == live.shape == (64, 64, 6, 4)
    np.testing.assert_allclose(ours.affine, live.affine, atol=1e-2)
    np.testing.assert_array_equal(np.asanyarray(ours.dataobj), np.asanyarray(live.dataobj))
    bvals, _ = sidecars(tmp_path / "xa")
    assert bvals == ["0", "1000", "1000", "1000"]
    from DICOMBrowser.DICOMBrowserLib.diffusion.gradients import world_from_fsl_bvecs

    world = world_from_fsl_bvecs(sidecars(tmp_path / "xa")[1], ours.affine)
    np.testing.assert_allclose(world[1:], [directions[n] for n in (2, 3, 4)], atol=1e-6)


# --- GE and Philips, classic and enhanced: still as dcm2niix, through the CLI --------------------
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("case", ["ge_dwi", "dicom2nifti_ge", "philips_classic", "philips_enhanced"])
def test_vendor_dwi_through_the_cli_equals_dcm2niix(cli_runner, corpus, tmp_path, case):
    folders = {
        "ge_dwi": corpus / "ge_dwi" / "In" / "01_Ax_DWI_TENSOR_R2",
        "dicom2nifti_ge": corpus / "dicom2nifti" / "tests" / "data" / "ge" / "dti" / "001",
        "philips_classic": corpus / "philips_dwi" / "In" / "cl" / "DICOM",
        "philips_enhanced": corpus / "dicom2nifti" / "tests" / "data" / "philips_enhanced" / "dti" / "001",
    }
    folder = folders[case]
    series = import_series(cli_runner, folder)
    assert len(series) == 1, series
    uid = series[0]["SeriesInstanceUID"]
    assert examine_default(cli_runner, uid)["plugin"] == "DICOMDiffusionVolumePlugin"
    output = tmp_path / f"{case}.nii.gz"
    load_nifti(cli_runner, uid, output)
    live = dcm2niix(folder, tmp_path / "live")
    philips = case.startswith("philips")
    assert_same_dwi(output, live, stored_voxels=not philips)
    if philips:  # both write Philips' precise values, (stored x RS + RI) / (RS x SS), as the stored
        # integers with that scaling in scl_slope/scl_inter. dcm2niix writes unsigned 16-bit data
        # that fits as int16; we keep the stored type: the same numbers either way
        ours_image, theirs_image = nib.load(str(output)), nib.load(str(live))
        assert ours_image.get_data_dtype().kind in "iu"
        np.testing.assert_array_equal(ours_image.dataobj.get_unscaled().astype(np.int64),
                                      theirs_image.dataobj.get_unscaled().astype(np.int64))
        for field in ("slope", "inter"):  # nibabel moves scl_slope/scl_inter to the data object on load
            np.testing.assert_allclose(getattr(ours_image.dataobj, field), getattr(theirs_image.dataobj, field),
                                       rtol=1e-6, atol=1e-9)
        assert ours_image.dataobj.slope != 1.0
        ours, theirs = ours_image.get_fdata(), theirs_image.get_fdata()
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-3 * float(np.abs(theirs).max()) * 1e-3)
    stored = {"ge_dwi": corpus / "ge_dwi" / "Ref" / "Ax_DWI_TENSOR_R2_1",
              "philips_classic": corpus / "philips_dwi" / "Ref" / "701_DTI_Biobank_2mm_MB3S2_EPI_cl"}.get(case)
    if stored is not None:  # dcm2niix's references in the corpus too (the Philips one has no .nii)
        our_bvals, our_bvecs = sidecars(tmp_path / case)
        ref_bvals, ref_bvecs = sidecars(stored)
        assert our_bvals == ref_bvals
        weighted = np.array([float(b) for b in ref_bvals]) > 0
        np.testing.assert_allclose(our_bvecs[weighted], ref_bvecs[weighted], atol=1e-3)
