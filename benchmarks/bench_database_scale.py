"""The database at 100,000 and 1,000,000 instances: what a user's actions cost as it grows (issue 17).

    .venv/bin/python benchmarks/bench_database_scale.py                  # 100k and 1M
    .venv/bin/python benchmarks/bench_database_scale.py --sizes 100000   # one size
    .venv/bin/python benchmarks/bench_database_scale.py --keep DIR       # keep (and reuse) the built databases

Databases are built through the project's own store path (`DICOMDatabase.store_instances`, the
batches an import stores, 500 records a transaction) from generated records: N/50 patients x 2
studies x 5 series (CT, MR, PT, CR, US in turn) x 5 instances, patient names in an order unrelated
to insertion, ~50 tag values per instance as an import caches them. No pixel files are written
(the records name paths that do not exist): this measures the index, not the disk.

Every row is the median of --repeat runs, in process unless it says CLI (a fresh
`python -m DICOMBrowser` process, as `dicombrowser`; its start-up, `dicombrowser --version`, is printed as its own row so
"within 0.3 s of start-up" can be read off). Destructive rows (deletes, the import) run last,
on the built database. The growth column is the 1M figure over the 100k figure.

The machine may be shared (2 cores): compare rows within one run.
"""
from __future__ import annotations

import argparse
import inspect
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STUDIES, SERIES, INSTANCES = 2, 5, 5
MODALITIES = ("CT", "MR", "PT", "CR", "US")


def records_for_patient(index: int, order: list[int]):
    """The InstanceRecords of one generated patient (50 instances)."""
    from DICOMBrowser.DICOMBrowserLib.database import DATABASE_TAGS, InstanceRecord
    from DICOMBrowser.DICOMBrowserLib.tagreader import tag_string

    geometry = {tag_string(k): v for k, v in (
        ("ImageOrientationPatient", "1\\0\\0\\0\\1\\0"), ("PixelSpacing", "0.7\\0.7"), ("SliceThickness", "1.5"),
        ("Rows", "512"), ("Columns", "512"), ("RescaleSlope", "1"), ("RescaleIntercept", "-1024"),
        ("WindowCenter", "40"), ("WindowWidth", "400"), ("ImageType", "ORIGINAL\\PRIMARY\\AXIAL"),
        ("TriggerTime", ""), ("BitsAllocated", "16"), ("BitsStored", "12"), ("HighBit", "11"),
        ("PixelRepresentation", "0"), ("SamplesPerPixel", "1"), ("PhotometricInterpretation", "MONOCHROME2"),
        ("Manufacturer", "GENERATED"), ("ManufacturerModelName", "bench"))}
    t = DATABASE_TAGS
    rank = order[index]
    records = []
    for study in range(STUDIES):
        study_uid = f"1.2.826.0.1.3680043.9.7433.1.{index}.{study}"
        for series in range(SERIES):
            series_uid = f"{study_uid}.{series}"
            for instance in range(INSTANCES):
                sop = f"{series_uid}.{instance}"
                values = dict(geometry)
                values.update({
                    t["SpecificCharacterSet"]: "ISO_IR 100",
                    t["PatientName"]: f"Name{rank:06d}^Given{index % 97}", t["PatientID"]: f"ID{index:07d}",
                    t["PatientBirthDate"]: f"19{40 + index % 60:02d}0101", t["PatientBirthTime"]: "",
                    t["PatientSex"]: "MF"[index % 2], t["PatientAge"]: "", t["PatientComments"]: "",
                    t["StudyInstanceUID"]: study_uid, t["StudyID"]: str(study + 1),
                    t["StudyDate"]: f"20{10 + (index + study) % 15:02d}{1 + index % 12:02d}{1 + study * 7:02d}",
                    t["StudyTime"]: "083000", t["StudyDescription"]: f"Study {('HEAD', 'CHEST', 'ABDOMEN')[index % 3]}",
                    t["AccessionNumber"]: f"A{index:07d}{study}", t["InstitutionName"]: "Bench",
                    t["ReferringPhysicianName"]: "", t["PerformingPhysicianName"]: "",
                    t["SeriesInstanceUID"]: series_uid, t["SeriesNumber"]: str(series + 1), t["SeriesDate"]: "",
                    t["SeriesTime"]: "", t["SeriesDescription"]: f"Series {series} {MODALITIES[series]}",
                    t["Modality"]: MODALITIES[series], t["BodyPartExamined"]: "HEAD",
                    t["FrameOfReferenceUID"]: f"{series_uid}.9", t["AcquisitionNumber"]: "1",
                    t["ContrastBolusAgent"]: "", t["ScanningSequence"]: "", t["EchoNumbers"]: "",
                    t["TemporalPositionIdentifier"]: "", t["SOPInstanceUID"]: sop,
                    t["SOPClassUID"]: "1.2.840.10008.5.1.4.1.1.2", t["InstanceNumber"]: str(instance + 1),
                    t["NumberOfFrames"]: "", tag_string("ImagePositionPatient"): f"0\\0\\{instance * 1.5}",
                })
                records.append(InstanceRecord(path=f"/nonexistent/bench/{index}/{study}/{series}/{instance}.dcm",
                                              size=530_000, mtime_ns=1_700_000_000_000_000_000 + index,
                                              values=values, transfer_syntax="1.2.840.10008.1.2.1",
                                              pixel_data_offset=1200, pixel_data_length=524288))
    return records


