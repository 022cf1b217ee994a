"""pydicom imported by `convert` and `load` without `requests` (leanimport), in a fresh process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CODE = """
import sys
from DICOMBrowser.DICOMBrowserLib.leanimport import import_pydicom
import_pydicom()
assert "pydicom" in sys.modules and "requests" not in sys.modules and "tqdm" not in sys.modules
import pydicom
import pydicom.data.download as download
assert download.HAVE_REQUESTS is False  # its test-file downloads go through urllib
ds = pydicom.dcmread(sys.argv[1], stop_before_pixels=True)
assert ds.SOPInstanceUID
import requests  # DICOMweb still gets it afterwards
assert requests.Session
import tqdm
assert tqdm.tqdm
"""


def test_pydicom_reads_and_requests_stays_importable(series_factory):
    path = series_factory(count=1)[0]
    subprocess.run([sys.executable, "-c", CODE, str(path)], check=True, timeout=120,
                   cwd=Path(__file__).resolve().parents[1])
