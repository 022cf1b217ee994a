"""DIMSE over TLS against DCMTK's TLS tools (storescu/echoscu/storescp +tls) and our own requestor.

Given a CA, server and client certificates made here with `openssl`, when our listener speaks TLS
and DCMTK sends to it, or we send to a TLS storescp, then the instances arrive; a peer with a
certificate from another CA, or one speaking plain DICOM on the TLS port, gets a clear error and
nothing hangs. Run on the fast path and on pynetdicom's own (networking/fastpath).
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from DICOMBrowser.DICOMBrowserLib.config import DatabaseSettings, RemoteNode
from DICOMBrowser.DICOMBrowserLib.errors import NetworkError
from DICOMBrowser.DICOMBrowserLib.networking import StorageListener, scu, tls
from DICOMBrowser.DICOMBrowserLib.networking.admission import ConnectionLimits
from DICOMBrowser.DICOMBrowserLib.networking.sockets import dcmtk_env
from network_peers import free_port, have_dcmtk, port_open

pytestmark = [pytest.mark.network, pytest.mark.fastpath_explicit, pytest.mark.timeout(180),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl (apt-get install openssl) not installed")]
needs_dcmtk = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools (apt-get install dcmtk) not installed")

AE = "TLSLISTENER"
LIMITS = ConnectionLimits(acse_timeout=3, dimse_timeout=3, network_timeout=5)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _authority(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=folder)


def _leaf(folder: Path, name: str, ca: str) -> None:
    (folder / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=folder)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca (server, client) and other-ca (stranger): PEM keys and certificates, made by openssl."""
    folder = tmp_path_factory.mktemp("pki")
    _authority(folder, "ca")
    _authority(folder, "other-ca")
    _leaf(folder, "server", "ca")
    _leaf(folder, "client", "ca")
    _leaf(folder, "stranger", "other-ca")
    return folder


@pytest.fixture(params=["fastpath", "pynetdicom"])
def path_kind(request, monkeypatch) -> str:
    if request.param == "pynetdicom":
        monkeypatch.setenv("DICOMBROWSER_FASTPATH", "0")
    return request.param


def tls_settings(pki: Path, mutual: bool = True) -> DatabaseSettings:
    return DatabaseSettings(tls_cert=str(pki / "server.crt"), tls_key=str(pki / "server.key"),
                            tls_ca=str(pki / "ca.crt") if mutual else "")


@pytest.fixture
def tls_listener(pki, database, path_kind):
    with StorageListener(database, ae_title=AE, port=free_port(), host="127.0.0.1", limits=LIMITS,
                         ssl_context=tls.server_context(tls_settings(pki))) as listener:
        yield listener


