"""Import: counts equal the truth computed independently with pydicom, on the real corpus and on
generated data; copy and reference modes; duplicates, broken files, character sets, re-import,
relinking, DICOMDIR media, cancelling, and an import killed with SIGKILL then finished.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib import sampledata
from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
from DICOMBrowser.DICOMBrowserLib.indexer import import_paths, required_tags
from DICOMBrowser.DICOMBrowserLib.tagreader import tag_string

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parents[1]
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


def truth(paths: list[Path] | Path) -> dict[str, int]:
    """Patients/studies/series/instances of a set of files, by a full pydicom read of each file.

    A patient is (PatientID, PatientName without trailing '^'), or its study when both are empty;
    files pydicom cannot read, DICOMDIRs and files without the three UIDs are not instances.
    """
    if isinstance(paths, Path):
        paths = [p for p in paths.rglob("*") if p.is_file()]
    patients, studies, series, instances = set(), set(), set(), set()
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                meta_class = ds.file_meta.get("MediaStorageSOPClassUID") if hasattr(ds, "file_meta") else None
                uids = [str(ds.get(k, "") or "") for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")]
                patient_id = str(ds.get("PatientID", "") or "").strip()
                name = str(ds.get("PatientName", "") or "").strip().rstrip(" ^=")
            except Exception:  # the truth: whatever pydicom cannot read is not an instance
                continue
        if meta_class == DICOMDIR_CLASS or not all(uids):
            continue
        instances.add(uids[0])
        studies.add(uids[1])
        series.add(uids[2])
        patients.add((patient_id, name) if (patient_id or name) else ("", uids[1]))
    return {"patients": len(patients), "studies": len(studies), "series": len(series), "instances": len(instances)}


def sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


CORPUS_FOLDERS = ["slicer_ct_head", "ge_t1", "ge_dwi", "dcmqi_seg", "orthanc_tests", "enhanced_multiframe",
                  "dicom2nifti", "siemens_mosaic_orientation", "philips_dwi"]


@pytest.mark.parametrize("folder", CORPUS_FOLDERS)
def test_corpus_counts_equal_truth(corpus, database, folder):
    source = corpus / folder
    summary = import_paths(database, [source])
    assert database.counts() == truth(source)
    assert summary.seen == sum(1 for p in source.rglob("*") if p.is_file())
    assert summary.indexed + summary.duplicates + summary.skipped + len(summary.errors) == summary.seen
    for path, reason in summary.errors:
        assert Path(path).is_file() and reason


@pytest.mark.slow
def test_whole_corpus_counts_and_tree(corpus, database):
    summary = import_paths(database, [corpus], workers=2)
    assert database.counts() == truth(corpus)
    assert not summary.cancelled
    # the tree adds up: every instance is in exactly one series, study and patient
    patients = database.patients()
    assert sum(p["NumberOfInstances"] for p in patients) == database.counts()["instances"]
    assert sum(p["NumberOfStudies"] for p in patients) == database.counts()["studies"]
    assert sum(s["NumberOfInstances"] for s in database.series()) == database.counts()["instances"]


def test_slicer_ct_head_attributes(corpus, database):
    source = corpus / "slicer_ct_head"
    import_paths(database, [source])
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.name != "License.txt")
    reference = pydicom.dcmread(files[0], stop_before_pixels=True)
    [series] = [s for s in database.series()]
    assert series["SeriesInstanceUID"] == reference.SeriesInstanceUID
    assert series["Modality"] == reference.Modality and series["NumberOfInstances"] == 93
    [patient] = database.patients()
    assert patient["PatientName"] == str(reference.PatientName) and patient["PatientID"] == reference.PatientID
    for instance in database.instances(series["SeriesInstanceUID"])[:5]:
        ds = pydicom.dcmread(instance["FilePath"])
        assert instance["TransferSyntaxUID"] == ds.file_meta.TransferSyntaxUID
        with open(instance["FilePath"], "rb") as handle:
            handle.seek(instance["PixelDataOffset"])
            assert handle.read(instance["PixelDataLength"]) == ds.PixelData
    # geometry tags were cached at import, exactly as pydicom formats them
    path = database.files_for_series(series["SeriesInstanceUID"])[0]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert database.file_value(path, "ImagePositionPatient") == "\\".join(str(v) for v in ds.ImagePositionPatient)
    assert database.file_value(path, "RescaleIntercept") == str(ds.RescaleIntercept)


def test_required_tags_cover_database_plugins_and_geometry():
    from DICOMPlugins import DICOMPlugin, dicomPlugins, registerPlugin

    class TagProbePlugin(DICOMPlugin):
        tags = {"seriesDescription": "0008,103e", "scanOptions": "0018,0022"}

    registerPlugin(TagProbePlugin)
    try:
        tags = required_tags()
    finally:
        dicomPlugins.pop("TagProbePlugin", None)
    for keyword in ("PatientName", "SeriesInstanceUID", "ImagePositionPatient", "PixelSpacing", "TriggerTime",
                    "SpecificCharacterSet", "NumberOfFrames"):
        assert tag_string(keyword) in tags
    assert "0018,0022" in tags


def test_reference_mode_stores_absolute_paths(database, series_factory):
    files = series_factory("ref", count=3)
    import_paths(database, [files[0].parent])
    assert sorted(i["FilePath"] for i in database.instances()) == sorted(str(p) for p in files)
    assert not any(i["Copied"] for i in database.instances())
    assert not database.images_folder.exists() or not any(database.images_folder.rglob("*.dcm"))


def test_copy_mode_copies_and_the_folder_can_move(tmp_path, series_factory):
    files = series_factory("src", count=4)
    db = DICOMDatabase(tmp_path / "db1")
    summary = import_paths(db, files, copy=True)
    assert summary.indexed == 4
    copies = [Path(i["FilePath"]) for i in db.instances()]
    assert all(c.is_relative_to(db.images_folder) for c in copies)
    assert sorted(sha1(c) for c in copies) == sorted(sha1(f) for f in files)
    again = import_paths(db, files, copy=True)
    assert again.duplicates == 4 and db.counts()["instances"] == 4
    db.close()
    shutil.move(tmp_path / "db1", tmp_path / "moved")
    with DICOMDatabase(tmp_path / "moved") as moved:
        paths = [Path(i["FilePath"]) for i in moved.instances()]
        assert all(p.is_relative_to(tmp_path / "moved") and p.exists() for p in paths)


def test_duplicates_are_one_instance(database, series_factory, tmp_path):
    files = series_factory("orig", count=2)
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copyfile(files[0], twin / "same-instance.dcm")
    summary = import_paths(database, [files[0].parent, twin])
    assert summary.indexed == 2 and summary.duplicates == 1 and not summary.errors
    assert database.counts()["instances"] == 2


def test_broken_and_non_dicom_files(database, series_factory, tmp_path, pydicom_file):
    folder = tmp_path / "mixed"
    good = series_factory("mixed", count=2)
    (folder / "readme.txt").write_text("not DICOM at all")
    (folder / "empty.dcm").write_bytes(b"")
    truncated = folder / "truncated.dcm"
    truncated.write_bytes(good[0].read_bytes()[:400])
    garbage = folder / "garbage.dcm"
    garbage.write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    no_preamble = folder / "nopreamble.dcm"  # meta group first, without the 128-byte preamble and "DICM"
    ds = pydicom.dcmread(good[1])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(no_preamble, enforce_file_format=True)
    no_preamble.write_bytes(no_preamble.read_bytes()[132:])
    assert no_preamble.read_bytes()[:2] == b"\x02\x00"
    shutil.copyfile(pydicom_file("CT_small.dcm"), folder / "ct_small")  # no extension
    summary = import_paths(database, [folder])
    assert summary.seen == 8
    assert summary.indexed == 4  # two generated, the preamble-less one, CT_small
    error_paths = {Path(p).name for p, _ in summary.errors}
    assert {"truncated.dcm", "garbage.dcm"} <= error_paths
    assert "readme.txt" not in error_paths and summary.skipped >= 1
    assert all(reason for _, reason in summary.errors)


@pytest.mark.parametrize("charset, name", [
    ("ISO_IR 100", "Müller^Jürgen"),
    ("ISO_IR 192", "山田^太郎"),
    (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    (["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동"),
])
def test_character_sets(database, series_factory, charset, name):
    files = series_factory(count=1, patient_name=name, specific_character_set=charset,
                           study_description=name.split("=")[-1])
    if charset != "ISO_IR 192":
        assert name.encode("utf-8") not in files[0].read_bytes()  # really stored in the other encoding
    import_paths(database, files)
    [patient] = database.patients()
    assert patient["PatientName"] == name
    assert database.studies()[0]["StudyDescription"] == name.split("=")[-1]
    assert [p["PatientName"] for p in database.patients(PatientName=name.split("^")[0])] == [name]
    assert database.file_value(files[0], "PatientName") == name


@pytest.mark.filterwarnings("ignore:Failed to encode value")  # pydicom, on Orthanc's deliberately odd Shift-JIS file
def test_corpus_encodings_match_pydicom(corpus, database):
    folder = corpus / "orthanc_tests" / "Database" / "Encodings"
    import_paths(database, [folder])
    expected = set()
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        expected.add(str(ds.PatientName))
    assert {p["PatientName"] for p in database.patients()} == expected
    assert any(ord(c) > 0x3000 for name in expected for c in name)  # really has Japanese


def test_reimport_skips_unchanged_and_updates_changed(database, series_factory):
    files = series_factory("re", count=5, series_description="Before")
    first = import_paths(database, [files[0].parent])
    assert first.indexed == 5
    second = import_paths(database, [files[0].parent])
    assert second.unchanged == 5 and second.indexed == 0
    ds = pydicom.dcmread(files[2])
    ds.SeriesDescription = "After, a longer description"
    ds.save_as(files[2])
    third = import_paths(database, [files[0].parent])
    assert third.unchanged == 4 and third.updated == 1
    assert database.series()[0]["SeriesDescription"] == "After, a longer description"
    assert database.file_value(files[2], "SeriesDescription") == "After, a longer description"


def test_moved_files_are_relinked(database, series_factory, tmp_path):
    files = series_factory("before", count=3)
    import_paths(database, [files[0].parent])
    moved = tmp_path / "after"
    shutil.move(files[0].parent, moved)
    summary = import_paths(database, [moved])
    assert summary.relinked == 3 and summary.duplicates == 0
    assert database.counts()["instances"] == 3
    assert all(Path(i["FilePath"]).parent == moved for i in database.instances())


def test_file_replaced_by_other_instance_at_same_path(database, series_factory, tmp_path):
    a = series_factory("a", count=1, patient_id="A")[0]
    b = series_factory("b", count=1, patient_id="B")[0]
    target = tmp_path / "slot.dcm"
    shutil.copyfile(a, target)
    import_paths(database, [target])
    time.sleep(0.01)
    shutil.copyfile(b, target)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    summary = import_paths(database, [target])
    assert summary.updated == 1
    assert [p["PatientID"] for p in database.patients()] == ["B"]


def test_dicomdir_media(database, pydicom_file):
    dicomdir = pydicom_file("DICOMDIR")
    from pydicom.fileset import FileSet

    fileset = FileSet(pydicom.dcmread(dicomdir))
    referenced = [Path(instance.path) for instance in fileset]
    summary = import_paths(database, [dicomdir])
    assert summary.seen == len(referenced)
    assert database.counts() == truth(referenced)


def test_progress_and_cancel(database, series_factory):
    files = series_factory("p", count=12)
    calls = []
    summary = import_paths(database, files, progress=lambda done, total, path: calls.append((done, total)) or done >= 5)
    assert summary.cancelled and calls[-1] == (5, 12)
    summary = import_paths(database, files, progress=lambda done, total, path: calls.append((done, total)))
    assert not summary.cancelled and database.counts()["instances"] == 12
    assert calls[-1] == (12, 12)


KILLABLE_IMPORT = """
import sys, time
from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
from DICOMBrowser.DICOMBrowserLib.indexer import import_paths
db = DICOMDatabase(sys.argv[1])
def slow(done, total, path):
    time.sleep(0.002)  # keep the import running long enough to be killed in the middle
