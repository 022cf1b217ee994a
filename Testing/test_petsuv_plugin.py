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

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

SIEMENS = "orthanc_tests/Database/2020-11-16-SalimKanounAnonymization.dcm"
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
    dataset.DecayCorrection = "NONE"
    with pytest.raises(SUVError, match="DecayCorrection 'NONE'"):
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
