"""Retrieving one CT series from the same Orthanc over WADO-RS (its DICOMweb plugin) and over C-GET.

    .venv/bin/python benchmarks/bench_dicomweb.py            # 600 x 512x512 CT
    .venv/bin/python benchmarks/bench_dicomweb.py --quick    # 100 slices
    .venv/bin/python benchmarks/bench_dicomweb.py --repeat 5 --data /tmp/bench-data --streams 1 4

Both end with every instance written into a new database and indexed (`dicombrowser retrieve`'s
work: dicomweb.retrieve / service.retrieve with C-GET); Orthanc's own reading and sending time
is in both. Alternating, `--repeat` times each; medians printed, with each run. The machine's
two cores are shared with Orthanc, so compare the ratio, not the seconds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "Testing"))

from network_peers import OrthancPeer, free_port, storescu  # noqa: E402

from DICOMBrowser.DICOMBrowserLib import sampledata  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.config import DatabaseSettings, RemoteNode  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.networking import dicomweb, fastpath, service  # noqa: E402

PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def series_data(root: Path, slices: int) -> Path:
    folder = root / f"ct-{slices}"
    done = folder / ".complete"
    if not done.exists():
        started = time.perf_counter()
        sampledata.write_series(folder, count=slices, rows=512, columns=512)
        done.touch()
        print(f"(generated {folder.name} in {time.perf_counter() - started:.1f} s)")
    return folder


def timed_retrieve(work: Path, name: str, node: RemoteNode, series_uid: str, count: int, **options) -> float:
    database = DICOMDatabase(work / name)
    try:
        started = time.perf_counter()
        if node.is_dicomweb:
            summary = dicomweb.retrieve(database, DatabaseSettings(), node, [series_uid], level="series", **options)
        else:
            summary = service.retrieve(database, DatabaseSettings(ae_title="BENCH"), node, [series_uid],
                                       level="series", method="get")
        elapsed = time.perf_counter() - started
        assert summary.ok and len(database.instances()) == count, (name, summary)
    finally:
        database.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 slices instead of 600")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4],
                        help="WADO-RS streams to compare (instance requests shared out over them)")
    parser.add_argument("--data", type=Path, default=None, help="keep the generated series here between runs")
    args = parser.parse_args()
    if not Path(PLUGIN).exists():
        sys.exit(f"Orthanc's DICOMweb plugin ({PLUGIN}) is missing: apt-get install orthanc-dicomweb")
    slices = 100 if args.quick else 600
    with tempfile.TemporaryDirectory(prefix="bench-dicomweb-") as temporary:
        work = Path(temporary)
        folder = series_data(args.data or work / "data", slices)
        import pydicom

        first = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
        series_uid = str(first.SeriesInstanceUID)
        extra = {"Plugins": [PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        with OrthancPeer(work / "orthanc", extra=extra, modalities={"bench": ("BENCH", free_port())}) as orthanc:
            loaded = storescu(orthanc.dicom_port, orthanc.ae_title, [folder], timeout=1800)
            assert loaded.returncode == 0, loaded.stderr[-500:]
            dimse = RemoteNode("orthanc", orthanc.ae_title, "127.0.0.1", orthanc.dicom_port, "get")
            web = RemoteNode("orthanc-web", url=f"{orthanc.url}/dicom-web")
            print(f"{slices}-slice 512x512 CT from Orthanc 127.0.0.1; fast DIMSE path {fastpath.reason()}")
            times: dict[str, list[float]] = {"C-GET": []}
            times["WADO-RS (series, 1 request)"] = []
            times.update({f"WADO-RS {n} stream(s) by instance": [] for n in args.streams})
            for run in range(args.repeat):
                times["C-GET"].append(timed_retrieve(work, f"get-{run}", dimse, series_uid, slices))
                times["WADO-RS (series, 1 request)"].append(
                    timed_retrieve(work, f"wado-series-{run}", web, series_uid, slices))
                for streams in args.streams:
                    times[f"WADO-RS {streams} stream(s) by instance"].append(
                        timed_retrieve(work, f"wado-{streams}-{run}", web, series_uid, slices, streams=streams,
                                       split_series=True))
        reference = statistics.median(times["C-GET"])
        for label, values in times.items():
            median = statistics.median(values)
            print(f"  {label:32s} {median:6.2f} s  ({slices / median:5.0f} inst/s; runs "
                  f"{', '.join(f'{v:.2f}' for v in values)}); C-GET time / this {reference / median:.2f}x")


if __name__ == "__main__":
    main()
