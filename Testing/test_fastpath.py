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
from DICOMBrowser.DICOMBrowserLib.networking import StorageListener, fastpath, scu
from DICOMBrowser.DICOMBrowserLib.networking.fastpath import _acceptor as acceptor, _storelane as storelane
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


def _library_outside_the_package():
    """(path, parsed module) of every library module outside networking/fastpath."""
    import ast
    from pathlib import Path

    library = Path(fastpath.__file__).parents[2]
    package = Path(fastpath.__file__).parent
    for path in library.rglob("*.py"):
        if package not in path.parents:
            yield path, ast.parse(path.read_text(), str(path))


def test_only_the_interface_is_imported_outside_the_package():
    """Everything that replaces pynetdicom internals lives in networking/fastpath; the rest of the
    library reaches it through the package's public functions only (no `fastpath._x`, no module of
    it by name), so turning it off or dropping it touches one place."""
    import ast

    offenders = []
    for path, tree in _library_outside_the_package():
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module or ''}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "fastpath":
                names = [f"fastpath.{node.attr}"]
            offenders += [f"{path.name}: {name}" for name in names if "fastpath._" in name or "fastpath" in name
                          and name.rsplit(".", 1)[-1].startswith("_")]
    assert offenders == []
    public = {name for name in vars(fastpath) if not name.startswith("_")}
    assert {"install_server", "install_acceptor", "install_requestor", "send_as_stored", "resume", "enabled",
            "reason", "VERIFIED"} <= public


def test_the_pin_matches_the_verified_versions():
    """pyproject.toml pins pynetdicom to the releases of fastpath.VERIFIED (3.0.x from 3.0.4)."""
    import tomllib
    from pathlib import Path

    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    project = tomllib.loads((Path(fastpath.__file__).parents[4] / "pyproject.toml").read_text())
    [pin] = [d for d in project["project"]["dependencies"] if d.startswith("pynetdicom")]
    allowed = SpecifierSet(pin.removeprefix("pynetdicom"))
    assert all(Version(v) in allowed for v in fastpath.VERIFIED)
    assert Version("3.1.0") not in allowed and Version("3.0.3") not in allowed


@needs_dcmtk
@pytest.mark.network
@pytest.mark.timeout(180)
def test_the_slow_path_does_not_poll(database, series_factory, tmp_path, monkeypatch):
    """With the fast path off, receiving from storescu and sending to storescp, our code never
    sleeps less than a millisecond (pynetdicom's own loops keep their own delays, untouched)."""
    import sys
    import time

    monkeypatch.setenv(fastpath.ENVIRONMENT, "0")
    short: list[tuple[str, float]] = []
    sleep = time.sleep

    def recording(seconds: float) -> None:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("DICOMBrowser") and seconds < 0.001:
            short.append((caller, seconds))
        sleep(seconds)

    monkeypatch.setattr(time, "sleep", recording)
    files = series_factory(count=20, rows=16, columns=16)
    with StorageListener(database, ae_title="SLOWPATH", port=free_port(), host="127.0.0.1") as listener:
        result = storescu(listener.port, "SLOWPATH", [files[0].parent])
        assert result.returncode == 0, result.stderr
        assert listener.wait_for(20, timeout=60)
    with StoreSCP(tmp_path / "scp") as peer:
        headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
        triples = [(str(p), str(h.SOPClassUID), str(h.file_meta.TransferSyntaxUID)) for p, h in zip(files, headers)]
        summary = scu.send(RemoteNode("scp", peer.ae_title, "127.0.0.1", peer.port), "SLOWPATH", triples)
    assert summary.sent >= 1  # (pynetdicom 3.0.4's own path may lose a response: docs/networking.md)
    assert short == []


# pynetdicom's association internals: only the package (its _connection accessors and the fast
# path) may name them; a getattr/hasattr with the name as a string counts too
ASSOCIATION_INTERNALS = {"dul", "acse", "dimse", "to_user_queue", "send_reject", "_reactor_checkpoint", "_is_paused",
                         "_run_reactor", "_serve_request", "_kill", "_recv_pdu", "_read_pdu_data"}


def test_no_pynetdicom_internals_are_named_outside_the_package():
    """The connection guards (admission.py), the Nagle switch (sockets.py), the listener and the
    requestors reach an association's socket, reader and queues through the package's accessors."""
    import ast

    offenders = []
    for path, tree in _library_outside_the_package():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ASSOCIATION_INTERNALS:
                offenders.append(f"{path.name}:{node.lineno}: .{node.attr}")
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "hasattr", "setattr"):
                offenders += [f"{path.name}:{node.lineno}: {arg.value!r}" for arg in node.args[1:2]
                              if isinstance(arg, ast.Constant) and arg.value in ASSOCIATION_INTERNALS]
    assert offenders == []
    public = {name for name in vars(fastpath) if not name.startswith("_")}
    assert {"raw_socket", "guard_reads", "close_connection", "reject_association", "check_connection_internals",
            "InternalsError"} <= public


def test_the_connection_accessors_warn_on_an_unverified_pynetdicom(monkeypatch, caplog):
    """They run whatever the switch says (protection, not speed): on a version off VERIFIED that
    has what they use, a WARNING once, and they work."""
    from DICOMBrowser.DICOMBrowserLib.networking.fastpath import _connection

    monkeypatch.setenv(fastpath.ENVIRONMENT, "0")
    monkeypatch.setattr(pynetdicom, "__version__", "3.1.0")
    monkeypatch.setattr(_connection, "_checked", set())
    with caplog.at_level(logging.WARNING, logger=_connection.__name__):
        fastpath.check_connection_internals()
        fastpath.check_connection_internals()
    warnings = [r.getMessage() for r in caplog.records if "3.1.0" in r.getMessage()]
    assert len(warnings) == 1 and "not one the connection guards were verified on" in warnings[0]


def test_a_pynetdicom_without_what_the_guards_use_stops_the_listener(monkeypatch, database, cli_runner):
    """Not a listener whose connections are silently unguarded: an error naming what is missing."""
    from pynetdicom.acse import ACSE

    from DICOMBrowser.DICOMBrowserLib.networking.fastpath import _connection

    monkeypatch.setattr(pynetdicom, "__version__", "3.9.0")
    monkeypatch.setattr(_connection, "_checked", set())
    monkeypatch.delattr(ACSE, "send_reject")
    with pytest.raises(fastpath.InternalsError, match=r"pynetdicom 3\.9\.0 lacks Association\.acse\.send_reject.*"
                                                      r"verified on pynetdicom 3\.0\.4"):
        fastpath.check_connection_internals()
    listener = StorageListener(database, ae_title="NOGUARD", port=free_port(), host="127.0.0.1")
    with pytest.raises(fastpath.InternalsError, match="send_reject"):
        listener.start()
    assert not listener.running
    result = cli_runner("listen", "--port", str(free_port()), "--host", "127.0.0.1")
    assert result.exit_code == 1 and "lacks Association.acse.send_reject" in result.output, result.output
    # the accessors themselves fail rather than do nothing
    with pytest.raises(fastpath.InternalsError, match="Association.dul.socket"):
        fastpath.raw_socket(object())
    with pytest.raises(fastpath.InternalsError, match="send_reject"):
        fastpath.reject_association(type("Assoc", (), {"acse": object()})(), 0x02, 0x03, 0x02)
