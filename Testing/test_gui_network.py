"""Query/retrieve and send from the browser against a real Orthanc on 127.0.0.1.

Orthanc (Debian package `orthanc`) holds the real CT head; the query dialog finds it by a
wildcard name, "Retrieve selected" fetches it by C-GET into our database, and the browser's
Send puts a generated series into Orthanc, checked through Orthanc's REST API.
"""
from __future__ import annotations

import os

import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("pytestqt")
QtWidgets = pytest.importorskip("PySide6.QtWidgets")

from network_peers import OrthancPeer, free_port, have_orthanc  # noqa: E402

from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic  # noqa: E402
from DICOMBrowser.DICOMBrowserLib.config import RemoteNode  # noqa: E402

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.skipif(not have_orthanc(), reason="Orthanc (apt-get install orthanc) not installed")]

CT_HEAD = "slicer_ct_head/Testing/Data/Input/CTHeadAxialDicom"


@pytest.fixture
def orthanc(tmp_path):
    our_port = free_port()
    with OrthancPeer(tmp_path / "orthanc", modalities={"browser": ("BROWSERTEST", our_port)}) as peer:
        peer.our_port = our_port
        yield peer


@pytest.fixture
def logic(tmp_path, monkeypatch, orthanc):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    logic = DICOMBrowserLogic(tmp_path / "db")
    settings = logic.settings
    settings.ae_title = "BROWSERTEST"
    settings.port = orthanc.our_port
    settings.listen_host = "127.0.0.1"
    settings.nodes["orthanc"] = RemoteNode("orthanc", orthanc.ae_title, "127.0.0.1", orthanc.dicom_port, "get")
    logic.save_settings(settings)
    yield logic
    logic.close()


def test_query_retrieve_dialog_fetches_a_study(qtbot, logic, orthanc, corpus):
    from DICOMBrowser.DICOMBrowserLib.widgets.dialogs import QueryRetrieveDialog

    assert orthanc.upload([corpus / CT_HEAD]) == 93
    dialog = QueryRetrieveDialog(logic)
    qtbot.addWidget(dialog)
    assert dialog.node_combo.currentText() == "orthanc"
    dialog.filter_edits["PatientName"].setText("Austr*")
    matches = dialog.run_query()
    assert len(matches) == 1 and dialog.results.rowCount() == 1
    assert dialog.results.item(0, 0).text() == "Austrialian"
    dialog.filter_edits["PatientName"].setText("Nobody*")
    assert dialog.run_query() == [] and dialog.results.rowCount() == 0

    dialog.filter_edits["PatientName"].setText("")
    dialog.run_query()
    dialog.results.selectRow(0)
    with qtbot.waitSignal(dialog.retrieved, timeout=120_000):
        summaries = dialog.retrieve_selected()
    assert summaries and summaries[0].ok, summaries
    assert len(logic.database.instances()) == 93
    assert "Retrieved 1 of 1" in dialog.message.text()


def test_send_selected_series_to_orthanc(qtbot, logic, orthanc, series_factory, tmp_path, monkeypatch):
    from DICOMBrowser.DICOMBrowserLib.widgets.browser import DICOMBrowserPanel

    series_factory("send", count=4, patient_name="Send^Test", patient_id="SEND1")
    logic.import_paths([tmp_path / "send"])
    panel = DICOMBrowserPanel(logic)
    qtbot.addWidget(panel)
    messages = []
    panel.show_message = lambda title, text, error=False: messages.append((title, text, error))
    panel.patient_table.selectRow(0)
    series_uid = panel.selected_series_uids()[0]
    assert panel.send_action.isEnabled()
    monkeypatch.setattr(QtWidgets.QInputDialog, "getItem", lambda *args, **kwargs: ("orthanc", True))
    panel.send_action.trigger()
    assert messages and not messages[-1][2], messages
    assert len(orthanc.find_series(series_uid)) == 1
    panel.shutdown()


def test_failed_query_goes_to_the_dialog_and_error_log(qtbot, logic, orthanc):
    from DICOMBrowser.DICOMBrowserLib.widgets.dialogs import QueryRetrieveDialog
    from DICOMBrowser.DICOMBrowserLib.widgets.errorlog import ErrorLogPanel

    log = ErrorLogPanel()
    qtbot.addWidget(log)
    log.install()
    try:
        settings = logic.settings
        settings.nodes["dead"] = RemoteNode("dead", "DEAD", "127.0.0.1", free_port(), "get")
        logic.save_settings(settings)
        dialog = QueryRetrieveDialog(logic)
        qtbot.addWidget(dialog)
        dialog.node_combo.setCurrentText("dead")
        assert dialog.run_query() == []
        assert "failed" in dialog.message.text()
        qtbot.waitUntil(lambda: log.table.rowCount() > 0, timeout=5000)
        assert any("dead" in message for message in log.messages())
    finally:
        log.uninstall()


def test_settings_dialog_verifies_a_node_with_c_echo(qtbot, logic, orthanc):
    from DICOMBrowser.DICOMBrowserLib.widgets.dialogs import SettingsDialog

    dialog = SettingsDialog(logic)
    qtbot.addWidget(dialog)
    assert dialog.echo_button.isEnabled()
    dialog.nodes.setCurrentCell(0, 0)
    dialog.echo_current()
    assert "C-ECHO to orthanc: OK" in dialog.message.text()
