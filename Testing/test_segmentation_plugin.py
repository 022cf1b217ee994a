"""DICOM SEG: a user imports dcmqi's segmentation examples, loads each SEG by its UID to a
`.seg.nrrd`, and gets exactly dcmqi's reference labelmaps back.

Given dcmqi_seg/data/segmentations (SEGs with the CT slices they reference and dcmqi's NRRD
labelmaps made from the same objects), when `dicombrowser load SEG_UID --output x.seg.nrrd`,
then SimpleITK reads the file, its Slicer keys name every segment, and each segment's voxels,
moved onto the reference grid, have Dice 1.0 with the reference label; overlapping segments sit
in separate layers; `examine --json` names the referenced CT series, which loads with the SEG
when the referenced-series setting says "always".
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

SEGMENTATIONS = "dcmqi_seg/data/segmentations"
#: SEG file -> dcmqi's labelmap references: {reference file: {label value: segment label}}. The
#: references hold no segment names; the pairs were read from dcmqi's JSON inputs of the same
#: objects (labelID -> SegmentLabel). Label 5 of the ppv5 reference is the pixel padding value
#: of planes without the segment (PixelPaddingValue 5), not a segment.
CASES = {
    "liver.dcm": {"liver_seg.nrrd": {1: "Liver"}},
    "partial_overlaps.dcm": {"partial_overlaps-1.nrrd": {1: "GREEN", 4: "LIGHT_BLUE", 5: "DARK_BLUE"},
                             "partial_overlaps-2.nrrd": {2: "ORANGE"}, "partial_overlaps-3.nrrd": {3: "PURPLE"}},
    "sparse-labelmap-noppv.dcm": {"sparse_labelmap_noppv_seg.nrrd": {1: "Liver"}},
    "sparse-labelmap-ppv5.dcm": {"sparse_labelmap_ppv5_seg.nrrd": {1: "Liver"}},
    "23x38x3/seg/label.seg": {"23x38x3/nrrd/label.nrrd": {1: "Liver"}},
    "24x38x3/seg/label.seg": {"24x38x3/nrrd/label.nrrd": {1: "Liver"}},
}


def _ijk_to_ras(image) -> np.ndarray:
    from DICOMBrowser.DICOMBrowserLib.geometry import LPS_TO_RAS

    matrix = np.eye(4)
    matrix[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ matrix


def _segments_of_seg_nrrd(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Segment name -> (mask (k, j, i), IJK-to-RAS), read with SimpleITK and Slicer's keys."""
    image = sitk.ReadImage(str(path))
    voxels = sitk.GetArrayFromImage(image)
    if voxels.ndim == 3:
        voxels = voxels[..., np.newaxis]
    found = {}
    index = 0
    while image.HasMetaDataKey(f"Segment{index}_ID"):
        layer = int(image.GetMetaData(f"Segment{index}_Layer"))
        label = int(image.GetMetaData(f"Segment{index}_LabelValue"))
        found[image.GetMetaData(f"Segment{index}_Name")] = ((voxels[..., layer] == label).astype(np.uint8),
                                                            _ijk_to_ras(image))
        index += 1
    return found


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def seg_database(corpus, tmp_path_factory):
    """The dcmqi segmentation folder imported into a database; SEG file -> its SeriesInstanceUID."""
    import pydicom

    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic

    folder = tmp_path_factory.mktemp("seg") / "database"
    logic = DICOMBrowserLogic(folder)
    logic.import_paths([corpus / SEGMENTATIONS])
    uids = {name: str(pydicom.dcmread(corpus / SEGMENTATIONS / name, stop_before_pixels=True).SeriesInstanceUID)
            for name in CASES}
    logic.close()
    return folder, uids


@pytest.mark.parametrize("seg_file", sorted(CASES))
def test_seg_to_seg_nrrd_matches_dcmqi_reference(cli_runner, seg_database, corpus, tmp_path, seg_file):
    from DICOMBrowser.DICOMBrowserLib.segmentation import resample_nearest

    database, uids = seg_database
    output = tmp_path / "x.seg.nrrd"
    result = cli_runner("load", uids[seg_file], "--output", str(output), database=database)
    assert result.exit_code == 0, result.output
    assert "vtkMRMLSegmentationNode" in result.output or "DICOMSegmentationPlugin" in result.output
    segments = _segments_of_seg_nrrd(output)
    expected = {name for labels in CASES[seg_file].values() for name in labels.values()}
    assert set(segments) == expected
    for reference_name, labels in CASES[seg_file].items():
        reference = sitk.ReadImage(str(corpus / SEGMENTATIONS / reference_name))
        reference_voxels = sitk.GetArrayFromImage(reference)
        for label, segment_name in labels.items():
            mask, ijk_to_ras = segments[segment_name]
            on_reference = resample_nearest(mask, ijk_to_ras, _ijk_to_ras(reference), reference_voxels.shape)
            assert _dice(on_reference, reference_voxels == label) == 1.0, (reference_name, label, segment_name)
            assert np.count_nonzero(mask) == np.count_nonzero(reference_voxels == label)


def test_overlapping_segments_stay_apart_with_names_colours_terminology(corpus):
    from DICOMBrowser.DICOMBrowserLib import scene, segmentation

    data = segmentation.read_seg(str(corpus / SEGMENTATIONS / "partial_overlaps.dcm"))
    mrml = scene.new_scene()
    node = segmentation.add_segmentation(mrml, data, "overlaps", series_uid="1.2", instance_uids=[], dicom_identity={})
    seg = node.GetSegmentation()
    assert seg.GetNumberOfSegments() == 5
    assert seg.GetNumberOfLayers() == 3  # GREEN, LIGHT_BLUE, DARK_BLUE share one; ORANGE and PURPLE overlap them
    green = seg.GetSegment("Segment_1")
    assert green.GetName() == "GREEN"
    # dcmqi's JSON gives GREEN as RGB (128, 174, 128); the SEG stores it as CIELab
    assert np.allclose(np.array(green.GetColor()) * 255, [128, 174, 128], atol=0.6)
    assert "SCT^85756007^Tissue" in green.GetTerminology()
    assert "SCT^51114001^Artery" in seg.GetSegment("Segment_2").GetTerminology()


