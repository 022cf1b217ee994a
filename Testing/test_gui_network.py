"""Query/retrieve, send and C-ECHO from the browser against a real Orthanc on 127.0.0.1.

Orthanc (Debian package `orthanc`) holds the real CT head; the query dialog finds it by a
wildcard name, "Retrieve selected" fetches it by C-GET into our database, and the browser's
Send puts a generated series into Orthanc, checked through Orthanc's REST API.

Every network operation runs on a NetworkTask thread: a QTimer ticking in the GUI thread must
keep firing while a query runs, while the 93-slice CT is retrieved, while a series is sent and
while a silent peer lets a C-ECHO time out, which it cannot when the call blocks the GUI thread
(the timer then fires zero times). The dialogs speak a user's words: readable headers and
dates, an "In database" column, the series of a study, the last used node, what a partial
retrieve brought, and a Send dialog naming what goes to which node.
"""
from __future__ import annotations

import os
import socket
import time

import pytest

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest.importorskip("pytestqt")
QtWidgets = pytest.importorskip("PySide6.QtWidgets")

QtCore = pytest.importorskip("PySide6.QtCore")

from gui_ticks import TickRecorder  # noqa: E402
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
    settings.nodes["orthanc-move"] = RemoteNode("orthanc-move", orthanc.ae_title, "127.0.0.1", orthanc.dicom_port,
                                                "move")
    logic.save_settings(settings)
    yield logic
    logic.close()


@pytest.fixture
def no_tasks_left():
    """After the test no network thread may still run (a QThread deleted while running aborts)."""
    yield
    from DICOMBrowser.DICOMBrowserLib.widgets.workers import running_tasks, stop_tasks

    assert stop_tasks(60_000)
    assert running_tasks() == []


