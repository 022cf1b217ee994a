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
    from DICOMBrowser.DICOMBrowserLib.networking.fastpath import _storelane as storelane

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


# Compressed studies: each file of the corpus's TransferSyntaxes folder is stored in the syntax its
# name says (JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE, deflate, big endian), plus a
# JPEG 2000 MR series; this Orthanc cannot transcode JPEG 2000 in a C-GET.
def _compressed_files(corpus: Path) -> list[Path]:
    files = sorted((corpus / "orthanc_tests/Database/TransferSyntaxes").glob("*.dcm"))
    return files + sorted((corpus / "siemens_mosaic_orientation/In/Orientation/axmb/AxInt36mb").glob("jp2k*.dcm"))


def _stored_pixels(path: Path) -> tuple[str, str, bytes]:
    """(SOPInstanceUID, transfer syntax, Pixel Data as encoded in the file)."""
    ds = pydicom.dcmread(path, force=True)
    syntax = str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
    return str(ds.SOPInstanceUID), syntax, bytes(ds.PixelData)


@pytest.fixture(scope="module")
def compressed_orthanc(tmp_path_factory, corpus):
    """An Orthanc holding the compressed corpus files; our AE is a known modality."""
    listener_port = free_port()
    peer = OrthancPeer(tmp_path_factory.mktemp("orthanc-compressed"), modalities={"dicombrowser": (AE, listener_port)})
    peer.start()
    try:
        peer.listener_port = listener_port
        files = _compressed_files(corpus)
        assert peer.upload(files) == len(files)
        peer.originals = {uid: (syntax, pixels) for uid, syntax, pixels in map(_stored_pixels, files)}
        peer.studies = sorted(s["MainDicomTags"]["StudyInstanceUID"] for s in peer.rest("/studies?expand"))
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def compressed_cli(cli_runner, compressed_orthanc):
    peer = compressed_orthanc
    for args in (("config", "set", "ae-title", AE), ("config", "set", "port", str(peer.listener_port)),
                 ("config", "set", "host", "127.0.0.1"),
                 ("node", "add", "orthanc", "--ae-title", peer.ae_title, "--host", "127.0.0.1",
                  "--port", str(peer.dicom_port))):
        result = cli_runner(*args)
        assert result.exit_code == 0, result.output
    return cli_runner


@pytest.mark.parametrize("method", ["get", "move"])
def test_compressed_studies_arrive_as_stored(method, compressed_cli, compressed_orthanc):
    """Given an Orthanc holding instances in every compressed syntax (two of one SOP class in one
    study: JPEG-LS and JPEG 2000), when the user retrieves all its studies, then every instance
    arrives in the syntax it was stored in with byte-identical pixel data, and the summary says so."""
    result = compressed_cli("retrieve", "orthanc", "--method", method, "--level", "study", *compressed_orthanc.studies)
    total = len(compressed_orthanc.originals)
    assert result.exit_code == 0, result.output
    assert f"{total} completed, 0 failed" in result.stdout and f"{total} instance(s) stored" in result.stdout
    database = DICOMDatabase(compressed_cli.database_dir)
    try:
        stored = {uid: (syntax, pixels) for uid, syntax, pixels in
                  (_stored_pixels(Path(row["FilePath"])) for row in database.instances())}
    finally:
        database.close()
    assert stored.keys() == compressed_orthanc.originals.keys()
    for uid, (syntax, pixels) in compressed_orthanc.originals.items():
        if syntax == "1.2.840.10008.1.2":  # the one file without a meta header: any uncompressed syntax
            assert stored[uid][0] in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1") and stored[uid][1] == pixels
        else:
            assert stored[uid] == (syntax, pixels), uid


