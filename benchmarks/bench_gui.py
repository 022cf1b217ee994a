"""Browser speed with a big database: opening the browser and filtering patients by name.

Generates 10,000 patients / 100,000 instances (1 study x 2 series x 5 instances each) directly
through the database API (`DICOMDatabase.store_instances`, no files: browsing never opens them),
kept in a cache folder for re-runs. Then, side by side in one run:

- ours: `DICOMBrowserPanel` (the patient table reads pages of 200 rows on its model's thread,
  `database.patient_page`: the GUI thread runs no query; the search words go to the query);
- the peer: the usual Qt approach of a QStandardItemModel filled with every patient behind a
  QSortFilterProxyModel (what a browser built from stock Qt widgets does), on the same rows.

"Interface time" is the time the GUI thread is busy: building models and views and painting
(`processEvents` until idle); for the peer the SQL query is added to it (it runs in the GUI
thread), ours reads on a thread and "first page shown" is the wall time until its rows are in
the table. The machine is shared by
other engineers: figures are noisy, take the median of the repeats.

    .venv/bin/python benchmarks/bench_gui.py            # 10,000 patients / 100,000 instances
    .venv/bin/python benchmarks/bench_gui.py --quick    # 1,000 / 10,000
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SURNAMES = ["Smith", "Jones", "Garcia", "Miller", "Davis", "Martinez", "Lopez", "Wilson", "Anderson", "Thomas",
            "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez"]


def build_database(folder: Path, patients: int, series_per_patient: int = 2, instances_per_series: int = 5) -> None:
    """Patients x 1 study x series x instances, stored in batches straight through the database API."""
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    from DICOMBrowser.DICOMBrowserLib.database import DATABASE_TAGS, DICOMDatabase, InstanceRecord

    tag = DATABASE_TAGS
    database = DICOMDatabase(folder)
    started = time.perf_counter()
    batch: list[InstanceRecord] = []
    for p in range(patients):
        study_uid = f"1.2.826.0.1.3680043.9.7777.{p}"
        for r in range(series_per_patient):
            series_uid = f"{study_uid}.{r + 1}"
            for i in range(instances_per_series):
                values = {
                    tag["PatientName"]: f"{SURNAMES[p % len(SURNAMES)]}^P{p:05d}",
                    tag["PatientID"]: f"ID{p:05d}", tag["PatientBirthDate"]: f"19{p % 90 + 10:02d}0101",
                    tag["PatientSex"]: "MF"[p % 2], tag["StudyInstanceUID"]: study_uid,
                    tag["StudyDate"]: f"20{p % 20 + 5:02d}0{p % 9 + 1}15", tag["StudyTime"]: "120000",
                    tag["StudyDescription"]: "Generated study", tag["AccessionNumber"]: f"A{p:06d}",
                    tag["SeriesInstanceUID"]: series_uid, tag["SeriesNumber"]: str(r + 1),
                    tag["SeriesDescription"]: f"Series {r + 1}", tag["Modality"]: "CT" if r == 0 else "MR",
                    tag["SOPInstanceUID"]: f"{series_uid}.{i + 1}", tag["SOPClassUID"]: CTImageStorage,
                    tag["InstanceNumber"]: str(i + 1),
                }
                batch.append(InstanceRecord(path=f"/generated/P{p:05d}/S{r}/IM{i}.dcm", size=1000, mtime_ns=0,
                                            values=values, transfer_syntax=ExplicitVRLittleEndian))
        if len(batch) >= 5000:
            database.store_instances(batch)
            batch.clear()
    if batch:
        database.store_instances(batch)
    counts = database.counts()
    database.close()
    print(f"generated {counts} in {time.perf_counter() - started:.1f} s -> {folder}")


def settle(app) -> float:
    """Process events until Qt is idle; returns the time spent (painting, layout)."""
    started = time.perf_counter()
    app.processEvents()
    app.processEvents()
    return time.perf_counter() - started


def until_read(app, model) -> None:
    """Process events until the patient model's read on its thread has landed."""
    while model.busy:
        app.processEvents(QtCore_flags(), 5)


