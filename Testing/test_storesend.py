"""Sending stored files (networking/fastpath/_storesend.py): the command set and P-DATA built directly.

The fragments must be the ones pynetdicom's encoder makes for the same message; files the direct
path was not written for must go through pynetdicom as before; what arrives must be the data set
as stored, byte for byte (checked with our listener, which writes what it receives as it is).
"""
from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib.config import RemoteNode
from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
from DICOMBrowser.DICOMBrowserLib.networking import StorageListener, scu
from DICOMBrowser.DICOMBrowserLib.networking.fastpath import _storesend as storesend
from DICOMBrowser.DICOMBrowserLib.networking.fastpath._commands import encode_store_request
from network_peers import free_port

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]

AE = "SENDTEST"


@pytest.mark.parametrize("maximum_pdu", [0, 64, 4096, 16384])
@pytest.mark.parametrize("data_size", [1, 58, 10_000])
def test_p_data_fragments_are_pynetdicoms(maximum_pdu, data_size):
    """Same primitives, PDV by PDV, as pynetdicom's C_STORE_RQ.encode_msg for the same message
    (command split too when the peer's PDUs are tiny)."""
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE

    data = bytes(range(256)) * (data_size // 256) + bytes(data_size % 256)
    primitive = C_STORE()
    primitive.MessageID = 7
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    primitive.AffectedSOPInstanceUID = "1.2.3.4.5"
    primitive.Priority = storesend.PRIORITY
    primitive.DataSet = BytesIO(data)
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    theirs = [p.presentation_data_value_list for p in message.encode_msg(3, maximum_pdu)]
    command = encode_store_request("1.2.840.10008.5.1.4.1.1.2", 7, storesend.PRIORITY, "1.2.3.4.5")
    ours = [p.presentation_data_value_list for p in storesend.p_data(3, command, memoryview(data), maximum_pdu)]
    assert [[(c, bytes(v)) for c, v in pdvs] for pdvs in ours] == [[(c, bytes(v)) for c, v in pdvs] for pdvs in theirs]


def data_set_of(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    return path.read_bytes()[ds.file_meta.FileMetaInformationGroupLength + 144:]


@pytest.mark.fastpath_explicit
def test_send_direct_and_through_pynetdicom(tmp_path, series_factory, pydicom_file, monkeypatch):
    """Generated and compressed files go the direct way and arrive as stored; a file without file
    meta goes pynetdicom's way as before; the summary counts them all."""
    generated = series_factory(count=20, rows=64, columns=64)
    compressed = [pydicom_file("JPEG2000.dcm"), pydicom_file("SC_rgb_jpeg_dcmtk.dcm")]
    bare = tmp_path / "bare.dcm"  # the data set alone, no preamble, no file meta
    ds = pydicom.dcmread(generated[0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.preamble = None
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.save_as(bare, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert bare.read_bytes()[:4] == b"\x08\x00\x05\x00" or bare.read_bytes()[:2] == b"\x08\x00"
    paths = [*generated, *compressed, bare]
    files = []
    for path in paths:
        header = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        files.append((str(path), str(header.SOPClassUID),
                      str(header.file_meta.get("TransferSyntaxUID", pydicom.uid.ImplicitVRLittleEndian))))
    ways = []
    send_as_stored = storesend.send_as_stored

    def recording(assoc, path, message_id):
        status = send_as_stored(assoc, path, message_id)
        ways.append((Path(path).name, status is not None))
        return status

    monkeypatch.setattr(storesend, "send_as_stored", recording)
    database = DICOMDatabase(tmp_path / "db")
    try:
        with StorageListener(database, ae_title=AE, port=free_port(), host="127.0.0.1") as listener:
            summary = scu.send(RemoteNode("us", AE, "127.0.0.1", listener.port), "SENDER", files)
            assert listener.wait_for(len(paths), timeout=30) and listener.wait_indexed(30)
        received = {row["SOPInstanceUID"]: Path(row["FilePath"]) for row in database.instances()}
    finally:
        database.close()
    assert summary.ok and summary.sent == len(paths), summary.failed
    assert summary.converted == 1  # the bare data set only: the others went in their own syntax
    assert dict(ways) == {**{Path(p).name: True for p in generated + compressed}, "bare.dcm": False}
    for path in generated + compressed:
        assert data_set_of(received[pydicom.dcmread(path).SOPInstanceUID]) == data_set_of(path)
    assert pydicom.dcmread(received[ds.SOPInstanceUID]).PixelData == ds.PixelData
