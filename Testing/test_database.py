"""The database: schema and versions, integrity, the tag cache, deletes, concurrency, folder layout.

Real files (pydicom's bundled CT, generated series) go in; facts come out through the API.
"""
from __future__ import annotations

import hashlib
import shutil
import sqlite3
import threading
from pathlib import Path

import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib import database as dbmod
from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase, patient_key, safe_name
from DICOMBrowser.DICOMBrowserLib.errors import DatabaseError, DICOMFileError, NotFoundError, SchemaVersionError
from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

pytestmark = pytest.mark.timeout(120)


def sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def test_new_database_has_ctk_layout_and_our_version(tmp_path):
    with DICOMDatabase(tmp_path / "db") as db:
        assert db.folder == (tmp_path / "db").resolve()
        assert db.images_folder == db.folder / "dicom"
    assert (tmp_path / "db" / "ctkDICOM.sql").is_file()
    assert (tmp_path / "db" / "ctkDICOMTagCache.sql").is_file()
    connection = sqlite3.connect(tmp_path / "db" / "ctkDICOM.sql")
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"Patients", "Studies", "Series", "Images", "SchemaInfo"} <= tables
    assert connection.execute("SELECT Version FROM SchemaInfo").fetchone()[0] == dbmod.SCHEMA_VERSION
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_open_without_create_refuses_missing_folder(tmp_path):
    with pytest.raises(DatabaseError, match="no DICOM database"):
        DICOMDatabase(tmp_path / "nothing", create=False)


def test_unknown_schema_version_is_refused_without_damage(tmp_path):
    DICOMDatabase(tmp_path / "db").close()
    main = tmp_path / "db" / "ctkDICOM.sql"
    connection = sqlite3.connect(main)
    connection.execute("UPDATE SchemaInfo SET Version = '0.8.1'")  # a CTK / Slicer database
    connection.commit()
    connection.close()
    before = sha1(main)
    with pytest.raises(SchemaVersionError, match="0.8.1"):
        DICOMDatabase(tmp_path / "db")
    assert sha1(main) == before


def test_corrupt_database_gives_clear_error(tmp_path):
    folder = tmp_path / "db"
    folder.mkdir()
    (folder / "ctkDICOM.sql").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="ctkDICOM.sql"):
        DICOMDatabase(folder)


def test_temporary_database_is_deleted_on_close():
    db = DICOMDatabase.temporary()
    folder = db.folder
    assert folder.is_dir() and db.is_temporary
    db.close()
    assert not folder.exists()


def test_patient_key_for_empty_id_and_name():
    assert patient_key("ID1", "Doe^John^^^", "1.2") == patient_key("ID1", "Doe^John", "1.3")
    assert patient_key("", "", "1.2.3") != patient_key("", "", "1.2.4")
    assert patient_key("", "Doe", "1.2") == patient_key("", "Doe", "9.9")


def test_empty_patient_id_and_name_are_imported(database, series_factory):
    series_factory("anon1", count=2, patient_id="", patient_name="")
    series_factory("anon2", count=3, patient_id="", patient_name="")
    summary = import_paths(database, [Path(database.folder).parent / "anon1", Path(database.folder).parent / "anon2"])
    assert summary.indexed == 5 and not summary.errors
    patients = database.patients()
    assert len(patients) == 2, "two anonymous studies must not merge into one patient"
    assert all(p["PatientUID"].startswith("patient-") for p in patients)
    assert sorted(p["NumberOfInstances"] for p in patients) == [2, 3]


@pytest.mark.parametrize("uid", ["../../etc/passwd", "a/b", "..", ".", "", "1.2.3\x00evil", "x" * 300])
def test_copy_destination_never_escapes(database, uid):
    destination = database.copy_destination(uid, uid, uid)
    assert destination.resolve().is_relative_to(database.images_folder.resolve())
    assert "/" not in safe_name(uid) and safe_name(uid) not in ("", ".", "..")


