"""The scalar volume plugin: given generated and real series, examine offers the loadables a user
expects (with geometry warnings), and load puts every voxel where the scanner put it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from DICOMBrowser.DICOMBrowserLib import geometry, sampledata
from DICOMBrowser.DICOMBrowserLib.errors import DICOMBrowserError
from DICOMPlugins.DICOMScalarVolumePlugin import DICOMScalarVolumePlugin


def examine(files, database=None):
    return DICOMScalarVolumePlugin(database).examineFiles([str(f) for f in files])


def ramp(positions):
    """Pixels linear in LPS position (x + 2y + 10z - 1000 after rescale), exact under interpolation."""
    def pixels(index: int, rows: int, columns: int) -> np.ndarray:
        x0, y0, z0 = positions[index]
        yy, xx = np.mgrid[0:rows, 0:columns]
        return np.round(xx + x0 + 2 * (yy + y0) + 10 * z0).astype(np.int16)
    return pixels


def truth(positions, rows=16, columns=16, intercept=-1024.0):
    return np.stack([ramp(positions)(i, rows, columns) for i in range(len(positions))]).astype(np.float32) + intercept


# --- a plain series --------------------------------------------------------------------------------
def test_plain_ct_series_examines_to_one_selected_volume(series_factory):
    files = series_factory(count=12, spacing=2.5, shuffle_instance_numbers=True)
    [loadable] = examine(reversed(files))
    assert loadable.selected and loadable.confidence == pytest.approx(0.6)
    assert loadable.warning == ""
    assert loadable.files == [str(f) for f in files]  # slice order, not instance or argument order
    assert loadable.plugin == "DICOMScalarVolumePlugin"
    volume = DICOMScalarVolumePlugin().read_volume(loadable)
    assert volume.voxels.dtype == np.int16  # slope 1, intercept -1024: no float copy
    expected = np.stack([sampledata.default_pixels(i, 16, 16) for i in range(12)]).astype(np.int16) - 1024
    assert np.array_equal(volume.voxels, expected)
    assert np.allclose(volume.ijk_to_ras, np.diag([-1.0, -1.0, 2.5, 1.0]))
    assert volume.window_level == (400.0, 40.0)


def test_load_into_the_scene_and_round_trip_through_nrrd(series_factory, tmp_path):
    from DICOMBrowser.DICOMBrowserLib import scene as scene_module

    sitk = pytest.importorskip("SimpleITK")
    positions = [(-20.0, 30.0, 5.0 + 1.5 * k) for k in range(9)]
    files = series_factory(positions=positions, pixel_spacing=(0.8, 0.6), pixels=ramp(positions))
    [loadable] = examine(files)
    scene = scene_module.new_scene()
    node = DICOMScalarVolumePlugin().load(loadable, scene)
    assert node.IsA("vtkMRMLScalarVolumeNode")
    matrix = scene_module.ijk_to_ras_of(node)
    assert np.allclose(matrix, [[-0.6, 0, 0, 20], [0, -0.8, 0, -30], [0, 0, 1.5, 5], [0, 0, 0, 1]])
    assert np.array_equal(scene_module.array_from_volume(node), truth(positions))
    assert len(node.GetAttribute("DICOM.instanceUIDs").split()) == 9
    saved = scene_module.save_volume(node, tmp_path / "volume.nrrd")
    image = sitk.ReadImage(str(saved))
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    assert geometry.affine_max_difference(geometry.LPS_TO_RAS @ lps, matrix) < 1e-4
    assert np.array_equal(sitk.GetArrayFromImage(image), truth(positions))


def test_the_registry_and_the_loading_logic_reach_the_plugin(series_factory):
    from DICOMBrowser.DICOMBrowserLib import loading, scene as scene_module
    from DICOMPlugins import allPlugins

    assert allPlugins()["DICOMScalarVolumePlugin"] is DICOMScalarVolumePlugin
    files = series_factory(count=5)
    loadables = loading.examine_series(None, [[str(f) for f in files]], plugins=["DICOMScalarVolumePlugin"])
    [node] = loading.load_loadables([l for l in loadables if l.selected], scene_module.new_scene())
    assert scene_module.array_from_volume(node).shape == (5, 16, 16)


# --- every geometry defect: the right warning, and a regularized loadable that matches the truth -----
@pytest.mark.parametrize("kind, positions", [
    (geometry.NONUNIFORM_SPACING, [(0.0, 0.0, z) for z in (0, 2, 4, 5, 7, 9, 12)]),
    (geometry.MISSING_SLICES, [(0.0, 0.0, z) for z in (0, 2, 4, 8, 10, 12)]),
    (geometry.GANTRY_TILT, [(0.0, 0.5 * k, 2.0 * k) for k in range(7)]),
])
def test_irregular_series_warn_and_regularize_to_the_truth(series_factory, kind, positions):
    files = series_factory(positions=positions, pixels=ramp(positions), rows=20, columns=16)
    as_acquired, regularized = examine(files)
    assert [f["kind"] for f in as_acquired.extra["findings"]] == [kind]
    assert as_acquired.warning and as_acquired.selected and not regularized.selected
    assert regularized.extra["regularize"] and "regularized" in regularized.name
    volume = DICOMScalarVolumePlugin().read_volume(regularized)
    spacing = 2.0
    grid = [(0.0, 0.0, spacing * k) for k in range(volume.voxels.shape[0])]
    assert volume.voxels.shape[0] == int(positions[-1][2] / spacing) + 1
    expected = truth(grid, rows=20)
    covered = slice(3, None)  # tilt: the first 3 rows of the last slice (shifted 3 mm) were not acquired
    assert np.allclose(volume.voxels[:, covered], expected[:, covered], atol=0.51)  # stored values are rounded
    assert np.allclose(volume.ijk_to_ras[:3, 2], [0, 0, spacing])


def test_other_defects_warn(series_factory, tmp_path):
    import pydicom

    orientations = [sampledata.AXIAL] * 6
    orientations[2] = (1.0, 0.0, 0.0, 0.0, 0.99999, 0.0044721)
    varying = examine(series_factory(count=6, orientations=orientations))
    assert geometry.ORIENTATION_VARIES in [f["kind"] for f in varying[0].extra["findings"]]
    duplicates = examine(series_factory(positions=[(0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 2)]))
    assert [f["kind"] for f in duplicates[0].extra["findings"]] == [geometry.DUPLICATE_POSITIONS]
    assert len(duplicates) == 1  # no regularization of duplicates: nothing to interpolate between
    [single] = examine(series_factory(count=1))
    assert [f["kind"] for f in single.extra["findings"]] == [geometry.SINGLE_SLICE]
    assert single.selected
    files = series_factory(count=4)
    ds = pydicom.dcmread(files[1])
    del ds.ImagePositionPatient
    ds.save_as(files[1])
    [missing] = examine(files)
    assert geometry.MISSING_GEOMETRY in [f["kind"] for f in missing.extra["findings"]]
    assert str(files[1]) in missing.extra["findings"][0]["files"]


# --- splitting and 4D -----------------------------------------------------------------------------------
def write_repeated(folder: Path, key: str, values, count=5, **kwargs) -> list[Path]:
    """One series whose positions repeat once per value of `key` (time points, echoes)."""
    from pydicom.uid import generate_uid

    study_uid, series_uid = generate_uid(), generate_uid()
    files = []
    for index, value in enumerate(values):
        extra = dict(kwargs.pop("extra", {}) if index == 0 else {})
        files += sampledata.write_series(folder, count=count, study_uid=study_uid, series_uid=series_uid,
                                         file_name=f"T{index}_{{index:03d}}.dcm", extra={key: value, **extra},
                                         pixels=lambda i, r, c, t=index: sampledata.default_pixels(i, r, c) + 1000 * t,
                                         **kwargs)
    return files


def test_time_series_is_offered_as_4d_and_as_each_volume(tmp_path):
    from DICOMBrowser.DICOMBrowserLib import scene as scene_module

    files = write_repeated(tmp_path / "dce", "TemporalPositionIdentifier", [1, 2, 3], modality="MR")
    found = examine(files)
    series = found[0]
    assert series.extra["kind"] == "sequence" and series.selected
    assert "3 volumes by TemporalPositionIdentifier" in series.name
    assert [l.selected for l in found[1:]] == [False] * 3 and len(found) == 4
    assert all(l.confidence < series.confidence for l in found[1:])
    volume = DICOMScalarVolumePlugin().read_volume(series)
    assert volume.voxels.shape == (3, 5, 16, 16)
    assert np.array_equal(volume.voxels[2, 4] - volume.voxels[0, 4], np.full((16, 16), 2000))
    scene = scene_module.new_scene()
    sequence = DICOMScalarVolumePlugin().load(series, scene)
    assert sequence.GetNumberOfDataNodes() == 3
    voxels, matrix = scene_module.sequence_array(sequence)
    assert np.array_equal(voxels, volume.voxels)
    assert np.allclose(matrix, volume.ijk_to_ras)


def test_trigger_time_and_acquisition_number_also_make_time_series(tmp_path):
    for key, values in (("TriggerTime", ["0", "250.5", "501"]), ("AcquisitionNumber", [1, 2])):
        found = examine(write_repeated(tmp_path / key, key, values))
        assert found[0].extra["kind"] == "sequence", key
        assert found[0].extra["index_values"] == [float(v) for v in values]


def test_echoes_are_split_into_volumes(tmp_path):
    files = write_repeated(tmp_path / "me", "EchoNumbers", [1, 2], modality="MR")
    found = examine(files)
    assert len(found) == 2 and all(l.selected for l in found)
    assert [l.extra["kind"] for l in found] == ["volume", "volume"]
    assert found[0].name.endswith("[e1]") and found[1].name.endswith("[e2]")  # dcm2niix's _e1, _e2
    assert [l.extra["suffix"] for l in found] == ["_e1", "_e2"]


def test_a_localizer_does_not_pollute_the_main_volume(tmp_path):
    from pydicom.uid import generate_uid

    study_uid, series_uid = generate_uid(), generate_uid()
    axial = sampledata.write_series(tmp_path / "s", count=20, study_uid=study_uid, series_uid=series_uid)
    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    scout = sampledata.write_series(tmp_path / "s", count=1, orientation=sagittal, study_uid=study_uid,
                                    series_uid=series_uid, file_name="LOC{index}.dcm",
                                    extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    found = examine(axial + scout)
    main = [l for l in found if l.selected]
    assert len(main) == 1 and len(main[0].files) == 20 and main[0].warning == ""
    localizer = next(l for l in found if not l.selected)
    assert localizer.confidence <= 0.3 and localizer.files == [str(scout[0])]


# --- what other plugins read better, and what is not an image ------------------------------------------
def test_mosaics_unpack_diffusion_scores_low_and_seg_is_left_alone(corpus):
    mosaic = corpus / "siemens_mosaic_orientation/In/Orientation/ax/axasc35"
    found = examine(sorted(p for p in mosaic.iterdir() if p.suffix != ".nii"))
    series, *volumes = found
    assert series.selected and series.extra["kind"] == "mosaic" and len(series.files) == 2
    assert "4D, 2 volumes" in series.name and series.tooltip.startswith("Siemens mosaic: 35 slices")
    assert len(volumes) == 2 and not any(l.selected for l in volumes)
    one = examine([series.files[0]])  # a single mosaic file: one 3D volume, selected
    assert len(one) == 1 and one[0].selected and one[0].confidence >= 0.5
    assert DICOMScalarVolumePlugin().read_volume(one[0]).voxels.shape == (35, 64, 64)
    dwi = sorted((corpus / "ge_dwi/In").rglob("*"))
    found = examine([p for p in dwi if p.is_file()])
    assert found and all(l.confidence <= 0.3 and not l.selected for l in found)
    assert examine([corpus / "dcmqi_seg/data/segmentations/liver.dcm"]) == []


def test_examine_reads_no_pixel_data(series_factory):
    files = series_factory(count=4)
    data = files[2].read_bytes()
    files[2].write_bytes(data[:-300])  # pixel data cut short: only load can notice
    [loadable] = examine(files)
    assert loadable.warning == "" and len(loadable.files) == 4
    with pytest.raises(DICOMBrowserError):
        DICOMScalarVolumePlugin().read_volume(loadable)


# --- through the database -------------------------------------------------------------------------------
@pytest.mark.slow
def test_examine_600_files_through_the_database(database, tmp_path):
    from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

    files = sampledata.write_series(tmp_path / "big", count=600, rows=8, columns=8, spacing=0.5)
    import_paths(database, [tmp_path / "big"])
    [series_uid] = [s["SeriesInstanceUID"] for s in database.series()]
    paths = database.files_for_series(series_uid)
    [loadable] = examine(paths, database)  # its speed: benchmarks/geometry_examine.py
    assert loadable.files == [str(f) for f in files] and loadable.warning == ""
    without = examine(files)
    assert without[0].files == loadable.files and without[0].extra == loadable.extra


# --- multi-frame geometry defects, 4D files ---------------------------------------------------------------
def test_enhanced_multiframe_frame_defect_is_warned_per_frame_and_regularized(corpus, tmp_path):
    """A real enhanced MR file with one frame moved 1.5 mm along the normal (variable spacing)."""
    import pydicom

    dataset = pydicom.dcmread(corpus / "enhanced_multiframe/In/Philips/IM_0027_fMAP.dcm")
    frames = dataset.PerFrameFunctionalGroupsSequence
    magnitude = [i for i, f in enumerate(frames) if f.MRImageFrameTypeSequence[0].FrameType[3] == "M"]
    moved = magnitude[10]
    position = [float(v) for v in frames[moved].PlanePositionSequence[0].ImagePositionPatient]
    frames[moved].PlanePositionSequence[0].ImagePositionPatient = [position[0], position[1], position[2] + 1.5]
    path = tmp_path / "moved.dcm"
    dataset.save_as(path)
    found = examine([path])
    as_acquired = next(l for l in found if "[ORIGINAL PRIMARY T1 M]" in l.name)
    field_map = next(l for l in found if "fieldmaphz" in l.name and "regularized" not in l.name
                     and "display" not in l.name)
    assert field_map.warning == ""
    [finding] = as_acquired.extra["findings"]
    assert finding["kind"] == geometry.NONUNIFORM_SPACING
    assert f"{path}#frame{moved + 1}" in finding["files"]
    regularized = next(l for l in found if l.name.endswith("M] [regularized]"))
    volume = DICOMScalarVolumePlugin().read_volume(regularized)
    assert volume.voxels.shape == (32, 64, 64)  # back on the 4 mm grid


def test_time_series_saves_as_4d_nifti(tmp_path):
    from DICOMBrowser.DICOMBrowserLib import scene as scene_module

    nibabel = pytest.importorskip("nibabel")
    files = write_repeated(tmp_path / "fmri", "AcquisitionNumber", [1, 2, 3, 4], modality="MR")
    series = examine(files)[0]
    volume = DICOMScalarVolumePlugin().read_volume(series)
    sequence = DICOMScalarVolumePlugin().load(series, scene_module.new_scene())
    saved = scene_module.save_volume(sequence, tmp_path / "fmri.nii.gz")
    image = nibabel.load(saved)
    assert image.shape == (16, 16, 5, 4)
    # the same grid: every corner of ours lands on a whole voxel of the NIfTI (RAS on both sides)
    corners = np.linalg.inv(image.affine) @ np.vstack([geometry.corner_points(volume.ijk_to_ras, (5, 16, 16)).T,
                                                       np.ones(8)])
    assert np.allclose(corners, np.round(corners), atol=1e-3)
    assert corners[:3].min() > -1e-3 and np.all(corners[:3].max(axis=1) < np.array(image.shape[:3]) - 1 + 1e-3)
    data = np.asarray(image.dataobj)
    # NIfTI (x, y, z, t): compare through the affine, voxel (i, j, k) of ours at the same RAS point
    ours_ras = volume.ijk_to_ras @ [3, 5, 2, 1]
    x, y, z, _ = np.round(np.linalg.inv(image.affine) @ ours_ras).astype(int)
    assert [data[x, y, z, t] for t in range(4)] == [volume.voxels[t, 2, 5, 3] for t in range(4)]


def test_two_acquisitions_along_one_stack_are_also_offered_apart(tmp_path):
    from pydicom.uid import generate_uid

    study_uid, series_uid = generate_uid(), generate_uid()
    upper = sampledata.write_series(tmp_path / "s", positions=[(0, 0, z) for z in range(0, 6)], study_uid=study_uid,
                                    series_uid=series_uid, file_name="A{index}.dcm", extra={"AcquisitionNumber": 1})
    lower = sampledata.write_series(tmp_path / "s", positions=[(0, 0, z) for z in range(6, 12)], study_uid=study_uid,
                                    series_uid=series_uid, file_name="B{index}.dcm", extra={"AcquisitionNumber": 2})
    found = examine(upper + lower)
    assert [len(l.files) for l in found] == [12, 6, 6]
    assert [l.selected for l in found] == [True, False, False]
    assert "AcquisitionNumber 2" in found[2].name and found[2].files == [str(f) for f in lower]


def test_tilt_in_an_enhanced_object_is_found_per_frame(series_factory, tmp_path):
    """A generated tilted CT converted to one enhanced object by highdicom: same warning, per frame,
    and the same regularized volume as from the single-frame files."""
    import pydicom

    highdicom = pytest.importorskip("highdicom")
    positions = [(0.0, 0.5 * k, 2.0 * k) for k in range(6)]
    # a short study UID, so the generator gives every file the same FrameOfReferenceUID (study + ".1")
    files = series_factory(positions=positions, pixels=ramp(positions), rows=20, columns=16,
                           study_uid="1.2.826.0.1.3680043.8.498.4242")
    enhanced = highdicom.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=[pydicom.dcmread(f) for f in files], series_instance_uid=highdicom.UID(),
        series_number=7, sop_instance_uid=highdicom.UID(), instance_number=1)
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    single = examine(files)
    multi = examine([path])
    assert [f["kind"] for f in multi[0].extra["findings"]] == [geometry.GANTRY_TILT]
    assert multi[0].extra["findings"][0]["files"] == [f"{path}#frame{k}" for k in range(2, 7)]
    plugin = DICOMScalarVolumePlugin()
    assert np.array_equal(plugin.read_volume(single[1]).voxels, plugin.read_volume(multi[1]).voxels)


# --- colour images: vector volumes ------------------------------------------------------------------
def pydicom_rgb(path) -> np.ndarray:
    """What pydicom gives, decoded without its own colour conversion, then converted here:
    YBR with convert_color_space, palette indices with apply_color_lut (16-bit entries to 8 bits)."""
    import pydicom
    from pydicom.pixels import apply_color_lut, convert_color_space, pixel_array

    ds = pydicom.dcmread(path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = ds.PhotometricInterpretation
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(ds.pixel_array, ds)
        rgb = (rgb >> 8).astype(np.uint8) if ds.RedPaletteColorLookupTableDescriptor[2] == 16 else rgb
    else:
        rgb = pixel_array(ds, as_rgb=False)
        if photometric in ("YBR_FULL", "YBR_FULL_422"):
            rgb = convert_color_space(rgb, "YBR_FULL", "RGB")
    return rgb if frames > 1 else rgb[None]


COLOUR_FILES = ["SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm", "SC_ybr_full_422_uncompressed.dcm",
                "SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_jpeg_gdcm.dcm",
                "examples_jpeg2k.dcm", "examples_palette.dcm", "examples_rgb_color.dcm", "ExplVR_BigEnd.dcm"]


@pytest.mark.parametrize("name", COLOUR_FILES)
def test_colour_images_load_as_rgb_vector_volumes_equal_to_pydicom(pydicom_file, name):
    from DICOMBrowser.DICOMBrowserLib import scene as scene_module

    path = str(pydicom_file(name))
    [loadable] = examine([path])
    assert loadable.extra["color"] and loadable.selected and loadable.confidence == pytest.approx(0.5)
    assert loadable.warning == ""  # a 2D picture without patient geometry is normal for SC/US
    expected = pydicom_rgb(path)
    plugin = DICOMScalarVolumePlugin()
    node = plugin.load(loadable, scene_module.new_scene())
    assert node.IsA("vtkMRMLVectorVolumeNode") and node.GetImageData().GetNumberOfScalarComponents() == 3
    voxels = scene_module.array_from_volume(node)
    assert voxels.dtype == np.uint8 and voxels.shape == expected.shape
    assert np.array_equal(voxels, expected)
    assert node.GetAttribute("DICOM.instanceUIDs")


def write_rgb_series(files) -> np.ndarray:
    """Turn a generated grey series into RGB in place (each slice its own colour ramp); returns the truth."""
    import pydicom

    rgb = None
    for index, path in enumerate(files):
        ds = pydicom.dcmread(path)
        yy, xx = np.mgrid[0:ds.Rows, 0:ds.Columns]
        if rgb is None:
            rgb = np.zeros((len(files), ds.Rows, ds.Columns, 3), dtype=np.uint8)
        rgb[index] = np.stack([xx * 10, yy * 10, np.full_like(xx, 50 * index)], axis=-1)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.PixelData = rgb[index].tobytes()
        ds.save_as(path)
    return rgb


def test_colour_series_with_geometry_loads_in_place_and_saves(series_factory, tmp_path):
    """A generated RGB series lands where its grey twin does, and survives NRRD and NIfTI."""
    from DICOMBrowser.DICOMBrowserLib import scene as scene_module

    sitk = pytest.importorskip("SimpleITK")
    nibabel = pytest.importorskip("nibabel")
    positions = [(-20.0, 30.0, 5.0 + 2.0 * k) for k in range(4)]
    files = series_factory(positions=positions, pixel_spacing=(0.8, 0.6), modality="US")
    [grey] = examine(files)
    grey_matrix = DICOMScalarVolumePlugin().read_volume(grey).ijk_to_ras
    rgb = write_rgb_series(files)
    [colour] = examine(reversed(files))
    assert colour.extra["color"] and colour.selected and colour.warning == ""
    assert colour.files == [str(f) for f in files]  # sorted along the normal like a grey series
    scene = scene_module.new_scene()
    node = DICOMScalarVolumePlugin().load(colour, scene)
    matrix = scene_module.ijk_to_ras_of(node)
    assert np.allclose(matrix, grey_matrix)
    assert np.allclose(matrix, [[-0.6, 0, 0, 20], [0, -0.8, 0, -30], [0, 0, 2.0, 5], [0, 0, 0, 1]])
    assert np.array_equal(scene_module.array_from_volume(node), rgb)
    assert len(node.GetAttribute("DICOM.instanceUIDs").split()) == 4 and node.GetAttribute("DICOM.Modality") == "US"
    nrrd = sitk.ReadImage(str(scene_module.save_volume(node, tmp_path / "rgb.nrrd")))
    assert nrrd.GetNumberOfComponentsPerPixel() == 3 and np.array_equal(sitk.GetArrayFromImage(nrrd), rgb)
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(nrrd.GetDirection()).reshape(3, 3) @ np.diag(nrrd.GetSpacing())
    lps[:3, 3] = nrrd.GetOrigin()
    assert geometry.affine_max_difference(geometry.LPS_TO_RAS @ lps, matrix) < 1e-4
    nifti = nibabel.load(str(scene_module.save_volume(node, tmp_path / "rgb.nii.gz")))
    assert nifti.header.get_data_dtype().names == ("R", "G", "B")  # NIfTI RGB24, as dcm2niix writes colour
    assert np.allclose(nifti.affine, matrix, atol=1e-4)
    stored = np.asarray(nifti.dataobj)
    assert np.array_equal(np.stack([stored["R"], stored["G"], stored["B"]], axis=-1), np.transpose(rgb, (2, 1, 0, 3)))


def test_oblique_colour_series_matches_dcm2niix(tmp_path):
    """Peer check: dcm2niix's RGB24 NIfTI of an oblique RGB series has our voxels and affine."""
    import shutil
    import subprocess

    nibabel = pytest.importorskip("nibabel")
    from DICOMBrowser.DICOMBrowserLib import scene as scene_module

    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed (Debian package dcm2niix)")
    angle = np.radians(6.0)
    orientation = (np.cos(angle), np.sin(angle), 0.0, -np.sin(angle), np.cos(angle), 0.0)
    files = sampledata.write_series(tmp_path / "in", count=5, spacing=2.5, orientation=orientation, rows=16,
                                    columns=20, pixel_spacing=(0.8, 0.6), modality="US")
    write_rgb_series(files)
    [loadable] = examine(files)
    node = DICOMScalarVolumePlugin().load(loadable, scene_module.new_scene())
    ours = nibabel.as_closest_canonical(nibabel.load(str(scene_module.save_volume(node, tmp_path / "ours.nii"))))
    (tmp_path / "out").mkdir()
    subprocess.run(["dcm2niix", "-z", "n", "-o", str(tmp_path / "out"), "-f", "rgb", str(tmp_path / "in")],
                   check=True, capture_output=True, timeout=60)
    theirs = nibabel.as_closest_canonical(nibabel.load(str(tmp_path / "out" / "rgb.nii")))
    assert theirs.header.get_data_dtype().names == ("R", "G", "B")
    assert ours.shape == theirs.shape
    assert geometry.affine_max_difference(ours.affine, theirs.affine) < 1e-3  # dcm2niix stores float32
    assert np.array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj))


