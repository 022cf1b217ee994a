"""ScanIndex: given a scanned folder, the database calls the plugins make (file_values,
file_value) answer what a scan of each file gives, for scanned tags, tags asked for later, files
the index does not hold, and any form or repetition of the tags."""
from __future__ import annotations

import pydicom

from DICOMBrowser.DICOMBrowserLib.headerscan import scan_file
from DICOMBrowser.DICOMBrowserLib.scanindex import ScanIndex

SCANNED = ["0008,0018", "0020,000e", "0020,0013", "0028,0010", "0010,0010"]


def test_file_values_answer_what_a_scan_of_each_file_gives(series_factory, tmp_path):
    files = [str(p) for p in series_factory(count=5)]
    index = ScanIndex.build(files, SCANNED, workers=1)
    stranger = str(tmp_path / "not-scanned.dcm")
    asked = ["0020,0013", "(0028,0010)", "SOPInstanceUID", "0020,0013", "0018,0050"]  # the last one not scanned yet
    keys = ["0020,0013", "0028,0010", "0008,0018", "0018,0050"]
    values = index.file_values([*files, stranger, files[0]], asked)
    assert list(values) == [*files, stranger]
    for path in files:
        scanned = scan_file(path, keys).values
        assert values[path] == {key: scanned[key] for key in keys}
        assert values[path]["0008,0018"] == pydicom.dcmread(path).SOPInstanceUID
        assert index.file_value(path, "InstanceNumber") == scanned["0020,0013"]
    assert values[stranger] == dict.fromkeys(keys, "")
    assert index.file_values(files[:2], ["0020,0013"]) == {p: {"0020,0013": values[p]["0020,0013"]} for p in files[:2]}
    assert index.file_values(files[:2], []) == {files[0]: {}, files[1]: {}}
    # the answers are the caller's: changing one changes nothing in the index
    values[files[0]]["0020,0013"] = "changed"
    assert index.file_values([files[0]], ["0020,0013"])[files[0]]["0020,0013"] != "changed"
