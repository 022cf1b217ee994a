"""Importing pydicom and numpy as a converter wants them.

pydicom imports `requests` (and urllib3) only to download its own test files, and uses urllib
when requests is missing; `tqdm` only for that download's progress bar. Those imports are 70-90 ms
of CPU in every process that reads DICOM. numpy's huge page advice makes some large allocations
stall (`import_numpy`). `convert` and `load` call `import_pydicom` first (docs/convert.md).
"""
from __future__ import annotations

import os
import sys


#: what pydicom's test-file downloader imports when it can, and does without
HIDDEN = ("requests", "tqdm")


def import_numpy() -> None:
    """Import numpy without its transparent huge page advice, unless the user set
    NUMPY_MADVISE_HUGEPAGE or numpy is imported already.

    numpy asks the kernel for huge pages on every large array (madvise). Where the kernel's
    defrag setting is "madvise" (Debian's and Ubuntu's default), a page fault in such an array
    may compact memory first: a 27 MB astype took 8 ms or 100-250 ms by chance. A converter
    allocates a few such arrays per series; without the advice each costs ~15 ms, every time
    (`convert` of the benchmark folder: 1.10-1.26 s against 1.25-1.38 s, alternating runs).
    The variable is inherited by worker processes, and numpy reads it once, at import."""
    if "numpy" in sys.modules:
        return
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    import numpy  # noqa: F401


def import_pydicom() -> None:
    """Import pydicom with HIDDEN hidden for the duration, unless pydicom or one of them is
    imported already (then nothing changes). Afterwards `import requests` works as usual
    (DICOMweb needs it); only pydicom's test-file downloader keeps using urllib, without a
    progress bar, in this process."""
    import_numpy()
    if "pydicom" in sys.modules or any(name in sys.modules for name in HIDDEN):
        return
    for name in HIDDEN:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import pydicom  # noqa: F401
    finally:
        for name in HIDDEN:
            del sys.modules[name]
