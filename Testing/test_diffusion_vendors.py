"""Diffusion series from every vendor in the corpus vs dcm2niix (stored Ref/ and run live) and
dicom2nifti's ground truth: b-values exact, directions within 1e-3, geometry and voxels."""
from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib.diffusion import read_dwi, write_fsl, read_fsl
from DICOMBrowser.DICOMBrowserLib.diffusion import csa, vendors
from DICOMBrowser.DICOMBrowserLib.diffusion.dwi_io import nifti_layout
from DICOMBrowser.DICOMBrowserLib.diffusion.gradients import fsl_bvecs

nib = pytest.importorskip("nibabel")


def run_dcm2niix(source: Path | list[Path], out: Path) -> Path:
    """dcm2niix (Debian package) on a folder or files; returns the output .nii path."""
    exe = shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix not installed (Debian package dcm2niix)")
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(source, list):
        folder = out.parent / (out.name + "-in")
        folder.mkdir(exist_ok=True)
        for path in source:
            (folder / path.name).symlink_to(path)
        source = folder
    subprocess.run([exe, "-o", str(out), "-f", "out", "-z", "n", str(source)], check=True,
                   capture_output=True, timeout=120)
    return out / "out.nii"


def bval_strings(values) -> list[str]:
    return [f"{float(v):g}" for v in values]


def load_fsl_ref(base: Path) -> tuple[np.ndarray, np.ndarray]:
    bvals = np.loadtxt(str(base) + ".bval", ndmin=1)
    bvecs = np.loadtxt(str(base) + ".bvec", ndmin=2).T
    return bvals, bvecs


def assert_gradients(ours_bvals, ours_bvecs, ref_bvals, ref_bvecs, antipodal: bool = False) -> None:
    assert bval_strings(ours_bvals) == bval_strings(ref_bvals)
    weighted = np.asarray(ref_bvals) > 0
    if antipodal:
        dots = np.abs(np.sum(ours_bvecs[weighted] * ref_bvecs[weighted], axis=1))
        np.testing.assert_allclose(dots, 1.0, atol=1e-3)
    else:
        np.testing.assert_allclose(ours_bvecs[weighted], ref_bvecs[weighted], atol=1e-3)


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


# --- GE ---------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_ge_dwi_equals_dcm2niix_reference_and_live(corpus, tmp_path):
    files = files_in(corpus / "ge_dwi" / "In" / "01_Ax_DWI_TENSOR_R2")
    series = read_dwi(files)
    assert series.voxels.shape == (7, 2, 256, 256) and series.vendor == "GE" and not series.warnings
    nii, bval, bvec = write_fsl(series, tmp_path / "ours.nii")
    array, affine, bvals, bvecs = read_fsl(nii)
    for reference in (corpus / "ge_dwi" / "Ref" / "Ax_DWI_TENSOR_R2_1.nii",
                      run_dcm2niix(corpus / "ge_dwi" / "In" / "01_Ax_DWI_TENSOR_R2", tmp_path / "live")):
        ref_image = nib.load(str(reference))
        ref_bvals, ref_bvecs = load_fsl_ref(reference.with_suffix(""))
        assert_gradients(bvals, bvecs, ref_bvals, ref_bvecs)
        np.testing.assert_allclose(affine, ref_image.affine, atol=1e-2)
        np.testing.assert_array_equal(array, np.asanyarray(ref_image.dataobj))


def test_ge_dti_of_dicom2nifti_equals_live_dcm2niix_and_ground_truth(corpus, tmp_path):
    folder = corpus / "dicom2nifti" / "tests" / "data" / "ge" / "dti" / "001"
    series = read_dwi(files_in(folder))
    array, affine, bvecs = nifti_layout(series)
    live = run_dcm2niix(folder, tmp_path / "live")
    ref_bvals, ref_bvecs = load_fsl_ref(live.with_suffix(""))
    assert_gradients(series.bvalues, bvecs, ref_bvals, ref_bvecs)
    np.testing.assert_allclose(affine, nib.load(str(live)).affine, atol=1e-2)
    np.testing.assert_array_equal(array, np.asanyarray(nib.load(str(live)).dataobj))
    truth = folder.parent / "001_ground_truth.nii.gz"
    gt_bvals, gt_bvecs = load_fsl_ref(folder.parent / "001_ground_truth")
    # dicom2nifti writes the vectors along its voxel axes without FSL's x flip: equal up to sign
    assert_gradients(series.bvalues, series.gradients_lps, gt_bvals,
                     dicom2nifti_world(gt_bvecs, nib.load(str(truth)).affine), antipodal=True)
    assert_same_canonical(array, affine, nib.load(str(truth)))


