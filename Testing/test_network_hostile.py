"""Hostile and broken peers against the listener: half PDUs, huge claimed lengths, random bytes,
many idle connections, too many associations from one host. After each, a normal DCMTK storescu
(and echoscu) must be served, and the hostile connections must be closed by the listener within
its timeouts (generous upper bounds only: what is asserted is that a real caller gets through).
"""
from __future__ import annotations

import dataclasses
import random
import socket
import struct
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from DICOMBrowser.DICOMBrowserLib.networking import StorageListener
from DICOMBrowser.DICOMBrowserLib.networking.admission import ConnectionLimits
from network_peers import echoscu, free_port, have_dcmtk, storescu

pytestmark = [pytest.mark.network, pytest.mark.fastpath_explicit, pytest.mark.timeout(180),
              pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools (apt-get install dcmtk) not installed")]

AE = "HOSTILE"
# short timeouts so that the "dropped within the timeout" checks stay fast
LIMITS = ConnectionLimits(acse_timeout=2, dimse_timeout=2, network_timeout=3, max_associations=8,
                          max_associations_per_host=4)


# the flood test's: 200 connections' threads on a busy 2-core machine can keep a real caller's
# thread from reading its request for more than 2 s, and pynetdicom's ACSE timer then closes it
FLOOD_LIMITS = dataclasses.replace(LIMITS, acse_timeout=6)


def _listening(request, database, monkeypatch, limits: ConnectionLimits):
    if request.param == "pynetdicom":
        monkeypatch.setenv("DICOMBROWSER_FASTPATH", "0")  # networking/fastpath: pynetdicom's own path
    with StorageListener(database, ae_title=AE, port=free_port(), host="127.0.0.1", limits=limits) as running:
        running.receive_path = request.param
        yield running


@pytest.fixture(params=["lane", "pynetdicom"])
def listener(request, database, monkeypatch):
    """The listener with our receive path, and with pynetdicom's own (its loops and PDU reader)."""
    yield from _listening(request, database, monkeypatch, LIMITS)


@pytest.fixture(params=["lane", "pynetdicom"])
def flood_listener(request, database, monkeypatch):
    """`listener` with FLOOD_LIMITS."""
    yield from _listening(request, database, monkeypatch, FLOOD_LIMITS)


@pytest.fixture
def two_files(series_factory) -> list[Path]:
    return series_factory(count=2)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True when the listener closes `sock` (EOF or reset) within `within` seconds; what it sent
    before closing (an A-ABORT, an A-ASSOCIATE-RJ) is read and ignored."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def served(listener: StorageListener, files: list[Path]) -> None:
    """A normal storescu stores `files` right now, and echoscu gets an answer."""
    before = listener.status().received
    result = storescu(listener.port, AE, files, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert listener.status().received == before + len(files)
    assert echoscu(listener.port, AE).returncode == 0


def associate_raw(port: int, calling: str = "RAWSCU") -> socket.socket:
    """An established association on a raw socket (A-ASSOCIATE-RQ encoded by pynetdicom)."""
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.presentation import build_context
    from pynetdicom.transport import AddressInformation

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = AE
    primitive.calling_presentation_address = AddressInformation("127.0.0.1", 0)
    primitive.called_presentation_address = AddressInformation("127.0.0.1", port)
    context = build_context("1.2.840.10008.5.1.4.1.1.2")
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    primitive.user_information = [length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    sock = connect(port)
    sock.sendall(pdu.encode())
    header = _recv_exact(sock, 6)
    assert header[0] == 0x02, f"association not accepted (PDU type 0x{header[0]:02X})"
    _recv_exact(sock, struct.unpack(">I", header[2:])[0])
    return sock


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def test_half_pdus_before_association_do_not_lock_callers_out(listener, two_files):
    """Twenty connections that send an A-ASSOCIATE-RQ header and then nothing (more than
    max-associations): a real caller is served at once, and each half PDU is dropped within the
    DIMSE timeout (2 s here, 30 s by default) instead of never."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(connect(listener.port)) for _ in range(20)]
        for sock in sockets:
            sock.sendall(struct.pack(">BBI", 0x01, 0, 4096))
        served(listener, two_files)
        assert all(closed_by_peer(sock, within=LIMITS.dimse_timeout * 2 + 5) for sock in sockets)
    assert listener.status().evicted >= 12  # only max-associations of them could be kept waiting


def test_half_pdu_inside_an_association_is_dropped(listener, two_files):
    """An established association that starts a P-DATA PDU and stops: aborted within the DIMSE timeout."""
    with associate_raw(listener.port) as sock:
        sock.sendall(struct.pack(">BBI", 0x04, 0, 1000) + b"\0" * 10)
        served(listener, two_files)
        assert closed_by_peer(sock, within=LIMITS.dimse_timeout * 2 + 5)


def test_trickling_pdu_is_dropped(listener):
    """One byte a second keeps each read alive; the whole PDU still has to arrive within the DIMSE timeout."""
    with associate_raw(listener.port) as sock:
        sock.sendall(struct.pack(">BBI", 0x04, 0, 1000))
        deadline = time.monotonic() + LIMITS.dimse_timeout * 3 + 5
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"\0")
            except OSError:
                closed = True
                break
            closed = closed_by_peer(sock, within=0.5)
        assert closed


@pytest.mark.parametrize("established", [False, True], ids=["before-association", "in-association"])
def test_huge_claimed_length_is_aborted_without_reading(listener, two_files, established):
    """The six-byte attack: a P-DATA header claiming 0xFFFFFFF0 bytes. Refused at once with an A-ABORT."""
    with (associate_raw(listener.port) if established else connect(listener.port)) as sock:
        sock.sendall(struct.pack(">BBI", 0x04, 0, 0xFFFFFFF0))
        if established and listener.receive_path == "lane":
            sock.settimeout(5)  # the store lane sends an A-ABORT before closing
            assert _recv_exact(sock, 10)[:1] == b"\x07"
        assert closed_by_peer(sock, within=5)
    served(listener, two_files)


def test_random_bytes(listener, two_files):
    """100 connections of (seeded) random bytes, kept open: a real caller is still served."""
    rng = random.Random(11)
    with ExitStack() as stack:
        for _ in range(100):
            sock = stack.enter_context(connect(listener.port))
            try:
                sock.sendall(rng.randbytes(rng.choice([1, 5, 6, 64, 4096])))
            except OSError:  # already refused
                pass
        served(listener, two_files)


def test_many_idle_connections(flood_listener, two_files):
    """200 connections that never send a byte: a real caller is served at once; the idle ones are
    closed (evicted, or after the ACSE timeout)."""
    listener = flood_listener
    with ExitStack() as stack:
        sockets = [stack.enter_context(connect(listener.port)) for _ in range(200)]
        served(listener, two_files)
        assert all(closed_by_peer(sock, within=FLOOD_LIMITS.acse_timeout * 2 + 5) for sock in sockets)
    assert listener.status().connections <= 1


def test_one_host_cannot_take_every_association(listener, two_files):
    """Associations from one host beyond max-associations-per-host are rejected (local limit
    exceeded); idle ones are aborted after the network timeout, and callers are served again."""
    with ExitStack() as stack:
        held = [stack.enter_context(associate_raw(listener.port)) for _ in range(LIMITS.max_associations_per_host)]
        result = storescu(listener.port, AE, two_files, timeout=30)
        assert result.returncode != 0
        assert listener.status().refused and "max-associations-per-host" in listener.status().refused[-1]
        assert all(closed_by_peer(sock, within=LIMITS.network_timeout * 2 + 5) for sock in held)
        served(listener, two_files)


def _resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def test_six_byte_attack_keeps_memory_bounded(tmp_path):
    """`dicombrowser listen` in its own process; 16 connections (half of them inside an
    association) each send a P-DATA header claiming 0xFFFFFFF0 bytes and keep the socket open:
    resident memory stays where it was (it grew by 4 GB before), and storescu is still served."""
    import subprocess
    import sys

    from network_peers import port_open

    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the listener's resident memory")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "DICOMBrowser", "--database", str(tmp_path / "db"),
                                "listen", "--port", str(port), "--host", "127.0.0.1", "--ae-title", AE],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_open(port) and time.monotonic() < deadline:
            assert process.poll() is None, "listener exited"
            time.sleep(0.1)
        before = _resident_mb(process.pid)
        with ExitStack() as stack:
            for index in range(16):
                sock = stack.enter_context(associate_raw(port) if index % 2 else connect(port))
                sock.sendall(struct.pack(">BBI", 0x04, 0, 0xFFFFFFF0))
            time.sleep(2)
            during = _resident_mb(process.pid)
            result = echoscu(port, AE)
            assert result.returncode == 0, result.stdout + result.stderr
        print(f"resident memory: {before:.0f} MB before, {during:.0f} MB under attack")
        assert during - before < 64, f"resident memory grew from {before:.0f} MB to {during:.0f} MB"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _peak_resident_mb(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM): no polling needed."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def write_large_instance(path: Path, rows: int, columns: int) -> int:
    """A valid 16-bit CT instance of rows x columns zero pixels, written without holding its pixel
    data in memory; returns the pixel data length."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = CTImageStorage
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.PatientName, dataset.PatientID, dataset.Modality = "Large^Instance", "LARGE", "CT"
    dataset.Rows, dataset.Columns, dataset.SamplesPerPixel = rows, columns, 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 0
    pydicom.dcmwrite(path, dataset, enforce_file_format=True)
    length = rows * columns * 2
    chunk = bytes(1 << 20)
    with open(path, "ab") as handle:
        handle.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        for start in range(0, length, len(chunk)):
            handle.write(chunk[:min(len(chunk), length - start)])
    return length


@pytest.mark.slow
def test_large_instance_in_small_pdus_keeps_memory_bounded(tmp_path):
    """`dicombrowser listen --max-pdu-size 16384` in its own process; storescu sends one 200 MB
    instance, which arrives in ~12,800 PDUs: the listener writes it as it arrives (it used to hold
    every PDU until the last), so its peak resident memory grows by far less than the instance,
    and the stored file is the instance, byte for byte after the file meta."""
    import subprocess
    import sys

    from network_peers import port_open

    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the listener's peak resident memory")
    source = tmp_path / "large.dcm"
    pixel_bytes = write_large_instance(source, 10240, 10240)
    port = free_port()
    database = tmp_path / "db"
    process = subprocess.Popen([sys.executable, "-m", "DICOMBrowser", "--database", str(database), "listen",
                                "--port", str(port), "--host", "127.0.0.1", "--ae-title", AE,
                                "--max-pdu-size", "16384"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not port_open(port) and time.monotonic() < deadline:
            assert process.poll() is None, "listener exited"
            time.sleep(0.1)
        before = _peak_resident_mb(process.pid)
        result = storescu(port, AE, [source], timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        peak = _peak_resident_mb(process.pid)
    finally:
        process.terminate()
        try:
            _, errors = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, errors = process.communicate(timeout=10)
    [stored] = list((database / "dicom").rglob("*.dcm"))
    assert stored.stat().st_size > pixel_bytes
    with open(source, "rb") as a, open(stored, "rb") as b:
        a.seek(-(pixel_bytes + 12), 2)
        b.seek(-(pixel_bytes + 12), 2)
        while True:  # the data set's tail (pixel data element), compared in 8 MB steps
            left, right = a.read(8 << 20), b.read(8 << 20)
            assert left == right
            if not left:
                break
    print(f"200 MB instance in 16 kB PDUs: listener peak resident memory {before:.0f} MB before, {peak:.0f} MB after")
    assert peak - before < 64, f"peak resident memory grew from {before:.0f} MB to {peak:.0f} MB ({errors[-500:]!r})"