def build(folder: Path, instances: int) -> float:
    """A database of `instances` generated instances; returns the build time."""
    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase

    patients = instances // (STUDIES * SERIES * INSTANCES)
    order = list(range(patients))
    random.Random(17).shuffle(order)
    started = time.perf_counter()
    with DICOMDatabase(folder) as db, db.bulk_writes():
        batch = []
        for index in range(patients):
            batch.extend(records_for_patient(index, order))
            if len(batch) >= 500:
                db.store_instances(batch)
                batch = []
            if index % 2000 == 0:
                print(f"  built {index * 50:,} of {instances:,} ({time.perf_counter() - started:.0f} s)", flush=True)
        if batch:
            db.store_instances(batch)
    return time.perf_counter() - started


def median_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cli_ms(folder: Path, args: list[str], repeat: int) -> float:
    # `python -m DICOMBrowser` from the checkout: the code of this checkout, as `dicombrowser` runs it
    command = [sys.executable, "-m", "DICOMBrowser", *(["--database", str(folder)] if folder else []), *args]

    def run() -> None:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=3600,
                       cwd=REPO)
    return median_ms(run, repeat)


def write_new_files(folder: Path, count: int) -> list[Path]:
    from DICOMBrowser.DICOMBrowserLib import sampledata

    return sampledata.write_series(folder, count=count, patient_name="New^Arrival", patient_id="NEW1")


