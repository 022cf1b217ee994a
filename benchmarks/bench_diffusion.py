"""Load a DWI series with our diffusion reader and, side by side in the same run, convert the
same files with dcm2niix; print times and ratios.

    .venv/bin/python benchmarks/bench_diffusion.py            # largest DWI series of the corpus (Philips, 547 files)
    .venv/bin/python benchmarks/bench_diffusion.py --quick    # the GE series (14 files)

Ours is timed straight from the files (no database): header plan + pixels (read_dwi), plus
writing NIfTI + bval/bvec (the same job as dcm2niix), and the full plugin path into a
vtkMRMLDiffusionWeightedVolumeNode; then with the series imported into a temporary database
(values from the tag cache, pixels at the indexed offsets): plugin examine alone, and examine +
load into the node. Each figure is the median of --repeat runs; the first (cold cache) run is
discarded. The machine is shared, so figures are noisy: compare ratios from one run, not
absolute times across runs. --profile prints the top of a cProfile of read + write.

Figures (Philips, median of 5, shared machine; see docs/diffusion.md for the before/after table):
read_dwi 0.21 s (1.7-2.1x dcm2niix), read + NIfTI/bval/bvec 0.22-0.24 s (1.9-2.4x), examine + load no
database 0.25 s (2.5x), database examine 0.055 s (0.55x), database examine + load 0.13 s
(1.1-1.4x); dcm2niix 0.10-0.12 s. Before the header/pixel rework: 0.79 / 0.92 / 1.07 / 0.75 / 0.80 s.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Testing"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def timed(function, repeat: int) -> float:
    function()  # warm the page cache and imports
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small GE series instead of the 547-file Philips one")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of read_dwi + NIfTI writing")
    args = parser.parse_args()

    from conftest import corpus_root
    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
    from DICOMBrowser.DICOMBrowserLib.indexer import import_paths
    from DICOMBrowser.DICOMBrowserLib.diffusion import read_dwi, write_fsl
    from DICOMBrowser.DICOMBrowserLib.diffusion.node import new_scene
    from DICOMPlugins.DICOMDiffusionVolumePlugin import DICOMDiffusionVolumePlugin

    root = corpus_root()
    if root is None:
        print("corpus not found (../shared/corpus or $DICOMBROWSER_CORPUS)")
        return 1
    folder = root / ("ge_dwi/In/01_Ax_DWI_TENSOR_R2" if args.quick else "philips_dwi/In/cl/DICOM")
    files = sorted(str(p) for p in folder.iterdir() if p.is_file())
    dcm2niix = shutil.which("dcm2niix")
    work = Path(tempfile.mkdtemp(prefix="bench_diffusion_"))
    database = None
    try:
        series = read_dwi(files)
        print(f"series: {folder.relative_to(root)}  {len(files)} files -> {series.voxels.shape[0]} volumes x "
              f"{series.voxels.shape[1:]} ({series.voxels.nbytes / 1e6:.1f} MB in memory); repeat={args.repeat}")

        def ours_read():
            read_dwi(files)

        runs = itertools.count()

        def ours_nifti():
            # a new file each run, as dcm2niix does by default (-w 2 adds a suffix): an overwrite
            # would also time the truncation of the previous 27 MB
            write_fsl(read_dwi(files), work / f"ours{next(runs)}.nii")

        def ours_node():
            plugin = DICOMDiffusionVolumePlugin()
            plugin.load(plugin.examine([files])[0], new_scene())

        database = DICOMDatabase.temporary()
        started = time.perf_counter()
        import_paths(database, [str(folder)])
        import_seconds = time.perf_counter() - started

        def ours_examine_db():
            DICOMDiffusionVolumePlugin(database).examine([files])

        def ours_node_db():
            plugin = DICOMDiffusionVolumePlugin(database)
            plugin.load(plugin.examine([files])[0], new_scene())

        def peer():
            subprocess.run([dcm2niix, "-o", str(work), "-f", "peer", "-z", "n", str(folder)], check=True,
                           capture_output=True, timeout=300)

        rows = [("ours: read_dwi (plan + pixels)", timed(ours_read, args.repeat)),
                ("ours: read_dwi + NIfTI/bval/bvec", timed(ours_nifti, args.repeat)),
                ("ours: examine + load into DWI node", timed(ours_node, args.repeat)),
                ("ours, database: examine", timed(ours_examine_db, args.repeat)),
                ("ours, database: examine + load into node", timed(ours_node_db, args.repeat))]
        peer_time = timed(peer, args.repeat) if dcm2niix else None
        for label, seconds in rows:
            ratio = f"{seconds / peer_time:6.2f}x dcm2niix" if peer_time else ""
            print(f"{label:40s} {seconds:8.3f} s  {ratio}")
        if peer_time:
            print(f"{'dcm2niix (Debian) -> NIfTI/bval/bvec':40s} {peer_time:8.3f} s")
        else:
            print("dcm2niix not installed: no peer figure")
        print(f"(import into the temporary database, not compared: {import_seconds:.3f} s)")
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(ours_nifti)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(20)
    finally:
        if database is not None:
            database.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
