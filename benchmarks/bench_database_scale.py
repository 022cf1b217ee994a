"""The database at 100,000 and 1,000,000 instances: what a user's actions cost as it grows (issue 17).

    .venv/bin/python benchmarks/bench_database_scale.py                  # 100k and 1M
    .venv/bin/python benchmarks/bench_database_scale.py --sizes 100000   # one size
    .venv/bin/python benchmarks/bench_database_scale.py --keep DIR       # keep (and reuse) the built databases
    .venv/bin/python benchmarks/bench_database_scale.py --orthanc        # and Orthanc's index beside ours

Databases are built through the project's own store path (`DICOMDatabase.store_instances`, the
batches an import stores, 500 records a transaction) from generated records: N/50 patients x 2
studies x 5 series (CT, MR, PT, CR, US in turn) x 5 instances, patient names in an order unrelated
to insertion, ~50 tag values per instance as an import caches them. No pixel files are written
(the records name paths that do not exist): this measures the index, not the disk.

Every row is the median of --repeat runs, in process unless it says CLI (a fresh
`python -m DICOMBrowser` process, as `dicombrowser`; its start-up, `dicombrowser --version`, is printed as its own row so
"within 0.3 s of start-up" can be read off). Destructive rows (deletes, the import) run last,
on the built database. The growth column is the 1M figure over the 100k figure.

--orthanc (opt-in: filling Orthanc takes minutes per 100,000 instances) also starts a real Orthanc
(the Debian `Orthanc`, through Testing/network_peers.py's OrthancPeer: 127.0.0.1, free ports, its
own index and storage under the work folder, stopped at the end) per size, fills it with the same
patients, studies, series and instances (the same tag values, written as small Part 10 files
without pixel data, POSTed to /instances over --orthanc-connections kept-alive HTTP connections)
and times the rows that have an equivalent in its REST API, as a client keeping one connection:
/tools/find (Level, Query with DICOM wildcards, CaseSensitive as our filters: false for names,
descriptions and modality, true for the patient ID; Limit, Since,
Expand so that an answer holds the tags a list shows) for the listings, GET /patients/{id}/studies
and /studies/{id}/series for a click, GET /changes?last for a poll, DELETE /patients/{id} and
POST /tools/bulk-delete for the deletes (the deleted patients are POSTed again afterwards, so a
kept Orthanc stays whole), POST /instances for an import. Its columns show "—" where it has no
equivalent (the search box, opening, the CLI). A table of answer counts, ours and Orthanc's, shows
that the queries are the same. With --keep a filled Orthanc is reused when it holds every instance.
Orthanc keeps no order: its pages are the first N of its own order, ours of the name order.

The machine may be shared (2 cores): compare rows within one run.
"""
from __future__ import annotations

import argparse
import http.client
import inspect
import io
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from functools import lru_cache
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


class Timing(float):
    """A median in ms that also remembers how many rows the last run answered (None: not a list)."""

    answers: int | None = None


def median_ms(run: Callable[[], object], repeat: int) -> Timing:
    times = []
    answer = None
    for _ in range(repeat):
        started = time.perf_counter()
        answer = run()
        times.append((time.perf_counter() - started) * 1000)
    timing = Timing(statistics.median(times))
    timing.answers = len(answer) if isinstance(answer, list) else None
    return timing


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

    def click() -> list:
        studies = db.studies(someone["PatientUID"])
        return db.series(studies[0]["StudyInstanceUID"])
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


# ---- Orthanc's side: the same layout in a real Orthanc, the same questions through its REST API

LONG_LENGTH_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.9.7433.1.999"


@lru_cache(maxsize=None)
def _element_header(key: str) -> tuple[str, bytes]:
    from pydicom.datadict import dictionary_VR

    tag = int(key.replace(",", ""), 16)
    vr = dictionary_VR(tag)
    return vr, struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr.encode())


