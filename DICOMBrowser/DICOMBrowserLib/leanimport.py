"""Importing pydicom without the part of it no command of ours uses.

pydicom imports `requests` (and urllib3) only to download its own test files, and uses urllib
when requests is missing; `tqdm` only for that download's progress bar. Those imports are 70-90 ms
of CPU in every process that reads DICOM;
`convert` and `load` take about a second in all, against dcm2niix's 0.7 s (docs/convert.md).
"""
from __future__ import annotations

import sys


#: what pydicom's test-file downloader imports when it can, and does without
HIDDEN = ("requests", "tqdm")


def import_pydicom() -> None:
    """Import pydicom with HIDDEN hidden for the duration, unless pydicom or one of them is
    imported already (then nothing changes). Afterwards `import requests` works as usual
    (DICOMweb needs it); only pydicom's test-file downloader keeps using urllib, without a
    progress bar, in this process."""
    if "pydicom" in sys.modules or any(name in sys.modules for name in HIDDEN):
        return
    for name in HIDDEN:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import pydicom  # noqa: F401
    finally:
        for name in HIDDEN:
            del sys.modules[name]
