"""PET SUV: a user loads a real Siemens PET slice and gets SUVbw; every factor is checked against
numbers worked out by hand from the DICOM attributes (formulas and sources in suv.py's docstring).

The real file (orthanc_tests, Siemens, Units BQML, DecayCorrection START): SeriesTime 11:12:18
(before AcquisitionTime 11:16:24, so the scan start), injection 10:00:00, RadionuclideTotalDose
290 MBq, half-life 6586.2 s, PatientWeight 82 kg, PatientSex F, no PatientSize.
  decay time    = 11:12:18 - 10:00:00 = 4338 s
  decayed dose  = 290e6 x 2^(-4338 / 6586.2) = 290e6 x 0.633471 = 1.837065e8 Bq
  SUVbw factor  = 82,000 g / 1.837065e8 Bq = 4.463641e-4 g/ml per Bq/ml
With PatientSize 1.70 m added (female, 82 kg, 170 cm, BMI 28.3737):
  LBM James      = 1.07 x 82 - 148 x (82/170)^2 = 87.74 - 34.4343 = 53.3057 kg
  LBM Janmahasatian = 9270 x 82 / (8780 + 244 x 28.3737) = 760,140 / 15,703.18 = 48.4067 kg
  BSA DuBois     = 0.007184 x 82^0.425 x 170^0.725 = 0.007184 x 6.5062 x 41.4131 = 1.935587 m^2
  IBW Devine     = 45.5 + 2.3 x (170/2.54 - 60) = 45.5 + 2.3 x 6.9291 = 61.4370 kg
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

SIEMENS = "orthanc_tests/Database/2020-11-16-SalimKanounAnonymization.dcm"
RWVM = "dcmqi_seg/data/sr-example/rwvm.dcm"
PHILIPS_NO_WEIGHT = "orthanc_tests/Database/Issue94.dcm"
DECAYED_DOSE = 1.837065e8  # Bq, worked out above


@pytest.fixture
def siemens(corpus):
    return corpus / SIEMENS


def _factors(dataset, path="test.dcm"):
    from DICOMBrowser.DICOMBrowserLib import suv

    return suv.suv_factors(dataset, str(path))


def test_suvbw_through_the_cli_matches_the_hand_computed_factor(cli_runner, siemens, tmp_path):
    loadables = json.loads(cli_runner("examine", str(siemens), "--json").output)
    (chosen,) = [l for l in loadables if l["selected"]]
    assert chosen["plugin"] == "DICOMPETSUVPlugin" and "SUVbw" in chosen["name"]
    assert "4.46364e-04" in chosen["tooltip"] or "0.000446364" in chosen["tooltip"]  # the factor, shown
    assert "PatientSize" in chosen["tooltip"]  # why SUVlbm/bsa/ibw are not offered
    output = tmp_path / "suv.nrrd"
    result = cli_runner("load", str(siemens), "--output", str(output))
    assert result.exit_code == 0, result.output
    dataset = pydicom.dcmread(siemens)
    activity = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)  # Bq/ml
    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(output)))[0]
    assert np.allclose(ours, activity * 4.463641e-4, rtol=1e-5, atol=1e-6)
    assert 6.0 < ours.max() < 7.0  # SUV, not Bq/ml (max activity here is 14,471 Bq/ml)


def test_factors_and_node_attributes(siemens):
    from DICOMBrowser.DICOMBrowserLib import loading, scene

    dataset = pydicom.dcmread(siemens, stop_before_pixels=True)
    factors = _factors(dataset, siemens)
    assert factors.decay_time_s == 4338.0
    assert factors.decayed_dose_bq == pytest.approx(DECAYED_DOSE, rel=1e-6)
    assert factors.factors == {"bw": pytest.approx(4.463641e-4, rel=1e-6)}
    report = loading.examine(None, [[str(siemens)]])
    mrml = scene.new_scene()
    (node,) = loading.load_loadables([l for l in report.loadables if l.selected], mrml, report=report)
    assert node.GetAttribute("DICOM.PET.SUVType") == "SUVbw"
    assert float(node.GetAttribute("DICOM.PET.SUVFactor")) == pytest.approx(4.463641e-4, rel=1e-6)
    assert node.GetVoxelValueUnits().GetCodeValue() == "{SUVbw}g/ml"


def test_lean_body_mass_surface_area_and_ideal_weight(siemens):
    dataset = pydicom.dcmread(siemens, stop_before_pixels=True)
    dataset.PatientSize = "1.70"
    factors = _factors(dataset).factors
    assert factors["lbm"] == pytest.approx(53305.7 / DECAYED_DOSE, rel=1e-5)
    assert factors["lbmJanma"] == pytest.approx(48406.7 / DECAYED_DOSE, rel=1e-5)
    assert factors["bsa"] == pytest.approx(19355.87 / DECAYED_DOSE, rel=1e-5)  # cm^2
    assert factors["ibw"] == pytest.approx(61437.0 / DECAYED_DOSE, rel=1e-5)
    dataset.PatientSex = "M"  # male: 1.10 x 82 - 128 x (82/170)^2 = 60.4190 kg; Devine 50 + 15.937 = 65.9370 kg
    male = _factors(dataset).factors
    assert male["lbm"] == pytest.approx(60419.0 / DECAYED_DOSE, rel=1e-5)
    assert male["lbmJanma"] == pytest.approx(59345.5 / DECAYED_DOSE, rel=1e-5)  # 9270 x 82 / (6680 + 216 x 28.3737)
    assert male["ibw"] == pytest.approx(65937.0 / DECAYED_DOSE, rel=1e-5)


def test_injection_the_evening_before_a_scan_after_midnight(siemens):
    dataset = pydicom.dcmread(siemens, stop_before_pixels=True)
    info = dataset.RadiopharmaceuticalInformationSequence[0]
    del info.RadiopharmaceuticalStartDateTime
    info.RadiopharmaceuticalStartTime = "233000"
    dataset.SeriesDate = dataset.AcquisitionDate = "20191114"
    dataset.SeriesTime, dataset.AcquisitionTime = "003000", "003100"
    factors = _factors(dataset)
    assert factors.decay_time_s == 3600.0  # 23:30 -> 00:30 the next day
    # 290e6 x 2^(-3600 / 6586.2) = 1.985435e8 Bq
    assert factors.factors["bw"] == pytest.approx(82000 / 1.985435e8, rel=1e-6)


def test_reprocessed_series_uses_acquisition_time_or_ge_scan_time(siemens):
    dataset = pydicom.dcmread(siemens, stop_before_pixels=True)
    dataset.SeriesTime = "150000"  # made after acquisition: the scan started at AcquisitionTime 11:16:24
    factors = _factors(dataset)
    assert factors.decay_time_s == 4584.0
    # 290e6 x 2^(-4584 / 6586.2) = 1.790115e8 Bq
    assert factors.factors["bw"] == pytest.approx(82000 / 1.790115e8, rel=1e-6)
    block = dataset.private_block(0x0009, "GEMS_PETD_01", create=True)
    block.add_new(0x0D, "DT", "20191113110000")  # (0009,100D): GE's scan date/time
    assert _factors(dataset).decay_time_s == 3600.0


def test_admin_decay_correction_philips_counts_and_gml(siemens):
    dataset = pydicom.dcmread(siemens, stop_before_pixels=True)
    dataset.DecayCorrection = "ADMIN"  # already corrected to the injection: no decay
    assert _factors(dataset).factors["bw"] == pytest.approx(82000 / 290e6, rel=1e-9)
    dataset.DecayCorrection = "START"
    dataset.Units = "CNTS"
    block = dataset.private_block(0x7053, "Philips PET Private Group", create=True)
    block.add_new(0x00, "DS", "0.000123")  # (7053,1000) SUV Scale Factor
    assert _factors(dataset).factors["bw"] == pytest.approx(0.000123)
    dataset.Units = "GML"
    assert _factors(dataset).factors == {"bw": 1.0}


def test_refusals_name_the_missing_attribute_and_the_file(cli_runner, corpus, siemens, tmp_path):
    from DICOMBrowser.DICOMBrowserLib.suv import SUVError

    real = corpus / PHILIPS_NO_WEIGHT  # a real Philips PET slice without PatientWeight
    loadables = json.loads(cli_runner("examine", str(real), "--json").output)
    (refused,) = [l for l in loadables if l["plugin"] == "DICOMPETSUVPlugin"]
    assert not refused["selected"] and "PatientWeight" in refused["warning"] and str(real) in refused["warning"]
    index = loadables.index(refused)
    result = cli_runner("load", str(real), "--loadable", str(index), "--output", str(tmp_path / "x.nrrd"))
    assert result.exit_code != 0 and "PatientWeight" in result.output

    dataset = pydicom.dcmread(siemens, stop_before_pixels=True)
    dataset.DecayCorrection = "NONE"  # each image needs its own acquisition time
    del dataset.AcquisitionTime
    with pytest.raises(SUVError, match="AcquisitionTime .* missing"):
        _factors(dataset)
    dataset.DecayCorrection = "OTHER"
    with pytest.raises(SUVError, match="DecayCorrection 'OTHER'"):
        _factors(dataset)
    dataset.DecayCorrection = "START"
    del dataset.RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife
    with pytest.raises(SUVError, match="RadionuclideHalfLife"):
        _factors(dataset)


def test_real_world_value_mapping_in_the_image_is_used(siemens):
    """A scanner's own SUVbw mapping (slope on stored values) replaces the computed factor: the
    factor on rescaled values is its slope / RescaleSlope."""
    dataset = pydicom.dcmread(siemens, stop_before_pixels=True)
    mapping = pydicom.Dataset()
    units = pydicom.Dataset()
    units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = "{SUVbw}g/ml", "UCUM", "SUVbw"
    mapping.MeasurementUnitsCodeSequence = [units]
    mapping.RealWorldValueSlope = float(dataset.RescaleSlope) * 4.5e-4
    mapping.RealWorldValueIntercept = 0.0
    dataset.RealWorldValueMappingSequence = [mapping]
    factors = _factors(dataset)
    assert factors.factors["bw"] == pytest.approx(4.5e-4, rel=1e-9)
    assert any("Real World Value Mapping" in note for note in factors.notes)


def _pet_series(siemens, folder, slices, **attributes):
    """A PET series made from the real Siemens slice: one file per (z mm, AcquisitionTime,
    ActualFrameDuration ms) in `slices`, same pixels, new UIDs; `attributes` set on every file
    (SOPInstanceUIDs from a `SOPInstanceUIDs` list when given)."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    instance_uids = attributes.pop("SOPInstanceUIDs", None)
    series_uid = attributes.pop("SeriesInstanceUID", generate_uid())
    paths = []
    for index, (z, time, duration_ms) in enumerate(slices):
        dataset = pydicom.dcmread(siemens)
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = instance_uids[index] if instance_uids else generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.ImagePositionPatient = [-405.624, -587.304, z]
        dataset.InstanceNumber = index + 1
        dataset.AcquisitionTime = time
        dataset.ActualFrameDuration = duration_ms
        for keyword, value in attributes.items():
            setattr(dataset, keyword, value)
        paths.append(folder / f"pet{index + 1}.dcm")
        dataset.save_as(paths[-1], enforce_file_format=True)
    return paths