def dicom2nifti_world(bvecs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """dicom2nifti's GE/Philips vectors -> LPS: components along its voxel axes, no x flip."""
    from DICOMBrowser.DICOMBrowserLib.diffusion.gradients import _axes, ras_to_lps

    return ras_to_lps(bvecs @ _axes(affine).T)


def assert_same_canonical(array: np.ndarray, affine: np.ndarray, reference, data: bool = True) -> None:
    ours = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array), affine))
    ref = nib.as_closest_canonical(reference)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-2)
    if data:
        np.testing.assert_allclose(np.asanyarray(ours.dataobj), np.asanyarray(ref.dataobj), atol=1e-3)


def test_ge_bvalue_flag_and_phase_direction_rule():
    assert vendors.ge_bvalue(1000000900) == 900 and vendors.ge_bvalue(1000) == 1000
    row, column = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    np.testing.assert_allclose(vendors.ge_gradient_lps((0.6, 0.8, 0), (row, column), "COL"), [-0.6, -0.8, 0])
    np.testing.assert_allclose(vendors.ge_gradient_lps((0.6, 0.8, 0), (row, column), "ROW"), [-0.8, -0.6, 0])


# --- Philips ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_philips_classic_volume_order_and_vectors(corpus, tmp_path):
    folder = corpus / "philips_dwi" / "In" / "cl" / "DICOM"
    series = read_dwi(files_in(folder))
    assert series.voxels.shape == (17, 32, 112, 112)
    assert any("without image geometry" in w for w in series.warnings)  # the raw-data object
    array, affine, bvecs = nifti_layout(series)
    ref_bvals, ref_bvecs = load_fsl_ref(corpus / "philips_dwi" / "Ref" / "701_DTI_Biobank_2mm_MB3S2_EPI_cl")
    assert_gradients(series.bvalues, bvecs, ref_bvals, ref_bvecs)
    assert np.sum(ref_bvals > 0) == 16  # the near-zero b (0.001..0.004) volumes are compared too
    live = run_dcm2niix(folder, tmp_path / "live")
    live_bvals, live_bvecs = load_fsl_ref(live.with_suffix(""))
    assert_gradients(series.bvalues, bvecs, live_bvals, live_bvecs)
    live_image = nib.load(str(live))
    np.testing.assert_allclose(affine, live_image.affine, atol=1e-2)
    # Philips' precise values on both sides: (stored x RS + RI) / (RS x SS), private scale slope SS
    np.testing.assert_allclose(np.asarray(array), live_image.get_fdata(), rtol=1e-5, atol=1e-2)


def test_philips_enhanced_dti(corpus, tmp_path):
    folder = corpus / "dicom2nifti" / "tests" / "data" / "philips_enhanced" / "dti" / "001"
    series = read_dwi(files_in(folder))
    array, affine, bvecs = nifti_layout(series)
    gt_bvals, gt_bvecs = load_fsl_ref(folder.parent / "001_ground_truth")
    truth = nib.load(str(folder.parent / "001_ground_truth.nii.gz"))
    # dicom2nifti keeps the file's frame order (b = 0 first); we, as dcm2niix, put b = 0 last
    frame_order = [1, 2, 3, 0]
    assert_gradients(series.bvalues, series.gradients_lps, gt_bvals[frame_order],
                     dicom2nifti_world(gt_bvecs, truth.affine)[frame_order], antipodal=True)
    # dicom2nifti's ground-truth voxels of this anonymised file are blank after volume 1: geometry only
    assert_same_canonical(array, affine, nib.load(str(folder.parent / "001_ground_truth.nii.gz")), data=False)
    live = run_dcm2niix(folder, tmp_path / "live")
    live_image = nib.load(str(live))
    live_bvals, live_bvecs = load_fsl_ref(live.with_suffix(""))
    np.testing.assert_allclose(affine, live_image.affine, atol=1e-2)
    # volumes in DimensionIndexValues order, the gradient number most significant: b = 0 last, as dcm2niix
    np.testing.assert_allclose(series.bvalues, live_bvals, atol=1e-3)
    assert series.bvalues[-1] == 0
    np.testing.assert_allclose(bvecs, live_bvecs, atol=1e-3)
    np.testing.assert_allclose(np.asarray(array), live_image.get_fdata(), rtol=1e-5, atol=1e-2)  # precise values


