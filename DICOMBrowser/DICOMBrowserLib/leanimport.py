"""Importing pydicom without the part of it no command of ours uses.

pydicom imports `requests` (and urllib3) only to download its own test files, and uses urllib
when requests is missing. That import is 60-80 ms of CPU in every process that reads DICOM;
`convert` and `load` take about a second in all, against dcm2niix's 0.7 s (docs/convert.md).
"""
from __future__ import annotations

import sys


def import_pydicom() -> None:
    """Import pydicom with `requests` hidden for the duration, unless either is imported already
    (then nothing changes). Afterwards `import requests` works as usual (DICOMweb needs it);
    only pydicom's test-file downloader keeps using urllib in this process."""
    if "pydicom" in sys.modules or "requests" in sys.modules:
        return
    sys.modules["requests"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import pydicom  # noqa: F401
    finally:
        del sys.modules["requests"]
