"""DICOM SEG export: given a labelmap or a 3D Slicer segmentation (.seg.nrrd, overlapping
segments) drawn on a series of a study, when exported through the user's command, then
highdicom and our SEG plugin read back the same segments at the same places (Dice 1.0) with
their names, colours and terminology codes, the SEG refers to that series, and dciodvfy reports
0 errors."""
from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from dicom_checks import assert_valid, require_dciodvfy


def test_labelmap_to_seg_read_back_by_highdicom(series_factory, cli_runner, tmp_path):
    import highdicom as hd
    import SimpleITK as sitk

    require_dciodvfy()
    files = series_factory(count=6, rows=20, columns=18, patient_id="SEG1", patient_name="Seg^Test")
    assert cli_runner("import", str(files[0].parent)).exit_code == 0
    first = pydicom.dcmread(files[0])
    # a labelmap on the series' grid (LPS origin (0,0,0), 1 mm, axial): two labels, one slice empty
    labels = np.zeros((6, 20, 18), dtype=np.uint8)
    labels[1:4, 5:10, 4:9] = 1
    labels[2:5, 12:16, 10:15] = 3
    image = sitk.GetImageFromArray(labels)
    path = tmp_path / "labels.nrrd"
    sitk.WriteImage(image, str(path))

    result = cli_runner("export", str(path), "--study", first.StudyInstanceUID, "--modality", "SEG",
                        "--segment", "1=Liver:220,180,140", "--segment", "3=Tumour", "--to-database",
                        "--output-dir", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = json.loads(result.output[result.output.index("{"):])
    [seg_path] = out["files"]
    warnings = assert_valid([seg_path])
    seg = hd.seg.segread(seg_path)
    assert seg.StudyInstanceUID == first.StudyInstanceUID and seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["Liver", "Tumour"]
    referenced = {item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence}
    assert referenced == {first.SeriesInstanceUID}
    volume = seg.get_volume(combine_segments=True, relabel=False)
    # back to our labels: segment numbers 1, 2 stand for labels 1, 3; compare in patient space
    read = np.asarray(volume.array)
    lps = volume.affine  # highdicom: (slice, row, column) -> LPS
    for k, j, i in [(1, 5, 4), (3, 9, 8), (2, 12, 10), (4, 15, 14), (0, 0, 0), (5, 19, 17)]:
        point = np.array([i, j, k, 1.0])  # our labelmap: LPS = (i, j, k) mm
        index = np.round(np.linalg.inv(lps) @ point).astype(int)[:3]
        inside = all(0 <= index[a] < read.shape[a] for a in range(3))
        value = read[tuple(index)] if inside else 0
        assert {0: 0, 1: 1, 2: 3}[int(value)] == labels[k, j, i], (k, j, i)
    assert all("Retired" in w or "Laterality" in w or "not present in standard" in w or "dubious" in w
               for w in warnings) or not warnings, warnings


def test_seg_needs_a_reference_when_the_study_has_several_series(series_factory, cli_runner, tmp_path):
    import SimpleITK as sitk

    files = series_factory(count=3, patient_id="SEG2")
    first = pydicom.dcmread(files[0])
    series_factory(count=3, patient_id="SEG2", study_uid=first.StudyInstanceUID)
    assert cli_runner("import", str(tmp_path)).exit_code == 0
    path = tmp_path / "l.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 16, 16), dtype=np.uint8)), str(path))
    result = cli_runner("export", str(path), "--study", first.StudyInstanceUID, "--modality", "SEG", "--to-database")
    assert result.exit_code == 1 and "--reference" in result.output
    result = cli_runner("export", str(path), "--study", first.StudyInstanceUID, "--modality", "SEG", "--to-database",
                        "--reference", first.SeriesInstanceUID, "--segment", "2=Nothing")
    assert result.exit_code == 1 and "does not occur" in result.output


@pytest.mark.slow
def test_corpus_labelmap_on_corpus_ct(corpus, cli_runner, tmp_path):
    """dcmqi's 3-slice CT and its liver/spine labelmap (NRRD) as a SEG."""
    import highdicom as hd

    require_dciodvfy()
    folder = corpus / "dcmqi_seg" / "data" / "segmentations"
    assert cli_runner("import", str(folder / "ct-3slice")).exit_code == 0
    study = pydicom.dcmread(folder / "ct-3slice" / "01.dcm").StudyInstanceUID
    result = cli_runner("export", str(folder / "liver_spine_seg.nrrd"), "--study", study, "--modality", "SEG",
                        "--output-dir", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{"):])
    assert_valid(out["files"])
    seg = hd.seg.segread(out["files"][0])
    assert len(seg.SegmentSequence) >= 1


SEGMENTATIONS = "dcmqi_seg/data/segmentations"
#: dcmqi's labelmaps of partial_overlaps.dcm: {file: {label value: segment label}} (as in
#: test_segmentation_plugin.py, read from dcmqi's JSON input of the same object)
OVERLAP_REFERENCES = {"partial_overlaps-1.nrrd": {1: "GREEN", 4: "LIGHT_BLUE", 5: "DARK_BLUE"},
                      "partial_overlaps-2.nrrd": {2: "ORANGE"}, "partial_overlaps-3.nrrd": {3: "PURPLE"}}


def _lps_image_to_ras(image) -> np.ndarray:
    from DICOMBrowser.DICOMBrowserLib.geometry import LPS_TO_RAS

    matrix = np.eye(4)
    matrix[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ matrix


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _load_segmentation(database, series_uid):
    """Our SEG plugin's node for the series (through examine/choose/load, as `load` does)."""
    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic

    logic = DICOMBrowserLogic(database)
    report = logic.examine([series_uid])
    chosen = logic.choose_loadables(report.loadables)
    assert [loadable.plugin for loadable in chosen] == ["DICOMSegmentationPlugin"], chosen
    nodes = logic.load(chosen, report=report, referenced="never")
    return logic, [n for n in nodes if n.IsA("vtkMRMLSegmentationNode")][0]


def _segments(node) -> dict[str, tuple[tuple[float, ...], str]]:
    """Segment name -> (colour, terminology entry) of a segmentation node."""
    segmentation = node.GetSegmentation()
    return {segmentation.GetNthSegment(i).GetName(): (tuple(segmentation.GetNthSegment(i).GetColor()),
                                                      segmentation.GetNthSegment(i).GetTerminology())
            for i in range(segmentation.GetNumberOfSegments())}


def _codes(terminology: str) -> list[str]:
    """Category, type and modifier codes of a terminology entry (the context names aside)."""
    fields = terminology.split("~")
    return [fields[1], fields[2], fields[3]]


def test_overlapping_seg_nrrd_round_trips_through_our_plugin(corpus, cli_runner, tmp_path):
    """dcmqi's partial_overlaps SEG (5 segments, 3 layers) loaded to a .seg.nrrd, exported back as
    a new SEG of the CT series it was drawn on, imported, loaded by our plugin: each segment's mask
    has Dice 1.0 with dcmqi's reference labelmap; names, colours and codes are the original's."""
    import highdicom as hd
    import SimpleITK as sitk

    from DICOMBrowser.DICOMBrowserLib.segmentation import segment_arrays

    require_dciodvfy()
    folder = corpus / SEGMENTATIONS
    assert cli_runner("import", str(folder / "ct-3slice"), str(folder / "partial_overlaps.dcm")).exit_code == 0
    original = pydicom.dcmread(folder / "partial_overlaps.dcm", stop_before_pixels=True)
    ct = pydicom.dcmread(folder / "ct-3slice" / "01.dcm", stop_before_pixels=True)
    seg_nrrd = tmp_path / "overlaps.seg.nrrd"
    result = cli_runner("load", str(original.SeriesInstanceUID), "--referenced", "never", "--output", str(seg_nrrd))
    assert result.exit_code == 0, result.output

    result = cli_runner("export", str(seg_nrrd), "--study", str(ct.StudyInstanceUID), "--modality", "SEG",
                        "--reference", str(ct.SeriesInstanceUID), "--series-description", "Overlaps again",
                        "--to-database", "--output-dir", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = json.loads(result.output[result.output.index("{"):])
    [seg_path] = out["files"]
    warnings = assert_valid([seg_path])
    assert all("Retired Person Name" in w for w in warnings), warnings  # the CT's own PatientName "JANCT000"

    seg = hd.seg.segread(seg_path)
    assert seg.SegmentationType == "BINARY" and seg.SeriesDescription == "Overlaps again"
    assert {item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence} == {ct.SeriesInstanceUID}
    assert seg.FrameOfReferenceUID == ct.FrameOfReferenceUID
    names = [d.SegmentLabel for d in seg.SegmentSequence]
    assert sorted(names) == sorted(d.SegmentLabel for d in original.SegmentSequence)
    volume = seg.get_volume(combine_segments=False)
    assert np.any(np.asarray(volume.array).sum(axis=-1) > 1), "overlapping segments were not kept apart"

    logic_before, before = _load_segmentation(cli_runner.database_dir, str(original.SeriesInstanceUID))
    expected = _segments(before)
    logic_before.close()
    logic, node = _load_segmentation(cli_runner.database_dir, out["series"])
    try:
        loaded = _segments(node)
        assert set(loaded) == set(expected) == {n for labels in OVERLAP_REFERENCES.values() for n in labels.values()}
        for name, (color, terminology) in expected.items():
            assert np.allclose(loaded[name][0], color, atol=1.0 / 255), name  # CIELab there and back
            assert _codes(loaded[name][1]) == _codes(terminology), name
            assert "^" in _codes(terminology)[1]  # the original has codes, so this compares codes
        for reference_name, labels in OVERLAP_REFERENCES.items():
            reference = sitk.ReadImage(str(folder / reference_name))
            voxels = sitk.GetArrayFromImage(reference)
            masks = segment_arrays(node, _lps_image_to_ras(reference), voxels.shape)
            for label, name in labels.items():
                assert _dice(masks[name], voxels == label) == 1.0, (reference_name, label, name)
    finally:
        logic.close()


def test_labelmap_with_codes_as_fractional_seg_and_probability_map(series_factory, cli_runner, tmp_path):
    """A labelmap with a user's names, colours and codes, written FRACTIONAL: our plugin reads the
    same masks (Dice 1.0) and the given codes; unnamed labels get the documented default (SNOMED
    CT Tissue); a probability map in 0..1 is one fractional segment read back within 1/255."""
    import highdicom as hd
    import SimpleITK as sitk

    from DICOMBrowser.DICOMBrowserLib.segmentation import segment_arrays

    require_dciodvfy()
    files = series_factory(count=5, rows=16, columns=14, patient_id="SEGF")
    assert cli_runner("import", str(files[0].parent)).exit_code == 0
    first = pydicom.dcmread(files[0])
    labels = np.zeros((5, 16, 14), dtype=np.uint8)
    labels[1:4, 3:9, 2:7] = 2
    labels[0:3, 10:14, 8:12] = 7
    path = tmp_path / "labels.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(path))  # LPS origin 0, 1 mm: the series' grid
    result = cli_runner("export", str(path), "--study", first.StudyInstanceUID, "--modality", "SEG", "--fractional",
                        "--segment", "2=Liver:220,180,140:123037004^SCT^Anatomical Structure:10200004^SCT^Liver",
                        "--to-database", "--output-dir", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = json.loads(result.output[result.output.index("{"):])
    assert not assert_valid(out["files"])
    seg = hd.seg.segread(out["files"][0])
    assert seg.SegmentationType == "FRACTIONAL"
    liver, other = seg.SegmentSequence
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Anatomical Structure"
    assert other.SegmentLabel == "Segment 7"
    assert other.SegmentedPropertyTypeCodeSequence[0].CodeValue == "85756007"  # SNOMED CT Tissue

    logic, node = _load_segmentation(cli_runner.database_dir, out["series"])
    try:
        assert node.GetAttribute("DICOM.segmentationType") == "FRACTIONAL"
        grid = np.diag([-1.0, -1.0, 1.0, 1.0])  # the labelmap's IJK-to-RAS
        masks = segment_arrays(node, grid, labels.shape)
        assert _dice(masks["Liver"], labels == 2) == 1.0 and _dice(masks["Segment 7"], labels == 7) == 1.0
        colour, terminology = _segments(node)["Liver"]
        assert np.allclose(np.array(colour) * 255, [220, 180, 140], atol=1.0)
        assert _codes(terminology)[:2] == ["SCT^123037004^Anatomical Structure", "SCT^10200004^Liver"]
    finally:
        logic.close()

    probability = np.clip(np.random.default_rng(5).random((5, 16, 14)), 0, 1).astype(np.float32)
    path = tmp_path / "probability.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(probability), str(path))
    result = cli_runner("export", str(path), "--study", first.StudyInstanceUID, "--modality", "SEG",
                        "--output-dir", str(tmp_path / "p"))
    assert result.exit_code == 1 and "--fractional" in result.output
    result = cli_runner("export", str(path), "--study", first.StudyInstanceUID, "--modality", "SEG", "--fractional",
                        "--reference", first.SeriesInstanceUID, "--output-dir", str(tmp_path / "p"), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{"):])
    assert not assert_valid(out["files"])
    read = hd.seg.segread(out["files"][0]).get_volume(combine_segments=False, rescale_fractional=True)
    values = np.asarray(read.array)[..., 0]
    # the NIfTI's voxel (k, j, i) lies at LPS (i, j, k) mm; highdicom's affine: (slice, row, column) -> LPS
    k, j, i = np.meshgrid(*[np.arange(n) for n in probability.shape], indexing="ij")
    index = np.rint(np.linalg.inv(read.affine) @ np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)]))
    index = index[:3].astype(int)
    assert values.shape == probability.shape and index.min() >= 0
    read_back = values[index[0], index[1], index[2]].reshape(probability.shape)
    assert np.abs(read_back - probability).max() <= 0.5 / 255 + 1e-6  # stored as 0..255


def test_segment_option_parsing():
    from DICOMBrowser.DICOMBrowserLib.errors import ExportError
    from DICOMBrowser.DICOMBrowserLib.export.segmentation import parse_segment

    info = parse_segment("3=Liver:1,2,3:123037004^SCT^Anatomical Structure:10200004^SCT^Liver")
    assert info.label == 3 and info.color == (1, 2, 3) and info.type == ("10200004", "SCT", "Liver")
    assert parse_segment("Segment_2=Aorta").label == "Segment_2"
    for bad in ("Liver", "1=Liver:1,2", "1=Liver:1,2,3:10200004^SCT^Liver", "1=L:1,2,3:a^b:c^d^e"):
        with pytest.raises(ExportError):
            parse_segment(bad)