# --- Siemens ----------------------------------------------------------------------------
def test_siemens_mosaic_dti_without_csa_image_header(corpus):
    """dicom2nifti's anonymised mosaics: (0019,100c/100e) and the ASCCONV protocol only."""
    folder = corpus / "dicom2nifti" / "tests" / "data" / "siemens" / "dti" / "001"
    series = read_dwi(files_in(folder))
    assert series.voxels.shape == (2, 40, 192, 192)
    array, affine, bvecs = nifti_layout(series)
    gt_bvals, gt_bvecs = load_fsl_ref(folder.parent / "001_ground_truth")
    # dicom2nifti's bvecs are along (row, -column, row x column), i.e. dcm2niix's axes for slices
    # stored along the normal; our tiles run against it (ucImageNumbTra), so flip k to compare
    along_normal = affine.copy()
    along_normal[:3, 2] = -along_normal[:3, 2]
    assert_gradients(series.bvalues, fsl_bvecs(series.gradients_lps, along_normal), gt_bvals, gt_bvecs)
    assert_same_canonical(array, affine, nib.load(str(folder.parent / "001_ground_truth.nii.gz")))


def _orientation_cases():
    from conftest import corpus_root

    root = corpus_root()
    if root is None:
        return []
    cases = []
    base = root / "siemens_mosaic_orientation"
    for folder in sorted((base / "In" / "Orientation").glob("*/*")):
        name = folder.name
        for plane in ("ax", "cor", "sag"):
            if name.startswith(plane) and name[len(plane):][:3] in ("asc", "des", "int"):
                order = "desc" if "desc" in name else name[len(plane):len(plane) + 3]
                slices = name.rstrip("b")[-2:]
                refs = sorted((base / "Ref").glob(f"{plane}_{order}_{slices}sl_*.nii"))
                if refs and not name.endswith("b"):
                    cases.append(pytest.param(folder, refs, id=name))
    return cases


@pytest.mark.parametrize("folder,refs", _orientation_cases())
def test_siemens_mosaic_orientations_equal_dcm2niix(folder, refs):
    """Axial, coronal, sagittal mosaics (fMRI, so read without requiring diffusion tags)."""
    series = read_dwi([p for p in files_in(folder) if p.name.startswith("MR")], require_diffusion=False)
    array, affine, _ = nifti_layout(series)
    matched = False
    for ref in refs:
        image = nib.load(str(ref))
        if image.shape == array.shape and np.allclose(affine, image.affine, atol=1e-2) \
                and np.array_equal(array, np.asanyarray(image.dataobj)):
            matched = True  # (axasc36 and axasc36b share a geometry: the data decides)
    assert matched, f"no reference among {[r.name for r in refs]} with our geometry {np.round(affine, 2)}"


@pytest.fixture
def nibabel_siemens_dwi(tmp_path) -> list[Path]:
    data = Path(nib.__file__).parent / "nicom" / "tests" / "data"
    if not (data / "siemens_dwi_1000.dcm.gz").exists():
        pytest.skip("nibabel's Siemens DWI test files are not installed")
    files = []
    for name in ("siemens_dwi_0.dcm.gz", "siemens_dwi_1000.dcm.gz"):
        target = tmp_path / "nibabel_dwi" / name[:-3]
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(gzip.decompress((data / name).read_bytes()))
        files.append(target)
    return files


