"""The database side of an import, side by side with peers that also keep a DICOM index.

    .venv/bin/python benchmarks/bench_database.py            # 20,000 generated files
    .venv/bin/python benchmarks/bench_database.py --quick    # 2,000 generated files
    .venv/bin/python benchmarks/bench_database.py --data DIR --orthanc-max 2000

On the generated set (patients x 2 studies x 5 series x 10 instances, sampledata.write_many) it
measures, each into a fresh index, cache warm, best of --repeat:
  ours      import_paths reference mode (all cores), re-import of the unchanged folder, --copy
  DCMTK     dcmqridx registering the first --dcmqridx-max files in its index.dat (500 files per
            process; each registration scans the whole index, so it slows down as the index grows)
  Orthanc   REST ingest, POST /instances over one kept-alive HTTP connection (first --orthanc-max
            files: Orthanc parses and stores every file, ~200 files/s)
and browsing a full tree (all patients, studies, series with counts) in ours vs Orthanc's
/patients?expand + /studies?expand + /series?expand on what it ingested.
Figures are wall-clock files/s and files per CPU second (this process + children; Orthanc's own
CPU is not visible to us, so its CPU column is blank). The machine may be shared: compare ratios
within one run.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Testing"))


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(run: Callable[[], int], repeat: int) -> tuple[int, float, float]:
    """(count, wall s, CPU s) of the fastest of `repeat` runs."""
    best = None
    for _ in range(repeat):
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        count = run()
        wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
        if best is None or wall < best[1]:
            best = (count, wall, cpu)
    return best


def generated_set(args: argparse.Namespace) -> Path:
    from DICOMBrowser.DICOMBrowserLib import sampledata

    patients = 20 if args.quick else 200
    folder = Path(args.data) if args.data else Path(tempfile.gettempdir()) / f"dicombrowser-bench-db-{patients}"
    expected = patients * 2 * 5 * 10
    if folder.is_dir() and sum(1 for p in folder.rglob("*.dcm")) >= expected:
        print(f"using the existing files in {folder}")
        return folder
    print(f"generating {expected} files in {folder} ...", flush=True)
    sampledata.write_many(folder, patients=patients)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 generated files instead of 20,000")
    parser.add_argument("--data", help="folder of the generated set (generated there when empty)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--orthanc-max", type=int, default=1000, help="files POSTed to Orthanc (it is slow)")
    parser.add_argument("--dcmqridx-max", type=int, default=2000,
                        help="files registered with dcmqridx (its index.dat grows quadratically in time)")
    args = parser.parse_args(argv)

    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
    from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

    folder = generated_set(args)
    files = sorted(str(p) for p in folder.rglob("*.dcm"))
    rows: list[tuple[str, int, float, float | None, str]] = []
    work = Path(tempfile.mkdtemp(prefix="dicombrowser-bench-db-"))
    try:
        counter = iter(range(1000))

        def ours(copy: bool) -> int:
            with DICOMDatabase(work / f"ours{next(counter)}") as db:
                return import_paths(db, [folder], copy=copy).indexed

        count, wall, cpu = measure(lambda: ours(False), args.repeat)
        rows.append(("ours: import, reference mode", count, wall, cpu, "fresh database, all cores"))
        reimport_db = DICOMDatabase(work / "reimport")
        import_paths(reimport_db, [folder])
        count, wall, cpu = measure(lambda: import_paths(reimport_db, [folder]).unchanged, args.repeat)
        rows.append(("ours: re-import, unchanged", count, wall, cpu, "a stat per file"))
        count, wall, cpu = measure(lambda: ours(True), 1)
        rows.append(("ours: import --copy", count, wall, cpu, "files copied into the database folder"))

        def browse_ours() -> int:
            shown = 0
            for patient in reimport_db.patients():
                for study in reimport_db.studies(patient["PatientUID"]):
                    shown += len(reimport_db.series(study["StudyInstanceUID"]))
            return shown

        browse = measure(browse_ours, args.repeat)
        reimport_db.close()

        if shutil.which("dcmqridx"):
            qr_files = files[:args.dcmqridx_max]

            def dcmqridx() -> int:
                index = work / f"dcmqr{next(counter)}"
                index.mkdir()
                for start in range(0, len(qr_files), 500):
                    subprocess.run(["dcmqridx", "-q", str(index), *qr_files[start:start + 500]], check=True,
                                   timeout=600)
                return len(qr_files)

            count, wall, cpu = measure(dcmqridx, 1)
            rows.append(("DCMTK dcmqridx", count, wall, cpu, "index.dat, 500 files per process"))
        else:
            print("(dcmqridx not found: apt-get install dcmtk)")

        orthanc_browse = None
        try:
            from network_peers import OrthancPeer, have_orthanc
        except ImportError:
            have_orthanc = lambda: False  # noqa: E731 - Testing/ not next to this script
        if have_orthanc():
            subset = files[:args.orthanc_max]
            with OrthancPeer(work / "orthanc") as orthanc:
                connection = http.client.HTTPConnection("127.0.0.1", orthanc.http_port, timeout=60)

                def ingest() -> int:
                    for path in subset:
                        connection.request("POST", "/instances", body=Path(path).read_bytes(),
                                           headers={"Content-Type": "application/dicom"})
                        response = connection.getresponse()
                        response.read()
                        if response.status != 200:
                            raise RuntimeError(f"Orthanc refused {path}: {response.status}")
                    return len(subset)

                count, wall, _ = measure(ingest, 1)
                rows.append(("Orthanc REST ingest", count, wall, None, "POST /instances, one connection"))

                def browse_orthanc() -> int:
                    shown = 0
                    for level in ("patients", "studies", "series"):
                        connection.request("GET", f"/{level}?expand")
                        body = json.loads(connection.getresponse().read())
                        if level == "series":
                            shown += len(body)
                    return shown

                orthanc_browse = measure(browse_orthanc, args.repeat)
                connection.close()
        else:
            print("(Orthanc not found: apt-get install orthanc)")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = rows[0][1] / rows[0][2]
    print(f"\n== {len(files)} generated files in {folder}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"{'method':34} {'files':>6} {'wall s':>7} {'files/s':>8} {'x ours':>7} {'CPU s':>6} {'files/CPU-s':>11}  note")
    for label, count, wall, cpu, note in rows:
        rate = count / wall if wall else 0.0
        cpu_text = f"{cpu:6.2f} {count / cpu:11.0f}" if cpu else f"{'':6} {'':11}"
        print(f"{label:34} {count:6d} {wall:7.2f} {rate:8.0f} {rate / base:7.2f} {cpu_text}  {note}")
    print("\nbrowse the whole tree (patients > studies > series with counts):")
    print(f"  ours    {browse[0]} series in {browse[1] * 1000:.0f} ms ({len(files)} instances indexed)")
    if orthanc_browse:
        print(f"  Orthanc {orthanc_browse[0]} series in {orthanc_browse[1] * 1000:.0f} ms "
              f"({min(len(files), args.orthanc_max)} instances ingested)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