def measure(folder: Path, instances: int, repeat: int, cli_repeat: int) -> dict[str, float]:
    """Every row at one size."""
    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
    from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

    rows: dict[str, float] = {}
    patients = instances // 50
    # a database built before the substring indexes (or by an older build kept with --keep) gets
    # them on its first open: timed as its own row, once
    rows["first open (builds missing substring indexes: migration)"] = median_ms(
        lambda: DICOMDatabase(folder).close(), 1)
    rows["open a database"] = median_ms(lambda: DICOMDatabase(folder).close(), repeat)
    db = DICOMDatabase(folder)
    paging = "limit" in inspect.signature(db.patients).parameters
    page = {"limit": 100} if paging else {}
    rows["patients() (every patient)"] = median_ms(db.patients, repeat)
    if paging:
        rows["patients(limit=100) (first page)"] = median_ms(lambda: db.patients(limit=100), repeat)
        first = db.patients(limit=100)
        rows["patients(limit=100, after=) (next page)"] = median_ms(lambda: db.patients(limit=100, after=first[-1]),
                                                                    repeat)
    probe = f"Name{patients // 2:06d}"
    rows["patients(PatientName=substring) (filter)"] = median_ms(lambda: db.patients(PatientName=probe, **page), repeat)
    rows["patients(PatientName='ven1') (substring matching ~11%, page)"] = median_ms(
        lambda: db.patients(PatientName="ven1", **page), repeat)
    rows["series(SeriesDescription='es 3 C') (substring matching 20%, page)"] = median_ms(
        lambda: db.series(SeriesDescription="es 3 C", **page), repeat)
    rows["studies(StudyDescription='HES') (substring matching 1/3, page)"] = median_ms(
        lambda: db.studies(StudyDescription="HES", **page), repeat)
    rows["patients(PatientName='Name0123*') (prefix)"] = median_ms(
        lambda: db.patients(PatientName=f"{probe[:8]}*", **page), repeat)
    rows["patients(PatientID=...) (exact)"] = median_ms(lambda: db.patients(PatientID=f"ID{patients // 3:07d}"),
                                                        repeat)
    rows["series(Modality='CT') (every CT series)"] = median_ms(lambda: db.series(Modality="CT"), repeat)
    if paging:
        rows["series(Modality='CT', limit=100)"] = median_ms(lambda: db.series(Modality="CT", limit=100), repeat)
        first_ct = db.series(Modality="CT", limit=100)
        rows["series(Modality='CT', limit=100, after=) (next page)"] = median_ms(
            lambda: db.series(Modality="CT", limit=100, after=first_ct[-1]), repeat)
    rows["studies(StudyDate=range) (a month)"] = median_ms(lambda: db.studies(StudyDate="20130101-20130131", **page),
                                                           repeat)
    rows["studies(StudyDate=range) (a year, page)"] = median_ms(
        lambda: db.studies(StudyDate="20130101-20131231", **page), repeat)
    from DICOMBrowser.DICOMBrowserLib import database as database_module

    patient_page = getattr(database_module, "patient_page", None)
    if patient_page is not None:
        # the browser's search box: its first page of 200 (words in name or ID), as the table reads it
        for label, words in (("a rare name part", (probe.lower(),)), ("'given1' (~11%)", ("given1",)),
                             ("an ID part (10 patients)", (f"id{patients // 3:07d}"[:-1],)),
                             ("'name0' (every patient)", ("name0",))):
            rows[f"search box: patient_page(words=[{label}])"] = median_ms(
                lambda words=words: patient_page(db, limit=200, words=words), repeat)
    someone = db.patients(PatientID=f"ID{patients // 5:07d}")[0]

    def click() -> None:
        studies = db.studies(someone["PatientUID"])
        db.series(studies[0]["StudyInstanceUID"])
    rows["click: studies(patient) + series(study)"] = median_ms(click, repeat)
    rows["poll: data_version()"] = median_ms(db.data_version, repeat)
    db.close()

    rows["CLI start-up (dicombrowser --version)"] = cli_ms(None, ["--version"], cli_repeat)
    if paging:
        rows["CLI ls (first 50 patients)"] = cli_ms(folder, ["ls", "--limit", "50"], cli_repeat)
        rows["CLI ls --level series --modality CT --limit 50"] = cli_ms(
            folder, ["ls", "--level", "series", "--modality", "CT", "--limit", "50"], cli_repeat)
    rows["CLI ls --level series --modality CT (all, text)"] = cli_ms(
        folder, ["ls", "--level", "series", "--modality", "CT"], 1)
    rows["CLI ls --level series --modality CT --json (all)"] = cli_ms(
        folder, ["ls", "--level", "series", "--modality", "CT", "--json"], 1)
    rows["CLI tree (all, text)"] = cli_ms(folder, ["tree"], 1)
    rows["CLI tree --json (all)"] = cli_ms(folder, ["tree", "--json"], 1)

    # destructive rows: on the built database, last
    db = DICOMDatabase(folder)
    victims = [p["PatientUID"] for p in db.patients()[patients // 4:patients // 4 + 1000 + repeat]]
    single = victims[:repeat]
    rows["delete one patient (API)"] = statistics.median(
        [median_ms(lambda uid=uid: db.delete(uid), 1) for uid in single])
    many = victims[repeat:repeat + 1000]
    accepts_list = "uids" in inspect.signature(db.delete).parameters
    if accepts_list:
        rows[f"delete {len(many)} patients (API, one call)"] = median_ms(lambda: db.delete(many), 1)
    else:
        loop = many[:50]
        rows[f"delete {len(loop)} patients (API loop; x20 for 1,000)"] = median_ms(
            lambda: [db.delete(uid) for uid in loop], 1)
    rows["poll after a commit: data_version() + first page"] = median_ms(
        lambda: (db.data_version(), db.patients(**page)), repeat) if paging else median_ms(
        lambda: (db.data_version(), db.patients()), repeat)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-new-"))
    try:
        from DICOMBrowser.DICOMBrowserLib.indexer import required_tags

        required_tags()  # plugin discovery happens once per process: not part of an import's cost
        files = write_new_files(work / "new", 10)
        rows["import 10 new files"] = median_ms(lambda: import_paths(db, files, workers=1), 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    db.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cli-repeat", type=int, default=3)
    parser.add_argument("--keep", help="folder for the built databases (reused when present; copied before deletes)")
    args = parser.parse_args(argv)

    from DICOMBrowser.DICOMBrowserLib.database import SCHEMA_VERSION

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    results: dict[int, dict[str, float]] = {}
    try:
        for size in args.sizes:
            built = root / f"db-{size}-{SCHEMA_VERSION}"
            if not (built / "ctkDICOM.sql").exists():
                print(f"building {size:,} instances in {built} ...", flush=True)
                seconds = build(built, size)
                print(f"  {size / seconds:,.0f} instances/s ({seconds:.0f} s)", flush=True)
            work = root / f"work-{size}"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(built, work)
            print(f"measuring {size:,} ...", flush=True)
            results[size] = measure(work, size, args.repeat, args.cli_repeat)
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    sizes = list(results)
    names = list(dict.fromkeys(name for size in sizes for name in results[size]))
    print(f"\n== {SCHEMA_VERSION}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; medians, ms")
    header = "| operation | " + " | ".join(f"{s:,}" for s in sizes) + (" | growth |" if len(sizes) > 1 else " |")
    print(header)
    print("|---" * (len(sizes) + 1 + (len(sizes) > 1)) + "|")
    for name in names:
        cells = [results[s].get(name) for s in sizes]
        text = " | ".join("" if c is None else f"{c:,.1f}" for c in cells)
        growth = ""
        if len(sizes) > 1 and cells[0] and cells[-1]:
            growth = f" | {cells[-1] / cells[0]:.1f}x"
        elif len(sizes) > 1:
            growth = " | "
        print(f"| {name} | {text}{growth} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
