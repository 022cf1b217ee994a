"""The database at scale, in facts: counts kept right by every write, deletes and imports that touch
only their own rows, paging, query plans without full scans, migration and O(1) opening.

Timings live in benchmarks/bench_database_scale.py; here each property is asserted as a fact
(a count, a query plan, which statements ran), so it holds on any machine.
"""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from DICOMBrowser.DICOMBrowserLib import database as dbmod
from DICOMBrowser.DICOMBrowserLib.database import DATABASE_TAGS, DICOMDatabase, InstanceRecord
from DICOMBrowser.DICOMBrowserLib.errors import NotFoundError
from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[1]


def record(patient: int, study: int, series: int, instance: int, *, modality: str = "CT", frames: str = "",
           mtime: int = 1, name: str | None = None, date: str | None = None) -> InstanceRecord:
    """One instance as the importer hands it to the database (no file behind it: the index only)."""
    t = DATABASE_TAGS
    study_uid = f"1.2.3.{patient}.{study}"
    series_uid = f"{study_uid}.{series}"
    values = {t["PatientName"]: name if name is not None else f"Person{patient}^Test",
              t["PatientID"]: f"ID{patient}", t["StudyInstanceUID"]: study_uid,
              t["StudyDate"]: date if date is not None else f"2020{1 + study:02d}{1 + patient:02d}",
              t["StudyDescription"]: f"Study {study}", t["SeriesInstanceUID"]: series_uid,
              t["SeriesNumber"]: str(series + 1), t["SeriesDescription"]: f"Series {series}", t["Modality"]: modality,
              t["SOPInstanceUID"]: f"{series_uid}.{instance}", t["InstanceNumber"]: str(instance + 1),
              t["NumberOfFrames"]: frames}
    return InstanceRecord(path=f"/nonexistent/{patient}/{study}/{series}/{instance}.dcm", size=100, mtime_ns=mtime,
                          values=values)


def population(patients: int = 4, studies: int = 2, series: int = 3, instances: int = 2) -> list[InstanceRecord]:
    modalities = ("CT", "MR", "PT")
    return [record(p, st, se, i, modality=modalities[se % 3]) for p in range(patients) for st in range(studies)
            for se in range(series) for i in range(instances)]


def recounted(db: DICOMDatabase) -> dict[str, list[tuple]]:
    """Every count computed from the Images table, the way the queries did before counts were kept."""
    c = db._conn()
    return {
        "series": [tuple(r) for r in c.execute(
            "SELECT se.SeriesInstanceUID, COUNT(i.SOPInstanceUID), SUM(COALESCE(i.NumberOfFrames, 1))"
            " FROM Series se LEFT JOIN Images i ON i.SeriesInstanceUID = se.SeriesInstanceUID"
            " GROUP BY se.SeriesInstanceUID ORDER BY 1")],
        "studies": [tuple(r) for r in c.execute(
            "SELECT st.StudyInstanceUID, COUNT(DISTINCT se.SeriesInstanceUID), COUNT(i.SOPInstanceUID),"
            " (SELECT group_concat(m, '\\') FROM (SELECT DISTINCT Modality AS m FROM Series"
            "   WHERE StudyInstanceUID = st.StudyInstanceUID AND Modality != '' ORDER BY m))"
            " FROM Studies st LEFT JOIN Series se ON se.StudyInstanceUID = st.StudyInstanceUID"
            " LEFT JOIN Images i ON i.SeriesInstanceUID = se.SeriesInstanceUID GROUP BY 1 ORDER BY 1")],
        "patients": [tuple(r) for r in c.execute(
            "SELECT p.PatientUID, COUNT(DISTINCT st.StudyInstanceUID), COUNT(DISTINCT se.SeriesInstanceUID),"
            " COUNT(i.SOPInstanceUID), MAX(st.StudyDate)"
            " FROM Patients p LEFT JOIN Studies st ON st.PatientsUID = p.UID"
            " LEFT JOIN Series se ON se.StudyInstanceUID = st.StudyInstanceUID"
            " LEFT JOIN Images i ON i.SeriesInstanceUID = se.SeriesInstanceUID GROUP BY 1 ORDER BY 1")],
    }


def kept(db: DICOMDatabase) -> dict[str, list[tuple]]:
    """The counts the database keeps in its rows."""
    c = db._conn()
    return {
        "series": [tuple(r) for r in c.execute(
            "SELECT SeriesInstanceUID, NumberOfInstances, NumberOfFrames FROM Series ORDER BY 1")],
        "studies": [tuple(r) for r in c.execute(
            "SELECT StudyInstanceUID, NumberOfSeries, NumberOfInstances, ModalitiesInStudy FROM Studies ORDER BY 1")],
        "patients": [tuple(r) for r in c.execute(
            "SELECT PatientUID, NumberOfStudies, NumberOfSeries, NumberOfInstances, LastStudyDate"
            " FROM Patients ORDER BY 1")],
    }


