"""Examine/sort/check a long series, and load a gantry-tilted CT with correction, beside peers.

1. Examine (group, sort along the normal, check every geometry rule) a generated N-file series:
   our plugin through the database tag cache, our plugin without a database (headers parsed once),
   pydicom reading every header and sorting, SimpleITK's GetGDCMSeriesFileNames (GDCM's sorter).
2. Read + de-tilt a generated gantry-tilted CT (M slices 512x512): our regularized loadable vs
   dcm2niix (which also corrects tilt and writes NIfTI), plus our uncorrected load for reference.

The machine is shared with other engineers' jobs: figures are noisy; re-run to compare.

    .venv/bin/python benchmarks/geometry_examine.py           # 600-file series, 300-slice tilted CT
    .venv/bin/python benchmarks/geometry_examine.py --quick   # 200 files, 60 slices
"""
from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DICOMBrowser.DICOMBrowserLib import sampledata  # noqa: E402
from DICOMPlugins.DICOMScalarVolumePlugin import DICOMScalarVolumePlugin  # noqa: E402


def timed(function, repeat: int = 3):
    """Best wall time of `repeat` runs (warm cache) and the last result."""
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def examine_benchmark(folder: Path, count: int) -> None:
    import pydicom

    files = [str(p) for p in sampledata.write_series(folder / "long", count=count, rows=64, columns=64,
                                                     spacing=0.625, shuffle_instance_numbers=True)]
    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
    from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

    database = DICOMDatabase(folder / "db")
    import_paths(database, [folder / "long"])
    db_files = database.files_for_series(database.series()[0]["SeriesInstanceUID"])
    DICOMScalarVolumePlugin(database).examineFiles(db_files)  # warm the tag cache

    figures = {}
    figures["ours, database tag cache"], loadables = timed(lambda: DICOMScalarVolumePlugin(database).examineFiles(db_files))
    assert len(loadables) == 1 and loadables[0].warning == ""

    def ours_cold():
        from DICOMBrowser.DICOMBrowserLib import tagreader

        tagreader._header.cache_clear()
        return DICOMScalarVolumePlugin(None).examineFiles(files)

    figures["ours, no database (parse headers)"], _ = timed(ours_cold)

    def pydicom_sort():
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        normal = np.cross(*np.reshape(np.asarray(headers[0].ImageOrientationPatient, float), (2, 3)))
        return sorted(files, key=lambda f, h=dict(zip(files, headers)): float(np.dot(h[f].ImagePositionPatient, normal)))

    figures["pydicom headers + sort"], _ = timed(pydicom_sort)
    try:
        import SimpleITK as sitk

        figures["SimpleITK GetGDCMSeriesFileNames"], _ = timed(
            lambda: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder / "long")))
    except ImportError:
        pass
    database.close()
    ours = figures["ours, database tag cache"]
    print(f"\nExamine a {count}-file series (group, sort, all geometry checks), best of 3, warm disk cache:")
    for name, seconds in figures.items():
        print(f"  {name:38s} {seconds * 1000:9.1f} ms   ratio to ours(db) {seconds / ours:6.2f}")


def tilt_benchmark(folder: Path, count: int) -> None:
    tilt = math.radians(15)
    positions = [(0.0, 2.0 * k * math.tan(tilt), 2.0 * k) for k in range(count)]
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2000, size=(512, 512), dtype=np.int16)
    files = sampledata.write_series(folder / "tilt", positions=positions, rows=512, columns=512,
                                    pixels=lambda i, r, c: base + np.int16(i))
    plugin = DICOMScalarVolumePlugin(None)
    as_acquired, regularized = plugin.examineFiles([str(f) for f in files])
    assert regularized.extra["regularize"], "expected a regularized loadable for a tilted series"
    size_mb = count * 512 * 512 * 2 / 1e6

    def measure(function):
        seconds, _ = timed(lambda: function() and None, repeat=2)  # keep no result between runs
        tracemalloc.start()
        function()
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        return seconds, peak

    rows = {}
    rows["ours, as acquired (no correction)"] = measure(lambda: plugin.read_volume(as_acquired))
    rows["ours, regularized (de-tilted)"] = measure(lambda: plugin.read_volume(regularized))
    if shutil.which("dcm2niix"):
        out = folder / "d2n"
        out.mkdir()

        def dcm2niix():
            for old in out.glob("*"):
                old.unlink()
            subprocess.run(["dcm2niix", "-b", "n", "-z", "n", "-o", str(out), "-f", "t", str(folder / "tilt")],
                           check=True, capture_output=True, timeout=600)

        seconds, _ = timed(dcm2niix, repeat=2)
        rows["dcm2niix (reads, de-tilts, writes .nii)"] = (seconds, float("nan"))
    reference = rows["ours, regularized (de-tilted)"][0]
    print(f"\nLoad a gantry-tilted CT, {count} slices 512x512 int16 ({size_mb:.0f} MB stored), best of 2:")
    for name, (seconds, peak) in rows.items():
        peak_text = f"peak {peak:7.0f} MB ({peak / size_mb:4.2f}x volume)" if not math.isnan(peak) else "peak (other process)"
        print(f"  {name:40s} {seconds:7.2f} s   {peak_text}   ratio to ours(regularized) {seconds / reference:5.2f}")
    print("  (python peak = tracemalloc of numpy buffers; regularized output is float32, 2x the int16 size)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (200 files, 60 slices)")
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--slices", type=int, default=None)
    args = parser.parse_args()
    files = args.files or (200 if args.quick else 600)
    slices = args.slices or (60 if args.quick else 300)
    print("Note: the machine is shared; figures are noisy. Re-run to compare.")
    with tempfile.TemporaryDirectory(prefix="geometry-bench-") as temporary:
        folder = Path(temporary)
        examine_benchmark(folder, files)
        tilt_benchmark(folder, slices)


if __name__ == "__main__":
    main()