def test_query_retrieve_dialog_fetches_a_study(qtbot, logic, orthanc, corpus, no_tasks_left):
    from DICOMBrowser.DICOMBrowserLib.widgets.dialogs import QueryRetrieveDialog

    assert orthanc.upload([corpus / CT_HEAD]) == 93
    dialog = QueryRetrieveDialog(logic)
    qtbot.addWidget(dialog)
    assert dialog.node_combo.currentText() == "orthanc"
    dialog.filter_edits["PatientName"].setText("Austr*")
    ticks = TickRecorder(dialog.busy)
    with qtbot.waitSignal(dialog.queryFinished, timeout=60_000) as finished:
        assert dialog.run_query() is not None
        assert not dialog.query_button.isEnabled()  # no second query while one runs
    ticks.stop()
    assert ticks.busy_ticks() >= 1, "the GUI thread was blocked during the query"
    assert finished.args == [1] and dialog.results.rowCount() == 1 and len(dialog.matches) == 1
    assert dialog.results.item(0, 0).text() == "Austrialian"
    # readable headers and dates; the UID column is there for the code, hidden
    headers = [dialog.results.horizontalHeaderItem(c).text() for c in range(dialog.results.columnCount())
               if not dialog.results.isColumnHidden(c)]
    assert headers == ["Patient name", "Patient ID", "Study date", "Description", "Modalities", "Instances",
                       "In database"]
    date = dialog.results.item(0, 2).text()
    assert len(date) == 10 and date[4] == date[7] == "-", date
    assert dialog.results.item(0, 6).text() == ""  # not in our database yet
    assert dialog.query_button.isEnabled() and dialog.retrieve_button.isEnabled()
    dialog.filter_edits["PatientName"].setText("Nobody*")
    with qtbot.waitSignal(dialog.queryFinished, timeout=60_000) as finished:
        dialog.run_query()
    assert finished.args == [0] and dialog.matches == [] and dialog.results.rowCount() == 0

    dialog.filter_edits["PatientName"].setText("")
    with qtbot.waitSignal(dialog.queryFinished, timeout=60_000):
        dialog.run_query()
    dialog.results.selectRow(0)

    # Cancel after 10 instances: the retrieve stops, what arrived stays, the dialog says so
    def cancel_after_ten(completed, remaining, failed, warning):
        if completed >= 10:
            dialog.cancel()

    with qtbot.waitSignal(dialog.retrieveFinished, timeout=120_000):
        task = dialog.retrieve_selected()
        assert task is not None and dialog.cancel_button.isEnabled()
        task.progressed.connect(cancel_after_ten)
    assert dialog.message.text().startswith("Cancelled."), dialog.message.text()
    assert 10 <= len(logic.database.instances()) < 93
    assert not dialog.cancel_button.isEnabled() and dialog.retrieve_button.isEnabled()

    # The whole study, with a timer ticking in the GUI thread all along
    retrieved = []
    dialog.retrieved.connect(retrieved.append)
    ticks = TickRecorder(dialog.busy)
    started = time.monotonic()
    with qtbot.waitSignal(dialog.retrieveFinished, timeout=120_000) as finished:
        assert dialog.retrieve_selected() is not None
        assert not dialog.query_button.isEnabled() and not dialog.retrieve_button.isEnabled()
        assert not dialog.node_combo.isEnabled() and dialog.cancel_button.isEnabled()
    elapsed = time.monotonic() - started
    ticks.stop()
    print(f"retrieve of 93 instances: {elapsed:.2f} s, {ticks.busy_ticks()} GUI timer ticks while busy, "
          f"longest gap {ticks.longest_gap() * 1000:.0f} ms")
    assert finished.args == [1], dialog.message.text()
    assert ticks.busy_ticks() >= 3, "the GUI thread was blocked during the retrieve"
    assert dialog.last_progress is not None
    completed, remaining, failed, warning = dialog.last_progress
    assert completed + warning == 93 and remaining == 0 and failed == 0, dialog.last_progress
    assert dialog.progress.maximum() == 93 and dialog.progress.value() == 93
    assert len(logic.database.instances()) == 93
    assert dialog.summaries and dialog.summaries[0].ok, dialog.summaries
    assert retrieved and retrieved[0] is not None
    assert "Retrieved 1 of 1" in dialog.message.text() and "93 instances" in dialog.message.text()
    assert dialog.query_button.isEnabled() and not dialog.cancel_button.isEnabled()
    # queried again: the study is marked as in the database
    with qtbot.waitSignal(dialog.queryFinished, timeout=60_000):
        dialog.run_query()
    assert dialog.results.item(0, 6).text() == "yes"
    dialog.results.selectRow(0)

    # Again by C-MOVE to a listener the logic starts for the retrieve: same counts, same progress
    study_uid = dialog.selected_study_uids()[0]
    logic.delete(study_uid)
    assert len(logic.database.instances()) == 0
    dialog.node_combo.setCurrentText("orthanc-move")
    with qtbot.waitSignal(dialog.retrieveFinished, timeout=120_000) as finished:
        dialog.retrieve_selected()
    assert finished.args == [1], dialog.message.text()
    assert dialog.summaries[0].method == "move" and dialog.summaries[0].received == 93
    assert dialog.last_progress[0] + dialog.last_progress[3] == 93 and dialog.last_progress[1] == 0
    assert len(logic.database.instances()) == 93

    # series level: the study's series listed by a double-click, one series retrieved by C-GET
    logic.delete(study_uid)
    dialog.node_combo.setCurrentText("orthanc")
    with qtbot.waitSignal(dialog.queryFinished, timeout=60_000):
        dialog.run_query()
    dialog.results.selectRow(0)
    with qtbot.waitSignal(dialog.seriesFinished, timeout=60_000) as finished:
        dialog.results.itemDoubleClicked.emit(dialog.results.item(0, 0))
    assert finished.args == [1] and dialog.series_results.item(0, 1).text() == "CT"
    assert dialog.series_results.item(0, 3).text() == "93" and dialog.series_results.item(0, 4).text() == ""
    dialog.series_results.selectRow(0)
    with qtbot.waitSignal(dialog.retrieveFinished, timeout=120_000) as finished:
        dialog.retrieve_selected()
    assert finished.args == [1] and "Retrieved 1 of 1 series" in dialog.message.text(), dialog.message.text()
    assert len(logic.database.instances()) == 93