def test_decay_correction_none_gives_each_image_its_own_factor(cli_runner, siemens, tmp_path):
    """Images not decay corrected hold the activity of their own acquisition: each image's SUV
    divides by the injected activity decayed to its acquisition start and averaged over its frame
    (suv.frame_decayed_dose). Two bed positions, 10 minutes apart, 120 s frames, injection 10:00:00,
    290 MBq, T = 6586.2 s, lambda = ln2 / T = 1.0524235e-4 /s:
      frame average (1 - e^(-lambda 120)) / (lambda 120) = (1 - e^-0.01262908) / 0.01262908 = 0.99371196
      bed 1, 11:10:00: t = 4200 s, 2^(-4200/6586.2) = 0.64273814
               decayed = 290e6 x 0.64273814 x 0.99371196 = 1.8522201e8 Bq; SUVbw = 82,000 / that = 4.4271197e-4
      bed 2, 11:20:00: t = 4800 s, 2^(-4800/6586.2) = 0.60340704
               decayed = 290e6 x 0.60340704 x 0.99371196 = 1.7388771e8 Bq; SUVbw = 4.7156870e-4
    """
    paths = _pet_series(siemens, tmp_path / "none", [(216, "111000", 120000), (219, "111000", 120000),
                                                      (222, "112000", 120000), (225, "112000", 120000)],
                        DecayCorrection="NONE")
    loadables = json.loads(cli_runner("examine", str(tmp_path / "none"), "--json").output)
    (chosen,) = [l for l in loadables if l["selected"]]
    assert chosen["plugin"] == "DICOMPETSUVPlugin" and "DecayCorrection NONE" in chosen["tooltip"]
    assert "SUVbw (g/ml) = BQML value x 0.000442712" in chosen["tooltip"]  # the earliest image's
    output = tmp_path / "none.nrrd"
    result = cli_runner("load", str(tmp_path / "none"), "--output", str(output))
    assert result.exit_code == 0, result.output
    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(output)))
    assert ours.shape[0] == 4
    activity = [pydicom.dcmread(p) for p in paths]
    for k, (dataset, factor) in enumerate(zip(activity, [4.4271197e-4] * 2 + [4.7156870e-4] * 2)):
        expected = (dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)) * factor
        assert np.allclose(ours[k], expected, rtol=1e-5, atol=1e-6), k