def _element(key: str, value: str) -> bytes:
    vr, header = _element_header(key)
    if vr in ("US", "SS"):
        data = b"".join(struct.pack("<H" if vr == "US" else "<h", int(v)) for v in value.split("\\"))
    else:
        data = value.encode("latin-1")
        if len(data) % 2:
            data += b"\0" if vr == "UI" else b" "
    if vr in LONG_LENGTH_VRS:
        return header + struct.pack("<HI", 0, len(data)) + data
    return header + struct.pack("<H", len(data)) + data


def part10_bytes(values: dict[str, str]) -> bytes:
    """A Part 10 file (explicit VR little endian, no pixel data) holding a record's cached tag values.

    Written here rather than with pydicom's dcmwrite, which costs ~3 ms per instance (an hour of
    this process's CPU for 1M); this costs ~50 us. pydicom reads the result back (checked in
    fill_orthanc on the first instance)."""
    body = b"".join(_element(key, value) for key, value in sorted(values.items()) if value != "")
    meta = (_element("0002,0001", "\0\1") + _element("0002,0002", values["0008,0016"])
            + _element("0002,0003", values["0008,0018"]) + _element("0002,0010", "1.2.840.10008.1.2.1")
            + _element("0002,0012", IMPLEMENTATION_UID))
    return b"\0" * 128 + b"DICM" + struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(meta)) + meta + body


