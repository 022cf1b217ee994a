"""Import throughput, side by side in one run: our header scan and import vs GDCM, DCMTK, pydicom.

    .venv/bin/python benchmarks/bench_import.py            # 20,000 generated files + a corpus series
    .venv/bin/python benchmarks/bench_import.py --quick    # 2,000 generated files
    .venv/bin/python benchmarks/bench_import.py --profile  # also profile the import's main process

On each data set (the generated 200 patients x 2 studies x 5 series x 10 instances set, and a real
series of the corpus, GE 3D T1 by default) it measures, cache warm:
  (a) the raw limit: the first 4 KiB of every file, one process
  (b) pydicom dcmread(stop_before_pixels=True), one process (on at most --pydicom-max files),
      and pydicom's own fast path dcmread(specific_tags=the import's tags)
  (c) gdcmscanner (Debian libgdcm-tools), normal and --strict; python-gdcm's gdcm.Scanner;
      dcmdump (DCMTK) -M over the folder
  (d) our headerscan.scan_files, in-process (workers=1; its data set walk in C, and in Python)
      and on all cores
  (e) our full reference-mode import (indexer.import_paths) into a fresh database
and prints files/s (wall clock) and files per CPU second (this process + its children: tools and
pool workers), each with the ratio to gdcmscanner. Each figure is from the fastest of --repeat
runs. The machine may be shared, so wall figures are noisy: compare ratios within one run, and
look at the CPU figures, which depend much less on the load.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from DICOMBrowser.DICOMBrowserLib import headerscan, nativewalk, sampledata  # noqa: E402

# The tags an import asks for when the indexer is not available (database columns + geometry).
FALLBACK_TAGS = [
    "0008,0005", "0008,0008", "0008,0016", "0008,0018", "0008,0020", "0008,0021", "0008,0030", "0008,0050",
    "0008,0060", "0008,0070", "0008,1030", "0008,103e", "0010,0010", "0010,0020", "0010,0030", "0010,0040",
    "0018,0015", "0018,0050", "0020,000d", "0020,000e", "0020,0010", "0020,0011", "0020,0012", "0020,0013",
    "0020,0032", "0020,0037", "0020,0052", "0028,0008", "0028,0010", "0028,0011", "0028,0030", "0028,1050",
    "0028,1051", "0028,1052", "0028,1053",
]
# What gdcmscanner is asked for when the import's tag list has no public tags (never, in practice).
CLI_TAGS = ["0010,0010", "0010,0020", "0020,000d", "0020,000e", "0008,0018", "0008,0016", "0008,0060",
            "0020,0011", "0020,0013"]


def import_tags() -> list[str]:
    try:
        from DICOMBrowser.DICOMBrowserLib import indexer
        return indexer.required_tags()
    except ImportError:
        return FALLBACK_TAGS


def list_files(folder: Path) -> list[str]:
    return sorted(str(Path(root) / name) for root, _, names in os.walk(folder) for name in names)


def warm(files: list[str]) -> None:
    """Read every file once so all methods see the page cache warm."""
    for path in files:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass


def cpu_seconds() -> float:
    """CPU time of this process plus its reaped children (tools, pool workers): load-independent-ish."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_of(repeat: int, run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the fastest of `repeat` runs."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        cpu = cpu_seconds()
        start = time.perf_counter()
        run()
        wall = time.perf_counter() - start
        if wall < best[0]:
            best = (wall, cpu_seconds() - cpu)
    return best


def raw_4k(files: list[str]) -> None:
    for path in files:
        with open(path, "rb") as f:
            f.read(4096)


def pydicom_headers(files: list[str]) -> None:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            pydicom.dcmread(path, stop_before_pixels=True, force=True)


def pydicom_specific_tags(files: list[str], tags: list[str]) -> None:
    """pydicom on its own fast path: only the listed tags are kept (it still walks every element)."""
    import pydicom
    from DICOMBrowser.DICOMBrowserLib.tagreader import parse_tag

    wanted = [parse_tag(t) for t in tags]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=wanted)
            for tag in wanted:
                ds.get(tag)


def python_gdcm(files: list[str], tags: list[str]) -> None:
    import gdcm

    scanner = gdcm.Scanner()
    for tag in tags:
        group, element = (int(x, 16) for x in tag.split(","))
        scanner.AddTag(gdcm.Tag(group, element))
    names = gdcm.FilenamesType()
    for path in files:
        names.append(path)
    if not scanner.Scan(names):
        raise RuntimeError("gdcm.Scanner failed")


def run_tool(command: list[str], ok_codes: tuple[int, ...] = (0,)) -> None:
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
    if done.returncode not in ok_codes:
        raise RuntimeError(f"{command[0]} exited with {done.returncode}")


