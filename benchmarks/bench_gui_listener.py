"""The browser's GUI thread while another process stores into a 1,000,000-instance database (issue 17).

    .venv/bin/python benchmarks/bench_gui_listener.py                     # builds 1M in a temporary folder
    .venv/bin/python benchmarks/bench_gui_listener.py --keep DIR          # builds once into DIR, reuses it
    .venv/bin/python benchmarks/bench_gui_listener.py --instances 100000 --seconds 30 --interval 0.3

The database is built through the store path (`DICOMDatabase.store_instances`), with the same
generated patients as benchmarks/bench_database_scale.py (its `build`; with --keep the two share
their builds). The browser (`DICOMBrowserWidget`, offscreen unless a display is set) opens it;
then a second process stores one new instance (a new patient, study and series, as a listener
receiving a study does) every --interval seconds through `store_instances`, the path the
listener's `index_file` ends in, for --seconds. A 20 ms QTimer in the GUI thread records when it
fires: the longest gap between two firings is the longest time the GUI thread was blocked
(painting, polling, applying pages), and the count of gaps over 50 ms is printed with it.
The writer and the browser share 2 cores with whatever else runs: compare within one run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

# one new patient per store, as a listener receiving new studies; stops after argv[3] seconds
WRITER = """
import sys, time
from DICOMBrowser.DICOMBrowserLib.database import DATABASE_TAGS as tag, DICOMDatabase, InstanceRecord
database = DICOMDatabase(sys.argv[1])
interval, until, n = float(sys.argv[2]), time.monotonic() + float(sys.argv[3]), 0
stored = []
while time.monotonic() < until:
    study = f"1.2.826.0.1.3680043.9.7779.{n}"
    values = {tag["PatientName"]: f"Arrival^N{n:05d}", tag["PatientID"]: f"ARR{n:05d}",
              tag["StudyInstanceUID"]: study, tag["StudyDate"]: "20261203", tag["StudyDescription"]: "Received",
              tag["SeriesInstanceUID"]: study + ".1", tag["SeriesNumber"]: "1", tag["Modality"]: "CT",
              tag["SeriesDescription"]: "Received CT", tag["SOPInstanceUID"]: study + ".1.1",
              tag["SOPClassUID"]: "1.2.840.10008.5.1.4.1.1.2", tag["InstanceNumber"]: "1"}
    started = time.perf_counter()
    database.store_instances([InstanceRecord(path=f"/arriving/{n}.dcm", size=1000, mtime_ns=0, values=values,
                                             transfer_syntax="1.2.840.10008.1.2.1")])
    stored.append(time.perf_counter() - started)
    n += 1
    time.sleep(max(0.0, interval - stored[-1]))
database.close()
print(n, max(stored) * 1000, sorted(stored)[len(stored) // 2] * 1000)
"""


def prepared(root: Path, instances: int) -> Path:
    """A built database of `instances` (bench_database_scale's build, reused when present), copied
    so the stores of this run do not change the kept one."""
    from bench_database_scale import build

    from DICOMBrowser.DICOMBrowserLib.database import SCHEMA_VERSION, DICOMDatabase

    built = root / f"db-{instances}-{SCHEMA_VERSION}"
    if not (built / "ctkDICOM.sql").exists():
        print(f"building {instances:,} instances in {built} ...", flush=True)
        seconds = build(built, instances)
        print(f"  {instances / seconds:,.0f} instances/s ({seconds:.0f} s)", flush=True)
    work = root / f"gui-listener-{instances}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(built, work)
    DICOMDatabase(work).close()  # a migration (substring indexes) is not part of what is measured
    return work


def measure(folder: Path, seconds: float, interval: float) -> dict[str, float]:
    from PySide6 import QtCore, QtWidgets

    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic, DICOMBrowserWidget

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="bench-gui-listener-config-")
    ticks: list[float] = []
    timer = QtCore.QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    logic = DICOMBrowserLogic(folder)
    opened = time.perf_counter()
    timer.start()
    widget = DICOMBrowserWidget(logic)
    panel = widget.setup()
    panel.resize(1024, 700)
    panel.show()
    model = panel.patient_model
    while model.filtered_count == 0 and time.perf_counter() - opened < 60:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
    first_page = (time.perf_counter() - opened) * 1000
    total_before = model.total_count
    ticks.clear()  # the writer's window only
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(interval), str(seconds)],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    started = time.monotonic()
    while writer.poll() is None or time.monotonic() - started < seconds + 3:  # and the last poll after it
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
    stored, store_max, store_median = writer.communicate()[0].split()
    timer.stop()
    gaps = [(b - a) * 1000 for a, b in zip(ticks, ticks[1:])]
    result = {
        "first page shown (ms)": first_page,
        "instances stored by the writer": float(stored),
        "writer store_instances median / longest (ms)": f"{float(store_median):.1f} / {float(store_max):.1f}",
        "timer ticks": float(len(ticks)),
        "GUI thread: longest gap (ms)": max(gaps, default=0.0),
        "GUI thread: gaps over 50 ms": float(sum(1 for g in gaps if g > 50)),
        "GUI thread: median gap (ms)": statistics.median(gaps) if gaps else 0.0,
        "patients before / after": f"{total_before} / {model.total_count}",
        "patient table reads (pages)": float(model.reads),
    }
    widget.cleanup()
    panel.close()
    logic.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=0.3)
    parser.add_argument("--keep", help="folder for the built database (reused when present)")
    args = parser.parse_args(argv)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-gui-listener-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        folder = prepared(root, args.instances)
        result = measure(folder, args.seconds, args.interval)
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n== {args.instances:,} instances, a store every {args.interval} s for {args.seconds:.0f} s;"
          f" {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    for name, value in result.items():
        print(f"| {name} | {value if isinstance(value, str) else f'{value:,.1f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
