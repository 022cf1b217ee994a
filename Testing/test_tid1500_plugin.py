"""TID 1500 measurement reports: a user loads dcmqi's sr-example report and gets a table whose
measurements are exactly those DCMTK's `dsrdump` (an independent SR reader) lists.

Given sr-example/sr.dcm (22 measurements of one volumetric ROI, "primary tumor", made on segment
1 of sr-example/seg.dcm), when `dicombrowser load sr.dcm --output m.tsv`, then each row has the
quantity, value and units dsrdump prints, in the same order, with the finding, finding site and
referenced segment.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess

import pydicom
import pytest

SR = "dcmqi_seg/data/sr-example/sr.dcm"
SEG = "dcmqi_seg/data/sr-example/seg.dcm"


def _dsrdump_measurements(path) -> list[tuple[str, float, str]]:
    """(quantity, value, units) of every NUM item inside a Measurement Group, as dsrdump prints them."""
    if shutil.which("dsrdump") is None:
        pytest.skip("DCMTK's dsrdump not installed (Debian package dcmtk; Utilities/setup.sh --test)")
    text = subprocess.run(["dsrdump", str(path)], check=True, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL).stdout
    found, in_group = [], False
    for line in text.splitlines():
        if '"Measurement Group"' in line:
            in_group = True
        match = re.search(r'<contains NUM:\(,,"([^"]+)"\)="([^"]+)" \(([^,]*),', line)
        if in_group and match:
            found.append((match.group(1), float(match.group(2)), match.group(3)))
    return found


def test_measurement_table_matches_dsrdump(cli_runner, corpus, tmp_path):
    source = corpus / SR
    (loadable,) = [l for l in json.loads(cli_runner("examine", str(source), "--json").output) if l["selected"]]
    assert loadable["plugin"] == "DICOMTID1500Plugin"
    output = tmp_path / "measurements.tsv"
    result = cli_runner("load", str(source), "--output", str(output))
    assert result.exit_code == 0, result.output
    with open(output, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    expected = _dsrdump_measurements(source)
    assert len(expected) == 22
    assert [(r["Quantity"], float(r["Value"]), r["Units"]) for r in rows] == expected
    seg_uid = str(pydicom.dcmread(corpus / SEG, stop_before_pixels=True).SOPInstanceUID)
    for row in rows:
        assert row["TrackingIdentifier"] == "primary tumor" and row["Finding"] == "Neoplasm, Primary"
        assert row["FindingSite"] == "pharyngeal tonsil (adenoid)"
        assert row["ReferencedSegmentationUID"] == seg_uid and row["ReferencedSegmentNumber"] == "1"
    derivations = {r["Derivation"] for r in rows if r["Quantity"] == "SUVbw"}
    assert {"Mean", "Minimum", "Maximum", "Median"} <= derivations


def test_other_structured_reports_are_not_claimed(pydicom_file):
    from DICOMBrowser.DICOMBrowserLib import loading

    report = loading.examine(None, [[str(pydicom_file("test-SR.dcm"))]])
    assert not [l for l in report.loadables if l.plugin == "DICOMTID1500Plugin"]