import_paths(db, [sys.argv[2]], progress=slow, workers=1)
print("finished", flush=True)
"""


@pytest.mark.slow
def test_killed_import_then_reimport_is_correct(tmp_path):
    source = tmp_path / "many"
    written = sampledata.write_many(source, patients=12, studies=2, series=5, instances=20)  # 2400 files: bulk mode
    expected = truth(source)
    assert expected["instances"] == written
    db_dir = tmp_path / "db"
    DICOMDatabase(db_dir).close()
    process = subprocess.Popen([sys.executable, "-c", KILLABLE_IMPORT, str(db_dir), str(source)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    committed = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            connection = sqlite3.connect(f"file:{db_dir / 'ctkDICOM.sql'}?mode=ro", uri=True, timeout=10)
            try:
                committed = connection.execute("SELECT COUNT(*) FROM Images").fetchone()[0]
            finally:
                connection.close()
            if committed >= 500:
                break
            time.sleep(0.05)
        assert process.poll() is None, f"import ended before it could be killed: {process.communicate()}"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(30)
    assert 0 < committed < written
    with DICOMDatabase(db_dir) as db:  # opens: schema, quick_check
        partial = db.counts()
        assert 0 < partial["instances"] < written
        assert sum(s["NumberOfInstances"] for s in db.series()) == partial["instances"]
        summary = import_paths(db, [source])
        assert summary.unchanged == partial["instances"]
        assert summary.indexed == written - partial["instances"]
        assert db.counts() == expected


def test_logic_imports_pydicom_samples_like_the_truth():
    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic, DICOMBrowserTest

    folder = sampledata.pydicom_sample_folder()
    logic = DICOMBrowserLogic(temporary=True)
    try:
        summary = logic.import_paths([folder])
        assert logic.database.counts() == truth(folder)
        assert summary.errors and all(Path(p).is_file() and reason for p, reason in summary.errors)
        assert len(logic.patients()) == truth(folder)["patients"]
        uid = logic.series(Modality="CT")[0]["SeriesInstanceUID"]
        assert logic.show(uid)["Level"] == "series" and logic.files_for_uid(uid)
    finally:
        logic.close()
    self_test = DICOMBrowserTest()
    self_test.setUp()
    try:
        self_test.test_import_sample_data()
    finally:
        self_test.tearDown()


@pytest.mark.slow
def test_two_processes_import_into_one_database(tmp_path):
    """Two `dicombrowser import` processes at once (e.g. a CLI import while the listener stores)."""
    sampledata.write_many(tmp_path / "a", patients=3, studies=1, series=4, instances=25)
    sampledata.write_many(tmp_path / "b", patients=3, studies=1, series=4, instances=25)
    # the same patient IDs in both sets: the processes race to create the same patients
    db_dir = tmp_path / "db"
    command = [sys.executable, "-m", "DICOMBrowser", "--database", str(db_dir), "import", "--workers", "1"]
    processes = [subprocess.Popen([*command, str(tmp_path / name)], cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for process in processes:
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err
    with DICOMDatabase(db_dir) as db:
        assert db.counts() == truth(tmp_path)
        assert [p["NumberOfStudies"] for p in db.patients()] == [2, 2, 2]


def test_corpus_copy_mode_byte_identical(corpus, database):
    source = corpus / "slicer_ct_head"
    summary = import_paths(database, [source], copy=True)
    assert database.counts() == truth(source) and summary.indexed == 93
    by_sop = {}
    for path in source.rglob("*"):
        if path.is_file() and path.name != "License.txt":
            by_sop[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    for instance in database.instances():
        copy = Path(instance["FilePath"])
        assert copy.is_relative_to(database.images_folder)
        assert sha1(copy) == sha1(by_sop[instance["SOPInstanceUID"]])


def test_file_name_with_invalid_utf8_is_reported_not_fatal(database, tmp_path, pydicom_file):
    folder = tmp_path / "names"
    folder.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), os.fsencode(folder) + b"/bad\xff\xfename.dcm")
    shutil.copyfile(pydicom_file("MR_small.dcm"), folder / "ok-ünï.dcm")
    summary = import_paths(database, [folder])
    assert summary.indexed == 1 and len(summary.errors) == 1
    assert "UTF-8" in summary.errors[0][1] and "\\xff" in summary.errors[0][0]
    assert database.instances()[0]["FilePath"].endswith("ok-ünï.dcm")


def test_copy_into_symlinked_images_folder(tmp_path, series_factory):
    """`dicom/` may be a symlink to a bigger disk: copies go there and are found again."""
    big_disk = tmp_path / "big-disk"
    big_disk.mkdir()
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    (db_dir / "dicom").symlink_to(big_disk)
    with DICOMDatabase(db_dir) as db:
        summary = import_paths(db, series_factory(count=3), copy=True)
        assert summary.indexed == 3 and not summary.errors
        assert len(list(big_disk.rglob("*.dcm"))) == 3
        assert all(Path(i["FilePath"]).exists() for i in db.instances())


def test_broken_dicomdir_and_missing_path(database, tmp_path):
    from DICOMBrowser.DICOMBrowserLib.errors import NotFoundError

    broken = tmp_path / "DICOMDIR"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f")
    summary = import_paths(database, [broken])
    assert summary.seen == 1 and summary.indexed == 0
    assert summary.skipped + len(summary.errors) == 1
    with pytest.raises(NotFoundError, match="no-such-folder"):
        import_paths(database, [tmp_path / "no-such-folder"])


def test_database_folder_is_never_imported_into_itself(tmp_path, series_factory):
    files = series_factory("src", count=3)
    with DICOMDatabase(tmp_path / "db") as db:
        import_paths(db, files, copy=True)
        summary = import_paths(db, [tmp_path])  # the parent holds both the sources and the database
        assert summary.seen == 3 and summary.indexed == 0 and summary.duplicates == 3
        assert db.counts()["instances"] == 3
