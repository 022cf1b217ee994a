"""Receive throughput of our listener (indexing included) against DCMTK's storescp, sending
(our `send` against storescu, both to storescp), and C-FIND against Orthanc: our pynetdicom
client vs DCMTK's findscu. Side by side in one run.

    .venv/bin/python benchmarks/bench_network.py            # 600 x 512x512 CT, 2,000 small, 20,000 in Orthanc
    .venv/bin/python benchmarks/bench_network.py --quick    # 100 CT slices, 300 small, 2,000 in Orthanc
    .venv/bin/python benchmarks/bench_network.py --skip-find --repeat 5 --data /tmp/bench-data
    .venv/bin/python benchmarks/bench_network.py --only small --skip-find --work /dev/shm   # receivers on tmpfs

Both receivers get the same storescu transfer on loopback, with Nagle off (TCP_NODELAY=1 for
DCMTK, TCP_NODELAY set by our code), alternating storescp and ours `--repeat` times. Reported:
wall time from storescu's start until the last instance is on disk (storescp) or indexed (ours),
and the receiver's CPU time (storescp's process; all threads of ours, indexing included). The
machine is shared: wall figures are noisy, CPU time less so; compare the medians and ratios.
`--data DIR` keeps the generated series between runs (generated once per size).

File creation dominates the small-instance case and its cost depends on the file system's
history: on this machine's ext4 (no journal) a new file costs anywhere from 0.03 to 0.7 ms of
kernel time, depending on how many inodes of its block group were deleted lately (ext4's
recently_deleted() scan), for storescp and us alike. `--work DIR` puts both receivers' output
there (e.g. /dev/shm, tmpfs) to compare the receive paths without that noise.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))

from network_peers import OrthancPeer, StoreSCP, free_port, storescu  # noqa: E402

from DICOMBrowser.DICOMBrowserLib import sampledata  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.config import RemoteNode  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.networking import StorageListener, scu  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.networking.sockets import dcmtk_env  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.networking.storage import ReceivedInstanceWriter  # noqa: E402


@dataclass
class Run:
    wall: float  # seconds, storescu start until stored (storescp) / indexed (ours)
    cpu: float   # receiver's CPU seconds (user + system)
    sender_cpu: float  # storescu's CPU seconds


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc (storescp is not reaped yet)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_storescp(data: Path, work: Path, count: int) -> Run:
    with StoreSCP(work) as peer:
        cpu_before = _process_cpu(peer.process.pid)
        children_before = _children_cpu()
        started = time.perf_counter()
        result = storescu(peer.port, peer.ae_title, [data], timeout=1800)
        elapsed = time.perf_counter() - started
        sender_cpu = _children_cpu() - children_before
        cpu = _process_cpu(peer.process.pid) - cpu_before
        stored = len(peer.files())
    assert result.returncode == 0, result.stderr[-500:]
    assert stored == count, f"storescp stored {stored} of {count}"
    return Run(elapsed, cpu, sender_cpu)


def time_listener(data: Path, work: Path, count: int) -> Run:
    database = DICOMDatabase(work / "db")
    try:
        with StorageListener(database, ae_title="BENCH", port=free_port(), host="127.0.0.1") as listener:
            children_before = _children_cpu()
            cpu_before = time.process_time()
            started = time.perf_counter()
            result = storescu(listener.port, "BENCH", [data], timeout=1800)
            listener.wait_indexed(600)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_before
            sender_cpu = _children_cpu() - children_before
            status = listener.status()
        assert result.returncode == 0, result.stderr[-500:]
        assert status.indexed == count, status
        assert len(database.instances()) == count
    finally:
        database.close()
    return Run(elapsed, cpu, sender_cpu)


def receive_case(name: str, data: Path, count: int, work: Path, repeat: int) -> float:
    """Alternate storescp and ours `repeat` times; print each run and the medians; return the median ratio."""
    size = folder_size(data)
    print(f"{name}: {count} instances, {size / 1e6:.0f} MB")
    dcmtk_runs, our_runs = [], []
    for i in range(repeat):
        dcmtk_runs.append(time_storescp(data, work / f"{name}-dcmtk-{i}", count))
        our_runs.append(time_listener(data, work / f"{name}-ours-{i}", count))
        d, o = dcmtk_runs[-1], our_runs[-1]
        print(f"  run {i + 1}: storescp {d.wall:6.2f} s wall {d.cpu:5.2f} s CPU | ours {o.wall:6.2f} s wall "
              f"{o.cpu:5.2f} s CPU | ratio {d.wall / o.wall:.2f}x  (storescu CPU {d.sender_cpu:.2f} / {o.sender_cpu:.2f} s)",
              flush=True)
    for label, runs in (("storescp (DCMTK, to disk)", dcmtk_runs), ("our listener (write + index)", our_runs)):
        wall = statistics.median(r.wall for r in runs)
        cpu = statistics.median(r.cpu for r in runs)
        print(f"  {label:30s} median {wall:6.2f} s wall {cpu:5.2f} s CPU  {count / wall:7.0f} inst/s  "
              f"{size / 1e6 / wall:6.1f} MB/s")
    ratios = sorted(d.wall / o.wall for d, o in zip(dcmtk_runs, our_runs))
    ratio = statistics.median(ratios)
    cpu_ratio = statistics.median(d.cpu for d in dcmtk_runs) / max(statistics.median(o.cpu for o in our_runs), 1e-9)
    print(f"  ours / storescp throughput: median {ratio:.2f}x (per run {', '.join(f'{r:.2f}' for r in ratios)}; "
          f"target >= 0.4x); CPU time ratio {cpu_ratio:.2f}x")
    return ratio


def send_case(name: str, data: Path, count: int, work: Path, repeat: int) -> None:
    """Sending: storescu against our `send` (scu.send, files read from disk as stored), both to a
    fresh storescp, alternating `repeat` times; wall time until storescp has every file."""
    import pydicom

    files = []
    for path in sorted(p for p in data.rglob("*.dcm")):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        files.append((str(path), str(header.SOPClassUID), str(header.file_meta.TransferSyntaxUID)))
    assert len(files) == count, (len(files), count)
    theirs, ours = [], []
    for i in range(repeat):
        with StoreSCP(work / f"{name}-send-dcmtk-{i}") as peer:
            started = time.perf_counter()
            result = storescu(peer.port, peer.ae_title, [data], timeout=1800)
            theirs.append(time.perf_counter() - started)
            assert result.returncode == 0 and len(peer.files()) == count, result.stderr[-500:]
        with StoreSCP(work / f"{name}-send-ours-{i}") as peer:
            node = RemoteNode("storescp", peer.ae_title, "127.0.0.1", peer.port)
            started = time.perf_counter()
            summary = scu.send(node, "BENCH", files)
            ours.append(time.perf_counter() - started)
            assert summary.ok and summary.sent == count and len(peer.files()) == count, summary.failed[:3]
        print(f"  send run {i + 1}: storescu {theirs[-1]:6.2f} s | ours {ours[-1]:6.2f} s | "
              f"ratio {theirs[-1] / ours[-1]:.2f}x", flush=True)
    d, o = statistics.median(theirs), statistics.median(ours)
    print(f"  sending {name}: storescu median {d:.2f} s ({count / d:.0f} inst/s), ours {o:.2f} s "
          f"({count / o:.0f} inst/s); ours / storescu throughput {d / o:.2f}x")


def make_data(root: Path, ct_slices: int, small: int) -> tuple[Path, Path]:
    """Generate (or reuse, when `root` already holds them) the CT series and the small instances."""
    ct, small_folder = root / f"ct-{ct_slices}", root / f"small-{small}"
    for folder, make in ((ct, lambda: sampledata.write_series(ct, count=ct_slices, rows=512, columns=512)),
                         (small_folder, lambda: [sampledata.write_series(small_folder / f"s{i}", count=10, rows=8,
                                                                         columns=8) for i in range(small // 10)])):
        done = folder / ".complete"
        if not done.exists():
            started = time.perf_counter()
            make()
            done.touch()
            print(f"(generated {folder.name} in {time.perf_counter() - started:.1f} s)")
    return ct, small_folder


def findscu(port: int, aet: str, name: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(["findscu", "-S", "-aet", "BENCH", "-aec", aet, "-k", "QueryRetrieveLevel=STUDY",
                             "-k", f"PatientName={name}", "-k", "StudyInstanceUID", "-k", "StudyDate",
                             "-k", "PatientID", "127.0.0.1", str(port)],
                            env=dcmtk_env(), capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-500:]
    return elapsed


def getscu(port: int, aet: str, study: str, series: str, folder: Path) -> float:
    folder.mkdir(parents=True)
    started = time.perf_counter()
    result = subprocess.run(["getscu", "-S", "-aet", "BENCH", "-aec", aet, "-od", str(folder),
                             "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study}",
                             "-k", f"SeriesInstanceUID={series}", "127.0.0.1", str(port)],
                            env=dcmtk_env(), capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-500:]
    return elapsed


def get_case(orthanc: OrthancPeer, node: RemoteNode, series_folder: Path, count: int, work: Path, repeat: int) -> None:
    """C-GET of one series from Orthanc: DCMTK's getscu (files to disk) against ours (written and indexed)."""
    import pydicom

    first = pydicom.dcmread(next(series_folder.rglob("*.dcm")), stop_before_pixels=True)
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    result = storescu(orthanc.dicom_port, orthanc.ae_title, [series_folder], timeout=1800)
    assert result.returncode == 0, result.stderr[-500:]
    theirs, ours = [], []
    for i in range(repeat):
        theirs.append(getscu(orthanc.dicom_port, orthanc.ae_title, study, series, work / f"getscu-{i}"))
        assert len(list((work / f"getscu-{i}").iterdir())) == count
        database = DICOMDatabase(work / f"get-db-{i}")
        writer = ReceivedInstanceWriter(database)
        writer.start()
        try:
            started = time.perf_counter()
            summary = scu.get(node, "BENCH", series, "series", writer, study_uid=study)
            writer.wait_indexed(600)
            ours.append(time.perf_counter() - started)
            writer.stop()
            assert summary.completed == count and len(database.instances()) == count, summary
        finally:
            database.close()
    d, o = statistics.median(theirs), statistics.median(ours)
    print(f"C-GET of a {count}-instance series from Orthanc: getscu {d:.2f} s, ours (written + indexed) {o:.2f} s "
          f"(medians of {repeat}: {', '.join(f'{t:.2f}' for t in theirs)} / {', '.join(f'{t:.2f}' for t in ours)}); "
          f"ours / getscu throughput {d / o:.2f}x")


