"""`dicombrowser convert` and `load --output` end to end through the CLI, side by side with dcm2niix.

Three comparisons, each command run as a fresh process (so imports count, as a user pays them),
best wall time of --repeat runs after one warm-up read of the files, peak resident memory of the
process tree from wait4 (the largest process: the CLI or one worker):

  ct       one generated 600-slice 512x512 int16 CT (sampledata; --quick: 120 slices, shared with
           bench_load.py's cache): `convert --format nii` and `load -o ct.nii` vs `dcm2niix -z n`
           (dcm2niix writes its BIDS sidecar too, as convert does). Targets: wall <= 1.2x
           dcm2niix, peak resident memory <= 1.3x the volume's size.
  folder   one folder holding the corpus's fmri_timeseries, siemens_mosaic_order, philips_dwi and
           ge_t1 (copied without their Ref/ folders): `convert --format nii` vs `dcm2niix -z n`.
           Target: wall <= 1.0x dcm2niix.
  twenty   20 corpus series: one `convert` of all their files vs 20 `load -o x.nii` calls (what one
           process saves: imports, plugin set-up, workers across series).

    .venv/bin/python benchmarks/bench_convert.py [--quick] [--repeat 3] [--cases ct,folder,twenty]

The machine is shared (2 cores, other engineers' builds): figures are noisy, compare ratios
within one run. No assertion here: the figures go to docs/convert.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

CORPUS = Path(os.environ.get("DICOMBROWSER_CORPUS", REPO.parent / "shared" / "corpus"))
CLI = [sys.executable, "-m", "DICOMBrowser"]
FOLDER_SERIES = ("fmri_timeseries", "siemens_mosaic_order", "philips_dwi", "ge_t1")
TWENTY_FROM = ("fmri_timeseries", "siemens_mosaic_order", "fieldmaps", "ge_t1", "slicer_ct_head", "ge_dwi",
               "enhanced_multiframe", "siemens_mosaic_orientation")


def run(command: list[str], cwd: str | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB of the largest process of the tree) of one command."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])}... failed ({process.returncode}): {stderr.strip()[-400:]}")
    return elapsed, usage.ru_maxrss / 1024


def best(commands_factory, repeat: int) -> dict:
    """Best wall time (and the peak memory of that run) of `repeat` runs; each run gets fresh outputs."""
    runs = []
    for attempt in range(repeat):
        work = Path(tempfile.mkdtemp(prefix="bench-convert-", dir=OUTPUT_ROOT))
        try:
            seconds, peak = 0.0, 0.0
            for command in commands_factory(work):
                os.sync()  # no writeback of an earlier run's (or another process's) output left to pay for
                s, p = run(command)
                seconds += s
                peak = max(peak, p)
            runs.append((seconds, peak))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    seconds, peak = min(runs)
    return {"seconds": round(seconds, 3), "peak_mb": round(peak, 1), "runs": [round(r[0], 3) for r in runs]}


#: where the outputs go (--output-root): by default a RAM disk when there is one, so that each
#: command's time is its own work, not the disk's writeback of other processes' writes (on the
#: shared machine, a 300 MiB write took 0.4 s or 2 s depending on what else was writing)
OUTPUT_ROOT: str | None = None


def warm(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                while handle.read(1 << 20):
                    pass


def case_ct(args) -> dict:
    from bench_load import prepare

    folder, _ = prepare(Path(args.data), args.slices)
    warm(folder)
    volume_mb = args.slices * 512 * 512 * 2 / 2**20
    results = {
        "dcm2niix -z n": best(lambda w: [["dcm2niix", "-z", "n", "-f", "ct", "-o", str(w), str(folder)]], args.repeat),
        "convert --format nii": best(lambda w: [[*CLI, "convert", str(folder), "-o", str(w), "--format", "nii"]],
                                     args.repeat),
        "load -o ct.nii": best(lambda w: [[*CLI, "load", str(folder), "-o", str(w / "ct.nii")]], args.repeat),
    }
    return {"volume_mb": round(volume_mb, 1), "results": results, "reference": "dcm2niix -z n",
            "targets": {"convert --format nii": {"time": 1.2, "memory_x_volume": 1.3},
                        "load -o ct.nii": {"time": 1.2, "memory_x_volume": 1.3}}}


def _many_folder(data: Path) -> Path:
    folder = data / "many-series"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        for name in FOLDER_SERIES:
            shutil.copytree(CORPUS / name, folder / name, ignore=shutil.ignore_patterns("Ref", "LICENSE*", "*.md"))
        (folder / ".complete").write_text("ok")
    return folder


def case_folder(args) -> dict:
    folder = _many_folder(Path(args.data))
    warm(folder)
    results = {
        "dcm2niix -z n": best(lambda w: [["dcm2niix", "-z", "n", "-o", str(w), str(folder)]], args.repeat),
        "convert --format nii": best(lambda w: [[*CLI, "convert", str(folder), "-o", str(w), "--format", "nii"]],
                                     args.repeat),
    }
    return {"results": results, "reference": "dcm2niix -z n", "targets": {"convert --format nii": {"time": 1.0}}}


def twenty_series() -> list[list[str]]:
    """20 series of the corpus that have a default loadable (their file lists), in a fixed order."""
    from DICOMBrowser.DICOMBrowserLib.conversion import collect_series

    chosen: list[list[str]] = []
    for name in TWENTY_FROM:
        _, groups, _ = collect_series([str(CORPUS / name)], workers=1)
        for uid in sorted(groups):
            files = groups[uid]
            if len(files) >= 2 and len(chosen) < 20:
                chosen.append(sorted(files))
    return chosen


def case_twenty(args) -> dict:
    series = twenty_series()
    for files in series:
        for path in files:
            with open(path, "rb") as handle:
                handle.read()
    all_files = [f for files in series for f in files]
    results = {
        "20 x load -o x.nii": best(lambda w: [[*CLI, "load", *files, "-o", str(w / f"s{n}.nii")]
                                              for n, files in enumerate(series)], args.repeat),
        "convert (one process)": best(lambda w: [[*CLI, "convert", *all_files, "-o", str(w), "--format", "nii"]],
                                      args.repeat),
    }
    return {"series": len(series), "files": len(all_files), "results": results, "reference": "20 x load -o x.nii"}


def report(name: str, figures: dict) -> None:
    reference = figures["results"][figures["reference"]]["seconds"]
    print(f"\n== {name} ==" + (f" (volume {figures['volume_mb']} MiB)" if "volume_mb" in figures else ""))
    print(f"{'case':28s} {'seconds':>8s} {'ratio':>7s} {'peak MiB':>9s} {'x volume':>9s}  runs")
    for case, result in figures["results"].items():
        ratio = result["seconds"] / reference if reference else float("nan")
        x_volume = f"{result['peak_mb'] / figures['volume_mb']:.2f}" if "volume_mb" in figures else "-"
        print(f"{case:28s} {result['seconds']:8.3f} {ratio:7.2f} {result['peak_mb']:9.1f} {x_volume:>9s}  {result['runs']}")
    for case, target in figures.get("targets", {}).items():
        result = figures["results"][case]
        ratio = result["seconds"] / reference
        verdict = "met" if ratio <= target["time"] else "NOT met"
        line = f"target {case}: time <= {target['time']}x -> {ratio:.2f}x ({verdict})"
        if "memory_x_volume" in target:
            x_volume = result["peak_mb"] / figures["volume_mb"]
            line += (f"; peak memory <= {target['memory_x_volume']}x volume -> {x_volume:.2f}x "
                     f"({'met' if x_volume <= target['memory_x_volume'] else 'NOT met'})")
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="120-slice CT, 1 run per case")
    parser.add_argument("--slices", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None, help="runs per case (best reported); default 3, --quick 1")
    parser.add_argument("--cases", default="ct,folder,twenty")
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "dicombrowser-bench-load"))
    parser.add_argument("--json", action="store_true", help="also print all figures as JSON")
    parser.add_argument("--output-root", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                        help="folder for the outputs (default /dev/shm where it exists: a RAM disk, the same "
                             "for every command; give a disk folder to include its writeback)")
    args = parser.parse_args()
    global OUTPUT_ROOT
    OUTPUT_ROOT = args.output_root
    print(f"outputs under {OUTPUT_ROOT or tempfile.gettempdir()}; os.sync() before each command")
    args.slices = args.slices or (120 if args.quick else 600)
    args.repeat = args.repeat or (1 if args.quick else 3)
    if shutil.which("dcm2niix") is None:
        sys.exit("dcm2niix not installed (apt-get install dcm2niix)")
    cases = [c for c in args.cases.split(",") if c]
    if any(c in ("folder", "twenty") for c in cases) and not CORPUS.is_dir():
        print(f"corpus not found at {CORPUS}: skipping the folder and twenty cases")
        cases = [c for c in cases if c == "ct"]
    everything = {}
    for case in cases:
        figures = {"ct": case_ct, "folder": case_folder, "twenty": case_twenty}[case](args)
        everything[case] = figures
        report(case, figures)
    if args.json:
        print(json.dumps(everything, indent=2))


if __name__ == "__main__":
    main()
