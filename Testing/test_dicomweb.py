"""DICOMweb nodes against a real Orthanc with its DICOMweb plugin (Debian orthanc-dicomweb) on 127.0.0.1.

Given generated series uploaded to Orthanc, when a user adds the service as a node and runs
`find`, `retrieve` and `send` through the CLI, then the matches, the files in the database and
the instances in Orthanc are the ones expected; the paging and "incomplete" rules are checked
against a small HTTP server that caps its answers the ways PS3.18 allows.
"""
from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from pathlib import Path

import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib import sampledata
from DICOMBrowser.DICOMBrowserLib.config import RemoteNode
from DICOMBrowser.DICOMBrowserLib.errors import NetworkError
from DICOMBrowser.DICOMBrowserLib.networking import dicomweb
from network_peers import OrthancPeer, have_orthanc

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")

needs_orthanc = pytest.mark.skipif(not (have_orthanc() and PLUGIN.exists()),
                                   reason="Orthanc with its DICOMweb plugin (apt-get install orthanc orthanc-dicomweb) "
                                          "not installed")
pytestmark = [pytest.mark.network, pytest.mark.timeout(300)]


def dicomweb_config(**extra) -> dict:
    return {"Plugins": [str(PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, **extra}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """An Orthanc with DICOMweb holding two patients: a CT study of two series and an MR series."""
    root = tmp_path_factory.mktemp("dicomweb")
    study = pydicom.uid.generate_uid()
    ct_a = sampledata.write_series(root / "data" / "ct_a", count=6, rows=32, columns=32, study_uid=study,
                                   patient_id="DW1", patient_name="Web^Alice", modality="CT", series_number=1)
    ct_b = sampledata.write_series(root / "data" / "ct_b", count=4, rows=32, columns=32, study_uid=study,
                                   patient_id="DW1", patient_name="Web^Alice", modality="CT", series_number=2)
    mr = sampledata.write_series(root / "data" / "mr", count=3, rows=16, columns=16, patient_id="DW2",
                                 patient_name="Web^Bob", modality="MR")
    with OrthancPeer(root / "orthanc", extra=dicomweb_config()) as orthanc:
        assert orthanc.upload([root / "data"]) == 13
        orthanc.files = {"ct_a": ct_a, "ct_b": ct_b, "mr": mr}
        orthanc.study_uid = study
        yield orthanc


def web_url(orthanc: OrthancPeer) -> str:
    return f"{orthanc.url}/dicom-web"


def uid_of(path: Path, keyword: str) -> str:
    return str(getattr(pydicom.dcmread(path, stop_before_pixels=True), keyword))


def test_node_add_keeps_the_secret_out_of_listings(cli_runner, tmp_path):
    result = cli_runner("node", "add", "web", "--url", "https://pacs.example:8443/dicom-web", "--auth", "basic",
                        "--username", "alice", "--secret", "s3cret-value", "--qido-prefix", "qido")
    assert result.exit_code == 0, result.output
    for args in (("node", "ls"), ("node", "ls", "--json"), ("config", "show"), ("config", "show", "--json")):
        shown = cli_runner(*args)
        assert shown.exit_code == 0, shown.output
        assert "s3cret-value" not in shown.output
    listed = json.loads(cli_runner("node", "ls", "--json").output)
    assert listed[0]["kind"] == "dicomweb" and listed[0]["secret"] == "***" and listed[0]["qido_prefix"] == "qido"
    assert "basic (alice)" in cli_runner("node", "ls").output
    # the secret is kept for use, in the database's settings
    assert "s3cret-value" in (cli_runner.database_dir / "settings.json").read_text()
    refused = cli_runner("node", "add", "bad", "--url", "ftp://x")
    assert refused.exit_code != 0 and "not an http:// or https:// address" in refused.output
    both = cli_runner("node", "add", "both", "--url", "http://x", "--host", "h")
    assert both.exit_code != 0


@needs_orthanc
def test_find_through_qido_matches_dimse_filters(archive, cli_runner):
    assert cli_runner("node", "add", "web", "--url", web_url(archive)).exit_code == 0
    echoed = cli_runner("echo", "web")
    assert echoed.exit_code == 0 and "QIDO-RS succeeded" in echoed.output
    studies = json.loads(cli_runner("find", "web", "--json").output)
    assert sorted(s["PatientName"] for s in studies) == ["Web^Alice", "Web^Bob"]
    # wildcards go as they are (Orthanc's DICOMweb plugin 1.7 does not percent-decode: dicomweb._session);
    # a "^" is percent-encoded on the way by urllib3 whatever we do, and then matches nothing there
    alice = json.loads(cli_runner("find", "web", "--patient-name", "*Alice", "--json").output)
    assert [s["StudyInstanceUID"] for s in alice] == [archive.study_uid]
    assert alice[0]["PatientID"] == "DW1" and alice[0]["NumberOfStudyRelatedInstances"] == "10"
    series = json.loads(cli_runner("find", "web", "--level", "series", "--study-uid", archive.study_uid,
                                   "--json").output)
    assert sorted(s["SeriesNumber"] for s in series) == ["1", "2"]
    assert {s["Modality"] for s in series} == {"CT"}
    assert json.loads(cli_runner("find", "web", "--modality", "MR", "--json").output)[0]["PatientID"] == "DW2"
    patients = json.loads(cli_runner("find", "web", "--level", "patient", "--json").output)
    assert {p["PatientID"]: p["NumberOfPatientRelatedStudies"] for p in patients} == {"DW1": "1", "DW2": "1"}
    table = cli_runner("find", "web")
    assert table.exit_code == 0 and "Web^Bob" in table.output and "incomplete" not in table.output


@needs_orthanc
def test_qido_pages_through_every_match_and_says_when_it_stopped(archive):
    node = RemoteNode("web", url=web_url(archive))
    paged = dicomweb.find(node, "image", {"study_uid": archive.study_uid}, page_size=3)
    assert len(paged.matches) == 10 and not paged.incomplete
    assert len({m["SOPInstanceUID"] for m in paged.matches}) == 10
    capped = dicomweb.find(node, "image", {"study_uid": archive.study_uid}, page_size=4, max_results=7)
    assert len(capped.matches) == 7
    assert "more than 7 matches" in capped.incomplete


@needs_orthanc
def test_retrieve_by_wado_writes_indexes_and_resumes(archive, cli_runner, tmp_path):
    assert cli_runner("node", "add", "web", "--url", web_url(archive)).exit_code == 0
    ct_a = archive.files["ct_a"]
    series_uid = uid_of(ct_a[0], "SeriesInstanceUID")
    first = cli_runner("retrieve", "web", series_uid)
    assert first.exit_code == 0, first.output
    assert "Retrieved by WADO-RS: 6 completed, 0 failed" in first.output
    # a retrieve interrupted after one series: the study retrieve fetches only the other one
    whole = cli_runner("retrieve", "web", archive.study_uid)
    assert whole.exit_code == 0, whole.output
    assert "4 completed" in whole.output and "6 already there" in whole.output
    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase

    database = DICOMDatabase(cli_runner.database_dir)
    try:
        for original in ct_a + archive.files["ct_b"]:
            stored = database.file_for_instance(uid_of(original, "SOPInstanceUID"))
            assert stored, original
            assert pydicom.dcmread(stored).PixelData == pydicom.dcmread(original).PixelData
        # one file lost (a crash before its rename): the next retrieve brings exactly that one
        lost = Path(database.file_for_instance(uid_of(ct_a[2], "SOPInstanceUID")))
    finally:
        database.close()
    lost.unlink()
    again = cli_runner("retrieve", "web", archive.study_uid, "--level", "study")
    assert again.exit_code == 0, again.output
    assert "1 completed" in again.output and "9 already there" in again.output
    assert lost.is_file()


@needs_orthanc
def test_send_by_stow_in_batches(archive, cli_runner, tmp_path, monkeypatch):
    files = sampledata.write_series(tmp_path / "local", count=7, rows=16, columns=16, patient_id="DWSEND",
                                    patient_name="Web^Sent")
    assert cli_runner("import", str(tmp_path / "local")).exit_code == 0
    assert cli_runner("node", "add", "web", "--url", web_url(archive)).exit_code == 0
    monkeypatch.setattr(dicomweb, "BATCH_FILES", 3)  # 3 requests: 3 + 3 + 1
    sent = cli_runner("send", "web", uid_of(files[0], "StudyInstanceUID"))
    assert sent.exit_code == 0, sent.output
    assert "Sent 7 of 7" in sent.output
    assert len(archive.find_series(uid_of(files[0], "SeriesInstanceUID"))) == 1
    found = json.loads(cli_runner("find", "web", "--patient-id", "DWSEND", "--json").output)
    assert found[0]["NumberOfStudyRelatedInstances"] == "7"


class _AuthOrthanc(OrthancPeer):
    """An Orthanc that asks every HTTP client for a user name and password (its own checks log in)."""

    def rest(self, path: str, data: bytes | None = None, method: str | None = None, timeout: float = 30.0):
        import base64
        import urllib.request

        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", "Basic " + base64.b64encode(b"alice:wonderland").decode())
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None


@needs_orthanc
def test_basic_auth_and_errors_that_name_the_peer(tmp_path, cli_runner):
    config = dicomweb_config(AuthenticationEnabled=True, RegisteredUsers={"alice": "wonderland"})
    with _AuthOrthanc(tmp_path / "orthanc-auth", extra=config) as orthanc:
        cli_runner("node", "add", "good", "--url", web_url(orthanc), "--auth", "basic", "--username", "alice",
                   "--secret-env", "DW_TEST_SECRET")
        cli_runner("node", "add", "bad", "--url", web_url(orthanc), "--auth", "basic", "--username", "alice",
                   "--secret", "wrong")
        cli_runner("node", "add", "anonymous", "--url", web_url(orthanc))
        missing = cli_runner("find", "good")
        assert missing.exit_code != 0 and "DW_TEST_SECRET" in missing.output
        import os

        os.environ["DW_TEST_SECRET"] = "wonderland"
        try:
            assert cli_runner("find", "good").exit_code == 0
        finally:
            del os.environ["DW_TEST_SECRET"]
        for name in ("bad", "anonymous"):
            refused = cli_runner("find", name)
            assert refused.exit_code != 0
            assert f"{name} ({web_url(orthanc)})" in refused.output and "HTTP 401" in refused.output
        # the server stopped: refused, named, no hang
    closed = cli_runner("find", "anonymous")
    assert closed.exit_code != 0 and "cannot connect" in closed.output


class _CappingServer(http.server.ThreadingHTTPServer):
    """QIDO-RS that answers `total` studies at most `cap` per response, the ways a server may."""

    def __init__(self, total: int, cap: int, mode: str):
        self.total, self.cap, self.mode = total, cap, mode
        super().__init__(("127.0.0.1", 0), _CappingHandler)


class _CappingHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        server: _CappingServer = self.server  # type: ignore[assignment]
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        offset = int(query.get("offset", ["0"])[0])
        limit = int(query.get("limit", [str(server.total)])[0])
        if server.mode == "413":
            self.send_response(413)
            self.end_headers()
            return
        count = max(0, min(limit, server.cap, server.total - offset))
        if server.mode == "stuck":  # warns "more", then never gives the rest
            count = count if offset == 0 else 0
        body = json.dumps([{"0020000D": {"vr": "UI", "Value": [f"1.2.3.{offset + i}"]}} for i in range(count)])
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        if server.mode in ("warn", "stuck") and offset + count < server.total:
            self.send_header("Warning", '299 test: "The number of results exceeded the maximum supported by '
                                        'the server. Additional results can be requested."')
        self.end_headers()
        self.wfile.write(body.encode())


@pytest.mark.parametrize("mode, found, incomplete", [
    ("short", 25, ""),                 # pages shorter than asked: the next offset brings the rest
    ("warn", 25, ""),                  # Warning 299 and the rest by offset: complete
    ("stuck", 10, "capped the answer"),  # Warning 299 and nothing more by offset: said
    ("413", 0, "HTTP 413"),
])
def test_capped_answers_are_followed_or_reported(mode, found, incomplete):
    server = _CappingServer(total=25, cap=10, mode=mode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        node = RemoteNode("capper", url=f"http://127.0.0.1:{server.server_address[1]}")
        result = dicomweb.find(node, "study", page_size=100)
        assert len(result.matches) == found
        assert (incomplete in result.incomplete) if incomplete else result.incomplete == ""
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_unreachable_service_is_named(free_port):
    node = RemoteNode("nowhere", url=f"http://127.0.0.1:{free_port}/dicom-web")
    with pytest.raises(NetworkError, match=r"nowhere \(http://127.0.0.1:\d+/dicom-web\).*cannot connect"):
        dicomweb.find(node)



@needs_orthanc
def test_the_logic_the_browser_dialogs_call_works_for_a_dicomweb_node(archive, tmp_path):
    """The Query/Retrieve, Send and node dialogs call these logic methods; a DICOMweb node takes
    the same calls as a DIMSE one (no method argument, the same summaries)."""
    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic
    from DICOMBrowser.DICOMBrowserLib.networking import nodes

    logic = DICOMBrowserLogic(tmp_path / "gui-db")
    nodes.add_dicomweb_node(logic.database_folder, "web", web_url(archive))
    try:
        assert logic.echo("web") >= 0
        studies = logic.find("web", "study", {"patient_id": "DW2"})
        assert len(studies.matches) == 1 and not studies.incomplete
        summary = logic.retrieve("web", [studies.matches[0]["StudyInstanceUID"]])
        assert summary.ok and summary.received == 3 and summary.method == "wado"
        sent = logic.send("web", [studies.matches[0]["StudyInstanceUID"]])
        assert sent.ok and sent.sent == 3
    finally:
        logic.database.close()