def scan(files: list[str], tags: list[str], workers: int | None) -> None:
    results = list(headerscan.scan_files(files, tags, workers=workers))
    bad = [r for r in results if r.error]
    if bad:
        raise RuntimeError(f"{len(bad)} files not scanned, e.g. {bad[0].path}: {bad[0].error}")


def scan_in_python(files: list[str], tags: list[str]) -> None:
    """The scan with its data set walk in Python (the fallback when the C walker is not built)."""
    previous = os.environ.get(nativewalk.SWITCH)
    os.environ[nativewalk.SWITCH] = "0"
    try:
        scan(files, tags, 1)
    finally:
        if previous is None:
            del os.environ[nativewalk.SWITCH]
        else:
            os.environ[nativewalk.SWITCH] = previous


def full_import(folder: Path, workers: int | None, profile: bool = False) -> str | None:
    """Import into a fresh temporary database; returns the profile text when asked."""
    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
    from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

    tmp = tempfile.mkdtemp(prefix="bench-import-db-")
    try:
        database = DICOMDatabase(Path(tmp) / "db")
        try:
            profiler = cProfile.Profile() if profile else None
            if profiler:
                profiler.enable()
            summary = import_paths(database, [folder], workers=workers)
            if profiler:
                profiler.disable()
            if summary.errors or summary.indexed + summary.duplicates == 0:
                raise RuntimeError(f"import went wrong: {summary.as_dict()}")
        finally:
            database.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
        return out.getvalue()
    return None


def have_import() -> bool:
    try:
        from DICOMBrowser.DICOMBrowserLib.indexer import import_paths  # noqa: F401
        from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase  # noqa: F401
        return True
    except ImportError:
        return False


