"""The database commands of `dicombrowser`: a user's session, from import to delete, through the CLI.

In-process through click's runner (fixture `cli_runner`) for speed, plus one real subprocess run of
the console script and of `python -m DICOMBrowser`.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[1]


def sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    """The CLI remembers databases in the user's recent list: keep that inside the test."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def two_patients(series_factory, tmp_path):
    """Two generated patients: P1 with a CT and an MR series in one study, P2 with one CT series."""
    study = pydicom.uid.generate_uid()
    series_factory("data/p1ct", count=3, patient_id="P1", patient_name="Alpha^One", study_uid=study, modality="CT",
                   series_number=1, study_date="20200105", series_description="Head CT")
    series_factory("data/p1mr", count=2, patient_id="P1", patient_name="Alpha^One", study_uid=study, modality="MR",
                   series_number=2, study_date="20200105")
    series_factory("data/p2ct", count=4, patient_id="P2", patient_name="Beta^Two", modality="CT", study_date="20211231")
    return tmp_path / "data"


def run_json(cli_runner, *args):
    result = cli_runner(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_import_and_ls_json_shapes(cli_runner, two_patients):
    result = cli_runner("import", str(two_patients))
    assert result.exit_code == 0, result.output
    assert "9 files seen: 9 indexed" in result.output
    patients = run_json(cli_runner, "ls", "--json")
    assert [(p["PatientID"], p["PatientName"], p["NumberOfStudies"]) for p in patients] == [
        ("P1", "Alpha^One", 1), ("P2", "Beta^Two", 1)]
    studies = run_json(cli_runner, "ls", "--level", "studies", "--json")
    assert {"StudyInstanceUID", "StudyDate", "NumberOfSeries", "NumberOfInstances", "PatientID"} <= set(studies[0])
    series = run_json(cli_runner, "ls", "--level", "series", "--json")
    assert len(series) == 3
    assert {"SeriesInstanceUID", "SeriesNumber", "Modality", "NumberOfInstances", "StudyInstanceUID"} <= set(series[0])
    instances = run_json(cli_runner, "ls", "--level", "instances", "--json")
    assert len(instances) == 9
    assert {"SOPInstanceUID", "SOPClassUID", "InstanceNumber", "FilePath", "SeriesInstanceUID"} <= set(instances[0])
    assert all(Path(i["FilePath"]).is_file() for i in instances)


def test_ls_filters(cli_runner, two_patients):
    cli_runner("import", str(two_patients))
    assert [p["PatientID"] for p in run_json(cli_runner, "ls", "--name", "beta", "--json")] == ["P2"]
    assert [p["PatientID"] for p in run_json(cli_runner, "ls", "--patient-id", "P1", "--json")] == ["P1"]
    assert len(run_json(cli_runner, "ls", "--level", "series", "--modality", "CT", "--json")) == 2
    assert [s["PatientID"] for s in run_json(cli_runner, "ls", "--level", "studies", "--date-from", "20210101",
                                             "--json")] == ["P2"]
    assert [s["PatientID"] for s in run_json(cli_runner, "ls", "--level", "studies", "--date", "-20201231",
                                             "--json")] == ["P1"]
    [ct] = run_json(cli_runner, "ls", "--level", "series", "--description", "head", "--json")
    instances = run_json(cli_runner, "ls", "--level", "instances", "--uid", ct["SeriesInstanceUID"], "--json")
    assert [i["InstanceNumber"] for i in instances] == [1, 2, 3]
    table = cli_runner("ls", "--level", "series")
    assert table.exit_code == 0 and "3 series" in table.output


def test_show_every_level(cli_runner, two_patients):
    cli_runner("import", str(two_patients))
    instance = run_json(cli_runner, "ls", "--level", "instances", "--json")[0]
    shown = run_json(cli_runner, "show", instance["SOPInstanceUID"], "--json")
    assert shown["Level"] == "instance" and shown["FilePath"] == instance["FilePath"]
    assert shown["Tags"]["0010,0020"] in ("P1", "P2")
    for uid, level in ((instance["SeriesInstanceUID"], "series"), (instance["StudyInstanceUID"], "study"),
                       (instance["PatientUID"], "patient")):
        assert run_json(cli_runner, "show", uid, "--json")["Level"] == level
        text = cli_runner("show", uid)
        assert text.exit_code == 0 and uid in text.output


def test_delete_keeps_files_and_bad_uid_is_one_line_error(cli_runner, two_patients):
    cli_runner("import", str(two_patients))
    checksums = {p: sha1(p) for p in two_patients.rglob("*.dcm")}
    [p2] = run_json(cli_runner, "ls", "--patient-id", "P2", "--json")
    result = cli_runner("delete", p2["PatientUID"])
    assert result.exit_code == 0 and "4 instances" in result.output
    assert [p["PatientID"] for p in run_json(cli_runner, "ls", "--json")] == ["P1"]
    assert {p: sha1(p) for p in two_patients.rglob("*.dcm")} == checksums
    bad = cli_runner("delete", "1.2.3.4.5")
    assert bad.exit_code != 0
    assert len(bad.output.strip().splitlines()) == 1 and "1.2.3.4.5" in bad.output


def test_copy_import_and_remove_copied_files(cli_runner, two_patients):
    result = cli_runner("import", "--copy", str(two_patients))
    assert result.exit_code == 0, result.output
    instances = run_json(cli_runner, "ls", "--level", "instances", "--json")
    copied = [Path(i["FilePath"]) for i in instances]
    assert all(p.is_relative_to(cli_runner.database_dir.resolve() / "dicom") for p in copied)
    study = instances[0]["StudyInstanceUID"]
    gone = [Path(i["FilePath"]) for i in instances if i["StudyInstanceUID"] == study]
    assert cli_runner("delete", study, "--remove-copied-files").exit_code == 0
    assert not any(p.exists() for p in gone)
    assert all(p.exists() for p in two_patients.rglob("*.dcm"))


def test_db_info_verify_vacuum(cli_runner, two_patients):
    cli_runner("import", str(two_patients))
    info = run_json(cli_runner, "db", "info", "--json")
    assert (info["patients"], info["studies"], info["series"], info["instances"]) == (2, 2, 3, 9)
    assert info["folder"] == str(cli_runner.database_dir.resolve())
    ok = cli_runner("db", "verify")
    assert ok.exit_code == 0 and "0 missing" in ok.output
    victim = next(two_patients.rglob("*.dcm"))
    victim.unlink()
    bad = cli_runner("db", "verify", "--json")
    assert bad.exit_code == 1 and json.loads(bad.output)["missing"] == [str(victim)]
    repaired = cli_runner("db", "verify", "--repair")
    assert repaired.exit_code == 0 and "1 entries removed" in repaired.output
    assert cli_runner("db", "vacuum").exit_code == 0
    assert run_json(cli_runner, "db", "info", "--json")["instances"] == 8


def test_import_json_summary_reports_broken_files(cli_runner, two_patients):
    broken = two_patients / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f")
    (two_patients / "notes.txt").write_text("hello")
    summary = run_json(cli_runner, "import", "--json", str(two_patients))
    assert summary["seen"] == 11 and summary["indexed"] == 9 and summary["skipped"] == 1
    assert [Path(e[0]).name for e in summary["errors"]] == ["broken.dcm"]
    again = run_json(cli_runner, "import", "--json", str(two_patients))
    assert again["unchanged"] == 9


def test_bad_input_exit_codes(cli_runner, tmp_path):
    missing = cli_runner("import", str(tmp_path / "does-not-exist"))
    assert missing.exit_code == 1 and missing.output.strip().splitlines() == [
        f"Error: {tmp_path / 'does-not-exist'}: no such file or folder"]
    assert cli_runner("ls", "--level", "nonsense").exit_code != 0
    assert cli_runner("show", "9.9.9").exit_code == 1


@pytest.mark.parametrize("args", [[], ["import"], ["ls"], ["show"], ["delete"], ["db"], ["db", "info"],
                                  ["db", "verify"], ["db", "vacuum"]])
def test_help_everywhere(cli_runner, args):
    result = cli_runner(*args, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_console_script_and_module_with_environment_database(tmp_path, two_patients):
    env = {**os.environ, "DICOMBROWSER_DATABASE": str(tmp_path / "envdb"), "QT_QPA_PLATFORM": "offscreen"}
    script = Path(sys.executable).parent / "dicombrowser"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "DICOMBrowser"]
    done = subprocess.run([*command, "import", str(two_patients)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "envdb" / "ctkDICOM.sql").is_file()
    listed = subprocess.run([sys.executable, "-m", "DICOMBrowser", "ls", "--level", "series", "--json"], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 3


def test_temporary_database_flag(tmp_path, two_patients):
    from click.testing import CliRunner

    from DICOMBrowser.DICOMBrowserLib.cli import cli

    result = CliRunner().invoke(cli, ["--temporary", "import", "--json", str(two_patients)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["indexed"] == 9
    assert not Path(summary["database"]).exists()  # deleted when the command ended


def test_db_rebuild_after_corruption(cli_runner, two_patients):
    assert cli_runner("import", "--copy", str(two_patients)).exit_code == 0
    main = cli_runner.database_dir / "ctkDICOM.sql"
    assert cli_runner("db", "vacuum").exit_code == 0
    main.write_bytes(b"not a database" * 500)
    broken = cli_runner("ls")
    assert broken.exit_code == 1 and "db rebuild" in broken.output
    rebuilt = cli_runner("db", "rebuild", "--json")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert json.loads(rebuilt.output)["indexed"] == 9
    assert len(run_json(cli_runner, "ls", "--level", "instances", "--json")) == 9


def test_tree(cli_runner, two_patients):
    cli_runner("import", str(two_patients))
    text = cli_runner("tree")
    assert text.exit_code == 0, text.output
    assert "Alpha^One" in text.output and "Beta^Two" in text.output and "[CT\\MR]" in text.output
    nested = run_json(cli_runner, "tree", "--json")
    assert [len(p["Studies"]) for p in nested] == [1, 1]
    assert [len(s["Series"]) for p in nested for s in p["Studies"]] == [2, 1]
    only = run_json(cli_runner, "tree", "--name", "beta", "--json")
    assert [p["PatientID"] for p in only] == ["P2"]


def test_ls_pages_with_limit_and_offset(cli_runner, two_patients):
    cli_runner("import", str(two_patients))
    every = run_json(cli_runner, "ls", "--level", "instances", "--json")
    assert len(every) == 9
    pages = [run_json(cli_runner, "ls", "--level", "instances", "--json", "--limit", "4", "--offset", str(start))
             for start in (0, 4, 8)]
    assert [len(page) for page in pages] == [4, 4, 1]
    assert [row for page in pages for row in page] == every
    table = cli_runner("ls", "--level", "series", "--limit", "2")
    assert table.exit_code == 0 and "2 series" in table.output


def test_a_large_answer_is_plain_text_printed_as_it_is_read(cli_runner, two_patients, monkeypatch):
    from DICOMBrowser.DICOMBrowserLib.cli import database_commands

    cli_runner("import", str(two_patients))
    monkeypatch.setattr(database_commands, "SMALL_ANSWER", 3)  # what 200 rows are to a real database
    listing = cli_runner("ls", "--level", "instances")
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert lines[0].split("\t") == ["#", "SOP Class", "Transfer Syntax", "SOP Instance UID", "File"]
    assert len(lines) == 1 + 9 + 1 and lines[-1] == "9 instances"
    files = {line.split("\t")[4] for line in lines[1:-1]}
    assert files == {str(p) for p in two_patients.rglob("*.dcm")}
    tree = cli_runner("tree")
    assert tree.exit_code == 0, tree.output
    assert "Alpha^One ID P1  1 studies, 5 instances" in tree.output and "[CT\\MR]" in tree.output
    assert tree.output.splitlines()[-1] == "(2 patients)"
    nested = run_json(cli_runner, "tree", "--json")  # the JSON is the same however it is printed
    monkeypatch.setattr(database_commands, "SMALL_ANSWER", 200)
    assert run_json(cli_runner, "tree", "--json") == nested


def test_tree_asks_the_same_number_of_queries_for_any_number_of_patients(cli_runner, series_factory, monkeypatch):
    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase

    selects: list[str] = []
    connect = DICOMDatabase._connect

    def traced(self):
        connection = connect(self)
        connection.set_trace_callback(lambda sql: selects.append(sql) if sql.lstrip().startswith("SELECT") else None)
        return connection

    monkeypatch.setattr(DICOMDatabase, "_connect", traced)
    counts, made = [], 0
    for patients in (2, 5):
        while made < patients:
            series_factory(f"more/p{made}", count=1, patient_id=f"P{made}", patient_name=f"Person{made}")
            made += 1
        assert cli_runner("import", str(cli_runner.database_dir.parent / "more")).exit_code == 0
        selects.clear()
        tree = run_json(cli_runner, "tree", "--json")
        assert len(tree) == patients
        counts.append(len(selects))
    assert counts[0] == counts[1], counts


def test_delete_many_uids_at_once(cli_runner, two_patients):
    cli_runner("import", str(two_patients))
    [p1, p2] = run_json(cli_runner, "ls", "--json")
    mr = [s for s in run_json(cli_runner, "ls", "--level", "series", "--json") if s["Modality"] == "MR"][0]
    bad = cli_runner("delete", p2["PatientUID"], "9.9.9")
    assert bad.exit_code == 1 and "9.9.9" in bad.output
    assert len(run_json(cli_runner, "ls", "--json")) == 2  # nothing deleted
    result = cli_runner("delete", p2["PatientUID"], mr["SeriesInstanceUID"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "2 UIDs deleted: 6 instances"
    assert [(p["PatientID"], p["NumberOfInstances"]) for p in run_json(cli_runner, "ls", "--json")] == [("P1", 3)]


def test_db_verify_limited_and_by_uid(cli_runner, two_patients):
    cli_runner("import", str(two_patients))
    [p2] = run_json(cli_runner, "ls", "--patient-id", "P2", "--json")
    p2_files = sorted(run_json(cli_runner, "ls", "--level", "instances", "--uid", p2["PatientUID"], "--json"),
                      key=lambda row: row["FilePath"])
    Path(p2_files[0]["FilePath"]).unlink()
    some = run_json(cli_runner, "db", "verify", "--json", "--limit", "2")
    assert some["checked"] == 2
    mine = cli_runner("db", "verify", "--uid", p2["PatientUID"])
    assert mine.exit_code == 1 and mine.output.splitlines()[0] == f"missing: {p2_files[0]['FilePath']}"
    assert "4 files checked: 1 missing" in mine.output
    every = cli_runner("db", "verify", "--json")
    assert every.exit_code == 1
    assert json.loads(every.output)["integrity"] == [] and json.loads(every.output)["missing"] == [
        p2_files[0]["FilePath"]]


def test_db_verify_runs_the_integrity_check_that_opening_skips(cli_runner, two_patients):
    cli_runner("import", str(two_patients))
    assert cli_runner("db", "vacuum").exit_code == 0
    main = cli_runner.database_dir / "ctkDICOM.sql"
    connection = sqlite3.connect(main)
    root, page = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'Images'").fetchone()[0], \
        connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    data = bytearray(main.read_bytes())
    data[(root - 1) * page:root * page] = b"\xa5" * page  # the Images table's page: opening reads no row of it
    main.write_bytes(bytes(data))
    damaged = cli_runner("db", "verify")
    assert damaged.exit_code == 1
    assert damaged.output.startswith("integrity: ") and "db rebuild" in damaged.output
