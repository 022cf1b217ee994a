"""DICOMBrowserLogic as a user of the Python API sees it: databases, switching, closing."""
from __future__ import annotations

import socket

from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic
from DICOMBrowser.DICOMBrowserLib import sampledata


def test_switching_between_two_databases_keeps_each_ones_content(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    sampledata.write_series(tmp_path / "a", count=3, patient_id="A", patient_name="Alpha^A")
    sampledata.write_series(tmp_path / "b", count=4, patient_id="B", patient_name="Beta^B")
    logic = DICOMBrowserLogic(database_dir=first)
    logic.import_paths([tmp_path / "a"])
    logic.switch_database(second)
    logic.import_paths([tmp_path / "b"])
    assert [p["PatientID"] for p in logic.patients()] == ["B"]
    logic.switch_database(first)
    assert [p["PatientID"] for p in logic.patients()] == ["A"]
    assert len(logic.instances()) == 3
    logic.close()


def test_temporary_database_disappears_on_close(tmp_path):
    sampledata.write_series(tmp_path / "a", count=2)
    logic = DICOMBrowserLogic(temporary=True)
    logic.import_paths([tmp_path / "a"])
    folder = logic.database_folder
    assert folder.is_dir()
    logic.close()
    assert not folder.exists()
    assert all(p.exists() for p in (tmp_path / "a").iterdir()), "the imported files must stay"


def test_close_stops_the_listener_and_frees_its_port(tmp_path, free_port):
    logic = DICOMBrowserLogic(database_dir=tmp_path / "db")
    logic.start_listener(port=free_port, host="127.0.0.1")
    logic.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port))  # raises if the listener still holds it
