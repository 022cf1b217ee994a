"""Loading a large CT series into a volume node, side by side with its peers, in one run.

Data: a generated 600-slice 512x512 int16 CT series (sampledata.write_series; --quick: 120
slices), cached under --data (default /tmp/dicombrowser-bench-load). Each case runs in its own
fresh Python process (so imports and peak memory do not mix), after one untimed warm-up read
of the files (warm page cache, as the figures in issue 3):

  floor          numpy reads the raw pixel bytes of every file into one preallocated array
  ours-read      pixelreader.read_frames + apply_rescale alone, pixel offsets from the index
  ours-db        DICOMBrowser: examine + load into a vtkMRMLScalarVolumeNode, pixel offsets
                 and transfer syntaxes from the database index (files imported beforehand)
  ours-folder    the same without a database (group by series, header scan, examine, load)
  pydicom-stack  pydicom.dcmread(...).pixel_array per file, np.stack
  simpleitk      SimpleITK ImageSeriesReader (GDCM)
  dcm2niix       Debian's dcm2niix writing an uncompressed NIfTI (includes the write)

Reported per case: best wall time of --repeat runs, peak resident memory of the process and
its peak above the process's own baseline after imports ("extra"), and ratios to dcm2niix and
to the floor; extra memory also as a multiple of the volume size. The machine is shared with
other engineers' builds and tests: figures are noisy, re-run to compare.

    .venv/bin/python benchmarks/bench_load.py [--quick] [--repeat 3] [--cases floor,ours-db,...]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES = ("floor", "ours-read", "ours-db", "ours-folder", "pydicom-stack", "simpleitk", "dcm2niix")


# --- the measured work: each function runs in a child process --------------------------------
def _rss_mb() -> float:
    """Current resident set size (MiB), from /proc."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_floor(folder: str, database: str) -> dict:
    import numpy as np

    files = sorted(str(p) for p in Path(folder).glob("*.dcm"))
    from DICOMBrowser.DICOMBrowserLib.headerscan import scan_file

    first = scan_file(files[0], ["0028,0010", "0028,0011"])
    rows, columns = int(first.values["0028,0010"]), int(first.values["0028,0011"])
    offset = first.pixel_data_offset  # generated files share one header layout
    baseline = _rss_mb()
    started = time.perf_counter()
    volume = np.empty((len(files), rows, columns), dtype="<i2")
    for index, path in enumerate(files):
        with open(path, "rb", buffering=0) as handle:
            handle.seek(offset)
            handle.readinto(memoryview(volume[index].reshape(-1).view(np.uint8)))
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "baseline_mb": baseline, "shape": list(volume.shape), "checksum": int(volume[::37, ::53, ::59].sum())}


def child_ours_read(folder: str, database_folder: str) -> dict:
    from DICOMBrowser.DICOMBrowserLib import pixelreader
    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase

    database = DICOMDatabase(database_folder, create=False)
    files = sorted(str(p) for p in Path(folder).glob("*.dcm"))
    baseline = _rss_mb()
    started = time.perf_counter()
    voxels = pixelreader.apply_rescale(pixelreader.read_frames(files, database), 1.0, -1024.0)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "baseline_mb": baseline, "shape": list(voxels.shape), "dtype": str(voxels.dtype)}


def _ours(folder: str, database_folder: str | None) -> dict:
    from DICOMBrowser.DICOMBrowserLib import loading, scene as scenes

    import DICOMPlugins

    DICOMPlugins.allPlugins()  # import the plugins before the clock starts, like an open application
    database = None
    if database_folder:
        from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase

        database = DICOMDatabase(database_folder, create=False)
    scene = scenes.new_scene()
    baseline = _rss_mb()
    started = time.perf_counter()
    if database is not None:
        (series_uid,) = [s["SeriesInstanceUID"] for s in database.series()]
        file_lists = loading.file_lists_for(database, [series_uid])
    else:
        file_lists = loading.file_lists_for(None, [folder])
    report = loading.examine(database, file_lists, use_cache=False)
    chosen = [l for l in report.loadables if l.selected]
    examined = time.perf_counter() - started
    (node,) = loading.load_loadables(chosen, scene, database, report=report)
    elapsed = time.perf_counter() - started
    voxels = scenes.array_from_volume(node)
    return {"seconds": elapsed, "examine_seconds": examined, "baseline_mb": baseline, "shape": list(voxels.shape),
            "dtype": str(voxels.dtype), "checksum": int(voxels[::37, ::53, ::59].astype("int64").sum())}


def child_ours_db(folder: str, database: str) -> dict:
    return _ours(folder, database)


def child_ours_folder(folder: str, database: str) -> dict:
    return _ours(folder, None)


def child_pydicom_stack(folder: str, database: str) -> dict:
    import numpy as np
    import pydicom

    files = sorted(str(p) for p in Path(folder).glob("*.dcm"))
    baseline = _rss_mb()
    started = time.perf_counter()
    datasets = [pydicom.dcmread(path) for path in files]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    volume = np.stack([ds.pixel_array for ds in datasets])
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "baseline_mb": baseline, "shape": list(volume.shape)}


def child_simpleitk(folder: str, database: str) -> dict:
    import SimpleITK as sitk

    baseline = _rss_mb()
    started = time.perf_counter()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder))
    image = reader.Execute()
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "baseline_mb": baseline, "shape": list(reversed(image.GetSize())),
            "pixel_type": image.GetPixelIDTypeAsString()}


