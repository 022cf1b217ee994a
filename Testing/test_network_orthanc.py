"""Our CLI against a real Orthanc (started from a generated configuration on 127.0.0.1):
echo, find at each level with filters and wildcards, retrieve by C-MOVE and C-GET, send."""
from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
from network_peers import OrthancPeer, free_port, have_orthanc

pytestmark = [pytest.mark.network, pytest.mark.timeout(180),
              pytest.mark.skipif(not have_orthanc(), reason="Orthanc (apt-get install orthanc) not installed")]

AE = "DBTEST"


def _sop_uids(folder: Path) -> dict[str, str]:
    """SOPInstanceUID -> StudyInstanceUID of every DICOM file under folder."""
    uids = {}
    for path in folder.rglob("*"):
        if path.is_file():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except (pydicom.errors.InvalidDicomError, OSError):
                continue
            uids[str(ds.SOPInstanceUID)] = str(ds.StudyInstanceUID)
    return uids


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, corpus):
    """An Orthanc holding the CT head series and a patient with 2 studies; our AE is a known modality."""
    listener_port = free_port()
    peer = OrthancPeer(tmp_path_factory.mktemp("orthanc"), modalities={"dicombrowser": (AE, listener_port)})
    peer.start()
    try:
        peer.listener_port = listener_port
        peer.upload([corpus / "slicer_ct_head", corpus / "orthanc_tests/Database/PatientWith2studies"])
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def cli(cli_runner, orthanc):
    """The CLI on a fresh database configured with our AE, a local listener port and the Orthanc node."""
    for args in (("config", "set", "ae-title", AE), ("config", "set", "port", str(orthanc.listener_port)),
                 ("config", "set", "host", "127.0.0.1"),
                 ("node", "add", "orthanc", "--ae-title", orthanc.ae_title, "--host", "127.0.0.1",
                  "--port", str(orthanc.dicom_port))):
        result = cli_runner(*args)
        assert result.exit_code == 0, result.output
    return cli_runner


