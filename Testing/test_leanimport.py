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


NUMPY_CODE = """
import os, sys
from DICOMBrowser.DICOMBrowserLib.leanimport import import_pydicom
import_pydicom()
import numpy
assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == sys.argv[1], os.environ.get("NUMPY_MADVISE_HUGEPAGE")
assert numpy.ones((2000, 2000), numpy.int16).astype(numpy.float32).sum() == 4_000_000
"""


def test_numpy_huge_page_advice_off_unless_the_user_chose(tmp_path):
    """import_pydicom imports numpy with NUMPY_MADVISE_HUGEPAGE=0 (no compaction stalls on big
    arrays); a value the user set is kept."""
    import os

    repo = Path(__file__).resolve().parents[1]
    environment = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    subprocess.run([sys.executable, "-c", NUMPY_CODE, "0"], check=True, timeout=120, cwd=repo, env=environment)
    subprocess.run([sys.executable, "-c", NUMPY_CODE, "1"], check=True, timeout=120, cwd=repo,
                   env={**environment, "NUMPY_MADVISE_HUGEPAGE": "1"})