def test_frame_decay_agrees_with_the_scanners_decay_factor(siemens):
    """Independent check on real data: the Siemens slice (DecayCorrection START) carries the
    scanner's own DecayFactor (0054,1321) 1.03722, which took its values from the frame's mean
    activity back to the series start. The same image uncorrected would divide by our frame-average
    decayed dose, so (dose at series start) / frame_decayed_dose must be that factor: 11:12:18 series
    start, 11:16:24 acquisition (4584 s after injection), 200.909 s frame."""
    from DICOMBrowser.DICOMBrowserLib import suv

    dataset = pydicom.dcmread(siemens, stop_before_pixels=True)
    at_start = 290e6 * 2 ** (-4338 / 6586.2)
    ratio = at_start / suv.frame_decayed_dose(290e6, 6586.2, 4584.0, float(dataset.ActualFrameDuration) / 1000)
    assert ratio == pytest.approx(float(dataset.DecayFactor), rel=2e-4)  # 1.037115 vs 1.03722 (whole-second times)
    # the same slice read as uncorrected (values START's / DecayFactor): its factor is START's x DecayFactor
    dataset.DecayCorrection = "NONE"
    none = _factors(dataset, siemens)
    assert none.factors["bw"] == pytest.approx(4.463641e-4 * ratio, rel=1e-6)