def assert_counts_right(db: DICOMDatabase) -> None:
    truth = recounted(db)
    assert kept(db) == truth
    # nothing empty is left behind
    assert all(row[1] > 0 for rows in truth.values() for row in rows)


def test_counts_follow_imports_moves_and_deletes(database):
    database.store_instances(population())
    assert_counts_right(database)
    assert database.counts() == {"patients": 4, "studies": 8, "series": 24, "instances": 48}
    [first] = database.patients(PatientID="ID0")
    assert (first["NumberOfStudies"], first["NumberOfSeries"], first["NumberOfInstances"]) == (2, 6, 12)
    assert database.studies(first["PatientUID"])[0]["ModalitiesInStudy"] == "CT\\MR\\PT"

    # a multi-frame instance counts its frames
    database.store_instances([record(0, 0, 0, 9, frames="7")])
    assert_counts_right(database)
    assert database.series("1.2.3.0.0")[0]["NumberOfFrames"] == 2 + 7

    # the same instance rewritten into another patient's series (a file overwritten in place):
    # the old series loses it, the new one gains it
    moved = record(1, 0, 0, 0, mtime=2)
    moved.path = record(0, 0, 0, 0).path
    moved.values[DATABASE_TAGS["SOPInstanceUID"]] = record(0, 0, 0, 0).value("SOPInstanceUID")
    assert [o.status for o in database.store_instances([moved])] == ["updated"]
    assert_counts_right(database)

    # a series moved to another study (its instances re-imported with a new study UID), and a
    # study moved to another patient (renamed patient): the parents they leave are recounted
    moved_series = [record(2, 0, 0, i, mtime=3) for i in range(2)]
    for r in moved_series:
        r.values[DATABASE_TAGS["StudyInstanceUID"]] = "1.2.3.2.1"
    assert [o.status for o in database.store_instances(moved_series)] == ["updated", "updated"]
    assert database.series(SeriesInstanceUID="1.2.3.2.0.0")[0]["StudyInstanceUID"] == "1.2.3.2.1"
    assert_counts_right(database)
    renamed = [record(3, 0, se, i, mtime=5, name="Renamed^Person") for se in range(3) for i in range(2)]
    database.store_instances(renamed)
    assert_counts_right(database)
    assert database.patients(PatientName="Renamed")[0]["NumberOfInstances"] == 6

    # deletes at every level leave every count right and no empty parent
    for uid in ("1.2.3.1.1.2.0", "1.2.3.1.1.1", "1.2.3.1.0", database.patients(PatientID="ID0")[0]["PatientUID"]):
        database.delete(uid)
        assert_counts_right(database)


def test_delete_many_uids_is_one_transaction(database):
    database.store_instances(population())
    patients = [p["PatientUID"] for p in database.patients()]
    version = database.data_version()
    assert database.delete([patients[0], "1.2.3.1.0", "1.2.3.2.1.2.0"]) == 12 + 6 + 1
    assert database.data_version() == version + 1  # one write transaction
    assert_counts_right(database)
    with pytest.raises(NotFoundError, match="9.9.9"):
        database.delete([patients[3], "9.9.9"])
    assert database.level_of(patients[3]) == "patient"  # nothing deleted when one UID is unknown
    assert database.counts()["instances"] == 48 - 19


def test_deleting_finds_orphans_from_its_own_keys(database):
    """Deleting one series runs no statement over whole tables (the orphan sweep it replaced did)."""
    database.store_instances(population())
    statements: list[str] = []
    database._conn().set_trace_callback(statements.append)
    database.delete("1.2.3.0.0.0")
    database._conn().set_trace_callback(None)
    writes = [s for s in statements if s.lstrip().upper().startswith(("DELETE", "UPDATE"))]
    assert writes and all("WHERE" in s for s in writes), writes
    assert not [s for s in statements if "NOT EXISTS" in s]
    assert_counts_right(database)


def test_import_looks_up_only_the_files_it_imports(database, series_factory):
    import_paths(database, series_factory("old", count=3))
    new = series_factory("new", count=2)
    statements: list[str] = []
    database._conn().set_trace_callback(statements.append)
    summary = import_paths(database, new, workers=1)
    database._conn().set_trace_callback(None)
    assert summary.indexed == 2
    reads = [s for s in statements if "FROM Images" in s and s.lstrip().upper().startswith("SELECT")]
    assert reads and all("WHERE" in s for s in reads), reads