def dcmtk_tls(tool: str, pki: Path, key: str, port: int, *files: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """A DCMTK tool over TLS with `key`'s certificate, trusting our CA (storescu: `files`)."""
    command = [tool, "+tls", str(pki / f"{key}.key"), str(pki / f"{key}.crt"), "+cf", str(pki / "ca.crt"),
               "-aec", AE, "-aet", "DCMTKTLS", "-to", "10", *(["+sd", "+r", "-nh"] if files else []),
               "127.0.0.1", str(port), *files]
    return subprocess.run(command, env=dcmtk_env(), capture_output=True, text=True, timeout=timeout)


@needs_dcmtk
def test_dcmtk_sends_to_our_tls_listener(tls_listener, pki, series_factory, path_kind):
    files = series_factory(count=5, rows=64, columns=64)
    echoed = dcmtk_tls("echoscu", pki, "client", tls_listener.port)
    assert echoed.returncode == 0, echoed.stderr
    sent = dcmtk_tls("storescu", pki, "client", tls_listener.port, str(files[0].parent))
    assert sent.returncode == 0, sent.stderr
    assert tls_listener.wait_for(5, timeout=30)
    assert tls_listener.status().indexed == 5


@needs_dcmtk
def test_strangers_and_plain_peers_are_refused_without_a_hang(tls_listener, pki, series_factory):
    # a certificate from another CA: refused in the handshake
    stranger = dcmtk_tls("echoscu", pki, "stranger", tls_listener.port)
    assert stranger.returncode != 0
    # plain DICOM on the TLS port: echoscu fails (no hang), the listener keeps serving TLS callers
    plain = subprocess.run(["echoscu", "-aec", AE, "-to", "5", "127.0.0.1", str(tls_listener.port)],
                           env=dcmtk_env(), capture_output=True, text=True, timeout=30)
    assert plain.returncode != 0
    # a silent client holds nothing: the handshake runs on its association's thread, not the accept loop
    import socket

    with socket.create_connection(("127.0.0.1", tls_listener.port), timeout=30) as silent:
        assert dcmtk_tls("echoscu", pki, "client", tls_listener.port).returncode == 0
        # and the silent one is dropped by the listener's own timeouts (end of stream, or a reset)
        try:
            assert silent.recv(1) == b""
        except ConnectionResetError:
            pass
    # our own requestor, plain, to the TLS port: an error naming the peer
    plain_node = RemoteNode("tls-port", AE, "127.0.0.1", tls_listener.port)
    with pytest.raises(NetworkError, match="tls-port"):
        scu.echo(plain_node, "PLAIN", timeout=5)


def test_our_requestor_to_our_listener(tls_listener, pki, path_kind):
    node = RemoteNode("self", AE, "127.0.0.1", tls_listener.port, tls=True, tls_ca=str(pki / "ca.crt"),
                      tls_cert=str(pki / "client.crt"), tls_key=str(pki / "client.key"))
    assert scu.echo(node, "REQUESTOR", timeout=10) < 10
    # the wrong CA: the node's certificate is not accepted, said so
    wrong = RemoteNode("self", AE, "127.0.0.1", tls_listener.port, tls=True, tls_ca=str(pki / "other-ca.crt"),
                       tls_cert=str(pki / "client.crt"), tls_key=str(pki / "client.key"))
    with pytest.raises(NetworkError, match="certificate was not accepted"):
        scu.echo(wrong, "REQUESTOR", timeout=5)
    # no client certificate where the listener asks for one
    anonymous = RemoteNode("self", AE, "127.0.0.1", tls_listener.port, tls=True, tls_ca=str(pki / "ca.crt"))
    with pytest.raises(NetworkError, match="self"):
        scu.echo(anonymous, "REQUESTOR", timeout=5)


@needs_dcmtk
def test_send_through_the_cli_to_a_tls_storescp(pki, tmp_path, cli_runner, series_factory, path_kind):
    files = series_factory(count=4, rows=64, columns=64)
    assert cli_runner("import", str(files[0].parent)).exit_code == 0
    port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    log = open(tmp_path / "storescp.log", "wb")
    process = subprocess.Popen(["storescp", "+tls", str(pki / "server.key"), str(pki / "server.crt"),
                                "+cf", str(pki / "ca.crt"), "-aet", "TLSSCP", "+xa", "-od", str(received), str(port)],
                               env=dcmtk_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        for key, value in (("tls-cert", "client.crt"), ("tls-key", "client.key"), ("tls-ca", "ca.crt")):
            assert cli_runner("config", "set", key, str(pki / value)).exit_code == 0
        added = cli_runner("node", "add", "scp", "--ae-title", "TLSSCP", "--host", "127.0.0.1", "--port", str(port),
                           "--tls", "--tls-server-name", "localhost")
        assert added.exit_code == 0 and "TLS" in added.output
        assert cli_runner("echo", "scp").exit_code == 0
        import pydicom

        sent = cli_runner("send", "scp", str(pydicom.dcmread(files[0]).StudyInstanceUID))
        assert sent.exit_code == 0, sent.output
        assert "Sent 4 of 4" in sent.output
        assert len(list(received.iterdir())) == 4
        shown = cli_runner("config", "show").output
        assert "tls-cert: " + str(pki / "client.crt") in shown
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def test_listener_settings_name_what_is_wrong(pki, tmp_path):
    with pytest.raises(NetworkError, match="both tls-cert and tls-key"):
        tls.server_context(DatabaseSettings(tls_cert=str(pki / "server.crt")))
    with pytest.raises(NetworkError, match="cannot use certificate"):
        tls.server_context(DatabaseSettings(tls_cert=str(pki / "server.crt"), tls_key=str(pki / "client.key")))
    assert tls.server_context(DatabaseSettings()) is None