def test_real_world_value_mapping_object_in_the_database_supplies_the_factor(cli_runner, corpus, siemens, tmp_path):
    """dcmqi's sr-example RWVM ("PET SUV Factors", written by QIICR's SUVFactorCalculator) maps
    191 PET images of series ...397405 to {SUVbw}g/ml with slope 0.000375125; the images
    themselves are not in the corpus, so three of them are made from the real Siemens slice with
    the UIDs, study and patient the RWVM names. Imported with it, their SUVbw factor is the
    RWVM's (the header would give 4.463641e-4), its units are the volume's, and the tooltip and
    node say where it came from. A series it does not cover keeps the computed factor."""
    rwvm = pydicom.dcmread(corpus / RWVM)
    referenced = [str(i.ReferencedSOPInstanceUID)
                  for i in rwvm.ReferencedImageRealWorldValueMappingSequence[0].ReferencedImageSequence]
    series_uid = str(rwvm.ReferencedSeriesSequence[0].SeriesInstanceUID)
    same_study = {"StudyInstanceUID": rwvm.StudyInstanceUID, "PatientID": rwvm.PatientID,
                  "PatientName": rwvm.PatientName}
    _pet_series(siemens, tmp_path / "pet", [(216, "111624", 200909), (219, "111624", 200909), (222, "111624", 200909)],
                SeriesInstanceUID=series_uid, SOPInstanceUIDs=referenced[:3], **same_study)
    _pet_series(siemens, tmp_path / "other", [(216, "111624", 200909)], **same_study)  # not referenced by it
    (tmp_path / "rwvm").mkdir()
    shutil.copy(corpus / RWVM, tmp_path / "rwvm" / "rwvm.dcm")
    for folder in ("pet", "other", "rwvm"):
        assert cli_runner("import", str(tmp_path / folder)).exit_code == 0

    loadables = json.loads(cli_runner("examine", series_uid, "--json").output)
    (chosen,) = [l for l in loadables if l["selected"]]
    assert chosen["plugin"] == "DICOMPETSUVPlugin"
    assert f"x 0.000375125, factor Real World Value Mapping object {rwvm.SOPInstanceUID}" in chosen["tooltip"]
    assert "computed from the header 0.000446364" in chosen["tooltip"]  # both numbers shown
    output = tmp_path / "rwvm.nrrd"
    result = cli_runner("load", series_uid, "--output", str(output))
    assert result.exit_code == 0, result.output
    dataset = pydicom.dcmread(siemens)
    activity = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(output)))
    assert ours.shape[0] == 3 and np.allclose(ours[1], activity * 0.000375125, rtol=1e-5, atol=1e-6)

    other_uid = str(pydicom.dcmread(tmp_path / "other" / "pet1.dcm", stop_before_pixels=True).SeriesInstanceUID)
    (other,) = [l for l in json.loads(cli_runner("examine", other_uid, "--json").output) if l["selected"]]
    assert "x 0.000446364, factor computed from the image header" in other["tooltip"]