def test_corpus_colour_transfer_syntaxes_through_the_database(corpus, database):
    import pydicom

    from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

    folder = corpus / "orthanc_tests" / "Database" / "TransferSyntaxes"
    names = ["1.2.840.10008.1.2.1.dcm", "1.2.840.10008.1.2.2.dcm", "1.2.840.10008.1.2.4.50.dcm"]  # RGB, RGB, YBR_FULL_422
    import_paths(database, [folder / n for n in names])
    for name in names:
        path = database.files_for_uid(pydicom.dcmread(folder / name, stop_before_pixels=True).SOPInstanceUID)[0]
        plugin = DICOMScalarVolumePlugin(database)
        [loadable] = plugin.examineFiles([path])
        assert loadable.extra["color"] and loadable.selected, name
        volume = plugin.read_volume(loadable)
        assert np.array_equal(volume.voxels, pydicom_rgb(path)), name


# --- files without pixel data ---------------------------------------------------------------------
def test_files_without_pixel_data_are_not_offered(corpus, database):
    from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

    folder = corpus / "orthanc_tests" / "Database"
    empty = [folder / "Issue56-NoPixelData.dcm", folder / "Issue22-NoPixelData.dcm"]
    deflated = folder / "TransferSyntaxes" / "1.2.840.10008.1.2.1.99.dcm"  # no offset recorded, has pixels
    for path in empty:
        assert examine([path]) == [], path  # header scan: no pixel data offset
    assert len(examine([deflated])) == 1
    import_paths(database, [*empty, deflated])
    for path in empty:
        [indexed] = database.files_for_uid(database.instance_for_file(str(path)))
        assert examine([indexed], database) == [], path  # the index's PixelDataOffset
    assert len(examine(database.files_for_uid(database.instance_for_file(str(deflated))), database)) == 1