def test_cielab_conversion_of_known_colours():
    """White, black and pure red (sRGB) through DICOM's scaled CIELab (values from the CIE formulas)."""
    from DICOMBrowser.DICOMBrowserLib.segmentation import cielab_to_srgb

    assert np.allclose(cielab_to_srgb([65535, 32896, 32896]), [1, 1, 1], atol=2e-3)
    assert np.allclose(cielab_to_srgb([0, 32896, 32896]), [0, 0, 0], atol=2e-3)
    # sRGB red = L* 53.24, a* 80.09, b* 67.20 -> scaled (L* x 655.35, (a* + 128) x 257, (b* + 128) x 257)
    assert np.allclose(cielab_to_srgb([34891, 53479, 50166]), [1, 0, 0], atol=5e-3)


def test_examine_names_referenced_series_and_always_loads_it(cli_runner, seg_database, corpus, tmp_path, monkeypatch):
    import pydicom

    from DICOMBrowser.DICOMBrowserLib import scene

    database, uids = seg_database
    ct_series = str(pydicom.dcmread(corpus / SEGMENTATIONS / "ct-3slice" / "01.dcm").SeriesInstanceUID)
    loadables = json.loads(cli_runner("examine", uids["liver.dcm"], "--json", database=database).output)
    (seg,) = [l for l in loadables if l["selected"]]
    assert seg["plugin"] == "DICOMSegmentationPlugin" and seg["referencedSeriesUIDs"] == [ct_series]

    bundle = tmp_path / "liver.mrb"
    monkeypatch.setenv("DICOMBROWSER_LOAD_REFERENCED", "always")
    result = cli_runner("load", uids["liver.dcm"], "--output", str(bundle), database=database)
    assert result.exit_code == 0, result.output
    loaded = scene.load_scene(bundle)
    volumes = loaded.GetNodesByClass("vtkMRMLScalarVolumeNode")
    segmentations = loaded.GetNodesByClass("vtkMRMLSegmentationNode")
    assert volumes.GetNumberOfItems() == 1 and segmentations.GetNumberOfItems() == 1
    assert volumes.GetItemAsObject(0).GetAttribute("DICOM.seriesInstanceUID") == ct_series

    monkeypatch.setenv("DICOMBROWSER_LOAD_REFERENCED", "never")
    result = cli_runner("load", uids["liver.dcm"], "--output", str(tmp_path / "alone.mrb"), database=database)
    assert result.exit_code == 0, result.output
    assert scene.load_scene(tmp_path / "alone.mrb").GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 0

    # the command-line flag overrides the environment
    result = cli_runner("load", uids["liver.dcm"], "--referenced", "always", "--output", str(tmp_path / "flag.mrb"),
                        database=database)
    assert result.exit_code == 0, result.output
    assert scene.load_scene(tmp_path / "flag.mrb").GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 1


def test_96_frame_seg_without_its_images_keeps_every_segment_pixel(corpus):
    """Orthanc's glioma SEG (3 segments over 32 planes, the MR absent): every segment keeps exactly
    the foreground pixels pydicom finds in that segment's frames."""
    import pydicom

    from DICOMBrowser.DICOMBrowserLib import segmentation

    path = corpus / "orthanc_tests" / "Database" / "DicomSeg.dcm"
    dataset = pydicom.dcmread(path)
    frames = dataset.pixel_array
    expected: dict[int, int] = {}
    for index, group in enumerate(dataset.PerFrameFunctionalGroupsSequence):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        expected[number] = expected.get(number, 0) + int(np.count_nonzero(frames[index]))
    data = segmentation.read_seg(str(path))
    assert [s.label for s in data.segments] == ["Necrosis", "Edema", "Enhancing Lesion"]
    assert {s.number: int(np.count_nonzero(mask)) for s, mask in zip(data.segments, data.masks)} == expected


def test_fractional_seg_is_binary_at_half(corpus, tmp_path):
    """A fractional SEG written by highdicom over the real CT slices: values >= 0.5 are inside."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from DICOMBrowser.DICOMBrowserLib import segmentation

    images = [pydicom.dcmread(p) for p in sorted((corpus / SEGMENTATIONS / "ct-3slice").glob("*.dcm"))]
    images.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    for image in images:  # the slices carry an empty SpecificCharacterSet, which highdicom refuses
        if "SpecificCharacterSet" in image and not image.SpecificCharacterSet:
            del image.SpecificCharacterSet
    fraction = np.zeros((len(images), images[0].Rows, images[0].Columns), dtype=np.float32)
    fraction[:, 100:200, 150:300] = 0.8
    fraction[:, 200:220, 150:300] = 0.4  # below half: outside
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Fraction", segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(images, fraction, hd.seg.SegmentationTypeValues.FRACTIONAL, [description],
                              hd.UID(), 5, hd.UID(), 1, "test", "test", "1", "1", max_fractional_value=255)
    path = tmp_path / "fractional.dcm"
    seg.save_as(path)
    data = segmentation.read_seg(str(path))
    assert data.segmentation_type == "FRACTIONAL"
    assert int(np.count_nonzero(data.masks[0])) == len(images) * 100 * 150
