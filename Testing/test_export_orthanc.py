"""Export into a study received from a real Orthanc (127.0.0.1, free ports, started and stopped
here), sent back to it: Orthanc's REST API shows the new series in that study; a de-identified
send arrives as another patient."""
from __future__ import annotations

import json

import pytest

from network_peers import OrthancPeer, free_port, have_orthanc

pytestmark = [pytest.mark.network, pytest.mark.timeout(300),
              pytest.mark.skipif(not have_orthanc(), reason="Orthanc (apt-get install orthanc) not installed")]

AE = "DBEXPORT"


@pytest.fixture
def orthanc(tmp_path, series_factory):
    """An Orthanc holding one generated CT study (12 slices)."""
    files = series_factory(count=12, rows=24, columns=20, patient_name="Orthanc^Export", patient_id="ORTHEXP")
    # our AE a known modality: Orthanc answers C-FIND and C-GET only to those
    peer = OrthancPeer(tmp_path / "orthanc", modalities={"dicombrowser": (AE, free_port())})
    peer.start()
    try:
        assert peer.upload(files) == 12
        yield peer
    finally:
        peer.stop()


def _ok(result):
    assert result.exit_code == 0, result.output + (repr(result.exception) if result.exception else "")
    return result


def test_export_into_a_study_retrieved_from_orthanc_and_sent_back(orthanc, cli_runner, tmp_path):
    for args in (("config", "set", "ae-title", AE),
                 ("node", "add", "orthanc", "--ae-title", orthanc.ae_title, "--host", "127.0.0.1",
                  "--port", str(orthanc.dicom_port), "--retrieve", "get")):
        _ok(cli_runner(*args))
    [study_id] = orthanc.rest("/studies")
    study_uid = orthanc.rest(f"/studies/{study_id}")["MainDicomTags"]["StudyInstanceUID"]
    _ok(cli_runner("retrieve", "orthanc", study_uid))
    [series] = json.loads(_ok(cli_runner("ls", "--level", "series", "--json")).output)
    assert series["StudyInstanceUID"] == study_uid

    result = _ok(cli_runner("export", series["SeriesInstanceUID"], "--study", study_uid, "--series-description",
                            "Processed", "--to-database", "--send", "orthanc", "--json"))
    out = json.loads(result.output[result.output.index("{"):])
    assert out["sent"] == {"sent": 12, "failed": 0} and out["frame_of_reference_kept"]
    in_study = orthanc.rest(f"/studies/{study_id}/series")
    by_uid = {s["MainDicomTags"]["SeriesInstanceUID"]: s for s in in_study}
    assert set(by_uid) == {series["SeriesInstanceUID"], out["series"]}
    assert by_uid[out["series"]]["MainDicomTags"]["SeriesDescription"] == "Processed"
    assert len(by_uid[out["series"]]["Instances"]) == 12

    # the same study sent de-identified: Orthanc files it under a new patient and study
    result = _ok(cli_runner("send", "orthanc", study_uid, "--deidentify", "--key", "k"))
    patients = orthanc.rest("/patients?expand")
    assert len(patients) == 2
    anonymous = [p for p in patients if p["MainDicomTags"]["PatientID"].startswith("ANON")]
    assert len(anonymous) == 1 and "Orthanc" not in json.dumps(anonymous[0])