def _json(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _database_sops(cli) -> set[str]:
    database = DICOMDatabase(cli.database_dir)
    try:
        return {row["SOPInstanceUID"] for row in database.instances()}
    finally:
        database.close()


def test_echo(cli):
    result = cli("echo", "orthanc")
    assert result.exit_code == 0, result.output
    assert "C-ECHO succeeded" in result.output


def test_find_studies_with_filters_and_wildcards(cli, corpus):
    ct_study = next(iter(set(_sop_uids(corpus / "slicer_ct_head").values())))
    matches = _json(cli("find", "orthanc", "--patient-name", "Aus*", "--json"))
    assert [m["StudyInstanceUID"] for m in matches] == [ct_study]
    assert matches[0]["NumberOfStudyRelatedInstances"] == "93"
    assert matches[0]["ModalitiesInStudy"] == "CT"
    assert len(_json(cli("find", "orthanc", "--patient-id", "TEST_1", "--json"))) == 2
    in_range = _json(cli("find", "orthanc", "--study-date", "20100101-20121231", "--json"))
    assert [m["AccessionNumber"] for m in in_range] == ["1234"]
    assert [m["StudyDate"] for m in _json(cli("find", "orthanc", "--accession-number", "2345", "--json"))] == ["20150101"]
    assert len(_json(cli("find", "orthanc", "--study-description", "Test CT*", "--json"))) == 2
    assert len(_json(cli("find", "orthanc", "--patient-name", "T?st", "--modality", "CT", "--json"))) == 2
    assert _json(cli("find", "orthanc", "--patient-name", "Nobody*", "--json")) == []
    table = cli("find", "orthanc", "--patient-name", "Aus*")
    assert table.exit_code == 0 and ct_study in table.stdout


def test_find_patients_and_series(cli, corpus):
    patients = _json(cli("find", "orthanc", "--level", "patient", "--patient-name", "*", "--json"))
    assert {p["PatientID"] for p in patients} == {"8775070", "TEST_1"}
    test_patient = next(p for p in patients if p["PatientID"] == "TEST_1")
    assert test_patient["NumberOfPatientRelatedStudies"] == "2"
    ct_study = next(iter(set(_sop_uids(corpus / "slicer_ct_head").values())))
    series = _json(cli("find", "orthanc", "--level", "series", "--study-uid", ct_study, "--json"))
    assert len(series) == 1
    assert series[0]["Modality"] == "CT" and series[0]["NumberOfSeriesRelatedInstances"] == "93"


@pytest.mark.slow
def test_retrieve_by_move_then_by_get(cli, corpus, orthanc, monkeypatch):
    """C-MOVE the CT study to our (temporary) listener, then C-GET one series: the database holds
    exactly those, and every instance was served by the store lane (the listener's for the C-MOVE,
    with Orthanc's Move Originator in each request; the C-GET association's own)."""
    from DICOMBrowser.DICOMBrowserLib.networking import storelane

    served: list[bool] = []  # is_acceptor of the association that served one instance
    serve = storelane.StoreLane._serve

    def recording(lane):
        served.append(lane.assoc.is_acceptor)
        serve(lane)

    monkeypatch.setattr(storelane.StoreLane, "_serve", recording)
    ct = _sop_uids(corpus / "slicer_ct_head")
    ct_study = next(iter(set(ct.values())))
    result = cli("retrieve", "orthanc", ct_study)
    assert result.exit_code == 0, result.output
    assert "93 completed, 0 failed" in result.stdout
    assert _database_sops(cli) == set(ct)
    assert served == [True] * 93

    two = _sop_uids(corpus / "orthanc_tests/Database/PatientWith2studies")
    study = sorted(set(two.values()))[0]
    series = _json(cli("find", "orthanc", "--level", "series", "--study-uid", study, "--json"))
    result = cli("retrieve", "orthanc", "--method", "get", "--level", "series", series[0]["SeriesInstanceUID"])
    assert result.exit_code == 0, result.output
    expected = {sop for sop, st in two.items() if st == study}
    assert _database_sops(cli) == set(ct) | expected
    retrieved = int(series[0]["NumberOfSeriesRelatedInstances"])
    assert retrieved >= 1 and served == [True] * 93 + [False] * retrieved


def test_send_series_arrives_in_orthanc(cli, orthanc, series_factory):
    files = series_factory(count=12, patient_id="SENDTEST", patient_name="Send^Test")
    sops = {str(pydicom.dcmread(f).SOPInstanceUID) for f in files}
    series_uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    database = DICOMDatabase(cli.database_dir)
    try:
        from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

        import_paths(database, [files[0].parent])
    finally:
        database.close()
    result = cli("send", "orthanc", series_uid)
    assert result.exit_code == 0, result.output
    assert "Sent 12 of 12" in result.stdout
    [orthanc_series] = orthanc.find_series(series_uid)
    instances = orthanc.rest(f"/series/{orthanc_series}/instances")
    assert {i["MainDicomTags"]["SOPInstanceUID"] for i in instances} == sops


def test_logic_background_listener_receives_a_move(tmp_path, corpus, orthanc):
    """The GUI path: start the listener from the logic, C-MOVE into it while it runs, read its status."""
    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic
    from DICOMBrowser.DICOMBrowserLib.networking import nodes

    logic = DICOMBrowserLogic(database_dir=tmp_path / "gui-db")
    try:
        folder = logic.database_folder
        nodes.set_ae_title(folder, AE)
        nodes.add_node(folder, "orthanc", orthanc.ae_title, "127.0.0.1", orthanc.dicom_port)
        status = logic.start_listener(port=orthanc.listener_port, host="127.0.0.1")
        assert status.running and status.port == orthanc.listener_port
        two = _sop_uids(corpus / "orthanc_tests/Database/PatientWith2studies")
        study = sorted(set(two.values()))[-1]
        summary = logic.retrieve("orthanc", [study], level="study", method="move")
        assert summary.ok and summary.received == summary.completed == sum(1 for s in two.values() if s == study)
        assert logic.listener_status().running
        assert {r["SOPInstanceUID"] for r in logic.database.instances()} == {s for s, st in two.items() if st == study}
        final = logic.stop_listener()
        assert not final.running and final.indexed == summary.received
    finally:
        logic.stop_listener()
        logic.close()