def QtCore_flags():
    from PySide6 import QtCore

    return QtCore.QEventLoop.ProcessEventsFlag.AllEvents


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 patients / 10,000 instances")
    parser.add_argument("--patients", type=int, help="number of patients (default 10,000; --quick 1,000)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "dicombrowser-bench-gui",
                        help="folder for the generated databases (reused between runs)")
    parser.add_argument("--rebuild", action="store_true", help="generate the database again")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    patients = args.patients or (1000 if args.quick else 10000)
    folder = args.cache / f"db-{patients}"
    if args.rebuild and folder.exists():
        import shutil

        shutil.rmtree(folder)
    if not (folder / "ctkDICOM.sql").exists():
        build_database(folder, patients)

    from PySide6 import QtCore, QtGui, QtWidgets

    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic
    from DICOMBrowser.DICOMBrowserLib.widgets.browser import DICOMBrowserPanel

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    os.environ["XDG_CONFIG_HOME"] = str(args.cache / "config")  # do not touch the user's recent list
    logic = DICOMBrowserLogic(folder)
    counts = logic.database.counts()
    print(f"database: {counts['patients']} patients, {counts['studies']} studies, {counts['series']} series, "
          f"{counts['instances']} instances ({folder})")
    print(f"Qt platform: {QtGui.QGuiApplication.platformName()}; figures are noisy (shared machine); "
          f"median of {args.repeats}\n")

    query, ours_open, ours_paint, peer_open, peer_paint = [], [], [], [], []
    ours_filter, peer_filter, ours_clear, peer_clear = [], [], [], []
    ours_first, ours_key_wall = [], []
    keystrokes = ["s", "sm", "smi", "smith", "smith^p0", "smith^p001"]
    for _ in range(args.repeats):
        # the SQL query alone (both browsers need the same rows)
        started = time.perf_counter()
        rows = logic.database.patients()
        query.append(time.perf_counter() - started)

        # ours: construct the whole browser panel (its first page is read on a thread), show, paint
        started = time.perf_counter()
        panel = DICOMBrowserPanel(logic)
        panel.resize(1000, 800)
        panel.show()
        built = time.perf_counter() - started
        painted = settle(app)
        ours_open.append(built + painted)  # no SQL in the GUI thread
        ours_paint.append(painted)
        until_read(app, panel.patient_model)
        settle(app)
        ours_first.append(time.perf_counter() - started)
        for text in keystrokes:  # typing: each keystroke starts a query on the thread
            started = time.perf_counter()
            panel.search.setText(text)
            settle(app)
            ours_filter.append(time.perf_counter() - started)
            until_read(app, panel.patient_model)
            settle(app)
            ours_key_wall.append(time.perf_counter() - started)
        shown = panel.patient_model.filtered_count
        started = time.perf_counter()
        panel.search.setText("")
        until_read(app, panel.patient_model)
        settle(app)
        ours_clear.append(time.perf_counter() - started)
        panel.shutdown()
        panel.close()
        panel.deleteLater()
        settle(app)

        # peer: QStandardItemModel with every row + QSortFilterProxyModel in a QTableView
        started = time.perf_counter()
        model = QtGui.QStandardItemModel(0, 5)
        model.setHorizontalHeaderLabels(["Patient name", "Patient ID", "Birth date", "Sex", "Studies"])
        for row in rows:
            model.appendRow([QtGui.QStandardItem(str(row.get(key, "") or "")) for key in
                             ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "NumberOfStudies")])
        proxy = QtCore.QSortFilterProxyModel()
        proxy.setSourceModel(model)
        proxy.setFilterCaseSensitivity(QtCore.Qt.CaseSensitivity.CaseInsensitive)
        proxy.setFilterKeyColumn(-1)
        view = QtWidgets.QTableView()
        view.setModel(proxy)
        view.setSortingEnabled(True)
        view.resize(1000, 800)
        view.show()
        built = time.perf_counter() - started
        painted = settle(app)
        peer_open.append(built + painted)
        peer_paint.append(painted)
        for text in keystrokes:
            started = time.perf_counter()
            proxy.setFilterFixedString(text)
            settle(app)
            peer_filter.append(time.perf_counter() - started)
        peer_shown = proxy.rowCount()
        started = time.perf_counter()
        proxy.setFilterFixedString("")
        settle(app)
        peer_clear.append(time.perf_counter() - started)
        view.close()
        view.deleteLater()
        del model, proxy
        settle(app)

    print(f"{'':44s}{'ours':>12s}{'peer (QStandardItemModel)':>28s}{'peer/ours':>11s}")

    def line(label: str, ours: list[float], peer: list[float] | None) -> None:
        peer_text = median_ms(peer) if peer else ""
        ratio = f"{statistics.median(peer) / statistics.median(ours):9.1f}x" if peer else ""
        print(f"{label:44s}{median_ms(ours):>12s}{peer_text:>28s}{ratio:>11s}")

    line("patients() SQL query (the peer's, GUI thread)", query, None)
    line("open browser: GUI thread (peer: without SQL)", ours_open, peer_open)
    line("  of which first paint", ours_paint, peer_paint)
    line("open browser: rows shown (peer: with SQL)", ours_first, [p + q for p, q in zip(peer_open, query)])
    line(f"filter by name, per keystroke ({len(keystrokes)} keys), GUI", ours_filter, peer_filter)
    line("  worst keystroke, GUI thread", [max(ours_filter)], [max(peer_filter)])
    line("  per keystroke until its page is shown", ours_key_wall, peer_filter)
    line("clear the filter (all rows back)", ours_clear, peer_clear)
    print(f"\nrows shown after typing {keystrokes[-1]!r}: ours {shown} (loaded), peer {peer_shown}")
    budget = 0.200
    verdict_open = statistics.median(ours_open) < budget
    verdict_filter = statistics.median(ours_filter) < budget
    print(f"target < 200 ms of interface time: open {'met' if verdict_open else 'MISSED'}, "
          f"filter {'met' if verdict_filter else 'MISSED'}")
    logic.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