@pytest.mark.parametrize("level", ["patients", "studies", "series", "instances"])
def test_pages_put_together_are_the_whole_list(database, level):
    database.store_instances(population(patients=5, studies=2, series=2, instances=3))
    # names that differ only in case sort together (the name index is case-insensitive)
    database.store_instances([record(9, 0, 0, 0, name="person2^test"), record(8, 0, 0, 0, name="")])
    whole = database.browse_rows(level)
    whole = list(whole)
    assert len(whole) == {"patients": 7, "studies": 12, "series": 22, "instances": 62}[level]
    names = [row["PatientName"].lower() for row in whole]
    assert names == sorted(names)
    pages, after = [], None
    while True:
        page = list(database.browse_rows(level, limit=5, after=after))
        if not page:
            break
        pages.extend(page)
        after = page[-1]
    assert pages == whole
    assert list(database.browse_rows(level, limit=4, offset=3)) == whole[3:7]
    # a page continues after a row deleted meanwhile (patients and studies carry their own key)
    if level in ("patients", "studies"):
        gone = whole[2]
        database.delete(gone["PatientUID"] if level == "patients" else gone["StudyInstanceUID"])
        rest = list(database.browse_rows(level, after=gone))
        assert rest == [row for row in database.browse_rows(level) if row in whole[3:]]


def plan(db: DICOMDatabase, level: str, **arguments) -> list[str]:
    sql, params = db.browse_query(level, **arguments)
    return [row[3] for row in db._conn().execute(f"EXPLAIN QUERY PLAN {sql}", params)]


FILTERS_AN_INDEX_FINDS = [
    {"PatientUID": "patient-0"}, {"PatientID": "ID1"}, {"PatientName": "Person1*"},
    {"StudyInstanceUID": "1.2.3.1.0"}, {"StudyDate": "20200101-20200131"}, {"StudyDate": "20200102"},
    {"date_from": "20200101"}, {"date_to": "20200101"}, {"AccessionNumber": "A1"},
    {"StudyDescription": "Study 1*"},
    {"SeriesInstanceUID": "1.2.3.1.0.0"}, {"Modality": "ct"}, {"SeriesDescription": "Series*"},
    {"SOPInstanceUID": "1.2.3.1.0.0.0"},
    {"PatientName": "Person1*", "Modality": "MR", "StudyDate": "20200101-20201231"},
]


@pytest.mark.parametrize("level", ["patients", "studies", "series", "instances"])
@pytest.mark.parametrize("filters", FILTERS_AN_INDEX_FINDS, ids=lambda f: ",".join(f))
def test_a_filter_an_index_can_find_never_scans_a_table(database, level, filters):
    database.store_instances(population())
    steps = plan(database, level, limit=50, **filters)
    assert not [s for s in steps if s.startswith("SCAN")], steps


@pytest.mark.parametrize("level", ["patients", "studies", "series", "instances"])
def test_a_page_without_filter_is_read_in_order_not_sorted(database, level):
    """The first page walks the name index and its children's indexes: no full sort, whatever the size."""
    database.store_instances(population())
    steps = plan(database, level, limit=50)
    assert steps[0] == "SCAN p USING INDEX PatientsNameIndex" or steps[0].startswith(
        "SCAN p USING COVERING INDEX PatientsNameIndex"), steps
    assert [s for s in steps[1:] if s.startswith("SCAN")] == [], steps
    assert "USE TEMP B-TREE FOR ORDER BY" not in steps  # a sort of every row; a per-parent sort is fine
    after = database.browse_rows(level, limit=1)
    steps = plan(database, level, limit=50, after=next(after))
    assert steps[0].startswith("SEARCH p USING"), steps  # the next page seeks, it does not skip


SUBSTRINGS = [{"PatientName": "son1"}, {"StudyDescription": "udy"}, {"SeriesDescription": "ries"}]
TEXT_TABLES = {"PatientName": ("p", "PatientsNameText"), "StudyDescription": ("st", "StudiesDescriptionText"),
               "SeriesDescription": ("se", "SeriesDescriptionText")}


@pytest.mark.parametrize("level", ["patients", "studies", "series"])
@pytest.mark.parametrize("filters", SUBSTRINGS, ids=lambda f: ",".join(f))
def test_a_substring_filter_reads_the_trigram_index(database, level, filters):
    """A substring ('son1' in a name) is found by the column's FTS5 trigram index (a MATCH of
    its trigrams): no table is scanned, only the index's matches are read and sorted."""
    assert dbmod.trigram_available(), f"SQLite {sqlite3.sqlite_version} has no FTS5 trigram tokenizer"
    database.store_instances(population())
    alias, fts = TEXT_TABLES[next(iter(filters))]
    steps = plan(database, level, limit=50, **filters)
    assert any(s.startswith(f"SCAN {fts} VIRTUAL TABLE INDEX 0:M") for s in steps), steps
    assert not [s for s in steps if s.startswith("SCAN") and "VIRTUAL TABLE" not in s], steps


@pytest.mark.parametrize("level", ["patients", "studies", "series"])
@pytest.mark.parametrize("filters", SUBSTRINGS + [{"PatientName": "so"}], ids=lambda f: ",".join(f))
def test_without_the_trigram_index_a_substring_scans_only_its_own_table(tmp_path, monkeypatch, level, filters):
    """A SQLite without the trigram tokenizer (or a substring shorter than 3 characters): only
    the table holding the column is read through; the others are reached from it (or walked in
    the list's order)."""
    if len(next(iter(filters.values()))) >= 3:
        monkeypatch.setattr(dbmod, "_TRIGRAM", False)
    with DICOMDatabase(tmp_path / "db") as db:
        db.store_instances(population())
        alias, fts = TEXT_TABLES[next(iter(filters))]
        steps = plan(db, level, limit=50, **filters)
        scanned = {s.split()[1] for s in steps if s.startswith("SCAN")}
        assert scanned <= {alias, "p"}, steps
        assert db.browse_rows(level, **filters)