def test_browse_levels_and_filters(database, series_factory):
    study = pydicom.uid.generate_uid()
    series_factory("a", count=3, patient_id="P1", patient_name="Alpha^One", study_uid=study, modality="CT",
                   series_number=1, study_date="20200105")
    series_factory("b", count=2, patient_id="P1", patient_name="Alpha^One", study_uid=study, modality="MR",
                   series_number=2, study_date="20200105")
    series_factory("c", count=4, patient_id="P2", patient_name="Beta^Two", modality="CT", study_date="20211231",
                   study_description="Chest")
    import_paths(database, [database.folder.parent / n for n in "abc"])
    patients = database.patients()
    assert [(p["PatientID"], p["NumberOfStudies"], p["NumberOfInstances"]) for p in patients] == [("P1", 1, 5), ("P2", 1, 4)]
    p1 = patients[0]["PatientUID"]
    studies = database.studies(p1)
    assert len(studies) == 1 and studies[0]["ModalitiesInStudy"] == "CT\\MR" and studies[0]["NumberOfSeries"] == 2
    series = database.series(study)
    assert [s["SeriesNumber"] for s in series] == [1, 2]
    assert [s["NumberOfInstances"] for s in series] == [3, 2]
    instances = database.instances(series[0]["SeriesInstanceUID"])
    assert [i["InstanceNumber"] for i in instances] == [1, 2, 3]
    assert all(Path(i["FilePath"]).is_absolute() and Path(i["FilePath"]).exists() for i in instances)
    assert all(i["TransferSyntaxUID"] == "1.2.840.10008.1.2.1" and i["PixelDataOffset"] > 0 for i in instances)
    assert all(i["PixelDataLength"] == 16 * 16 * 2 for i in instances)
    # filters: names are case-insensitive substrings, IDs exact, dates as DICOM ranges
    assert [p["PatientID"] for p in database.patients(PatientName="beta")] == ["P2"]
    assert [p["PatientID"] for p in database.patients(PatientName="A*One")] == ["P1"]
    assert [p["PatientID"] for p in database.patients(Modality="mr")] == ["P1"]
    assert [p["PatientID"] for p in database.patients(StudyDate="20210101-")] == ["P2"]
    assert [p["PatientID"] for p in database.patients(date_to="20201231")] == ["P1"]
    assert len(database.series(Modality="CT")) == 2
    assert len(database.instances(PatientID="P2")) == 4
    assert database.studies(StudyDescription="chest")[0]["PatientID"] == "P2"
    sop = instances[1]["SOPInstanceUID"]
    assert [i["SOPInstanceUID"] for i in database.instances(SOPInstanceUID=sop)] == [sop]
    with pytest.raises(ValueError, match="unknown filter"):
        database.patients(Nonsense="x")
    # any-level helpers
    assert database.level_of(p1) == "patient" and database.level_of(study) == "study"
    assert database.level_of(sop) == "instance" and database.level_of("1.2.3.4") is None
    assert len(database.files_for_uid(p1)) == 5
    assert database.series_for_uid(p1) == [s["SeriesInstanceUID"] for s in series]
    assert database.instance_for_file(instances[1]["FilePath"]) == sop
    assert database.file_for_instance(sop) == instances[1]["FilePath"]
    assert database.files_for_series(series[0]["SeriesInstanceUID"]) == [i["FilePath"] for i in instances]


def test_tag_cache_serves_values_without_the_file(database, pydicom_file, tmp_path):
    source = tmp_path / "ct.dcm"
    shutil.copyfile(pydicom_file("CT_small.dcm"), source)
    import_paths(database, [source])
    truth = pydicom.dcmread(source, stop_before_pixels=True)
    # a tag the import cached, and one it did not (Software Versions), parsed once then cached
    assert database.file_value(source, "0010,0010") == str(truth.PatientName)
    assert database.file_value(source, "0018,1020") == str(truth.SoftwareVersions)
    assert database.file_value(source, "ImagePositionPatient") == "\\".join(str(v) for v in truth.ImagePositionPatient)
    source.unlink()  # the cache alone must answer now
    values = database.file_values([source], ["0010,0010", "0018,1020", "0008,0060"])[str(source)]
    assert values == {"0010,0010": str(truth.PatientName), "0018,1020": str(truth.SoftwareVersions),
                      "0008,0060": truth.Modality}
    assert database.file_value(source, "0008,1090") == ""  # never cached and the file is gone


def test_cached_values_round_trip(database):
    assert database.cached_value("examine:1.2.3") is None
    database.store_cached_value("examine:1.2.3", '{"a": 1}')
    assert database.cached_value("examine:1.2.3") == '{"a": 1}'