class OrthancClient:
    """One kept-alive HTTP connection to Orthanc's REST API."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)

    def call(self, method: str, path: str, body: object = None, content_type: str = "application/json"):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"Orthanc {method} {path}: {response.status} {answer[:200]!r}")
        return json.loads(answer) if answer else None

    def find(self, level: str, query: dict, **options) -> list:
        return self.call("POST", "/tools/find", {"Level": level, "Query": query, "Expand": True,
                                                 "CaseSensitive": False, **options})

    def post_instance(self, data: bytes) -> None:
        self.call("POST", "/instances", data, "application/dicom")

    def close(self) -> None:
        self.connection.close()


def fill_orthanc(port: int, instances: int, connections: int, patients: list[int] | None = None) -> float:
    """POST the generated instances (of `patients`, default all) to Orthanc; returns the wall time."""
    count = instances // (STUDIES * SERIES * INSTANCES)
    order = list(range(count))
    random.Random(17).shuffle(order)  # as build(): the same names for the same patients
    todo = list(range(count)) if patients is None else list(patients)
    from pydicom import dcmread

    first = records_for_patient(todo[0], order)[0].values
    check = dcmread(io.BytesIO(part10_bytes(first)))
    assert str(check.PatientName) == first["0010,0010"] and check.StudyDate == first["0008,0020"]
    done = [0]
    failures: list[BaseException] = []
    lock = threading.Lock()
    started = time.perf_counter()

    def worker(share: list[int]) -> None:
        client = OrthancClient(port)
        try:
            for index in share:
                for record in records_for_patient(index, order):
                    client.post_instance(part10_bytes(record.values))
                with lock:
                    done[0] += 1
                    if patients is None and done[0] % 2000 == 0:
                        print(f"  Orthanc holds {done[0] * 50:,} of {instances:,} "
                              f"({time.perf_counter() - started:.0f} s)", flush=True)
        except BaseException as error:  # reported by the caller, after the other threads end
            failures.append(error)
        finally:
            client.close()
    threads = [threading.Thread(target=worker, args=(todo[k::connections],)) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - started


def orthanc_rows(port: int, instances: int, repeat: int) -> dict[str, float]:
    """The rows that have an equivalent in Orthanc's REST API, named as ours."""
    patients = instances // 50
    client = OrthancClient(port)
    rows: dict[str, float] = {}
    rows["patients() (every patient)"] = median_ms(lambda: client.find("Patient", {}), repeat)
    rows["patients(limit=100) (first page)"] = median_ms(lambda: client.find("Patient", {}, Limit=100), repeat)
    rows["patients(limit=100, after=) (next page)"] = median_ms(
        lambda: client.find("Patient", {}, Limit=100, Since=100), repeat)
    probe = f"Name{patients // 2:06d}"
    rows["patients(PatientName=substring) (filter)"] = median_ms(
        lambda: client.find("Patient", {"PatientName": f"*{probe}*"}, Limit=100), repeat)
    rows["patients(PatientName='ven1') (substring matching ~11%, page)"] = median_ms(
        lambda: client.find("Patient", {"PatientName": "*ven1*"}, Limit=100), repeat)
    rows["series(SeriesDescription='es 3 C') (substring matching 20%, page)"] = median_ms(
        lambda: client.find("Series", {"SeriesDescription": "*es 3 C*"}, Limit=100), repeat)
    rows["studies(StudyDescription='HES') (substring matching 1/3, page)"] = median_ms(
        lambda: client.find("Study", {"StudyDescription": "*HES*"}, Limit=100), repeat)
    rows["patients(PatientName='Name0123*') (prefix)"] = median_ms(
        lambda: client.find("Patient", {"PatientName": f"{probe[:8]}*"}, Limit=100), repeat)
    rows["patients(PatientID=...) (exact)"] = median_ms(
        lambda: client.find("Patient", {"PatientID": f"ID{patients // 3:07d}"}, CaseSensitive=True), repeat)
    rows["series(Modality='CT') (every CT series)"] = median_ms(
        lambda: client.find("Series", {"Modality": "CT"}), repeat)
    rows["series(Modality='CT', limit=100)"] = median_ms(
        lambda: client.find("Series", {"Modality": "CT"}, Limit=100), repeat)
    rows["series(Modality='CT', limit=100, after=) (next page)"] = median_ms(
        lambda: client.find("Series", {"Modality": "CT"}, Limit=100, Since=100), repeat)
    rows["studies(StudyDate=range) (a month)"] = median_ms(
        lambda: client.find("Study", {"StudyDate": "20130101-20130131"}, Limit=100), repeat)
    rows["studies(StudyDate=range) (a year, page)"] = median_ms(
        lambda: client.find("Study", {"StudyDate": "20130101-20131231"}, Limit=100), repeat)

    def patient_id(dicom_id: str) -> str:
        """Orthanc's id of a patient, through /tools/lookup (its identifier index; a /tools/find
        by PatientID takes ~1 s at 1M)."""
        hits = client.call("POST", "/tools/lookup", dicom_id.encode(), "text/plain")
        return [hit["ID"] for hit in hits if hit["Type"] == "Patient"][0]
    someone_id = patient_id(f"ID{patients // 5:07d}")

    def click() -> list:
        studies = client.call("GET", f"/patients/{someone_id}/studies")
        return client.call("GET", f"/studies/{studies[0]['ID']}/series")
    rows["click: studies(patient) + series(study)"] = median_ms(click, repeat)
    rows["poll: data_version()"] = median_ms(lambda: client.call("GET", "/changes?last"), repeat)

    # destructive rows, last; the deleted patients are POSTed again so that a kept Orthanc stays whole
    first = patients // 4
    count = min(1000 + repeat, patients - first)  # as ours: a slice of the patients
    ids = {index: patient_id(f"ID{index:07d}") for index in range(first, first + count)}
    single = list(ids.values())[:repeat]
    rows["delete one patient (API)"] = statistics.median(
        [median_ms(lambda uid=uid: client.call("DELETE", f"/patients/{uid}"), 1) for uid in single])
    many = list(ids.values())[repeat:]
    rows[f"delete {len(many)} patients (API, one call)"] = median_ms(
        lambda: client.call("POST", "/tools/bulk-delete", {"Resources": many}), 1)
    rows["poll after a commit: data_version() + first page"] = median_ms(
        lambda: (client.call("GET", "/changes?last"), client.find("Patient", {}, Limit=100)), repeat)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-orthanc-new-"))
    try:
        files = write_new_files(work / "new", 10)
        rows["import 10 new files"] = median_ms(lambda: any(client.post_instance(f.read_bytes()) for f in files), 1)
        client.call("DELETE", f"/patients/{patient_id('NEW1')}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    client.close()
    restored = fill_orthanc(port, instances, 2, patients=list(ids))
    print(f"  Orthanc: {len(ids)} deleted patients POSTed again in {restored:.0f} s", flush=True)
    return rows


def measure_orthanc(root: Path, instances: int, repeat: int, connections: int) -> dict[str, float]:
    """Start an Orthanc on root/orthanc-N, fill it when it does not hold every instance, time its rows."""
    sys.path.insert(0, str(REPO / "Testing"))
    from network_peers import OrthancPeer

    orthanc = OrthancPeer(root / f"orthanc-{instances}", extra={"Name": "bench-database-scale"})
    try:
        orthanc.start(timeout=600)
        client = OrthancClient(orthanc.http_port)
        held = client.call("GET", "/statistics")["CountInstances"]
        client.close()
        if held != instances:
            print(f"filling Orthanc with {instances:,} instances ({connections} connections) ...", flush=True)
            seconds = fill_orthanc(orthanc.http_port, instances, connections)
            print(f"  Orthanc ingest: {instances / seconds:,.0f} instances/s ({seconds:.0f} s)", flush=True)
        print(f"measuring Orthanc {instances:,} ...", flush=True)
        return orthanc_rows(orthanc.http_port, instances, repeat)
    finally:
        orthanc.stop()  # terminate, killed after 10 s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cli-repeat", type=int, default=3)
    parser.add_argument("--keep", help="folder for the built databases (reused when present; copied before deletes)")
    parser.add_argument("--orthanc", action="store_true", help="also fill an Orthanc per size and time its rows")
    parser.add_argument("--orthanc-only", action="store_true", help="only Orthanc's columns (with --keep: its stores)")
    parser.add_argument("--orthanc-connections", type=int, default=4, help="parallel POST /instances while filling")
    args = parser.parse_args(argv)

    from DICOMBrowser.DICOMBrowserLib.database import SCHEMA_VERSION

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    results: dict[int, dict[str, float]] = {}
    orthanc: dict[int, dict[str, float]] = {}
    try:
        for size in args.sizes:
            if args.orthanc or args.orthanc_only:
                orthanc[size] = measure_orthanc(root, size, args.repeat, args.orthanc_connections)
            if args.orthanc_only:
                continue
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
    columns = [(f"{s:,}", results[s]) for s in sizes] + [(f"Orthanc {s:,}", orthanc[s]) for s in orthanc]
    names = list(dict.fromkeys(name for _, rows in columns for name in rows))
    print(f"\n== {SCHEMA_VERSION}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; medians, ms")
    growth_of = [list(results.values())] if len(results) > 1 else []
    if len(orthanc) > 1:
        growth_of.append(list(orthanc.values()))
    titles = [title for title, _ in columns] + (["growth"] if len(results) > 1 else []) + (
        ["Orthanc growth"] if len(orthanc) > 1 else [])
    print("| operation | " + " | ".join(titles) + " |")
    print("|---" * (len(titles) + 1) + "|")

    def cell(value: float | None) -> str:
        return "—" if value is None else f"{value:,.1f}"
    for name in names:
        cells = [cell(rows.get(name)) for _, rows in columns]
        for group in growth_of:
            first, last = group[0].get(name), group[-1].get(name)
            cells.append(f"{last / first:.1f}x" if first and last else "")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if orthanc:
        # the same questions: the same number of answers (a page: up to its limit)
        print("\n| answers | " + " | ".join(title for title, _ in columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for name in names:
            counts = [getattr(rows.get(name), "answers", None) for _, rows in columns]
            if any(c is not None for c in counts[len(results):]):
                print(f"| {name} | " + " | ".join("—" if c is None else f"{c:,}" for c in counts) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