def test_c_get_summary_counts_what_arrived_when_the_peer_fails_partway(compressed_cli, compressed_orthanc, corpus,
                                                                      tmp_path, monkeypatch):
    """Given the old proposal (one context per class with every syntax, uncompressed first) and a
    study of four uncompressed instances and one JPEG 2000 instance, Orthanc sends the four and
    fails the JPEG 2000 one (it cannot transcode it), ending with 0xC000: the summary says 4
    completed, 1 failed, 4 stored, and the exit code says the retrieve is incomplete."""
    from DICOMBrowser.DICOMBrowserLib.networking import scu

    folder = corpus / "orthanc_tests/Database/TransferSyntaxes"
    jpeg2000 = pydicom.dcmread(folder / "1.2.840.10008.1.2.4.90.dcm", stop_before_pixels=True)
    study_uid = f"{jpeg2000.StudyInstanceUID}.77"
    copies = []
    for number, name in enumerate(["1.2.840.10008.1.2.4.90.dcm"] + ["1.2.840.10008.1.2.1.dcm"] * 4):
        ds = pydicom.dcmread(folder / name)
        ds.PatientID, ds.PatientName, ds.StudyInstanceUID = jpeg2000.PatientID, jpeg2000.PatientName, study_uid
        ds.SeriesInstanceUID = f"{jpeg2000.SeriesInstanceUID}.77"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{jpeg2000.SOPInstanceUID}.77{number}"
        ds.save_as(tmp_path / f"{number}.dcm")
        copies.append(tmp_path / f"{number}.dcm")
    try:
        assert compressed_orthanc.upload(copies) == 5
        monkeypatch.setattr(scu, "stored_classes", lambda *args, **kwargs: {})
        result = compressed_cli("retrieve", "orthanc", "--method", "get", "--level", "study", study_uid)
    finally:
        for orthanc_study in compressed_orthanc.rest("/tools/find", json.dumps(
                {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}).encode(), "POST"):
            compressed_orthanc.rest(f"/studies/{orthanc_study}", method="DELETE")
    assert result.exit_code != 0
    assert "4 completed, 1 failed" in result.stdout and "4 instance(s) stored" in result.stdout
    assert "0xC000" in result.output


def test_retrieve_counts_keep_what_pending_responses_reported():
    """A final Failure response without counts, or with fewer than a pending one gave (PS3.4 makes
    them conditional), does not take back sub-operations already reported completed."""
    from pydicom.dataset import Dataset

    from DICOMBrowser.DICOMBrowserLib.config import RemoteNode
    from DICOMBrowser.DICOMBrowserLib.networking import scu

    def response(status: int, **counts: int) -> tuple[Dataset, None]:
        ds = Dataset()
        ds.Status = status
        for keyword, value in counts.items():
            setattr(ds, f"NumberOf{keyword}Suboperations", value)
        return ds, None

    class Assoc:
        is_established = False

    node = RemoteNode("peer", "PEER", "127.0.0.1", 104)
    summary = scu.RetrieveSummary(method="move", completed=2)  # an earlier UID of the same retrieve
    responses = [response(0xFF00, Completed=1, Remaining=2), response(0xFF00, Completed=3, Remaining=0),
                 response(0xA702, Failed=1)]
    scu._follow_retrieve(Assoc(), iter(responses), node, "1.2.3", "C-MOVE", summary, None)
    assert (summary.completed, summary.failed, summary.status) == (5, 1, 0xA702)
    assert summary.errors and not summary.ok


def test_get_contexts_within_the_limit():
    """Separate contexts per compressed syntax for the classes a study holds, 128 at most."""
    from pynetdicom import StoragePresentationContexts

    from DICOMBrowser.DICOMBrowserLib.networking import scu

    one = scu.get_contexts(classes={"1.2.840.10008.5.1.4.1.1.4": []})
    assert len(one) == 1 + 1 + len(scu.RETRIEVE_SYNTAXES)
    assert [cx.transfer_syntax for cx in one[1:3]] == [scu.UNCOMPRESSED, ["1.2.840.10008.1.2.4.90"]]
    known = scu.get_contexts(classes={"1.2.840.10008.5.1.4.1.1.4": ["1.2.840.10008.1.2.4.80"]})
    assert [cx.transfer_syntax for cx in known[1:]] == [scu.UNCOMPRESSED, ["1.2.840.10008.1.2.4.80"]]
    many = {cx.abstract_syntax: [] for cx in StoragePresentationContexts[:20]}
    contexts = scu.get_contexts(classes=many)
    assert len(contexts) == 128
    per_class = [[cx.transfer_syntax for cx in contexts[1:] if cx.abstract_syntax == c] for c in many]
    for syntaxes in per_class:  # uncompressed, the first compressed ones alone, the rest together
        assert syntaxes[0] == scu.UNCOMPRESSED and syntaxes[1] == ["1.2.840.10008.1.2.4.90"]
        assert sum(len(s) for s in syntaxes) == 2 + len(scu.RETRIEVE_SYNTAXES)
    unknown = scu.get_contexts()  # nothing known: every class pynetdicom lists, every syntax in one context
    assert len(unknown) == 1 + min(127, len(StoragePresentationContexts))
    assert all(len(cx.transfer_syntax) == len(scu.ALL_TRANSFER_SYNTAXES) for cx in unknown[1:])
