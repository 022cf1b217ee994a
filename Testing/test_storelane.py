"""The listener's store lane (networking/fastpath/_storelane.py): plain C-STOREs served on the network thread.

Each scenario writes P-DATA-TF PDUs by hand on a real association (pynetdicom as the requestor,
its loop paused so that the test reads the responses) and runs twice: against the listener as
it is, and against one whose associations keep pynetdicom's own path (storelane.install
disabled). The peer must see the same responses, the association must end the same way, and the
database must hold the same files, byte for byte; the lane's counters say who served what.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
from DICOMBrowser.DICOMBrowserLib.networking import StorageListener
from DICOMBrowser.DICOMBrowserLib.networking.fastpath import _storelane as storelane
from dimse_bytes import COMMAND, LAST, p_data_tf, pdv, store_rq_command
from network_peers import free_port, have_dcmtk

pytestmark = [pytest.mark.network, pytest.mark.fastpath_explicit, pytest.mark.timeout(120)]

AE = "LANETEST"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


@dataclass
class Outcome:
    statuses: list[int]           # C-STORE-RSP statuses, in order
    aborted: bool                 # the association ended by an abort
    stored: dict[str, bytes]      # SOP Instance UID -> data set bytes of the file in the database
    served: int = 0               # by the lane (0 when it was off)
    handed_over: int = 0          # P-DATA-TF PDUs the lane gave to pynetdicom
    spooled: int = 0              # data sets the lane wrote as they arrived


def data_set_bytes(path: Path) -> tuple[str, str, str, bytes]:
    """(SOP class, SOP instance, transfer syntax, the encoded data set after the file meta)."""
    ds = pydicom.dcmread(path)
    with open(path, "rb") as handle:
        data = handle.read()
    return (str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID),
            data[ds.file_meta.FileMetaInformationGroupLength + 144:])


def run(tmp_path: Path, name: str, pdus: list[bytes], responses: int, syntax: str, lane: bool,
        monkeypatch, close_early: bool = False) -> Outcome:
    """Send `pdus` on one association to a fresh listener; collect what the peer and the database see."""
    from pynetdicom import AE as PynetdicomAE

    with monkeypatch.context() as patch:
        if not lane:
            patch.setattr(storelane, "install", lambda assoc: False)
        database = DICOMDatabase(tmp_path / f"{name}-{'lane' if lane else 'pynetdicom'}")
        lanes: list[storelane.StoreLane] = []
        try:
            with StorageListener(database, ae_title=AE, port=free_port(), host="127.0.0.1",
                                 network_timeout=3) as listener:
                ae = PynetdicomAE(ae_title="RAWSCU")
                ae.dimse_timeout = 3
                ae.add_requested_context(CT, syntax)
                ae.add_requested_context(MR, syntax)
                assoc = ae.associate("127.0.0.1", listener.port, ae_title=AE)
                assert assoc.is_established
                [server_side] = listener._server.active_associations
                reader = server_side.dul._read_pdu_data
                if isinstance(getattr(reader, "__self__", None), storelane.StoreLane):
                    lanes.append(reader.__self__)
                assert bool(lanes) == lane
                # pause the requestor's loop (as pynetdicom's send_c_store does) to read the responses here
                assoc._reactor_checkpoint.clear()
                deadline = time.monotonic() + 10
                while not assoc._is_paused and time.monotonic() < deadline:
                    time.sleep(0.001)
                for pdu in pdus:
                    assoc.dul.socket.send(pdu)
                if close_early:  # the peer goes away mid-message
                    assoc.dul.socket.socket.close()
                statuses = []
                for _ in range(responses):
                    _context, message = assoc.dimse.get_msg(block=True)
                    if message is None:
                        break
                    statuses.append(message.Status)
                if len(statuses) < responses or close_early or not responses:
                    # an abort or a closed connection is expected: let the listener's side see it through
                    deadline = time.monotonic() + 10
                    while server_side.is_alive() and not server_side.is_aborted and time.monotonic() < deadline:
                        time.sleep(0.01)
                aborted = server_side.is_aborted
                assoc._reactor_checkpoint.set()
                if assoc.is_established:
                    assoc.release()
                server_side.join(15)
                assert not server_side.is_alive()
                assert listener.wait_indexed(20)
            stored = {}
            for row in database.instances():
                _cls, sop, _ts, data = data_set_bytes(Path(row["FilePath"]))
                stored[sop] = data
            files = [p for p in database.images_folder.rglob("*") if p.is_file()]
            assert len(files) == len(stored), "every file in the database folder is indexed, no .part left"
        finally:
            database.close()
    served = lanes[0].served if lanes else 0
    handed = lanes[0].handed_over if lanes else 0
    return Outcome(statuses, aborted, stored, served, handed, lanes[0].spooled if lanes else 0)


@pytest.fixture
def instance(series_factory):
    """One generated 64x64 CT instance: (SOP class, SOP instance, transfer syntax, data set bytes)."""
    [path] = series_factory(count=1, rows=64, columns=64)
    return data_set_bytes(path)


def both_ways(tmp_path, monkeypatch, name, pdus, responses, syntax, close_early=False) -> tuple[Outcome, Outcome]:
    theirs = run(tmp_path, name, pdus, responses, syntax, lane=False, monkeypatch=monkeypatch, close_early=close_early)
    ours = run(tmp_path, name, pdus, responses, syntax, lane=True, monkeypatch=monkeypatch, close_early=close_early)
    assert (ours.statuses, ours.aborted, ours.stored) == (theirs.statuses, theirs.aborted, theirs.stored)
    return theirs, ours


def pieces(data: bytes, count: int) -> list[bytes]:
    size = -(-len(data) // count)
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_one_message_over_several_pdus(tmp_path, monkeypatch, instance):
    """Command in one PDU, the data set in three fragments over two PDUs: the lane keeps the PDUs,
    serves the instance once the last fragment is in, and the file holds the data set byte for byte."""
    sop_class, sop, syntax, data = instance
    first, second, third = pieces(data, 3)
    pdus = [p_data_tf(pdv(1, COMMAND | LAST, store_rq_command(sop_class, sop, 1))),
            p_data_tf(pdv(1, 0, first), pdv(1, 0, second)),
            p_data_tf(pdv(1, LAST, third))]
    theirs, ours = both_ways(tmp_path, monkeypatch, "split", pdus, 1, syntax)
    assert ours.statuses == [0x0000] and ours.stored == {sop: data} and not ours.aborted
    assert (ours.served, ours.handed_over) == (1, 0)


def test_command_and_data_in_one_pdu_then_a_second_instance(tmp_path, monkeypatch, series_factory):
    """Two instances, each command and data set in a single PDU, with a Move Originator on the second."""
    a, b = (data_set_bytes(p) for p in series_factory(count=2, rows=8, columns=8))
    pdus = [p_data_tf(pdv(1, COMMAND | LAST, store_rq_command(a[0], a[1], 1)), pdv(1, LAST, a[3])),
            p_data_tf(pdv(1, COMMAND | LAST, store_rq_command(b[0], b[1], 2, 0, "MOVER", 7)), pdv(1, LAST, b[3]))]
    theirs, ours = both_ways(tmp_path, monkeypatch, "single", pdus, 2, a[2])
    assert ours.statuses == [0, 0] and ours.stored == {a[1]: a[3], b[1]: b[3]}
    assert (ours.served, ours.handed_over) == (2, 0)


def test_command_split_over_two_pdvs_goes_to_pynetdicom(tmp_path, monkeypatch, instance):
    """A command set in two fragments is legal but not what the lane serves: pynetdicom gets every PDU."""
    sop_class, sop, syntax, data = instance
    command = store_rq_command(sop_class, sop, 1)
    pdus = [p_data_tf(pdv(1, COMMAND, command[:40])), p_data_tf(pdv(1, COMMAND | LAST, command[40:])),
            p_data_tf(pdv(1, LAST, data))]
    theirs, ours = both_ways(tmp_path, monkeypatch, "command-split", pdus, 1, syntax)
    assert ours.statuses == [0] and ours.stored == {sop: data}
    assert (ours.served, ours.handed_over) == (0, 3)


def test_message_that_changes_course_halfway_is_handed_over_whole(tmp_path, monkeypatch, instance):
    """A data fragment on another presentation context after a plain command: the PDUs kept so far
    and this one go to pynetdicom, in order, and it does what it always does with them."""
    sop_class, sop, syntax, data = instance
    first, rest = pieces(data, 2)
    pdus = [p_data_tf(pdv(1, COMMAND | LAST, store_rq_command(sop_class, sop, 1))),
            p_data_tf(pdv(1, 0, first)),
            p_data_tf(pdv(3, LAST, rest))]
    theirs, ours = both_ways(tmp_path, monkeypatch, "other-context", pdus, 1, syntax)
    assert ours.served == 0 and ours.handed_over == 3


def test_second_command_before_the_data_set(tmp_path, monkeypatch, series_factory):
    """A peer that sends a new command where the data set should be: pynetdicom decides, lane or not."""
    a, b = (data_set_bytes(p) for p in series_factory(count=2, rows=8, columns=8))
    pdus = [p_data_tf(pdv(1, COMMAND | LAST, store_rq_command(a[0], a[1], 1))),
            p_data_tf(pdv(1, COMMAND | LAST, store_rq_command(b[0], b[1], 2))),
            p_data_tf(pdv(1, LAST, b[3]))]
    theirs, ours = both_ways(tmp_path, monkeypatch, "two-commands", pdus, 1, a[2])
    assert ours.served == 0 and ours.handed_over == 3


def test_malformed_pdv_lengths_abort_as_pynetdicom_does(tmp_path, monkeypatch, instance):
    """A PDV item longer than its PDU: pynetdicom cannot decode the PDU and aborts; nothing is stored."""
    sop_class, sop, syntax, data = instance
    command = p_data_tf(pdv(1, COMMAND | LAST, store_rq_command(sop_class, sop, 1)))
    broken = bytearray(p_data_tf(pdv(1, LAST, data)))
    broken[6:10] = (len(data) + 50).to_bytes(4, "big")
    theirs, ours = both_ways(tmp_path, monkeypatch, "malformed", [command, bytes(broken)], 0, syntax)
    assert ours.aborted and ours.stored == {} and ours.statuses == []


def test_peer_gone_mid_message_stores_nothing(tmp_path, monkeypatch, instance):
    """The connection closes after half of the data set: no file, no index entry, no .part file."""
    sop_class, sop, syntax, data = instance
    first, _rest = pieces(data, 2)
    pdus = [p_data_tf(pdv(1, COMMAND | LAST, store_rq_command(sop_class, sop, 1))), p_data_tf(pdv(1, 0, first))]
    theirs, ours = both_ways(tmp_path, monkeypatch, "gone", pdus, 0, syntax, close_early=True)
    assert ours.stored == {} and ours.served == 0


def test_pynetdicom_debug_logging_turns_the_lane_off(tmp_path, series_factory, caplog):
    """With pynetdicom's INFO/DEBUG logging on, its log handlers stay bound and see every PDU: the
    lane steps aside (every PDU handed over) and the instances are stored all the same."""
    import logging

    from pynetdicom import AE as PynetdicomAE

    paths = series_factory(count=3, rows=8, columns=8)
    with caplog.at_level(logging.DEBUG, logger="pynetdicom"):
        database = DICOMDatabase(tmp_path / "db")
        try:
            with StorageListener(database, ae_title=AE, port=free_port(), host="127.0.0.1") as listener:
                ae = PynetdicomAE(ae_title="LOGGED")
                ae.add_requested_context(CT, pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID)
                assoc = ae.associate("127.0.0.1", listener.port, ae_title=AE)
                [server_side] = listener._server.active_associations
                lane = server_side.dul._read_pdu_data.__self__
                for path in paths:
                    assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0
                assoc.release()
                server_side.join(10)
                assert listener.wait_for(3, timeout=20) and listener.wait_indexed(20)
            assert len(database.instances()) == 3
        finally:
            database.close()
    assert lane.served == 0 and lane.handed_over >= 3


@pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools (apt-get install dcmtk) not installed")
def test_storescu_with_small_pdus(tmp_path, series_factory):
    """DCMTK's storescu fragments each 256x256 slice over several PDUs when we announce a 16 kB
    maximum: every instance is served by the lane and stored byte for byte."""
    from network_peers import storescu

    paths = series_factory(count=5, rows=256, columns=256)
    sent = {data_set_bytes(p)[1]: data_set_bytes(p)[3] for p in paths}
    database = DICOMDatabase(tmp_path / "db")
    try:
        with StorageListener(database, ae_title=AE, port=free_port(), host="127.0.0.1",
                             maximum_pdu_size=16384) as listener:
            result = storescu(listener.port, AE, paths, timeout=60)
            assert result.returncode == 0, result.stderr
            assert listener.wait_for(5, timeout=20) and listener.wait_indexed(20)
        received = {sop: data for _c, sop, _t, data in
                    (data_set_bytes(Path(row["FilePath"])) for row in database.instances())}
    finally:
        database.close()
    assert received == sent


@pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools (apt-get install dcmtk) not installed")
def test_concurrent_associations_deliver_into_one_series(tmp_path, series_factory):
    """Three storescu processes at once, two of them sending the same 40 instances: every instance
    is stored once, whole, and indexed; no temporary file is left behind."""
    import subprocess

    from DICOMBrowser.DICOMBrowserLib.networking.sockets import dcmtk_env

    shared = series_factory(count=40, rows=32, columns=32)
    other = series_factory(count=40, rows=32, columns=32)
    expected = {data_set_bytes(p)[1]: data_set_bytes(p)[3] for p in shared + other}
    database = DICOMDatabase(tmp_path / "db")
    try:
        with StorageListener(database, ae_title=AE, port=free_port(), host="127.0.0.1") as listener:
            senders = [subprocess.Popen(["storescu", "-aec", AE, "127.0.0.1", str(listener.port),
                                         *[str(p) for p in files]], env=dcmtk_env(),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                       for files in (shared, shared, other)]
            for sender in senders:
                _out, err = sender.communicate(timeout=60)
                assert sender.returncode == 0, err
            assert listener.wait_for(120, timeout=30) and listener.wait_indexed(30)
            status = listener.status()
        assert status.received == 120 and status.failed == 0
        received = {sop: data for _c, sop, _t, data in
                    (data_set_bytes(Path(row["FilePath"])) for row in database.instances())}
        files = [p for p in database.images_folder.rglob("*") if p.is_file()]
    finally:
        database.close()
    assert received == expected
    assert len(files) == 80 and not [f for f in files if f.name.endswith(".part")]


def test_writer_takes_a_data_set_in_fragments(tmp_path, series_factory):
    """What the lane hands over for a message of many PDUs: the fragments, never joined. Written
    in order (writev for a few, one by one for many), the study and series found even when the
    first fragment is too short to hold them."""
    from DICOMBrowser.DICOMBrowserLib.networking.storage import ReceivedInstanceWriter

    [path] = series_factory(count=1, rows=64, columns=64)
    sop_class, sop, syntax, data = data_set_bytes(path)
    ds = pydicom.dcmread(path)
    database = DICOMDatabase(tmp_path / "db")
    try:
        writer = ReceivedInstanceWriter(database, index=False)
        for count in (3, 40):
            sizes = [10] + [len(data) // count] * (count - 2)
            fragments, start = [], 0
            for size in sizes:
                fragments.append(memoryview(data)[start:start + size])
                start += size
            fragments.append(memoryview(data)[start:])
            written = writer.write_encoded(sop_class, sop, syntax, fragments)
            assert written.parent.name == ds.SeriesInstanceUID and written.parent.parent.name == ds.StudyInstanceUID
            assert data_set_bytes(written) == (sop_class, sop, syntax, data)
        assert writer.counters.received_bytes == 2 * len(data)
    finally:
        database.close()


@pytest.fixture
def spool_at_once(monkeypatch):
    """The lane writes every data set as it arrives from its first data PDU on (normally only
    beyond max(4 x max PDU, 1 MB)), so that small hand-made messages take the spooling path."""
    monkeypatch.setattr(storelane, "SPOOL_AFTER", 1)
    monkeypatch.setattr(storelane, "SPOOL_FACTOR", 0)


def test_data_set_written_as_it_arrives(tmp_path, monkeypatch, instance, spool_at_once):
    """A data set over three PDUs, written to its file PDU by PDU: same response, same bytes."""
    sop_class, sop, syntax, data = instance
    pdus = [p_data_tf(pdv(1, COMMAND | LAST, store_rq_command(sop_class, sop, 1))),
            *(p_data_tf(pdv(1, 0, piece)) for piece in pieces(data, 3)[:-1]),
            p_data_tf(pdv(1, LAST, pieces(data, 3)[-1]))]
    theirs, ours = both_ways(tmp_path, monkeypatch, "spooled", pdus, 1, syntax)
    assert ours.statuses == [0] and ours.stored == {sop: data} and (ours.served, ours.spooled) == (1, 1)


def test_spooled_message_that_changes_course_is_aborted(tmp_path, monkeypatch, instance, spool_at_once):
    """Once a data set is being written as it arrives, its PDUs are gone: a data fragment on another
    context (which pynetdicom would have taken into the same message) ends the association with
    A-ABORT and leaves no file and no .part file."""
    sop_class, sop, syntax, data = instance
    first, rest = pieces(data, 2)
    pdus = [p_data_tf(pdv(1, COMMAND | LAST, store_rq_command(sop_class, sop, 1))),
            p_data_tf(pdv(1, 0, first)), p_data_tf(pdv(3, LAST, rest))]
    ours = run(tmp_path, "spooled-other-context", pdus, 1, syntax, lane=True, monkeypatch=monkeypatch)
    assert ours.aborted and ours.statuses == [] and ours.stored == {} and ours.spooled == 1


def test_peer_gone_mid_spooled_message_leaves_nothing(tmp_path, monkeypatch, instance, spool_at_once):
    sop_class, sop, syntax, data = instance
    first, _rest = pieces(data, 2)
    pdus = [p_data_tf(pdv(1, COMMAND | LAST, store_rq_command(sop_class, sop, 1))), p_data_tf(pdv(1, 0, first))]
    theirs, ours = both_ways(tmp_path, monkeypatch, "spooled-gone", pdus, 0, syntax, close_early=True)
    assert ours.stored == {} and ours.served == 0 and ours.spooled == 1
