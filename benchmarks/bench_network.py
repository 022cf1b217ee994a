"""Receive throughput of our listener (indexing included) against DCMTK's storescp, and C-FIND
against Orthanc: our pynetdicom client vs DCMTK's findscu. Side by side in one run.

    .venv/bin/python benchmarks/bench_network.py            # 600 x 512x512 CT, 2,000 small, 20,000 in Orthanc
    .venv/bin/python benchmarks/bench_network.py --quick    # 100 CT slices, 300 small, 2,000 in Orthanc

Both receivers get the same storescu transfer on loopback, with Nagle off (TCP_NODELAY=1 for
DCMTK, TCP_NODELAY set by our code). The machine is shared: figures are noisy, compare ratios.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))

from network_peers import OrthancPeer, StoreSCP, free_port, storescu  # noqa: E402

from DICOMBrowser.DICOMBrowserLib import sampledata  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.config import RemoteNode  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.networking import StorageListener, scu  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.networking.sockets import dcmtk_env  # noqa: E402


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def time_storescp(data: Path, work: Path) -> float:
    with StoreSCP(work / "storescp") as peer:
        started = time.perf_counter()
        result = storescu(peer.port, peer.ae_title, [data])
        elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-500:]
    return elapsed


def time_listener(data: Path, work: Path, count: int) -> float:
    database = DICOMDatabase(work / "db")
    try:
        with StorageListener(database, ae_title="BENCH", port=free_port(), host="127.0.0.1") as listener:
            started = time.perf_counter()
            result = storescu(listener.port, "BENCH", [data])
            listener.wait_indexed(600)
            elapsed = time.perf_counter() - started
            status = listener.status()
        assert result.returncode == 0, result.stderr[-500:]
        assert status.indexed == count, status
        assert len(database.instances()) == count
    finally:
        database.close()
    return elapsed


def receive_case(name: str, data: Path, count: int, work: Path) -> None:
    size = folder_size(data)
    dcmtk = time_storescp(data, work / f"{name}-dcmtk")
    ours = time_listener(data, work / f"{name}-ours", count)
    print(f"{name}: {count} instances, {size / 1e6:.0f} MB")
    for label, seconds in (("storescp (DCMTK, to disk)", dcmtk), ("our listener (write + index)", ours)):
        print(f"  {label:32s} {seconds:7.2f} s  {count / seconds:8.0f} inst/s  {size / 1e6 / seconds:7.1f} MB/s")
    print(f"  ours / storescp throughput: {dcmtk / ours:.2f}x (target >= 0.4x)")


def findscu(port: int, aet: str, name: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(["findscu", "-S", "-aet", "BENCH", "-aec", aet, "-k", "QueryRetrieveLevel=STUDY",
                             "-k", f"PatientName={name}", "-k", "StudyInstanceUID", "-k", "StudyDate",
                             "-k", "PatientID", "127.0.0.1", str(port)],
                            env=dcmtk_env(), capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-500:]
    return elapsed


def find_case(work: Path, patients: int) -> None:
    data = work / "many"
    count = sampledata.write_many(data, patients=patients, studies=2, series=5, instances=10)
    with OrthancPeer(work / "orthanc", modalities={"bench": ("BENCH", free_port())}) as orthanc:
        started = time.perf_counter()
        result = storescu(orthanc.dicom_port, orthanc.ae_title, [data], timeout=1800)
        assert result.returncode == 0, result.stderr[-500:]
        print(f"C-FIND against Orthanc holding {count} instances ({2 * patients} studies; "
              f"loaded by storescu in {time.perf_counter() - started:.1f} s)")
        node = RemoteNode("orthanc", orthanc.ae_title, "127.0.0.1", orthanc.dicom_port)
        for pattern in ("Patient^00001", "*"):
            ours_times, dcmtk_times, matches = [], [], 0
            for _ in range(5):
                dcmtk_times.append(findscu(orthanc.dicom_port, orthanc.ae_title, pattern))
                started = time.perf_counter()
                matches = len(scu.find(node, "BENCH", "study", {"patient_name": pattern}).matches)
                ours_times.append(time.perf_counter() - started)
            d, o = statistics.median(dcmtk_times), statistics.median(ours_times)
            print(f"  PatientName={pattern!r}: {matches} matches; findscu {d * 1000:.0f} ms, "
                  f"ours {o * 1000:.0f} ms (median of 5), ratio {o / d:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data sets")
    parser.add_argument("--skip-find", action="store_true", help="skip the Orthanc C-FIND part")
    args = parser.parse_args()
    ct_slices, small, patients = (100, 300, 20) if args.quick else (600, 2000, 200)
    with tempfile.TemporaryDirectory(prefix="bench-network-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        sampledata.write_series(work / "ct", count=ct_slices, rows=512, columns=512)
        for i in range(small // 10):
            sampledata.write_series(work / "small" / f"s{i}", count=10, rows=8, columns=8)
        print(f"(generated data in {time.perf_counter() - started:.1f} s; machine shared, figures noisy)")
        receive_case(f"CT {ct_slices} x 512x512", work / "ct", ct_slices, work)
        receive_case(f"{small} small instances", work / "small", small, work)
        if not args.skip_find:
            find_case(work, patients)


if __name__ == "__main__":
    main()