def child_dcm2niix(folder: str, database: str) -> dict:
    out = tempfile.mkdtemp(prefix="bench-dcm2niix-")
    try:
        started = time.perf_counter()
        subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "volume", "-o", out, folder], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        elapsed = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size = sum(p.stat().st_size for p in Path(out).glob("*.nii"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"seconds": elapsed, "baseline_mb": 0.0, "peak_mb": peak, "nifti_bytes": size}


CHILDREN = {"floor": child_floor, "ours-read": child_ours_read, "ours-db": child_ours_db, "ours-folder": child_ours_folder,
            "pydicom-stack": child_pydicom_stack, "simpleitk": child_simpleitk, "dcm2niix": child_dcm2niix}


def run_child(case: str, folder: str, database: str) -> dict:
    """Entry point of a child process: run one case, print its figures as JSON."""
    result = CHILDREN[case](folder, database)
    result.setdefault("peak_mb", _peak_mb())
    return result


# --- the parent: data, warm-up, children, table -----------------------------------------------
def ct_pixels(index: int, rows: int, columns: int):
    """12-bit CT-like stored values (0..4095, rescale -1024 keeps int16), varying per slice."""
    import numpy as np

    yy, xx = np.mgrid[0:rows, 0:columns]
    return ((xx + 2 * yy + 7 * index) % 4096).astype(np.int16)


def prepare(data: Path, slices: int) -> tuple[Path, Path]:
    """The series (written once, reused) and a database that indexes it."""
    from DICOMBrowser.DICOMBrowserLib import sampledata

    folder = data / f"ct{slices}"
    marker = folder / ".complete"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        print(f"writing {slices} slices of 512x512 int16 to {folder} ...", flush=True)
        started = time.perf_counter()
        sampledata.write_series(folder, count=slices, rows=512, columns=512, spacing=0.625,
                                series_description="Benchmark CT", pixels=ct_pixels)
        marker.write_text("ok")
        print(f"  written in {time.perf_counter() - started:.1f} s", flush=True)
    database_folder = data / f"database{slices}"
    if not (database_folder / ".complete").exists():
        shutil.rmtree(database_folder, ignore_errors=True)
        from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
        from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

        started = time.perf_counter()
        with DICOMDatabase(database_folder) as database:
            summary = import_paths(database, [folder])
        (database_folder / ".complete").write_text("ok")
        print(f"  indexed {summary.indexed} files in {time.perf_counter() - started:.1f} s", flush=True)
    return folder, database_folder


def warm(folder: Path) -> None:
    """Read every file once so all cases start with the same (warm) page cache."""
    for path in folder.glob("*.dcm"):
        with open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass


def measure(case: str, folder: Path, database: Path) -> dict:
    command = [sys.executable, __file__, "--child", case, "--folder", str(folder), "--database", str(database)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if completed.returncode != 0:
        return {"error": (completed.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="120 slices instead of 600")
    parser.add_argument("--slices", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=2, help="runs per case; the best time is reported")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "dicombrowser-bench-load"))
    parser.add_argument("--json", action="store_true", help="also print all figures as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.folder, args.database)))
        return

    slices = args.slices or (120 if args.quick else 600)
    folder, database = prepare(Path(args.data), slices)
    volume_mb = slices * 512 * 512 * 2 / 2**20
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if "dcm2niix" in cases and shutil.which("dcm2niix") is None:
        print("dcm2niix not installed (apt-get install dcm2niix): skipping it")
        cases.remove("dcm2niix")
    warm(folder)
    results: dict[str, dict] = {}
    for case in cases:
        runs = [measure(case, folder, database) for _ in range(max(1, args.repeat))]
        good = [r for r in runs if "error" not in r]
        if not good:
            results[case] = runs[0]
            continue
        best = min(good, key=lambda r: r["seconds"])
        best["peak_mb"] = min(r["peak_mb"] for r in good)
        best["extra_mb"] = min(r["peak_mb"] - r["baseline_mb"] for r in good)
        results[case] = best

    print(f"\nLoad a {slices}-slice 512x512 int16 CT series ({volume_mb:.0f} MiB of voxels), warm cache, "
          f"best of {args.repeat}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (noisy, shared machine)\n")
    reference = results.get("dcm2niix", {}).get("seconds")
    floor = results.get("floor", {}).get("seconds")
    header = f"{'case':15s} {'seconds':>8s} {'x dcm2niix':>11s} {'x floor':>8s} {'peak MiB':>9s} {'extra MiB':>10s} {'extra/volume':>13s}"
    print(header)
    print("-" * len(header))
    for case in cases:
        r = results[case]
        if "error" in r:
            print(f"{case:15s} failed: {r['error']}")
            continue
        ratio = f"{r['seconds'] / reference:.2f}" if reference else "-"
        ratio_floor = f"{r['seconds'] / floor:.2f}" if floor else "-"
        print(f"{case:15s} {r['seconds']:8.3f} {ratio:>11s} {ratio_floor:>8s} {r['peak_mb']:9.0f} "
              f"{r['extra_mb']:10.0f} {r['extra_mb'] / volume_mb:13.2f}")
    ours = results.get("ours-db", {})
    if "seconds" in ours:
        print(f"\nours-db: examine {ours.get('examine_seconds', 0):.3f} s of {ours['seconds']:.3f} s; "
              f"volume {ours.get('shape')} {ours.get('dtype')}")
        if reference:
            verdict = "meets" if ours["seconds"] <= 1.5 * reference else "misses"
            print(f"target time <= 1.5 x dcm2niix: {ours['seconds'] / reference:.2f}x ({verdict})")
        verdict = "meets" if ours["extra_mb"] <= 1.5 * volume_mb else "misses"
        print(f"target memory <= 1.5 x volume: {ours['extra_mb'] / volume_mb:.2f}x ({verdict}); dcm2niix's peak is "
              f"the whole process, ours is above the Python/VTK/MRML baseline")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