def test_nibabel_siemens_csa_mosaics_equal_live_dcm2niix(nibabel_siemens_dwi, tmp_path):
    series = read_dwi(nibabel_siemens_dwi)
    assert series.voxels.shape[:2] == (2, 48)
    np.testing.assert_array_equal(series.bvalues, [0, 1000])
    # the CSA direction, in LPS, is the principal axis of the CSA B_matrix
    header = csa.image_header(pydicom.dcmread(str(nibabel_siemens_dwi[1]), stop_before_pixels=True))
    bxx, bxy, bxz, byy, byz, bzz = header["B_matrix"]
    values, vectors = np.linalg.eigh(np.array([[bxx, bxy, bxz], [bxy, byy, byz], [bxz, byz, bzz]]))
    assert abs(np.dot(vectors[:, -1], series.gradients_lps[1])) > 0.999
    array, affine, bvecs = nifti_layout(series)
    live = run_dcm2niix(nibabel_siemens_dwi[0].parent, tmp_path / "live")
    # this dcm2niix writes no .bval/.bvec for these two files: geometry and voxels only
    image = nib.load(str(live))
    np.testing.assert_allclose(affine, image.affine, atol=1e-2)
    np.testing.assert_array_equal(array, np.asanyarray(image.dataobj))


def test_csa_parser_agrees_with_nibabel():
    from nibabel.nicom import csareader

    data = Path(nib.__file__).parent / "nicom" / "tests" / "data"
    for name in ("csa2_b0.bin", "csa2_b1000.bin"):
        raw = (data / name).read_bytes()
        ours = csa.parse_csa(raw, name)
        theirs = csareader.read(raw)["tags"]
        assert set(ours) == set(theirs)
        for key in ("B_value", "DiffusionGradientDirection", "B_matrix", "NumberOfImagesInMosaic", "SliceNormalVector"):
            assert ours[key] == [v for v in theirs[key]["items"]], key


@pytest.mark.parametrize("name", ["AxAsc36mb2a", "AxInt36mb"])
def test_compressed_mosaics_equal_live_dcm2niix(corpus, tmp_path, name):
    """Lossless JPEG and JPEG 2000 mosaics (decoded through pydicom's handlers) vs dcm2niix."""
    folder = corpus / "siemens_mosaic_orientation" / "In" / "Orientation" / "axmb" / name
    series = read_dwi(files_in(folder), require_diffusion=False)
    array, affine, _ = nifti_layout(series)
    image = nib.load(str(run_dcm2niix(folder, tmp_path / "live")))
    np.testing.assert_allclose(affine, image.affine, atol=1e-2)
    np.testing.assert_array_equal(array, np.asanyarray(image.dataobj))


def test_siemens_bmatrix_gives_the_direction_when_it_is_missing(nibabel_siemens_dwi):
    header = csa.image_header(pydicom.dcmread(str(nibabel_siemens_dwi[1]), stop_before_pixels=True))
    direction = np.array(header["DiffusionGradientDirection"])
    from_matrix = vendors.bmatrix_direction(header["B_matrix"])
    assert abs(np.dot(direction / np.linalg.norm(direction), from_matrix)) > 0.999


PARTIAL_READ_FOLDERS = ("siemens_mosaic_order", "siemens_mosaic_orientation", "fmri_timeseries/In/Siemens",
                        "fmri_timeseries/In/UIH", "dicom2nifti/tests/data/siemens", "dicom2nifti/tests/data/hitachi",
                        "ge_dwi")


def test_partial_header_from_the_whole_header_equals_pydicoms_partial_read(corpus):
    """The tags the diffusion plan reads beyond the scanned strings (Siemens CSA headers, diffusion
    sequences, UIH grids) come, with the fast header, out of the file's whole header: element for
    element what `pydicom.dcmread(specific_tags=...)` gives, on every file of these folders."""
    import os

    from DICOMBrowser.DICOMBrowserLib.diffusion import series

    compared = elements = 0
    for folder in PARTIAL_READ_FOLDERS:
        for path in sorted(p for p in (corpus / folder).rglob("*") if p.is_file() and "Ref" not in p.parts):
            stat = os.stat(path)
            for tags in (series._SIEMENS_TAGS, series._SEQUENCE_TAGS, series._UIH_GRID_TAGS):
                key = (str(path), stat.st_size, stat.st_mtime_ns, tuple(tags))
                fast, slow = series._cached_header(*key, True), series._cached_header(*key, False)
                if slow is None:
                    continue
                assert fast is not None, path
                assert sorted(fast.keys()) == sorted(slow.keys()), path
                for tag in slow.keys():
                    assert fast[tag] == slow[tag], (path, tag)
                    elements += 1
                compared += 1
    assert compared > 300 and elements > 800, (compared, elements)