def test_mapping_object_on_the_node_and_partial_coverage(corpus, siemens, tmp_path):
    """Loaded from Python: a PET header that cannot give SUV (no PatientWeight) still loads in SUV
    from the mapping object, and the node carries the object's UID (as Slicer's RWVM plugin names
    it), the source and the RWVM's units. A series of which the RWVM covers only some images keeps
    the computed factor and says why."""
    from pydicom.uid import generate_uid

    from DICOMBrowser.DICOMBrowserLib import loading, scene
    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
    from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

    rwvm = pydicom.dcmread(corpus / RWVM, stop_before_pixels=True)
    referenced = [str(i.ReferencedSOPInstanceUID)
                  for i in rwvm.ReferencedImageRealWorldValueMappingSequence[0].ReferencedImageSequence]
    same_study = {"StudyInstanceUID": rwvm.StudyInstanceUID, "PatientID": rwvm.PatientID, "PatientName": rwvm.PatientName}
    covered = _pet_series(siemens, tmp_path / "covered", [(216, "111624", 200909), (219, "111624", 200909)],
                          SeriesInstanceUID=str(rwvm.ReferencedSeriesSequence[0].SeriesInstanceUID),
                          SOPInstanceUIDs=referenced[5:7], PatientWeight=None, **same_study)
    partly = _pet_series(siemens, tmp_path / "partly", [(216, "111624", 200909), (219, "111624", 200909)],
                         SOPInstanceUIDs=[referenced[7], generate_uid()], **same_study)
    database = DICOMDatabase(tmp_path / "db")
    try:
        import_paths(database, [str(tmp_path / "covered"), str(tmp_path / "partly"), str(corpus / RWVM)])
        report = loading.examine(database, [[str(p) for p in covered], [str(p) for p in partly]])
        (chosen, other) = [l for l in report.loadables if l.selected]
        assert chosen.plugin == other.plugin == "DICOMPETSUVPlugin"
        assert "PatientWeight" in chosen.tooltip  # why the header gives none
        assert "covers 1 of the 2 images: not used" in other.tooltip
        assert other.extra["suv"]["factors"]["bw"] == pytest.approx(4.463641e-4, rel=1e-6)
        mrml = scene.new_scene()
        (node,) = loading.load_loadables([chosen], mrml, database, report=report)
        assert node.GetAttribute("DICOM.RWV.instanceUID") == str(rwvm.SOPInstanceUID)
        assert node.GetAttribute("DICOM.PET.SUVFactorSource").startswith("Real World Value Mapping object")
        assert float(node.GetAttribute("DICOM.PET.SUVFactor")) == 0.000375125
        units = node.GetVoxelValueUnits()
        assert (units.GetCodeValue(), units.GetCodingSchemeDesignator()) == ("{SUVbw}g/ml", "UCUM")
    finally:
        database.close()