def test_the_trigram_indexes_follow_every_write(tmp_path, monkeypatch):
    """Kept in step by the writes (insert, changed description, delete, vacuum), built for a
    database that lacks them, and given up (triggers dropped) by a SQLite without the tokenizer."""
    folder = tmp_path / "db"

    def found(db: DICOMDatabase) -> dict[str, list[str]]:
        return {"patients": [p["PatientID"] for p in db.patients(PatientName="arso")],
                "studies": [s["StudyInstanceUID"] for s in db.studies(StudyDescription="UDY 1")],
                "series": [s["SeriesInstanceUID"] for s in db.series(SeriesDescription="ries 2", limit=100)]}

    with DICOMDatabase(folder) as db:
        db.store_instances(population())
        db.store_instances([record(1, 1, 2, 0)])  # the same row again: no change
        changed = record(2, 1, 2, 5)
        changed.values[DATABASE_TAGS["SeriesDescription"]] = "Renamed"
        db.store_instances([changed])
        db.delete("1.2.3.3.1")
        db.store_instances([record(7, 0, 2, 0, name="Carson^Kit")])
        expected = found(db)
        assert expected["patients"] == ["ID7"]
        assert "1.2.3.2.1.2" not in expected["series"] and "1.2.3.3.1.2" not in expected["series"]
        assert len(expected["series"]) == 4 * 2 - 2 + 1
        db.vacuum()
        assert found(db) == expected
        for _, _, _, fts in dbmod._TEXT_INDEXES.values():
            db._conn().execute(f"INSERT INTO {fts} ({fts}, rank) VALUES ('integrity-check', 1)")
    # a SQLite without the tokenizer: the triggers go, writes go on, substrings scan
    monkeypatch.setattr(dbmod, "_TRIGRAM", False)
    with DICOMDatabase(folder) as db:
        triggers = {r[0] for r in db._conn().execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert not triggers & set(dbmod._text_trigger_names())
        db.store_instances([record(8, 0, 2, 0, name="Larson^Ann")])
        assert found(db)["patients"] == ["ID7", "ID8"]
        expected = found(db)
    # the next open with the tokenizer rebuilds them
    monkeypatch.setattr(dbmod, "_TRIGRAM", None)
    with DICOMDatabase(folder) as db:
        assert db._text_index
        assert found(db) == expected
        assert any("PatientsNameText" in s for s in plan(db, "patients", limit=50, PatientName="arso"))


def test_a_dense_filter_page_walks_in_order_without_sorting(database, monkeypatch):
    """series(Modality='CT', limit=...) when many series are CT: the levels are walked in the
    list's order and the modality checked on the way (no sort of every match); when few are,
    the modality index finds them and they are sorted. Both give the same rows."""
    database.store_instances(population(patients=6))
    monkeypatch.setattr(dbmod, "SORT_AT_MOST", 5)  # 12 CT series: "many"
    steps = plan(database, "series", limit=5, Modality="CT")
    assert steps[0].startswith("SCAN p USING") and "PatientsNameIndex" in steps[0], steps
    assert "USE TEMP B-TREE FOR ORDER BY" not in steps, steps
    assert not [s for s in steps if "SeriesModalityIndex" in s], steps
    walked = database.series(Modality="ct", limit=5)
    pages, after = [], None
    while page := database.series(Modality="CT", limit=5, after=after):
        pages.extend(page)
        after = page[-1]
    monkeypatch.setattr(dbmod, "SORT_AT_MOST", 50)  # "few": the index and a sort
    steps = plan(database, "series", limit=5, Modality="CT")
    assert any("SeriesModalityIndex" in s for s in steps), steps
    assert database.series(Modality="ct", limit=5) == walked
    assert pages == database.series(Modality="CT") and len(pages) == 12
    # the same holds for a dense substring and a date range
    monkeypatch.setattr(dbmod, "SORT_AT_MOST", 5)
    for filters in ({"PatientName": "erson"}, {"StudyDate": "20200101-20201231"}):
        steps = plan(database, "studies", limit=5, **filters)
        assert "USE TEMP B-TREE FOR ORDER BY" not in steps, (filters, steps)
        assert database.studies(limit=5, **filters) == database.studies(**filters)[:5]


def crowd(patients: int = 60) -> list[InstanceRecord]:
    """Patients as the scale benchmark makes them: every name starts `Name00` (common trigrams),
    the rest of it rare; a given name shared by a seventh; 3 blank names; two studies a month
    apart per patient."""
    order = list(range(patients))
    order.reverse()
    records = []
    for patient in range(patients):
        name = "" if patient % 20 == 7 else f"Name{order[patient]:04d}^Given{patient % 7}"
        for study in range(2):
            records.append(record(patient, study, 0, 0, name=name,
                                  date=f"2020{1 + (patient + study) % 12:02d}{1 + patient % 28:02d}"))
    return records


def words_reference(db: DICOMDatabase, words: str) -> list[str]:
    """The patients whose name or ID holds every word (case-insensitive, ^ as a space), computed
    in Python from every patient: what the browser's search box always meant."""
    every = db.patients()
    wanted = words.lower().replace("^", " ").split()
    return [p["PatientUID"] for p in every
            if all(w in f"{(p['PatientName'] or '').lower().replace('^', ' ')} {(p['PatientID'] or '').lower()}"
                   for w in wanted)]


def pages_of(read, limit: int = 4) -> list[dict]:
    pages, after = [], None
    while page := read(limit=limit, after=after):
        pages.extend(page)
        after = page[-1]
    return pages


@pytest.mark.parametrize("rare_first", [256, 2], ids=["one-count", "two-counts"])
@pytest.mark.parametrize("pattern", ["Name0042", "me003", "iven", "ame00", "Given", "e0012^Giv", "zzz", "N?me0*", "ven3"])
def test_a_substring_with_a_rare_trigram_is_found_from_that_trigram(database, monkeypatch, pattern, rare_first):
    """A name filter whose common trigrams (`Nam`, `ame`, in every name) would cost what a scan
    does: its trigrams are counted (each up to RARE_FIRST, then up to SORT_AT_MOST when none is
    that rare), and when one is rare the candidates are the rows holding the rarest (a MATCH of
    those trigrams only); when none is, a page walks in order. Either way the same rows in the
    same order as the plain LIKE on every row."""
    database.store_instances(crowd())
    monkeypatch.setattr(dbmod, "SORT_AT_MOST", 12)  # a trigram in 12 names or more is "common"
    monkeypatch.setattr(dbmod, "RARE_FIRST", rare_first)
    answers = {}
    for level in ("patients", "studies"):
        read = getattr(database, level)
        answers[level] = (read(PatientName=pattern), read(PatientName=pattern, limit=5), pages_of(
            lambda **page: read(PatientName=pattern, **page)))
    sql, params = database.browse_query("patients", limit=5, PatientName=pattern)
    database._text_index = False  # the plain path: LIKE on every row
    for level in ("patients", "studies"):
        read = getattr(database, level)
        plain = read(PatientName=pattern)
        assert answers[level] == (plain, plain[:5], plain), (level, pattern)
    database._text_index = True
    rare = {"Name0042": ["042"], "me003": ["003"], "e0012^Giv": ["012"]}.get(pattern)
    if rare:  # found from its rare trigrams only
        assert "MATCH" in sql and "+p.PatientsName" in sql, sql
        match = [value for value in params if isinstance(value, str) and value.startswith('"')]
        assert match and all(token in match[0] for token in rare) and '"Nam"' not in match[0], match
        steps = plan(database, "patients", limit=5, PatientName=pattern)
        assert any(step.startswith("SCAN PatientsNameText VIRTUAL TABLE INDEX 0:M") for step in steps), steps
        assert not [step for step in steps if step.startswith("SCAN") and "VIRTUAL TABLE" not in step], steps
    elif pattern in ("iven", "ame00", "Given"):  # every trigram common: the page walks in order
        steps = plan(database, "patients", limit=5, PatientName=pattern)
        assert steps[0].startswith("SCAN p USING") and "PatientsNameIndex" in steps[0], steps
        assert not [step for step in steps if "PatientsNameText" in step], steps


def test_a_date_range_is_one_filter(database, monkeypatch):
    """From and to together find a month, though each alone finds most studies: the range is
    counted as one filter, so a month's page is read from the date index and sorted (not walked
    through every patient), with the same rows as the walk."""
    database.store_instances(crowd())
    monkeypatch.setattr(dbmod, "SORT_AT_MOST", 12)
    for filters in ({"StudyDate": "20200301-20200331"}, {"date_from": "20200301", "date_to": "20200331"}):
        steps = plan(database, "studies", limit=5, **filters)
        assert any("StudiesDateIndex" in step for step in steps), steps
        assert steps[0] != "SCAN p USING COVERING INDEX PatientsNameIndex", steps
        sorted_rows = database.studies(**filters, limit=5)
        monkeypatch.setattr(dbmod, "SORT_AT_MOST", 1)  # every filter "dense": the walk
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan(database, "studies", limit=5, **filters)
        assert database.studies(**filters, limit=5) == sorted_rows
        assert len(sorted_rows) == 5 and all("20200301" <= row["StudyDate"] <= "20200331" for row in sorted_rows)
        assert pages_of(lambda **page: database.studies(**filters, **page)) == database.studies(**filters)
        monkeypatch.setattr(dbmod, "SORT_AT_MOST", 12)
    # one bound alone: most studies, so the page walks
    steps = plan(database, "studies", limit=5, date_from="20200301")
    assert "USE TEMP B-TREE FOR ORDER BY" not in steps, steps
    # a month beside a substring in every name ("iven"): the month's index finds the rows, the
    # substring is tested on them; the same rows as the plain path
    both = {"StudyDate": "20200301-20200331", "PatientName": "iven"}
    steps = plan(database, "studies", limit=5, **both)
    assert any("StudiesDateIndex" in step for step in steps) and not any("PatientsNameText" in step for step in steps)
    found = database.studies(limit=5, **both), database.studies(**both)
    database._text_index = False
    assert found == (database.studies(limit=5, **both), database.studies(**both)) and len(found[0]) == 5
    database._text_index = True


def test_a_month_page_sorts_index_entries_and_joins_only_its_rows(database, monkeypatch):
    """A page of studies found by date is chosen from StudiesDateIndex2's entries (which hold the
    patient's order columns copied into Studies), and only its rows are joined to their patients:
    the same rows, in the same order, as the whole list, for every page, after a patient's name
    changes and after a study moves to another patient."""
    database.store_instances(crowd())
    monkeypatch.setattr(dbmod, "SORT_AT_MOST", 1000)  # the month is sparse: read and sorted
    month = {"StudyDate": "20200301-20200331"}

    def check() -> None:
        steps = plan(database, "studies", limit=5, **month)
        assert any(s.startswith("SEARCH st USING COVERING INDEX StudiesDateIndex2") for s in steps), steps
        # Studies and Patients are read by rowid for the page's rows only
        assert steps[0] == "SEARCH st USING INTEGER PRIMARY KEY (rowid=?)", steps
        assert [s for s in steps if " p " in f" {s} "] == ["SEARCH p USING INTEGER PRIMARY KEY (rowid=?)"], steps
        whole = database.studies(**month)
        assert len(whole) > 5 and [row["StudyDate"][:6] for row in whole] == ["202003"] * len(whole)
        for offset in range(0, len(whole), 3):
            assert database.studies(limit=3, offset=offset, **month) == whole[offset:offset + 3]
        assert pages_of(lambda **page: database.studies(**month, **page), limit=3) == whole
        monkeypatch.setattr(dbmod, "SORT_AT_MOST", 1)  # the walk in order: the same rows
        assert database.studies(limit=5, **month) == whole[:5]
        monkeypatch.setattr(dbmod, "SORT_AT_MOST", 1000)
    check()
    # the copies follow the patient (schema.sql's triggers), whatever writes it
    first = database.studies(limit=1, **month)[0]
    with database._write() as writer:
        writer.execute("UPDATE Patients SET PatientsName = 'zzz^Last' WHERE PatientUID = ?", (first["PatientUID"],))
    assert database.studies(limit=50, **month)[-1]["PatientUID"] == first["PatientUID"]
    check()
    # a study re-imported under another patient moves, and its copies with it
    moved = record(99, 0, 0, 0, name="aaa^First", date=first["StudyDate"])
    moved.values[DATABASE_TAGS["StudyInstanceUID"]] = first["StudyInstanceUID"]
    database.store_instances([moved])
    page = database.studies(limit=50, **month)
    assert [row["PatientName"] for row in page if row["StudyInstanceUID"] == first["StudyInstanceUID"]] == \
        ["aaa^First"]
    check()
    copies = database._conn().execute(
        "SELECT COUNT(*) FROM Studies st JOIN Patients p ON p.UID = st.PatientsUID WHERE st.PatientOrderName"
        " IS NOT p.PatientsName OR st.PatientOrderID IS NOT p.PatientID OR st.PatientOrderUID IS NOT p.PatientUID")
    assert copies.fetchone()[0] == 0


@pytest.mark.parametrize("words", ["name0042", "ID4", "given3 me002", "0042^giv", "id12 name", "zz", "NAME00"])
def test_search_words_are_the_api_filter_in_the_browser_page(database, monkeypatch, words):
    """The browser's search box and `patients(patient_words=...)` are one filter: each word in
    the name or the ID, found from the names' and IDs' trigram indexes when a trigram is rare.
    `patient_page` in every order and direction, paged by keyset, gives the patients the plain
    test on every row gives."""
    database.store_instances(crowd())
    monkeypatch.setattr(dbmod, "SORT_AT_MOST", 12)
    expected = words_reference(database, words)
    assert [p["PatientUID"] for p in database.patients(patient_words=words)] == expected
    assert [p["PatientUID"] for p in pages_of(lambda **page: database.patients(patient_words=words, **page))] == expected
    split = tuple(words.lower().replace("^", " ").split())
    for order in dbmod.PAGE_ORDERS:
        for descending in (False, True):
            found = []
            for blank in (False, True):
                def read(limit, after, blank=blank):
                    return dbmod.patient_page(database, limit=limit, after=after, order=order,
                                              descending=descending, blank=blank, words=split)
                found += [row["PatientUID"] for row in pages_of(read, limit=3)]
            database._text_index = False
            plain = []
            for blank in (False, True):
                plain += [row["PatientUID"] for row in dbmod.patient_page(
                    database, limit=1000, order=order, descending=descending, blank=blank, words=split)]
            database._text_index = True
            assert found == plain, (order, descending)
            assert sorted(found) == sorted(expected)
    sql, params = dbmod.patient_page_query(database, limit=3, words=split)
    steps = [row[3] for row in database._conn().execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    if words in ("name0042", "ID4", "0042^giv"):  # a rare trigram: read from the indexes
        assert any("PatientsNameText" in step for step in steps) and any("PatientsIDText" in step for step in steps)
        assert not [step for step in steps if step.startswith("SCAN") and "VIRTUAL TABLE" not in step], steps


ODD_NAMES = ['O"Brien^Ann', "Müller^Jörg", "ÉMILE^Zoé", "a  b^c", "x*y?z^q", "NEAR AND OR^NOT", "100%^under_score",
             "Back\\slash^x"]


@pytest.mark.parametrize("text", ['o"b', 'O"Brien', "üll", "MÜLLER", "ÉMILE", "zoé", "a  b", "x*y", "NEAR AND",
                                  "AND OR", "0%^", "r_s", "k\\sl", '"'])
@pytest.mark.parametrize("keyword", ["PatientName", "patient_words"])
def test_quotes_wildcards_and_accents_mean_what_the_plain_path_means(database, monkeypatch, text, keyword):
    """FTS5 query syntax (quotes, AND/OR/NEAR, *) and case folding beyond ASCII never change an
    answer: the same patients as LIKE on every row, whole and paged."""
    monkeypatch.setattr(dbmod, "SORT_AT_MOST", 3)
    database.store_instances([record(number, 0, 0, 0, name=name) for number, name in enumerate(ODD_NAMES)])
    found = database.patients(**{keyword: text}), database.patients(**{keyword: text}, limit=2)
    database._text_index = False
    plain = database.patients(**{keyword: text})
    assert found == (plain, plain[:2])


def test_filters_still_mean_what_they_meant(database):
    database.store_instances(population())
    assert [p["PatientID"] for p in database.patients(Modality="mr", StudyDate="20200201-20200231")] == \
        ["ID0", "ID1", "ID2", "ID3"]
    assert [s["StudyInstanceUID"] for s in database.studies(SeriesDescription="ries 2", PatientID="ID1")] == \
        ["1.2.3.1.0", "1.2.3.1.1"]
    assert [s["SeriesInstanceUID"] for s in database.series(SOPInstanceUID="1.2.3.2.1.1.0")] == ["1.2.3.2.1.1"]
    assert len(database.instances(PatientName="person3", Modality="PT")) == 4
    assert database.patients(StudyDate="20990101") == []


SCHEMA_1 = REPO / "Testing" / "data" / "schema-0.8.1+dicombrowser.1.sql"  # schema.sql as version .1 had it


def as_schema_1(current: Path, old: Path) -> None:
    """The database in `current` as version 0.8.1+dicombrowser.1 wrote it (no kept counts, its
    indexes): that version's schema.sql, filled with the same rows."""
    old.mkdir()
    shutil.copy(current / dbmod.TAGCACHE_FILE, old / dbmod.TAGCACHE_FILE)
    connection = sqlite3.connect(old / dbmod.DATABASE_FILE)
    connection.execute("ATTACH DATABASE ? AS tagcache", (str(old / dbmod.TAGCACHE_FILE),))
    connection.executescript(SCHEMA_1.read_text(encoding="utf-8"))
    connection.execute("INSERT INTO SchemaInfo VALUES ('0.8.1+dicombrowser.1')")
    connection.execute("ATTACH DATABASE ? AS current", (str(current / dbmod.DATABASE_FILE),))
    for table in ("Patients", "Studies", "Series", "Images"):
        columns = ", ".join(row[1] for row in connection.execute(f"PRAGMA main.table_info({table})"))
        connection.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM current.{table}")
    connection.commit()
    connection.close()


def test_a_database_of_the_previous_schema_is_upgraded_in_place(tmp_path, series_factory):
    files = series_factory("a", count=3) + series_factory("b", count=2, patient_id="B", patient_name="Bee")
    with DICOMDatabase(tmp_path / "db") as db:
        import_paths(db, files)
        before = db.patients()
    as_schema_1(tmp_path / "db", tmp_path / "old")
    with DICOMDatabase(tmp_path / "old") as db:
        assert db._conn().execute("SELECT Version FROM SchemaInfo").fetchone()[0] == dbmod.SCHEMA_VERSION
        assert db.patients() == before
        assert_counts_right(db)
        assert sorted(files) == sorted(Path(p) for p in db.indexed_files())
        indexes = {row[0] for row in db._conn().execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"PatientsNameIndex", "SeriesModalityIndex", "StudiesDateIndex2", "ImagesSeriesIndex2"} <= indexes
        assert not {"ImagesSeriesIndex", "SeriesStudyIndex", "StudiesPatientIndex"} & indexes
        # and it goes on working: one more series, one patient less
        import_paths(db, series_factory("c", count=2, patient_id="C", patient_name="Cee"))
        db.delete(before[0]["PatientUID"])
        assert_counts_right(db)
        assert [p["PatientID"] for p in db.patients()] == ["C", "SAMPLE1"]


def test_a_database_of_schema_2_gets_the_patient_order_copies(tmp_path):
    """Schema .2 had no copies of the patient's order columns in Studies: opening it adds and
    fills them, replaces StudiesDateIndex by StudiesDateIndex2 and creates the triggers."""
    with DICOMDatabase(tmp_path / "db") as db:
        db.store_instances(crowd(30))
        month = db.studies(StudyDate="20200301-20200331")
    connection = sqlite3.connect(tmp_path / "db" / dbmod.DATABASE_FILE)
    for trigger in ("StudiesPatientOrderInsert", "StudiesPatientOrderMove", "PatientsOrderCopies"):
        connection.execute(f"DROP TRIGGER {trigger}")
    connection.execute("DROP INDEX StudiesDateIndex2")
    for column in ("PatientOrderName", "PatientOrderID", "PatientOrderUID"):
        connection.execute(f"ALTER TABLE Studies DROP COLUMN {column}")
    connection.execute("CREATE INDEX StudiesDateIndex ON Studies (StudyDate)")
    connection.execute("UPDATE SchemaInfo SET Version = '0.8.1+dicombrowser.2'")
    connection.commit()
    connection.close()
    with DICOMDatabase(tmp_path / "db") as db:
        c = db._conn()
        assert c.execute("SELECT Version FROM SchemaInfo").fetchone()[0] == dbmod.SCHEMA_VERSION
        names = {row[0] for row in c.execute("SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger')")}
        assert {"StudiesDateIndex2", "StudiesPatientOrderInsert", "StudiesPatientOrderMove",
                "PatientsOrderCopies"} <= names and "StudiesDateIndex" not in names
        assert c.execute("SELECT COUNT(*) FROM Studies st JOIN Patients p ON p.UID = st.PatientsUID"
                         " WHERE st.PatientOrderUID = p.PatientUID AND st.PatientOrderID = p.PatientID"
                         " AND st.PatientOrderName IS p.PatientsName").fetchone()[0] == 60
        assert db.studies(StudyDate="20200301-20200331", limit=len(month)) == month
        db.store_instances([record(99, 0, 0, 0, name="New^One", date="20200315")])
        assert "New^One" in [row["PatientName"] for row in db.studies(StudyDate="20200301-20200331", limit=50)]


def test_opening_checks_integrity_only_after_an_unclean_shutdown(tmp_path, monkeypatch):
    checks: list[Path] = []
    original = DICOMDatabase._quick_check

    def counted(self, connection):
        checks.append(self.folder)
        return original(self, connection)

    monkeypatch.setattr(DICOMDatabase, "_quick_check", counted)
    folder = tmp_path / "db"
    with DICOMDatabase(folder) as db:
        db.store_instances(population(patients=1))
    with DICOMDatabase(folder):
        pass
    assert checks == []  # a clean close: the next open reads the schema version only
    # a process that dies with the database open leaves its write-ahead log behind
    killed = subprocess.run(
        [sys.executable, "-c", "import os, sys; sys.path.insert(0, sys.argv[2]);"
         "from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase;"
         "db = DICOMDatabase(sys.argv[1]); db.store_cached_value('k', 'v'); os._exit(0)", str(folder), str(REPO)],
        capture_output=True, text=True, timeout=60)
    assert killed.returncode == 0, killed.stderr
    assert (folder / "ctkDICOM.sql-wal").exists() or (folder / "ctkDICOMTagCache.sql-wal").exists()
    with DICOMDatabase(folder) as db:
        assert db.cached_value("k") == "v"
    assert len(checks) == 1
    with DICOMDatabase(folder, check=True):  # on request
        pass
    assert len(checks) == 2
    with DICOMDatabase(folder) as db:
        assert db.check_integrity() == []  # what `db verify` runs
    assert len(checks) == 2


def test_a_second_open_while_the_first_is_open_does_not_check(tmp_path, monkeypatch):
    """Another process's log is legitimately there while it has the database open."""
    calls: list[int] = []
    monkeypatch.setattr(DICOMDatabase, "_quick_check", lambda self, connection: calls.append(1))
    with DICOMDatabase(tmp_path / "db") as first:
        first.store_instances(population(patients=1))
        with DICOMDatabase(tmp_path / "db") as second:
            assert second.counts()["instances"] == 12
    assert calls == []