def test_data_version_changes_for_other_connections(tmp_path, series_factory):
    reader = DICOMDatabase(tmp_path / "db")
    writer = DICOMDatabase(tmp_path / "db")
    try:
        before = reader.data_version()
        import_paths(writer, series_factory(count=2))
        assert reader.data_version() != before
        assert len(reader.instances()) == 2
    finally:
        reader.close()
        writer.close()


def test_reader_and_writer_threads_work_at_the_same_time(database, series_factory):
    files = [p for i in range(6) for p in series_factory(f"s{i}", count=5)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def browse() -> None:
        try:
            while not stop.is_set():
                for patient in database.patients():
                    database.studies(patient["PatientUID"])
                database.data_version()
        except BaseException as error:  # collected and re-raised in the test thread
            errors.append(error)

    readers = [threading.Thread(target=browse) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        writers = [threading.Thread(target=lambda chunk=files[i::3]: [database.index_file(p, copied=False) for p in chunk])
                   for i in range(3)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(60)
    finally:
        stop.set()
        for thread in readers:
            thread.join(60)
    assert not errors, errors
    assert database.counts()["instances"] == len(files)


def test_index_file_copied_for_listener(database, series_factory):
    received = database.images_folder / "incoming" / "file.dcm"
    received.parent.mkdir(parents=True)
    shutil.copyfile(series_factory(count=1)[0], received)
    sop = database.index_file(received, copied=True)
    row = database.instances(SOPInstanceUID=sop)[0]
    assert row["Copied"] and row["FilePath"] == str(received)
    connection = sqlite3.connect(database.folder / "ctkDICOM.sql")
    assert connection.execute("SELECT Filename FROM Images").fetchone()[0] == "dicom/incoming/file.dcm"
    connection.close()
    # a file outside the database folder is copied in
    outside = series_factory(count=1)[0]
    sop2 = database.index_file(outside, copied=True)
    path2 = Path(database.file_for_instance(sop2))
    assert path2.is_relative_to(database.images_folder) and sha1(path2) == sha1(outside)
    with pytest.raises(DICOMFileError, match="not a DICOM file"):
        text = database.folder.parent / "notes.txt"
        text.write_text("hello")
        database.index_file(text, copied=False)


def test_delete_keeps_referenced_files(database, series_factory):
    files = series_factory("keep", count=4)
    checksums = {p: sha1(p) for p in files}
    import_paths(database, files)
    patient = database.patients()[0]["PatientUID"]
    assert database.delete(patient, remove_copied_files=True) == 4
    assert database.counts() == {"patients": 0, "studies": 0, "series": 0, "instances": 0}
    assert {p: sha1(p) for p in files} == checksums
    with pytest.raises(NotFoundError):
        database.delete(patient)


def test_delete_copied_files_only_when_asked(database, series_factory):
    files = series_factory("copyme", count=3)
    import_paths(database, files, copy=True)
    series_uid = database.series()[0]["SeriesInstanceUID"]
    copies = database.files_for_series(series_uid)
    assert all(Path(c).is_relative_to(database.images_folder) for c in copies)
    first = database.instances()[0]["SOPInstanceUID"]
    database.delete(first)  # instance level, copied file kept
    assert all(Path(c).exists() for c in copies)
    database.delete(series_uid, remove_copied_files=True)
    assert not any(Path(c).exists() for c in copies[1:])
    assert Path(copies[0]).exists()  # deleted earlier without removal: kept
    assert all(p.exists() for p in files)


def test_verify_and_repair(database, series_factory):
    files = series_factory("v", count=3)
    import_paths(database, files)
    files[0].unlink()
    files[1].write_bytes(files[1].read_bytes() + b"\0\0")
    report = database.verify()
    assert report.checked == 3 and report.missing == [str(files[0])] and report.changed == [str(files[1])]
    repaired = database.verify(repair=True)
    assert repaired.removed == 1 and repaired.reindexed == 1 and database.counts()["instances"] == 2
    assert database.verify().missing == [] and database.verify().changed == []
    files[2].write_text("no longer DICOM")
    assert database.verify(repair=True).removed == 1 and database.counts()["instances"] == 1


def test_vacuum_keeps_data(database, series_factory):
    import_paths(database, series_factory(count=3))
    database.delete(database.instances()[0]["SOPInstanceUID"])
    database.vacuum()
    assert database.counts()["instances"] == 2
    assert len(database.cached_tags(database.instances()[0]["SOPInstanceUID"])) > 30


def test_two_writers_never_leave_invisible_rows(tmp_path, series_factory):
    """A writer's cached patient ids must not survive another writer's delete (listener + CLI)."""
    first = series_factory("one", count=2, patient_id="SAME")
    second = series_factory("two", count=3, patient_id="SAME")
    a = DICOMDatabase(tmp_path / "db")
    b = DICOMDatabase(tmp_path / "db")
    try:
        import_paths(a, first)
        b.delete(b.patients()[0]["PatientUID"])
        import_paths(a, second)
        assert [p["NumberOfInstances"] for p in b.patients()] == [3]
        assert b.counts() == {"patients": 1, "studies": 1, "series": 1, "instances": 3}
    finally:
        a.close()
        b.close()


def _counts_after_rebuild(folder: Path):
    from DICOMBrowser.DICOMBrowserLib.indexer import rebuild

    db, summary, moved = rebuild(folder)
    try:
        return db.counts(), summary, moved
    finally:
        db.close()


def test_rebuild_unknown_version_keeps_old_index_and_restores_all(tmp_path, series_factory):
    copied = series_factory("c", count=3, patient_id="COPIED")
    referenced = series_factory("r", count=2, patient_id="REFERENCED")
    with DICOMDatabase(tmp_path / "db") as db:
        import_paths(db, copied, copy=True)
        import_paths(db, referenced)
        expected = db.counts()
    connection = sqlite3.connect(tmp_path / "db" / "ctkDICOM.sql")
    connection.execute("UPDATE SchemaInfo SET Version = '0.8.1'")  # as a 3D Slicer database would say
    connection.commit()
    connection.close()
    with pytest.raises(SchemaVersionError, match="db rebuild"):
        DICOMDatabase(tmp_path / "db")
    counts, summary, moved = _counts_after_rebuild(tmp_path / "db")
    assert counts == expected and summary.indexed == 5 and not summary.errors
    assert any(p.name.startswith("ctkDICOM.sql.") and p.name.endswith(".bak") for p in moved)
    assert all(p.exists() for p in moved)
    with DICOMDatabase(tmp_path / "db") as db:
        assert sorted(i["Copied"] for i in db.instances()) == [False, False, True, True, True]


def test_rebuild_corrupt_database_from_copied_files(tmp_path, series_factory):
    files = series_factory("c", count=4)
    with DICOMDatabase(tmp_path / "db") as db:
        import_paths(db, files, copy=True)
        db.vacuum()
    main = tmp_path / "db" / "ctkDICOM.sql"
    main.write_bytes(b"garbage" * 1000)
    with pytest.raises(DatabaseError):
        DICOMDatabase(tmp_path / "db")
    counts, summary, _ = _counts_after_rebuild(tmp_path / "db")
    assert counts["instances"] == 4 and summary.indexed == 4


@pytest.mark.parametrize("values", [[], [""], ["a", "", "b\\c"], ["has \x1e separator", "x"], ["[json-looking]"]])
def test_packed_tag_values_round_trip(values):
    assert dbmod.unpack_values(dbmod.pack_values(values)) == values


def test_logic_rebuild_database(tmp_path, series_factory, monkeypatch):
    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # recent-databases list stays in the test

    logic = DICOMBrowserLogic(tmp_path / "db")
    try:
        logic.import_paths(series_factory(count=3), copy=True)
        summary = logic.rebuild_database()
        assert summary.indexed == 3 and logic.database.counts()["instances"] == 3
    finally:
        logic.close()


def test_values_sqlite_cannot_encode_are_escaped_not_fatal(database, series_factory):
    from DICOMBrowser.DICOMBrowserLib.database import DATABASE_TAGS, InstanceRecord

    path = series_factory(count=1)[0]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    values = {tag: "" for tag in DATABASE_TAGS.values()}
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID"):
        values[DATABASE_TAGS[keyword]] = str(ds.get(keyword))
    values[DATABASE_TAGS["PatientName"]] = "Bad\udcffName"
    record = InstanceRecord(str(path), path.stat().st_size, path.stat().st_mtime_ns, values)
    [outcome] = database.store_instances([record])
    assert outcome.status == "indexed"
    assert database.patients()[0]["PatientName"] == "Bad\\udcffName"


def test_logic_open_folder_without_database(tmp_path, series_factory, monkeypatch):
    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    logic = DICOMBrowserLogic(tmp_path / "persistent")
    try:
        logic.import_paths(series_factory("kept", count=2))
        summary = logic.open_folder_without_database([series_factory("oneoff", count=3)[0].parent])
        temporary = logic.database.folder
        assert summary.indexed == 3 and logic.database.is_temporary and logic.database.counts()["instances"] == 3
        logic.switch_database(tmp_path / "persistent")
        assert not temporary.exists()
        assert logic.database.counts()["instances"] == 2
    finally:
        logic.close()


def test_older_own_schema_is_rebuilt_from_the_files_on_open(tmp_path, series_factory):
    files = series_factory("c", count=3)
    with DICOMDatabase(tmp_path / "db") as db:
        import_paths(db, files, copy=True)
        import_paths(db, series_factory("r", count=2, patient_id="REF"))
        expected = db.counts()
    connection = sqlite3.connect(tmp_path / "db" / "ctkDICOM.sql")
    connection.execute("UPDATE SchemaInfo SET Version = '0.8.1+dicombrowser.0'")
    connection.commit()
    connection.close()
    with DICOMDatabase(tmp_path / "db") as db:
        assert db.counts() == expected
    assert list((tmp_path / "db").glob("ctkDICOM.sql.*.bak"))
    # a newer schema (written by a newer DICOMBrowser) is refused, not rebuilt
    connection = sqlite3.connect(tmp_path / "db" / "ctkDICOM.sql")
    connection.execute("UPDATE SchemaInfo SET Version = '0.8.1+dicombrowser.99'")
    connection.commit()
    connection.close()
    with pytest.raises(SchemaVersionError, match="dicombrowser.99"):
        DICOMDatabase(tmp_path / "db")


def test_listener_file_overwritten_by_another_instance(database, series_factory):
    """The listener stores by its own names; a path re-used for another instance replaces the old one."""
    first, second = series_factory("a", count=1, patient_id="A")[0], series_factory("b", count=1, patient_id="B")[0]
    received = database.images_folder / "in" / "x.dcm"
    received.parent.mkdir(parents=True)
    shutil.copyfile(first, received)
    old_sop = database.index_file(received, copied=True)
    shutil.copyfile(second, received)
    new_sop = database.index_file(received, copied=True)
    assert database.level_of(old_sop) is None and database.level_of(new_sop) == "instance"
    assert [p["PatientID"] for p in database.patients()] == ["B"]
    assert database.cached_tags(old_sop) == {}


def test_damaged_tag_cache_is_set_aside_and_values_read_again(tmp_path, series_factory):
    files = series_factory(count=2, series_description="Cached")
    with DICOMDatabase(tmp_path / "db") as db:
        import_paths(db, files)
        db.vacuum()
    (tmp_path / "db" / "ctkDICOMTagCache.sql").write_bytes(b"garbage" * 2000)
    with DICOMDatabase(tmp_path / "db") as db:
        assert db.counts()["instances"] == 2
        assert db.file_value(files[0], "SeriesDescription") == "Cached"  # parsed again from the file
    assert list((tmp_path / "db").glob("ctkDICOMTagCache.sql.*.bak"))


def test_database_tags_are_pydicoms_and_opening_a_database_does_not_import_it(tmp_path):
    """DATABASE_TAGS is written out (so `ls` and the browser's first page skip pydicom's ~0.4 s
    import): each entry is the tag pydicom's dictionary gives its keyword; a fresh process that
    opens a database and lists its patients has not imported pydicom."""
    import subprocess
    import sys

    from DICOMBrowser.DICOMBrowserLib.tagreader import tag_string

    assert {keyword: tag_string(keyword) for keyword in dbmod.DATABASE_TAGS} == dbmod.DATABASE_TAGS
    code = ("import sys\n"
            "from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase\n"
            f"with DICOMDatabase({str(tmp_path / 'db')!r}) as db:\n"
            "    db.patients(limit=10)\n"
            "assert 'pydicom' not in sys.modules, sorted(m for m in sys.modules if m.startswith('pydicom'))\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