def test_query_dialog_is_non_modal_and_defaults_to_the_last_node(qtbot, logic, orthanc, corpus, no_tasks_left):
    from DICOMBrowser.DICOMBrowserLib.widgets.browser import DICOMBrowserPanel

    panel = DICOMBrowserPanel(logic)
    qtbot.addWidget(panel)
    dialog = panel.open_query_dialog()
    assert dialog.isVisible() and not dialog.isModal()
    assert panel.patient_table.isEnabled()  # the browser stays usable
    assert dialog.node_combo.currentText() == "orthanc"
    dialog.node_combo.setCurrentText("orthanc-move")
    with qtbot.waitSignal(dialog.queryFinished, timeout=60_000):
        dialog.run_query()
    dialog.close()
    qtbot.waitUntil(lambda: panel._query_dialog is None, timeout=5000)
    again = panel.open_query_dialog()
    assert again is not dialog and again.node_combo.currentText() == "orthanc-move"
    again.close()
    panel.shutdown()


def test_partial_retrieve_says_what_arrived(qtbot, logic):
    """A peer that sends 16 of 17 instances and ends with a failure status: the message says so."""
    from DICOMBrowser.DICOMBrowserLib.networking.scu import RetrieveSummary
    from DICOMBrowser.DICOMBrowserLib.widgets.dialogs import QueryRetrieveDialog

    dialog = QueryRetrieveDialog(logic)
    qtbot.addWidget(dialog)

    class Finished:
        cancel_requested = False
        result = [("1.2.3", RetrieveSummary("get", completed=16, failed=1, status=0xC000, received=16), None)]

    dialog.task, dialog._node, dialog._uids, dialog._level = Finished(), "pacs", ["1.2.3"], "study"
    dialog._retrieve_done()
    text = dialog.message.text()
    assert text.startswith("Retrieved 0 of 1 study completely from pacs; 16 instances arrived, 1 failed "
                           "(what arrived is in the database)"), text
    assert "status 0xC000: the node could not process the request" in text


def test_send_selected_series_to_orthanc(qtbot, logic, orthanc, series_factory, tmp_path, monkeypatch,
                                         no_tasks_left):
    from DICOMBrowser.DICOMBrowserLib.widgets.browser import DICOMBrowserPanel

    series_factory("send", count=20, patient_name="Send^Test", patient_id="SEND1")
    logic.import_paths([tmp_path / "send"])
    panel = DICOMBrowserPanel(logic)
    qtbot.addWidget(panel)
    messages = []
    panel.show_message = lambda title, text, error=False: messages.append((title, text, error))
    qtbot.waitUntil(lambda: panel.patient_model.filtered_count == 1, timeout=30_000)  # read on a thread
    panel.patient_table.selectRow(0)
    series_uid = panel.selected_series_uids()[0]
    assert panel.send_action.isEnabled()

    # the Send dialog names what is sent and where to
    from DICOMBrowser.DICOMBrowserLib.widgets.dialogs import SendDialog

    send_dialog = SendDialog(logic, [series_uid])
    qtbot.addWidget(send_dialog)
    assert send_dialog.what[0].startswith("Series ") and send_dialog.what[0].endswith(", 20 instances, of Send, Test"), \
        send_dialog.what
    assert send_dialog.node_combo.currentText().startswith(f"orthanc  ({orthanc.ae_title} at 127.0.0.1:")
    panel.ask_send_target = lambda uids: "orthanc"

    # Cancel in the progress dialog right away: the send stops after the file in flight
    with qtbot.waitSignal(panel.sendFinished, timeout=60_000) as finished:
        panel.send_action.trigger()
        panel._send_progress_dialog.findChild(QtWidgets.QPushButton).click()  # its Cancel button
    assert finished.args == [False]
    assert messages[-1][0] == "Send cancelled" and not messages[-1][2], messages
    summary = panel.last_send_summary
    assert summary.total == 20 and summary.sent < 20
    assert {reason for _, reason in summary.failed} == {"cancelled"}

    ticks = TickRecorder(lambda: panel.network_busy)
    with qtbot.waitSignal(panel.sendFinished, timeout=60_000) as finished:
        panel.send_action.trigger()
        assert not panel.send_action.isEnabled() and not panel.query_action.isEnabled()
    ticks.stop()
    assert ticks.busy_ticks() >= 1, "the GUI thread was blocked during the send"
    assert finished.args == [True]
    assert messages and not messages[-1][2], messages
    assert "20 of 20 instances sent" in messages[-1][1]
    assert panel.last_send_progress == (20, 0, 0, 0)
    assert panel.last_send_summary.ok
    assert panel.send_action.isEnabled() and panel.query_action.isEnabled()
    assert len(orthanc.find_series(series_uid)) == 1
    panel.shutdown()


