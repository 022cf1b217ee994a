"""The fast DIMSE path's boundary (networking/fastpath): its switch, its version guard, and the
same transfers giving the same files on it and on pynetdicom's own path.

Given the switch off (environment or setting) or a pynetdicom off the VERIFIED table, when the
listener receives from storescu and our `send` stores to storescp, then nothing of the fast path
is installed, the files are the same, and `config show` and the log say why it is off.
"""
from __future__ import annotations

import logging

import pydicom
import pynetdicom
import pytest

from DICOMBrowser.DICOMBrowserLib.config import RemoteNode
from DICOMBrowser.DICOMBrowserLib.networking import StorageListener, acceptor, fastpath, scu, storelane
from network_peers import StoreSCP, free_port, have_dcmtk, storescu

pytestmark = [pytest.mark.fastpath_explicit]
needs_dcmtk = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools (apt-get install dcmtk) not installed")


@pytest.fixture(autouse=True)
def default_setting():
    """Each test starts from the setting on, and leaves it on."""
    fastpath.apply_settings(None)
    yield
    fastpath.apply_settings(None)


def test_switches(monkeypatch):
    monkeypatch.delenv(fastpath.ENVIRONMENT, raising=False)
    assert fastpath.enabled() == (pynetdicom.__version__ in fastpath.VERIFIED)
    monkeypatch.setenv(fastpath.ENVIRONMENT, "0")
    assert not fastpath.enabled() and fastpath.ENVIRONMENT in fastpath.reason()
    monkeypatch.delenv(fastpath.ENVIRONMENT)

    class Off:
        fastpath = False

    fastpath.apply_settings(Off())
    assert not fastpath.enabled() and "setting is off" in fastpath.reason()


def test_an_unverified_pynetdicom_is_said_loudly(monkeypatch, caplog, cli_runner):
    monkeypatch.delenv(fastpath.ENVIRONMENT, raising=False)
    monkeypatch.setattr(pynetdicom, "__version__", "3.1.0")
    monkeypatch.setattr(fastpath, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=fastpath.__name__):
        assert not fastpath.enabled()
        assert not fastpath.enabled()  # logged once, not per association
    warnings = [r for r in caplog.records if "3.1.0" in r.getMessage()]
    assert len(warnings) == 1 and "verified" in warnings[0].getMessage()
    shown = cli_runner("config", "show")
    assert "fastpath: OFF (off: pynetdicom 3.1.0 is not one it was verified on" in shown.output
    # the lower layers refuse on their own too (a direct caller, a test)
    assert not acceptor.supported(object())


def test_config_set_fastpath(cli_runner, monkeypatch):
    monkeypatch.delenv(fastpath.ENVIRONMENT, raising=False)
    assert cli_runner("config", "set", "fastpath", "off").exit_code == 0
    assert "fastpath: OFF (off: the database's fastpath setting is off)" in cli_runner("config", "show").output
    assert cli_runner("config", "set", "fastpath", "on").exit_code == 0
    if pynetdicom.__version__ in fastpath.VERIFIED:
        assert "fastpath: on" in cli_runner("config", "show").output


@needs_dcmtk
@pytest.mark.network
@pytest.mark.timeout(180)
@pytest.mark.parametrize("switch", ["on", "env-off", "unverified"])
def test_receive_and_send_on_either_path(switch, database, series_factory, tmp_path, monkeypatch):
    monkeypatch.delenv(fastpath.ENVIRONMENT, raising=False)
    if switch == "env-off":
        monkeypatch.setenv(fastpath.ENVIRONMENT, "0")
    elif switch == "unverified":
        monkeypatch.setattr(pynetdicom, "__version__", "3.9.0")
    lanes: list[object] = []
    original = storelane.StoreLane.__init__

    def counting(self, assoc):
        lanes.append(self)
        original(self, assoc)

    monkeypatch.setattr(storelane.StoreLane, "__init__", counting)
    files = series_factory(count=6, rows=32, columns=32)
    with StorageListener(database, ae_title="FASTPATH", port=free_port(), host="127.0.0.1") as listener:
        result = storescu(listener.port, "FASTPATH", [files[0].parent])
        assert result.returncode == 0, result.stderr
        assert listener.wait_for(6, timeout=60)
    assert database.file_for_instance(str(pydicom.dcmread(files[0]).SOPInstanceUID))
    assert (len(lanes) > 0) == (switch == "on" and pynetdicom.__version__ in fastpath.VERIFIED)
    # sending: the same bytes arrive either way
    with StoreSCP(tmp_path / "scp") as peer:
        headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
        triples = [(str(p), str(h.SOPClassUID), str(h.file_meta.TransferSyntaxUID)) for p, h in zip(files, headers)]
        summary = scu.send(RemoteNode("scp", peer.ae_title, "127.0.0.1", peer.port), "FASTPATH", triples)
        assert summary.ok, summary.failed
        received = sorted(p.read_bytes()[-2048:] for p in peer.files())
    assert received == sorted(p.read_bytes()[-2048:] for p in files)