def find_case(work: Path, patients: int, get_series: Path | None = None, get_count: int = 0, repeat: int = 3) -> None:
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
        if get_series is not None:
            get_case(orthanc, node, get_series, get_count, work, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data sets")
    parser.add_argument("--skip-find", action="store_true", help="skip the Orthanc C-FIND part")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per receive case (default 3)")
    parser.add_argument("--only", choices=("ct", "small", "send"), help="run one case only")
    parser.add_argument("--data", type=Path, help="folder to keep generated data in between runs")
    parser.add_argument("--work", type=Path, help="folder the receivers write into (default: a temporary folder)")
    args = parser.parse_args()
    ct_slices, small, patients = (100, 300, 20) if args.quick else (600, 2000, 200)
    with tempfile.TemporaryDirectory(prefix="bench-network-", dir=args.work) as tmp:
        work = Path(tmp)
        ct, small_folder = make_data(args.data or work / "data", ct_slices, small)
        print(f"(load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}; {os.cpu_count()} cores, "
              f"shared: figures noisy)", flush=True)
        if args.only in (None, "ct"):
            receive_case(f"CT {ct_slices} x 512x512", ct, ct_slices, work, args.repeat)
        if args.only in (None, "small"):
            receive_case(f"{small} small instances", small_folder, small, work, args.repeat)
        if args.only in (None, "send"):
            send_case(f"{small} small instances", small_folder, small, work, args.repeat)
        print(f"(load average {', '.join(f'{x:.1f}' for x in os.getloadavg())})")
        if not args.skip_find:
            find_case(work, patients, ct, ct_slices, args.repeat)


if __name__ == "__main__":
    main()