def test_failed_query_and_retrieve_go_to_the_dialog_and_error_log(qtbot, logic, orthanc, no_tasks_left):
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
        with qtbot.waitSignal(dialog.queryFinished, timeout=60_000) as finished:
            dialog.run_query()
        assert finished.args == [-1] and dialog.matches == []
        assert "Query of dead failed" in dialog.message.text() and "refused" in dialog.message.text()
        qtbot.waitUntil(lambda: any("dead" in message for message in log.messages()), timeout=5000)

        # a study row as if an earlier query had listed it; the node is dead
        dialog.results.setRowCount(1)
        column = dialog.RESULT_COLUMNS.index("StudyInstanceUID")
        dialog.results.setItem(0, column, QtWidgets.QTableWidgetItem("1.2.3.4.5"))
        dialog.results.selectRow(0)
        with qtbot.waitSignal(dialog.retrieveFinished, timeout=60_000) as finished:
            dialog.retrieve_selected()
        assert finished.args == [0]
        assert "Retrieve of 1.2.3.4.5 from dead failed" in dialog.message.text()
        qtbot.waitUntil(lambda: any("1.2.3.4.5" in m and "dead" in m for m in log.messages()), timeout=5000)
        assert len(logic.database.instances()) == 0
    finally:
        log.uninstall()


def test_settings_dialog_verifies_a_node_with_c_echo(qtbot, logic, orthanc, no_tasks_left):
    from DICOMBrowser.DICOMBrowserLib.widgets.dialogs import SettingsDialog

    dialog = SettingsDialog(logic)
    qtbot.addWidget(dialog)
    assert dialog.echo_button.isEnabled()
    dialog.nodes.setCurrentCell(0, 0)
    with qtbot.waitSignal(dialog.echoFinished, timeout=30_000) as finished:
        dialog.echo_current()
        assert not dialog.echo_button.isEnabled()
    assert finished.args == [True]
    assert "C-ECHO to orthanc: OK" in dialog.message.text()
    assert dialog.echo_button.isEnabled()


def test_c_echo_to_a_silent_peer_times_out_without_freezing(qtbot, logic, no_tasks_left):
    """A peer that accepts TCP but never answers: the 10 s association timeout passes in a thread."""
    from DICOMBrowser.DICOMBrowserLib.widgets.dialogs import SettingsDialog
    from DICOMBrowser.DICOMBrowserLib.widgets.errorlog import ErrorLogPanel

    log = ErrorLogPanel()
    qtbot.addWidget(log)
    log.install()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the handshake; nobody ever reads or answers
        settings = logic.settings
        settings.nodes = {"silent": RemoteNode("silent", "SILENT", "127.0.0.1", silent.getsockname()[1], "get")}
        logic.save_settings(settings)
        try:
            dialog = SettingsDialog(logic)
            qtbot.addWidget(dialog)
            dialog.nodes.setCurrentCell(0, 0)
            ticks = TickRecorder(lambda: dialog.echo_running, 50)
            with qtbot.waitSignal(dialog.echoFinished, timeout=60_000) as finished:
                dialog.echo_current()
                assert "C-ECHO to silent…" in dialog.message.text()
            ticks.stop()
            assert finished.args == [False]
            assert "C-ECHO to silent failed" in dialog.message.text()
            assert "timed out" in dialog.message.text() or "no answer" in dialog.message.text(), dialog.message.text()
            assert ticks.busy_ticks() >= 50, "the GUI thread was blocked during the C-ECHO"
            qtbot.waitUntil(lambda: any("C-ECHO to silent failed" in m for m in log.messages()), timeout=5000)
        finally:
            log.uninstall()
