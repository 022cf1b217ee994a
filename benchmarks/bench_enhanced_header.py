"""Enhanced multi-frame headers: fastheader.read_header vs pydicom.dcmread(stop_before_pixels).

Rows, each the mean over the case's files of the best of `--repeat` runs (page cache warm):
- the corpus's Siemens XA10 files (enhanced_multiframe: 4 files; fmri_timeseries: 18 volumes),
  its Philips enhanced MR file and the dicom2nifti Philips enhanced DTI file;
- generated enhanced files built from the first XA10 file by replicating its per-frame
  functional group items (and its frames' pixel data), saved under $TMPDIR: 60 frames (one
  SMS fMRI volume) and 3000 frames (a whole run in one file).

Columns: read only (ms per file, pydicom then fast, and the ratio), then read + frame geometry
(`multiframe.frame_geometries` on the data set read, which touches every functional group: what
a conversion pays). The machine is shared with other engineers' jobs: figures are noisy; compare
the ratios of one run and re-run when in doubt.

    .venv/bin/python benchmarks/bench_enhanced_header.py
    .venv/bin/python benchmarks/bench_enhanced_header.py --quick      # no 3000-frame file, fewer runs
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DICOMBrowser.DICOMBrowserLib import fastheader, multiframe  # noqa: E402

CORPUS = Path(os.environ.get("DICOMBROWSER_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))


def best_ms(function, path: str, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        function(path)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def enhanced_copy(source: Path, frames: int, folder: Path) -> Path:
    """`source` with its per-frame functional groups and frames repeated up to `frames`."""
    target = folder / f"enhanced_{frames}_frames.dcm"
    if target.exists():
        return target
    ds = pydicom.dcmread(source)
    groups = ds.PerFrameFunctionalGroupsSequence
    count = len(groups)
    frame_bytes = len(ds.PixelData) // count
    items = []
    for index in range(frames):
        item = copy.deepcopy(groups[index % count])
        if "FrameContentSequence" in item:
            item.FrameContentSequence[0].InStackPositionNumber = index + 1
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = items
    ds.NumberOfFrames = frames
    ds.PixelData = b"".join(ds.PixelData[(i % count) * frame_bytes:(i % count + 1) * frame_bytes]
                            for i in range(frames))
    ds.save_as(target)
    return target


def is_dicom(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as file:
        return file.read(132)[128:] == b"DICM"


def row(name: str, paths: list[Path], repeat: int) -> None:
    paths = [str(p) for p in paths]
    for path in paths:  # warm the page cache, and check the two readers agree
        assert fastheader.read_header(path) == fastheader.pydicom_read(path), path
    fast_taken = sum(fastheader.read_header_or_none(p) is not None for p in paths)

    def geometry(reader):
        return lambda path: multiframe.frame_geometries(path, reader(path))

    figures = []
    for reader in (fastheader.pydicom_read, fastheader.read_header, geometry(fastheader.pydicom_read),
                   geometry(fastheader.read_header)):
        figures.append(sum(best_ms(reader, p, repeat) for p in paths) / len(paths))
    pyd, fast, pyd_geometry, fast_geometry = figures
    size = sum(os.path.getsize(p) for p in paths) / len(paths) / 1024
    print(f"| {name} | {len(paths)} | {size:,.0f} | {pyd:.2f} | {fast:.2f} | {pyd / fast:.2f} | "
          f"{pyd_geometry:.2f} | {fast_geometry:.2f} | {pyd_geometry / fast_geometry:.2f} | {fast_taken}/{len(paths)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="no 3000-frame file, 3 runs per file")
    parser.add_argument("--repeat", type=int, default=None, help="runs per file (best kept); default 7")
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 7)
    if not CORPUS.is_dir():
        sys.exit(f"corpus not found at {CORPUS} (set DICOMBROWSER_CORPUS)")

    xa10 = sorted((CORPUS / "enhanced_multiframe/In/Siemens/XA10").iterdir())
    folder = Path(tempfile.gettempdir()) / "dicombrowser-bench-enhanced"
    folder.mkdir(exist_ok=True)
    generated = [(60, enhanced_copy(xa10[0], 60, folder))]
    if not args.quick:
        generated.append((3000, enhanced_copy(xa10[0], 3000, folder)))

    print(f"pydicom {pydicom.__version__}, best of {repeat} runs per file, ms per file; load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| case | files | KiB/file | pydicom read | fast read | ratio | pydicom read+geometry | "
          "fast read+geometry | ratio | fast path taken |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    row("Siemens XA10 enhanced_multiframe (6 frames)", xa10, repeat)
    row("Siemens XA10 fmri_timeseries (6 frames)",
        sorted(p for p in (CORPUS / "fmri_timeseries/In/Siemens/XA10").rglob("*") if p.is_file()), repeat)
    row("Philips enhanced MR fMAP (64 frames)", sorted((CORPUS / "enhanced_multiframe/In/Philips").iterdir()), repeat)
    row("dicom2nifti Philips enhanced DTI",
        sorted(p for p in (CORPUS / "dicom2nifti/tests/data/philips_enhanced").rglob("*") if is_dicom(p)), repeat)
    for frames, path in generated:
        row(f"generated from XA10, {frames} frames", [path], max(3, repeat // (2 if frames > 100 else 1)))


if __name__ == "__main__":
    main()
