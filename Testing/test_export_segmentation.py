"""DICOM SEG export: given a labelmap drawn on a series of a study, when exported through the
user's command, then highdicom reads back the same segments at the same places, the SEG refers
to that series, and dciodvfy reports 0 errors."""
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
    assert result.exit_code == 1 and "do not occur" in result.output


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