# --- single images are normal for 2D modalities -----------------------------------------------------
def test_single_images_log_at_info_and_warn_only_where_a_volume_is_expected(series_factory, caplog, pydicom_file):
    import logging

    with caplog.at_level(logging.INFO, logger="DICOMPlugins.DICOMScalarVolumePlugin"):
        [ct] = examine(series_factory("ct", count=1))
        [sc] = examine(series_factory("sc", count=1, modality="OT"))
        [us] = examine([pydicom_file("examples_rgb_color.dcm")])  # no patient geometry at all
    assert "single slice" in ct.warning and ct.selected
    assert sc.warning == "" and sc.selected and us.warning == "" and us.selected
    assert [f["kind"] for f in sc.extra["findings"]] == [geometry.SINGLE_SLICE]  # still recorded for the verdict
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("single slice" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


def test_load_after_examine_reuses_the_index_rows_and_reads_the_same_voxels(database, tmp_path, monkeypatch):
    """The plugin object that examined keeps each file's tags and pixel location: load looks nothing
    up. A fresh object (a loadable from the examine cache) asks the index once for the series' rows
    and takes the pixel module values from the plan's, not from a second per-file lookup."""
    from DICOMBrowser.DICOMBrowserLib import pixelreader
    from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

    sampledata.write_series(tmp_path / "ct", count=7, rows=12, columns=10, spacing=1.5)
    import_paths(database, [tmp_path / "ct"])
    [series_uid] = [s["SeriesInstanceUID"] for s in database.series()]
    plugin = DICOMScalarVolumePlugin(database)
    [loadable] = plugin.examineFiles(database.files_for_series(series_uid))
    rows, per_file = [], []
    original_rows, original_per_file = database.instances, pixelreader._locations_and_values  # spies
    monkeypatch.setattr(database, "instances", lambda *args: rows.append(args) or original_rows(*args))
    monkeypatch.setattr(pixelreader, "_locations_and_values",
                        lambda *args: per_file.append(args) or original_per_file(*args))
    reused = plugin.read_volume(loadable)
    assert not rows and not per_file
    fresh = DICOMScalarVolumePlugin(database).read_volume(loadable)  # no examination: looks up the index
    assert rows == [(series_uid,)] and not per_file
    expected = np.stack([sampledata.default_pixels(i, 12, 10) for i in range(7)]).astype(np.int16) - 1024
    assert np.array_equal(reused.voxels, expected) and np.array_equal(fresh.voxels, expected)
    assert np.allclose(reused.ijk_to_ras, fresh.ijk_to_ras)
