"""The listener and our SCU against DCMTK's storescu, storescp and echoscu (real peers, 127.0.0.1)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib.config import RemoteNode
from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
from DICOMBrowser.DICOMBrowserLib.indexer import import_paths
from DICOMBrowser.DICOMBrowserLib.networking import StorageListener, service
from DICOMBrowser.DICOMBrowserLib.config import DatabaseSettings
from network_peers import STORESCU_PROPOSE, StoreSCP, echoscu, free_port, have_dcmtk, storescu

pytestmark = [pytest.mark.network, pytest.mark.timeout(180),
              pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools (apt-get install dcmtk) not installed")]

AE = "DBTEST"


def _dicom_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            files.append(path)
        except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError):
            pass
    return files


@pytest.fixture
def listener(database):
    server = StorageListener(database, ae_title=AE, port=free_port(), host="127.0.0.1")
    server.start()
    yield server
    server.stop()


def test_storescu_to_listener_all_indexed_pixels_identical(corpus, database, listener):
    """Given a CT series and one file per transfer syntax, when DCMTK's storescu sends them, then
    every instance is in the database, in the database folder, with byte-identical pixel data."""
    by_uid = {}
    for path in _dicom_files(corpus / "slicer_ct_head"):
        by_uid[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    result = storescu(listener.port, AE, [corpus / "slicer_ct_head"])
    assert result.returncode == 0, result.stderr[-2000:]
    for path in _dicom_files(corpus / "orthanc_tests/Database/TransferSyntaxes"):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        option = STORESCU_PROPOSE.get(str(header.file_meta.TransferSyntaxUID))
        if option is None and header.file_meta.TransferSyntaxUID.is_compressed:
            continue  # a syntax storescu cannot propose (e.g. JPEG process 14)
        result = storescu(listener.port, AE, [path], extra=[option] if option else [])
        assert result.returncode == 0, result.stderr[-2000:]
        if "No presentation context" in result.stderr:
            continue  # storescu does not propose retired SOP classes (1.2.840.10008.5.1.4.1.1.6)
        by_uid[str(header.SOPInstanceUID)] = path
    assert listener.wait_indexed(60)
    status = listener.status()
    assert len(by_uid) >= 93 + 10
    assert status.received == len(by_uid), result.stderr[-2000:]
    assert status.indexed == len(by_uid) and status.failed == 0
    indexed = {row["SOPInstanceUID"]: row for row in database.instances()}
    assert set(indexed) == set(by_uid)
    for sop_uid, source in by_uid.items():
        received = Path(indexed[sop_uid]["FilePath"])
        assert received.is_relative_to(database.images_folder)
        original = pydicom.dcmread(source)
        copy = pydicom.dcmread(received)
        if "PixelData" not in original:
            continue
        if copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID:
            assert copy.PixelData == original.PixelData, f"pixel data of {source.name} changed"
        else:  # storescu itself converted (big endian -> little endian): same pixel values
            assert not original.file_meta.TransferSyntaxUID.is_compressed
            assert (copy.pixel_array == original.pixel_array).all()
    assert not list(database.images_folder.rglob("*.part")), "temporary files left behind"


def test_echoscu_to_listener_and_allow_list(database):
    """Verification works for anyone by default; with an allow-list unknown callers are rejected and logged."""
    with StorageListener(database, ae_title=AE, port=free_port(), host="127.0.0.1") as open_listener:
        assert echoscu(open_listener.port, AE, calling_ae="ANYONE").returncode == 0
        # wrong called AE title: rejected
        assert echoscu(open_listener.port, "NOTUS", calling_ae="ANYONE").returncode != 0
    with StorageListener(database, ae_title=AE, port=free_port(), host="127.0.0.1",
                         allowed_callers=["GOODSCU"]) as guarded:
        assert echoscu(guarded.port, AE, calling_ae="GOODSCU").returncode == 0
        refused = echoscu(guarded.port, AE, calling_ae="BADSCU")
        assert refused.returncode != 0
        assert "BADSCU" in guarded.status().rejected_callers


def test_send_to_storescp(corpus, database, tmp_path):
    """Given a CT series and compressed files in the database, when sent to storescp, all arrive unchanged."""
    import_paths(database, [corpus / "slicer_ct_head", corpus / "orthanc_tests/Database/TransferSyntaxes"])
    uids = [study["StudyInstanceUID"] for study in database.studies()]
    expected = {row["SOPInstanceUID"]: row for row in database.instances()}
    with StoreSCP(tmp_path / "storescp") as peer:
        node = RemoteNode("dcmtk", peer.ae_title, "127.0.0.1", peer.port)
        settings = DatabaseSettings(ae_title=AE)
        summary = service.send(database, settings, node, uids)
        time.sleep(0.2)
        received = peer.files()
    assert summary.ok, summary.failed
    assert summary.sent == len(expected)
    got = {str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p) for p in received}
    assert set(got) == set(expected)
    for sop_uid, row in expected.items():
        original = pydicom.dcmread(row["FilePath"], force=True)
        if "PixelData" in original and "TransferSyntaxUID" in original.file_meta and original.file_meta.TransferSyntaxUID == got[sop_uid].file_meta.TransferSyntaxUID:
            assert got[sop_uid].PixelData == original.PixelData


def test_cli_echo_storescp_and_listen_with_sigterm(tmp_path, corpus, cli_runner):
    """`dicombrowser echo` reaches storescp; `dicombrowser listen` receives, then stops cleanly on SIGTERM."""
    with StoreSCP(tmp_path / "storescp") as peer:
        assert cli_runner("node", "add", "dcmtk", "--ae-title", peer.ae_title, "--host", "127.0.0.1",
                          "--port", str(peer.port)).exit_code == 0
        result = cli_runner("echo", "dcmtk")
        assert result.exit_code == 0, result.output
        assert "C-ECHO succeeded" in result.output
    database_dir = tmp_path / "listen-db"
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "DICOMBrowser", "--database", str(database_dir), "listen",
                                "--port", str(port), "--host", "127.0.0.1", "--ae-title", AE],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while echoscu(port, AE).returncode != 0:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "listener did not start"
            time.sleep(0.2)
        sent = storescu(port, AE, [corpus / "slicer_ct_head"])
        assert sent.returncode == 0, sent.stderr[-1000:]
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "93 received" in out and "93 indexed" in out, out + err
    database = DICOMDatabase(database_dir)
    try:
        assert len(database.instances()) == 93
    finally:
        database.close()
