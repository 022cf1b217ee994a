"""The browser's search box goes through the database's one filter path, on the table's thread.

Story: a database of generated patients whose names all start alike (`Name0...`); the user types
part of one name, then part of an ID, then a word every patient has. Each time the table shows
what `patients(patient_words=...)` answers, in the same order; the page read was the query
`patient_page_query` built from the API's filter (the rare trigrams read from the names' and IDs'
trigram indexes when there is one), and it ran on the model's thread, never on the GUI thread.
"""
from __future__ import annotations

import os
import threading

import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("pytestqt")
pytest.importorskip("PySide6.QtWidgets")

from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic, DICOMBrowserWidget  # noqa: E402
from DICOMBrowser.DICOMBrowserLib import database as database_module  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.database import DATABASE_TAGS, InstanceRecord  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def generated(patients: int) -> list[InstanceRecord]:
    """One instance per patient; names `Name0NNN^GivenK` in an order unrelated to the IDs."""
    t = DATABASE_TAGS
    records = []
    for patient in range(patients):
        study = f"1.2.3.{patient}.0"
        values = {t["PatientName"]: f"Name{(patient * 37) % patients:04d}^Given{patient % 7}",
                  t["PatientID"]: f"ID{patient:05d}", t["StudyInstanceUID"]: study, t["StudyDate"]: "20200101",
                  t["SeriesInstanceUID"]: f"{study}.0", t["SeriesNumber"]: "1", t["Modality"]: "CT",
                  t["SOPInstanceUID"]: f"{study}.0.0", t["InstanceNumber"]: "1"}
        records.append(InstanceRecord(path=f"/nonexistent/{patient}.dcm", size=1, mtime_ns=1, values=values))
    return records


@pytest.fixture
def panel(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    logic = DICOMBrowserLogic(tmp_path / "db")
    logic.database.store_instances(generated(300))
    widget = DICOMBrowserWidget(logic)
    panel = widget.setup()
    qtbot.addWidget(panel)
    panel.show_message = lambda title, text, error=False: None
    panel.resize(900, 700)
    panel.show()
    yield panel
    widget.cleanup()
    logic.close()


def shown_uids(panel) -> list[str]:
    model = panel.patient_model
    return [model.uid(row) for row in range(model.filtered_count)]


def test_the_search_box_reads_the_api_filter_on_the_tables_thread(qtbot, panel, monkeypatch):
    monkeypatch.setattr(database_module, "SORT_AT_MOST", 50)  # a trigram in 50 of 300 names is common
    queries: list[tuple[bool, str]] = []
    build = database_module.patient_page_query

    def recorded(*args, **kwargs):
        sql, params = build(*args, **kwargs)
        queries.append((threading.current_thread() is threading.main_thread(), sql))
        return sql, params

    monkeypatch.setattr(database_module, "patient_page_query", recorded)
    model = panel.patient_model
    database = panel.logic.database
    qtbot.waitUntil(lambda: not model.busy and model.total_count == 300, timeout=30_000)

    # (text in the box, read from the trigram indexes): part of a name, that and part of its
    # patient's ID, a word of every name (`giv`: its trigrams are common, the name index is walked), a
    # given name of every seventh patient (43 rows: rare), nothing
    for text, indexed in (("name0123", True), ("name0123 ID00279", True), ("GIV", False), ("en3", True),
                          ("", False)):
        queries.clear()
        if text == "name0123":
            qtbot.keyClicks(panel.search, text)  # typed: a read per keystroke, the last one counts
        else:
            panel.search.setText(text)
        # (the table reads pages of 200: the whole list shows its first rows)
        expected = [row["PatientUID"] for row in database.patients(patient_words=text)][:200]
        qtbot.waitUntil(lambda: not model.busy and shown_uids(panel)[:200] == expected, timeout=30_000)
        assert queries and not any(on_gui for on_gui, _ in queries), text
        last = queries[-1][1]
        if indexed:
            assert "PatientsNameText MATCH" in last and "PatientsIDText MATCH" in last, last
        else:
            assert "MATCH" not in last, last
        if text == "en3":
            assert len(expected) == 43  # Given3: every seventh of 300 patients
        if text.startswith("name0123"):
            assert len(expected) == 1  # patient 279 (ID00279) is Name0123
