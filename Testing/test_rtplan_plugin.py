"""RT Plan: a user loads pydicom's real RT Plan and sees its beams, isocentre and prescription.

Given rtplan.dcm (one 6 MV static photon beam "Field 1" on unit001, gantry 0, 30 fractions,
PTV prescription 30.826203 Gy; values as DCMTK's dcmdump prints them), when
`dicombrowser load rtplan.dcm --output plan.tsv`, then the beam table holds those values, the
isocentre is a markups point at the plan's IsocenterPosition (LPS -> RAS), and the prescription
is on the node.
"""
from __future__ import annotations

import csv
import json

import pytest


def test_plan_to_beam_table(cli_runner, pydicom_file, tmp_path):
    source = pydicom_file("rtplan.dcm")
    (loadable,) = [l for l in json.loads(cli_runner("examine", str(source), "--json").output) if l["selected"]]
    assert loadable["plugin"] == "DICOMRTPlanPlugin" and "Plan1" in loadable["name"]
    output = tmp_path / "plan.tsv"
    result = cli_runner("load", str(source), "--output", str(output))
    assert result.exit_code == 0, result.output
    with open(output, newline="") as handle:
        (beam,) = list(csv.DictReader(handle, delimiter="\t"))
    assert beam["BeamName"] == "Field 1" and beam["RadiationType"] == "PHOTON" and beam["BeamType"] == "STATIC"
    assert beam["TreatmentMachineName"] == "unit001"
    assert float(beam["NominalBeamEnergy"]) == 6.0 and float(beam["GantryAngle"]) == 0.0
    assert [float(v) for v in beam["IsocenterPosition_LPS"].split()] == pytest.approx(
        [235.711172833292, 244.135437110782, -724.97815409918])
    assert float(beam["BeamMeterset"]) == pytest.approx(116.0036697)


def test_plan_node_has_prescription_fractions_and_isocenter_points(pydicom_file):
    from DICOMBrowser.DICOMBrowserLib import loading, scene

    report = loading.examine(None, [[str(pydicom_file("rtplan.dcm"))]])
    mrml = scene.new_scene()
    (node,) = loading.load_loadables([l for l in report.loadables if l.selected], mrml, report=report)
    assert node.GetAttribute("DICOM.RTPlan.NumberOfFractionsPlanned") == "30"
    prescriptions = json.loads(node.GetAttribute("DICOM.RTPlan.Prescriptions"))
    target = [p for p in prescriptions if p["DoseReferenceType"] == "TARGET"]
    assert float(target[0]["TargetPrescriptionDose"]) == pytest.approx(30.826203)
    points = node.GetNodeReference("isocenters")
    position = [0.0, 0.0, 0.0]
    points.GetNthControlPointPosition(0, position)
    assert position == pytest.approx([-235.711172833292, -244.135437110782, -724.97815409918])  # RAS