def bench_folder(label: str, folder: Path, args: argparse.Namespace) -> None:
    files = list_files(folder)
    n = len(files)
    tags = import_tags()
    print(f"\n== {label}: {n} files in {folder} ({sum(os.path.getsize(f) for f in files) / n / 1024:.1f} KiB "
          f"average); import tag list: {len(tags)} tags; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    warm(files)
    rows: list[tuple[str, int, float | None, float, str]] = []

    def measure(name: str, count: int, run: Callable[[], object], note: str = "") -> None:
        try:
            seconds, cpu = best_of(args.repeat, run)
        except (OSError, RuntimeError, subprocess.SubprocessError, ImportError) as exc:
            rows.append((name, count, None, 0.0, f"skipped: {exc}"))
            return
        rows.append((name, count, seconds, cpu, note))

    # gdcmscanner gets the same public tags as our scan (private ones need their creator, -P);
    # GDCM stops reading a file after the last requested tag, as our walker stops at the pixel data
    cli_tags = [t for t in tags if not int(t[:4], 16) & 1] or CLI_TAGS
    cli_tag_args = [a for t in cli_tags for a in ("-t", t)]
    if shutil.which("gdcmscanner"):
        measure("(c) gdcmscanner", n, lambda: run_tool(["gdcmscanner", "-d", str(folder), "-r", *cli_tag_args]),
                f"{len(cli_tags)} tags, one process")
        measure("(c) gdcmscanner --strict", n, lambda: run_tool(["gdcmscanner", "-d", str(folder), "-r", "--strict",
                                                                 *cli_tag_args]))
    else:
        rows.append(("(c) gdcmscanner", n, None, 0.0, "skipped: gdcmscanner not installed (apt install libgdcm-tools)"))
    measure("(a) raw read of first 4 KiB", n, lambda: raw_4k(files), "one process")
    subset = files[:args.pydicom_max]
    measure("(b) pydicom dcmread(stop_before_pixels)", len(subset), lambda: pydicom_headers(subset), "one process")
    measure("(b) pydicom dcmread(specific_tags=..., stop_before_pixels)", len(subset),
            lambda: pydicom_specific_tags(subset, tags), f"{len(tags)} tags, values converted, one process")
    measure("(c) python-gdcm gdcm.Scanner", n, lambda: python_gdcm(files, tags), f"{len(tags)} tags, one process")
    if shutil.which("dcmdump"):
        measure("(c) dcmdump -M +sd +r", n, lambda: run_tool(["dcmdump", "-q", "-M", "+sd", "+r", str(folder)], (0, 1)),
                "full dump to /dev/null (exit 1: a non-DICOM file)")
    else:
        rows.append(("(c) dcmdump", n, None, 0.0, "skipped: dcmdump not installed (apt install dcmtk)"))
    measure("(d) headerscan.scan_files workers=1", n, lambda: scan(files, tags, 1), f"{len(tags)} tags")
    measure("(d) headerscan.scan_files workers=1, walk in Python", n, lambda: scan_in_python(files, tags),
            f"{len(tags)} tags, ${nativewalk.SWITCH}=0")
    workers = args.workers or headerscan.default_workers()
    measure(f"(d) headerscan.scan_files workers={workers}", n, lambda: scan(files, tags, workers), f"{len(tags)} tags")
    if have_import():
        measure(f"(e) import_paths (reference mode) workers={workers}", n, lambda: full_import(folder, workers),
                "fresh database each run")
    else:
        rows.append(("(e) import_paths", n, None, 0.0, "skipped: indexer.import_paths not in this checkout yet"))

    gdcm = next((r for r in rows if r[0] == "(c) gdcmscanner" and r[2]), None)
    gdcm_rate = gdcm[1] / gdcm[2] if gdcm else None
    gdcm_cpu_rate = gdcm[1] / gdcm[3] if gdcm and gdcm[3] > 0 else None
    print(f"{'method':58s} {'files':>6s} {'wall s':>7s} {'files/s':>8s} {'x gdcm':>7s} {'CPU s':>7s} "
          f"{'files/CPU-s':>11s} {'x gdcm':>7s}  note")
    for name, count, seconds, cpu, note in rows:
        if seconds is None:
            print(f"{name:58s} {count:6d} {'-':>7s} {'-':>8s} {'-':>7s} {'-':>7s} {'-':>11s} {'-':>7s}  {note}")
            continue
        rate = count / seconds
        cpu_rate = count / cpu if cpu > 0 else 0.0
        ratio = f"{rate / gdcm_rate:.2f}" if gdcm_rate else "-"
        cpu_ratio = f"{cpu_rate / gdcm_cpu_rate:.2f}" if gdcm_cpu_rate and cpu_rate else "-"
        print(f"{name:58s} {count:6d} {seconds:7.3f} {rate:8.0f} {ratio:>7s} {cpu:7.3f} {cpu_rate:11.0f} "
              f"{cpu_ratio:>7s}  {note}")
    import_row = next((r for r in rows if r[0].startswith("(e)") and r[2]), None)
    if import_row and gdcm_rate and label == "generated set":
        rate = import_row[1] / import_row[2]
        print(f"target (generated set): import >= 5000 files/s: {'met' if rate >= 5000 else 'NOT met'} ({rate:.0f}); "
              f">= 0.4 x gdcmscanner: {'met' if rate >= 0.4 * gdcm_rate else 'NOT met'} ({rate / gdcm_rate:.2f})")
    if args.profile and have_import():
        print(f"\n-- profile of the import's main process ({label}; worker processes not included):")
        print(full_import(folder, workers, profile=True))


def corpus_series(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    roots = [Path(os.environ["DICOMBROWSER_CORPUS"])] if os.environ.get("DICOMBROWSER_CORPUS") else []
    roots.append(REPO.parent / "shared" / "corpus")
    for root in roots:
        if (root / "ge_t1").is_dir():
            return root / "ge_t1"
    return None


def generated_set(args: argparse.Namespace) -> Path:
    patients = 20 if args.quick else 200
    folder = Path(args.data or Path(tempfile.gettempdir()) / f"dicombrowser-bench-many-{patients}")
    expected = patients * 2 * 5 * 10
    marker = folder.parent / (folder.name + ".complete")
    if args.data and folder.is_dir() and any(folder.iterdir()) and not marker.exists():
        print(f"using the existing files in {folder} as the generated set")
        return folder
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)  # our own cache folder, left half-written by a killed run
        print(f"generating {expected} files in {folder} (once; reused by later runs) ...", flush=True)
        start = time.perf_counter()
        sampledata.write_many(folder, patients=patients)
        marker.write_text(str(expected))
        print(f"  generated in {time.perf_counter() - start:.1f} s")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 generated files instead of 20,000")
    parser.add_argument("--data", help="folder of the generated set: used as it is when it holds files, else "
                                       "generated there (default: a cached folder in the temp dir)")
    parser.add_argument("--series", help="a real series folder (default: the corpus's ge_t1)")
    parser.add_argument("--workers", type=int, help="worker processes for (d) and (e) (default: all cores)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best is kept")
    parser.add_argument("--pydicom-max", type=int, default=3000, help="files for the slow pydicom baseline")
    parser.add_argument("--profile", action="store_true", help="profile the import's main process")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = min(args.repeat, 2)
    bench_folder("generated set", generated_set(args), args)
    series = corpus_series(args.series)
    if series is None:
        print("\n(corpus series skipped: ../shared/corpus/ge_t1 not found; use --series DIR)")
    else:
        bench_folder(f"real series {series.name}", series, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
