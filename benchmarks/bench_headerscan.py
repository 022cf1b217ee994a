"""Header scan per file, in-process: the C side (nativewalk) against the Python path.

    .venv/bin/python benchmarks/bench_headerscan.py                 # the bench folders, else the corpus
    .venv/bin/python benchmarks/bench_headerscan.py FOLDER... --repeat 9

Each folder is scanned with `headerscan.scan_files(files, tags, workers=1)` and the tags a
`dicombrowser convert` asks for (`scanindex.plugin_tags` of the BIDS sidecar and file-name tags),
cache warm, alternately with the C side and in Python ($DICOMBROWSER_NATIVE=0), and prints the
best run of each as microseconds per file; the last column is `ScanIndex.build(files, tags,
workers=1)` with the C side, what `convert` runs (value lists, no dict per file). The machine may
be shared: the best of several alternating runs is the figure to compare. Both paths must give
the same results.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from DICOMBrowser.DICOMBrowserLib import bids, conversion, headerscan, nativewalk, scanindex  # noqa: E402

# the folders bench_convert.py and bench_load.py write: Siemens, Philips and GE MR series; a 600-slice CT
BENCH_DATA = Path(tempfile.gettempdir()) / "dicombrowser-bench-load"
DEFAULT_FOLDERS = [BENCH_DATA / "many-series", BENCH_DATA / "ct600"]


def scan(files: list[str], tags: list[str], native: bool) -> tuple[float, list]:
    os.environ[nativewalk.SWITCH] = "1" if native else "0"  # read when scan_files plans the scan
    started = time.perf_counter()
    results = list(headerscan.scan_files(files, tags, workers=1))
    return time.perf_counter() - started, results


def build_index(files: list[str], tags: list[str]) -> float:
    os.environ[nativewalk.SWITCH] = "1"
    started = time.perf_counter()
    scanindex.ScanIndex.build(files, tags, workers=1)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path, help="folders of DICOM files (default: many-series "
                        "and ct600 of bench_convert.py's data, else ../shared/corpus)")
    parser.add_argument("--repeat", type=int, default=7, help="runs of each walk; the best is kept")
    args = parser.parse_args(argv)
    if not nativewalk.available():
        print(f"native walker not available: {nativewalk.why_unavailable()}")
        return 1
    folders = args.folders or [f for f in DEFAULT_FOLDERS if f.is_dir()] or [REPO.parent / "shared" / "corpus"]
    tags = scanindex.plugin_tags([*bids.SIDECAR_TAGS, *conversion.name_tags()])
    print(f"{len(tags)} tags; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; best of {args.repeat}")
    print(f"{'folder':48s} {'files':>6s} {'python us/file':>15s} {'native us/file':>15s} {'speed-up':>9s} "
          f"{'index us/file':>14s}")
    for folder in folders:
        files = sorted(str(Path(root) / name) for root, _, names in os.walk(folder) for name in names)
        best = {True: float("inf"), False: float("inf")}
        results = {}
        index_best = float("inf")
        for _ in range(args.repeat):
            for native in (True, False):
                seconds, results[native] = scan(files, tags, native)
                best[native] = min(best[native], seconds)
            index_best = min(index_best, build_index(files, tags))
        if results[True] != results[False]:
            print(f"{folder}: the two walks give different results")
            return 1
        python_us, native_us = (best[n] / len(files) * 1e6 for n in (False, True))
        print(f"{str(folder):48s} {len(files):6d} {python_us:15.1f} {native_us:15.1f} {python_us / native_us:8.2f}x "
              f"{index_best / len(files) * 1e6:14.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
